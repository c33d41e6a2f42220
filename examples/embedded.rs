//! Embedding sluice in a Rust program: a stream fed from Rust, a streaming SQL query over it, and
//! each micro-batch's result collected in memory.
//!
//! ```sh
//! cargo run --release --example embedded
//! ```
//!
//! Readings of two sensors arrive out of order; the query keeps a 10-second tumbling average per
//! sensor with a 5-second watermark and emits each window once it is final (append mode).

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use sluice::sink::MemorySink;
use sluice::{OutputMode, StreamContext};

fn readings(rows: &[(&str, i64, f64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Utf8, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        Field::new("celsius", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| 1_700_000_000_000 + r.1 * 1000).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .expect("columns match the schema")
}

#[tokio::main]
async fn main() -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    let first = readings(&[("s1", 1, 20.5), ("s2", 3, 18.0), ("s1", 12, 21.0)]);
    let stream = ctx.register_memory_stream("readings", first.schema(), Some(("ts", 5_000)))?;
    let results = MemorySink::new();
    let sink = results.clone();
    ctx.register_sink("averages", OutputMode::Append, move || Box::new(sink.clone()));
    let queries = ctx
        .execute(
            "INSERT INTO averages
             SELECT window.start AS start, sensor, count(*) AS n, avg(celsius) AS mean
             FROM readings GROUP BY window(ts, '10 seconds'), sensor",
        )
        .await?;
    let checkpoint = tempfile::tempdir().map_err(|e| sluice::SluiceError::io(std::env::temp_dir(), e))?;
    let query = ctx.start(&queries[0], checkpoint.path().to_str().expect("utf-8 path")).await?;

    // Each push is read by the next micro-batch. s2@4 s arrives after the watermark reached 7 s,
    // but its window [0 s, 10 s) is still open, so it counts; s1@2 s arrives after that window
    // was emitted and is dropped as late.
    for batch in [first, readings(&[("s2", 4, 18.4), ("s1", 25, 22.0)]), readings(&[("s1", 2, 99.0), ("s2", 31, 17.5)])]
    {
        stream.push(batch)?;
        query.run_next_batch().await?;
        while query.run_next_batch().await? {} // no-data batches the watermark makes due
    }
    for (batch_id, rows) in results.batches() {
        if !rows.is_empty() {
            println!("batch {batch_id}:\n{}\n", pretty_format_batches(&rows)?);
        }
    }
    for p in query.recent_progress() {
        eprintln!("{}", p.line());
    }
    Ok(())
}
