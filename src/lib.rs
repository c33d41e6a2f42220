//! sluice: a streaming SQL engine in the style of Spark Structured Streaming, on Apache Arrow and
//! DataFusion.
//!
//! A micro-batch travels `source` → `plan` (DataFusion + stateful `operator`s over `state`) →
//! `sink`, driven by `execution`, with `checkpoint` beside it. Streaming SQL enters through `sql`
//! and [`StreamContext`].
//!
//! ```no_run
//! # async fn example() -> sluice::Result<()> {
//! let mut ctx = sluice::StreamContext::new();
//! let queries = ctx.execute(&std::fs::read_to_string("q.sql").unwrap()).await?;
//! let mut query = ctx.start(&queries[0], "/tmp/checkpoint").await?;
//! query.run(sluice::Trigger::AvailableNow).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub(crate) mod checkpoint;
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
