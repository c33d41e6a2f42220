//! `../shared/semantics/tumble_append` (observed in Spark 4.3), reproduced batch for batch through
//! the file source, the SQL front end and the JSON file sink.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;
use serde_json::Value;

const SCRIPT: &str = "
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
    for (ours, theirs) in progress.iter().zip(&spark) {
        let b = ours.batch_id;
        assert_eq!(ours.batch_id, theirs["batch"].as_u64().unwrap());
        assert_eq!(ours.input_rows, theirs["num_input_rows"].as_u64().unwrap(), "batch {b} input");
        assert_eq!(ours.output_rows, theirs["num_output_rows"].as_u64().unwrap(), "batch {b} output");
        let watermark = sluice::execution::progress::format_ms(ours.watermark_ms);
        assert_eq!(watermark, theirs["watermark"].as_str().unwrap(), "batch {b} watermark");
        let state = &theirs["state"][0];
        assert_eq!(ours.state_rows, state["rows_total"].as_u64().unwrap(), "batch {b} state rows");
        assert_eq!(ours.late_rows_dropped, state["dropped_by_watermark"].as_u64().unwrap(), "batch {b} dropped");
        assert_eq!(ours.operators[0].state.rows_updated, state["rows_updated"].as_u64().unwrap(), "batch {b} updated");
        assert_eq!(ours.operators[0].state.rows_removed, state["rows_removed"].as_u64().unwrap(), "batch {b} removed");
    }
}
