//! Each output mode with tumbling and sliding windows, batch by batch (SEMANTICS §2–4).

use crate::common::*;
use sluice::OutputMode;

#[tokio::test]
async fn tumbling_append_emits_each_window_once_when_the_watermark_passes_it() {
    let mut h = Harness::new(OutputMode::Append, Some(10), TUMBLE).await.unwrap();
    let out: Vec<Vec<String>> = {
        let mut out = Vec::new();
        for input in TUMBLE_INPUT {
            out.push(h.batch(input).await);
        }
        out
    };
    assert_eq!(out[0], Vec::<String>::new());
    assert_eq!(out[1], Vec::<String>::new());
    assert_eq!(out[2], vec!["00:00:00,00:00:10,a,4,13"]);
    assert_eq!(out[3], vec!["00:00:10,00:00:20,b,3,20", "00:00:10,00:00:20,c,1,11"]);
    assert_eq!(h.last_dropped(), 0);
    assert_eq!(out[4], Vec::<String>::new());
    assert_eq!(h.no_data_batch().await, Some(vec!["00:00:20,00:00:30,a,1,5".to_string()]));
    assert_eq!(h.no_data_batch().await, None, "the watermark did not move again");
}

#[tokio::test]
async fn tumbling_update_emits_changed_windows_and_evicts_silently() {
    let mut h = Harness::new(OutputMode::Update, Some(10), TUMBLE).await.unwrap();
    assert_eq!(
        sorted(&h.batch(TUMBLE_INPUT[0]).await),
        sorted(&["00:00:00,00:00:10,a,2,3", "00:00:10,00:00:20,b,1,3"])
    );
    assert_eq!(
        sorted(&h.batch(TUMBLE_INPUT[1]).await),
        sorted(&["00:00:00,00:00:10,a,3,7", "00:00:20,00:00:30,a,1,5"])
    );
    assert_eq!(
        sorted(&h.batch(TUMBLE_INPUT[2]).await),
        sorted(&["00:00:00,00:00:10,a,4,13", "00:00:10,00:00:20,b,2,10", "00:00:30,00:00:40,a,1,8"])
    );
    // a@4 and a@6 fall in [0, 10), evicted under W = 15: late, no update, counted once.
    assert_eq!(
        sorted(&h.batch(TUMBLE_INPUT[3]).await),
        sorted(&["00:00:10,00:00:20,b,3,20", "00:00:10,00:00:20,c,1,11", "00:00:30,00:00:40,a,2,20"])
    );
    assert_eq!(h.last_dropped(), 1);
    assert_eq!(sorted(&h.batch(TUMBLE_INPUT[4]).await), sorted(&["00:00:40,00:00:50,a,1,13"]));
    // The no-data batch evicts [20, 30) under W = 35 and emits nothing.
    assert_eq!(h.no_data_batch().await, Some(vec![]));
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 2);
}

#[tokio::test]
async fn tumbling_complete_emits_the_whole_table_and_never_drops() {
    let mut h = Harness::new(OutputMode::Complete, Some(10), TUMBLE).await.unwrap();
    for input in &TUMBLE_INPUT[..3] {
        h.batch(input).await;
    }
    assert_eq!(
        sorted(&h.batch(TUMBLE_INPUT[3]).await),
        sorted(&[
            "00:00:00,00:00:10,a,6,36",
            "00:00:10,00:00:20,b,3,20",
            "00:00:10,00:00:20,c,1,11",
            "00:00:20,00:00:30,a,1,5",
            "00:00:30,00:00:40,a,2,20",
        ])
    );
    assert_eq!(h.last_dropped(), 0);
    assert_eq!(h.batch(TUMBLE_INPUT[4]).await.len(), 6);
    assert_eq!(h.no_data_batch().await, None, "complete mode runs no no-data batch");
}

#[tokio::test]
async fn sliding_append_counts_a_row_in_every_window_and_drops_it_per_window() {
    let mut h = Harness::new(OutputMode::Append, Some(5), SLIDE).await.unwrap();
    assert_eq!(h.batch(SLIDE_INPUT[0]).await, Vec::<String>::new());
    assert_eq!(sorted(&h.batch(SLIDE_INPUT[1]).await), sorted(&["23:59:55,00:00:05,k,1,1"]));
    // t=4 is late for [-5, 5) (end 5 <= W_{k-1} = 7) but counts in [0, 10).
    assert_eq!(h.batch(SLIDE_INPUT[2]).await, Vec::<String>::new());
    assert_eq!(h.last_dropped(), 1);
    assert_eq!(
        h.no_data_batch().await.unwrap(),
        vec!["00:00:00,00:00:10,k,3,9", "00:00:05,00:00:15,k,2,5", "00:00:10,00:00:20,k,1,2"]
    );
}

#[tokio::test]
async fn sliding_update_emits_every_changed_window() {
    let mut h = Harness::new(OutputMode::Update, Some(5), SLIDE).await.unwrap();
    assert_eq!(
        sorted(&h.batch(SLIDE_INPUT[0]).await),
        sorted(&[
            "23:59:55,00:00:05,k,1,1",
            "00:00:00,00:00:10,k,1,1",
            "00:00:05,00:00:15,k,1,2",
            "00:00:10,00:00:20,k,1,2"
        ])
    );
    assert_eq!(sorted(&h.batch(SLIDE_INPUT[1]).await), sorted(&["00:00:00,00:00:10,k,2,4", "00:00:05,00:00:15,k,2,5"]));
    assert_eq!(
        sorted(&h.batch(SLIDE_INPUT[2]).await),
        sorted(&["00:00:00,00:00:10,k,3,9", "00:00:25,00:00:35,k,1,4", "00:00:30,00:00:40,k,1,4"])
    );
    assert_eq!(h.last_dropped(), 1);
    assert_eq!(h.no_data_batch().await, Some(vec![]));
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 2);
}

#[tokio::test]
async fn sliding_complete_keeps_every_window() {
    let mut h = Harness::new(OutputMode::Complete, Some(5), SLIDE).await.unwrap();
    h.batch(SLIDE_INPUT[0]).await;
    h.batch(SLIDE_INPUT[1]).await;
    assert_eq!(
        sorted(&h.batch(SLIDE_INPUT[2]).await),
        sorted(&[
            "23:59:55,00:00:05,k,2,6",
            "00:00:00,00:00:10,k,3,9",
            "00:00:05,00:00:15,k,2,5",
            "00:00:10,00:00:20,k,1,2",
            "00:00:25,00:00:35,k,1,4",
            "00:00:30,00:00:40,k,1,4",
        ])
    );
    assert_eq!(h.last_dropped(), 0);
}

#[tokio::test]
async fn plain_group_by_in_update_and_complete_mode_without_watermark() {
    let select = "SELECT key, count(*) AS cnt, count(DISTINCT value % 2) AS parities, avg(value) AS mean FROM events GROUP BY key";
    let mut h = Harness::new(OutputMode::Update, None, select).await.unwrap();
    assert_eq!(h.batch(&[("a", 1, 1), ("b", 2, 2)]).await, vec!["a,1,1,1.0", "b,1,1,2.0"]);
    assert_eq!(h.batch(&[("a", 3, 4)]).await, vec!["a,2,2,2.5"]);
    assert_eq!(h.no_data_batch().await, None, "no watermark, no no-data batch");
    let mut h = Harness::new(OutputMode::Complete, None, select).await.unwrap();
    h.batch(&[("a", 1, 1), ("b", 2, 2)]).await;
    assert_eq!(h.batch(&[("a", 3, 4)]).await, vec!["a,2,2,2.5", "b,1,1,2.0"]);
}

#[tokio::test]
async fn a_plain_group_by_under_a_watermark_gets_spark_no_data_batches() {
    // SEMANTICS §4: an aggregation in update mode asks for a no-data batch whenever a watermark
    // is declared upstream and it advanced, though its keys hold no event time.
    let select = "SELECT key, count(*) AS n FROM events GROUP BY key";
    let mut h = Harness::new(OutputMode::Update, Some(0), select).await.unwrap();
    assert_eq!(h.batch(&[("a", 20, 1)]).await, vec!["a,1"]);
    assert_eq!(h.no_data_batch().await, Some(vec![]), "the watermark moved to 20 s");
    assert_eq!(h.query.recent_progress().last().unwrap().watermark_ms, Some(1_704_067_220_000));
    assert_eq!(h.no_data_batch().await, None, "it did not move again");
    // Complete mode never asks for one; nor does a query without a watermark.
    let mut h = Harness::new(OutputMode::Complete, Some(0), select).await.unwrap();
    h.batch(&[("a", 20, 1)]).await;
    assert_eq!(h.no_data_batch().await, None);
    let mut h = Harness::new(OutputMode::Update, None, select).await.unwrap();
    h.batch(&[("a", 20, 1)]).await;
    assert_eq!(h.no_data_batch().await, None);
}

#[tokio::test]
async fn sliding_windows_too_many_per_row_or_too_long_are_errors_not_a_crash() {
    let select = "SELECT window.start AS w, count(*) AS n FROM events GROUP BY window(ts, '1 hour', '1 millisecond')";
    // Refused when the query starts, not at its first row.
    let err = Harness::new(OutputMode::Update, Some(10), select).await.err().unwrap().to_string();
    assert!(err.contains("3600000 windows") && err.contains("use a larger slide"), "{err}");
    // A size whose nanoseconds overflow i64 is refused, not wrapped around.
    let select = "SELECT window.start AS w, count(*) AS n FROM events GROUP BY window(ts, '200000 days')";
    let err = match Harness::new(OutputMode::Update, Some(10), select).await {
        Err(e) => e.to_string(),
        Ok(h) => {
            h.stream.push(events(&[("a", 1, 1)])).unwrap();
            h.query.run_next_batch().await.unwrap_err().to_string()
        }
    };
    assert!(err.contains("too long"), "{err}");
}
