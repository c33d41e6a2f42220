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

pub mod checkpoint;
pub mod context;
pub mod dataframe;
pub mod error;
pub mod execution;
pub mod format;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod plan;
mod row_ranges;
pub mod shell;
pub mod sink;
pub mod source;
pub mod sql;
pub mod state;
pub mod ui;

#[cfg(test)]
mod proptest_cases;

pub use context::{QueryDefinition, StreamContext};
pub use dataframe::{
    session_window, window, window_with_slide, DataStreamReader, DataStreamWriter, GroupedStreamFrame, StreamFrame,
};
pub use error::{Result, SluiceError};
pub use execution::{
    QueryProgress, QueryStatus, StopHandle, StreamingQuery, StreamingQueryListener, StreamingQueryManager, Trigger,
};
pub use operator::group_state::{GroupState, GroupStateTimeout};
pub use plan::OutputMode;
