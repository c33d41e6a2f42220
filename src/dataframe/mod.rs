//! The DataFrame API: streaming queries built in Rust with Spark's names, over DataFusion
//! expressions (`datafusion::prelude::{col, lit}`, its aggregate functions).
//!
//! [`crate::StreamContext::read_stream`] declares a stream, [`StreamFrame`] transforms it,
//! [`StreamFrame::write_stream`] says where the result goes and starts the query. A frame is a
//! DataFusion logical plan, so SQL ([`crate::StreamContext::sql`]) and the API meet in one
//! incremental planner: the same query written either way runs the same operators.
//!
//! ```no_run
//! # async fn example() -> sluice::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
//! use datafusion::functions_aggregate::expr_fn::count;
//! use datafusion::prelude::{col, lit};
//! use sluice::{window, OutputMode, StreamContext, Trigger};
//!
//! let mut ctx = StreamContext::new();
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
//!     Field::new("word", DataType::Utf8, true),
//! ]));
//! let words = ctx.read_stream().format("json").schema(schema).load("data/words")?;
//! let counts = words
//!     .with_watermark("ts", Duration::from_secs(10))?
//!     .group_by(vec![window(col("ts"), "1 minute"), col("word")])
//!     .agg(vec![count(lit(1)).alias("n")])?;
//! let query = counts
//!     .write_stream()
//!     .output_mode(OutputMode::Update)
//!     .trigger(Trigger::AvailableNow)
//!     .to_table("word_counts")
//!     .start()
//!     .await?;
//! query.await_termination().await?;
//! let rows = ctx.sql("SELECT * FROM word_counts ORDER BY n DESC").await?.collect().await?;
//! # Ok(()) }
//! ```

mod frame;
mod functions;
mod grouped;
mod options;
mod reader;
mod writer;

pub(crate) use frame::aggregation_keys;
pub use frame::StreamFrame;
pub use functions::{session_window, window, window_with_slide};
pub use grouped::GroupedStreamFrame;
pub use reader::DataStreamReader;
pub use writer::DataStreamWriter;
