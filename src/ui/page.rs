//! The UI's HTML pages, filled in on the server so that they show their data as soon as they
//! load: the list of queries, and a query's page with its data inlined as JSON.

use super::assets::{INDEX_HTML, QUERY_HTML};
use super::live::QueryView;

/// The list of queries, each row linking to its page.
pub(crate) fn index(queries: &[QueryView]) -> String {
    let rows: String = if queries.is_empty() {
        "<tr><td colspan=\"5\">no query yet</td></tr>".to_string()
    } else {
        queries
            .iter()
            .map(|q| {
                let last = q.progress.back();
                format!(
                    "<tr><td><a href=\"/query/{id}\">{name}</a></td><td class=\"status-{status}\">{status}</td>\
                     <td>{batch}</td><td><code>{id}</code></td><td>{error}</td></tr>",
                    id = escape(&q.id),
                    name = escape(&q.name),
                    status = q.status,
                    batch = last.map_or_else(|| "-".to_string(), |p| p.batch_id.to_string()),
                    error = escape(q.exception.as_deref().unwrap_or("")),
                )
            })
            .collect()
    };
    INDEX_HTML.replace("{{QUERIES}}", &rows)
}

/// The page of `query`.
pub(crate) fn query(query: &QueryView) -> String {
    let data = serde_json::to_string(query).expect("the query's view serializes");
    // Inside <script>, only `</` could end the element early; `<\/` is the same JSON string.
    QUERY_HTML.replace("{{NAME}}", &escape(&query.name)).replace("{{DATA}}", &data.replace("</", "<\\/"))
}

/// `text` as HTML text or attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, exception: Option<&str>) -> QueryView {
        QueryView {
            id: "q1".into(),
            name: name.into(),
            run_id: String::new(),
            status: "terminated",
            exception: exception.map(Into::into),
            plan: Some("StatefulExec: aggregate[0]".into()),
            operators: Vec::new(),
            last_event_id: 0,
            progress: Default::default(),
        }
    }

    #[test]
    fn names_and_errors_are_escaped_and_the_inlined_json_cannot_end_its_script() {
        let index = index(&[view("<b>out", Some("bad </script> & more"))]);
        assert!(index.contains("&lt;b&gt;out") && index.contains("bad &lt;/script&gt; &amp; more"), "{index}");
        let page = query(&view("out", Some("x</script><script>alert(1)</script>")));
        assert_eq!(page.matches("</script>").count(), QUERY_HTML.matches("</script>").count(), "{page}");
        let start = page.find("{\"id\"").unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["exception"], "x</script><script>alert(1)</script>");
    }
}
