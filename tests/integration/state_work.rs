//! A batch's state work follows the rows that arrive and the entries that are due, never the
//! state held (issue 8): each operator's `numRowsScanned` counts the state rows a batch reads.

use sluice::OutputMode;

use crate::common::*;

/// State rows held still while a few entries fall due.
const HELD: usize = 1000;

/// A batch may read each arriving or due row a few times (lookup, merge, emission), never more.
const READS_PER_ROW: u64 = 4;

fn scanned(h: &Harness) -> u64 {
    h.query.recent_progress().last().unwrap().state_operators.iter().map(|o| o.rows_scanned()).sum()
}

fn state_rows(h: &Harness) -> u64 {
    h.query.recent_progress().last().unwrap().state_rows()
}

#[tokio::test]
async fn eviction_and_emission_read_only_the_due_entries_and_the_touched_keys() {
    let queries = [
        ("tumbling window", TUMBLE),
        (
            "session window",
            "SELECT key, session_window.start AS s, session_window.end AS e, count(*) AS n FROM events \
             GROUP BY session_window(ts, '5 seconds'), key",
        ),
        ("deduplication", "SELECT DISTINCT key, ts FROM events"),
    ];
    let held: Vec<String> = (0..HELD).map(|i| format!("h{i}")).collect();
    for (what, select) in queries {
        let mut h = Harness::new(OutputMode::Append, Some(200), select).await.unwrap();
        // Held entries at 300 s, three due ones near 0 s; the watermark becomes 100 s.
        let mut first: Vec<(&str, i64, i64)> = held.iter().map(|k| (k.as_str(), 300, 1)).collect();
        first.extend([("a", 1, 1), ("b", 2, 1), ("c", 3, 1)]);
        h.batch(&first).await;
        assert!(scanned(&h) >= first.len() as u64, "{what}: the first batch looks up every arriving key");

        // The no-data batch the watermark makes due closes (or evicts) the three early entries.
        h.no_data_batch().await.unwrap_or_else(|| panic!("{what}: the watermark's advance runs a batch"));
        assert!(state_rows(&h) >= HELD as u64, "{what}: the held entries stay");
        assert!(
            scanned(&h) <= 3 * READS_PER_ROW,
            "{what}: {} state rows read to evict 3 entries beside {HELD} held ones",
            scanned(&h)
        );

        // Five rows for held keys: their lookups, nothing else.
        let touch: Vec<(&str, i64, i64)> = held[..5].iter().map(|k| (k.as_str(), 301, 1)).collect();
        h.batch(&touch).await;
        assert!(
            (1..=5 * READS_PER_ROW).contains(&scanned(&h)),
            "{what}: {} state rows read for 5 arriving rows beside {HELD} held ones",
            scanned(&h)
        );
    }
}

#[tokio::test]
async fn count_distinct_reads_the_arriving_values_and_its_values_leave_with_their_window() {
    // A window's distinct values are state entries beside its group (`operator::distinct_count`):
    // a batch looks up the values it brings, a restart re-indexes them, the window's close
    // removes them with the group.
    let select = "SELECT window.start AS wstart, key, count(DISTINCT value) AS d, \
                  count(DISTINCT value) FILTER (WHERE value < 100) AS small \
                  FROM events GROUP BY window(ts, '10 seconds'), key";
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let held: Vec<(&str, i64, i64)> = (0..HELD as i64).map(|v| ("a", 1 + v % 5, v)).collect();
    let pushes = [
        held,
        vec![("a", 2, 0), ("a", 3, 999), ("a", 4, 5000), ("a", 5, 50), ("b", 12, 7), ("b", 13, 7)],
        vec![("c", 40, 1)],
    ];
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(5), select, checkpoint).await.unwrap();
    h.batch(&pushes[0]).await;
    assert_eq!(state_rows(&h), 1 + HELD as u64 + 100, "the group, and an entry per value of each aggregate");

    assert_eq!(h.batch(&pushes[1]).await, Vec::<String>::new(), "no window closed yet");
    // Two group lookups, then a's 4 values for `d` and 2 for `small`, b's one value for each.
    assert_eq!(scanned(&h), 2 + 8, "reads follow the arriving values, not the {HELD} held");
    assert_eq!(state_rows(&h), 1 + HELD as u64 + 100 + 1 + 3);

    drop(h);
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(5), select, checkpoint).await.unwrap();
    for done in &pushes[..2] {
        h.stream.push(events(done)).unwrap();
    }
    assert_eq!(h.batch(&pushes[2]).await, Vec::<String>::new(), "the watermark was 8 s");
    let mut closed = h.no_data_batch().await.expect("the watermark's advance to 35 s runs a batch");
    closed.sort();
    assert_eq!(closed, vec!["00:00:00,a,1001,100", "00:00:10,b,1,1"]);
    assert_eq!(state_rows(&h), 3, "c's group and its value for each aggregate: the closed ones' values left");
}
