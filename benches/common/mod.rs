//! What the state benchmarks (`state_scaling`, `hot_paths`) share: a `key, ts, value` stream, the
//! batches that fill a state with N keys and then touch some of them, a sink that drops its rows,
//! and a query started over them with `run_next_batch` driven by the benchmark.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice::sink::Sink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// 2024-01-01T00:00:00Z in ms.
pub const T0_MS: i64 = 1_704_067_200_000;
/// Rows per prefill batch.
const PREFILL_CHUNK: usize = 1_000_000;

/// Drops the rows it is given.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn add_batch(&mut self, _batch_id: u64, _schema: &SchemaRef, _batches: &[RecordBatch]) -> sluice::Result<()> {
        Ok(())
    }
}

/// `key STRING, ts TIMESTAMP(ms), value BIGINT`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("value", DataType::Int64, true),
    ]))
}

/// Rows for keys `k{first}..k{first + n}` at `ts_ms`.
pub fn rows(first: usize, n: usize, ts_ms: i64) -> RecordBatch {
    let keys = StringArray::from_iter_values((first..first + n).map(|i| format!("k{i}")));
    let ts = TimestampMillisecondArray::from(vec![ts_ms; n]);
    let values = Int64Array::from_iter_values((first..first + n).map(|i| i as i64));
    RecordBatch::try_new(schema(), vec![Arc::new(keys), Arc::new(ts), Arc::new(values)]).expect("batch")
}

/// Measured batch `i` over a state of `state` keys: `rows` rows touching `groups` existing keys
/// spread over the state (row `j` has the `j % groups`-th), at an event time `i + 1` ms after
/// the prefill's.
pub fn touching(state: usize, rows: usize, groups: usize, i: usize) -> RecordBatch {
    let stride = (state / groups).max(1);
    let keys = StringArray::from_iter_values((0..rows).map(|j| format!("k{}", (j % groups) * stride + i % stride)));
    let ts = TimestampMillisecondArray::from(vec![T0_MS + 1 + i as i64; rows]);
    let values = Int64Array::from_iter_values((0..rows as i64).map(|j| j + i as i64));
    RecordBatch::try_new(schema(), vec![Arc::new(keys), Arc::new(ts), Arc::new(values)]).expect("batch")
}

/// Starts `INSERT INTO out <select>` into a [`DiscardSink`] in `mode`, checkpointed at
/// `checkpoint`; its batches run when the caller calls `run_next_batch`.
pub async fn start(ctx: &mut StreamContext, mode: OutputMode, select: &str, checkpoint: &str) -> StreamingQuery {
    ctx.register_sink("out", mode, || Box::new(DiscardSink));
    let definitions = ctx.execute(&format!("INSERT INTO out {select}")).await.expect("plan");
    ctx.start(&definitions[0], checkpoint).await.expect("start")
}

/// Fills the state with `n` keys at `T0`, in batches of [`PREFILL_CHUNK`] rows.
pub async fn prefill(stream: &MemoryStream, query: &StreamingQuery, n: usize) {
    let mut first = 0;
    while first < n {
        let chunk = PREFILL_CHUNK.min(n - first);
        stream.push(rows(first, chunk, T0_MS)).expect("push");
        assert!(query.run_next_batch().await.expect("prefill"), "prefill runs");
        first += chunk;
    }
}
