//! Running totals with the DataFrame API, Spark Streaming's `updateStateByKey`: per carrier, the
//! flights and total departure delay so far, over the January 2013 flights (data/flights, one file
//! per micro-batch). Update mode: each batch writes the carriers it changed, and the memory table
//! keeps one current row per carrier.
//!
//! ```sh
//! cargo run --release --example running_totals
//! ```

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{col, lit};
use sluice::{OutputMode, StreamContext, StreamFrame, Trigger};

/// The query with the DataFrame API, reading the flight files in `flights`.
pub fn running_totals(ctx: &mut StreamContext, flights: &str) -> sluice::Result<StreamFrame> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("carrier", DataType::Utf8, true),
        Field::new("dep_delay", DataType::Float64, true),
    ]));
    ctx.read_stream()
        .format("json")
        .schema(schema)
        .option("maxFilesPerTrigger", 1)
        .load(flights)?
        .group_by(vec![col("carrier")])
        .agg(vec![count(lit(1)).alias("flights"), sum(col("dep_delay")).alias("total_delay_min")])
}

/// The same query in SQL.
pub fn running_totals_sql(flights: &str) -> String {
    format!(
        "CREATE TABLE flights (carrier STRING, dep_delay DOUBLE)
         WITH (connector = 'file', path = '{flights}', format = 'json', max_files_per_trigger = '1');
         SELECT carrier, count(*) AS flights, sum(dep_delay) AS total_delay_min FROM flights GROUP BY carrier"
    )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let query = running_totals(&mut ctx, "data/flights")?
        .write_stream()
        .output_mode(OutputMode::Update)
        .trigger(Trigger::AvailableNow)
        .to_table("totals")
        .start()
        .await?;
    query.await_termination().await?;
    let totals = ctx.sql("SELECT * FROM totals ORDER BY flights DESC").await?.collect().await?;
    println!("Flights and delay minutes per carrier, January 2013:\n{}", pretty_format_batches(&totals)?);
    Ok(())
}
