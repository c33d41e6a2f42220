//! Windowed counts with the DataFrame API, Spark Streaming's `reduceByKeyAndWindow`: departures
//! per origin airport in 1-hour windows sliding every 30 minutes, over the January 2013 flights
//! (data/flights, one file per micro-batch), with a 3-hour watermark; each window is written once,
//! when the watermark passes its end (append mode), into a memory table queried with SQL.
//!
//! ```sh
//! cargo run --release --example windowed_counts
//! ```

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_aggregate::expr_fn::{avg, count};
use datafusion::prelude::{col, lit};
use sluice::{window_with_slide, OutputMode, StreamContext, StreamFrame, Trigger};

/// The query with the DataFrame API, reading the flight files in `flights`.
pub fn windowed_counts(ctx: &mut StreamContext, flights: &str) -> sluice::Result<StreamFrame> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        Field::new("sched_dep_ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("dep_delay", DataType::Float64, true),
    ]));
    ctx.read_stream()
        .format("json")
        .schema(schema)
        .option("maxFilesPerTrigger", 1)
        .load(flights)?
        .with_watermark("sched_dep_ts", Duration::from_secs(3 * 3600))?
        .group_by(vec![window_with_slide(col("sched_dep_ts"), "1 hour", "30 minutes"), col("origin")])
        .agg(vec![count(lit(1)).alias("departures"), avg(col("dep_delay")).alias("avg_delay")])?
        .select(vec![
            get_field(col("window"), "start").alias("start"),
            col("origin"),
            col("departures"),
            col("avg_delay"),
        ])
}

/// The same query in SQL.
pub fn windowed_counts_sql(flights: &str) -> String {
    format!(
        "CREATE TABLE flights (origin STRING, sched_dep_ts TIMESTAMP, dep_delay DOUBLE,
             WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR)
         WITH (connector = 'file', path = '{flights}', format = 'json', max_files_per_trigger = '1');
         SELECT window.start AS start, origin, count(*) AS departures, avg(dep_delay) AS avg_delay
         FROM flights GROUP BY window(sched_dep_ts, '1 hour', '30 minutes'), origin"
    )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let query = windowed_counts(&mut ctx, "data/flights")?
        .write_stream()
        .output_mode(OutputMode::Append)
        .trigger(Trigger::AvailableNow)
        .to_table("departures")
        .start()
        .await?;
    query.await_termination().await?;
    let busiest = ctx
        .sql("SELECT start, origin, departures, round(avg_delay, 1) AS avg_delay FROM departures ORDER BY departures DESC, start LIMIT 10")
        .await?
        .collect()
        .await?;
    println!("The busiest half-hour-sliding hours:\n{}", pretty_format_batches(&busiest)?);
    Ok(())
}
