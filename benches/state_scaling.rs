//! Batch duration against the state held: a window aggregation and a stream-stream join whose
//! state holds N keys (rows), each measured batch bringing 10K rows that touch 10K of them and
//! moving the watermark. Work per batch should follow the rows that arrive, so the duration at
//! 10M should stay within 2x of the duration at 100K. A benchmark, not a test: figures are ratios
//! against the smallest size measured in the same run, with CPU time and peak memory.
//!
//! ```sh
//! cargo bench --bench state_scaling [-- --sizes 100000,1000000,10000000]
//! ```

mod common;

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

struct Measured {
    median: Duration,
    max: Duration,
    cpu_s: f64,
}

/// Runs `batches` measured batches (each pushed by `push(i)`) and times them.
async fn measure(query: &StreamingQuery, mut push: impl FnMut(usize)) -> Measured {
    let cpu = cpu_seconds();
    let mut times = Vec::with_capacity(BATCHES);
    for i in 0..BATCHES {
        push(i);
        let start = Instant::now();
        assert!(query.run_next_batch().await.expect("batch"), "a batch with data runs");
        times.push(start.elapsed());
    }
    times.sort();
    Measured { median: times[BATCHES / 2], max: times[BATCHES - 1], cpu_s: cpu_seconds() - cpu }
}

async fn start(ctx: &mut StreamContext, select: &str) -> StreamingQuery {
    common::start(ctx, OutputMode::Append, select, "memory://").await
}

/// A 1-hour window count per key, state N groups; each batch moves the watermark by 1 ms
/// without closing the window.
async fn aggregation(n: usize) -> Measured {
    let mut ctx = StreamContext::new();
    let s = ctx.register_memory_stream("s", common::schema(), Some(("ts", 0))).expect("stream");
    let query = start(
        &mut ctx,
        "SELECT window.start AS ws, key, count(*) AS c, sum(value) AS total FROM s GROUP BY window(ts, '1 hour'), key",
    )
    .await;
    prefill(&s, &query, n).await;
    measure(&query, |i| s.push(touching(n, TOUCHED, TOUCHED, i)).expect("push")).await
}

/// `a JOIN b` on the key within an hour; `a` buffers N rows; each batch brings 10K `b` rows,
/// each matching one buffered `a` row, and moves the watermark by 1 ms.
async fn join(n: usize) -> Measured {
    let mut ctx = StreamContext::new();
    let a = ctx.register_memory_stream("a", common::schema(), Some(("ts", 0))).expect("stream");
    let b = ctx.register_memory_stream("b", common::schema(), Some(("ts", 0))).expect("stream");
    let query = start(
        &mut ctx,
        "SELECT a.key, a.value, b.value AS v2 FROM a JOIN b ON a.key = b.key \
         AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR",
    )
    .await;
    prefill(&a, &query, n).await;
    measure(&query, |i| b.push(touching(n, TOUCHED, TOUCHED, i)).expect("push")).await
}

/// The allocator the `sluice` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip_while(|a| a != "--sizes")
        .nth(1)
        .map(|s| s.split(',').map(|n| n.trim().parse().expect("a size")).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("state scaling: {TOUCHED} rows touching {TOUCHED} keys per batch, median of {BATCHES} batches");
    for (name, run) in [("window aggregation", 0), ("stream-stream join", 1)] {
        let mut base: Option<Duration> = None;
        for &n in &sizes {
            let m = runtime.block_on(async {
                match run {
                    0 => aggregation(n).await,
                    _ => join(n).await,
                }
            });
            let base = *base.get_or_insert(m.median);
            println!(
                "{name:<20} state {n:>10}: median {:>8.2} ms (x{:.2} of {} keys), max {:>8.2} ms, \
                 CPU {:.2} s for {BATCHES} batches, peak RSS {:.0} MB",
                m.median.as_secs_f64() * 1e3,
                m.median.as_secs_f64() / base.as_secs_f64(),
                sizes[0],
                m.max.as_secs_f64() * 1e3,
                m.cpu_s,
                peak_rss_mb()
            );
        }
    }
}
