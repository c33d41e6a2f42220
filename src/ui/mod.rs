//! The live web UI of running queries (`sluice run --ui ADDRESS`), in the spirit of Spark's
//! Structured Streaming tab but updated as batches complete: a page per query with charts of the
//! input and processing rates, the batch duration by phase, the watermark gap, the state rows and
//! bytes and the late rows of each stateful operator, the last batches, the incremental plan with
//! each stateful operator's state, and the error that stopped the query.
//!
//! | path | |
//! | --- | --- |
//! | `/` | the page of the query when there is one, else the list of queries |
//! | `/queries` | the queries, each linking to its page |
//! | `/query/<id>` | a query's page (its data inlined, so it renders without a request more) |
//! | `/api/queries` | the queries: `id`, `name`, `runId`, `status`, `exception`, `lastBatchId` |
//! | `/api/query/<id>` | the page's data: status, plan, operators and recent progress |
//! | `/api/query/<id>/progress` | the recent progress reports (up to 300), Spark's JSON, oldest first |
//! | `/api/query/<id>/events` | Server-Sent Events: `progress` (`{"progress": ..., "operators": [...]}`), `started`, `idle`, `terminated` (see `sse`) |
//! | `/static/<file>` | the page's script and style, and the vendored uPlot charting library |
//!
//! Public through [`crate::monitoring`].

mod assets;
mod live;
mod page;
pub(crate) mod routes;
mod sse;

use std::sync::Arc;

pub use live::LiveUi;

use crate::http::{Endpoints, HttpServer};

/// Serves `ui` at `http://<address>/` until the returned server is dropped.
/// [`crate::http::serve`] serves it with the Prometheus metrics on one address.
///
/// # Errors
/// As [`crate::http::serve`].
pub fn serve(address: &str, ui: Arc<LiveUi>) -> crate::Result<HttpServer> {
    crate::http::serve(address, Endpoints { metrics: None, ui: Some(ui) })
}
