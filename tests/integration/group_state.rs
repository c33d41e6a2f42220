//! Operators added from Rust: `drop_duplicates_within_watermark` and `flat_map_groups_with_state`
//! with its timeouts (SEMANTICS §3; Spark's `GroupState`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use sluice::sink::MemorySink;
use sluice::source::MemoryStream;
use sluice::{GroupState, GroupStateTimeout, OutputMode, QueryDefinition, StreamingQuery};

use crate::common::*;

struct Staged {
    stream: MemoryStream,
    sink: MemorySink,
    query: StreamingQuery,
}

impl Staged {
    /// `events` with a 10 s watermark, `SELECT * FROM events` into a memory sink, with `stage`.
    async fn new(mode: OutputMode, stage: impl FnOnce(QueryDefinition) -> QueryDefinition) -> sluice::Result<Self> {
        let mut ctx = crate::common::context().await;
        let stream = ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000)))?;
        let sink = MemorySink::new();
        let for_query = sink.clone();
        ctx.register_sink("out", mode, move || Box::new(for_query.clone()));
        let definition = ctx.execute("INSERT INTO out SELECT * FROM events").await?.remove(0);
        let query = ctx.start(&stage(definition), "memory://").await?;
        Ok(Self { stream, sink, query })
    }

    async fn batch(&mut self, input: &[(&str, i64, i64)]) -> Vec<String> {
        if !input.is_empty() {
            self.stream.push(events(input)).unwrap();
        }
        assert!(self.query.run_next_batch().await.unwrap(), "the batch runs");
        rows(self.sink.batches().values().last().unwrap())
    }
}

fn strings(rows: &[&str]) -> Vec<String> {
    rows.iter().map(|r| r.to_string()).collect()
}

#[tokio::test]
async fn drop_duplicates_within_watermark_expires_a_key_at_first_time_plus_delay() {
    let mut h = Staged::new(OutputMode::Append, |d| d.drop_duplicates_within_watermark(&["key"])).await.unwrap();
    // a expires at 10 + 10 = 20, b at 25.
    assert_eq!(h.batch(&[("a", 10, 1), ("a", 12, 2), ("b", 15, 3)]).await, strings(&["a,00:00:10,1", "b,00:00:15,3"]));
    // W = 5: a@30 is a duplicate (and does not extend a's expiry).
    assert_eq!(h.batch(&[("a", 30, 4), ("c", 40, 5)]).await, strings(&["c,00:00:40,5"]));
    // W = 30: a is still suppressed in this batch, then a and b expire at its end.
    assert_eq!(h.batch(&[("a", 35, 6)]).await, Vec::<String>::new());
    // Late below 30: b@20 is dropped; a is new again.
    assert_eq!(h.batch(&[("a", 36, 7), ("b", 20, 8)]).await, strings(&["a,00:00:36,7"]));
    assert_eq!(h.query.recent_progress().last().unwrap().late_rows_dropped(), 1);
}

#[tokio::test]
async fn drop_duplicates_within_watermark_needs_a_watermark() {
    let mut ctx = crate::common::context().await;
    ctx.register_memory_stream("events", events_schema(), None).unwrap();
    ctx.register_sink("out", OutputMode::Append, || Box::new(MemorySink::new()));
    let definition = ctx.execute("INSERT INTO out SELECT * FROM events").await.unwrap().remove(0);
    let err = ctx.start(&definition.drop_duplicates_within_watermark(&["key"]), "memory://").await.unwrap_err();
    assert!(err.to_string().contains("needs a watermark"), "{err}");
}

fn counts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true), Field::new("n", DataType::Int64, false)]))
}

/// A running count per key, emitted on every call with rows (`updateStateByKey`).
fn running_count(
    key: &[ScalarValue],
    rows: &RecordBatch,
    state: &mut GroupState<i64>,
) -> sluice::Result<Vec<Vec<ScalarValue>>> {
    let n = state.get().copied().unwrap_or(0) + rows.num_rows() as i64;
    state.update(n);
    Ok(vec![vec![key[0].clone(), ScalarValue::Int64(Some(n))]])
}

#[tokio::test]
async fn group_state_keeps_a_running_count_per_key() {
    let mut h = Staged::new(OutputMode::Update, |d| {
        d.flat_map_groups_with_state(&["key"], counts_schema(), GroupStateTimeout::NoTimeout, running_count)
    })
    .await
    .unwrap();
    assert_eq!(h.batch(&[("b", 1, 1), ("a", 2, 2), ("a", 3, 3)]).await, strings(&["a,2", "b,1"]));
    assert_eq!(h.batch(&[("a", 4, 4)]).await, strings(&["a,3"]));
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 2);
}

/// Counts a key's rows until the watermark passes its last row plus 5 s, then emits the count.
fn count_until_idle(
    key: &[ScalarValue],
    rows: &RecordBatch,
    state: &mut GroupState<(i64, i64)>,
) -> sluice::Result<Vec<Vec<ScalarValue>>> {
    if state.has_timed_out() {
        let (n, _) = *state.get().expect("a timed-out key has state");
        state.remove();
        return Ok(vec![vec![key[0].clone(), ScalarValue::Int64(Some(n))]]);
    }
    let ts = arrow::compute::cast(rows.column(1), &DataType::Int64)?;
    let last_ms =
        arrow::compute::max(ts.as_any().downcast_ref::<arrow::array::Int64Array>().unwrap()).unwrap() / 1_000_000;
    let (n, last) = state.get().copied().unwrap_or((0, i64::MIN));
    let last = last.max(last_ms);
    state.update((n + rows.num_rows() as i64, last));
    state.set_timeout_timestamp(last + 5_000)?;
    Ok(vec![])
}

#[tokio::test]
async fn an_event_time_timeout_fires_once_the_watermark_passes_it() {
    let mut h = Staged::new(OutputMode::Append, |d| {
        d.flat_map_groups_with_state(&["key"], counts_schema(), GroupStateTimeout::EventTime, count_until_idle)
    })
    .await
    .unwrap();
    assert_eq!(h.batch(&[("a", 1, 1), ("a", 3, 2), ("b", 2, 3)]).await, Vec::<String>::new());
    // W = 0 still: nothing times out; W moves to 20.
    assert_eq!(h.batch(&[("c", 30, 4)]).await, Vec::<String>::new());
    // The no-data batch at W = 20 times out a (8 s) and b (7 s), not c (35 s).
    assert_eq!(h.batch(&[]).await, strings(&["a,2", "b,1"]));
    assert_eq!(h.query.recent_progress().last().unwrap().state_rows(), 1);
}

#[tokio::test]
async fn a_processing_time_timeout_fires_in_a_later_batch_without_rows() {
    let idle = |key: &[ScalarValue], rows: &RecordBatch, state: &mut GroupState<i64>| {
        if state.has_timed_out() {
            state.remove();
            return Ok(vec![vec![key[0].clone(), ScalarValue::Int64(Some(-1))]]);
        }
        state.update(rows.num_rows() as i64);
        state.set_timeout_duration(0)?;
        Ok(vec![])
    };
    let mut h = Staged::new(OutputMode::Append, |d| {
        d.flat_map_groups_with_state(&["key"], counts_schema(), GroupStateTimeout::ProcessingTime, idle)
    })
    .await
    .unwrap();
    assert_eq!(h.batch(&[("a", 1, 1)]).await, Vec::<String>::new());
    assert_eq!(h.batch(&[("b", 2, 2)]).await, strings(&["a,-1"]));
}

#[tokio::test]
async fn group_state_is_refused_in_complete_mode() {
    let err = Staged::new(OutputMode::Complete, |d| {
        d.flat_map_groups_with_state(&["key"], counts_schema(), GroupStateTimeout::NoTimeout, running_count)
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("flat_map_groups_with_state in complete mode"), "{err}");
}

#[tokio::test]
async fn group_state_after_an_aggregation_is_refused() {
    let mut ctx = crate::common::context().await;
    ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000))).unwrap();
    ctx.register_sink("out", OutputMode::Update, || Box::new(MemorySink::new()));
    let definition =
        ctx.execute("INSERT INTO out SELECT key, count(*) AS n FROM events GROUP BY key").await.unwrap().remove(0);
    let definition =
        definition.flat_map_groups_with_state(&["key"], counts_schema(), GroupStateTimeout::NoTimeout, running_count);
    let err = ctx.start(&definition, "memory://").await.unwrap_err().to_string();
    assert!(err.contains("flat_map_groups_with_state after an aggregation"), "{err}");
}

#[tokio::test]
async fn an_event_time_timeout_without_a_watermark_is_refused() {
    let mut ctx = crate::common::context().await;
    ctx.register_memory_stream("events", events_schema(), None).unwrap();
    ctx.register_sink("out", OutputMode::Append, || Box::new(MemorySink::new()));
    let definition = ctx.execute("INSERT INTO out SELECT * FROM events").await.unwrap().remove(0);
    let definition = definition.flat_map_groups_with_state(
        &["key"],
        counts_schema(),
        GroupStateTimeout::EventTime,
        count_until_idle,
    );
    let err = ctx.start(&definition, "memory://").await.unwrap_err().to_string();
    assert!(err.contains("an event-time timeout needs a watermark"), "{err}");
}
