//! Watermark semantics: two inputs, the global minimum, late rows between the two watermarks.

use std::sync::Arc;

use crate::common::*;
use sluice::sink::MemorySink;
use sluice::OutputMode;

#[tokio::test]
async fn the_global_watermark_is_the_minimum_of_the_inputs() {
    let mut ctx = crate::common::context().await;
    let fast = ctx.register_memory_stream("fast", events_schema(), Some(("ts", 0))).unwrap();
    let slow = ctx.register_memory_stream("slow", events_schema(), Some(("ts", 0))).unwrap();
    let sink = MemorySink::new();
    let s = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(s.clone()));
    let sql = "INSERT INTO out SELECT window.start AS w, count(*) AS n FROM
               (SELECT key, ts FROM fast UNION ALL SELECT key, ts FROM slow) AS events
               GROUP BY window(ts, '10 seconds')";
    let definitions = ctx.execute(sql).await.unwrap();
    let q = ctx.start(&definitions[0], "memory://").await.unwrap();

    fast.push(events(&[("f", 35, 0)])).unwrap();
    assert!(q.run_next_batch().await.unwrap());
    // `slow` has had no row: it holds the global watermark at 0.
    assert!(!q.run_next_batch().await.unwrap(), "no watermark advance, no no-data batch");
    slow.push(events(&[("s", 5, 0)])).unwrap();
    assert!(q.run_next_batch().await.unwrap());
    assert_eq!(q.recent_progress().last().unwrap().watermark_ms, Some(0));
    // Now min(35, 5) = 5: a no-data batch runs under W = 5 but [0, 10) is still open.
    assert!(q.run_next_batch().await.unwrap());
    assert_eq!(q.recent_progress().last().unwrap().watermark_ms, Some(1_704_067_205_000));
    assert!(rows(&sink.all()).is_empty());
    slow.push(events(&[("s", 12, 0)])).unwrap();
    assert!(q.run_next_batch().await.unwrap());
    assert!(q.run_next_batch().await.unwrap(), "W = 12 closes [0, 10)");
    assert_eq!(rows(&sink.all()), vec!["00:00:00,1"]);
}

#[tokio::test]
async fn rows_between_the_two_watermarks_are_accepted_and_emitted_in_the_same_batch() {
    let mut h = Harness::new(OutputMode::Append, Some(0), TUMBLE).await.unwrap();
    h.batch(&[("a", 1, 1)]).await; // W_1 = 1
    h.batch(&[("a", 25, 2)]).await; // W_1 = 1 used; W_2 = 25
                                    // Batch 2 runs under W_2 = 25 with late watermark W_1 = 1: t = 5 is accepted (5 > 1), and its
                                    // window [0, 10) closes under W_2, so it is emitted in this very batch.
    assert_eq!(h.batch(&[("a", 5, 4)]).await, vec!["00:00:00,00:00:10,a,2,5"]);
    assert_eq!(h.last_dropped(), 0);
    // Batch 3 drops by W_2 = 25: t = 9 ([0, 10) ends at 10 <= 25); t = 21 ([20, 30)) is accepted.
    assert_eq!(h.batch(&[("a", 9, 8), ("a", 21, 16)]).await, Vec::<String>::new());
    assert_eq!(h.last_dropped(), 1);
}

/// A union's event-time column is its first input's, as Spark's `Union` keeps its first child's
/// attributes, also when the inputs declare different delays (DataFusion keeps a union field's
/// metadata only where the inputs agree): the window over it is an event-time key, so a row of a
/// window the watermark has passed is late.
#[tokio::test]
async fn a_union_of_streams_with_different_delays_keeps_its_event_time_column() {
    let mut ctx = crate::common::context().await;
    let a = ctx.register_memory_stream("a", events_schema(), Some(("ts", 5_000))).unwrap();
    let b = ctx.register_memory_stream("b", events_schema(), Some(("ts", 1_000))).unwrap();
    let sink = MemorySink::new();
    let s = sink.clone();
    ctx.register_sink("out", OutputMode::Update, move || Box::new(s.clone()));
    let sql = "INSERT INTO out SELECT window.start AS w, count(*) AS n FROM
               (SELECT key, ts FROM a UNION ALL SELECT key, ts FROM b) AS events
               GROUP BY window(ts, '10 seconds')";
    let definitions = ctx.execute(sql).await.unwrap();
    let explained = ctx.explain(&definitions[0]).await.unwrap();
    assert!(explained.contains("event time: events.window"), "{explained}");
    let q = ctx.start(&definitions[0], "memory://").await.unwrap();
    a.push(events(&[("a", 30, 0)])).unwrap();
    b.push(events(&[("b", 12, 0)])).unwrap();
    assert!(q.run_next_batch().await.unwrap());
    assert_eq!(sorted(&rows(&sink.all())), vec!["00:00:10,1", "00:00:30,1"]);
    // W = min(30 s - 5 s, 12 s - 1 s) = 11 s, first used by this no-data batch.
    assert!(q.run_next_batch().await.unwrap());
    a.push(events(&[("a", 5, 0)])).unwrap();
    assert!(q.run_next_batch().await.unwrap());
    assert_eq!(q.recent_progress().last().unwrap().late_rows_dropped(), 1, "[0 s, 10 s) ended at or below 11 s");
    assert_eq!(sorted(&rows(&sink.all())), vec!["00:00:10,1", "00:00:30,1"]);
}

/// A group whose event-time key is null is never late and never evicted, as in Spark, whose late
/// and eviction predicates on a null time are not true: update mode emits it with each change.
#[tokio::test]
async fn a_group_without_event_time_is_never_late() {
    let mut h = Harness::new(OutputMode::Update, Some(0), "SELECT key, ts, count(*) AS n FROM events GROUP BY key, ts")
        .await
        .unwrap();
    let untimed = || {
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(arrow::array::StringArray::from(vec!["n"])),
            Arc::new(arrow::array::TimestampNanosecondArray::from(vec![None::<i64>])),
            Arc::new(arrow::array::Int64Array::from(vec![1])),
        ];
        arrow::array::RecordBatch::try_new(events_schema(), columns).unwrap()
    };
    h.stream.push(untimed()).unwrap();
    assert_eq!(sorted(&h.batch(&[("a", 30, 1)]).await), vec!["a,00:00:30,1", "n,null,1"]);
    assert_eq!(h.batch(&[("a", 31, 1)]).await, vec!["a,00:00:31,1"]);
    // Late rows are those at or below W = 30 s now: the null-time row is not one of them.
    h.stream.push(untimed()).unwrap();
    assert_eq!(h.batch(&[("a", 2, 1)]).await, vec!["n,null,2"]);
    assert_eq!(h.last_dropped(), 1);
}
