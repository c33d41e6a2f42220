//! `foreach_batch` with the DataFrame API (Spark's `foreachBatch`, Spark Streaming's
//! `foreachRDD`): the cancelled January 2013 flights (data/flights, one file per micro-batch)
//! written by user code, one JSON lines file per batch named after the batch id, so that a batch
//! replayed after a crash overwrites its own file instead of writing its rows twice.
//!
//! ```sh
//! cargo run --release --example foreach_batch -- /tmp/cancelled
//! ```

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::json::LineDelimitedWriter;
use datafusion::prelude::{col, lit};
use sluice::{SluiceError, StreamContext, StreamFrame, Trigger};

/// The query with the DataFrame API, reading the flight files in `flights`.
pub fn cancelled_flights(ctx: &mut StreamContext, flights: &str) -> sluice::Result<StreamFrame> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("flight_id", DataType::Utf8, true),
        Field::new("origin", DataType::Utf8, true),
        Field::new("sched_dep_ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("status", DataType::Utf8, true),
    ]));
    ctx.read_stream()
        .format("json")
        .schema(schema)
        .option("maxFilesPerTrigger", 1)
        .load(flights)?
        .filter(col("status").eq(lit("cancelled")))?
        .select(vec![col("flight_id"), col("origin"), col("sched_dep_ts")])
}

/// The same query in SQL.
pub fn cancelled_flights_sql(flights: &str) -> String {
    format!(
        "CREATE TABLE flights (flight_id STRING, origin STRING, sched_dep_ts TIMESTAMP, status STRING)
         WITH (connector = 'file', path = '{flights}', format = 'json', max_files_per_trigger = '1');
         SELECT flight_id, origin, sched_dep_ts FROM flights WHERE status = 'cancelled'"
    )
}

/// Writes `batches` to `dir/batch-<id>.jsonl`, replacing the file of a replayed batch: written to
/// a temporary name, then renamed.
pub fn write_batch(
    dir: &std::path::Path,
    batch_id: u64,
    batches: &[arrow::record_batch::RecordBatch],
) -> sluice::Result<()> {
    let path = dir.join(format!("batch-{batch_id}.jsonl"));
    let temporary = dir.join(format!(".batch-{batch_id}.jsonl.tmp"));
    let file = std::fs::File::create(&temporary).map_err(|e| SluiceError::io(&temporary, e))?;
    let mut writer = LineDelimitedWriter::new(file);
    writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
    writer.finish()?;
    std::fs::rename(&temporary, &path).map_err(|e| SluiceError::io(&path, e))
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> sluice::Result<()> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "cancelled".to_string()));
    std::fs::create_dir_all(&out).map_err(|e| SluiceError::io(&out, e))?;
    let mut ctx = StreamContext::new();
    let dir = out.clone();
    let query = cancelled_flights(&mut ctx, "data/flights")?
        .write_stream()
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(&out.join("_checkpoint").display().to_string())
        .foreach_batch(move |batch_id, batches| write_batch(&dir, batch_id, batches))
        .start()
        .await?;
    query.await_termination().await?;
    let cancelled: u64 = query.recent_progress().iter().map(|p| p.sink.num_output_rows).sum();
    println!("{cancelled} cancelled flights written to {}", out.display());
    Ok(())
}
