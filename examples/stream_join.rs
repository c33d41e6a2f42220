//! A stream-stream join with the DataFrame API: each January 2013 departure (data/flights) with
//! the weather at its origin airport in its scheduled hour (data/weather), both read as streams,
//! one file per micro-batch. A left outer join: a flight whose hour has no observation is written
//! with nulls once the weather's watermark has passed that hour (SEMANTICS §4).
//!
//! ```sh
//! cargo run --release --example stream_join
//! ```

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use datafusion::common::JoinType;
use datafusion::prelude::col;
use sluice::{DataStreamReader, OutputMode, StreamContext, StreamFrame, Trigger};

/// JSON files, one per micro-batch.
fn one_file(reader: DataStreamReader<'_>) -> DataStreamReader<'_> {
    reader.format("json").option("maxFilesPerTrigger", 1)
}

fn hour() -> Field {
    Field::new("time_hour", DataType::Timestamp(TimeUnit::Nanosecond, None), true)
}

/// The query with the DataFrame API, reading the files in `flights` and `weather`.
pub fn flights_with_weather(ctx: &mut StreamContext, flights: &str, weather: &str) -> sluice::Result<StreamFrame> {
    let flight = Arc::new(Schema::new(vec![
        Field::new("flight_id", DataType::Utf8, true),
        Field::new("origin", DataType::Utf8, true),
        Field::new("dep_delay", DataType::Float64, true),
        hour(),
    ]));
    let observation = Arc::new(Schema::new(vec![
        Field::new("origin", DataType::Utf8, true),
        hour(),
        Field::new("temp", DataType::Float64, true),
        Field::new("visib", DataType::Float64, true),
    ]));
    let flights = one_file(ctx.read_stream().schema(flight))
        .load(flights)?
        .with_watermark("time_hour", Duration::from_secs(3 * 3600))?
        .alias("f")?;
    let weather = one_file(ctx.read_stream().schema(observation))
        .load(weather)?
        .with_watermark("time_hour", Duration::from_secs(3600))?
        .alias("w")?;
    flights
        .join(
            weather,
            JoinType::Left,
            vec![col("f.origin").eq(col("w.origin")), col("f.time_hour").eq(col("w.time_hour"))],
        )?
        .select(vec![
            col("f.flight_id"),
            col("f.origin"),
            col("f.time_hour"),
            col("f.dep_delay"),
            col("w.temp"),
            col("w.visib"),
        ])
}

/// The same query in SQL.
pub fn flights_with_weather_sql(flights: &str, weather: &str) -> String {
    format!(
        "CREATE TABLE flights (flight_id STRING, origin STRING, dep_delay DOUBLE, time_hour TIMESTAMP,
             WATERMARK FOR time_hour AS time_hour - INTERVAL '3' HOUR)
         WITH (connector = 'file', path = '{flights}', format = 'json', max_files_per_trigger = '1');
         CREATE TABLE weather (origin STRING, time_hour TIMESTAMP, temp DOUBLE, visib DOUBLE,
             WATERMARK FOR time_hour AS time_hour - INTERVAL '1' HOUR)
         WITH (connector = 'file', path = '{weather}', format = 'json', max_files_per_trigger = '1');
         SELECT f.flight_id, f.origin, f.time_hour, f.dep_delay, w.temp, w.visib
         FROM flights f LEFT JOIN weather w ON f.origin = w.origin AND f.time_hour = w.time_hour"
    )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let query = flights_with_weather(&mut ctx, "data/flights", "data/weather")?
        .write_stream()
        .output_mode(OutputMode::Append)
        .trigger(Trigger::AvailableNow)
        .to_table("flights_with_weather")
        .start()
        .await?;
    query.await_termination().await?;
    let summary = ctx
        .sql(
            "SELECT origin, count(*) AS flights, count(temp) AS with_weather, round(avg(dep_delay), 1) AS avg_delay
             FROM flights_with_weather GROUP BY origin ORDER BY origin",
        )
        .await?
        .collect()
        .await?;
    println!("{}", pretty_format_batches(&summary)?);
    Ok(())
}
