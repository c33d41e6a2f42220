//! Kafka throughput on librdkafka's mock cluster: records/s the Kafka source reads into a query
//! that discards them, and records/s through a query into the Kafka sink, at-least-once and
//! exactly-once; the flight-delays aggregation over Kafka and over files. A benchmark, not a
//! test: every case runs `sluice run --trigger available-now` as a child process, and the
//! figures that matter are ratios to a baseline measured in the same run (the same query over
//! the same JSON lines read from files), with each process's CPU time.
//!
//! The broker is the mock cluster, in this benchmark's process: its CPU time (every thread of
//! this process, so the producer loading the topics too, which is measured apart) is the
//! broker's, the child's (from `/proc/self/stat`'s waited-for children) is sluice's. The mock
//! keeps at most 5 MB per partition, so the events (about 60 bytes each) stay below 60 000 a
//! partition.
//!
//! ```sh
//! cargo bench --bench kafka_throughput [-- --events 200000]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sluice::kafka::{produce_files, ProduceOptions};

/// Partitions of every topic.
const PARTITIONS: i32 = 4;
/// Micro-batches of the event cases: files, and `max_offsets_per_trigger` = events / BATCHES.
const BATCHES: u64 = 10;
/// Distinct keys of the events.
const KEYS: u64 = 1000;

/// CPU seconds (user + system) of this process and of its waited-for children, from
/// `/proc/self/stat` (`utime`, `stime`, `cutime`, `cstime`).
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (ticks(11) + ticks(12), ticks(13) + ticks(14))
}

fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Writes `events` JSON lines into [`BATCHES`] files under `dir`: key `k<i % KEYS>`, one event
/// per ms of event time, value `i`.
fn write_events(dir: &Path, events: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let per_file = events / BATCHES;
    (0..BATCHES)
        .map(|f| {
            let path = dir.join(format!("events-{f:02}.jsonl"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
            for i in f * per_file..(f + 1) * per_file {
                let (s, ms) = (i / 1000, i % 1000);
                let ts = format!("2024-01-01T{:02}:{:02}:{:02}.{ms:03}Z", s / 3600 % 24, s / 60 % 60, s % 60);
                writeln!(out, r#"{{"key":"k{}","ts":"{ts}","value":{i}}}"#, i % KEYS).expect("write");
            }
            out.flush().expect("flush");
            path
        })
        .collect()
}

/// What one case measured.
struct Figures {
    rows: u64,
    batches: usize,
    /// Wall seconds of the child, from start to exit.
    wall: f64,
    /// Seconds inside batches (the sum of the progress lines' `triggerExecution`).
    in_batches: f64,
    /// CPU seconds of the child (sluice) and of this process (the broker).
    sluice_cpu: f64,
    broker_cpu: f64,
}

/// Runs `sql` with `sluice run` in a directory of its own under `scratch`.
fn run(scratch: &Path, name: &str, sql: &str) -> Figures {
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let script = dir.join("query.sql");
    std::fs::write(&script, sql).expect("script");
    let progress = dir.join("progress.jsonl");
    let (cpu_before, started) = (cpu(), Instant::now());
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", script.to_str().expect("utf-8"), "--trigger", "available-now", "--checkpoint"])
        .arg(dir.join("checkpoint"))
        .arg("--progress")
        .arg(&progress)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sluice runs");
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = cpu();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&progress)
        .expect("progress")
        .lines()
        .map(|l| serde_json::from_str(l).expect("progress JSON"))
        .collect();
    Figures {
        rows: lines.iter().filter_map(|l| l["numInputRows"].as_u64()).sum(),
        batches: lines.len(),
        wall,
        in_batches: lines.iter().filter_map(|l| l["durationMs"]["triggerExecution"].as_f64()).sum::<f64>() / 1000.0,
        sluice_cpu: cpu_after.1 - cpu_before.1,
        broker_cpu: cpu_after.0 - cpu_before.0,
    }
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<34} {:>8} {:>4} {:>7.2} {:>7.2} {:>10.0} {:>7.2} {:>7.2}",
        f.rows,
        f.batches,
        f.wall,
        f.in_batches,
        f.rows as f64 / f.in_batches,
        f.sluice_cpu,
        f.broker_cpu
    );
}

/// The flights example over files in `dir` or over topic `flights`, into a file sink.
fn flights_sql(kafka: Option<(&str, u64)>, dir: &Path, out: &Path) -> String {
    let console = "CREATE TABLE hourly_delays WITH (connector = 'console', output_mode = 'append', num_rows = '10');";
    let sink =
        format!("CREATE TABLE hourly_delays WITH (connector = 'file', path = '{}', format = 'json');", out.display());
    let sql = match kafka {
        Some((servers, per_batch)) => std::fs::read_to_string("sql/examples/kafka_flight_delays.sql")
            .expect("example")
            .replace("bootstrap_servers = 'localhost:9092'", &format!("bootstrap_servers = '{servers}'"))
            .replace("format = 'json'", &format!("format = 'json', max_offsets_per_trigger = '{per_batch}'")),
        None => std::fs::read_to_string("sql/examples/flight_delays.sql")
            .expect("example")
            .replace("path = 'data/flights'", &format!("path = '{}'", dir.display())),
    };
    assert!(sql.contains(console), "the example's sink");
    sql.replace(console, &sink)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000u64);
    let scratch = tempfile::tempdir().expect("tempdir");
    let input = scratch.path().join("events");
    let files = write_events(&input, events);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).expect("mock cluster");
    let servers = mock.bootstrap_servers();
    for topic in ["events", "flights", "out-alo", "out-eo"] {
        mock.create_topic(topic, PARTITIONS, 1).expect("topic");
    }
    // The mock cluster has no CreateTopics: the exactly-once sink's marker topic is made here.
    mock.create_topic("out-eo.sluice-commits", 1, 1).expect("topic");
    let produce = |topic: &str, files: &[PathBuf]| {
        let options = ProduceOptions {
            bootstrap_servers: servers.clone(),
            topic: topic.to_string(),
            partitions: None,
            key: None,
        };
        let (cpu_before, started) = (cpu().0, Instant::now());
        let n = runtime.block_on(produce_files(&options, files)).expect("produce");
        (n, started.elapsed().as_secs_f64(), cpu().0 - cpu_before)
    };
    let (produced, seconds, produce_cpu) = produce("events", &files);
    assert_eq!(produced, events);
    let mut flight_files: Vec<PathBuf> =
        std::fs::read_dir("data/flights").expect("data/flights").map(|e| e.expect("entry").path()).collect();
    flight_files.sort();
    let (flights, _, _) = produce("flights", &flight_files);
    let flights_dir = scratch.path().join("flights");
    std::fs::create_dir_all(&flights_dir).expect("mkdir");
    // In name order, oldest first: the file source orders by modification time.
    for (i, file) in flight_files.iter().enumerate() {
        let target = flights_dir.join(file.file_name().expect("name"));
        std::fs::copy(file, &target).expect("copy");
        let time = std::time::SystemTime::now() - std::time::Duration::from_secs(3600 - i as u64);
        std::fs::File::options().write(true).open(&target).expect("open").set_modified(time).expect("mtime");
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{events} JSON events in {PARTITIONS} partitions / {BATCHES} files, {BATCHES} batches; {cores} cores; load {}",
        load()
    );
    println!(
        "produce into the mock cluster: {:.0} records/s ({seconds:.2} s, CPU {produce_cpu:.2} s, producer and broker)",
        events as f64 / seconds
    );
    println!(
        "kafka: the Kafka source (its fetch wait is 10 ms); kafka 500 ms: librdkafka's default wait; CPU in seconds"
    );
    println!(
        "{:<34} {:>8} {:>4} {:>7} {:>7} {:>10} {:>7} {:>7}",
        "case", "rows", "bat", "wall s", "batch s", "rows/s", "sluice", "broker"
    );
    let per_batch = events / BATCHES;
    let kafka_source = format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT) WITH (connector = 'kafka', \
         bootstrap_servers = '{servers}', topic = 'events', starting_offsets = 'earliest', \
         max_offsets_per_trigger = '{per_batch}');"
    );
    let file_source = format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT) WITH (connector = 'file', path = '{}', \
         format = 'json', max_files_per_trigger = '1');",
        input.display()
    );
    let discard = |name: &str| {
        let out = scratch.path().join(name).join("out");
        format!(
            "CREATE TABLE sink WITH (connector = 'file', path = '{}', format = 'json');\n\
             INSERT INTO sink SELECT key, ts, value FROM events WHERE value < 0;",
            out.display()
        )
    };
    let kafka_sink = |topic: &str, delivery: &str| {
        format!(
            "CREATE TABLE sink WITH (connector = 'kafka', bootstrap_servers = '{servers}', topic = '{topic}', \
             delivery = '{delivery}');\nINSERT INTO sink SELECT key, ts, value FROM events;"
        )
    };
    // librdkafka's consumer waits up to fetch.wait.max.ms (500 ms by default) for a fetch that
    // finds no new data; the source sets 10 ms, the second case librdkafka's default.
    let slow_source = kafka_source.replace("');", "', 'kafka.fetch.wait.max.ms' = '500');");
    let cases = [
        ("files -> discard (baseline)", format!("{file_source}\n{}", discard("files-discard"))),
        ("kafka 500 ms -> discard", format!("{slow_source}\n{}", discard("kafka-slow-discard"))),
        ("kafka -> discard", format!("{kafka_source}\n{}", discard("kafka-discard"))),
        ("kafka -> kafka at-least-once", format!("{kafka_source}\n{}", kafka_sink("out-alo", "at_least_once"))),
        ("kafka -> kafka exactly-once", format!("{kafka_source}\n{}", kafka_sink("out-eo", "exactly_once"))),
        ("files -> flight delays (baseline)", flights_sql(None, &flights_dir, &scratch.path().join("flights-out"))),
        (
            "kafka -> flight delays",
            flights_sql(Some((&servers, flights / 31 + 1)), &flights_dir, &scratch.path().join("kafka-flights-out")),
        ),
    ];
    let mut figures = Vec::new();
    for (i, (name, sql)) in cases.iter().enumerate() {
        let f = run(scratch.path(), &format!("case-{i}"), sql);
        print(name, &f);
        figures.push(f);
    }
    let rate = |f: &Figures| f.rows as f64 / f.in_batches;
    let ratio = |a: usize, b: usize| {
        let (a, b) = (&figures[a], &figures[b]);
        format!(
            "rows/s x{:.2}, wall x{:.2}, sluice CPU x{:.2}",
            rate(a) / rate(b),
            a.wall / b.wall,
            a.sluice_cpu / b.sluice_cpu.max(0.01)
        )
    };
    println!("kafka source / file source (discard):       {}", ratio(2, 0));
    println!("kafka source, fetch wait 10 ms / 500 ms:    {}", ratio(2, 1));
    println!("kafka source, fetch wait 10 ms / files:     {}", ratio(2, 0));
    println!("exactly-once / at-least-once (kafka sink):  {}", ratio(4, 3));
    println!("exactly-once sink / discard (kafka source): {}", ratio(4, 2));
    println!("flight delays, kafka / files:               {}", ratio(6, 5));
    println!("load after: {}", load());
}
