//! `EXPLAIN` of a query definition: planned exactly as starting it would plan it, without
//! opening its sources, sink or checkpoint.

use std::sync::Arc;

use super::start::{plan_query, streaming_state};
use super::{QueryDefinition, StreamContext, StreamTableDef};
use crate::checkpoint::CheckpointLocation;
use crate::operator::watermark::WatermarkSpec;
use crate::plan::explain::explain;
use crate::plan::physical::OperatorRegistry;
use crate::plan::stream_table::StreamTable;
use crate::plan::OutputMode;
use crate::state::StateBackend;
use crate::{Result, SluiceError};

impl StreamContext {
    /// What starting `definition` would run, as text: the output mode and why, the watermarks,
    /// each stateful operator with its keys, its state and when that state is evicted, then the
    /// incremental plan. `EXPLAIN INSERT INTO ...` in a script yields such a definition
    /// ([`QueryDefinition::is_explain`]); `sluice run` prints this for it.
    ///
    /// # Errors
    /// What [`Self::start`] would refuse at planning: [`SluiceError::Unsupported`] for a query
    /// its output mode cannot run, [`SluiceError::Sql`] for an unknown sink or planning errors.
    pub async fn explain(&self, definition: &QueryDefinition) -> Result<String> {
        let (mode, why) = match definition.output_mode {
            Some(mode) => (mode, "chosen by the query's writer".to_string()),
            None => self.sink_mode(&definition.sink)?,
        };
        self.explain_in_mode(definition, mode, &why).await
    }

    /// The `EXPLAIN` text of `definition` run in `mode`, chosen because of `why`.
    pub(crate) async fn explain_in_mode(
        &self,
        definition: &QueryDefinition,
        mode: OutputMode,
        why: &str,
    ) -> Result<String> {
        let tables = self.query_tables(&definition.body, self.state_partitions)?;
        let location = CheckpointLocation::open("memory://")?;
        let registry = Arc::new(OperatorRegistry::new(location, self.state_partitions, mode, StateBackend::Memory));
        let state = streaming_state(&self.ctx, &registry);
        let plan = plan_query(&state, definition, &tables, &self.spellings, mode).await?;
        let watermarks: Vec<(String, WatermarkSpec)> = StreamTable::sources_of(&plan)
            .iter()
            .filter_map(|t| WatermarkSpec::of_schema(&t.schema()).map(|w| (t.name().to_string(), w)))
            .collect();
        Ok(explain(&plan, &watermarks, self.watermark_policy, mode, why))
    }

    /// The output mode of sink table `sink` and where it comes from.
    pub(super) fn sink_mode(&self, sink: &str) -> Result<(OutputMode, String)> {
        match self.tables.get(sink) {
            Some(StreamTableDef::Sink { mode, .. }) => Ok((*mode, format!("registered with sink '{sink}'"))),
            Some(StreamTableDef::Connector { ddl, .. }) => match ddl.options.get("output_mode") {
                Some(text) => Ok((OutputMode::parse(text)?, format!("the output_mode option of table '{sink}'"))),
                None => Ok((
                    OutputMode::default(),
                    format!("table '{sink}' sets no output_mode option; append is the default, as in Spark"),
                )),
            },
            Some(StreamTableDef::Memory { .. }) => Err(SluiceError::sql(format!(
                "'{sink}' is a memory stream, not a sink; register a sink with register_sink"
            ))),
            None => Err(SluiceError::sql(format!("unknown sink table '{sink}'"))),
        }
    }
}
