//! Top-N per key from its SQL form, `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) ... WHERE rn
//! <= N` (Flink's Top-N; Spark refuses window functions on streams): update mode emits the ranks
//! a batch changed, complete mode every key's ranking; rows of equal order rank in arrival order.

use crate::common::*;
use sluice::OutputMode;

/// The two highest values of each key, with their rank.
const TOP_2: &str = "SELECT key, ts, value, rn FROM
    (SELECT key, ts, value, ROW_NUMBER() OVER (PARTITION BY key ORDER BY value DESC) AS rn FROM events) AS r
  WHERE rn <= 2";

/// Each key's latest row (Nexmark q18's form: the rank is not selected).
const LATEST: &str = "SELECT key, ts, value FROM
    (SELECT *, ROW_NUMBER() OVER (PARTITION BY key ORDER BY ts DESC) AS rn FROM events) AS r
  WHERE rn = 1";

const BATCHES: [&[(&str, i64, i64)]; 4] = [
    &[("a", 1, 5), ("a", 2, 7), ("b", 3, 1)],
    &[("a", 4, 6)],
    // a's 3 ranks below its top 2; b's second 1 ties its first and arrived later.
    &[("a", 5, 3), ("b", 6, 1)],
    // Two new values above a's top 2, equal: the first to arrive ranks first.
    &[("a", 7, 9), ("a", 8, 9)],
];

#[tokio::test]
async fn update_mode_emits_the_ranks_each_batch_changed() {
    let mut h = Harness::new(OutputMode::Update, Some(10), TOP_2).await.unwrap();
    let mut out = Vec::new();
    for batch in BATCHES {
        out.push(sorted(&h.batch(batch).await));
    }
    assert_eq!(
        out,
        vec![
            vec!["a,00:00:01,5,2", "a,00:00:02,7,1", "b,00:00:03,1,1"],
            vec!["a,00:00:04,6,2"],
            vec!["b,00:00:06,1,2"],
            vec!["a,00:00:07,9,1", "a,00:00:08,9,2"],
        ]
    );
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 2, "one state row per key");
}

#[tokio::test]
async fn complete_mode_emits_every_keys_ranking_every_batch() {
    let mut h = Harness::new(OutputMode::Complete, Some(10), TOP_2).await.unwrap();
    let mut last = Vec::new();
    for batch in BATCHES {
        last = sorted(&h.batch(batch).await);
    }
    assert_eq!(last, vec!["a,00:00:07,9,1", "a,00:00:08,9,2", "b,00:00:03,1,1", "b,00:00:06,1,2"]);
}

#[tokio::test]
async fn the_latest_row_per_key_replaces_the_one_emitted_before_and_late_rows_still_count() {
    let mut h = Harness::new(OutputMode::Update, Some(10), LATEST).await.unwrap();
    assert_eq!(h.batch(&[("a", 100, 1), ("a", 90, 2)]).await, vec!["a,00:01:40,1"]);
    // An older row of a changes nothing.
    assert_eq!(h.batch(&[("a", 95, 3)]).await, Vec::<String>::new());
    // b@50 is below the watermark (90 s): a key's ranking is never final, so it is not dropped.
    assert_eq!(h.batch(&[("b", 50, 4), ("a", 120, 5)]).await, vec!["a,00:02:00,5", "b,00:00:50,4"]);
    assert_eq!(h.last_dropped(), 0);
}

#[tokio::test]
async fn the_rankings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Update, None, LATEST, checkpoint).await.unwrap();
    assert_eq!(h.batch(&[("a", 10, 1)]).await, vec!["a,00:00:10,1"]);
    drop(h);
    let mut h = Harness::at_checkpoint(OutputMode::Update, None, LATEST, checkpoint).await.unwrap();
    // The memory stream starts empty: the committed batch's rows come again, and are skipped.
    h.stream.push(events(&[("a", 10, 1)])).unwrap();
    // a@5 is older than the restored a@10.
    assert_eq!(h.batch(&[("a", 5, 2), ("b", 3, 3)]).await, vec!["b,00:00:03,3"]);
}

#[tokio::test]
async fn a_top_n_in_append_mode_or_next_to_an_aggregation_is_refused() {
    let refusal =
        |mode, select: String| async move { Harness::new(mode, Some(10), &select).await.err().unwrap().to_string() };
    let err = refusal(OutputMode::Append, TOP_2.into()).await;
    assert!(err.contains("top-N per key) in append mode") && err.contains("output_mode 'update'"), "{err}");
    let err = refusal(OutputMode::Update, format!("SELECT key, count(*) AS n FROM ({TOP_2}) AS t GROUP BY key")).await;
    assert!(err.contains("an aggregation after a ROW_NUMBER() top-N"), "{err}");
    let over_counts = "SELECT key, n FROM (SELECT key, n, ROW_NUMBER() OVER (PARTITION BY key ORDER BY n DESC) AS rn
        FROM (SELECT key, count(*) AS n FROM events GROUP BY key) AS c) AS r WHERE rn <= 3";
    let err = refusal(OutputMode::Update, over_counts.into()).await;
    assert!(err.contains("ROW_NUMBER() top-N after an aggregation"), "{err}");
}
