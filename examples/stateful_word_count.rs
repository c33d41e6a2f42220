//! The DStream `StatefulNetworkWordCount` (`updateStateByKey`) ported to sluice: a running count
//! of every word ever seen, updated each micro-batch, written with
//! `flat_map_groups_with_state` (Spark's `flatMapGroupsWithState`).
//!
//! ```sh
//! cargo run --release --example stateful_word_count
//! ```
//!
//! Lines arrive from Rust (as they would from `nc -lk 9999` in the Spark example); SQL splits them
//! into words, and the per-word state (a count, serialized into the checkpoint) is updated by the
//! function below. Update mode: each batch prints the words it changed with their new totals.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use sluice::sink::ConsoleSink;
use sluice::{GroupState, GroupStateTimeout, OutputMode, StreamContext};

/// `updateStateByKey((new values, running count) => running count + new values)`.
fn update_count(
    word: &[ScalarValue],
    rows: &RecordBatch,
    count: &mut GroupState<u64>,
) -> sluice::Result<Vec<Vec<ScalarValue>>> {
    let total = count.get().copied().unwrap_or(0) + rows.num_rows() as u64;
    count.update(total);
    Ok(vec![vec![word[0].clone(), ScalarValue::UInt64(Some(total))]])
}

#[tokio::main]
async fn main() -> sluice::Result<()> {
    let lines_schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let mut ctx = StreamContext::new();
    let lines = ctx.register_memory_stream("lines", Arc::clone(&lines_schema), None)?;
    ctx.register_sink("counts", OutputMode::Update, || Box::new(ConsoleSink::stdout(20, false)));
    let definition = ctx
        .execute("INSERT INTO counts SELECT lower(unnest(string_to_array(line, ' '))) AS word FROM lines")
        .await?
        .remove(0);
    let output = Arc::new(Schema::new(vec![
        Field::new("word", DataType::Utf8, true),
        Field::new("count", DataType::UInt64, false),
    ]));
    let definition =
        definition.flat_map_groups_with_state(&["word"], output, GroupStateTimeout::NoTimeout, update_count);
    let checkpoint = tempfile::tempdir().map_err(|e| sluice::SluiceError::io(std::env::temp_dir(), e))?;
    let query = ctx.start(&definition, checkpoint.path().to_str().expect("utf-8 path")).await?;

    for text in [
        vec!["to be or not to be", "that is the question"],
        vec!["whether tis nobler in the mind to suffer"],
        vec!["the slings and arrows of outrageous fortune", "or to take arms"],
    ] {
        let batch = RecordBatch::try_new(Arc::clone(&lines_schema), vec![Arc::new(StringArray::from(text))])?;
        lines.push(batch)?;
        query.run_next_batch().await?;
    }
    Ok(())
}
