//! Watching running queries from outside the process: Prometheus metrics, the live web UI, and
//! progress reports appended to a file — what `sluice run --metrics/--ui/--progress` serve, for
//! programs that embed sluice too.
//!
//! [`PrometheusMetrics`] and [`ProgressFile`] are [`crate::StreamingQueryListener`]s: add them
//! to each query with [`crate::StreamingQuery::add_listener`]. [`LiveUi`] watches queries with
//! [`LiveUi::watch`]. [`serve`] serves the metrics (at `/metrics`), the UI (at `/`) or both over
//! HTTP until the returned [`HttpServer`] is dropped; [`serve_metrics`] and [`serve_ui`] serve
//! one of them.
//!
//! ```
//! # async fn demo() -> sluice::Result<()> {
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use sluice::monitoring::{serve, Endpoints, LiveUi, PrometheusMetrics};
//! use sluice::sink::MemorySink;
//! use sluice::{OutputMode, StreamContext};
//!
//! let mut ctx = StreamContext::new();
//! let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
//! let input = ctx.register_memory_stream("input", schema.clone(), None)?;
//! ctx.register_sink("out", OutputMode::Append, || Box::new(MemorySink::new()));
//! let definitions = ctx.execute("INSERT INTO out SELECT v * 2 AS doubled FROM input").await?;
//! let query = ctx.start(&definitions[0], "memory://").await?;
//!
//! let metrics = Arc::new(PrometheusMetrics::new());
//! query.add_listener(metrics.clone());
//! let ui = Arc::new(LiveUi::new());
//! ui.watch(&query);
//! // Port 0 takes any free port; one server serves both.
//! let server = serve("127.0.0.1:0", Endpoints { metrics: Some(metrics.clone()), ui: Some(ui) })?;
//! assert_ne!(server.local_addr().port(), 0);
//!
//! input.push(RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?)?;
//! query.process_all_available().await?;
//! let text = metrics.render(); // what GET /metrics answers
//! assert!(text.contains("sluice_output_rows_total{query=\"out\"} 3"), "{text}");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

pub use crate::execution::progress_file::ProgressFile;
pub use crate::http::{serve, Endpoints, HttpServer};
pub use crate::metrics::{serve as serve_metrics, PrometheusMetrics};
pub use crate::ui::{serve as serve_ui, LiveUi};
