//! Spark's `UnsupportedOperationChecker` (Spark 4.x, `checkForStreaming` and
//! `checkStreamingQueryGlobalWatermarkLimit`), rule by rule: each query below is refused before
//! it starts or accepted and run, and the expectation says what Spark does with it. The README's
//! table "What a streaming query may contain" is this list; a case where sluice accepts what Spark
//! refuses, or refuses what Spark accepts, is marked and explained there.

use sluice::sink::MemorySink;
use sluice::{OutputMode, StreamContext};

use crate::common::{events, events_schema};

/// What sluice does with a query.
#[derive(Debug)]
enum Expect {
    /// Refused before it starts, the message containing this text.
    Refused(&'static str),
    /// Planned and run over one batch of every stream.
    Runs,
}

use Expect::{Refused, Runs};
use OutputMode::{Append, Complete, Update};

/// Streams `a` and `b` (watermark 10 s on `ts`), `n` (no watermark), all `key, ts, value`; the
/// bounded table `t(key, w)` is written inline as `VALUES`.
const T: &str = "(VALUES ('a', 1), ('b', 2)) AS t(key, w)";

/// `(Spark's rule, SELECT, output mode, what sluice does)`; the comment after a case says what
/// Spark 4.x does when it differs.
fn cases() -> Vec<(&'static str, String, OutputMode, Expect)> {
    let win = "SELECT window.start AS ws, key, count(*) AS c FROM a GROUP BY window(ts, '10 seconds'), key";
    vec![
        ("complete mode needs an aggregation", "SELECT key FROM a".into(), Complete, Refused("complete")),
        ("update mode without an aggregation is append", "SELECT key, value FROM a".into(), Update, Runs),
        ("append + aggregation needs a watermark", "SELECT key, count(*) AS c FROM n GROUP BY key".into(), Append, Refused("without a watermark")),
        (
            "append + aggregation needs the event time among the keys",
            "SELECT key, count(*) AS c FROM a GROUP BY key".into(),
            Append,
            Refused("event-time column"),
        ),
        ("append + window aggregation", win.into(), Append, Runs),
        ("update + aggregation without watermark", "SELECT key, count(*) AS c FROM n GROUP BY key".into(), Update, Runs),
        ("complete + aggregation", "SELECT key, count(*) AS c FROM n GROUP BY key".into(), Complete, Runs),
        (
            "update + session window",
            "SELECT key, count(*) AS c FROM a GROUP BY key, session_window(ts, '5 seconds')".into(),
            Update,
            Refused("session window in update mode"),
        ),
        (
            "complete + session window",
            "SELECT key, count(*) AS c FROM a GROUP BY key, session_window(ts, '5 seconds')".into(),
            Complete,
            Runs,
        ),
        // Spark refuses: "Distinct aggregations are not supported on streaming DataFrames".
        (
            "distinct aggregate (sluice beyond Spark)",
            "SELECT key, count(DISTINCT value) AS d FROM n GROUP BY key".into(),
            Update,
            Runs,
        ),
        ("grouping sets", "SELECT key, count(*) AS c FROM n GROUP BY ROLLUP (key, value)".into(), Complete, Refused("GROUPING SETS")),
        (
            "aggregation over an aggregation, append",
            format!("SELECT window.start AS w2, sum(c) AS s FROM ({win}) AS w GROUP BY window(ws, '1 minute')"),
            Append,
            Runs,
        ),
        // Spark refuses a second aggregation outside append mode; sluice retracts the inner one's
        // updates when the outer one's aggregates can (count, sum, avg of integers).
        (
            "aggregation over an aggregation, update (sluice beyond Spark)",
            "SELECT c, count(*) AS k FROM (SELECT key, count(*) AS c FROM n GROUP BY key) GROUP BY c".into(),
            Update,
            Runs,
        ),
        (
            "max over an updating aggregation, complete",
            "SELECT max(c) AS m FROM (SELECT key, count(*) AS c FROM n GROUP BY key)".into(),
            Complete,
            Refused("several streaming aggregations"),
        ),
        (
            "aggregation after deduplication, update",
            "SELECT key, count(*) AS c FROM (SELECT key, ts, ROW_NUMBER() OVER (PARTITION BY key ORDER BY ts) AS rn FROM a) \
             WHERE rn = 1 GROUP BY key"
                .into(),
            Update,
            Runs,
        ),
        // Spark accepts dropDuplicates after an aggregation in append mode.
        (
            "deduplication after an aggregation (sluice stricter than Spark)",
            format!("SELECT ws, key FROM (SELECT ws, key, ROW_NUMBER() OVER (PARTITION BY key ORDER BY ws) AS rn FROM ({win})) WHERE rn = 1"),
            Append,
            Refused("deduplication after an aggregation"),
        ),
        // Spark refuses every window function (OVER) on a stream, this pattern included.
        (
            "ROW_NUMBER() = 1 deduplication (sluice beyond Spark)",
            "SELECT key, ts FROM (SELECT key, ts, ROW_NUMBER() OVER (PARTITION BY key ORDER BY ts) AS rn FROM a) WHERE rn = 1"
                .into(),
            Append,
            Runs,
        ),
        ("other window functions", "SELECT key, sum(value) OVER (PARTITION BY key) AS s FROM a".into(), Append, Refused("window function")),
        ("ORDER BY without aggregation", "SELECT key FROM a ORDER BY key".into(), Append, Refused("ORDER BY")),
        (
            "ORDER BY and LIMIT on an aggregation in complete mode",
            "SELECT key, count(*) AS c FROM n GROUP BY key ORDER BY c DESC LIMIT 3".into(),
            Complete,
            Runs,
        ),
        ("LIMIT in update mode", "SELECT key, count(*) AS c FROM n GROUP BY key LIMIT 3".into(), Update, Refused("LIMIT")),
        // Spark accepts LIMIT in append mode (StreamingGlobalLimitExec keeps the count in state).
        ("LIMIT in append mode (sluice stricter than Spark)", "SELECT key FROM a LIMIT 3".into(), Append, Refused("LIMIT")),
        (
            "stream-stream join in update mode",
            "SELECT a.key FROM a JOIN b ON a.key = b.key".into(),
            Update,
            Refused("stream-stream join in update mode"),
        ),
        // Spark runs joins of two streams in append mode only; their rows are final, so sluice
        // lets an aggregation consume them in any mode.
        (
            "stream-stream join under an aggregation, complete (sluice beyond Spark)",
            "SELECT a.key, count(*) AS c FROM a JOIN b ON a.key = b.key GROUP BY a.key".into(),
            Complete,
            Runs,
        ),
        ("stream-stream inner join without a watermark", "SELECT n.key FROM n JOIN a ON n.key = a.key".into(), Append, Runs),
        (
            "stream-stream join without an equality",
            "SELECT a.key FROM a JOIN b ON b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND".into(),
            Append,
            Refused("without an equality"),
        ),
        (
            "stream-stream left outer join needs a time range",
            "SELECT a.key, b.value FROM a LEFT JOIN b ON a.key = b.key".into(),
            Append,
            Refused("without a watermark and a time range"),
        ),
        (
            "stream-stream left outer join with a time range",
            "SELECT a.key, b.value FROM a LEFT JOIN b ON a.key = b.key AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND"
                .into(),
            Append,
            Runs,
        ),
        (
            "stream-stream left outer join, a watermark on the nullable side only",
            "SELECT n.key, a.value FROM n LEFT JOIN a ON n.key = a.key AND a.ts BETWEEN n.ts AND n.ts + INTERVAL '5' SECOND"
                .into(),
            Append,
            Runs,
        ),
        (
            "stream-stream left outer join, no watermark on the nullable side",
            "SELECT a.key, n.value FROM a LEFT JOIN n ON a.key = n.key AND n.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND"
                .into(),
            Append,
            Refused("without a watermark and a time range"),
        ),
        (
            "stream-stream right outer join, only the right side bounded",
            "SELECT a.key, b.value FROM a RIGHT JOIN b ON a.key = b.key AND b.ts >= a.ts".into(),
            Append,
            Runs,
        ),
        // Spark accepts a full outer join when either side's state can be evicted, and keeps the
        // other side's unmatched rows forever (never emitting them).
        (
            "stream-stream full outer join, one side bounded (sluice stricter than Spark)",
            "SELECT a.key, b.value FROM a FULL JOIN b ON a.key = b.key AND b.ts >= a.ts".into(),
            Append,
            Refused("without a watermark and a time range"),
        ),
        (
            "stream-stream left semi join with a time range",
            "SELECT a.key FROM a LEFT SEMI JOIN b ON a.key = b.key AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND".into(),
            Append,
            Runs,
        ),
        (
            "stream-stream left anti join",
            "SELECT a.key FROM a LEFT ANTI JOIN b ON a.key = b.key AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND".into(),
            Append,
            Refused("LeftAnti join between two streams"),
        ),
        (
            "aggregation over a stream-stream join, append",
            "SELECT window.start AS ws, count(*) AS c FROM (SELECT a.ts FROM a JOIN b ON a.key = b.key \
             AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND) AS j GROUP BY window(ts, '10 seconds')"
                .into(),
            Append,
            Runs,
        ),
        ("stream join table", format!("SELECT a.key, t.w FROM a JOIN {T} ON a.key = t.key"), Append, Runs),
        ("stream LEFT JOIN table", format!("SELECT a.key, t.w FROM a LEFT JOIN {T} ON a.key = t.key"), Append, Runs),
        (
            "table LEFT JOIN stream",
            format!("SELECT t.key, a.value FROM {T} LEFT JOIN a ON a.key = t.key"),
            Append,
            Refused("between a stream and a bounded table"),
        ),
        (
            "stream FULL JOIN table",
            format!("SELECT t.key, a.value FROM a FULL JOIN {T} ON a.key = t.key"),
            Append,
            Refused("between a stream and a bounded table"),
        ),
        (
            "stream LEFT ANTI JOIN table",
            format!("SELECT a.key FROM a LEFT ANTI JOIN {T} ON a.key = t.key"),
            Append,
            Runs,
        ),
        ("union of two streams", "SELECT key, ts FROM a UNION ALL SELECT key, ts FROM b".into(), Append, Runs),
        (
            "union of a stream and a bounded table",
            format!("SELECT key FROM a UNION ALL SELECT key FROM {T}"),
            Append,
            Refused("UNION of a stream and a bounded table"),
        ),
        (
            "EXCEPT with a stream on the right",
            format!("SELECT key FROM {T} EXCEPT SELECT key FROM a"),
            Append,
            Refused("EXCEPT"),
        ),
        ("INTERSECT of streams", "SELECT key FROM a INTERSECT SELECT key FROM b".into(), Append, Refused("INTERSECT")),
        (
            "subquery over a stream",
            "SELECT key FROM a WHERE key IN (SELECT key FROM b)".into(),
            Append,
            Refused("IN (SELECT ...)"),
        ),
    ]
}

/// Runs `select` in `mode`; `Ok(())` if it started and ran a batch over all streams.
async fn try_query(select: &str, mode: OutputMode) -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let a = ctx.register_memory_stream("a", events_schema(), Some(("ts", 10_000)))?;
    let b = ctx.register_memory_stream("b", events_schema(), Some(("ts", 10_000)))?;
    let n = ctx.register_memory_stream("n", events_schema(), None)?;
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
    let definitions = ctx.execute(&format!("INSERT INTO out {select}")).await?;
    let query = ctx.start(&definitions[0], "memory://").await?;
    for stream in [&a, &b, &n] {
        stream.push(events(&[("a", 1, 1), ("b", 2, 2), ("a", 30, 3)]))?;
    }
    query.run_next_batch().await?;
    Ok(())
}

#[tokio::test]
async fn each_rule_of_sparks_checker() {
    let mut wrong = Vec::new();
    for (rule, select, mode, expect) in cases() {
        let got = try_query(&select, mode).await;
        let ok = match (&expect, &got) {
            (Runs, Ok(())) => true,
            (Refused(text), Err(e)) => e.to_string().contains(text),
            _ => false,
        };
        if !ok {
            wrong.push(format!("{rule} ({mode}): expected {expect:?}, got {got:?}\n  {select}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
