//! Streaming deduplication from its SQL form, `ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts)
//! ... WHERE rn = 1`, with Spark's `dropDuplicates` semantics (SEMANTICS §2–3).

use crate::common::*;
use sluice::OutputMode;

fn first_rows(partition_by: &str) -> String {
    format!(
        "SELECT key, ts, value FROM
           (SELECT key, ts, value, ROW_NUMBER() OVER (PARTITION BY {partition_by} ORDER BY ts) AS rn FROM events) AS d
         WHERE rn = 1"
    )
}

#[tokio::test]
async fn with_the_event_time_among_the_keys_a_key_lives_until_the_watermark_passes_it() {
    let mut h = Harness::new(OutputMode::Append, Some(10), &first_rows("key, ts")).await.unwrap();
    // First occurrences are emitted in their own batch; a duplicate in the same batch is not.
    assert_eq!(h.batch(&[("a", 10, 1), ("a", 10, 2), ("b", 15, 3)]).await, vec!["a,00:00:10,1", "b,00:00:15,3"]);
    // W_1 = 5: a@10 is a duplicate still in state.
    assert_eq!(h.batch(&[("a", 10, 4), ("c", 30, 5)]).await, vec!["c,00:00:30,5"]);
    // W_2 = 20, late watermark 5: a@10 is not late, still suppressed; then a@10 and b@15 leave
    // the state at the end of this batch.
    assert_eq!(h.batch(&[("a", 10, 6)]).await, Vec::<String>::new());
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 1);
    // Late watermark 20: a@10 is late and dropped, so the duplicate never leaks.
    assert_eq!(h.batch(&[("a", 10, 7), ("d", 40, 8)]).await, vec!["d,00:00:40,8"]);
    assert_eq!(h.last_dropped(), 1);
    // W = 30: the no-data batch evicts c@30 and emits nothing.
    assert_eq!(h.no_data_batch().await, Some(vec![]));
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 1);
}

#[tokio::test]
async fn without_the_event_time_among_the_keys_a_key_stays_forever_and_late_rows_still_drop() {
    let mut h = Harness::new(OutputMode::Append, Some(10), &first_rows("key")).await.unwrap();
    // Within a batch the lowest ORDER BY value wins.
    assert_eq!(h.batch(&[("a", 20, 1), ("a", 12, 2)]).await, vec!["a,00:00:12,2"]);
    assert_eq!(h.batch(&[("a", 50, 3)]).await, Vec::<String>::new());
    // W_2 = 40, late watermark 10: c@5 is late; b@30 is new.
    assert_eq!(h.batch(&[("b", 30, 4), ("c", 5, 5)]).await, vec!["b,00:00:30,4"]);
    assert_eq!(h.last_dropped(), 1);
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 2, "keys are never evicted");
    assert_eq!(h.batch(&[("a", 60, 6), ("b", 61, 7)]).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_aggregation_over_a_deduplication_counts_each_key_once() {
    let select = format!(
        "SELECT window.start AS w, count(*) AS n, sum(value) AS total FROM ({}) AS firsts
         GROUP BY window(ts, '10 seconds')",
        first_rows("key, ts")
    );
    let mut h = Harness::new(OutputMode::Update, Some(10), &select).await.unwrap();
    assert_eq!(h.batch(&[("a", 1, 1), ("a", 1, 2), ("b", 2, 3)]).await, vec!["00:00:00,2,4"]);
    assert_eq!(h.batch(&[("a", 1, 4), ("c", 3, 5)]).await, vec!["00:00:00,3,9"]);
}

#[tokio::test]
async fn other_window_functions_on_a_stream_are_refused() {
    let select =
        "SELECT key FROM (SELECT key, RANK() OVER (PARTITION BY key ORDER BY ts) AS r FROM events) AS d WHERE r = 1";
    let err = Harness::new(OutputMode::Append, Some(10), select).await.err().unwrap().to_string();
    assert!(err.contains("window function (OVER ...) on a stream"), "{err}");
}

#[tokio::test]
async fn deduplication_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Append, None, &first_rows("key"), checkpoint).await.unwrap();
    assert_eq!(h.batch(&[("a", 1, 1)]).await, vec!["a,00:00:01,1"]);
    drop(h);
    let mut h = Harness::at_checkpoint(OutputMode::Append, None, &first_rows("key"), checkpoint).await.unwrap();
    h.stream.push(events(&[("a", 1, 1)])).unwrap();
    assert_eq!(h.batch(&[("a", 2, 2), ("b", 3, 3)]).await, vec!["b,00:00:03,3"]);
}

#[tokio::test]
async fn select_distinct_is_an_aggregation_not_a_deduplication() {
    let select = "SELECT DISTINCT key, ts FROM events";
    // Append: a row is emitted once, when the watermark passes its event time.
    let mut h = Harness::new(OutputMode::Append, Some(10), select).await.unwrap();
    assert_eq!(h.batch(&[("a", 5, 1), ("a", 5, 2)]).await, Vec::<String>::new());
    assert_eq!(h.batch(&[("b", 30, 3)]).await, Vec::<String>::new());
    // W = 20 passes a@5, and a@6 (above the late watermark -5 s) is final in the same batch.
    assert_eq!(h.batch(&[("a", 6, 4)]).await, vec!["a,00:00:05", "a,00:00:06"]);
    // Late below 20: a@7 is dropped; a@5 was emitted once and never again.
    assert_eq!(h.batch(&[("a", 7, 5), ("a", 5, 6)]).await, Vec::<String>::new());
    assert_eq!(h.last_dropped(), 2);
    // Update: emitted again in every batch a duplicate arrives.
    let mut h = Harness::new(OutputMode::Update, Some(10), select).await.unwrap();
    assert_eq!(h.batch(&[("a", 5, 1)]).await, vec!["a,00:00:05"]);
    assert_eq!(h.batch(&[("a", 5, 2)]).await, vec!["a,00:00:05"]);
}

#[tokio::test]
async fn row_number_ordered_other_than_by_ascending_event_time_is_a_top_n_refused_in_append_mode() {
    for order in ["ts DESC", "value", "value DESC", "ts, value", "key"] {
        let select = format!(
            "SELECT key, ts, value FROM
               (SELECT key, ts, value, ROW_NUMBER() OVER (PARTITION BY key ORDER BY {order}) AS rn FROM events) AS d
             WHERE rn <= 1"
        );
        let err = Harness::new(OutputMode::Append, Some(10), &select).await.err().expect("refused").to_string();
        assert!(
            err.contains("top-N per key) in append mode") && err.contains("ORDER BY the event-time column"),
            "{order}: {err}"
        );
        // In update mode it runs as a top-N (tests/integration/top_n.rs).
        assert!(Harness::new(OutputMode::Update, Some(10), &select).await.is_ok(), "{order}");
    }
    // Ascending event time (explicitly ASC, or `rn <= 1`) is Spark's dropDuplicates.
    for order in ["ts ASC", "ts"] {
        let select = format!(
            "SELECT key, ts, value FROM
               (SELECT key, ts, value, ROW_NUMBER() OVER (PARTITION BY key ORDER BY {order}) AS rn FROM events) AS d
             WHERE rn <= 1"
        );
        let mut h = Harness::new(OutputMode::Append, Some(10), &select).await.unwrap();
        assert_eq!(h.batch(&[("a", 20, 1), ("a", 12, 2)]).await, vec!["a,00:00:12,2"]);
    }
}
