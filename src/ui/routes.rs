//! The UI's paths (listed in [`super`]) and what each answers.

use std::sync::Arc;

use serde::Serialize;
use tiny_http::{Method, Request, Response};

use super::live::{LiveUi, QueryView};
use super::{assets, page, sse};
use crate::http::{content_type, not_found, respond};

/// A query in `/api/queries`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QuerySummary<'a> {
    id: &'a str,
    name: &'a str,
    run_id: &'a str,
    status: &'a str,
    exception: Option<&'a str>,
    /// The last batch shown; `None` before the first.
    last_batch_id: Option<i64>,
}

impl<'a> From<&'a QueryView> for QuerySummary<'a> {
    fn from(q: &'a QueryView) -> Self {
        QuerySummary {
            id: &q.id,
            name: &q.name,
            run_id: &q.run_id,
            status: q.status,
            exception: q.exception.as_deref(),
            last_batch_id: q.progress.back().map(|p| p.batch_id),
        }
    }
}

/// Answers `request`, a GET of a UI path, or 404 / 405.
pub(crate) fn handle(ui: &Arc<LiveUi>, request: Request) {
    if *request.method() != Method::Get {
        let response = Response::from_string("only GET is served\n").with_status_code(405);
        return respond(request, response.with_header(content_type("text/plain; charset=utf-8")));
    }
    let url = request.url().to_string();
    let (path, parameters) = url.split_once('?').unwrap_or((&url, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let unknown = |id: &str| not_found(&format!("no query with id {id}; the queries are listed at /queries\n"));
    match segments.as_slice() {
        [""] => {
            let queries = ui.queries();
            match queries.as_slice() {
                // A single query: its page is what the user is after.
                [only] => respond(request, see_other(&format!("/query/{}", only.id))),
                several => respond(request, html(page::index(several))),
            }
        }
        ["queries"] => respond(request, html(page::index(&ui.queries()))),
        ["api", "queries"] => {
            let queries = ui.queries();
            respond(request, json(&queries.iter().map(QuerySummary::from).collect::<Vec<_>>()))
        }
        ["query", id] => match ui.query(id) {
            Some(view) => respond(request, html(page::query(&view))),
            None => respond(request, unknown(id)),
        },
        ["api", "query", id] => match ui.query(id) {
            Some(view) => respond(request, json(&view)),
            None => respond(request, unknown(id)),
        },
        ["api", "query", id, "progress"] => match ui.query(id) {
            Some(view) => respond(request, json(&view.progress)),
            None => respond(request, unknown(id)),
        },
        ["api", "query", id, "events"] if ui.knows(id) => {
            let after = last_event_id(&request, parameters);
            sse::stream(ui.clone(), request, id.to_string(), after)
        }
        ["api", "query", id, "events"] => respond(request, unknown(id)),
        ["static", name] => match assets::asset(name) {
            Some((kind, text)) => respond(request, Response::from_string(text).with_header(content_type(kind))),
            None => respond(request, not_found(&format!("no file /static/{name}\n"))),
        },
        _ => respond(request, not_found("not found: the web UI's queries are listed at /queries\n")),
    }
}

/// Where an event stream resumes: the browser's `Last-Event-ID` on a reconnection, else the
/// `after` parameter the page gives, else the start of the kept events.
fn last_event_id(request: &Request, parameters: &str) -> u64 {
    let header = request.headers().iter().find(|h| h.field.equiv("Last-Event-ID")).map(|h| h.value.as_str());
    let parameter = parameters.split('&').find_map(|p| p.strip_prefix("after="));
    header.or(parameter).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// A redirection to `location` (303: GET it).
fn see_other(location: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Location", location).expect("a valid header");
    Response::from_string(format!("see {location}\n")).with_status_code(303).with_header(header)
}

fn html(text: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(text).with_header(content_type("text/html; charset=utf-8"))
}

fn json(value: &impl Serialize) -> Response<std::io::Cursor<Vec<u8>>> {
    let text = serde_json::to_string(value).expect("the UI's JSON serializes");
    Response::from_string(text).with_header(content_type("application/json"))
}
