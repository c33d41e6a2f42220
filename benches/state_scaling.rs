//! Batch duration against the state held: a window aggregation and a stream-stream join whose
//! state holds N keys (rows), each measured batch bringing 10K rows that touch 10K of them and
//! moving the watermark. Work per batch should follow the rows that arrive, so the duration at
//! 10M should stay within 2x of the duration at 100K. A benchmark, not a test: figures are ratios
//! against the smallest size measured in the same run, with CPU time and peak memory.
//!
//! ```sh
//! cargo bench [--features rocksdb] --bench state_scaling -- [--sizes 100000,1000000,10000000]
//!     [--state-store memory|rocksdb] [--file-checkpoint]
//! ```
//!
//! `--state-store rocksdb` keeps the state on the RocksDB store (its default 256 MiB budget);
//! `--file-checkpoint` checkpoints into a local temporary directory instead of memory, and then
//! also reports the checkpoint bytes written per measured batch (deltas, and the files of the
//! snapshots that fell in the measured batches: incremental, each RocksDB SST file once). Peak RSS
//! is the process's: for a figure per size, run one size per process.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sluice::{OutputMode, StreamContext, StreamingQuery};

use common::{prefill, touching};

/// Rows (and keys touched) per measured batch.
const TOUCHED: usize = 10_000;
/// Measured batches per size.
const BATCHES: usize = 10;

/// CPU seconds used by this process so far (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Where the measured queries keep their state and checkpoint.
struct Setup {
    /// `memory` or `rocksdb`.
    state_store: String,
    /// A local checkpoint directory (else memory).
    file_checkpoint: bool,
}

/// A query's context and its checkpoint (a temporary directory, removed when dropped, or
/// memory).
struct Started {
    query: StreamingQuery,
    checkpoint: Option<tempfile::TempDir>,
}

struct Measured {
    median: Duration,
    max: Duration,
    cpu_s: f64,
    /// Checkpoint bytes written per measured batch, with a file checkpoint.
    checkpoint_bytes: Option<u64>,
}

/// Every file under `dir` with its size, by path.
fn files(dir: &Path, into: &mut BTreeMap<PathBuf, u64>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => files(&path, into),
            Ok(m) => {
                into.insert(path, m.len());
            }
            Err(_) => {}
        }
    }
}

/// Runs `batches` measured batches (each pushed by `push(i)`) and times them; with a file
/// checkpoint, counts the bytes of the checkpoint files that appear meanwhile (listed after each
/// batch, and once more after the background snapshot uploads have had a second to land).
async fn measure(started: &Started, mut push: impl FnMut(usize)) -> Measured {
    let query = &started.query;
    let mut seen = BTreeMap::new();
    let dir = started.checkpoint.as_ref().map(|d| d.path().to_path_buf());
    if let Some(dir) = &dir {
        files(dir, &mut seen);
    }
    let before = seen.clone();
    let cpu = cpu_seconds();
    let mut times = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES {
        push(i);
        let start = Instant::now();
        assert!(query.run_next_batch().await.expect("batch"), "a batch with data runs");
        times.push(start.elapsed());
        if let Some(dir) = &dir {
            files(dir, &mut seen);
        }
    }
    let cpu_s = cpu_seconds() - cpu;
    let checkpoint_bytes = match &dir {
        Some(dir) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            files(dir, &mut seen);
            let new: u64 = seen.iter().filter(|(path, _)| !before.contains_key(*path)).map(|(_, len)| len).sum();
            Some(new / BATCHES as u64)
        }
        None => None,
    };
    times.sort();
    Measured { median: times[BATCHES / 2], max: times[BATCHES - 1], cpu_s, checkpoint_bytes }
}

/// A context on the state store of `setup`.
async fn context(setup: &Setup) -> StreamContext {
    let mut ctx = StreamContext::new();
    ctx.set("sluice.state_store", &setup.state_store).await.expect("state store");
    ctx
}

async fn start(ctx: &mut StreamContext, setup: &Setup, select: &str) -> Started {
    let checkpoint = setup.file_checkpoint.then(|| tempfile::tempdir().expect("temporary directory"));
    let location = checkpoint.as_ref().map_or_else(|| "memory://".to_string(), |d| d.path().display().to_string());
    let query = common::start(ctx, OutputMode::Append, select, &location).await;
    Started { query, checkpoint }
}

/// A 1-hour window count per key, state N groups; each batch moves the watermark by 1 ms
/// without closing the window.
async fn aggregation(setup: &Setup, n: usize) -> Measured {
    let mut ctx = context(setup).await;
    let s = ctx.register_memory_stream("s", common::schema(), Some(("ts", 0))).expect("stream");
    let started = start(
        &mut ctx,
        setup,
        "SELECT window.start AS ws, key, count(*) AS c, sum(value) AS total FROM s GROUP BY window(ts, '1 hour'), key",
    )
    .await;
    prefill(&s, &started.query, n).await;
    measure(&started, |i| s.push(touching(n, TOUCHED, TOUCHED, i)).expect("push")).await
}

/// `a JOIN b` on the key within an hour; `a` buffers N rows; each batch brings 10K `b` rows,
/// each matching one buffered `a` row, and moves the watermark by 1 ms.
async fn join(setup: &Setup, n: usize) -> Measured {
    let mut ctx = context(setup).await;
    let a = ctx.register_memory_stream("a", common::schema(), Some(("ts", 0))).expect("stream");
    let b = ctx.register_memory_stream("b", common::schema(), Some(("ts", 0))).expect("stream");
    let started = start(
        &mut ctx,
        setup,
        "SELECT a.key, a.value, b.value AS v2 FROM a JOIN b ON a.key = b.key \
         AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR",
    )
    .await;
    prefill(&a, &started.query, n).await;
    measure(&started, |i| b.push(touching(n, TOUCHED, TOUCHED, i)).expect("push")).await
}

/// The allocator the `sluice` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The value after `flag` among the arguments.
fn arg(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}

fn main() {
    let sizes: Vec<usize> = arg("--sizes")
        .map(|s| s.split(',').map(|n| n.trim().parse().expect("a size")).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000]);
    let setup = Setup {
        state_store: arg("--state-store").unwrap_or_else(|| "memory".to_string()),
        file_checkpoint: std::env::args().any(|a| a == "--file-checkpoint"),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "state scaling: {TOUCHED} rows touching {TOUCHED} keys per batch, median of {BATCHES} batches; \
         {} state store, checkpoint {}",
        setup.state_store,
        if setup.file_checkpoint { "in a local directory" } else { "in memory" }
    );
    for (name, run) in [("window aggregation", 0), ("stream-stream join", 1)] {
        let mut base: Option<Duration> = None;
        for &n in &sizes {
            let m = runtime.block_on(async {
                match run {
                    0 => aggregation(&setup, n).await,
                    _ => join(&setup, n).await,
                }
            });
            let base = *base.get_or_insert(m.median);
            println!(
                "{name:<20} state {n:>10}: median {:>8.2} ms (x{:.2} of {} keys), max {:>8.2} ms, \
                 CPU {:.2} s for {BATCHES} batches, peak RSS {:.0} MB{}",
                m.median.as_secs_f64() * 1e3,
                m.median.as_secs_f64() / base.as_secs_f64(),
                sizes[0],
                m.max.as_secs_f64() * 1e3,
                m.cpu_s,
                peak_rss_mb(),
                m.checkpoint_bytes.map_or(String::new(), |b| format!(", checkpoint {b} bytes per batch"))
            );
        }
    }
}
