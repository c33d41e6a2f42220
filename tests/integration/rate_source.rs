//! The rate source (`connector = 'rate'`): rows and timestamps as Spark's
//! `RateStreamMicroBatchStream` derives them from the offsets (seconds since the start time), and a
//! batch replayed after a crash gives the same rows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use serde_json::{json, Value};
use sluice::checkpoint::CheckpointLocation;
use sluice::sink::memory::MemorySink;
use sluice::source::rate::{rate_schema, RateSource, RateSourceOptions};
use sluice::source::Source;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// A started rate source with `rows_per_second`, `ramp_up_time` seconds, `num_partitions`.
async fn rate(rows_per_second: i64, ramp_up_time_s: i64, num_partitions: usize) -> (RateSource, CheckpointLocation) {
    let options = RateSourceOptions { rows_per_second, ramp_up_time_s, num_partitions };
    let mut source = RateSource::new("rates", rate_schema(), options);
    let location = CheckpointLocation::open("memory://").unwrap();
    source.restore(&location, None).await.unwrap();
    (source, location)
}

/// Per record batch (partition), the rows as `(value, ms after the source's start time)`.
async fn read(source: &mut RateSource, start: i64, end: i64) -> Vec<Vec<(i64, i64)>> {
    let start_ms = source.start_time_ms().unwrap();
    let data = source.read(&json!(start), &json!(end)).await.unwrap();
    data.batches.iter().map(|b| pairs(b).into_iter().map(|(ts_ms, v)| (v, ts_ms - start_ms)).collect()).collect()
}

/// The rows as `(timestamp ms since the epoch, value)`.
fn pairs(batch: &RecordBatch) -> Vec<(i64, i64)> {
    let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
    let values = batch.column(1).as_primitive::<Int64Type>();
    assert_eq!(ts.null_count() + values.null_count(), 0);
    ts.values().iter().zip(values.values()).map(|(t, v)| (t / 1_000_000, *v)).collect()
}

#[tokio::test]
async fn rows_values_and_timestamps_follow_sparks_formulas_during_and_after_the_ramp_up() {
    // rowsPerSecond = 10, rampUpTime = 4 s: valueAtSecond(0..=6) = 0 2 6 12 20 30 40 (Spark's
    // comment in RateStreamProvider; speedDeltaPerSecond = 10 / (4 + 1) = 2).
    let (mut source, _) = rate(10, 4, 2).await;

    // Offsets [0, 2): values [0, 6), 2000 ms / 6 values = 333.33 ms per value, from the start
    // time. Partition p gets rangeStart + p + 2k; a timestamp is start + round((v - 0) * 333.33):
    // v=0 -> 0, 1 -> 333, 2 -> 667, 3 -> 1000, 4 -> 1333, 5 -> 1667.
    assert_eq!(
        read(&mut source, 0, 2).await,
        vec![vec![(0, 0), (2, 667), (4, 1333)], vec![(1, 333), (3, 1000), (5, 1667)]]
    );

    // Offsets [3, 5) straddle the end of the ramp-up: values [12, 30), 2000 ms / 18 values =
    // 111.11 ms per value from start + 3000 ms: v=13 -> 3111, v=21 -> 3000 + round(1000.0) = 4000,
    // v=29 -> 3000 + round(1888.9) = 4889.
    let batches = read(&mut source, 3, 5).await;
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].iter().map(|r| r.0).collect::<Vec<_>>(), vec![12, 14, 16, 18, 20, 22, 24, 26, 28]);
    assert_eq!(batches[1].iter().map(|r| r.0).collect::<Vec<_>>(), vec![13, 15, 17, 19, 21, 23, 25, 27, 29]);
    let by_value: BTreeMap<i64, i64> = batches.into_iter().flatten().collect();
    assert_eq!((by_value[&12], by_value[&13], by_value[&21], by_value[&29]), (3000, 3111, 4000, 4889));

    // After the ramp-up, 10 rows a second, 100 ms apart: [6, 7) is values [40, 50) from 6000 ms.
    let batches = read(&mut source, 6, 7).await;
    let rows: Vec<(i64, i64)> = batches.into_iter().flatten().collect();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|(v, ms)| *ms == 6000 + (v - 40) * 100), "{rows:?}");

    // No time, no rows; and during the first ramp-up second nothing is generated (speed 0).
    assert!(read(&mut source, 5, 5).await.is_empty());
    let (mut slow, _) = rate(1, 3, 1).await;
    // speedDeltaPerSecond = 1 / 4 = 0: Spark's integer division generates nothing during the
    // ramp-up (valueAtSecond(0..=3) = 0), then 1 row a second: valueAtSecond(5) = 0 + 2 * 1 = 2.
    // [3, 5) is values [0, 2), 1000 ms apart from start + 3000 ms.
    assert!(read(&mut slow, 0, 3).await.is_empty());
    assert_eq!(read(&mut slow, 3, 5).await, vec![vec![(0, 3000), (1, 4000)]]);
}

#[tokio::test]
async fn more_partitions_than_values_give_one_batch_per_value() {
    let (mut source, _) = rate(3, 0, 8).await;
    // [0, 1): values 0, 1, 2, 333.33 ms apart; partitions 3..8 have no rows.
    assert_eq!(read(&mut source, 0, 1).await, vec![vec![(0, 0)], vec![(1, 333)], vec![(2, 667)]]);
}

#[tokio::test]
async fn offsets_past_the_bigint_range_are_an_error_not_a_wrap() {
    // 4 s is the most at this rate: 4 * (2^63 - 1) / 4 fits, 5 times it does not.
    let (mut source, location) = rate(i64::MAX / 4, 0, 1).await;
    let end = source.plan_batch(&location, 0, &json!(0)).await.unwrap();
    assert!(end.as_i64().unwrap() <= 4, "a fresh source has run less than 4 s: {end}");
    let err = source.read(&json!(3), &json!(5)).await.unwrap_err().to_string();
    assert!(err.contains("source 'rates'") && err.contains("overflows a BIGINT"), "{err}");
    // Reading [3, 5) (a replay) moved the source's clock to 5 s, past the limit: planning refuses.
    let err = source.plan_batch(&location, 1, &end).await.unwrap_err().to_string();
    assert!(err.contains("after 5 s the values overflow a BIGINT (at most 4 s"), "{err}");
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
    let offsets: Value = sluice::checkpoint::log::decode_entry(&std::fs::read(dir.path().join("offsets/0")).unwrap()).unwrap();
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
        ("rows_per_second = '4611686018427387904', ramp_up_time = '3s'", "shorten ramp_up_time"),
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
