//! Spark's SQL habits: datafusion-spark's functions in streaming queries, `SET` with Spark's keys,
//! window sizes as INTERVALs.

use crate::common::*;
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamContext, StreamingQuery};

/// `script` (settings, then `INSERT INTO out ...`) over the memory stream `events` (watermark on
/// `ts`, 10 s) into a memory sink `out` in `mode`.
async fn start(mode: OutputMode, script: &str) -> sluice::Result<(MemoryStream, MemorySink, StreamingQuery)> {
    let mut ctx = StreamContext::new();
    let stream = ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000)))?;
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
    let definitions = ctx.execute(script).await?;
    let query = ctx.start(&definitions[0], "memory://").await?;
    Ok((stream, sink, query))
}

async fn run(query: &mut StreamingQuery, stream: &MemoryStream, input: &[(&str, i64, i64)]) {
    stream.push(events(input)).unwrap();
    assert!(query.run_next_batch().await.unwrap());
}

#[tokio::test]
async fn spark_functions_run_in_a_streaming_query() {
    let (stream, sink, mut query) = start(
        OutputMode::Append,
        "INSERT INTO out SELECT key, if(value > 2, 'big', 'small') AS class, date_add(CAST(ts AS DATE), 1) AS next_day,
                size(make_array(value, value, value)) AS n, from_utc_timestamp(ts, 'Asia/Tokyo') AS tokyo,
                concat(key, NULL) AS c
         FROM events",
    )
    .await
    .unwrap();
    run(&mut query, &stream, &[("a", 1, 1), ("b", 12, 3)]).await;
    // `concat` is DataFusion's (NULLs skipped) unless sluice.sql.spark_functions is set.
    assert_eq!(rows(&sink.all()), ["a,small,2024-01-02,3,09:00:01,a", "b,big,2024-01-02,3,09:00:12,b"]);
}

#[tokio::test]
async fn spark_aggregate_functions_are_incremental() {
    let (stream, sink, mut query) = start(
        OutputMode::Update,
        "INSERT INTO out SELECT key, size(collect_set(value)) AS distinct_values, size(collect_list(value)) AS n
         FROM events GROUP BY key",
    )
    .await
    .unwrap();
    run(&mut query, &stream, &[("a", 1, 1), ("a", 2, 1), ("a", 3, 2)]).await;
    assert_eq!(rows(&sink.all()), ["a,2,3"]);
    run(&mut query, &stream, &[("a", 4, 3), ("a", 5, 1)]).await;
    assert_eq!(rows(sink.batches().values().last().unwrap()), ["a,3,5"]);
}

#[tokio::test]
async fn the_spark_functions_setting_gives_spark_semantics_to_shared_names() {
    let (stream, sink, mut query) = start(
        OutputMode::Append,
        "SET sluice.sql.spark_functions = 'true';
         INSERT INTO out SELECT key, concat(key, NULL) AS c, concat(key, '!') AS d FROM events",
    )
    .await
    .unwrap();
    run(&mut query, &stream, &[("a", 1, 1)]).await;
    assert_eq!(rows(&sink.all()), ["a,null,a!"]);
}

#[tokio::test]
async fn set_accepts_spark_keys_and_refuses_unknown_ones_by_name() {
    let mut ctx = StreamContext::new();
    let err = ctx.execute("SET spark.sql.shuffle.partitionz = 4").await.unwrap_err().to_string();
    assert!(err.contains("'spark.sql.shuffle.partitionz'"), "{err}");
    for key in
        ["spark.sql.shuffle.partitions", "spark.sql.session.timeZone", "spark.sql.streaming.multipleWatermarkPolicy"]
    {
        assert!(err.contains(key), "lists {key}: {err}");
    }
    let err = ctx.execute("SET spark.sql.streaming.multipleWatermarkPolicy = 'median'").await.unwrap_err().to_string();
    assert!(err.contains("'min' or 'max'"), "{err}");
    let err = ctx.execute("SET datafusion.execution.no_such_option = 1").await.unwrap_err().to_string();
    assert!(err.contains("no_such_option"), "{err}");
    ctx.execute("SET datafusion.execution.batch_size = 1024; SET spark.sql.streaming.multipleWatermarkPolicy = max")
        .await
        .unwrap();
    assert_eq!(ctx.session().copied_config().batch_size(), 1024);
    ctx.set("spark.sql.session.timeZone", "Asia/Tokyo").await.unwrap();
    let tz = ctx.session().copied_config().options().execution.time_zone.clone();
    assert_eq!(tz.as_deref(), Some("Asia/Tokyo"));
}

#[tokio::test]
async fn shuffle_partitions_sets_the_state_partitions_of_a_new_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = StreamContext::new();
    ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000))).unwrap();
    ctx.register_sink("out", OutputMode::Update, || Box::new(MemorySink::new()));
    let definitions = ctx
        .execute("SET spark.sql.shuffle.partitions = 3; INSERT INTO out SELECT key, count(*) FROM events GROUP BY key")
        .await
        .unwrap();
    ctx.start(&definitions[0], dir.path().to_str().unwrap()).await.unwrap();
    let metadata: serde_json::Value =
        sluice::checkpoint::decode_entry(&std::fs::read(dir.path().join("metadata")).unwrap()).unwrap();
    assert_eq!(metadata["state_partitions"], 3, "{metadata}");
}

/// The rows every batch of `select` emits over `input` (then a no-data batch), in append mode.
async fn windows(select: &str, input: &[&[(&str, i64, i64)]]) -> Vec<Vec<String>> {
    let mut h = Harness::new(OutputMode::Append, Some(10), select).await.unwrap();
    let mut out = Vec::new();
    for batch in input {
        out.push(h.batch(batch).await);
    }
    out.extend(h.no_data_batch().await);
    out
}

#[tokio::test]
async fn window_sizes_may_be_intervals() {
    let tumble = windows(TUMBLE, &TUMBLE_INPUT).await;
    assert!(tumble.iter().any(|b| !b.is_empty()));
    for size in ["INTERVAL '10' SECOND", "INTERVAL 10 SECONDS", "INTERVAL '10 seconds'"] {
        let q = TUMBLE.replace("'10 seconds'", size);
        assert_eq!(windows(&q, &TUMBLE_INPUT).await, tumble, "{size}");
    }
    let slide = windows(SLIDE, &SLIDE_INPUT).await;
    let q = SLIDE.replace("'10 seconds', '5 seconds'", "INTERVAL '10' SECOND, INTERVAL 5 SECONDS");
    assert_eq!(windows(&q, &SLIDE_INPUT).await, slide);
    let session = "SELECT key, session_window.start AS s, session_window.end AS e, count(*) AS n
                   FROM events GROUP BY key, session_window(ts, '5 seconds')";
    let sessions = windows(session, &TUMBLE_INPUT).await;
    assert!(sessions.iter().any(|b| !b.is_empty()));
    let q = session.replace("'5 seconds'", "INTERVAL '5' SECOND");
    assert_eq!(windows(&q, &TUMBLE_INPUT).await, sessions);
    let hour = TUMBLE.replace("'10 seconds'", "INTERVAL '1' HOUR");
    let hourly = windows(&hour, &TUMBLE_INPUT).await;
    assert_eq!(hourly, windows(&TUMBLE.replace("'10 seconds'", "'1 hour'"), &TUMBLE_INPUT).await);
}

#[tokio::test]
async fn month_intervals_are_refused_as_window_sizes() {
    let q = TUMBLE.replace("'10 seconds'", "INTERVAL '1' MONTH");
    let mut h = Harness::new(OutputMode::Append, Some(10), &q).await;
    let err = match &mut h {
        Err(e) => e.to_string(),
        Ok(h) => {
            h.stream.push(events(&[("a", 1, 1)])).unwrap();
            h.query.run_next_batch().await.unwrap_err().to_string()
        }
    };
    assert!(err.contains("months"), "{err}");
}

/// NULL sorts as the smallest value, as in Spark: last in `ORDER BY ... DESC` (first ascending),
/// and a top-N by `value DESC` ranks a row without a value below the others.
#[tokio::test]
async fn nulls_sort_as_the_smallest_value_as_in_spark() {
    let batch = |keys: Vec<Option<&str>>, values: Vec<Option<i64>>| {
        let n = keys.len();
        let columns: Vec<arrow::array::ArrayRef> = vec![
            std::sync::Arc::new(arrow::array::StringArray::from(keys)),
            std::sync::Arc::new(arrow::array::TimestampNanosecondArray::from(vec![BASE_NS; n])),
            std::sync::Arc::new(arrow::array::Int64Array::from(values)),
        ];
        arrow::array::RecordBatch::try_new(events_schema(), columns).unwrap()
    };
    let (stream, sink, query) = start(
        OutputMode::Complete,
        "INSERT INTO out SELECT key, count(*) AS n FROM events GROUP BY key ORDER BY key DESC",
    )
    .await
    .unwrap();
    stream.push(batch(vec![Some("a"), None, Some("b")], vec![Some(1); 3])).unwrap();
    assert!(query.run_next_batch().await.unwrap());
    assert_eq!(rows(&sink.all()), ["b,1", "a,1", "null,1"]);

    let (stream, sink, query) = start(
        OutputMode::Update,
        "INSERT INTO out SELECT key, value FROM (SELECT key, value, ROW_NUMBER() OVER (PARTITION BY key ORDER BY value DESC) AS rn
         FROM events) AS ranked WHERE rn = 1",
    )
    .await
    .unwrap();
    stream.push(batch(vec![Some("a"), Some("a")], vec![None, Some(1)])).unwrap();
    assert!(query.run_next_batch().await.unwrap());
    assert_eq!(rows(&sink.all()), ["a,1"]);
}
