//! Deduplication with the DataFrame API, Spark's `dropDuplicates`: USGS earthquakes polled hourly
//! from a "past 2 hours" feed arrive twice (data/earthquakes, one file per micro-batch); keyed by
//! id and event time with a 1-hour watermark, each event is written once, in the batch it first
//! arrives in, and its key leaves the state when the watermark passes its time.
//!
//! ```sh
//! cargo run --release --example deduplication
//! ```

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use sluice::{OutputMode, StreamContext, StreamFrame, Trigger};

/// The query with the DataFrame API, reading the earthquake files in `earthquakes`.
pub fn unique_quakes(ctx: &mut StreamContext, earthquakes: &str) -> sluice::Result<StreamFrame> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("mag", DataType::Float64, true),
        Field::new("place", DataType::Utf8, true),
    ]));
    ctx.read_stream()
        .format("json")
        .schema(schema)
        .option("maxFilesPerTrigger", 1)
        .load(earthquakes)?
        .with_watermark("time", Duration::from_secs(3600))?
        .drop_duplicates(&["id", "time"])
}

/// The same query in SQL (the `ROW_NUMBER` form of `dropDuplicates`).
pub fn unique_quakes_sql(earthquakes: &str) -> String {
    format!(
        "CREATE TABLE earthquakes (id STRING, \"time\" TIMESTAMP, mag DOUBLE, place STRING,
             WATERMARK FOR \"time\" AS \"time\" - INTERVAL '1' HOUR)
         WITH (connector = 'file', path = '{earthquakes}', format = 'json', max_files_per_trigger = '1');
         SELECT id, \"time\", mag, place
         FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY id, \"time\") AS rn FROM earthquakes) AS polled
         WHERE rn = 1"
    )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let query = unique_quakes(&mut ctx, "data/earthquakes")?
        .write_stream()
        .output_mode(OutputMode::Append)
        .trigger(Trigger::AvailableNow)
        .to_table("unique_quakes")
        .start()
        .await?;
    query.await_termination().await?;
    let progress = query.recent_progress();
    let read: u64 = progress.iter().map(|p| p.num_input_rows).sum();
    let kept =
        ctx.sql("SELECT count(*) AS events, count(DISTINCT id) AS ids FROM unique_quakes").await?.collect().await?;
    println!("{read} polled rows read; kept:\n{}", pretty_format_batches(&kept)?);
    Ok(())
}
