//! The HTTP server of `--metrics` (`GET /metrics`, for Prometheus) and `--ui` (the live web UI,
//! [`crate::ui`]): one listener serves either or both.
//!
//! Served by `tiny_http`, requests answered in turn on a thread of its own (a UI event stream gets
//! a thread of its own too): an async server (hyper, axum) would need tokio's `net` feature, and
//! turning it on rebuilds every crate that depends on tokio, DataFusion included. A scrape every
//! few seconds and a few browser tabs need no more.

use std::net::SocketAddr;
use std::sync::Arc;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::metrics::PrometheusMetrics;
use crate::ui::LiveUi;
use crate::{Result, SluiceError};

/// What a server serves: the Prometheus metrics at `/metrics`, the web UI at every other path, or
/// both.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Served at `GET /metrics`.
    pub metrics: Option<Arc<PrometheusMetrics>>,
    /// Served at `/` and below (see [`crate::ui`]).
    pub ui: Option<Arc<LiveUi>>,
}

impl Endpoints {
    /// What the server is, for messages: `metrics endpoint`, `web UI` or both.
    fn label(&self) -> &'static str {
        match (&self.metrics, &self.ui) {
            (Some(_), Some(_)) => "metrics endpoint and web UI",
            (None, Some(_)) => "web UI",
            _ => "metrics endpoint",
        }
    }

    fn handle(&self, request: Request) {
        if let Some(metrics) = &self.metrics {
            if *request.method() == Method::Get && request.url() == "/metrics" {
                let response =
                    Response::from_string(metrics.render()).with_header(content_type(prometheus::TEXT_FORMAT));
                return respond(request, response);
            }
        }
        match &self.ui {
            Some(ui) => crate::ui::routes::handle(ui, request),
            None => respond(request, not_found("not found: the metrics are at GET /metrics\n")),
        }
    }
}

/// A running HTTP server; dropping it stops it (an open UI event stream ends within 2 s).
pub struct HttpServer {
    address: SocketAddr,
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("address", &self.address).finish_non_exhaustive()
    }
}

impl HttpServer {
    /// The address it listens on (with the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `endpoints` at `http://<address>/` until the returned server is dropped; paths that
/// serve nothing get 404.
///
/// # Errors
/// [`SluiceError::Http`] when `address` is not `IP:PORT` or cannot be listened on (in use, not
/// this machine's).
pub fn serve(address: &str, endpoints: Endpoints) -> Result<HttpServer> {
    let label = endpoints.label();
    let error =
        |message: String| SluiceError::Http { server: label.to_string(), address: address.to_string(), message };
    let example = if endpoints.metrics.is_some() { "127.0.0.1:9090" } else { "127.0.0.1:4040" };
    let parsed: SocketAddr =
        address.parse().map_err(|e| error(format!("{e}; give an IP address and a port, such as {example}")))?;
    let server = Arc::new(
        Server::http(parsed).map_err(|e| error(format!("cannot listen: {e}; choose another port or address")))?,
    );
    let bound = server.server_addr().to_ip().unwrap_or(parsed);
    if endpoints.metrics.is_some() {
        tracing::info!("serving Prometheus metrics at http://{bound}/metrics");
    }
    if endpoints.ui.is_some() {
        tracing::info!("serving the web UI at http://{bound}/");
    }
    let serving = server.clone();
    let thread = std::thread::Builder::new()
        .name("sluice-http".into())
        .spawn(move || serving.incoming_requests().for_each(|request| endpoints.handle(request)))
        .map_err(|e| error(format!("cannot start the server thread: {e}")))?;
    Ok(HttpServer { address: bound, server, thread: Some(thread) })
}

/// Sends `response`; a client gone meanwhile is only logged.
pub(crate) fn respond<R: std::io::Read>(request: Request, response: Response<R>) {
    if let Err(e) = request.respond(response) {
        tracing::debug!("HTTP request not answered: {e}");
    }
}

/// A 404 with `message` as plain text.
pub(crate) fn not_found(message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(message).with_status_code(404).with_header(content_type("text/plain; charset=utf-8"))
}

/// The `Content-Type` header.
pub(crate) fn content_type(value: &str) -> Header {
    Header::from_bytes("Content-Type", value).expect("a valid header")
}
