//! Progress reports, listeners and the Prometheus endpoint of a running query (issue 12).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::monitoring::PrometheusMetrics;
use sluice::{OutputMode, QueryProgress, StreamContext, StreamingQueryListener, Trigger};
use sluice::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent};

use crate::common::*;

/// Every event a listener received, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started(QueryStartedEvent),
    Progress(QueryProgress),
    Idle(QueryIdleEvent),
    Terminated(QueryTerminatedEvent),
}

impl StreamingQueryListener for Recorder {
    fn on_query_started(&self, event: &QueryStartedEvent) {
        self.0.lock().unwrap().push(Event::Started(event.clone()));
    }
    fn on_query_progress(&self, progress: &QueryProgress) {
        self.0.lock().unwrap().push(Event::Progress(progress.clone()));
    }
    fn on_query_idle(&self, event: &QueryIdleEvent) {
        self.0.lock().unwrap().push(Event::Idle(event.clone()));
    }
    fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
        self.0.lock().unwrap().push(Event::Terminated(event.clone()));
    }
}

#[tokio::test]
async fn a_listener_receives_every_event_in_order() {
    let mut h = Harness::new(OutputMode::Append, Some(10), TUMBLE).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    h.query.add_listener(recorder.clone());
    h.query.set_no_data_progress_event_interval(Duration::ZERO);

    h.batch(TUMBLE_INPUT[0]).await;
    assert!(h.no_data_batch().await.is_some(), "the watermark advanced to 2 s: a no-data batch, as Spark");
    assert_eq!(h.no_data_batch().await, None, "nothing due: an idle trigger");
    h.batch(TUMBLE_INPUT[1]).await;
    // Available-now: the no-data batch the watermark's advance to 15 s makes due, then idle.
    h.query.run(Trigger::AvailableNow).await.unwrap();

    let events = recorder.0.lock().unwrap().clone();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Started(_) => "started".to_string(),
            Event::Progress(p) => format!("progress {}", p.batch_id),
            Event::Idle(_) => "idle".to_string(),
            Event::Terminated(t) => format!("terminated {:?}", t.exception),
        })
        .collect();
    assert_eq!(
        kinds,
        ["started", "progress 0", "progress 1", "idle", "progress 2", "progress 3", "idle", "terminated None"],
        "{events:#?}"
    );
    let Event::Started(started) = &events[0] else { unreachable!() };
    assert_eq!((started.id.as_str(), started.name.as_str()), (h.query.id(), "out"));
    for e in &events {
        let (id, run_id) = match e {
            Event::Started(e) => (&e.id, &e.run_id),
            Event::Progress(p) => (&p.id, &p.run_id),
            Event::Idle(e) => (&e.id, &e.run_id),
            Event::Terminated(e) => (&e.id, &e.run_id),
        };
        assert_eq!((id, run_id), (&started.id, &started.run_id), "one query, one run: {e:?}");
    }
    assert_eq!(h.query.run_id(), None, "the run ended");
    // Spark keeps idle reports in recentProgress too, with the last batch's id and no input.
    let recent: Vec<(i64, u64)> = h.query.recent_progress().iter().map(|p| (p.batch_id, p.num_input_rows)).collect();
    assert_eq!(recent, [(0, 3), (1, 0), (1, 0), (2, 2), (3, 0), (3, 0)]);
    let idle = &h.query.recent_progress()[2];
    assert_eq!(idle.state_operators[0].num_rows_total, 2, "state size kept");
    assert_eq!(idle.state_operators[0].num_rows_updated, 0, "per-batch counts zeroed");
    assert_eq!(idle.event_time.get("watermark").map(String::as_str), Some("2024-01-01T00:00:02.000Z"));
    assert_eq!(idle.sources[0].start_offset, idle.sources[0].end_offset, "no input");
}

/// Runs the worked example's script to completion with `listener` registered.
async fn run_worked_example(dir: &Path, listener: Arc<dyn StreamingQueryListener>) {
    let (input, output) = (dir.join("in"), dir.join("out"));
    copy_in_order(Path::new("tests/data/tumble_append/input/events"), &input);
    let sql = crate::worked_example::SCRIPT
        .replace("{in}", input.to_str().unwrap())
        .replace("{out}", output.to_str().unwrap());
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&sql).await.unwrap();
    let query = ctx.start(&definitions[0], dir.join("checkpoint").to_str().unwrap()).await.unwrap();
    query.add_listener(listener);
    query.run(Trigger::AvailableNow).await.unwrap();
}

/// `GET path` over HTTP/1.1; the status code and the body.
fn http_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Parses the Prometheus text format (version 0.0.4): `# HELP` and `# TYPE` lines, then samples
/// `name{label="value",...} value`, each of a family whose type was declared. Returns the samples
/// as `name{labels}` (labels sorted) to value; panics on any line outside the format.
fn parse_prometheus_text(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(_), Some(_)) => {}
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                    types.insert(name.to_string(), kind.to_string());
                }
                _ => panic!("not a HELP or TYPE line: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
            None => (series, ""),
        };
        let mut labels: Vec<(&str, &str)> = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once("=\"").unwrap_or_else(|| panic!("bad label {l}: {line}"));
                (k, v.trim_end_matches('"'))
            })
            .collect();
        labels.sort();
        let family =
            ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|f| types.contains_key(*f));
        assert!(types.contains_key(family.unwrap_or(name)), "sample of an undeclared family: {line}");
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        samples.insert(format!("{name}{{{}}}", labels.join(",")), value);
    }
    samples
}

#[tokio::test]
async fn the_metrics_endpoint_serves_the_worked_example_in_the_prometheus_text_format() {
    let metrics = Arc::new(PrometheusMetrics::new());
    let server = sluice::monitoring::serve_metrics("127.0.0.1:0", metrics.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_worked_example(dir.path(), metrics).await;

    let address = server.local_addr();
    let (status, text) = tokio::task::spawn_blocking(move || http_get(address, "/metrics")).await.unwrap();
    assert_eq!(status, 200, "{text}");
    let samples = parse_prometheus_text(&text);
    let source = format!("FileStreamSource[file:{}]", dir.path().join("in").display());
    let operator = "operator=\"stateStoreSave\",operator_id=\"0\",query=\"out\"";
    let expected = [
        ("sluice_batches_total{query=\"out\"}".to_string(), 6.0),
        (format!("sluice_input_rows_total{{query=\"out\",source=\"{source}\"}}"), 14.0),
        ("sluice_output_rows_total{query=\"out\"}".to_string(), 4.0),
        // After the no-data batch 5: the watermark 00:00:35, two windows in state, one late row
        // over the run (batch 3).
        ("sluice_watermark_timestamp_seconds{query=\"out\"}".to_string(), 1_704_067_235.0),
        (format!("sluice_state_rows{{{operator}}}"), 2.0),
        (format!("sluice_late_rows_dropped_total{{{operator}}}"), 1.0),
        (format!("sluice_bad_records_dropped_total{{query=\"out\",source=\"{source}\"}}"), 0.0),
        ("sluice_batch_duration_seconds_count{phase=\"triggerExecution\",query=\"out\"}".to_string(), 6.0),
        ("sluice_batch_duration_seconds_count{phase=\"walCommit\",query=\"out\"}".to_string(), 6.0),
        ("sluice_input_rows_per_second{query=\"out\"}".to_string(), 0.0),
        ("sluice_query_active{query=\"out\"}".to_string(), 0.0),
    ];
    for (series, value) in expected {
        assert_eq!(samples.get(&series), Some(&value), "{series} in\n{text}");
    }
    let lag = samples["sluice_watermark_lag_seconds{query=\"out\"}"];
    assert!(lag > 0.0, "the watermark (2024) is behind the wall clock: {lag}");
    assert!(samples[&format!("sluice_state_memory_bytes{{{operator}}}")] > 0.0);

    let (status, _) = tokio::task::spawn_blocking(move || http_get(address, "/other")).await.unwrap();
    assert_eq!(status, 404);
    drop(server);
}
