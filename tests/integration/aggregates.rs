//! Aggregations without a window, checked against DataFusion's batch result over the same rows:
//! global aggregates (no `GROUP BY`), groups whose values are all NULL, every aggregate function
//! whose state merges across batches, and a restart in the middle. A property test draws random
//! micro-batches (NULL keys and values included) and checks that after every batch the complete
//! output equals the batch query over all rows so far.

use std::sync::Arc;

use arrow::array::{BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use proptest::prelude::*;
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamingQuery};

use crate::common::{rows, BASE_NS};

/// A row: `(key, seconds after BASE, value, flag)`; `score` is `value` as a double.
type Row = (Option<&'static str>, i64, Option<i64>, Option<bool>);

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("value", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
    ]))
}

fn batch(input: &[Row]) -> RecordBatch {
    let key = StringArray::from(input.iter().map(|r| r.0).collect::<Vec<_>>());
    let ts = TimestampNanosecondArray::from(input.iter().map(|r| BASE_NS + r.1 * 1_000_000_000).collect::<Vec<_>>());
    let value = Int64Array::from(input.iter().map(|r| r.2).collect::<Vec<_>>());
    let score = Float64Array::from(input.iter().map(|r| r.2.map(|v| v as f64)).collect::<Vec<_>>());
    let flag = BooleanArray::from(input.iter().map(|r| r.3).collect::<Vec<_>>());
    RecordBatch::try_new(schema(), vec![Arc::new(key), Arc::new(ts), Arc::new(value), Arc::new(score), Arc::new(flag)])
        .unwrap()
}

/// `select` running as `INSERT INTO out` over the memory stream `events` (no watermark).
struct Aggregation {
    stream: MemoryStream,
    sink: MemorySink,
    query: StreamingQuery,
}

impl Aggregation {
    async fn start(mode: OutputMode, select: &str, checkpoint: &str) -> Self {
        let mut ctx = crate::common::context().await;
        let stream = ctx.register_memory_stream("events", schema(), None).unwrap();
        let sink = MemorySink::new();
        let for_query = sink.clone();
        ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
        let definitions = ctx.execute(&format!("INSERT INTO out {select}")).await.unwrap();
        let query = ctx.start(&definitions[0], checkpoint).await.unwrap();
        Self { stream, sink, query }
    }

    /// Pushes `input` as one micro-batch, runs it and returns the sink's rows of that batch.
    async fn run(&mut self, input: &[Row]) -> Vec<String> {
        self.stream.push(batch(input)).unwrap();
        assert!(self.query.run_next_batch().await.unwrap());
        rows(self.sink.batches().values().last().unwrap())
    }
}

/// `select` run by DataFusion as a batch query over `input`, rows sorted. NULL sorts as the
/// smallest value, as in sluice (and Spark), for the aggregates with an order.
async fn batch_result(select: &str, input: &[Row]) -> Vec<String> {
    let config = SessionConfig::new().set_str("datafusion.sql_parser.default_null_ordering", "nulls_min");
    let ctx = SessionContext::new_with_config(config);
    let table = MemTable::try_new(schema(), vec![vec![batch(input)]]).unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();
    let mut out = rows(&ctx.sql(select).await.unwrap().collect().await.unwrap());
    out.sort();
    out
}

/// Runs `select` in complete mode, one micro-batch per slice of `batches`, restarting the query on
/// its checkpoint before slice `restart_before` (if any); after every batch its output must equal
/// the batch query over all rows so far.
async fn assert_incremental_equals_batch(select: &str, batches: &[Vec<Row>], restart_before: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap().to_string();
    let mut query = Aggregation::start(OutputMode::Complete, select, &checkpoint).await;
    let mut seen: Vec<Row> = Vec::new();
    for (i, input) in batches.iter().enumerate() {
        if restart_before == Some(i) {
            drop(query);
            query = Aggregation::start(OutputMode::Complete, select, &checkpoint).await;
            // A memory stream lives in its process: the restarted one is given the same pushes.
            for earlier in &batches[..i] {
                query.stream.push(batch(earlier)).unwrap();
            }
        }
        seen.extend(input.iter().copied());
        let mut streamed = query.run(input).await;
        streamed.sort();
        assert_eq!(streamed, batch_result(select, &seen).await, "{select}\nafter batch {i} of {batches:?}");
    }
}

/// Every aggregate whose state merges across batches (approximate ones excepted: their merged
/// sketches need not equal a one-pass sketch). Float results are rounded: a merge adds in
/// another order than a single pass.
const AGGREGATES: &str = "count(*) AS n, count(value) AS nv, sum(value) AS s, min(value) AS lo, max(value) AS hi, \
     avg(value) AS mean, round(stddev(score), 6) AS sd, round(var_pop(score), 6) AS vp, sum(score) AS fs, \
     min(score) AS flo, max(score) AS fhi, bool_and(flag) AS every, bool_or(flag) AS some, bit_and(value) AS band, \
     bit_or(value) AS bor, bit_xor(value) AS bxor, count(DISTINCT value) AS dv, sum(DISTINCT value) AS sdv, \
     min(key) AS kmin, max(key) AS kmax, median(value) AS med, first_value(value ORDER BY ts, value) AS fv, \
     last_value(value ORDER BY ts, value) AS lv";

#[tokio::test]
async fn a_new_all_null_group_beside_stored_groups_stays_null() {
    // The case of the report: `c` arrives all-NULL in the batch that updates `a` and `b`.
    let select =
        "SELECT key, sum(value) AS s, min(value) AS lo, max(value) AS hi, count(value) AS n FROM events GROUP BY key";
    let mut q = Aggregation::start(OutputMode::Complete, select, "memory://").await;
    q.run(&[(Some("a"), 1, Some(1), None), (Some("a"), 2, Some(2), None), (Some("b"), 3, Some(5), None)]).await;
    let out = q.run(&[(Some("a"), 4, Some(-3), None), (Some("c"), 5, None, None), (Some("b"), 6, Some(7), None)]).await;
    assert_eq!(out, vec!["a,0,-3,2,3", "b,12,5,7,2", "c,null,null,null,0"]);
    // Still NULL after another merge of the stored state, and once a value arrives it counts.
    let out = q.run(&[(Some("c"), 7, None, None), (Some("a"), 8, Some(1), None)]).await;
    assert_eq!(out, vec!["a,1,-3,2,4", "b,12,5,7,2", "c,null,null,null,0"]);
    let out = q.run(&[(Some("c"), 9, Some(4), None)]).await;
    assert_eq!(out[2], "c,4,4,4,1");

    let mut q = Aggregation::start(OutputMode::Update, select, "memory://").await;
    q.run(&[(Some("a"), 1, Some(1), None)]).await;
    let out = q.run(&[(Some("a"), 2, Some(2), None), (Some("c"), 3, None, None)]).await;
    assert_eq!(out, vec!["a,3,1,2,2", "c,null,null,null,0"]);
}

#[tokio::test]
async fn a_global_aggregation_emits_one_row_per_batch() {
    let select = "SELECT count(*) AS n, sum(value) AS s, max(value) AS hi, count(DISTINCT key) AS keys FROM events";
    for mode in [OutputMode::Complete, OutputMode::Update] {
        let mut q = Aggregation::start(mode, select, "memory://").await;
        assert_eq!(q.run(&[(Some("a"), 1, Some(1), None), (Some("b"), 2, None, None)]).await, vec!["2,1,1,2"]);
        assert_eq!(q.run(&[(Some("a"), 3, Some(5), None)]).await, vec!["3,6,5,2"]);
        assert_eq!(q.run(&[(None, 4, None, None)]).await, vec!["4,6,5,2"]);
    }
    // Only NULL values so far: sum and max are NULL, not 0 or the type's bounds.
    let mut q = Aggregation::start(OutputMode::Complete, select, "memory://").await;
    assert_eq!(q.run(&[(Some("a"), 1, None, None)]).await, vec!["1,null,null,1"]);
}

#[tokio::test]
async fn every_aggregate_matches_the_batch_result_through_null_groups_and_a_restart() {
    let batches: Vec<Vec<Row>> = vec![
        vec![(Some("a"), 1, Some(1), Some(true)), (Some("a"), 2, Some(2), Some(false)), (Some("b"), 3, Some(5), None)],
        vec![(Some("a"), 4, Some(-3), Some(true)), (Some("c"), 5, None, None), (Some("b"), 6, Some(7), Some(true))],
        vec![(Some("c"), 7, None, None), (None, 8, Some(9), Some(false)), (Some("d"), 9, None, Some(true))],
        vec![(Some("c"), 10, Some(4), Some(false)), (Some("d"), 11, None, None), (None, 12, None, None)],
    ];
    let grouped = format!("SELECT key, {AGGREGATES} FROM events GROUP BY key");
    let global = format!("SELECT {AGGREGATES} FROM events");
    for select in [&grouped, &global] {
        assert_incremental_equals_batch(select, &batches, None).await;
        assert_incremental_equals_batch(select, &batches, Some(2)).await;
    }
}

fn arb_row() -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(0.9, prop::sample::select(vec!["a", "b", "c", "d", "e"])),
        0i64..100,
        prop::option::weighted(0.6, -50i64..50),
        prop::option::weighted(0.7, any::<bool>()),
    )
}

proptest! {
    #![proptest_config(crate::proptest_cases::config(24))]

    /// Random micro-batches, a random restart: the complete output equals DataFusion's batch
    /// result over the rows so far, after every batch.
    #[test]
    fn incremental_aggregation_equals_the_batch_query(
        batches in prop::collection::vec(prop::collection::vec(arb_row(), 0..6), 1..5),
        restart in prop::option::of(0usize..5),
        global in any::<bool>(),
    ) {
        let select = if global {
            format!("SELECT {AGGREGATES} FROM events")
        } else {
            format!("SELECT key, {AGGREGATES} FROM events GROUP BY key")
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(assert_incremental_equals_batch(&select, &batches, restart.filter(|r| *r < batches.len())));
    }
}
