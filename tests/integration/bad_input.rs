//! Bad input gets a clear error and loses nothing: malformed records, invalid queries for each
//! output mode, bad options.

use crate::common::*;
use sluice::OutputMode;

fn script(input: &std::path::Path, output: &std::path::Path, bad_data: &str) -> String {
    format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json', max_files_per_trigger = '1'{bad_data});
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json', output_mode = 'update');
         INSERT INTO out SELECT key, count(*) AS cnt FROM events GROUP BY key;",
        input.display(),
        output.display()
    )
}

const GOOD: &str = "{\"key\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\", \"value\": 1}\n";
const BAD: &str = "{\"key\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\", \"value\": 1}\n\
                   {\"key\": \"b\", \"ts\": \"2024-01-01T00:00:02Z\", \"value\": \"lots\"}\n\
                   {\"key\": \"c\", \"ts\": \"2024-01-01T00:00:03Z\", \"value\": 3}\n";

#[tokio::test]
async fn a_malformed_record_stops_the_query_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_file(&input, "0.json", GOOD, 0);
    write_file(&input, "1.json", BAD, 1);
    let sql = script(&input, &dir.path().join("out"), "");
    let err = run_script(&sql, &dir.path().join("cp")).await.unwrap_err().to_string();
    assert!(err.contains("1.json"), "names the file: {err}");
    assert!(err.contains("line 2"), "names the line: {err}");
    assert!(err.contains("value"), "names the field: {err}");
    assert!(err.contains("bad_data"), "says what to do: {err}");
    // Nothing is lost: batch 0 committed, batch 1 will run again once the file is fixed.
    write_file(&input, "1.json", GOOD, 1);
    let progress = run_script(&sql, &dir.path().join("cp")).await.unwrap();
    assert_eq!(progress[0].batch_id, 1);
    assert_eq!(progress[0].num_input_rows, 1);
}

#[tokio::test]
async fn bad_data_drop_skips_and_counts_malformed_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_file(&input, "0.json", BAD, 0);
    let sql = script(&input, &dir.path().join("out"), ", bad_data = 'drop'");
    let progress = run_script(&sql, &dir.path().join("cp")).await.unwrap();
    assert_eq!(progress[0].num_input_rows, 2);
    assert_eq!(progress[0].bad_records_dropped(), 1);
    assert!(progress[0].line().contains("bad records dropped 1"));
}

#[tokio::test]
async fn a_missing_input_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sql = script(&dir.path().join("nowhere"), &dir.path().join("out"), "");
    let err = run_script(&sql, &dir.path().join("cp")).await.unwrap_err().to_string();
    assert!(err.contains("nowhere") && err.contains("does not exist"), "{err}");
}

async fn refusal(mode: OutputMode, delay: Option<i64>, select: &str) -> String {
    Harness::new(mode, delay, select).await.err().expect("the query is refused").to_string()
}

#[tokio::test]
async fn append_mode_refuses_an_aggregation_without_watermark() {
    let err = refusal(OutputMode::Append, None, "SELECT key, count(*) FROM events GROUP BY key").await;
    assert!(err.contains("append mode without a watermark") && err.contains("WATERMARK FOR"), "{err}");
    // Watermarked input, but the grouping has no event-time column: the refusal says so.
    for select in ["SELECT key, count(*) FROM events GROUP BY key", "SELECT DISTINCT key FROM events"] {
        let err = refusal(OutputMode::Append, Some(10), select).await;
        assert!(!err.contains("without a watermark"), "{err}");
        assert!(err.contains("event-time column (events.ts)") && err.contains("window(ts, ...)"), "{err}");
    }
}

#[tokio::test]
async fn complete_mode_refuses_a_query_without_aggregation() {
    let err = refusal(OutputMode::Complete, Some(10), "SELECT key, value FROM events").await;
    assert!(err.contains("complete") && err.contains("GROUP BY"), "{err}");
}

#[tokio::test]
async fn update_mode_refuses_sorting_a_stream() {
    let err =
        refusal(OutputMode::Update, Some(10), "SELECT key, count(*) AS n FROM events GROUP BY key ORDER BY n").await;
    assert!(err.contains("ORDER BY on a stream") && err.contains("complete"), "{err}");
    // In complete mode the same query runs, sorted.
    let mut h = Harness::new(
        OutputMode::Complete,
        Some(10),
        "SELECT key, count(*) AS n FROM events GROUP BY key ORDER BY n DESC, key",
    )
    .await
    .map_err(|e| e.to_string())
    .unwrap();
    assert_eq!(h.batch(&[("a", 1, 1), ("b", 2, 2), ("b", 3, 3)]).await, vec!["b,2", "a,1"]);
}

#[tokio::test]
async fn invalid_sql_and_options_are_named() {
    let mut ctx = sluice::StreamContext::new();
    let err = ctx.execute("SELEC 1").await.unwrap_err().to_string();
    assert!(err.contains("SELEC"), "{err}");
    let err = ctx
        .execute("CREATE TABLE t (a BIGINT) WITH (connector = 'file', path = '.', max_file_per_trigger = '1')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_file_per_trigger") && err.contains("max_files_per_trigger"), "{err}");
    let err = ctx
        .execute("CREATE TABLE t (a BIGINT, WATERMARK FOR a AS a - INTERVAL '1' SECOND) WITH (connector = 'file', path = '.')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TIMESTAMP"), "{err}");
}

#[tokio::test]
async fn deduplication_after_an_aggregation_is_refused() {
    let select = "SELECT k FROM (SELECT k, ROW_NUMBER() OVER (PARTITION BY k) AS rn FROM
                    (SELECT key AS k, count(*) AS n FROM events GROUP BY key) AS counts) AS d WHERE rn = 1";
    let err = refusal(OutputMode::Update, Some(10), select).await;
    assert!(err.contains("deduplication after an aggregation") && err.contains("before aggregating"), "{err}");
}

#[tokio::test]
async fn a_watermark_error_names_the_columns_that_could_carry_it() {
    let mut ctx = sluice::StreamContext::new();
    let ddl = |wm: &str| {
        format!("CREATE TABLE e (k STRING, event_time TIMESTAMP, n BIGINT, WATERMARK FOR {wm} AS {wm} - INTERVAL '1' SECOND) WITH (connector = 'file', path = 'x')")
    };
    let err = ctx.execute(&ddl("ts")).await.unwrap_err().to_string();
    assert!(err.contains("'ts' is not a column") && err.contains("WATERMARK FOR event_time"), "{err}");
    let err = ctx.execute(&ddl("n")).await.unwrap_err().to_string();
    assert!(err.contains("n TIMESTAMP") && err.contains("CAST(n AS TIMESTAMP)") && err.contains("event_time"), "{err}");
}

#[tokio::test]
async fn a_subquery_over_a_stream_is_refused_in_its_own_words() {
    for select in [
        "SELECT key FROM events WHERE key IN (SELECT key FROM events)",
        "SELECT key FROM events e WHERE EXISTS (SELECT 1 FROM events o WHERE o.key = e.key)",
        "SELECT key, (SELECT max(value) FROM events) AS m FROM events",
    ] {
        let err = refusal(OutputMode::Append, Some(10), select).await;
        assert!(err.contains("subqueries over streams are not supported"), "{select}: {err}");
        assert!(err.contains("join"), "{select}: {err}");
        assert!(!err.contains("padded with nulls"), "{select}: {err}");
    }
}

/// A window whose sizes cannot work is refused when the query starts, not at its first row; a
/// start offset may be negative but shorter than the slide, as Spark's `TimeWindow` checks.
#[tokio::test]
async fn impossible_windows_are_refused_before_the_query_starts() {
    for (window, why) in [
        ("window(ts, '10 seconds', '20 seconds')", "slide must not exceed the window size"),
        ("window(ts, '0 seconds')", "must be positive"),
        ("window(ts, '1 month')", "months or years"),
        ("window(ts, '10 seconds', '10 seconds', '15 seconds')", "must be less than its slide"),
        ("window(ts, '10 seconds', '5 seconds', '-5 seconds')", "must be less than its slide"),
    ] {
        let select = format!("SELECT window.start AS w, count(*) AS n FROM events GROUP BY {window}");
        let err = refusal(OutputMode::Append, Some(5), &select).await;
        assert!(err.contains(why), "{window}: {err}");
    }
    let select = "SELECT window.start AS w, count(*) AS n FROM events GROUP BY window(ts, '10 seconds', '10 seconds', '-3 seconds')";
    let mut h = Harness::new(OutputMode::Append, Some(0), select).await.unwrap();
    h.batch(&[("a", 6, 1), ("a", 8, 1)]).await;
    // Windows start 3 s before each multiple of 10 s: 6 s is in [-3 s, 7 s), final at W = 8 s.
    assert_eq!(h.batch(&[("a", 30, 1)]).await, vec!["23:59:57,1"]);
    assert_eq!(h.no_data_batch().await, Some(vec!["00:00:07,1".to_string()]), "[7 s, 17 s) at W = 30 s");
}

/// Integer arithmetic that overflows fails the batch, as in Spark's ANSI mode, instead of
/// writing a wrapped value.
#[tokio::test]
async fn integer_overflow_in_a_select_list_or_filter_is_an_error_not_a_wrap() {
    for select in [
        "SELECT key, value + 1 AS v FROM events",
        "SELECT key, value * 2 AS v FROM events",
        "SELECT key FROM events WHERE value - (-1) > 0",
    ] {
        let h = Harness::new(OutputMode::Append, None, select).await.unwrap();
        h.stream.push(events(&[("a", 1, i64::MAX)])).unwrap();
        let err = h.query.run_next_batch().await.unwrap_err().to_string();
        assert!(err.to_lowercase().contains("overflow"), "{select}: {err}");
    }
    let mut h = Harness::new(OutputMode::Append, None, "SELECT key, value + 1 AS v FROM events").await.unwrap();
    assert_eq!(h.batch(&[("a", 1, i64::MAX - 1)]).await, vec![format!("a,{}", i64::MAX)]);
}

/// A `sum` that overflows fails the batch, as Spark's ANSI `sum` does, within a batch and
/// across batches through its state; `try_sum` gives NULL instead.
#[tokio::test]
async fn a_sum_that_overflows_is_an_error_not_a_wrap() {
    let mut h =
        Harness::new(OutputMode::Update, None, "SELECT key, sum(value) AS s FROM events GROUP BY key").await.unwrap();
    assert_eq!(h.batch(&[("a", 1, i64::MAX)]).await, vec![format!("a,{}", i64::MAX)]);
    h.stream.push(events(&[("a", 2, 1)])).unwrap();
    let err = h.query.run_next_batch().await.unwrap_err().to_string();
    assert!(err.contains("sum overflows its type Int64"), "{err}");
    let h = Harness::new(OutputMode::Complete, None, "SELECT sum(value) AS s FROM events").await.unwrap();
    h.stream.push(events(&[("a", 1, i64::MAX), ("b", 1, 1)])).unwrap();
    let err = h.query.run_next_batch().await.unwrap_err().to_string();
    assert!(err.contains("sum overflows"), "{err}");
    let mut h = Harness::new(OutputMode::Complete, None, "SELECT try_sum(value) AS s FROM events").await.unwrap();
    assert_eq!(h.batch(&[("a", 1, i64::MAX), ("b", 1, 1)]).await, vec!["null"]);
}
