//! The files of the UI, compiled into the binary: page templates, script, style, and uPlot.

/// The list of queries; `{{QUERIES}}` is replaced by its table rows.
pub(crate) const INDEX_HTML: &str = include_str!("assets/index.html");

/// A query's page; `{{NAME}}` and `{{DATA}}` (the query's JSON) are replaced.
pub(crate) const QUERY_HTML: &str = include_str!("assets/query.html");

/// The file served at `/static/<name>`, with its content type.
pub(crate) fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    let (content_type, text) = match name {
        "ui.js" => ("text/javascript; charset=utf-8", include_str!("assets/ui.js")),
        "ui.css" => ("text/css; charset=utf-8", include_str!("assets/ui.css")),
        "uPlot.iife.min.js" => {
            ("text/javascript; charset=utf-8", include_str!("assets/vendor/uplot/uPlot.iife.min.js"))
        }
        "uPlot.min.css" => ("text/css; charset=utf-8", include_str!("assets/vendor/uplot/uPlot.min.css")),
        _ => return None,
    };
    Some((content_type, text))
}
