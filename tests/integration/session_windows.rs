//! Session windows (SEMANTICS §2–3): sessions of a key merge when a row's `[t, t + gap)` falls
//! inside or bridges them; append emits a session once `end <= W_k`; late rows are those with
//! `t + gap <= W_{k-1}`. Gap 5 s, watermark delay 10 s.

use crate::common::*;
use sluice::OutputMode;

const SESSIONS: &str =
    "SELECT key, session_window.start AS s, session_window.end AS e, count(*) AS n, sum(value) AS total
                        FROM events GROUP BY key, session_window(ts, '5 seconds')";

type Batch<'a> = &'a [(&'a str, i64, i64)];

const INPUT: [Batch; 5] = [
    // a: [1, 6) and [3, 8) overlap -> [1, 8); [10, 15) apart. b: [2, 7). W_1 = 0.
    &[("a", 1, 1), ("a", 3, 2), ("b", 2, 3), ("a", 10, 4)],
    // a@7 bridges [1, 8) and [10, 15) -> [1, 15). W_2 = 20.
    &[("a", 7, 5), ("c", 30, 6)],
    // b@4 extends b to [2, 9). W = 20 closes a and b.
    &[("b", 4, 7), ("d", 40, 8)],
    // Late below 20: a@14 (14 + 5 <= 20) is dropped; c@28 (33 > 20) joins c -> [28, 35).
    &[("a", 14, 9), ("c", 28, 10)],
    // W_5 = 50.
    &[("e", 60, 11)],
];

fn strings(rows: &[&str]) -> Vec<String> {
    rows.iter().map(|r| r.to_string()).collect()
}

#[tokio::test]
async fn append_emits_each_merged_session_once_the_watermark_passes_its_end() {
    let mut h = Harness::new(OutputMode::Append, Some(10), SESSIONS).await.unwrap();
    let mut out = Vec::new();
    for batch in INPUT {
        out.push(h.batch(batch).await);
    }
    out.push(h.no_data_batch().await.expect("W moved to 50: a no-data batch is due"));
    assert_eq!(
        out,
        vec![
            vec![],
            vec![],
            strings(&["a,00:00:01,00:00:15,4,12", "b,00:00:02,00:00:09,2,10"]),
            vec![],
            vec![],
            strings(&["c,00:00:28,00:00:35,2,16", "d,00:00:40,00:00:45,1,8"]),
        ]
    );
    assert_eq!(h.query.recent_progress()[3].late_rows_dropped(), 1);
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 1, "only e's session is open");
}

#[tokio::test]
async fn complete_mode_keeps_every_session_and_still_drops_late_rows() {
    let mut h = Harness::new(OutputMode::Complete, Some(10), SESSIONS).await.unwrap();
    let mut last = vec![];
    for batch in INPUT {
        last = h.batch(batch).await;
    }
    assert_eq!(
        last,
        strings(&[
            "a,00:00:01,00:00:15,4,12",
            "b,00:00:02,00:00:09,2,10",
            "c,00:00:28,00:00:35,2,16",
            "d,00:00:40,00:00:45,1,8",
            "e,00:01:00,00:01:05,1,11",
        ])
    );
    assert_eq!(h.query.recent_progress()[3].late_rows_dropped(), 1, "a@14 is late in complete mode too");
}

#[tokio::test]
async fn a_gap_per_row_merges_by_each_rows_own_gap() {
    let select = "SELECT key, session_window.start AS s, session_window.end AS e, count(*) AS n FROM events
                  GROUP BY key, session(ts, CASE WHEN key = 'a' THEN '10 seconds' ELSE '2 seconds' END)";
    let mut h = Harness::new(OutputMode::Complete, Some(10), select).await.unwrap();
    let out = h.batch(&[("a", 1, 1), ("a", 9, 2), ("b", 1, 3), ("b", 4, 4)]).await;
    assert_eq!(out, strings(&["a,00:00:01,00:00:19,2", "b,00:00:01,00:00:03,1", "b,00:00:04,00:00:06,1"]));
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), SESSIONS, checkpoint).await.unwrap();
    let mut out = vec![h.batch(INPUT[0]).await, h.batch(INPUT[1]).await];
    drop(h);
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), SESSIONS, checkpoint).await.unwrap();
    h.stream.push(events(INPUT[0])).unwrap();
    h.stream.push(events(INPUT[1])).unwrap();
    for batch in &INPUT[2..] {
        out.push(h.batch(batch).await);
    }
    assert_eq!(out[2], strings(&["a,00:00:01,00:00:15,4,12", "b,00:00:02,00:00:09,2,10"]));
}

#[tokio::test]
async fn update_mode_is_refused_for_session_windows() {
    let err = Harness::new(OutputMode::Update, Some(10), SESSIONS).await.err().unwrap().to_string();
    assert!(err.contains("session window in update mode") && err.contains("'append'"), "{err}");
}
