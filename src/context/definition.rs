//! A continuous query defined, not yet started.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Query;

use crate::operator::group_state::{erase, GroupState, GroupStateTimeout};
use crate::plan::stage::Stage;
use crate::plan::OutputMode;
use crate::Result;

/// A continuous query defined by a script (`INSERT INTO sink SELECT ...`), not yet started.
/// Stateful operators that SQL cannot express are added from Rust, applied in order to the
/// query's rows before they reach the sink.
#[derive(Debug, Clone)]
pub struct QueryDefinition {
    /// The sink table.
    pub(crate) sink: String,
    /// The query.
    pub(crate) body: QueryBody,
    /// Operators applied to the query's rows, in order.
    pub(crate) stages: Vec<Stage>,
    /// The query's name (Spark's `queryName`); by default the sink table's.
    pub(crate) name: Option<String>,
    /// The output mode, when the writer chose one; by default the sink table's.
    pub(crate) output_mode: Option<OutputMode>,
    /// Written `EXPLAIN INSERT INTO ...`: to explain, not to start.
    pub(crate) explain: bool,
}

/// What a query computes: SQL text planned when it starts, or a plan built with the DataFrame
/// API ([`crate::StreamFrame`]), over the stream tables of the context.
#[derive(Debug, Clone)]
pub(crate) enum QueryBody {
    Sql(Box<Query>),
    Plan(LogicalPlan),
}

impl QueryDefinition {
    pub(crate) fn new(sink: String, body: QueryBody) -> Self {
        Self { sink, body, stages: vec![], name: None, output_mode: None, explain: false }
    }

    /// The sink table the query writes to.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The script wrote it `EXPLAIN INSERT INTO ...`: show [`crate::StreamContext::explain`]
    /// rather than [`crate::StreamContext::start`] it (which refuses it).
    pub fn is_explain(&self) -> bool {
        self.explain
    }

    /// The query's name: the one given to the writer, else its sink table.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.sink)
    }

    /// Spark's `dropDuplicates(keys)` on the query's rows (SEMANTICS §3): a key's first row is
    /// emitted; with the event-time column among `keys` a key leaves the state once the
    /// watermark passes it, otherwise it stays forever.
    pub fn drop_duplicates(mut self, keys: &[&str]) -> Self {
        self.stages.push(Stage::DropDuplicates { keys: keys.iter().map(|k| k.to_string()).collect() });
        self
    }

    /// Spark's `dropDuplicatesWithinWatermark(keys)` (SEMANTICS §3): a key's first row is
    /// emitted and the key expires at its first event time plus the watermark delay. Starting the
    /// query fails with [`SluiceError::Sql`] when its rows carry no watermark.
    pub fn drop_duplicates_within_watermark(mut self, keys: &[&str]) -> Self {
        self.stages.push(Stage::DropDuplicatesWithinWatermark { keys: keys.iter().map(|k| k.to_string()).collect() });
        self
    }

    /// Spark's `flatMapGroupsWithState`: `function(key values, the key's rows of the batch,
    /// state)` returns rows of `output` (one `Vec<ScalarValue>` per row, in column order). State
    /// `S` is serialized with serde into the checkpoint. See [`crate::GroupState`] for
    /// the call order and the timeouts. The sink's output mode must be append or update.
    pub fn flat_map_groups_with_state<S, F>(
        mut self,
        keys: &[&str],
        output: SchemaRef,
        timeout: GroupStateTimeout,
        function: F,
    ) -> Self
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: Fn(&[ScalarValue], &RecordBatch, &mut GroupState<S>) -> Result<Vec<Vec<ScalarValue>>>
            + Send
            + Sync
            + 'static,
    {
        self.stages.push(Stage::GroupsWithState {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            function: erase(function),
            timeout,
            output,
        });
        self
    }
}
