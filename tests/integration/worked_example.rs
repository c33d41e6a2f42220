//! `../shared/semantics/tumble_append` (observed in Spark 4.3), reproduced batch for batch through
//! the file source, the SQL front end and the JSON file sink.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use serde_json::Value;

pub const SCRIPT: &str = "
CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT,
                     WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = '{in}', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'file', path = '{out}', format = 'json', output_mode = 'append');
INSERT INTO out
SELECT window.start AS wstart, window.end AS wend, key, count(*) AS cnt, sum(value) AS total
FROM events GROUP BY window(ts, '10 seconds'), key;";

fn expected_rows() -> BTreeMap<u64, Vec<Value>> {
    let text = std::fs::read_to_string("tests/data/tumble_append/output.jsonl").unwrap();
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        out.entry(v["batch"].as_u64().unwrap()).or_default().push(v["row"].clone());
    }
    out
}

fn sorted(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[tokio::test]
async fn reproduces_spark_batch_for_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    copy_in_order(Path::new("tests/data/tumble_append/input/events"), &input);
    let sql = SCRIPT.replace("{in}", input.to_str().unwrap()).replace("{out}", output.to_str().unwrap());
    let progress = run_script(&sql, &dir.path().join("checkpoint")).await.unwrap();

    let got = sink_rows_by_batch(&output);
    let want = expected_rows();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (batch, rows) in want {
        assert_eq!(sorted(got[&batch].clone()), sorted(rows), "batch {batch}");
    }

    let spark = std::fs::read_to_string("tests/data/tumble_append/batches.jsonl").unwrap();
    let spark: Vec<Value> = spark.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(progress.len(), spark.len(), "same number of batches, the no-data batch included");
    // Compared in the JSON form, with Spark's `StreamingQueryProgress` names.
    let ours: Vec<Value> = progress.iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    for (ours, theirs) in ours.iter().zip(&spark) {
        let b = theirs["batch"].as_u64().unwrap();
        assert_eq!(ours["batchId"].as_u64(), Some(b));
        assert_eq!(ours["numInputRows"], theirs["num_input_rows"], "batch {b} input");
        assert_eq!(ours["sources"][0]["numInputRows"], theirs["input_rows_per_source"]["events"], "batch {b} input");
        assert_eq!(ours["sink"]["numOutputRows"], theirs["num_output_rows"], "batch {b} output");
        assert_eq!(ours["eventTime"]["watermark"], theirs["watermark"], "batch {b} watermark");
        // Spark reports min/max/avg only for batches with rows: batch 5 has `max` null.
        assert_eq!(ours["eventTime"].get("max").unwrap_or(&Value::Null), &theirs["event_time_max"], "batch {b} max");
        let (state, spark_state) = (&ours["stateOperators"][0], &theirs["state"][0]);
        assert_eq!(state["operatorName"], spark_state["op"], "batch {b}");
        assert_eq!(state["numRowsTotal"], spark_state["rows_total"], "batch {b} state rows");
        assert_eq!(state["numRowsUpdated"], spark_state["rows_updated"], "batch {b} updated");
        assert_eq!(state["numRowsRemoved"], spark_state["rows_removed"], "batch {b} removed");
        assert_eq!(state["numRowsDroppedByWatermark"], spark_state["dropped_by_watermark"], "batch {b} dropped");
    }
    // Batch 0 holds a@1, a@5 and b@12: min, max and their mean.
    let event_time = &ours[0]["eventTime"];
    assert_eq!(event_time["min"], "2024-01-01T00:00:01.000Z");
    assert_eq!(event_time["avg"], "2024-01-01T00:00:06.000Z");
    assert_eq!(event_time["max"], "2024-01-01T00:00:12.000Z");
}
