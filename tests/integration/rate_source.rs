//! The rate source (`connector = 'rate'`) through SQL: a batch replayed after a crash gives the
//! same rows, and options are checked. The rows and timestamps Spark's
//! `RateStreamMicroBatchStream` derives from the offsets are tested on the source itself, in
//! `src/source/rate.rs`.

use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use serde_json::Value;
use sluice::sink::MemorySink;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// The rows as `(timestamp ms since the epoch, value)`.
fn pairs(batch: &RecordBatch) -> Vec<(i64, i64)> {
    let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let values = batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(ts.null_count() + values.null_count(), 0);
    ts.values().iter().zip(values.values()).map(|(t, v)| (t / 1_000_000, *v)).collect()
}

/// Starts `INSERT INTO out SELECT timestamp, value FROM rates` at `checkpoint`.
async fn start(checkpoint: &str) -> (StreamingQuery, MemorySink) {
    let mut ctx = StreamContext::new();
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(for_query.clone()));
    ctx.execute("CREATE TABLE rates WITH (connector = 'rate', rows_per_second = '7', num_partitions = '2')")
        .await
        .unwrap();
    let definitions = ctx.execute("INSERT INTO out SELECT timestamp, value FROM rates").await.unwrap();
    (ctx.start(&definitions[0], checkpoint).await.unwrap(), sink)
}

#[tokio::test]
async fn a_batch_replayed_after_a_crash_before_its_commit_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let (query, sink) = start(checkpoint).await;
    // The first second after the start time gives the first rows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !query.run_next_batch().await.unwrap() {
        assert!(Instant::now() < deadline, "no batch within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first: Vec<(i64, i64)> = sink.batches()[&0].iter().flat_map(pairs).collect();
    let offsets: Value =
        sluice::checkpoint::decode_entry(&std::fs::read(dir.path().join("offsets/0")).unwrap()).unwrap();
    let seconds = offsets["sources"]["rates"]["end"].as_i64().unwrap();
    assert!(seconds >= 1);
    // 7 rows a second, no ramp-up: values 0 .. 7 * seconds, partition 0's (even) then partition 1's.
    let mut values: Vec<i64> = first.iter().map(|r| r.1).collect();
    assert_eq!(values.iter().filter(|v| *v % 2 == 1).count(), values.len() / 2);
    values.sort_unstable();
    assert_eq!(values, (0..7 * seconds).collect::<Vec<_>>());

    // The process dies after the sink got batch 0 but before commits/0 is written.
    drop(query);
    std::fs::remove_file(dir.path().join("commits/0")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (restarted, replay_sink) = start(checkpoint).await;
    assert!(restarted.run_next_batch().await.unwrap());
    let replayed: Vec<(i64, i64)> = replay_sink.batches()[&0].iter().flat_map(pairs).collect();
    assert_eq!(replayed, first, "the same values with the same timestamps, in the same order");
}

#[tokio::test]
async fn options_and_columns_are_checked_when_the_table_is_created() {
    let mut ctx = StreamContext::new();
    for (options, expected) in [
        ("rows_per_second = '0'", "option rows_per_second must be a positive integer"),
        ("rows_per_second = '1.5'", "option rows_per_second must be a positive integer"),
        ("num_partitions = '-2'", "option num_partitions must be a positive integer"),
        ("ramp_up_time = '2.5s'", "option ramp_up_time must be a whole number of seconds"),
        ("rows_per_second = '100000000', ramp_up_time = '100000000000'", "shorten ramp_up_time"),
        ("rows_per_second = '4611686018427387904'", "at most 100000000"),
        ("rowsPerSecond = '5'", "unknown option 'rowspersecond' for connector 'rate'"),
    ] {
        let err = ctx.execute(&format!("CREATE TABLE r WITH (connector = 'rate', {options})")).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{options}: {err}");
    }
    let err = ctx.execute("CREATE TABLE r (ts TIMESTAMP, value BIGINT) WITH (connector = 'rate')").await.unwrap_err();
    assert!(err.to_string().contains("produces the columns (timestamp TIMESTAMP, value BIGINT)"), "{err}");
    // Declaring exactly the columns, or only a watermark on `timestamp`, is accepted.
    ctx.execute("CREATE TABLE r1 (timestamp TIMESTAMP, value BIGINT) WITH (connector = 'rate')").await.unwrap();
    ctx.execute(
        "CREATE TABLE r2 (WATERMARK FOR timestamp AS timestamp - INTERVAL '1' SECOND) WITH (connector = 'rate');
         CREATE TABLE counts WITH (connector = 'console', output_mode = 'append');",
    )
    .await
    .unwrap();
    let definitions = ctx
        .execute("INSERT INTO counts SELECT window.start, count(*) FROM r2 GROUP BY window(timestamp, '1 second')")
        .await
        .unwrap();
    ctx.start(&definitions[0], "memory://").await.unwrap();
    // A rate table is a source only.
    let definitions = ctx.execute("INSERT INTO r1 SELECT timestamp, value FROM r2").await.unwrap();
    let err = ctx.start(&definitions[0], "memory://").await.unwrap_err();
    assert!(err.to_string().contains("which is a source only"), "{err}");
}
