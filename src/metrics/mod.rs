//! Prometheus metrics of running queries (`sluice run --metrics ADDRESS`): a listener keeping
//! them up to date and the HTTP endpoint serving them.
//!
//! ```no_run
//! # async fn example(query: &mut sluice::StreamingQuery) -> sluice::Result<()> {
//! use std::sync::Arc;
//! let metrics = Arc::new(sluice::metrics::PrometheusMetrics::new());
//! query.add_listener(metrics.clone());
//! let _server = sluice::metrics::serve("127.0.0.1:9090", metrics)?;
//! # Ok(()) }
//! ```

mod exporter;
mod server;

pub use exporter::PrometheusMetrics;
pub use server::{serve, MetricsServer};
