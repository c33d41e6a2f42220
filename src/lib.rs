//! sluice: a streaming SQL engine in the style of Spark Structured Streaming, on Apache Arrow and
//! DataFusion.
//!
//! A continuous query is written in streaming SQL ([`StreamContext::execute`], then
//! [`StreamContext::start`]) or with the DataFrame API ([`StreamContext::read_stream`],
//! [`StreamFrame`], [`StreamFrame::write_stream`]); either way it runs as a [`StreamingQuery`] of
//! micro-batches, each reading the input new since the last one, updating the state of the
//! stateful operators (aggregations, joins, deduplication, [`GroupState`]) and handing its result
//! to a sink, with a checkpoint to recover from.
//!
//! The API is at the crate root. Beside it, [`source`] and [`sink`] hold the in-memory stream and
//! the sinks a program uses directly (and the [`sink::Sink`] trait to write a sink of its own),
//! [`monitoring`] the Prometheus metrics, web UI and progress file of running queries, and
//! [`kafka`] the file-to-topic producer of `sluice produce`.
//!
//! A complete program: readings pushed from Rust into a memory stream, counted and totalled per
//! sensor with the DataFrame API into a memory table, which SQL then reads.
//!
//! ```
//! use std::sync::Arc;
//!
//! use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use arrow::util::pretty::pretty_format_batches;
//! use datafusion::functions_aggregate::expr_fn::{count, sum};
//! use datafusion::prelude::{col, lit};
//! use sluice::{OutputMode, StreamContext};
//!
//! async fn demo() -> sluice::Result<()> {
//!     let mut ctx = StreamContext::new();
//!     let schema = Arc::new(Schema::new(vec![
//!         Field::new("sensor", DataType::Utf8, false),
//!         Field::new("reading", DataType::Int64, false),
//!     ]));
//!     let readings = ctx.register_memory_stream("readings", schema.clone(), None)?;
//!     let push = |sensors: Vec<&str>, values: Vec<i64>| -> sluice::Result<()> {
//!         let columns: Vec<ArrayRef> =
//!             vec![Arc::new(StringArray::from(sensors)), Arc::new(Int64Array::from(values))];
//!         readings.push(RecordBatch::try_new(schema.clone(), columns)?)
//!     };
//!
//!     // The whole result in a memory table `totals`, replaced at every batch (complete mode).
//!     let query = ctx
//!         .table("readings")
//!         .await?
//!         .group_by(vec![col("sensor")])
//!         .agg(vec![count(lit(1)).alias("n"), sum(col("reading")).alias("total")])?
//!         .write_stream()
//!         .output_mode(OutputMode::Complete)
//!         .to_table("totals")
//!         .start()
//!         .await?;
//!
//!     push(vec!["a", "b", "a"], vec![1, 10, 2])?;
//!     query.process_all_available().await?;
//!     push(vec!["b", "c"], vec![20, 100])?;
//!     query.process_all_available().await?;
//!
//!     let rows = ctx.sql("SELECT sensor, n, total FROM totals ORDER BY sensor").await?.collect().await?;
//!     let table = pretty_format_batches(&rows)?.to_string();
//!     assert_eq!(
//!         table.lines().collect::<Vec<_>>(),
//!         [
//!             "+--------+---+-------+",
//!             "| sensor | n | total |",
//!             "+--------+---+-------+",
//!             "| a      | 2 | 3     |",
//!             "| b      | 2 | 30    |",
//!             "| c      | 1 | 100   |",
//!             "+--------+---+-------+",
//!         ]
//!     );
//!     query.stop();
//!     query.await_termination().await
//! }
//!
//! tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
pub(crate) mod context;
pub(crate) mod dataframe;
pub(crate) mod error;
pub(crate) mod execution;
pub(crate) mod format;
pub(crate) mod http;
pub mod kafka;
pub(crate) mod metrics;
pub mod monitoring;
pub(crate) mod operator;
pub(crate) mod plan;
mod row_ranges;
pub mod shell;
pub mod sink;
pub mod source;
pub(crate) mod sql;
pub(crate) mod state;
pub(crate) mod ui;

#[cfg(test)]
mod proptest_cases;

pub use context::{QueryDefinition, StreamContext};
pub use dataframe::{
    session_window, window, window_with_slide, DataStreamReader, DataStreamWriter, GroupedStreamFrame, StreamFrame,
};
pub use error::{Result, SluiceError};
pub use execution::progress::{SinkProgress, SourceProgress, StateOperatorProgress};
pub use execution::{
    QueryIdleEvent, QueryProgress, QueryStartedEvent, QueryStatus, QueryTerminatedEvent, StopHandle, StreamingQuery,
    StreamingQueryListener, StreamingQueryManager, Trigger,
};
pub use operator::group_state::{GroupState, GroupStateTimeout};
pub use operator::watermark::MultipleWatermarkPolicy;
pub use plan::OutputMode;
pub use sink::foreach_batch::ForeachBatchFn;
