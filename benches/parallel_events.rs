//! Multi-core scaling of one micro-batch: a 10-second tumbling count and sum per key over 4M JSON
//! events in 2 files (5-second watermark, append mode, JSON file sink), run once pinned to one
//! core (`taskset -c 0`) and once on every core, in child processes of this benchmark, so each
//! figure comes with its own CPU time and peak memory. A benchmark, not a test: the figure that
//! matters is the ratio of the two rates, measured in the same run.
//!
//! ```sh
//! cargo bench --bench parallel_events [-- --events 4000000]
//! ```
//! Needs `taskset` (util-linux).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use sluice::{StreamContext, Trigger};

const KEYS: u64 = 1000;

/// Writes `events` JSON lines into `files` files under `dir`: key `k<i % KEYS>`, one event per
/// ms of event time, value `i`.
fn write_input(dir: &Path, events: u64, files: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let per_file = events / files;
    for f in 0..files {
        let path = dir.join(format!("events-{f}.jsonl"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
        for i in f * per_file..(f + 1) * per_file {
            let (s, ms) = (i / 1000, i % 1000);
            let ts = format!("2024-01-01T{:02}:{:02}:{:02}.{ms:03}Z", s / 3600 % 24, s / 60 % 60, s % 60);
            writeln!(out, r#"{{"key":"k{}","ts":"{ts}","value":{i}}}"#, i % KEYS).expect("write");
        }
    }
}

fn sql(input: &Path, output: &Path) -> String {
    format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT,
                              WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out SELECT window.start AS start, key, count(*) AS n, sum(value) AS total
           FROM events GROUP BY window(ts, '10 seconds'), key;",
        input.display(),
        output.display()
    )
}

/// CPU seconds (user + system) and peak resident memory (MiB) of this process so far.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1));
    (cpu, hwm.and_then(|kb| kb.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0)
}

/// The child: runs the query over `input` and prints `seconds cpu_seconds peak_mib`.
fn child(input: &Path, work: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seconds = runtime.block_on(async {
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(&sql(input, &work.join("out"))).await.expect("script");
        let query = ctx.start(&definitions[0], work.join("cp").to_str().expect("utf-8")).await.expect("start");
        let started = Instant::now();
        query.run(Trigger::AvailableNow).await.expect("run");
        started.elapsed().as_secs_f64()
    });
    let (cpu, peak) = usage();
    println!("{seconds} {cpu} {peak}");
}

/// Runs the child under `pin` (e.g. `taskset -c 0`), returning its seconds, CPU seconds and MiB.
fn measure(pin: &[&str], input: &Path, scratch: &Path) -> (f64, f64, f64) {
    let work = tempfile::tempdir_in(scratch).expect("tempdir");
    let me = std::env::current_exe().expect("self");
    let mut command = match pin.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&me);
            c
        }
        None => Command::new(&me),
    };
    let out = command.args(["--child", &input.display().to_string(), &work.path().display().to_string()]).output();
    let out = out.expect("child runs");
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    (v[0], v[1], v[2])
}

/// The allocator the `sluice` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 1]), Path::new(&args[i + 2]));
        return;
    }
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000u64);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = tempfile::tempdir().expect("tempdir");
    let input = scratch.path().join("events");
    write_input(&input, events, 2);
    println!("{events} events in 2 files, {KEYS} keys; {cores} cores");
    let (t1, c1, m1) = measure(&["taskset", "-c", "0"], &input, scratch.path());
    let (tn, cn, mn) = measure(&[], &input, scratch.path());
    let (r1, rn) = (events as f64 / t1, events as f64 / tn);
    println!("one core:   {t1:.2} s = {r1:.0} events/s, CPU {c1:.2} s, peak {m1:.0} MiB");
    println!("{cores} cores: {tn:.2} s = {rn:.0} events/s, CPU {cn:.2} s, peak {mn:.0} MiB");
    println!("speed-up: {:.2}x (CPU used per second of wall time: {:.2})", rn / r1, cn / tn);
}
