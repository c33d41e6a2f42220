//! Stream-stream joins (SEMANTICS §3): impressions joined to the clicks that follow them within
//! 15 s, both streams with a 10 s watermark delay. The same five micro-batches run through every
//! join type; the comments give the watermarks each batch runs under.

use crate::common::*;
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamingQuery};

type Rows<'a> = &'a [(&'a str, i64, i64)];

/// `(impressions, clicks)` per batch; `None` = a no-data batch.
const BATCHES: [Option<(Rows, Rows)>; 5] = [
    // W = 0.
    Some((&[("a", 10, 1), ("b", 12, 2), ("c", 14, 3)], &[("a", 20, 10)])),
    // W = 4 (impressions 14 - 10; clicks are at 20 - 10).
    Some((&[("d", 40, 4)], &[("b", 50, 11), ("a", 22, 15)])),
    // W = 30, late below 4. Left state evicts ts < 30 - 15 s, right state ts < 30.
    Some((&[("e", 45, 5)], &[("d", 50, 12), ("z", 20, 14)])),
    // W = 35 (no new data), late below 30.
    None,
    // W = 35, late below 35: the impression at 5 is late.
    Some((&[("f", 5, 6)], &[("e", 47, 13)])),
];

const ON: &str = "ON i.key = c.key AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '15' SECOND";

struct JoinHarness {
    impressions: MemoryStream,
    clicks: MemoryStream,
    sink: MemorySink,
    query: StreamingQuery,
}

impl JoinHarness {
    async fn new(mode: OutputMode, select: &str, checkpoint: &str) -> sluice::Result<Self> {
        let mut ctx = crate::common::context().await;
        let impressions = ctx.register_memory_stream("impressions", events_schema(), Some(("ts", 10_000)))?;
        let clicks = ctx.register_memory_stream("clicks", events_schema(), Some(("ts", 10_000)))?;
        let sink = MemorySink::new();
        let for_query = sink.clone();
        ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
        let sql = format!("SET spark.sql.shuffle.partitions = {TEST_PARTITIONS}; INSERT INTO out {select}");
        let definitions = ctx.execute(&sql).await?;
        let query = ctx.start(&definitions[0], checkpoint).await?;
        Ok(Self { impressions, clicks, sink, query })
    }

    /// Runs the next batch (pushing its rows, if any) and returns what the sink got from it.
    async fn run(&mut self, batch: Option<(Rows<'_>, Rows<'_>)>) -> Vec<String> {
        if let Some((impressions, clicks)) = batch {
            if !impressions.is_empty() {
                self.impressions.push(events(impressions)).unwrap();
            }
            if !clicks.is_empty() {
                self.clicks.push(events(clicks)).unwrap();
            }
        }
        assert!(self.query.run_next_batch().await.unwrap(), "the batch runs");
        rows(self.sink.batches().values().last().unwrap())
    }

    async fn run_all(&mut self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for batch in BATCHES {
            out.push(self.run(batch).await);
        }
        out
    }
}

fn select(join: &str) -> String {
    format!(
        "SELECT i.key, i.ts AS its, c.ts AS cts, i.value AS iv, c.value AS cv FROM impressions i {join} clicks c {ON}"
    )
}

const NONE: Vec<String> = Vec::new();

fn strings(rows: &[&str]) -> Vec<String> {
    rows.iter().map(|r| r.to_string()).collect()
}

#[tokio::test]
async fn inner_join_emits_a_pair_in_the_batch_of_its_later_row() {
    let mut h = JoinHarness::new(OutputMode::Append, &select("JOIN"), "memory://").await.unwrap();
    let out = h.run_all().await;
    assert_eq!(out[0], strings(&["a,00:00:10,00:00:20,1,10"]));
    // The impression at 10 matches a second click a batch later.
    assert_eq!(out[1], strings(&["a,00:00:10,00:00:22,1,15"]));
    assert_eq!(out[2], strings(&["d,00:00:40,00:00:50,4,12"]));
    assert_eq!(out[3], NONE);
    assert_eq!(out[4], strings(&["e,00:00:45,00:00:47,5,13"]));
    let progress = h.query.recent_progress().last().unwrap().clone();
    assert_eq!(progress.late_rows_dropped(), 1, "the impression at 5 is below W_3 = 35");
    // Left: d@40, e@45 (f was late); right: b@50, d@50, e@47.
    assert_eq!(progress.state_rows(), 5);
}

#[tokio::test]
async fn left_outer_join_emits_unmatched_rows_once_when_evicted() {
    let mut h = JoinHarness::new(OutputMode::Append, &select("LEFT JOIN"), "memory://").await.unwrap();
    let out = h.run_all().await;
    assert_eq!(out[0], strings(&["a,00:00:10,00:00:20,1,10"]));
    assert_eq!(out[1], strings(&["a,00:00:10,00:00:22,1,15"]));
    // W = 30 evicts impressions before 15 s: a matched (no null row), b and c did not.
    assert_eq!(
        sorted(&out[2]),
        sorted(&["d,00:00:40,00:00:50,4,12", "b,00:00:12,null,2,null", "c,00:00:14,null,3,null"])
    );
    assert_eq!(out[3], NONE);
    assert_eq!(out[4], strings(&["e,00:00:45,00:00:47,5,13"]));
}

#[tokio::test]
async fn right_outer_join_pads_a_click_evicted_in_its_own_batch() {
    let mut h = JoinHarness::new(OutputMode::Append, &select("RIGHT JOIN"), "memory://").await.unwrap();
    let out = h.run_all().await;
    // The click at 20 arrives with W_1 = 4 < 20 < W_2 = 30, finds no impression and is evicted
    // (ts < W) in the same batch.
    assert_eq!(sorted(&out[2]), sorted(&["d,00:00:40,00:00:50,4,12", "null,null,00:00:20,null,14"]));
    assert_eq!(out[4], strings(&["e,00:00:45,00:00:47,5,13"]));
}

#[tokio::test]
async fn full_outer_join_pads_both_sides() {
    let mut h = JoinHarness::new(OutputMode::Append, &select("FULL JOIN"), "memory://").await.unwrap();
    let out = h.run_all().await;
    assert_eq!(
        sorted(&out[2]),
        sorted(&[
            "d,00:00:40,00:00:50,4,12",
            "b,00:00:12,null,2,null",
            "c,00:00:14,null,3,null",
            "null,null,00:00:20,null,14"
        ])
    );
}

#[tokio::test]
async fn left_semi_join_emits_a_left_row_once_at_its_first_match() {
    let select = format!("SELECT i.key, i.ts, i.value FROM impressions i LEFT SEMI JOIN clicks c {ON}");
    let mut h = JoinHarness::new(OutputMode::Append, &select, "memory://").await.unwrap();
    let out = h.run_all().await;
    assert_eq!(
        out,
        vec![strings(&["a,00:00:10,1"]), NONE, strings(&["d,00:00:40,4"]), NONE, strings(&["e,00:00:45,5"])]
    );
}

#[tokio::test]
async fn join_state_survives_a_restart_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = JoinHarness::new(OutputMode::Append, &select("LEFT JOIN"), checkpoint).await.unwrap();
    let mut out = vec![h.run(BATCHES[0]).await, h.run(BATCHES[1]).await];
    drop(h);
    let mut h = JoinHarness::new(OutputMode::Append, &select("LEFT JOIN"), checkpoint).await.unwrap();
    // The memory streams start empty again; the offsets say two batches were read from each.
    for (impressions, clicks) in BATCHES[..2].iter().flatten() {
        h.impressions.push(events(impressions)).unwrap();
        h.clicks.push(events(clicks)).unwrap();
    }
    for batch in &BATCHES[2..] {
        out.push(h.run(*batch).await);
    }
    let mut uninterrupted = JoinHarness::new(OutputMode::Append, &select("LEFT JOIN"), "memory://").await.unwrap();
    assert_eq!(out, uninterrupted.run_all().await);
}

#[tokio::test]
async fn a_window_over_a_join_runs_under_the_join_output_watermark() {
    let select = format!(
        "SELECT window.start AS w, count(*) AS pairs FROM
           (SELECT i.key, i.ts AS ts FROM impressions i JOIN clicks c {ON}) AS j
         GROUP BY window(ts, '10 seconds')"
    );
    let mut h = JoinHarness::new(OutputMode::Append, &select, "memory://").await.unwrap();
    let out = h.run_all().await;
    // The join's output watermark is W - 15 s - 1 ms: at W = 35 the window [10 s, 20 s) is not
    // final yet (its impressions may still meet clicks up to 25 s).
    assert!(out.iter().all(|b| b.is_empty()), "{out:?}");
    // W = 60: the aggregation sees 44.999 s and emits [10 s, 20 s) with its two pairs.
    assert_eq!(h.run(Some((&[("g", 70, 7)], &[("g", 71, 16)]))).await, NONE);
    assert_eq!(h.run(None).await, strings(&["00:00:10,2"]));
}

#[tokio::test]
async fn outer_joins_without_a_time_range_are_refused() {
    let select = "SELECT i.key FROM impressions i LEFT JOIN clicks c ON i.key = c.key";
    let err = JoinHarness::new(OutputMode::Append, select, "memory://").await.err().unwrap().to_string();
    assert!(err.contains("Left join between two streams without a watermark and a time range"), "{err}");
    assert!(err.contains("BETWEEN"), "{err}");
}

#[tokio::test]
async fn stream_stream_joins_run_in_append_mode_only() {
    let err = JoinHarness::new(OutputMode::Update, &select("JOIN"), "memory://").await.err().unwrap().to_string();
    assert!(err.contains("stream-stream join in update mode"), "{err}");
}

#[tokio::test]
async fn three_streams_join_through_two_stateful_joins() {
    let mut ctx = crate::common::context().await;
    let mut streams = Vec::new();
    for name in ["impressions", "clicks", "conversions"] {
        streams.push(ctx.register_memory_stream(name, events_schema(), Some(("ts", 10_000))).unwrap());
    }
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(for_query.clone()));
    let sql = format!(
        "INSERT INTO out SELECT i.key, i.value AS iv, c.value AS cv, v.value AS vv
         FROM impressions i JOIN clicks c {ON}
         JOIN conversions v ON v.key = c.key AND v.ts BETWEEN c.ts AND c.ts + INTERVAL '15' SECOND"
    );
    let definition = ctx.execute(&sql).await.unwrap().remove(0);
    let query = ctx.start(&definition, "memory://").await.unwrap();
    let batches: [[Rows; 3]; 2] = [
        [&[("a", 10, 1), ("b", 10, 2)], &[("a", 12, 3)], &[]],
        [&[], &[("b", 14, 4)], &[("a", 20, 5), ("b", 40, 6), ("b", 25, 7)]],
    ];
    let mut out = Vec::new();
    for batch in batches {
        for (stream, input) in streams.iter().zip(batch) {
            if !input.is_empty() {
                stream.push(events(input)).unwrap();
            }
        }
        assert!(query.run_next_batch().await.unwrap());
        out.push(rows(sink.batches().values().last().unwrap()));
    }
    // a: impression, click, then conversion a batch later; b's conversion at 40 is out of range.
    assert_eq!(out, vec![NONE, strings(&["a,1,3,5", "b,2,4,7"])]);
}

#[tokio::test]
async fn streams_join_on_equal_windows_and_evict_by_the_window_end() {
    let select = "SELECT i.key, i.w.start AS w, i.value AS iv, c.value AS cv FROM
        (SELECT key, value, window(ts, '10 seconds') AS w FROM impressions) AS i
        JOIN (SELECT key, value, window(ts, '10 seconds') AS w FROM clicks) AS c ON i.key = c.key AND i.w = c.w";
    let mut h = JoinHarness::new(OutputMode::Append, select, "memory://").await.unwrap();
    assert_eq!(
        h.run(Some((&[("a", 1, 1), ("b", 12, 2)], &[("a", 9, 10), ("b", 21, 11)]))).await,
        strings(&["a,00:00:00,1,10"])
    );
    // W = 2 (the impressions lag): nothing is evicted yet.
    assert_eq!(
        sorted(&h.run(Some((&[("c", 30, 3)], &[("b", 15, 12), ("c", 35, 13)]))).await),
        strings(&["b,00:00:10,2,12", "c,00:00:30,3,13"])
    );
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 7);
    // W = 20: windows ending at or before 20 leave both sides; c@30, b@21 and c@35 stay.
    assert_eq!(h.run(None).await, NONE);
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 3);
}

/// Two window aggregations joined on their windows, with a bound of the window selected above
/// the join: the optimizer computes `x.w.start` below the join, and that column is not the join's
/// event time (it was once taken for it, and every aggregated row was dropped as late).
#[tokio::test]
async fn window_aggregations_join_on_their_windows_with_a_bound_selected_above() {
    let select = "SELECT x.key, x.w.start AS ws, x.n AS impressions, y.n AS clicks FROM
        (SELECT key, window AS w, count(*) AS n FROM impressions GROUP BY window(ts, '10 seconds'), key) AS x
        JOIN (SELECT key, window AS w, count(*) AS n FROM clicks GROUP BY window(ts, '10 seconds'), key) AS y
        ON x.key = y.key AND x.w = y.w";
    let mut h = JoinHarness::new(OutputMode::Append, select, "memory://").await.unwrap();
    let mut out = Vec::new();
    for (i, c) in [(1, 2), (12, 13), (25, 26), (41, 42)] {
        out.extend(h.run(Some((&[("x", i, 1)], &[("x", c, 1)]))).await);
        assert_eq!(h.query.recent_progress().last().unwrap().late_rows_dropped(), 0);
    }
    while h.query.run_next_batch().await.unwrap() {
        out.extend(rows(h.sink.batches().values().last().unwrap()));
    }
    // W reaches 31 s: the windows [0, 10), [10, 20) and [20, 30) are final on both sides.
    assert_eq!(sorted(&out), strings(&["x,00:00:00,1,1", "x,00:00:10,1,1", "x,00:00:20,1,1"]));
}

/// Spark runs a left outer join with a watermark on the nullable side only, given a range that
/// bounds its time by the preserved side's (`getStateValueWatermark` needs no watermark on the
/// side whose state it bounds): the impressions' state is evicted, and its unmatched rows
/// emitted padded with nulls, as the clicks' watermark passes.
#[tokio::test]
async fn a_left_outer_join_needs_a_watermark_on_the_nullable_side_only() {
    let mut ctx = crate::common::context().await;
    let impressions = ctx.register_memory_stream("impressions", events_schema(), None).unwrap();
    let clicks = ctx.register_memory_stream("clicks", events_schema(), Some(("ts", 10_000))).unwrap();
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(for_query.clone()));
    let sql = format!(
        "INSERT INTO out SELECT i.key, i.value AS iv, c.value AS cv FROM impressions i LEFT JOIN clicks c {ON}"
    );
    let definitions = ctx.execute(&sql).await.unwrap();
    let query = ctx.start(&definitions[0], "memory://").await.unwrap();
    impressions.push(events(&[("a", 10, 1), ("b", 12, 2)])).unwrap();
    clicks.push(events(&[("a", 20, 10)])).unwrap();
    assert!(query.run_next_batch().await.unwrap());
    assert_eq!(rows(sink.batches().values().last().unwrap()), strings(&["a,1,10"]));
    // W = 10 s, then 30 s: impressions before 30 s - 15 s can no longer meet a click.
    clicks.push(events(&[("z", 40, 11)])).unwrap();
    assert!(query.run_next_batch().await.unwrap());
    assert_eq!(rows(sink.batches().values().last().unwrap()), NONE);
    assert!(query.run_next_batch().await.unwrap(), "the watermark moved: a no-data batch");
    assert_eq!(rows(sink.batches().values().last().unwrap()), strings(&["b,2,null"]));
}

#[tokio::test]
async fn joins_of_two_streams_without_an_equality_are_refused_not_a_panic() {
    for condition in [
        "ON c.ts BETWEEN i.ts AND i.ts + INTERVAL '15' SECOND",
        "ON i.key <> c.key AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '15' SECOND",
        "ON (i.key = c.key OR i.value = c.value) AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '15' SECOND",
    ] {
        for join in ["JOIN", "LEFT JOIN"] {
            let select = format!("SELECT i.key, c.ts AS cts FROM impressions i {join} clicks c {condition}");
            let err = JoinHarness::new(OutputMode::Append, &select, "memory://").await.err().unwrap().to_string();
            assert!(err.contains("without an equality condition") && err.contains("ON a.k = b.k"), "{select}: {err}");
        }
    }
    let select = "SELECT i.key, c.ts AS cts FROM impressions i CROSS JOIN clicks c";
    let err = JoinHarness::new(OutputMode::Append, select, "memory://").await.err().unwrap().to_string();
    assert!(err.contains("without an equality condition"), "{err}");
}
