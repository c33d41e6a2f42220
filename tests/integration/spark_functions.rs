//! The Spark functions sluice adds beyond datafusion-spark, in streaming queries, checked against
//! the values Spark gives. Expected values come from Spark's documentation (the datetime pattern
//! page <https://spark.apache.org/docs/latest/sql-ref-datetime-pattern.html> and the SQL function
//! reference) and from Spark's source where the documentation is silent (`GetJsonObjectEvaluator`
//! in `jsonExpressions.scala`, `Divide` in `arithmetic.scala`, `Explode`/`PosExplode` in
//! `generators.scala`).

use crate::common::*;
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// `script` (settings, then `INSERT INTO out ...`) over the memory stream `events` (no watermark)
/// into a memory sink `out` in `mode`, at `checkpoint`.
async fn start_at(
    mode: OutputMode,
    script: &str,
    checkpoint: &str,
) -> sluice::Result<(MemoryStream, MemorySink, StreamingQuery)> {
    let mut ctx = StreamContext::new();
    let stream = ctx.register_memory_stream("events", events_schema(), None)?;
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
    let definitions = ctx.execute(script).await?;
    let query = ctx.start(&definitions[0], checkpoint).await?;
    Ok((stream, sink, query))
}

/// The rows of one batch of `input` through `script` in append mode.
async fn one_batch(script: &str, input: &[(&str, i64, i64)]) -> sluice::Result<Vec<String>> {
    let (stream, sink, query) = start_at(OutputMode::Append, script, "memory://").await?;
    stream.push(events(input)).unwrap();
    query.run_next_batch().await?;
    Ok(rows(&sink.all()))
}

/// Spark's datetime patterns, formatting 2024-01-01T00:00:03.123Z (a Monday).
const DATE_FORMATS: &str = "SELECT date_format(ts + INTERVAL '123 milliseconds', 'yyyy-MM-dd HH:mm:ss.SSS') AS a,
           date_format(ts, 'EEE, d MMM yyyy h:mm:ss a') AS b,
           date_format(ts, 'EEEE D MMMM yy hh ''o''''clock''') AS c,
           date_format(ts, 'yyyy-MM-dd''T''HH:mmxxx Z') AS d,
           date_format(DATE '2024-03-05', 'yyyy-MM-dd HH:mm E') AS e
    FROM events";

#[tokio::test]
async fn date_format_takes_spark_patterns_in_the_session_time_zone() {
    let utc = one_batch(&format!("INSERT INTO out {DATE_FORMATS}"), &[("a", 3, 1)]).await.unwrap();
    assert_eq!(
        utc,
        ["2024-01-01 00:00:03.123,Mon, 1 Jan 2024 12:00:03 AM,Monday 1 January 24 12 o'clock,\
          2024-01-01T00:00+00:00 +0000,2024-03-05 00:00 Tue"]
    );
    // The same instant in New York (UTC-5 in January) is the evening before; a DATE is midnight
    // wherever it is shown.
    let script = format!("SET spark.sql.session.timeZone = 'America/New_York'; INSERT INTO out {DATE_FORMATS}");
    let new_york = one_batch(&script, &[("a", 3, 1)]).await.unwrap();
    assert_eq!(
        new_york,
        ["2023-12-31 19:00:03.123,Sun, 31 Dec 2023 7:00:03 PM,Sunday 365 December 23 07 o'clock,\
          2023-12-31T19:00-05:00 -0500,2024-03-05 00:00 Tue"]
    );
}

#[tokio::test]
async fn date_format_refuses_pattern_letters_it_cannot_print_as_spark() {
    for (pattern, named) in [("yyyy-ww", "'ww'"), ("HH:mm:ss.SS", "'SS'"), ("z", "'z'"), ("%Y-%m-%d", "to_char")] {
        let script = format!("INSERT INTO out SELECT date_format(ts, '{pattern}') AS d FROM events");
        let err = start_at(OutputMode::Append, &script, "memory://").await.err().expect(pattern).to_string();
        assert!(err.contains(named), "{pattern}: {err}");
    }
    // chrono's patterns stay available through to_char.
    let out = one_batch("INSERT INTO out SELECT to_char(ts, '%Y/%m/%d') AS d FROM events", &[("a", 3, 1)]).await;
    assert_eq!(out.unwrap(), ["2024/01/01"]);
}

#[tokio::test]
async fn get_json_object_follows_spark() {
    let script = "INSERT INTO out SELECT get_json_object(key, '$.a.b[1]') AS b, get_json_object(key, '$.c') AS c,
                         get_json_object(key, '$.a') AS a, get_json_object(key, '$[''d''][*].e') AS e,
                         get_json_object(key, '$.missing') AS m
                  FROM events";
    let input = [
        (r#"{"a":{"b":[1,2.50]},"c":"x","d":[{"e":"y"},{"e":true}]}"#, 1, 1),
        (r#"{"d":[{"e":"only"}],"c":{"n":null}}"#, 2, 2),
        ("not json", 3, 3),
    ];
    let out = one_batch(script, &input).await.unwrap();
    assert_eq!(
        out,
        [r#"2.5,x,{"b":[1,2.5]},["y",true],null"#, r#"null,{"n":null},null,"only",null"#, "null,null,null,null,null",]
    );
}

#[tokio::test]
async fn approx_count_distinct_merges_across_batches_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let script = "INSERT INTO out SELECT key, approx_count_distinct(value) AS n FROM events GROUP BY key";
    let inputs: [&[(&str, i64, i64)]; 3] = [
        &[("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 4, 1)],
        &[("a", 5, 3), ("a", 6, 4)],
        &[("a", 7, 5), ("a", 8, 1), ("b", 9, 2)],
    ];
    let (stream, sink, query) = start_at(OutputMode::Update, script, checkpoint).await.unwrap();
    stream.push(events(inputs[0])).unwrap();
    query.run_next_batch().await.unwrap();
    assert_eq!(rows(&sink.all()), ["a,3", "b,1"]);
    stream.push(events(inputs[1])).unwrap();
    query.run_next_batch().await.unwrap();
    assert_eq!(rows(sink.batches().values().last().unwrap()), ["a,4"]);
    drop(query);
    // A new process: the memory stream is refilled with what was pushed before, then new rows.
    let (stream, sink, query) = start_at(OutputMode::Update, script, checkpoint).await.unwrap();
    for input in inputs {
        stream.push(events(input)).unwrap();
    }
    query.run_next_batch().await.unwrap();
    assert_eq!(rows(sink.batches().values().last().unwrap()), ["a,5", "b,2"]);
}

#[tokio::test]
async fn explode_makes_a_row_per_element() {
    let input = [("a", 1, 1), ("b", 2, 2)];
    let out = one_batch("INSERT INTO out SELECT key, explode(array(value, value * 10)) FROM events", &input).await;
    assert_eq!(out.unwrap(), ["a,1", "a,10", "b,2", "b,20"]);
    // NULL and empty arrays make no row with explode, one NULL row with explode_outer.
    let arrays =
        "CASE WHEN value = 1 THEN NULL WHEN value = 2 THEN array_remove(array(value), value) ELSE array(value) END";
    let out = one_batch(
        &format!("INSERT INTO out SELECT key, explode({arrays}) AS v FROM events"),
        &[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)],
    )
    .await;
    assert_eq!(out.unwrap(), ["c,3"]);
    let out = one_batch(
        &format!("INSERT INTO out SELECT key, explode_outer({arrays}) AS v FROM events"),
        &[("a", 1, 1), ("b", 2, 2), ("c", 3, 3)],
    )
    .await;
    assert_eq!(out.unwrap(), ["a,null", "b,null", "c,3"]);
    let out = one_batch("INSERT INTO out SELECT key, posexplode(array(value, value + 1)) FROM events", &input).await;
    assert_eq!(out.unwrap(), ["a,0,1", "a,1,2", "b,0,2", "b,1,3"]);
    let out = one_batch("INSERT INTO out SELECT explode(make_map(key, value)) AS (k, v) FROM events", &input).await;
    assert_eq!(out.unwrap(), ["a,1", "b,2"]);
}

#[tokio::test]
async fn explode_feeds_a_streaming_aggregation() {
    let script = "INSERT INTO out SELECT tag, count(*) AS n
                  FROM (SELECT explode(array(key, 'all')) AS tag FROM events) AS tags GROUP BY tag";
    let (stream, sink, query) = start_at(OutputMode::Update, script, "memory://").await.unwrap();
    stream.push(events(&[("a", 1, 1), ("b", 2, 2)])).unwrap();
    query.run_next_batch().await.unwrap();
    let mut first = rows(&sink.all());
    first.sort();
    assert_eq!(first, ["a,1", "all,2", "b,1"]);
    stream.push(events(&[("a", 3, 3)])).unwrap();
    query.run_next_batch().await.unwrap();
    let mut second = rows(sink.batches().values().last().unwrap());
    second.sort();
    assert_eq!(second, ["a,2", "all,3"]);
}

#[tokio::test]
async fn generators_spark_refuses_are_refused() {
    for (select, says) in [
        ("explode(array(value)) AS x, explode(array(key)) AS y", "one generator"),
        ("explode(array(value)) + 1 AS x", "whole select item"),
        ("explode(make_map(key, value))", "explode(m) AS (key, value)"),
    ] {
        let script = format!("INSERT INTO out SELECT {select} FROM events");
        let err = start_at(OutputMode::Append, &script, "memory://").await.err().expect(select).to_string();
        assert!(err.contains(says), "{select}: {err}");
    }
}

#[tokio::test]
async fn integer_division_is_spark_s_with_the_spark_functions_setting() {
    let select = "SELECT key, value / 2 AS half, 7 / 2 AS c, value / CAST(NULL AS INT) AS n FROM events";
    let datafusion = one_batch(&format!("INSERT INTO out {select}"), &[("a", 1, 3)]).await.unwrap();
    assert_eq!(datafusion, ["a,1,3,null"]);
    let spark = format!("SET sluice.sql.spark_functions = 'true'; INSERT INTO out {select}");
    let spark = one_batch(&spark, &[("a", 1, 3)]).await.unwrap();
    assert_eq!(spark, ["a,1.5,3.5,null"]);
    // Spark 4 (ANSI mode) fails on a zero divisor instead of returning Infinity.
    let script = "SET sluice.sql.spark_functions = 'true'; INSERT INTO out SELECT value / (value - 3) AS q FROM events";
    let err = one_batch(script, &[("a", 1, 3)]).await.unwrap_err().to_string();
    assert!(err.contains("DIVIDE_BY_ZERO"), "{err}");
    // The quotient's column keeps the operator's name.
    let script = "SET sluice.sql.spark_functions = 'true'; INSERT INTO out SELECT value / 4 FROM events";
    let (stream, sink, query) = start_at(OutputMode::Append, script, "memory://").await.unwrap();
    stream.push(events(&[("a", 1, 3)])).unwrap();
    query.run_next_batch().await.unwrap();
    let batch = &sink.all()[0];
    assert_eq!(batch.schema().field(0).name(), "events.value / Int64(4)");
    assert_eq!(rows(&[batch.clone()]), ["0.75"]);
}

#[test]
fn sluice_run_takes_spark_s_functions() {
    let dir = tempfile::tempdir().unwrap();
    let record = r#"{"ts": "2024-01-01T00:00:03Z", "payload": {"user": {"name": "ann"}, "n": 2}, "tags": ["x", "y"]}"#;
    write_file(&dir.path().join("in"), "0.json", &format!("{record}\n"), 0);
    let script = "SET spark.sql.session.timeZone = 'Asia/Tokyo';
        SET sluice.sql.spark_functions = 'true';
        CREATE TABLE e (ts TIMESTAMP, payload STRING, tags ARRAY<STRING>) WITH (connector = 'file', path = '{dir}/in');
        CREATE TABLE o WITH (connector = 'file', path = '{dir}/out', format = 'json');
        INSERT INTO o
        SELECT date_format(ts, 'yyyy-MM-dd HH:mm') AS local_time, get_json_object(payload, '$.user.name') AS name,
               CAST(get_json_object(payload, '$.n') AS INT) / 4 AS quarter, explode(tags) AS tag
        FROM e;";
    let path = dir.path().join("q.sql");
    std::fs::write(&path, script.replace("{dir}", &dir.path().display().to_string())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", path.to_str().unwrap(), "--trigger", "available-now"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = sink_rows_by_batch(&dir.path().join("out"));
    let expected: Vec<serde_json::Value> = ["x", "y"]
        .iter()
        .map(|tag| serde_json::json!({"local_time": "2024-01-01 09:00", "name": "ann", "quarter": 0.5, "tag": tag}))
        .collect();
    assert_eq!(rows[&0], expected);
}

#[tokio::test]
async fn from_json_is_refused_by_name() {
    let script = "INSERT INTO out SELECT from_json(key, 'a INT') AS j FROM events";
    let err = start_at(OutputMode::Append, script, "memory://").await.err().expect("refused").to_string();
    assert!(err.contains("from_json"), "{err}");
}
