//! Throughput of the flight-delays query and of the flights ⋈ weather stream-stream join over the
//! full nycflights13 year, and the duration of an empty micro-batch. A benchmark, not a test:
//! figures are reported as ratios against a baseline measured in the same run (a stateless query
//! reading and decoding the same files), with the machine's load; the join also reports its state rows and bytes.
//!
//! ```sh
//! cargo bench --bench flights [-- [--empty-only] PATH/TO/flights.jsonl.gz]
//! ```
//! The default input is `../shared/data/nycflights13/flights.jsonl.gz`; the weather is read from
//! `weather.jsonl.gz` beside it. `--empty-only` runs only the empty micro-batches (no input is read).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use sluice::{StreamContext, Trigger};

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a gzipped year into one JSON-lines file per day (`day_of(row)`), in input order.
fn split_by_day(src: &Path, dir: &Path, day_of: impl Fn(&serde_json::Value) -> String) -> usize {
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(src).expect("input")));
    let mut current: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
    let mut files = 0;
    for line in reader.lines() {
        let line = line.expect("line");
        let row: serde_json::Value = serde_json::from_str(&line).expect("json");
        let arrival = day_of(&row);
        if current.as_ref().map(|(d, _)| d != &arrival).unwrap_or(true) {
            let path = dir.join(format!("{arrival}-{files:04}.jsonl"));
            current = Some((arrival, std::io::BufWriter::new(std::fs::File::create(path).expect("create"))));
            files += 1;
        }
        writeln!(current.as_mut().expect("set").1, "{line}").expect("write");
    }
    files
}

/// The allocator the `sluice` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time (user + system) used by this process so far, from `/proc/self/stat` (clock ticks of
/// 10 ms); `None` where that file cannot be read.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn main() {
    let empty_only = std::env::args().any(|a| a == "--empty-only");
    let src = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/nycflights13/flights.jsonl.gz"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("flights");
    std::fs::create_dir(&input).expect("mkdir");
    if !empty_only {
        let files = split_by_day(&src, &input, |row| {
            row["dep_ts"].as_str().or(row["sched_dep_ts"].as_str()).expect("a time")[..10].to_string()
        });
        println!("input: {} ({files} files); load before: {}", src.display(), load());
    }

    let sql = std::fs::read_to_string("sql/examples/flight_delays.sql")
        .expect("run from the repository root")
        .replace("path = 'data/flights'", &format!("path = '{}'", input.display()))
        .replace(
            "WITH (connector = 'console', output_mode = 'append', num_rows = '10')",
            &format!("WITH (connector = 'file', path = '{}', format = 'json')", dir.path().join("out").display()),
        );

    let full_year_mean_batch = (!empty_only).then(|| full_year(&runtime, &sql, &src, &input, dir.path()));
    let empty_sql = sql.replace(&input.display().to_string(), &dir.path().join("empty").display().to_string());
    let checkpoint = dir.path().join("cp-empty").display().to_string();
    empty_batches(&runtime, "empty micro-batch", &empty_sql, &checkpoint, dir.path(), full_year_mean_batch);
    // The same without any disk write: in-memory checkpoint and sink (the engine's own cost).
    let memory_sql = empty_sql.replace(
        &format!("WITH (connector = 'file', path = '{}', format = 'json')", dir.path().join("out").display()),
        "WITH (connector = 'memory')",
    );
    empty_batches(
        &runtime,
        "empty micro-batch, in-memory checkpoint and sink",
        &memory_sql,
        "memory://",
        dir.path(),
        None,
    );
    // After the batches: the probe's files would slow the creation of theirs.
    disk_probe(dir.path());
}

/// What the disk holding `dir` charges for the steps of a durable write of a new small file, each
/// the median of 200: creating the file, `fsync` of its 300 bytes, `fsync` of its directory.
fn disk_probe(dir: &Path) {
    let probe = dir.join("probe");
    std::fs::create_dir(&probe).expect("mkdir");
    let directory = std::fs::File::open(&probe).expect("open the directory");
    let (mut create, mut sync_file, mut sync_dir) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..200 {
        let started = Instant::now();
        let mut file = std::fs::File::create_new(probe.join(i.to_string())).expect("create");
        create.push(started.elapsed());
        file.write_all(&[b'x'; 300]).expect("write");
        let started = Instant::now();
        file.sync_all().expect("fsync");
        sync_file.push(started.elapsed());
        let started = Instant::now();
        directory.sync_all().expect("fsync the directory");
        sync_dir.push(started.elapsed());
    }
    let median = |mut d: Vec<Duration>| {
        d.sort();
        d[d.len() / 2]
    };
    println!(
        "disk: create a file {:.2?}, fsync it {:.2?}, fsync its directory {:.2?} (medians of 200)",
        median(create),
        median(sync_file),
        median(sync_dir)
    );
}

/// The decode baseline, the flight_delays query and the join over the whole year; returns the
/// query's mean micro-batch duration.
fn full_year(runtime: &tokio::runtime::Runtime, sql: &str, src: &Path, input: &Path, dir: &Path) -> Duration {
    // Baseline: reading the same files with the same decoder and nothing else, one file per
    // micro-batch: a stateless query handing each batch to a function that counts its rows.
    let (rows, decode) = runtime.block_on(async {
        let mut ctx = StreamContext::new();
        ctx.execute(sql).await.expect("script");
        let rows = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = rows.clone();
        let started = Instant::now();
        let query = ctx
            .table("flights")
            .await
            .expect("table")
            .write_stream()
            .foreach_batch(move |_, batches| {
                let n = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
                counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })
            .trigger(Trigger::AvailableNow)
            .start()
            .await
            .expect("start");
        query.await_termination().await.expect("baseline run");
        (rows.load(std::sync::atomic::Ordering::Relaxed), started.elapsed())
    });
    let decode_rate = rows as f64 / decode.as_secs_f64();
    println!("baseline (read and decode only): {rows} rows in {decode:.2?} = {decode_rate:.0} rows/s");

    // The query: one file per micro-batch, available-now, file checkpoint.
    let (query_time, batches, late) = runtime.block_on(async {
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(sql).await.expect("script");
        let query = ctx.start(&definitions[0], dir.join("cp").to_str().expect("utf-8")).await.expect("start");
        let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let late = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (b, l) = (batches.clone(), late.clone());
        query.on_progress(move |p| {
            b.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            l.fetch_add(p.late_rows_dropped(), std::sync::atomic::Ordering::Relaxed);
        });
        let started = Instant::now();
        query.run(Trigger::AvailableNow).await.expect("run");
        (
            started.elapsed(),
            batches.load(std::sync::atomic::Ordering::Relaxed),
            late.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let query_rate = rows as f64 / query_time.as_secs_f64();
    println!(
        "flight_delays query: {rows} rows, {batches} micro-batches in {query_time:.2?} = {query_rate:.0} events/s \
         ({:.2}x the decode baseline); late rows dropped (after partial aggregation): {late}",
        query_rate / decode_rate
    );

    join_benchmark(runtime, &src.with_file_name("weather.jsonl.gz"), input, dir, decode_rate);
    query_time / batches.max(1) as u32
}

/// Empty micro-batches: the fixed cost of a batch (planning, state and log writes) of `sql`, the
/// flight_delays stateful query reading `dir/empty`, with an empty input file per batch and its
/// checkpoint at `checkpoint`; 200 batches (the first 10, warming up, not counted).
fn empty_batches(
    runtime: &tokio::runtime::Runtime,
    label: &str,
    sql: &str,
    checkpoint: &str,
    dir: &Path,
    full_year_mean_batch: Option<Duration>,
) {
    const WARM_UP: usize = 10;
    const BATCHES: usize = 200;
    let (durations, cpu) = runtime.block_on(async {
        let empty = dir.join("empty");
        let _ = std::fs::remove_dir_all(&empty);
        std::fs::create_dir(&empty).expect("mkdir");
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(sql).await.expect("script");
        let query = ctx.start(&definitions[0], checkpoint).await.expect("start");
        let mut durations = Vec::new();
        let mut cpu = Duration::ZERO;
        for i in 0..WARM_UP + BATCHES {
            std::fs::write(empty.join(format!("{i:04}.jsonl")), "").expect("write");
            std::thread::sleep(Duration::from_millis(2));
            let cpu_before = cpu_time();
            let started = Instant::now();
            assert!(query.run_next_batch().await.expect("batch"));
            let elapsed = started.elapsed();
            if i >= WARM_UP {
                durations.push(elapsed);
                cpu += cpu_time().zip(cpu_before).map(|(after, before)| after - before).unwrap_or_default();
            }
        }
        (durations, cpu)
    });
    let mut sorted = durations.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let versus_year = full_year_mean_batch
        .map(|mean| format!(" ({:.4}x a full-year run's mean batch)", median.as_secs_f64() / mean.as_secs_f64()))
        .unwrap_or_default();
    println!(
        "{label}: median {median:.2?}, p10 {:.2?}, p90 {:.2?}, mean {:.2?}, CPU {:.2?} per batch \
         over {} batches{versus_year}; load after: {}",
        sorted[sorted.len() / 10],
        sorted[sorted.len() * 9 / 10],
        sorted.iter().sum::<Duration>() / sorted.len() as u32,
        cpu / sorted.len() as u32,
        sorted.len(),
        load()
    );
}

/// flights ⋈ weather (`sql/examples/flights_weather.sql`) over the year, one day per micro-batch
/// from each source: events/s against the flights decode rate, and the join's state.
fn join_benchmark(runtime: &tokio::runtime::Runtime, weather_src: &Path, flights: &Path, dir: &Path, decode_rate: f64) {
    let weather = dir.join("weather");
    std::fs::create_dir(&weather).expect("mkdir");
    split_by_day(weather_src, &weather, |row| row["time_hour"].as_str().expect("an hour")[..10].to_string());
    let sql = std::fs::read_to_string("sql/examples/flights_weather.sql")
        .expect("run from the repository root")
        .replace("path = 'data/flights'", &format!("path = '{}'", flights.display()))
        .replace("path = 'data/weather'", &format!("path = '{}'", weather.display()))
        .replace(
            "WITH (connector = 'console', output_mode = 'append', num_rows = '5')",
            &format!("WITH (connector = 'file', path = '{}', format = 'json')", dir.join("joined").display()),
        );
    let progress = runtime.block_on(async {
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(&sql).await.expect("script");
        let query = ctx.start(&definitions[0], dir.join("cp-join").to_str().expect("utf-8")).await.expect("start");
        let all = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&all);
        query.on_progress(move |p| sink.lock().expect("progress lock").push(p.clone()));
        let started = Instant::now();
        query.run(Trigger::AvailableNow).await.expect("run");
        let elapsed = started.elapsed();
        let batches = all.lock().expect("progress lock").clone();
        (elapsed, batches)
    });
    let (elapsed, batches) = progress;
    let rows: u64 = batches.iter().map(|p| p.num_input_rows).sum();
    let rate = rows as f64 / elapsed.as_secs_f64();
    println!(
        "flights_weather join: {rows} rows (flights + weather), {} micro-batches in {elapsed:.2?} = {rate:.0} events/s \
         ({:.2}x the flights decode baseline)",
        batches.len(),
        rate / decode_rate
    );
    let last_data = batches.iter().rev().find(|p| p.num_input_rows > 0).expect("a batch with data");
    for (when, p) in [("after the last data batch", last_data), ("at the end", batches.last().expect("batches"))] {
        for op in &p.state_operators {
            println!(
                "  {} state {when} (batch {}): {} rows, {} bytes",
                op.description, p.batch_id, op.num_rows_total, op.memory_used_bytes
            );
        }
    }
}
