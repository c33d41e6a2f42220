//! Chained stateful operators in append mode (Spark 3.5+): a window aggregation over the windows
//! of another, through `window_time`.

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
