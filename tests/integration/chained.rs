//! Chained stateful operators: in append mode (Spark 3.5+) a window aggregation over the windows
//! of another, through `window_time`; in update and complete mode an aggregation over an updating
//! one, by retraction.

use crate::common::*;
use sluice::OutputMode;

const WINDOW_OVER_WINDOW: &str = "SELECT window.start AS s, sum(n) AS total FROM
    (SELECT window AS w, key, count(*) AS n FROM events GROUP BY window(ts, '10 seconds'), key) AS tens
  GROUP BY window(window_time(w), '30 seconds')";

#[tokio::test]
async fn a_window_over_a_window_emits_once_both_are_final() {
    let mut h = Harness::new(OutputMode::Append, Some(10), WINDOW_OVER_WINDOW).await.unwrap();
    assert_eq!(h.batch(&[("a", 1, 1), ("a", 5, 2), ("b", 12, 3)]).await, Vec::<String>::new());
    assert_eq!(h.batch(&[("a", 25, 4), ("b", 31, 5)]).await, Vec::<String>::new());
    // W = 21: [0, 10) and [10, 20) are final below and feed [0, 30) above, still open.
    assert_eq!(h.batch(&[("c", 45, 6)]).await, Vec::<String>::new());
    // W = 35: [20, 30) is final below; [0, 30) above now holds 2 + 1 + 1 rows and is final too.
    assert_eq!(h.no_data_batch().await, Some(vec!["00:00:00,4".to_string()]));
}

#[tokio::test]
async fn chained_aggregations_are_refused_outside_append_mode() {
    let err = Harness::new(OutputMode::Update, Some(10), WINDOW_OVER_WINDOW).await.err().unwrap().to_string();
    assert!(err.contains("several streaming aggregations in update mode"), "{err}");
}

/// A bound read out of a window (`window.start`) is not an event-time column, as in Spark, whose
/// window struct fields carry no watermark: an aggregation grouping by it has no event-time key,
/// which append mode refuses (before, its groups were dropped as late). `window_time(window)` is
/// the event-time column of a window.
#[tokio::test]
async fn a_window_bound_is_not_an_event_time_column() {
    let select = "SELECT ws, count(*) AS keys FROM
        (SELECT window.start AS ws, key, count(*) AS n FROM events GROUP BY window(ts, '10 seconds'), key) AS tens
      GROUP BY ws";
    let err = Harness::new(OutputMode::Append, Some(10), select).await.err().unwrap().to_string();
    assert!(err.contains("in append mode without the event-time column among its keys"), "{err}");
}

// Outside append mode an aggregation over another one retracts the rows the inner one updates
// (a departure from Spark, which refuses it; Flink's retract streams are the model).

/// How many keys have each count: the classic histogram, whose groups move as counts grow.
const HISTOGRAM: &str =
    "SELECT n, count(*) AS keys FROM (SELECT key, count(*) AS n FROM events GROUP BY key) AS counts GROUP BY n";

#[tokio::test]
async fn a_histogram_of_counts_follows_every_update_in_complete_mode() {
    let mut h = Harness::new(OutputMode::Complete, None, HISTOGRAM).await.unwrap();
    assert_eq!(sorted(&h.batch(&[("a", 1, 0), ("a", 2, 0), ("b", 3, 0)]).await), ["1,1", "2,1"]);
    assert_eq!(sorted(&h.batch(&[("b", 4, 0), ("c", 5, 0)]).await), ["1,1", "2,2"]);
    assert_eq!(sorted(&h.batch(&[("a", 6, 0)]).await), ["1,1", "2,1", "3,1"]);
    // c moves from 1 to 3: the group of count 1 is left empty and leaves the table.
    assert_eq!(sorted(&h.batch(&[("c", 7, 0), ("c", 8, 0)]).await), ["2,1", "3,2"]);
}

#[tokio::test]
async fn a_histogram_of_counts_emits_the_groups_each_batch_changed_in_update_mode() {
    let mut h = Harness::new(OutputMode::Update, None, HISTOGRAM).await.unwrap();
    assert_eq!(sorted(&h.batch(&[("a", 1, 0), ("a", 2, 0), ("b", 3, 0)]).await), ["1,1", "2,1"]);
    // b leaves 1 for 2, c enters 1: group 1 is touched (and unchanged), group 2 changed.
    assert_eq!(sorted(&h.batch(&[("b", 4, 0), ("c", 5, 0)]).await), ["1,1", "2,2"]);
    assert_eq!(sorted(&h.batch(&[("a", 6, 0)]).await), ["2,1", "3,1"]);
    // Group 1 is left empty: update mode cannot delete it, and emits only group 3.
    assert_eq!(sorted(&h.batch(&[("c", 7, 0), ("c", 8, 0)]).await), ["3,2"]);
}

/// Per first letter of the key: the keys' maxima (NULL for a key whose values are all negative)
/// counted, summed, averaged and counted above 5.
const MAXIMA: &str = "SELECT g, count(*) AS keys, count(m) AS c, sum(m) AS s, avg(m) AS a, \
       count(*) FILTER (WHERE m > 5) AS big, sum(m) FILTER (WHERE m < 100) AS small \
     FROM (SELECT key, substr(key, 1, 1) AS g, max(CASE WHEN value >= 0 THEN value END) AS m \
           FROM events GROUP BY key) AS maxima \
     WHERE key <> 'zz' GROUP BY g";

/// The batches of the maxima test, each `(key, value)` (times do not matter).
const MAXIMA_INPUT: &[&[(&str, i64)]] = &[
    &[("a1", 3), ("a2", -1), ("b1", 7), ("zz", 9)],
    &[("a2", 4), ("a1", 2), ("b2", -5)],
    &[("a2", 200), ("b2", 6), ("b1", 8)],
    &[("a3", -2), ("b2", 1)],
    &[("a1", 150), ("zz", 1)],
];

/// `select` run as a batch query over `pushed`, as the table `events`.
async fn batch_result(select: &str, pushed: &[arrow::array::RecordBatch]) -> Vec<String> {
    let mut ctx = sluice::StreamContext::new();
    let table = datafusion::datasource::MemTable::try_new(events_schema(), vec![pushed.to_vec()]).unwrap();
    ctx.register_table("events", std::sync::Arc::new(table)).unwrap();
    sorted(&rows(&ctx.sql(select).await.unwrap().collect().await.unwrap()))
}

fn maxima_batch(batch: &[(&'static str, i64)]) -> Vec<(&'static str, i64, i64)> {
    batch.iter().map(|(k, v)| (*k, 0, *v)).collect()
}

#[tokio::test]
async fn counts_sums_and_averages_of_maxima_equal_the_batch_query_after_every_batch() {
    let mut h = Harness::new(OutputMode::Complete, None, MAXIMA).await.unwrap();
    let mut pushed = Vec::new();
    for input in MAXIMA_INPUT {
        let input = maxima_batch(input);
        pushed.push(events(&input));
        let got = sorted(&h.batch(&input).await);
        assert_eq!(got, batch_result(MAXIMA, &pushed).await, "after {} batches", pushed.len());
    }
    // a1 150, a2 200, a3 NULL; b1 8, b2 6.
    assert_eq!(h.last_output().len(), 2);
    assert!(sorted(&h.last_output())[0].starts_with("a,3,2,350,175.0,2,null"), "{:?}", h.last_output());
}

#[tokio::test]
async fn a_retracting_aggregation_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut pushed: Vec<arrow::array::RecordBatch> = Vec::new();
    for (run, inputs) in [&MAXIMA_INPUT[..2], &MAXIMA_INPUT[2..]].into_iter().enumerate() {
        let mut h = Harness::at_checkpoint(OutputMode::Complete, None, MAXIMA, checkpoint).await.unwrap();
        // The memory stream is a replayable source: it holds again what the first run read.
        for batch in &pushed {
            h.stream.push(batch.clone()).unwrap();
        }
        for input in inputs {
            let input = maxima_batch(input);
            pushed.push(events(&input));
            let got = sorted(&h.batch(&input).await);
            assert_eq!(got, batch_result(MAXIMA, &pushed).await, "run {run}, after {} batches", pushed.len());
        }
    }
}

#[tokio::test]
async fn what_cannot_retract_is_refused_before_the_query_starts() {
    let over_counts = |outer: &str| {
        format!("SELECT {outer} FROM (SELECT key, count(*) AS n, avg(value) AS v FROM events GROUP BY key) AS c")
    };
    for (select, expected) in [
        (over_counts("max(n) AS m"), "only count, sum and avg can retract a row"),
        (over_counts("sum(v) AS s"), "only integer values"),
        (over_counts("count(DISTINCT n) AS d"), "DISTINCT and ORDER BY are not retracted"),
        (
            format!("SELECT x, count(*) AS c FROM ({} GROUP BY n) AS h GROUP BY x", over_counts("n, count(*) AS x")),
            "only two aggregations",
        ),
        (over_counts("sum(n + CAST(random() * 10 AS BIGINT)) AS s"), "volatile"),
        (
            "SELECT count(*) AS c FROM (SELECT key, count(*) AS n, max(ts) AS t FROM events GROUP BY key) \
             WHERE t > now() - INTERVAL '1' HOUR"
                .to_string(),
            "the batch's time",
        ),
    ] {
        let err = Harness::new(OutputMode::Complete, None, &select).await.err().unwrap().to_string();
        assert!(err.contains("several streaming aggregations in complete mode"), "{select}: {err}");
        assert!(err.contains(expected), "{select}: {err}");
    }
}

/// How many (window, key) pairs have each count, over 10-second windows.
const WINDOW_HISTOGRAM: &str = "SELECT n, count(*) AS pairs FROM \
     (SELECT window, key, count(*) AS n FROM events GROUP BY window(ts, '10 seconds'), key) AS counts GROUP BY n";

#[tokio::test]
async fn the_inner_aggregation_keeps_late_rows_as_its_output_mode_does() {
    let batches: [&[(&str, i64, i64)]; 4] =
        [&[("a", 1, 0), ("a", 2, 0), ("b", 15, 0)], &[("a", 40, 0)], &[("a", 3, 0)], &[("a", 4, 0)]];
    // The third batch runs under W = 30 with rows late at or below 5 (the watermark before it,
    // SEMANTICS §2): a's 3 s row counts. The fourth's 4 s row is late (at or below 30): complete
    // mode drops no late row, as a standalone aggregation in complete mode does not.
    let mut h = Harness::new(OutputMode::Complete, Some(10), WINDOW_HISTOGRAM).await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        out.push(sorted(&h.batch(batch).await));
    }
    assert_eq!(out, [vec!["1,1", "2,1"], vec!["1,2", "2,1"], vec!["1,2", "3,1"], vec!["1,2", "4,1"]]);
    // Update mode drops it.
    let mut h = Harness::new(OutputMode::Update, Some(10), WINDOW_HISTOGRAM).await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        out.push(sorted(&h.batch(batch).await));
    }
    assert_eq!(out, [vec!["1,1", "2,1"], vec!["1,2"], vec!["3,1"], vec![]]);
    assert_eq!(h.last_dropped(), 1);
}
