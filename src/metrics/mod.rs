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

use std::sync::Arc;

pub use exporter::PrometheusMetrics;

use crate::http::{Endpoints, HttpServer};

/// Serves `metrics` at `http://<address>/metrics` until the returned server is dropped; other
/// paths get 404. [`crate::http::serve`] serves them with the web UI on one address.
///
/// # Errors
/// As [`crate::http::serve`].
pub fn serve(address: &str, metrics: Arc<PrometheusMetrics>) -> crate::Result<HttpServer> {
    crate::http::serve(address, Endpoints { metrics: Some(metrics), ui: None })
}
