//! Criterion micro-benchmarks of the hot paths (issue 14): the Nexmark generator, a streaming
//! aggregation's state update, a stream-stream join's probe of its buffered side, and a batch's
//! checkpoint write. Each stateful figure is one micro-batch (`run_next_batch`) of a query whose
//! state was filled before the measurement; only the batch is timed, not building or pushing its
//! input. Throughputs are in elements: events for the generator, input rows of the batch for the
//! others.
//!
//! ```sh
//! cargo bench --bench hot_paths [-- FILTER]
//! ```
//! 10 samples, 1 s of warm-up and 3 s of measurement per benchmark (Criterion's
//! `--sample-size`, `--warm-up-time` and `--measurement-time` override them). After each
//! stateful benchmark a line gives the rows its state held, to show the measured batches did not
//! grow it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use sluice::source::nexmark::{nexmark_schema, NexmarkOptions, NexmarkSource};
use sluice::source::MemoryStream;
use sluice::{MultipleWatermarkPolicy, OutputMode, StreamContext, StreamingQuery};
use tokio::runtime::Runtime;

use common::{prefill, touching};

/// Events generated per iteration of the generator benchmark (`max_events_per_trigger`'s default:
/// one batch of a Nexmark source).
const EVENTS: u64 = 100_000;
/// Rows per measured batch of the aggregation and the join.
const ROWS: usize = 10_000;
/// Groups the aggregation's rows touch per batch (each [`ROWS`] / [`GROUPS`] times).
const GROUPS: usize = 1_000;
/// Groups in the state of the checkpoint benchmark.
const CHECKPOINT_STATE: usize = 10_000;

/// The allocator the `sluice` binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> Runtime {
    Runtime::new().expect("runtime")
}

/// A query fed from a memory stream, with the context that planned it.
struct Fed {
    _ctx: StreamContext,
    stream: MemoryStream,
    query: StreamingQuery,
    /// Measured batches run so far: the next one's `touching` index.
    batches: usize,
}

impl Fed {
    /// Runs `iters` batches, each of `batch(i)` pushed first; the time spent in the batches.
    fn run(&mut self, runtime: &Runtime, iters: u64, batch: impl Fn(usize) -> RecordBatch) -> Duration {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            self.stream.push(batch(self.batches)).expect("push");
            self.batches += 1;
            let started = Instant::now();
            let ran = runtime.block_on(self.query.run_next_batch()).expect("batch");
            spent += started.elapsed();
            assert!(ran, "a batch with data runs");
        }
        spent
    }

    /// Prints the rows the state holds after the last batch.
    fn report_state(&self, what: &str) {
        let progress = self.query.last_progress().unwrap_or_default();
        let rows: u64 = progress.state_operators.iter().map(|s| s.num_rows_total).sum();
        println!("{what}: state holds {rows} rows after {} measured batches", self.batches);
    }
}

/// The Nexmark source building the record batches of events `0..EVENTS`: the bid stream alone
/// (what most queries read) and all three streams (a query reading people, auctions and bids).
fn generator(c: &mut Criterion) {
    let source = |stream: &str| {
        let settings: BTreeMap<String, String> =
            [("stream", stream), ("num_partitions", "1")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let options = NexmarkOptions::parse(stream, &settings).expect("options");
        NexmarkSource::new(stream, nexmark_schema(options.stream), options)
    };
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(EVENTS));
    for streams in [&["bid"][..], &["person", "auction", "bid"][..]] {
        let sources: Vec<NexmarkSource> = streams.iter().map(|s| source(s)).collect();
        group.bench_function(BenchmarkId::new(streams.join("+"), EVENTS), |b| {
            b.iter(|| {
                sources
                    .iter()
                    .map(|s| s.rows(0, EVENTS).expect("rows").iter().map(RecordBatch::num_rows).sum::<usize>())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

/// `SELECT key, count(*), sum(value) ... GROUP BY key` in update mode, in-memory checkpoint:
/// one batch of [`ROWS`] rows touching [`GROUPS`] groups over a state of S groups. The time per
/// batch should follow the rows, not S.
fn aggregation(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("aggregation_update");
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(ROWS as u64));
    for state in [10_000, 100_000, 1_000_000] {
        let mut fed = runtime.block_on(aggregation_query(state, "memory://"));
        group.bench_function(BenchmarkId::new(format!("{ROWS} rows, {GROUPS} groups, state"), state), |b| {
            b.iter_custom(|iters| fed.run(&runtime, iters, |i| touching(state, ROWS, GROUPS, i)))
        });
        fed.report_state(&format!("aggregation, state {state}"));
    }
    group.finish();
}

/// The aggregation of [`aggregation`] checkpointed at `checkpoint`, its state filled with
/// `state` groups.
async fn aggregation_query(state: usize, checkpoint: &str) -> Fed {
    let mut ctx = StreamContext::new();
    let stream = ctx.register_memory_stream("s", common::schema(), None).expect("stream");
    let select = "SELECT key, count(*) AS c, sum(value) AS total FROM s GROUP BY key";
    let query = common::start(&mut ctx, OutputMode::Update, select, checkpoint).await;
    prefill(&stream, &query, state).await;
    Fed { _ctx: ctx, stream, query, batches: 0 }
}

/// `a JOIN b` on the key within an hour, `a` buffering B rows: one batch of [`ROWS`] `b` rows,
/// each matching one buffered `a` row. Under the `max` watermark policy each batch's `b` rows
/// are evicted by the next (the watermark follows `b`), so `b` buffers one batch while `a`'s
/// rows stay: the state stays the same size however many batches run.
fn join(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("join_probe");
    group.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(ROWS as u64));
    for buffered in [100_000, 1_000_000] {
        let mut fed = runtime.block_on(async {
            let mut ctx = StreamContext::new();
            ctx.set_watermark_policy(MultipleWatermarkPolicy::Max);
            let a = ctx.register_memory_stream("a", common::schema(), Some(("ts", 0))).expect("stream");
            let stream = ctx.register_memory_stream("b", common::schema(), Some(("ts", 0))).expect("stream");
            let select = "SELECT a.key, a.value, b.value AS v2 FROM a JOIN b ON a.key = b.key \
                          AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR";
            let query = common::start(&mut ctx, OutputMode::Append, select, "memory://").await;
            prefill(&a, &query, buffered).await;
            Fed { _ctx: ctx, stream, query, batches: 0 }
        });
        group.bench_function(BenchmarkId::new(format!("{ROWS} probing rows, buffered"), buffered), |b| {
            b.iter_custom(|iters| fed.run(&runtime, iters, |i| touching(buffered, ROWS, ROWS, i)))
        });
        fed.report_state(&format!("join, {buffered} buffered"));
    }
    group.finish();
}

/// The aggregation of [`aggregation`] over [`CHECKPOINT_STATE`] groups, a batch of R rows
/// touching R groups, checkpointed to a local temporary directory (offset and commit log
/// entries and a state delta per partition, each written durably: fsync of the file and its
/// directory) and, for comparison, in memory: the difference is the cost of the durable write.
fn checkpoint(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("checkpoint_write");
    group.sampling_mode(SamplingMode::Flat);
    for rows in [100, 10_000] {
        group.throughput(Throughput::Elements(rows as u64));
        let local = dir.path().join(format!("cp-{rows}")).display().to_string();
        for (name, location) in [("local dir", local.as_str()), ("memory", "memory://")] {
            let mut fed = runtime.block_on(aggregation_query(CHECKPOINT_STATE, location));
            group.bench_function(BenchmarkId::new(format!("{name}, rows"), rows), |b| {
                b.iter_custom(|iters| fed.run(&runtime, iters, |i| touching(CHECKPOINT_STATE, rows, rows, i)))
            });
            fed.report_state(&format!("checkpoint {name}, {rows} rows"));
        }
    }
    group.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = generator, aggregation, join, checkpoint
}
criterion_main!(hot_paths);
