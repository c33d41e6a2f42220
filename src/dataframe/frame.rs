//! [`StreamFrame`]: a query over streams (or bounded tables) built step by step, Spark's
//! streaming `DataFrame`. Underneath it is a DataFusion [`LogicalPlan`] over the context's
//! tables, planned incrementally when the query starts, by the same planner as SQL.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, JoinType, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{col, lit, Expr, ExprFunctionExt, LogicalPlan};

use super::grouped::GroupedStreamFrame;
use super::writer::DataStreamWriter;
use crate::context::{QueryBody, QueryDefinition, StreamContext};
use crate::operator::group_state::{erase, GroupState, GroupStateTimeout};
use crate::operator::watermark::{WatermarkSpec, WATERMARK_DELAY_METADATA};
use crate::plan::nodes::StreamingAggregateNode;
use crate::plan::stage::Stage;
use crate::plan::stream_table::StreamTable;
use crate::{Result, SluiceError};

/// The column `drop_duplicates` numbers rows in, removed again from its result.
const ROW_NUMBER: &str = "__sluice_row_number";

/// A relational query over the context's tables, unbounded when it reads a stream
/// ([`Self::is_streaming`]). Every transformation returns a new frame and checks its columns
/// at once (an unknown column is an error there, not when the query starts). A streaming frame
/// runs through [`Self::write_stream`]; a bounded one answers [`Self::collect`].
///
/// Stateful transformations follow Spark: an aggregation ([`Self::group_by`]) keeps its groups,
/// [`Self::drop_duplicates`] its keys, a join of two streams its buffered rows; each evicts state
/// by the watermark when the query declares one ([`Self::with_watermark`]).
#[derive(Clone)]
pub struct StreamFrame {
    pub(crate) ctx: StreamContext,
    pub(crate) plan: LogicalPlan,
    /// Operators that only run on top of the query (Spark's `dropDuplicatesWithinWatermark`,
    /// `flatMapGroupsWithState`): no transformation may follow them.
    pub(crate) stages: Vec<Stage>,
    /// The grouping columns when the frame is an aggregation: the key of a row in update mode.
    pub(crate) keys: Vec<String>,
}

impl std::fmt::Debug for StreamFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamFrame").field("plan", &self.plan.display_indent().to_string()).finish()
    }
}

impl StreamFrame {
    pub(crate) fn new(ctx: StreamContext, plan: LogicalPlan) -> Self {
        Self { ctx, plan, stages: vec![], keys: vec![] }
    }

    pub(crate) fn data_frame(&self) -> DataFrame {
        DataFrame::new(self.ctx.session().state(), self.plan.clone())
    }

    /// A new frame from `step` over this one's plan.
    pub(crate) fn then(
        self,
        step: impl FnOnce(DataFrame) -> datafusion::error::Result<DataFrame>,
    ) -> Result<StreamFrame> {
        self.check_open()?;
        let plan = step(self.data_frame())?.into_unoptimized_plan();
        Ok(StreamFrame::new(self.ctx, plan))
    }

    fn check_open(&self) -> Result<()> {
        match self.stages.last() {
            Some(stage) => Err(SluiceError::unsupported(
                format!("{stage:?} followed by another transformation"),
                "drop_duplicates_within_watermark and flat_map_groups_with_state run on top of the query",
                "make them the last transformation before write_stream",
            )),
            None => Ok(()),
        }
    }

    /// The frame's columns.
    pub fn schema(&self) -> &DFSchema {
        self.plan.schema()
    }

    /// True when the frame reads a stream (Spark's `isStreaming`).
    pub fn is_streaming(&self) -> bool {
        !StreamTable::sources_of(&self.plan).is_empty()
    }

    /// The columns or expressions `exprs`, in order (Spark's `select`).
    ///
    /// # Errors
    /// [`SluiceError::DataFusion`] naming an unknown column or an invalid expression.
    pub fn select(self, exprs: Vec<Expr>) -> Result<StreamFrame> {
        self.then(|df| df.select(exprs))
    }

    /// The named columns, in order.
    ///
    /// # Errors
    /// As [`Self::select`].
    pub fn select_columns(self, columns: &[&str]) -> Result<StreamFrame> {
        self.then(|df| df.select_columns(columns))
    }

    /// The rows for which `predicate` is true (Spark's `filter` / `where`).
    ///
    /// # Errors
    /// As [`Self::select`]; also a predicate that is not boolean.
    pub fn filter(self, predicate: Expr) -> Result<StreamFrame> {
        self.then(|df| df.filter(predicate))
    }

    /// Adds column `name` computed by `expr`, or replaces the column of that name (Spark's
    /// `withColumn`).
    ///
    /// # Errors
    /// As [`Self::select`].
    pub fn with_column(self, name: &str, expr: Expr) -> Result<StreamFrame> {
        self.then(|df| df.with_column(name, expr))
    }

    /// Renames column `existing` to `new` (Spark's `withColumnRenamed`); a missing column is
    /// left alone, as in Spark.
    ///
    /// # Errors
    /// As [`Self::select`].
    pub fn with_column_renamed(self, existing: &str, new: &str) -> Result<StreamFrame> {
        self.then(|df| df.with_column_renamed(existing, new))
    }

    /// Qualifies the frame's columns with `alias`, so that the two sides of a self-join can be
    /// told apart (`col("a.ts")`), Spark's `alias`.
    ///
    /// # Errors
    /// As [`Self::select`].
    pub fn alias(self, alias: &str) -> Result<StreamFrame> {
        self.then(|df| df.alias(alias))
    }

    /// Declares the event-time watermark: `column` lags the largest event time seen by `delay`
    /// (Spark's `withWatermark(eventTime, delayThreshold)`, SEMANTICS §1). State older than the
    /// watermark is evicted and rows older than it are dropped as late.
    ///
    /// sluice tracks watermarks per stream, so `column` must be a TIMESTAMP column of a stream as
    /// read (selected, filtered or renamed through `alias` only; not computed), and the call must
    /// precede stateful transformations. A second call on the same stream replaces the first.
    ///
    /// Here counts per word and 10-second window, with a 5-second watermark, in append mode: a
    /// window is written once, when the watermark passes its end, and a row older than the
    /// watermark is dropped as late.
    ///
    /// ```
    /// # async fn demo() -> sluice::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
    /// use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    /// use arrow::util::pretty::pretty_format_batches;
    /// use datafusion::functions_aggregate::expr_fn::count;
    /// use datafusion::prelude::{col, lit};
    /// use sluice::{window, OutputMode, StreamContext};
    ///
    /// let mut ctx = StreamContext::new();
    /// let schema = Arc::new(Schema::new(vec![
    ///     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ///     Field::new("word", DataType::Utf8, false),
    /// ]));
    /// let words = ctx.register_memory_stream("words", schema.clone(), None)?;
    /// // Rows at `seconds` after the epoch.
    /// let push = |seconds: Vec<i64>, texts: Vec<&str>| -> sluice::Result<()> {
    ///     let ms: Vec<i64> = seconds.iter().map(|s| s * 1000).collect();
    ///     let columns: Vec<ArrayRef> =
    ///         vec![Arc::new(TimestampMillisecondArray::from(ms)), Arc::new(StringArray::from(texts))];
    ///     words.push(RecordBatch::try_new(schema.clone(), columns)?)
    /// };
    ///
    /// let query = ctx
    ///     .table("words")
    ///     .await?
    ///     .with_watermark("ts", Duration::from_secs(5))?
    ///     .group_by(vec![window(col("ts"), "10 seconds"), col("word")])
    ///     .agg(vec![count(lit(1)).alias("n")])?
    ///     .write_stream()
    ///     .output_mode(OutputMode::Append)
    ///     .to_table("counts")
    ///     .start()
    ///     .await?;
    ///
    /// // The latest event time is 12 s, so the watermark 7 s: window [0 s, 10 s) stays open.
    /// push(vec![1, 5, 12], vec!["a", "a", "b"])?;
    /// query.process_all_available().await?;
    /// let written = ctx.sql("SELECT * FROM counts").await?.collect().await?;
    /// assert_eq!(written.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    ///
    /// // 16 s moves the watermark to 11 s: [0 s, 10 s) is complete and written.
    /// push(vec![16], vec!["b"])?;
    /// query.process_all_available().await?;
    /// // 3 s is older than the watermark: dropped as late, the window is not written again.
    /// push(vec![3], vec!["a"])?;
    /// query.process_all_available().await?;
    ///
    /// let rows = ctx.sql("SELECT word, n FROM counts").await?.collect().await?;
    /// let table = pretty_format_batches(&rows)?.to_string();
    /// assert_eq!(
    ///     table.lines().collect::<Vec<_>>(),
    ///     ["+------+---+", "| word | n |", "+------+---+", "| a    | 2 |", "+------+---+"]
    /// );
    /// let late: u64 = query.recent_progress().iter().map(|p| p.late_rows_dropped()).sum();
    /// assert_eq!(late, 1);
    /// # query.stop();
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the column when it is missing, not a TIMESTAMP, or computed;
    /// [`SluiceError::Unsupported`] after a stateful transformation.
    pub fn with_watermark(self, column: &str, delay: Duration) -> Result<StreamFrame> {
        self.check_open()?;
        let delay_ms = i64::try_from(delay.as_millis())
            .map_err(|_| SluiceError::sql(format!("with_watermark('{column}'): the delay {delay:?} is too long")))?;
        let (qualifier, field) = self.plan.schema().qualified_field_with_unqualified_name(column)?;
        if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
            return Err(SluiceError::sql(format!(
                "with_watermark('{column}'): the column is {}, not a TIMESTAMP; cast it with \
                 with_column('{column}', cast(col('{column}'), DataType::Timestamp(..)))",
                field.data_type()
            )));
        }
        let stream = qualifier.and_then(|q| {
            StreamTable::sources_of(&self.plan)
                .into_iter()
                .find(|t| t.name() == q.table() && t.schema().field_with_name(column).is_ok())
        });
        let Some(stream) = stream else {
            return Err(SluiceError::sql(format!(
                "with_watermark('{column}'): the column is computed in the query, but a watermark is tracked on a \
                 stream's own event-time column; declare it on a TIMESTAMP column as the stream delivers it"
            )));
        };
        if self.plan.exists(|node| {
            Ok(matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) | LogicalPlan::Join(_)))
        })? {
            return Err(SluiceError::unsupported(
                "with_watermark after an aggregation, a join or drop_duplicates",
                "the watermark must be known to the stateful operators below it",
                "call with_watermark on the frame read from the stream, before stateful transformations",
            ));
        }
        let spec = WatermarkSpec { column: column.to_string(), delay_ms };
        let table = Arc::new(StreamTable::new(stream.name(), with_event_time(&stream.schema(), &spec), 1));
        let plan = self
            .plan
            .transform_up(|node| match node {
                LogicalPlan::TableScan(scan)
                    if StreamTable::of_scan(&scan).is_some_and(|t| t.name() == table.name()) =>
                {
                    Ok(Transformed::yes(StreamTable::rescan(&scan, Arc::clone(&table))?))
                }
                other => Ok(Transformed::yes(other.recompute_schema()?)),
            })?
            .data;
        Ok(StreamFrame::new(self.ctx, plan))
    }

    /// Groups the rows by `exprs` for an aggregation (Spark's `groupBy`); an event-time window
    /// ([`crate::window`], [`crate::window_with_slide`], [`crate::session_window`]) among them
    /// groups by window. [`GroupedStreamFrame::agg`] then says what to compute per group.
    ///
    /// Here a running count per word in update mode: each batch writes the groups it changed,
    /// which replace their rows in the memory table.
    ///
    /// ```
    /// # async fn demo() -> sluice::Result<()> {
    /// use std::sync::Arc;
    ///
    /// use arrow::array::{RecordBatch, StringArray};
    /// use arrow::datatypes::{DataType, Field, Schema};
    /// use arrow::util::pretty::pretty_format_batches;
    /// use datafusion::functions_aggregate::expr_fn::count;
    /// use datafusion::prelude::{col, lit};
    /// use sluice::{OutputMode, StreamContext};
    ///
    /// let mut ctx = StreamContext::new();
    /// let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, false)]));
    /// let words = ctx.register_memory_stream("words", schema.clone(), None)?;
    /// let push = |texts: Vec<&str>| -> sluice::Result<()> {
    ///     words.push(RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(texts))])?)
    /// };
    ///
    /// let query = ctx
    ///     .table("words")
    ///     .await?
    ///     .group_by(vec![col("word")])
    ///     .agg(vec![count(lit(1)).alias("n")])?
    ///     .write_stream()
    ///     .output_mode(OutputMode::Update)
    ///     .to_table("word_counts")
    ///     .start()
    ///     .await?;
    /// push(vec!["to", "be", "or", "not", "to", "be"])?;
    /// query.process_all_available().await?;
    /// push(vec!["to", "stream"])?;
    /// query.process_all_available().await?;
    ///
    /// let rows = ctx.sql("SELECT word, n FROM word_counts ORDER BY n DESC, word").await?.collect().await?;
    /// let table = pretty_format_batches(&rows)?.to_string();
    /// assert_eq!(
    ///     table.lines().collect::<Vec<_>>(),
    ///     [
    ///         "+--------+---+",
    ///         "| word   | n |",
    ///         "+--------+---+",
    ///         "| to     | 3 |",
    ///         "| be     | 2 |",
    ///         "| not    | 1 |",
    ///         "| or     | 1 |",
    ///         "| stream | 1 |",
    ///         "+--------+---+",
    ///     ]
    /// );
    /// # query.stop();
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn group_by(self, exprs: Vec<Expr>) -> GroupedStreamFrame {
        GroupedStreamFrame::new(self, exprs)
    }

    /// Keeps the first row of each value of `columns` (Spark's `dropDuplicates(cols)`,
    /// SEMANTICS §3): with the watermarked event-time column among them a key leaves the state
    /// once the watermark passes it; otherwise keys stay forever.
    ///
    /// # Errors
    /// As [`Self::select`], naming an unknown column.
    pub fn drop_duplicates(self, columns: &[&str]) -> Result<StreamFrame> {
        let keys: Vec<Expr> = columns.iter().map(|c| col(*c)).collect();
        let numbered = row_number().partition_by(keys).build()?.alias(ROW_NUMBER);
        self.then(|df| df.window(vec![numbered])?.filter(col(ROW_NUMBER).eq(lit(1u64)))?.drop_columns(&[ROW_NUMBER]))
    }

    /// Keeps the first row of each value of `columns`, forgetting a key at its first event time
    /// plus the watermark delay (Spark's `dropDuplicatesWithinWatermark`, SEMANTICS §3). Must be
    /// the last transformation.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming an unknown column.
    pub fn drop_duplicates_within_watermark(self, columns: &[&str]) -> Result<StreamFrame> {
        let keys = self.column_names(columns)?;
        self.with_stage(Stage::DropDuplicatesWithinWatermark { keys })
    }

    /// Spark's `flatMapGroupsWithState`: `function(key values, the key's rows of the batch,
    /// state)` returns rows of `output` (one `Vec<ScalarValue>` per row, in column order); state
    /// `S` is serialized with serde into the checkpoint. See [`crate::GroupState`]
    /// for the call order and timeouts. Must be the last transformation; the output mode must be
    /// append or update.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming an unknown key column.
    pub fn flat_map_groups_with_state<S, F>(
        self,
        keys: &[&str],
        output: SchemaRef,
        timeout: GroupStateTimeout,
        function: F,
    ) -> Result<StreamFrame>
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: Fn(&[ScalarValue], &RecordBatch, &mut GroupState<S>) -> Result<Vec<Vec<ScalarValue>>>
            + Send
            + Sync
            + 'static,
    {
        let keys = self.column_names(keys)?;
        self.with_stage(Stage::GroupsWithState { keys, function: erase(function), timeout, output })
    }

    /// Joins `right` where `on` holds (Spark's `join(right, joinExprs, joinType)`): equalities
    /// between the two sides are the join keys, the rest a filter. Two streams join
    /// incrementally, buffering each side's rows until the watermark and a time bound in `on`
    /// let them go (SEMANTICS §4); a bounded side joins each batch.
    ///
    /// # Errors
    /// As [`Self::select`]; columns with the same name on both sides must be qualified
    /// ([`Self::alias`]).
    pub fn join(mut self, right: StreamFrame, join_type: JoinType, on: Vec<Expr>) -> Result<StreamFrame> {
        right.check_open()?;
        self.ctx.adopt_streams(&right.ctx);
        let right = right.data_frame();
        self.then(|df| df.join_on(right, join_type, on))
    }

    /// The rows of both frames, which must have the same columns (Spark's `union`).
    ///
    /// # Errors
    /// As [`Self::select`], for frames of different columns.
    pub fn union(mut self, other: StreamFrame) -> Result<StreamFrame> {
        other.check_open()?;
        self.ctx.adopt_streams(&other.ctx);
        let other = other.data_frame();
        self.then(|df| df.union(other))
    }

    /// Starts describing how the query writes its result (Spark's `writeStream`).
    pub fn write_stream(self) -> DataStreamWriter {
        DataStreamWriter::new(self)
    }

    /// The rows of a bounded frame, e.g. over a table written by a query's memory sink.
    ///
    /// # Errors
    /// [`SluiceError::Unsupported`] for a frame over a stream (start it with
    /// [`Self::write_stream`]); DataFusion errors while running it.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        if self.is_streaming() {
            return Err(SluiceError::unsupported(
                "collect() on a frame that reads a stream",
                "a query with streaming sources never ends",
                "run it with write_stream()...start(), e.g. into to_table(name), and query that table",
            ));
        }
        Ok(self.data_frame().collect().await?)
    }

    /// What the query would run with `mode`: the watermarks, each stateful operator with its
    /// keys, the state it keeps and when that state is evicted, then the incremental plan. The
    /// same text as `EXPLAIN` in SQL ([`crate::StreamContext::explain`]).
    ///
    /// # Errors
    /// What starting the query would refuse (e.g. an aggregation in append mode without a
    /// watermark).
    pub async fn explain(&self, mode: crate::OutputMode) -> Result<String> {
        self.ctx.explain_in_mode(&self.definition(), mode, "chosen by the caller").await
    }

    /// The frame as a query definition writing to no sink yet.
    pub(crate) fn definition(&self) -> QueryDefinition {
        let mut definition = QueryDefinition::new(String::new(), QueryBody::Plan(self.plan.clone()));
        definition.stages = self.stages.clone();
        definition
    }

    fn with_stage(mut self, stage: Stage) -> Result<StreamFrame> {
        self.check_open()?;
        self.stages.push(stage);
        self.keys.clear();
        Ok(self)
    }

    fn column_names(&self, columns: &[&str]) -> Result<Vec<String>> {
        columns
            .iter()
            .map(|c| {
                self.plan.schema().qualified_field_with_unqualified_name(c)?;
                Ok(c.to_string())
            })
            .collect()
    }
}

/// `schema` with `spec`'s column marked as the event-time column, and no other.
fn with_event_time(schema: &Schema, spec: &WatermarkSpec) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            metadata.remove(WATERMARK_DELAY_METADATA);
            if f.name() == &spec.column {
                metadata.insert(WATERMARK_DELAY_METADATA.to_string(), spec.delay_ms.to_string());
            }
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The names of the output columns that are an aggregation's grouping keys (of a DataFusion
/// `Aggregate` or, in an incremental plan, a streaming aggregation), when the result outputs all
/// of them: update mode into a memory table replaces a group's row by them.
pub(crate) fn aggregation_keys(plan: &LogicalPlan) -> Vec<String> {
    let mut node = plan;
    let (schema, count) = loop {
        match node {
            LogicalPlan::Aggregate(agg) => break (&agg.schema, agg.group_expr.len()),
            LogicalPlan::Extension(ext) => match ext.node.as_any().downcast_ref::<StreamingAggregateNode>() {
                Some(agg) => break (&agg.schema, agg.group_expr.len()),
                None => return vec![],
            },
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::Filter(f) => node = &f.input,
            LogicalPlan::Sort(s) => node = &s.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Limit(l) => node = &l.input,
            _ => return vec![],
        }
    };
    let keys: Vec<String> = schema.fields().iter().take(count).map(|f| f.name().clone()).collect();
    let output = plan.schema();
    let all_kept = keys.iter().all(|k| output.fields().iter().any(|f| f.name() == k));
    if all_kept {
        keys
    } else {
        vec![]
    }
}
