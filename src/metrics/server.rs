//! The HTTP endpoint Prometheus scrapes: `GET /metrics`.
//!
//! Served by `tiny_http` on a thread of its own: an async server (hyper, axum) would need tokio's
//! `net` feature, and turning it on rebuilds every crate that depends on tokio, DataFusion
//! included. A scrape every few seconds needs no more than one thread.

use std::net::SocketAddr;
use std::sync::Arc;

use tiny_http::{Header, Method, Response, Server};

use super::PrometheusMetrics;
use crate::{Result, SluiceError};

/// A running metrics endpoint; dropping it stops the server.
pub struct MetricsServer {
    address: SocketAddr,
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer").field("address", &self.address).finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// The address it listens on (with the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `metrics` at `http://<address>/metrics` until the returned server is dropped; other
/// paths get 404.
///
/// # Errors
/// [`SluiceError::Metrics`] when `address` is not `IP:PORT` or cannot be listened on (in use,
/// not this machine's).
pub fn serve(address: &str, metrics: Arc<PrometheusMetrics>) -> Result<MetricsServer> {
    let error = |message: String| SluiceError::Metrics { address: address.to_string(), message };
    let parsed: SocketAddr =
        address.parse().map_err(|e| error(format!("{e}; give an IP address and a port, such as 127.0.0.1:9090")))?;
    let server = Arc::new(
        Server::http(parsed).map_err(|e| error(format!("cannot listen: {e}; choose another port or address")))?,
    );
    let bound = server.server_addr().to_ip().unwrap_or(parsed);
    let serving = server.clone();
    let thread = std::thread::Builder::new()
        .name("sluice-metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let response = if *request.method() == Method::Get && request.url() == "/metrics" {
                    Response::from_string(metrics.render()).with_header(content_type(prometheus::TEXT_FORMAT))
                } else {
                    Response::from_string("not found: the metrics are at GET /metrics\n")
                        .with_status_code(404)
                        .with_header(content_type("text/plain; charset=utf-8"))
                };
                if let Err(e) = request.respond(response) {
                    tracing::debug!("metrics request not answered: {e}");
                }
            }
        })
        .map_err(|e| error(format!("cannot start the server thread: {e}")))?;
    tracing::info!("serving Prometheus metrics at http://{bound}/metrics");
    Ok(MetricsServer { address: bound, server, thread: Some(thread) })
}

fn content_type(value: &str) -> Header {
    Header::from_bytes("Content-Type", value).expect("a valid header")
}
