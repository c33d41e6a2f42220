//! Partitioned execution: every stateful operator gives the same rows, batch by batch, whatever
//! the number of state partitions; batches large enough to be split into input partitions keep
//! their order; a replayed batch writes the same rows in the same order; a checkpoint keeps the
//! number of state partitions it was started with (Spark's `spark.sql.shuffle.partitions` rule).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice::sink::MemorySink;
use sluice::sink::Sink;
use sluice::{GroupStateTimeout, OutputMode, QueryDefinition};

use crate::common::*;

/// Rows per input batch: more than two input partitions' worth (8192 rows each at least).
const ROWS: i64 = 20_000;
/// Distinct keys.
const KEYS: i64 = 300;

/// Batch `b` of the input: `ROWS` rows over 100 s of event time starting at `b * 80` s, so
/// consecutive batches overlap (late rows and window updates) and the watermark advances; each
/// (key, second) pair repeats (duplicates for deduplication).
fn input(b: i64) -> Vec<(String, i64, i64)> {
    (0..ROWS)
        .map(|i| {
            let key = format!("k{}", (i * 7 + b) % KEYS);
            (key, b * 80 + i * 100 / ROWS, b * ROWS + i)
        })
        .collect()
}

/// A sink keeping each batch's rows, that fails once on batch `fail_on` (a crash before the
/// commit log).
struct Recorder {
    inner: MemorySink,
    fail_on: Arc<Mutex<Option<u64>>>,
}

impl Sink for Recorder {
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> sluice::Result<()> {
        let mut fail_on = self.fail_on.lock().unwrap();
        if *fail_on == Some(batch_id) {
            *fail_on = None;
            return Err(sluice::SluiceError::Sink { sink: "recorder".into(), message: "injected crash".into() });
        }
        self.inner.add_batch(batch_id, schema, batches)
    }
}

/// How a run starts and ends.
#[derive(Clone, Copy)]
struct Run {
    /// The sink fails on this batch.
    fail_on: Option<u64>,
    /// The checkpoint holds this batch uncommitted: its input and those before are pushed again
    /// before it replays (a new process refills the memory stream).
    replay: Option<usize>,
}

const CLEAN: Run = Run { fail_on: None, replay: None };

/// Runs `select` (staged by `stage`) in `mode` over three input batches and the no-data batches
/// due after them, with `partitions` state partitions at `checkpoint`; returns each batch's
/// rows in the order the sink got them.
async fn run(
    select: &str,
    mode: OutputMode,
    stage: fn(QueryDefinition) -> QueryDefinition,
    partitions: usize,
    checkpoint: &str,
    how: Run,
) -> sluice::Result<BTreeMap<u64, Vec<String>>> {
    let Run { fail_on, replay } = how;
    let mut ctx = crate::common::context().await;
    let stream = ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000)))?;
    let sink = MemorySink::new();
    let for_query = sink.clone();
    let fail_on = Arc::new(Mutex::new(fail_on));
    ctx.register_sink("out", mode, move || Box::new(Recorder { inner: for_query.clone(), fail_on: fail_on.clone() }));
    let sql = format!("SET spark.sql.shuffle.partitions = {partitions}; INSERT INTO out {select}");
    let definition = ctx.execute(&sql).await?.remove(0);
    let query = ctx.start(&stage(definition), checkpoint).await?;
    let push = |b: i64| {
        let rows = input(b);
        let rows: Vec<(&str, i64, i64)> = rows.iter().map(|(k, t, v)| (k.as_str(), *t, *v)).collect();
        stream.push(events(&rows))
    };
    let first = replay.map_or(0, |r| r + 1);
    for b in 0..first {
        push(b as i64)?;
    }
    if replay.is_some() {
        assert!(query.run_next_batch().await?, "the uncommitted batch replays");
    }
    for b in first..3 {
        push(b as i64)?;
        query.run_next_batch().await?;
    }
    while query.run_next_batch().await? {}
    Ok(sink.batches().into_iter().map(|(id, batches)| (id, rows(&batches))).collect())
}

fn sorted_batches(mut output: BTreeMap<u64, Vec<String>>) -> BTreeMap<u64, Vec<String>> {
    output.values_mut().for_each(|rows| rows.sort());
    output
}

fn unstaged(d: QueryDefinition) -> QueryDefinition {
    d
}

fn running_count(d: QueryDefinition) -> QueryDefinition {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    let schema =
        Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true), Field::new("n", DataType::Int64, false)]));
    d.flat_map_groups_with_state(&["key"], schema, GroupStateTimeout::NoTimeout, |key, rows, state| {
        let n = state.get().copied().unwrap_or(0) + rows.num_rows() as i64;
        state.update(n);
        Ok(vec![vec![key[0].clone(), ScalarValue::Int64(Some(n))]])
    })
}

fn within_watermark(d: QueryDefinition) -> QueryDefinition {
    d.drop_duplicates_within_watermark(&["key"])
}

/// One query per stateful operator (and one without state), with its output mode.
const QUERIES: [(&str, OutputMode, fn(QueryDefinition) -> QueryDefinition); 10] = [
    (TUMBLE, OutputMode::Append, unstaged),
    (
        "SELECT key, count(*) AS n, avg(value) AS mean, max(ts) AS last FROM events GROUP BY key",
        OutputMode::Update,
        unstaged,
    ),
    ("SELECT count(*) AS n, count(DISTINCT key) AS keys FROM events", OutputMode::Complete, unstaged),
    (
        "SELECT key, session_window.start AS s, session_window.end AS e, count(*) AS n FROM events
           GROUP BY key, session_window(ts, '5 seconds')",
        OutputMode::Complete,
        unstaged,
    ),
    ("SELECT DISTINCT key, ts FROM events", OutputMode::Append, unstaged),
    (
        "SELECT a.key, a.ts, a.value AS va, b.value AS vb FROM events a JOIN events b
           ON a.key = b.key AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND AND a.value % 50 = 0",
        OutputMode::Append,
        unstaged,
    ),
    ("SELECT * FROM events", OutputMode::Update, running_count),
    ("SELECT * FROM events", OutputMode::Append, within_watermark),
    (
        "SELECT key, ts, value, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY key ORDER BY value % 997 DESC) AS rn
           FROM events) AS r WHERE rn <= 3",
        OutputMode::Update,
        unstaged,
    ),
    ("SELECT key, value * 2 AS v FROM events WHERE value % 3 = 0", OutputMode::Append, unstaged),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_gives_the_same_rows_with_1_2_and_7_state_partitions() {
    for (select, mode, stage) in QUERIES {
        let one = run(select, mode, stage, 1, "memory://", CLEAN).await.unwrap();
        assert!(one.values().any(|rows| !rows.is_empty()), "{select}: some batch emits rows");
        for partitions in [2, 7] {
            let many = run(select, mode, stage, partitions, "memory://", CLEAN).await.unwrap();
            if select.contains("WHERE value") {
                // Without state, rows keep the input's order across the input partitions.
                assert_eq!(many, one, "{select}: {partitions} partitions");
            } else {
                assert_eq!(sorted_batches(many), sorted_batches(one.clone()), "{select}: {partitions} partitions");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_gives_the_same_rows_in_the_same_order() {
    for (select, mode, stage) in [QUERIES[1], QUERIES[4], QUERIES[5]] {
        let reference = run(select, mode, stage, 7, "memory://", CLEAN).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().to_str().unwrap();
        let crash = Run { fail_on: Some(1), replay: None };
        let err = run(select, mode, stage, 7, checkpoint, crash).await.unwrap_err();
        assert!(err.to_string().contains("injected crash"), "{err}");
        let replayed = run(select, mode, stage, 7, checkpoint, Run { fail_on: None, replay: Some(1) }).await.unwrap();
        assert!(reference[&1].len() > 100, "{select}: batch 1 has rows to order");
        assert_eq!(replayed[&1], reference[&1], "{select}: batch 1 replayed");
        assert_eq!(replayed, reference.into_iter().filter(|(id, _)| *id >= 1).collect(), "{select}: then the same");
    }
}

#[tokio::test]
async fn a_restart_keeps_the_checkpoints_number_of_state_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let select = QUERIES[1].0;
    let crash = Run { fail_on: Some(1), replay: None };
    run(select, OutputMode::Update, unstaged, 3, checkpoint, crash).await.unwrap_err();
    let resume = Run { fail_on: None, replay: Some(1) };
    let after = run(select, OutputMode::Update, unstaged, 5, checkpoint, resume).await.unwrap();
    let metadata: serde_json::Value =
        sluice::checkpoint::decode_entry(&std::fs::read(dir.path().join("metadata")).unwrap()).unwrap();
    assert_eq!(metadata["state_partitions"], 3, "{metadata}");
    let mut dirs: Vec<_> =
        std::fs::read_dir(dir.path().join("state/0")).unwrap().map(|e| e.unwrap().file_name()).collect();
    dirs.sort();
    assert_eq!(dirs, ["0", "1", "2"], "one state store per stored partition");
    let reference = run(select, OutputMode::Update, unstaged, 3, "memory://", CLEAN).await.unwrap();
    let from_batch_1 = reference.into_iter().filter(|(id, _)| *id >= 1).collect();
    assert_eq!(sorted_batches(after), sorted_batches(from_batch_1));
}

#[tokio::test]
async fn a_checkpoint_of_the_former_state_layout_is_refused_with_several_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let select = QUERIES[1].0;
    run(select, OutputMode::Update, unstaged, 2, checkpoint, CLEAN).await.unwrap();
    let path = dir.path().join("metadata");
    let mut metadata: serde_json::Value = sluice::checkpoint::decode_entry(&std::fs::read(&path).unwrap()).unwrap();
    metadata.as_object_mut().unwrap().remove("state_layout");
    std::fs::write(&path, metadata.to_string()).unwrap();
    let err = run(select, OutputMode::Update, unstaged, 2, checkpoint, CLEAN).await.unwrap_err().to_string();
    assert!(err.contains("metadata") && err.contains("state layout 0") && err.contains("new checkpoint"), "{err}");
}
