//! `current_timestamp()` / `now()` and `current_date()` are evaluated once per micro-batch at the
//! batch's timestamp in the offsets log (Spark's `batchTimestampMs`): every row of a batch sees
//! the same value, the next batch a later one, and a replayed batch the value it had.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;

use crate::common::*;
use sluice::OutputMode;

/// The offsets log timestamp of batch `id` in the checkpoint at `dir`, ms.
fn logged_timestamp_ms(dir: &std::path::Path, id: u64) -> i64 {
    let entry: serde_json::Value =
        sluice::checkpoint::decode_entry(&std::fs::read(dir.join(format!("offsets/{id}"))).unwrap()).unwrap();
    entry["timestamp_ms"].as_i64().unwrap()
}

fn column_ns(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column(column).as_primitive::<TimestampNanosecondType>().values().to_vec()).collect()
}

#[tokio::test]
async fn current_timestamp_is_the_batch_timestamp_of_the_offsets_log() {
    let dir = tempfile::tempdir().unwrap();
    let select = "SELECT key, current_timestamp() AS t, now() AS n, current_date() AS d FROM events";
    let mut h = Harness::at_checkpoint(OutputMode::Append, None, select, dir.path().to_str().unwrap()).await.unwrap();
    h.batch(&[("a", 1, 1), ("b", 2, 2)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.batch(&[("c", 3, 3)]).await;
    let batches = h.sink.batches();
    for (id, output) in &batches {
        let expected = logged_timestamp_ms(dir.path(), *id) * 1_000_000;
        assert_eq!(column_ns(output, 1), vec![expected; output.iter().map(|b| b.num_rows()).sum()], "batch {id}");
        assert_eq!(column_ns(output, 1), column_ns(output, 2), "now() is current_timestamp()");
        let day = output[0].column(3).as_primitive::<arrow::datatypes::Date32Type>().value(0);
        assert_eq!(i64::from(day), expected / 86_400_000_000_000, "current_date() is the batch's date (UTC)");
    }
    assert!(column_ns(&batches[&1], 1)[0] >= column_ns(&batches[&0], 1)[0] + 20_000_000, "a later batch, a later time");
}
