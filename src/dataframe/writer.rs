//! [`DataStreamWriter`]: where and how a streaming frame writes its result (Spark's
//! `writeStream`), then [`DataStreamWriter::start`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use super::frame::StreamFrame;
use super::options::option_key;
use crate::execution::{StreamingQuery, Trigger};
use crate::plan::OutputMode;
use crate::sink::foreach_batch::{ForeachBatchFn, ForeachBatchSink};
use crate::sink::memory_table::MemoryTable;
use crate::{Result, SluiceError};

/// The formats `format` accepts.
const FORMATS: &str = "'json', 'csv', 'parquet' (files), 'kafka', 'console', 'memory'";

/// Where the rows go.
enum Target {
    /// A connector table built from `format` and the options.
    Format(String),
    /// A user function per batch.
    ForeachBatch(ForeachBatchFn),
    /// A memory table of the context.
    Table(String),
}

/// Describes a query's sink, output mode, trigger and checkpoint; [`Self::start`] starts it.
/// Defaults as in Spark: append mode, a trigger as fast as batches complete
/// (`ProcessingTime(0)`), and the query named after its sink.
pub struct DataStreamWriter {
    frame: StreamFrame,
    target: Option<Target>,
    options: BTreeMap<String, String>,
    output_mode: OutputMode,
    trigger: Trigger,
    checkpoint_location: Option<String>,
    query_name: Option<String>,
}

impl std::fmt::Debug for DataStreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStreamWriter")
            .field("options", &self.options)
            .field("output_mode", &self.output_mode)
            .field("trigger", &self.trigger)
            .field("query_name", &self.query_name)
            .finish()
    }
}

impl DataStreamWriter {
    pub(crate) fn new(frame: StreamFrame) -> Self {
        Self {
            frame,
            target: None,
            options: BTreeMap::new(),
            output_mode: OutputMode::Append,
            trigger: Trigger::ProcessingTime(Duration::ZERO),
            checkpoint_location: None,
            query_name: None,
        }
    }

    /// The sink format: `json`, `csv`, `parquet` (files under the `path` option), `kafka`,
    /// `console`, or `memory` (a table named by [`Self::query_name`], as in Spark).
    pub fn format(mut self, format: &str) -> Self {
        self.target = Some(Target::Format(format.to_ascii_lowercase()));
        self
    }

    /// A sink option by its connector name (`path`, `num_rows`, `topic`, ...) or Spark spelling
    /// (`numRows`, `checkpointLocation`).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        match option_key(key).as_str() {
            "checkpoint_location" => self.checkpoint_location = Some(value.to_string()),
            key => drop(self.options.insert(key.to_string(), value.to_string())),
        }
        self
    }

    /// What each batch writes: new rows (append), changed rows (update) or the whole result
    /// (complete); Spark's `outputMode`. Checked against the query when it starts.
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.output_mode = mode;
        self
    }

    /// When batches run (Spark's `trigger`).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// The checkpoint: a directory, a `file://`, `s3://BUCKET/PREFIX` (configured from the
    /// `AWS_*` environment variables, see [`crate::StreamContext::start`]) or `memory://` URL.
    /// Required for file and Kafka sinks (as in Spark); other sinks default to a checkpoint in
    /// memory, lost with the process.
    pub fn checkpoint_location(mut self, location: &str) -> Self {
        self.checkpoint_location = Some(location.to_string());
        self
    }

    /// The query's name (Spark's `queryName`), shown in progress, metrics and the UI; the table
    /// name of the `memory` format.
    pub fn query_name(mut self, name: &str) -> Self {
        self.query_name = Some(name.to_string());
        self
    }

    /// Hands each batch's output to `function(batch id, rows)` (Spark's `foreachBatch`).
    /// `function` runs on the query's task, and again with the same id for a batch replayed
    /// after a crash: make its effect idempotent per batch id.
    pub fn foreach_batch(
        mut self,
        function: impl Fn(u64, &[RecordBatch]) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.target = Some(Target::ForeachBatch(Arc::new(function)));
        self
    }

    /// Keeps the result in a memory table `name` of the context, read with
    /// `ctx.sql("SELECT ... FROM name")` or `ctx.table(name)` at any moment: append adds rows,
    /// complete replaces them, update replaces the rows of the groups a batch changed (Spark's
    /// `toTable` over an in-memory table). A replayed batch is not applied twice.
    pub fn to_table(mut self, name: &str) -> Self {
        self.target = Some(Target::Table(name.to_string()));
        self
    }

    /// Starts the query on a tokio task of its own and returns its handle (Spark's `start`).
    ///
    /// Here each batch's rows handed to a function, under a trigger that processes what is
    /// available when the query starts and then stops it:
    ///
    /// ```
    /// # async fn demo() -> sluice::Result<()> {
    /// use std::sync::{Arc, Mutex};
    ///
    /// use arrow::array::{AsArray, Int64Array, RecordBatch};
    /// use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    /// use datafusion::prelude::{col, lit};
    /// use sluice::{StreamContext, Trigger};
    ///
    /// let mut ctx = StreamContext::new();
    /// let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    /// let numbers = ctx.register_memory_stream("numbers", schema.clone(), None)?;
    /// numbers.push(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3, 4]))])?)?;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&seen);
    /// let query = ctx
    ///     .table("numbers")
    ///     .await?
    ///     .filter(col("v").gt(lit(1_i64)))?
    ///     .select(vec![(col("v") * lit(10_i64)).alias("tens")])?
    ///     .write_stream()
    ///     .trigger(Trigger::AvailableNow)
    ///     .foreach_batch(move |batch_id, batches| {
    ///         for batch in batches {
    ///             let values = batch.column(0).as_primitive::<Int64Type>().values().iter();
    ///             sink.lock().unwrap().extend(values.map(|v| (batch_id, *v)));
    ///         }
    ///         Ok(())
    ///     })
    ///     .start()
    ///     .await?;
    /// query.await_termination().await?;
    /// assert!(!query.is_active());
    /// assert_eq!(*seen.lock().unwrap(), [(0_u64, 20_i64), (0, 30), (0, 40)]);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for a missing or unknown format, a bad option, a file or Kafka sink
    /// without a checkpoint; [`SluiceError::Unsupported`] for a query the output mode cannot
    /// run; [`SluiceError::Checkpoint`] for an unusable checkpoint; source and sink errors.
    pub async fn start(self) -> Result<StreamingQuery> {
        let Self { frame, target, options, output_mode, trigger, checkpoint_location, query_name } = self;
        let mut ctx = frame.ctx.clone();
        let target = target.ok_or_else(|| {
            SluiceError::sql(format!(
                "write_stream(): choose a sink with format(...) (one of {FORMATS}), foreach_batch or to_table"
            ))
        })?;
        let (sink, checkpoint) = match target {
            Target::Table(name) => (register_memory_table(&mut ctx, &frame, &name, output_mode)?, checkpoint_location),
            Target::Format(format) if format == "memory" => {
                let name = query_name.clone().ok_or_else(|| {
                    SluiceError::sql("write_stream().format(\"memory\"): name the table with query_name(...)")
                })?;
                (register_memory_table(&mut ctx, &frame, &name, output_mode)?, checkpoint_location)
            }
            Target::ForeachBatch(function) => {
                let name = query_name.clone().unwrap_or_else(|| "foreach_batch".to_string());
                ctx.register_sink(&name, output_mode, move || Box::new(ForeachBatchSink(Arc::clone(&function))));
                (name, checkpoint_location)
            }
            Target::Format(format) => {
                let name = query_name.clone().unwrap_or_else(|| format!("{format}_sink"));
                let mut options = options;
                let connector = match format.as_str() {
                    "json" | "csv" | "parquet" => {
                        options.insert("format".into(), format.clone());
                        "file"
                    }
                    "console" | "kafka" => format.as_str(),
                    other => {
                        return Err(SluiceError::sql(format!(
                            "write_stream(): unknown format '{other}'; one of {FORMATS}"
                        )))
                    }
                };
                if connector != "console" && checkpoint_location.is_none() {
                    return Err(SluiceError::sql(format!(
                        "write_stream().format(\"{format}\"): set checkpoint_location(...): a {format} sink must know \
                         after a restart which batches it wrote"
                    )));
                }
                options.insert("connector".into(), connector.to_string());
                ctx.register_sink_table(&name, options)?;
                (name, checkpoint_location)
            }
        };
        // `memory://` opens a fresh in-memory store for each query.
        let checkpoint = checkpoint.unwrap_or_else(|| "memory://".to_string());
        let mut definition = frame.definition();
        definition.sink = sink;
        definition.name = query_name;
        definition.output_mode = Some(output_mode);
        let query = ctx.start(&definition, &checkpoint).await?;
        query.spawn(trigger)?;
        Ok(query)
    }
}

/// Registers memory table `name` of `frame`'s columns in the context, and a sink table of the
/// same name writing into it.
fn register_memory_table(
    ctx: &mut crate::StreamContext,
    frame: &StreamFrame,
    name: &str,
    mode: OutputMode,
) -> Result<String> {
    let table = Arc::new(MemoryTable::new(Arc::new(frame.plan.schema().as_arrow().clone())));
    ctx.replace_table(name, Arc::clone(&table) as _)?;
    let keys = frame.keys.clone();
    ctx.register_sink(name, mode, move || Box::new(table.sink(mode, keys.clone())));
    Ok(name.to_string())
}
