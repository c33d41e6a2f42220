//! The DataFrame API: each example's query, built with the API, gives the same batches as its SQL
//! form on the committed data; the query handle, memory tables and the query manager behave as
//! Spark's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{col, lit};
use sluice::{OutputMode, SluiceError, StreamContext, StreamFrame, Trigger};

use crate::common::{copy_in_order, events, events_schema, rows, sorted};

#[allow(dead_code)]
#[path = "../../examples/deduplication.rs"]
mod deduplication;
#[allow(dead_code)]
#[path = "../../examples/foreach_batch.rs"]
mod foreach_batch;
#[allow(dead_code)]
#[path = "../../examples/running_totals.rs"]
mod running_totals;
#[allow(dead_code)]
#[path = "../../examples/stream_join.rs"]
mod stream_join;
#[allow(dead_code)]
#[path = "../../examples/windowed_counts.rs"]
mod windowed_counts;

/// Each batch's rows, sorted, by batch id.
type Batches = BTreeMap<u64, Vec<String>>;

/// Runs `frame` to the end of its input in `mode`, collecting each batch's rows.
async fn batches_of(frame: StreamFrame, mode: OutputMode) -> Batches {
    let seen = Arc::new(Mutex::new(Batches::new()));
    let sink = Arc::clone(&seen);
    let query = frame
        .write_stream()
        .output_mode(mode)
        .trigger(Trigger::AvailableNow)
        .foreach_batch(move |id, batches| {
            sink.lock().unwrap().insert(id, sorted(&rows(batches)));
            Ok(())
        })
        .start()
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    let batches = seen.lock().unwrap().clone();
    batches
}

/// Copies the committed data sets `names` into a temporary directory, files in name order.
fn inputs(names: &[&str]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = names
        .iter()
        .map(|name| {
            let copy = dir.path().join(name);
            copy_in_order(&Path::new("data").join(name), &copy);
            copy.display().to_string()
        })
        .collect();
    (dir, paths)
}

/// The API's and the SQL form's batches, which must be equal; returns them.
async fn same_batches(api: StreamFrame, sql: String, mode: OutputMode) -> Batches {
    let from_sql = StreamContext::new().sql(&sql).await.unwrap();
    let (api, sql) = (batches_of(api, mode).await, batches_of(from_sql, mode).await);
    assert_eq!(api.len(), sql.len(), "batch count");
    for (id, rows) in &api {
        assert_eq!(rows, &sql[id], "batch {id}");
    }
    api
}

fn total_rows(batches: &Batches) -> usize {
    batches.values().map(Vec::len).sum()
}

#[tokio::test]
async fn windowed_counts_match_their_sql_form() {
    let (_dir, paths) = inputs(&["flights"]);
    let api = windowed_counts::windowed_counts(&mut StreamContext::new(), &paths[0]).unwrap();
    let batches = same_batches(api, windowed_counts::windowed_counts_sql(&paths[0]), OutputMode::Append).await;
    assert!(batches.len() >= 31, "a batch per day file, and one as the watermark passes the last windows");
    // Three origins, a window starting every half hour of the month (minus the hours without
    // departures and those the watermark has not passed), each written once, when it closes.
    let all = total_rows(&batches);
    assert!(all > 3_000, "{all}");
}

#[tokio::test]
async fn running_totals_match_their_sql_form_and_the_memory_table_keeps_one_row_per_carrier() {
    let (_dir, paths) = inputs(&["flights"]);
    let api = running_totals::running_totals(&mut StreamContext::new(), &paths[0]).unwrap();
    same_batches(api, running_totals::running_totals_sql(&paths[0]), OutputMode::Update).await;

    let mut ctx = StreamContext::new();
    let query = running_totals::running_totals(&mut ctx, &paths[0])
        .unwrap()
        .write_stream()
        .output_mode(OutputMode::Update)
        .trigger(Trigger::AvailableNow)
        .to_table("totals")
        .start()
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    let table = ctx.sql("SELECT count(*), count(DISTINCT carrier), sum(flights) FROM totals").await.unwrap();
    // 16 carriers flew in January 2013; every flight of the month is counted once.
    assert_eq!(rows(&table.collect().await.unwrap()), ["16,16,26820"]);
}

#[tokio::test]
async fn a_memory_table_declared_in_sql_keeps_one_row_per_group_in_update_mode() {
    let (_dir, paths) = inputs(&["flights"]);
    let mut ctx = StreamContext::new();
    let select = running_totals::running_totals_sql(&paths[0]);
    let (create_flights, select) = select.split_once(';').unwrap();
    let script = format!(
        "{create_flights}; CREATE TABLE totals WITH (connector = 'memory', output_mode = 'update');
         INSERT INTO totals {select}"
    );
    let definitions = ctx.execute(&script).await.unwrap();
    let query = ctx.start(&definitions[0], "memory://").await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let table = ctx.sql("SELECT count(*), count(DISTINCT carrier), sum(flights) FROM totals").await.unwrap();
    assert_eq!(rows(&table.collect().await.unwrap()), ["16,16,26820"]);
    let error = ctx.execute("CREATE TABLE m (a INT) WITH (connector = 'memory')").await.unwrap_err().to_string();
    assert!(error.contains("declare it without columns"), "{error}");
}

#[tokio::test]
async fn explain_names_each_operator_its_state_and_its_eviction() {
    let (_dir, paths) = inputs(&["flights", "weather"]);
    let join = stream_join::flights_with_weather(&mut StreamContext::new(), &paths[0], &paths[1]).unwrap();
    let text = join.explain(OutputMode::Append).await.unwrap();
    for expected in ["Output mode: append (chosen by the caller)", "StreamingJoin (Left)", "left rows evicted: when"] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let (_dir, paths) = inputs(&["earthquakes"]);
    let dedup = deduplication::unique_quakes(&mut StreamContext::new(), &paths[0]).unwrap();
    let text = dedup.explain(OutputMode::Append).await.unwrap();
    assert!(
        text.contains("StreamingDeduplicate  keys: ") && text.contains("evicted: when the watermark passes"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bounded_table_registered_from_rust_answers_sql_and_a_stream_name_is_refused() {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let mut ctx = StreamContext::new();
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["UA", "AA"])), Arc::new(StringArray::from(vec!["United", "American"]))],
    )
    .unwrap();
    let table = Arc::new(datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]]).unwrap());
    ctx.register_table("carriers", table.clone()).unwrap();
    let frame = ctx.sql("SELECT name FROM carriers WHERE code = 'UA'").await.unwrap();
    assert_eq!(rows(&frame.collect().await.unwrap()), ["United"]);
    ctx.sql("CREATE TABLE s (k STRING) WITH (connector = 'file', path = '/tmp/none', format = 'json')").await.unwrap();
    let error = ctx.register_table("s", table).unwrap_err().to_string();
    assert!(error.contains("stream or sink table"), "{error}");
}

#[tokio::test]
async fn deduplication_matches_its_sql_form() {
    let (_dir, paths) = inputs(&["earthquakes"]);
    let api = deduplication::unique_quakes(&mut StreamContext::new(), &paths[0]).unwrap();
    let batches = same_batches(api, deduplication::unique_quakes_sql(&paths[0]), OutputMode::Append).await;
    let mut ids: Vec<String> = batches.values().flatten().map(|r| r.split(',').next().unwrap().to_string()).collect();
    let written = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((written, ids.len()), (703, 703), "703 distinct events in 1,383 deliveries");
}

#[tokio::test]
async fn the_stream_join_matches_its_sql_form() {
    let (_dir, paths) = inputs(&["flights", "weather"]);
    let api = stream_join::flights_with_weather(&mut StreamContext::new(), &paths[0], &paths[1]).unwrap();
    let batches =
        same_batches(api, stream_join::flights_with_weather_sql(&paths[0], &paths[1]), OutputMode::Append).await;
    // As sql/examples/flights_weather.sql: every flight but the three of the last hour.
    assert_eq!(total_rows(&batches), 26_817);
}

#[tokio::test]
async fn foreach_batch_writes_one_file_per_batch_and_matches_the_sql_form() {
    let (dir, paths) = inputs(&["flights"]);
    let api = foreach_batch::cancelled_flights(&mut StreamContext::new(), &paths[0]).unwrap();
    let batches = same_batches(api, foreach_batch::cancelled_flights_sql(&paths[0]), OutputMode::Append).await;

    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.clone();
    let query = foreach_batch::cancelled_flights(&mut StreamContext::new(), &paths[0])
        .unwrap()
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .foreach_batch(move |id, rows| foreach_batch::write_batch(&target, id, rows))
        .start()
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    let files = std::fs::read_dir(&out).unwrap().count();
    let lines: usize = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap().lines().count())
        .sum();
    assert_eq!(files, 31);
    assert_eq!((lines, total_rows(&batches)), (512, 512), "the month's cancelled flights");
}

/// The rows of memory table `name`, sorted.
async fn table(ctx: &mut StreamContext, name: &str) -> Vec<String> {
    sorted(&rows(&ctx.sql(&format!("SELECT * FROM {name}")).await.unwrap().collect().await.unwrap()))
}

/// A memory stream `events` (watermark on `ts`, 10 s) and its frame.
fn events_frame(ctx: &mut StreamContext) -> (sluice::source::MemoryStream, StreamFrame) {
    let stream = ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000))).unwrap();
    let frame = ctx.read_stream().format("memory").load("events").unwrap();
    (stream, frame)
}

#[tokio::test]
async fn a_started_query_runs_in_the_background_until_stopped() {
    let mut ctx = StreamContext::new();
    let (stream, frame) = events_frame(&mut ctx);
    let query = frame
        .group_by(vec![col("key")])
        .agg(vec![sum(col("value")).alias("total")])
        .unwrap()
        .write_stream()
        .output_mode(OutputMode::Complete)
        .trigger(Trigger::ProcessingTime(Duration::from_millis(10)))
        .query_name("totals")
        .format("memory")
        .start()
        .await
        .unwrap();
    assert!(query.is_active());
    assert_eq!(query.name(), "totals");
    assert_eq!(ctx.streams().active().len(), 1);
    assert_eq!(ctx.streams().get(query.id()).unwrap().name(), "totals");

    stream.push(events(&[("a", 1, 1), ("b", 2, 2), ("a", 3, 3)])).unwrap();
    query.process_all_available().await.unwrap();
    assert_eq!(table(&mut ctx, "totals").await, ["a,4", "b,2"]);
    stream.push(events(&[("b", 4, 5)])).unwrap();
    query.process_all_available().await.unwrap();
    assert_eq!(table(&mut ctx, "totals").await, ["a,4", "b,7"]);
    assert!(query.last_progress().is_some());

    assert!(!query.await_termination_timeout(Duration::from_millis(50)).await.unwrap(), "still running");
    query.stop();
    query.await_termination().await.unwrap();
    assert!(!query.is_active());
    assert_eq!(query.status().message, "Stopped");
    assert!(query.exception().is_none());
    assert!(ctx.streams().active().is_empty());
    ctx.streams().await_any_termination().await.unwrap();
}

#[tokio::test]
async fn a_failed_query_reports_its_error_and_runs_no_more_batches() {
    let mut ctx = StreamContext::new();
    let (stream, frame) = events_frame(&mut ctx);
    let query = frame
        .write_stream()
        .trigger(Trigger::ProcessingTime(Duration::from_millis(10)))
        .foreach_batch(|id, _| Err(SluiceError::Sink { sink: "test".into(), message: format!("batch {id} refused") }))
        .start()
        .await
        .unwrap();
    stream.push(events(&[("a", 1, 1)])).unwrap();
    let error = query.await_termination().await.unwrap_err().to_string();
    assert!(error.contains("batch 0 refused"), "{error}");
    assert!(query.exception().unwrap().contains("batch 0 refused"));
    assert!(!query.is_active());
    let again = query.run(Trigger::AvailableNow).await.unwrap_err().to_string();
    assert!(again.contains("failed earlier"), "{again}");
    let any = ctx.streams().await_any_termination().await.unwrap_err().to_string();
    assert!(any.contains("batch 0 refused"), "{any}");
    ctx.streams().reset_terminated();
    assert!(ctx.streams().all().is_empty());
}

#[tokio::test]
async fn a_watermark_on_a_computed_column_is_refused_naming_it() {
    let mut ctx = StreamContext::new();
    let (_stream, frame) = events_frame(&mut ctx);
    let computed = frame.clone().with_column("later", col("ts")).unwrap();
    let error = computed.with_watermark("later", Duration::from_secs(5)).unwrap_err().to_string();
    assert!(error.contains("with_watermark('later')") && error.contains("computed"), "{error}");
    let error = frame.clone().with_watermark("value", Duration::from_secs(5)).unwrap_err().to_string();
    assert!(error.contains("not a TIMESTAMP"), "{error}");
    let error = frame.select(vec![col("nope")]).unwrap_err().to_string();
    assert!(error.contains("nope"), "{error}");
}

#[tokio::test]
async fn with_watermark_drops_late_rows_as_the_sql_watermark_does() {
    let mut ctx = StreamContext::new();
    let stream = ctx.register_memory_stream("raw", events_schema(), None).unwrap();
    let counts = ctx
        .table("raw")
        .await
        .unwrap()
        .with_watermark("ts", Duration::from_secs(5))
        .unwrap()
        .group_by(vec![sluice::window(col("ts"), "10 seconds")])
        .agg(vec![count(lit(1)).alias("n")])
        .unwrap()
        .select(vec![datafusion::functions::core::expr_fn::get_field(col("window"), "start"), col("n")])
        .unwrap();
    let query = counts
        .write_stream()
        .output_mode(OutputMode::Append)
        .trigger(Trigger::ProcessingTime(Duration::from_millis(10)))
        .to_table("windows")
        .start()
        .await
        .unwrap();
    stream.push(events(&[("a", 1, 1), ("a", 2, 1)])).unwrap();
    query.process_all_available().await.unwrap();
    // The watermark reaches 25 s - 5 s = 20 s: the first window closes; the row at 3 s is late.
    stream.push(events(&[("a", 25, 1)])).unwrap();
    query.process_all_available().await.unwrap();
    stream.push(events(&[("a", 3, 1)])).unwrap();
    query.process_all_available().await.unwrap();
    query.stop();
    query.await_termination().await.unwrap();
    assert_eq!(table(&mut ctx, "windows").await, ["00:00:00,2"]);
    let late: u64 = query.recent_progress().iter().map(|p| p.late_rows_dropped()).sum();
    assert_eq!(late, 1);
}

#[tokio::test]
async fn sql_returns_frames_and_refuses_streaming_inserts() {
    let mut ctx = StreamContext::new();
    let bounded = ctx.sql("SELECT 1 + 1 AS two").await.unwrap();
    assert!(!bounded.is_streaming());
    assert_eq!(rows(&bounded.collect().await.unwrap()), ["2"]);
    let stream = ctx
        .sql(
            "CREATE TABLE s (k STRING) WITH (connector = 'file', path = '/tmp/none', format = 'json'); SELECT k FROM s",
        )
        .await
        .unwrap();
    assert!(stream.is_streaming());
    let error = stream.collect().await.unwrap_err().to_string();
    assert!(error.contains("write_stream"), "{error}");
    let error = ctx
        .sql("CREATE TABLE out WITH (connector = 'console'); INSERT INTO out SELECT k FROM s")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("INSERT INTO a stream table"), "{error}");
}
