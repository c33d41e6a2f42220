//! The live web UI (issue 12 item 3): its pages, JSON and event stream over HTTP, and the page in
//! headless Chromium while the bundled flights data streams through the flight-delays query.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::monitoring::LiveUi;
use sluice::{StreamContext, StreamingQuery, Trigger};

use crate::common::copy_in_order;

/// The repository's January 2013 flights, one file per day.
fn flights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/flights")
}

/// `sql/examples/flight_delays.sql` reading `input` (one file per batch), writing JSON files to
/// `output`.
fn flight_delays(input: &Path, output: &Path) -> String {
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/examples/flight_delays.sql"))
        .unwrap()
        .replace("path = 'data/flights'", &format!("path = '{}'", input.display()))
        .replace(
            "connector = 'console', output_mode = 'append', num_rows = '10'",
            &format!("connector = 'file', path = '{}', format = 'json'", output.display()),
        );
    assert!(example.contains(&input.display().to_string()) && example.contains(&output.display().to_string()));
    example
}

/// The flight-delays query over a copy of the flights data in `dir`, watched by a UI served on a
/// free port.
async fn watched_flights_query(dir: &Path) -> (StreamingQuery, Arc<LiveUi>, sluice::monitoring::HttpServer) {
    copy_in_order(&flights_dir(), &dir.join("in"));
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&flight_delays(&dir.join("in"), &dir.join("out"))).await.unwrap();
    let mut query = ctx.start(&definitions[0], dir.join("checkpoint").to_str().unwrap()).await.unwrap();
    let ui = Arc::new(LiveUi::new());
    ui.watch(&mut query);
    let server = sluice::monitoring::serve_ui("127.0.0.1:0", ui.clone()).unwrap();
    (query, ui, server)
}

/// A response: status, headers (names lower-cased), body (chunked transfer decoded).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_str(&self.body).unwrap()
    }
}

/// `GET path` over HTTP/1.1 with extra `headers`, read until the server closes.
fn get_with(address: SocketAddr, path: &str, headers: &str) -> Reply {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Reply { status, headers, body: String::from_utf8(body).unwrap() }
}

fn get(address: SocketAddr, path: &str) -> Reply {
    get_with(address, path, "")
}

/// The events of a `text/event-stream` body: (id, event, data).
fn parse_events(body: &str) -> Vec<(u64, String, Value)> {
    body.split("\n\n")
        .filter(|block| block.contains("data: "))
        .map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("no {name} in {block:?}"))
            };
            (
                field("id: ").parse().unwrap(),
                field("event: ").to_string(),
                serde_json::from_str(field("data: ")).unwrap(),
            )
        })
        .collect()
}

/// Follows the event stream of query `id` as a browser's `EventSource` does (reconnecting with
/// `Last-Event-ID`) until a `progress` event; every event seen, in order.
fn follow_until_progress(address: SocketAddr, id: &str) -> Vec<(u64, String, Value)> {
    let mut seen: Vec<(u64, String, Value)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|(_, kind, _)| kind == "progress") {
        assert!(Instant::now() < deadline, "no progress event in 60 s: {seen:?}");
        let last = seen.last().map(|e| format!("Last-Event-ID: {}\r\n", e.0)).unwrap_or_default();
        let reply = get_with(address, &format!("/api/query/{id}/events?after=0"), &last);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("text/event-stream; charset=utf-8"));
        assert!(reply.body.starts_with("retry: 250\n\n"), "{}", reply.body);
        seen.extend(parse_events(&reply.body));
    }
    seen
}

/// Rows in the gzipped JSON-lines files of `dir`.
fn count_rows(dir: &Path) -> u64 {
    let mut rows = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(entry.unwrap().path()).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        rows += text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_json_and_the_event_stream_follow_the_flights_query() {
    let dir = tempfile::tempdir().unwrap();
    let (query, _ui, server) = watched_flights_query(dir.path()).await;
    let address = server.local_addr();
    let id = query.id().to_string();

    let root = get(address, "/");
    assert_eq!((root.status, root.header("location")), (303, Some(format!("/query/{id}").as_str())));
    let index = get(address, "/queries");
    assert_eq!((index.status, index.header("content-type")), (200, Some("text/html; charset=utf-8")));
    assert!(index.body.contains(&format!("<a href=\"/query/{id}\">hourly_delays</a>")), "{}", index.body);
    let queries = get(address, "/api/queries").json();
    assert_eq!(queries[0]["status"], "waiting");

    // A browser following the stream from before the first batch sees the run start, then batches.
    let follower = std::thread::spawn({
        let id = id.clone();
        move || follow_until_progress(address, &id)
    });
    query.run(Trigger::AvailableNow).await.unwrap();
    let events = follower.join().unwrap();
    let kinds: Vec<&str> = events.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(kinds[..2], ["started", "progress"], "{events:?}");
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "increasing ids: {events:?}");
    assert_eq!(events[1].2["progress"]["batchId"], 0);
    assert_eq!(events[1].2["operators"], serde_json::json!(["aggregate[0]"]));

    // The recent progress: Spark's JSON of every batch, as the query's own `recent_progress`.
    let progress = get(address, &format!("/api/query/{id}/progress")).json();
    let batches = progress.as_array().unwrap();
    let expected: Vec<Value> = query.recent_progress().iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    assert_eq!(batches, &expected);
    let ids: Vec<i64> = batches.iter().map(|p| p["batchId"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
    assert!(ids.len() >= 31, "one batch per file of January: {ids:?}");
    let input: u64 = batches.iter().map(|p| p["numInputRows"].as_u64().unwrap()).sum();
    assert_eq!(input, count_rows(&flights_dir()));
    assert!(batches.iter().all(|p| p["stateOperators"][0]["operatorName"] == "stateStoreSave"));

    let view = get(address, &format!("/api/query/{id}")).json();
    assert_eq!((view["status"].as_str(), view["exception"].as_null()), (Some("terminated"), Some(())));
    assert!(view["plan"].as_str().unwrap().contains("StatefulExec: aggregate[0], state partitions="), "{view}");
    assert_eq!(view["progress"].as_array().unwrap().len(), batches.len());

    // The stream resumes after the last event seen: here, the terminated event and nothing more.
    let last = view["lastEventId"].as_u64().unwrap();
    let rest = get(address, &format!("/api/query/{id}/events?after={}", last - 1));
    let rest = parse_events(&rest.body);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!((rest[0].0, rest[0].1.as_str(), &rest[0].2["exception"]), (last, "terminated", &Value::Null));

    // The page holds its data; its script, style and the charting library are served.
    let page = get(address, &format!("/query/{id}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script id=\"query-data\" type=\"application/json\">{\"id\":"), "{}", page.body);
    for (path, kind, marker) in [
        ("/static/ui.js", "text/javascript; charset=utf-8", "new EventSource("),
        ("/static/ui.css", "text/css; charset=utf-8", ".charts"),
        ("/static/uPlot.iife.min.js", "text/javascript; charset=utf-8", "uPlot (v1.6.32)"),
        ("/static/uPlot.min.css", "text/css; charset=utf-8", ".uplot"),
    ] {
        let asset = get(address, path);
        assert_eq!((asset.status, asset.header("content-type")), (200, Some(kind)), "{path}");
        assert!(asset.body.contains(marker), "{path}");
    }
    for missing in ["/static/x.js", "/query/nope", "/api/query/nope/events", "/other/path"] {
        assert_eq!(get(address, missing).status, 404, "{missing}");
    }
}

/// How long one run of Chromium may take before it is killed: it takes a few seconds here, but a
/// browser that hangs (a pipe held by a helper process, virtual time that never advances) must fail
/// the test, not stall the whole suite.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// Runs headless Chromium on `url` with `args` (its screenshot or DOM dump), in a fresh profile,
/// and returns what it printed. Its output goes to files, not pipes, so that a helper process
/// Chromium leaves behind cannot keep the test waiting; the whole process group is killed at the
/// end, and after [`CHROMIUM_DEADLINE`] the run is killed and retried once.
fn chromium(args: &[&str], url: &str) -> String {
    use std::os::unix::process::CommandExt;
    let mut failures = Vec::new();
    for attempt in 1..=2 {
        let profile = tempfile::tempdir().unwrap();
        let stdout_path = profile.path().join("stdout");
        let stderr_path = profile.path().join("stderr");
        let started = Instant::now();
        let mut child = Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                // Containers often give /dev/shm 64 MB, too little for a 1400x1600 page.
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1400,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .args(args)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > CHROMIUM_DEADLINE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever Chromium started goes with it.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
        let _ = child.wait();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let tail: String =
            stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        match status {
            Some(status) => {
                assert!(status.success(), "chromium failed ({status}): {tail}");
                eprintln!("chromium {args:?} took {:?} (attempt {attempt})", started.elapsed());
                return std::fs::read_to_string(&stdout_path).unwrap();
            }
            None => failures.push(format!("attempt {attempt} killed after {CHROMIUM_DEADLINE:?}: {tail}")),
        }
    }
    panic!("headless Chromium did not finish: {failures:#?}");
}

/// Waits until `done` holds, at most `limit`, polling every 20 ms; panics naming `what` and the
/// last state `describe` gives otherwise.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}: {}", describe());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number of batches each chart shows in a dumped DOM (`data-points` of each chart).
fn chart_points(dom: &str) -> Vec<(String, u64)> {
    dom.split("class=\"chart\" id=\"")
        .skip(1)
        .map(|rest| {
            let id = rest[..rest.find('"').unwrap()].to_string();
            let points = rest.split("data-points=\"").nth(1).unwrap();
            (id, points[..points.find('"').unwrap()].parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_its_charts_in_headless_chromium_while_the_flights_stream() {
    if !Path::new("/usr/bin/chromium").exists() {
        if std::env::var("SLUICE_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("skipped: no /usr/bin/chromium and SLUICE_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "the web UI test needs headless Chromium: `apt-get install -y --no-install-recommends chromium` \
             (scripts/test.sh does), or set SLUICE_SKIP_BROWSER=1 to skip it"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (query, _ui, server) = watched_flights_query(dir.path()).await;
    let address = server.local_addr();
    let url = format!("http://{address}/query/{}", query.id());
    let stop = query.stop_handle();
    // A batch every 150 ms, so that the page is opened while the month streams.
    let running =
        tokio::spawn(
            async move { query.run(Trigger::ProcessingTime(Duration::from_millis(150))).await.map(|()| query) },
        );
    let batches = || get(address, "/api/queries").json()[0]["lastBatchId"].as_i64().map_or(0, |id| id + 1);
    wait_until("five batches", Duration::from_secs(120), || batches() >= 5, || get(address, "/api/queries").body).await;

    // The DOM after 2 s of the page's time, the event stream followed meanwhile.
    let before = batches();
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || chromium(&["--virtual-time-budget=2000", "--dump-dom"], &url)
    })
    .await
    .unwrap();
    let points = chart_points(&dom);
    let ids: Vec<&str> = points.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["chart-rates", "chart-duration", "chart-watermark", "chart-late", "chart-state-rows", "chart-state-bytes"]
    );
    assert!(points.iter().all(|(_, n)| *n >= before as u64), "every chart shows the batches run: {points:?}");
    assert_eq!(dom.matches("<canvas").count(), 6, "uPlot drew six charts");
    assert!(dom.contains("class=\"state\""), "the plan shows the aggregation's state");
    assert!(dom.contains("<span id=\"live\" class=\"live-live\">live</span>"), "the event stream is open");

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-flights.png");
    let _ = std::fs::remove_file(&screenshot);
    let argument = format!("--screenshot={}", screenshot.display());
    tokio::task::spawn_blocking(move || chromium(&[&argument, "--virtual-time-budget=1000"], &url)).await.unwrap();
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 50_000, "a screenshot of {} bytes", png.len());
    eprintln!("screenshot of the web UI: {}", screenshot.display());

    stop.stop();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the query stops within 60 s of stop()")
        .unwrap()
        .unwrap();
}

/// `sluice run` with `args` on the flight-delays script over a copy of the flights data in `dir`.
fn sluice_run(dir: &Path, args: &[&str]) -> Command {
    copy_in_order(&flights_dir(), &dir.join("in"));
    let script = dir.join("q.sql");
    std::fs::write(&script, flight_delays(&dir.join("in"), &dir.join("out"))).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.arg("run").arg(&script).args(args).stdout(std::process::Stdio::null());
    command
}

#[test]
fn sluice_run_serves_the_ui_and_the_metrics_on_one_address_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice_run(dir.path(), &["--ui", "localhost"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: web UI localhost: ") && stderr.contains("127.0.0.1:4040"), "{stderr}");

    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let at = address.to_string();
    let args = ["--ui", &at, "--metrics", &at, "--trigger", "200 milliseconds"];
    let child = sluice_run(dir.path(), &args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let queries = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "the UI never showed a batch");
        std::thread::sleep(Duration::from_millis(50));
        if TcpStream::connect(address).is_err() {
            continue;
        }
        let queries = get(address, "/api/queries").json();
        if queries[0]["lastBatchId"].as_i64().is_some_and(|id| id >= 1) {
            break queries;
        }
    };
    assert_eq!((queries[0]["name"].as_str(), queries[0]["status"].as_str()), (Some("hourly_delays"), Some("active")));
    let metrics = get(address, "/metrics");
    assert!(metrics.body.contains("sluice_batches_total{query=\"hourly_delays\"}"), "{}", metrics.body);
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("serving the web UI at http://{at}/")), "{stderr}");
    assert!(stderr.contains(&format!("serving Prometheus metrics at http://{at}/metrics")), "{stderr}");
}
