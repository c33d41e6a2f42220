//! Helpers shared by the integration tests.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// 2024-01-01T00:00:00Z in ns.
pub const BASE_NS: i64 = 1_704_067_200_000_000_000;

/// `key STRING, ts TIMESTAMP, value BIGINT`.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("value", DataType::Int64, true),
    ]))
}

/// Rows `(key, seconds after 2024-01-01T00:00:00Z, value)`.
pub fn events(rows: &[(&str, i64, i64)]) -> RecordBatch {
    let keys = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let ts = TimestampNanosecondArray::from(rows.iter().map(|r| BASE_NS + r.1 * 1_000_000_000).collect::<Vec<_>>());
    let values = Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
    RecordBatch::try_new(events_schema(), vec![Arc::new(keys), Arc::new(ts), Arc::new(values)]).unwrap()
}

/// Each row as `cell,cell,...`, timestamps as `HH:MM:SS` of 2024-01-01 (or the full date when not).
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    rows_with(batches, &FormatOptions::default().with_timestamp_format(Some("%H:%M:%S")).with_null("null"))
}

/// Each row as `cell,cell,...`, each cell formatted with `options`.
pub fn rows_with(batches: &[RecordBatch], options: &FormatOptions) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c.value(row).to_string()).collect::<Vec<_>>().join(","));
        }
    }
    out
}

/// State partitions of the harnesses' queries: fixed, so that the order of rows within a batch
/// (which follows the partitions) is the same on every machine.
pub const TEST_PARTITIONS: usize = 2;

/// `rows` sorted: for comparing batches whose row order is not defined (it follows the state
/// partitions, as in Spark).
pub fn sorted<S: AsRef<str>>(rows: &[S]) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|r| r.as_ref().to_string()).collect();
    rows.sort();
    rows
}

/// The environment variable naming the state store the stateful operators' tests run on: `memory`
/// (unset: the default) or `rocksdb`. `scripts/test.sh` runs those tests once on each, a test
/// matrix over one set of tests.
pub const STATE_STORE_VAR: &str = "SLUICE_TEST_STATE_STORE";

/// A new context whose queries keep their state in the store [`STATE_STORE_VAR`] names.
pub async fn context() -> StreamContext {
    let mut ctx = StreamContext::new();
    if let Ok(store) = std::env::var(STATE_STORE_VAR) {
        ctx.set("sluice.state_store", &store).await.unwrap_or_else(|e| panic!("{STATE_STORE_VAR}={store}: {e}"));
    }
    ctx
}

/// A context with one memory stream `events` (watermark on `ts` with `delay_s`) and a memory sink
/// `out` in `mode`, running `select` as `INSERT INTO out <select>` at an in-memory checkpoint.
pub struct Harness {
    pub stream: MemoryStream,
    pub sink: MemorySink,
    pub query: StreamingQuery,
}

impl Harness {
    pub async fn new(mode: OutputMode, delay_s: Option<i64>, select: &str) -> sluice::Result<Self> {
        Self::at_checkpoint(mode, delay_s, select, "memory://").await
    }

    pub async fn at_checkpoint(
        mode: OutputMode,
        delay_s: Option<i64>,
        select: &str,
        checkpoint: &str,
    ) -> sluice::Result<Self> {
        let mut ctx = context().await;
        let stream = ctx.register_memory_stream("events", events_schema(), delay_s.map(|d| ("ts", d * 1000)))?;
        let sink = MemorySink::new();
        let for_query = sink.clone();
        ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
        let sql = format!("SET spark.sql.shuffle.partitions = {TEST_PARTITIONS}; INSERT INTO out {select}");
        let definitions = ctx.execute(&sql).await?;
        let query = ctx.start(&definitions[0], checkpoint).await?;
        Ok(Self { stream, sink, query })
    }

    /// Pushes `rows` as one batch and runs it; returns the rows the sink got from it.
    pub async fn batch(&mut self, input: &[(&str, i64, i64)]) -> Vec<String> {
        self.stream.push(events(input)).unwrap();
        assert!(self.query.run_next_batch().await.unwrap(), "a batch with data runs");
        self.last_output()
    }

    /// Runs the next batch without new data, if one is due; `None` if none ran.
    pub async fn no_data_batch(&mut self) -> Option<Vec<String>> {
        self.query.run_next_batch().await.unwrap().then(|| self.last_output())
    }

    pub fn last_output(&self) -> Vec<String> {
        let batches = self.sink.batches();
        rows(batches.values().last().unwrap())
    }

    pub fn last_dropped(&self) -> u64 {
        self.query.recent_progress().last().unwrap().late_rows_dropped()
    }
}

/// The tumbling-window query of `../shared/semantics/tumble_append`.
pub const TUMBLE: &str =
    "SELECT window.start AS wstart, window.end AS wend, key, count(*) AS cnt, sum(value) AS total \
                          FROM events GROUP BY window(ts, '10 seconds'), key";

/// The same with 10 s windows sliding every 5 s.
pub const SLIDE: &str = "SELECT window.start AS wstart, window.end AS wend, key, count(*) AS cnt, sum(value) AS total \
                         FROM events GROUP BY window(ts, '10 seconds', '5 seconds'), key";

/// The input of `../shared/semantics/tumble_append`, one slice per micro-batch.
pub const TUMBLE_INPUT: [&[(&str, i64, i64)]; 5] = [
    &[("a", 1, 1), ("a", 5, 2), ("b", 12, 3)],
    &[("a", 8, 4), ("a", 25, 5)],
    &[("a", 3, 6), ("b", 14, 7), ("a", 30, 8)],
    &[("a", 4, 9), ("a", 6, 14), ("b", 19, 10), ("c", 15, 11), ("a", 31, 12)],
    &[("a", 45, 13)],
];

/// Sliding-window input: `t=4` in batch 2 is late for window [-5 s, 5 s) but not for [0, 10 s).
pub const SLIDE_INPUT: [&[(&str, i64, i64)]; 3] =
    [&[("k", 3, 1), ("k", 12, 2)], &[("k", 7, 3)], &[("k", 30, 4), ("k", 4, 5)]];

/// Copies the files of `src` into `dst`, giving them increasing modification times in name order
/// (a fresh clone gives no such guarantee, and the file source orders by modification time).
pub fn copy_in_order(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(src).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let base = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (i, name) in names.iter().enumerate() {
        let target = dst.join(name);
        std::fs::copy(src.join(name), &target).unwrap();
        let file = std::fs::File::options().write(true).open(&target).unwrap();
        file.set_modified(base + std::time::Duration::from_secs(i as u64)).unwrap();
    }
}

/// Writes `text` as file `name` in `dir` with a modification time `seq` seconds after a fixed base,
/// atomically (a hidden temporary file renamed), as a producer must for a file source.
pub fn write_file(dir: &std::path::Path, name: &str, text: &str, seq: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).unwrap();
    let base = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let file = std::fs::File::options().write(true).open(&temporary).unwrap();
    file.set_modified(base + std::time::Duration::from_secs(seq)).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

/// The rows of a JSON file sink directory, by batch id (from `part-<batch>-<n>.json` names).
pub fn sink_rows_by_batch(dir: &std::path::Path) -> std::collections::BTreeMap<u64, Vec<serde_json::Value>> {
    let mut out = std::collections::BTreeMap::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    for name in names {
        let batch: u64 = name[5..13].parse().unwrap();
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let rows: &mut Vec<serde_json::Value> = out.entry(batch).or_default();
        rows.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
    }
    out
}

/// Runs the SQL script `sql` to completion with the available-now trigger at `checkpoint`.
pub async fn run_script(sql: &str, checkpoint: &std::path::Path) -> sluice::Result<Vec<sluice::QueryProgress>> {
    let mut ctx = context().await;
    let definitions = ctx.execute(sql).await?;
    let query = ctx.start(&definitions[0], checkpoint.to_str().unwrap()).await?;
    query.run(sluice::Trigger::AvailableNow).await?;
    Ok(query.recent_progress().to_vec())
}
