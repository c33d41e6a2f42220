//! Watermark semantics: two inputs, the global minimum, late rows between the two watermarks.

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
