//! The file source under a running query: files that appear are picked up, hidden files are
//! ignored, `max_files_per_trigger` caps a batch, and bounded tables join the stream.

use std::time::{Duration, Instant};

use crate::common::*;
use sluice::{StreamContext, Trigger};

const ROW: &str = "{\"key\": \"{k}\", \"ts\": \"2024-01-01T00:00:0{s}Z\", \"value\": {v}}\n";

fn row(k: &str, s: u32, v: i64) -> String {
    ROW.replace("{k}", k).replace("{s}", &s.to_string()).replace("{v}", &v.to_string())
}

/// Waits (bounded) until the sink directory holds `n` part files.
fn wait_for_parts(dir: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts = std::fs::read_dir(dir)
            .map(|d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("part-")).count())
            .unwrap_or(0);
        if parts >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no output after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_query_picks_up_new_files_and_ignores_hidden_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    write_file(&input, "a.json", &row("a", 1, 1), 0);
    write_file(&input, "_SUCCESS", "not json", 1);
    write_file(&input, ".a.json.crc", "not json", 2);
    let sql = format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT)
           WITH (connector = 'file', path = '{}', format = 'json', max_files_per_trigger = '1');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out SELECT key, value * 10 AS v FROM events;",
        input.display(),
        output.display()
    );
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&sql).await.unwrap();
    let query = ctx.start(&definitions[0], dir.path().join("cp").to_str().unwrap()).await.unwrap();
    let stop = query.stop_handle();
    let running =
        tokio::spawn(async move { query.run(Trigger::default()).await.map(|()| query.recent_progress().to_vec()) });
    let out = output.clone();
    tokio::task::spawn_blocking(move || wait_for_parts(&out, 1)).await.unwrap();
    write_file(&input, "b.json", &(row("b", 2, 2) + &row("c", 3, 3)), 3);
    write_file(&input, "c.json", &row("d", 4, 4), 4);
    let out = output.clone();
    tokio::task::spawn_blocking(move || wait_for_parts(&out, 3)).await.unwrap();
    stop.stop();
    let progress = running.await.unwrap().unwrap();
    let inputs: Vec<u64> = progress.iter().map(|p| p.num_input_rows).collect();
    assert_eq!(inputs, vec![1, 2, 1], "one file per batch, hidden files never read");
    let rows = sink_rows_by_batch(&output);
    assert_eq!(rows[&0], vec![serde_json::json!({"key": "a", "v": 10})]);
    assert_eq!(rows[&2], vec![serde_json::json!({"key": "d", "v": 40})]);
}

#[tokio::test]
async fn streams_join_bounded_tables_and_values_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    write_file(&input, "0.json", &(row("a", 1, 1) + &row("b", 2, 2) + &row("z", 3, 3)), 0);
    write_file(&dir.path().join("names"), "names.csv", "key,name\na,Alpha\nb,Beta\n", 0);
    let sql = format!(
        "CREATE EXTERNAL TABLE names (key VARCHAR, name VARCHAR) STORED AS CSV LOCATION '{}'
           OPTIONS ('format.has_header' 'true');
         CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT)
           WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out
         SELECT e.key, n.name, w.weight * e.value AS weighted
         FROM events e
         LEFT JOIN names n ON e.key = n.key
         JOIN (VALUES ('a', 10), ('b', 100), ('z', 1000)) AS w(key, weight) ON e.key = w.key;",
        dir.path().join("names").display(),
        input.display(),
        output.display()
    );
    run_script(&sql, &dir.path().join("cp")).await.unwrap();
    let mut rows: Vec<String> = sink_rows_by_batch(&output)[&0].iter().map(|r| r.to_string()).collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            r#"{"key":"a","name":"Alpha","weighted":10}"#,
            r#"{"key":"b","name":"Beta","weighted":200}"#,
            r#"{"key":"z","weighted":3000}"#,
        ]
    );
}

#[tokio::test]
async fn a_bounded_table_cannot_outer_join_a_stream_on_its_preserved_side() {
    let mut ctx = StreamContext::new();
    ctx.register_memory_stream("events", events_schema(), None).unwrap();
    let sink = sluice::sink::MemorySink::new();
    ctx.register_sink("out", sluice::OutputMode::Append, move || Box::new(sink.clone()));
    let definitions = ctx
        .execute("INSERT INTO out SELECT w.key FROM (VALUES ('a')) AS w(key) LEFT JOIN events e ON e.key = w.key")
        .await
        .unwrap();
    let err = ctx.start(&definitions[0], "memory://").await.unwrap_err().to_string();
    assert!(err.contains("join between a stream and a bounded table"), "{err}");
}

#[tokio::test]
async fn camel_case_columns_read_their_keys_and_keep_their_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let (imp, clk, out) = (dir.path().join("imp"), dir.path().join("clk"), dir.path().join("out"));
    write_file(&imp, "0.json", "{\"adId\": 1, \"impressionTime\": \"2024-01-01T00:00:10Z\"}\n", 0);
    write_file(&clk, "0.json", "{\"clickAdId\": 1, \"clickTime\": \"2024-01-01T00:00:20Z\"}\n", 1);
    let sql = format!(
        "CREATE TABLE impressions (adId BIGINT, impressionTime TIMESTAMP,
                                   WATERMARK FOR impressionTime AS impressionTime - INTERVAL '10' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE clicks (clickAdId BIGINT, clickTime TIMESTAMP,
                              WATERMARK FOR clickTime AS clickTime - INTERVAL '10' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out SELECT adid, clickTime, impressionTime AS shownAt FROM impressions
           JOIN clicks ON clickAdId = adId AND clickTime BETWEEN impressionTime AND impressionTime + interval 1 hour;",
        imp.display(),
        clk.display(),
        out.display()
    );
    run_script(&sql, &dir.path().join("cp")).await.unwrap();
    let rows = sink_rows_by_batch(&out);
    // Keys match declared columns whatever their case; output names are spelled as written.
    assert_eq!(
        rows[&0],
        vec![
            serde_json::json!({"adId": 1, "clickTime": "2024-01-01T00:00:20.000Z", "shownAt": "2024-01-01T00:00:10.000Z"})
        ]
    );
}
