//! Prometheus metrics of running queries (`sluice run --metrics ADDRESS`): a listener keeping
//! them up to date and the HTTP endpoint serving them.
//!
//! Public through [`crate::monitoring`], whose example shows its use.

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
