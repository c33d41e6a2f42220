//! What each micro-batch did, shaped and named as Spark's `StreamingQueryProgress`
//! (`org.apache.spark.sql.streaming.progress`), and its one-line rendering.
//!
//! The JSON form follows Spark's `jsonValue`: camelCase names, empty maps (`durationMs`,
//! `eventTime`, `customMetrics`, `metrics`) and non-finite rates left out, map keys sorted,
//! timestamps as `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` strings in UTC, offsets as the sources' own JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::log::SourceRange;
use crate::operator::OperatorProgress;

/// The progress of one trigger of a query (Spark's `StreamingQueryProgress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryProgress {
    /// The query's id, kept across restarts in the checkpoint's `metadata`.
    pub id: String,
    /// The id of this run of the query: new at each start.
    pub run_id: String,
    /// The query's name (its sink table).
    pub name: String,
    /// Start of the trigger, `2024-01-01T00:00:00.000Z`.
    pub timestamp: String,
    /// The batch the trigger ran (for an idle trigger, the last batch run, `-1` if none).
    pub batch_id: i64,
    /// Wall-clock duration of the trigger, ms (Spark's `batchDuration`).
    pub batch_duration: u64,
    /// Rows read, all sources.
    pub num_input_rows: u64,
    /// Input rows per second since the previous trigger started, all sources: 0 for the first
    /// trigger of a run (an infinite interval, as in Spark); left out of the JSON when not finite.
    #[serde(default = "nan", skip_serializing_if = "not_finite")]
    pub input_rows_per_second: f64,
    /// Input rows per second of this trigger's duration, all sources.
    #[serde(default = "nan", skip_serializing_if = "not_finite")]
    pub processed_rows_per_second: f64,
    /// Time spent per phase, ms: Spark's `latestOffset`, `walCommit`, `getBatch`,
    /// `queryPlanning`, `addBatch` (running the plan and writing the sink), `commitOffsets`,
    /// `triggerExecution` (the whole trigger), and sluice's `stateCommit` (writing the stateful
    /// operators' state, inside `addBatch` in Spark).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub duration_ms: BTreeMap<String, u64>,
    /// `min`, `max` and `avg` event time of the batch's rows (all watermarked sources; absent
    /// without such rows) and `watermark`, the watermark the batch ran under (absent for a query
    /// without watermark).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_time: BTreeMap<String, String>,
    /// One per stateful operator, in plan order.
    pub state_operators: Vec<StateOperatorProgress>,
    /// One per source.
    pub sources: Vec<SourceProgress>,
    /// The sink.
    pub sink: SinkProgress,
    /// `eventTime.watermark` as ms since the epoch, for code; not in the JSON.
    #[serde(skip)]
    pub watermark_ms: Option<i64>,
}

/// What one stateful operator did in a batch (Spark's `StateOperatorProgress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOperatorProgress {
    /// Spark's short name of the operator: `stateStoreSave` (aggregation),
    /// `sessionWindowStateStoreSaveExec`, `dedupe`, `dedupeWithinWatermark`,
    /// `symmetricHashJoin` or `flatMapGroupsWithState`.
    pub operator_name: String,
    /// Rows in state after the batch.
    pub num_rows_total: u64,
    /// Rows the batch inserted or updated.
    pub num_rows_updated: u64,
    /// Rows the batch removed (evicted or emitted).
    pub num_rows_removed: u64,
    /// Late rows dropped, counted after partial aggregation as Spark counts.
    pub num_rows_dropped_by_watermark: u64,
    /// Bytes of the state's keys and values held in memory (approximate).
    pub memory_used_bytes: u64,
    /// Operator-specific counters. sluice's `numRowsScanned`: state rows the batch read (looked
    /// up or visited by a scan).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_metrics: BTreeMap<String, i64>,
    /// sluice's description of the operator, e.g. `aggregate[window, key]`; not in the JSON.
    #[serde(skip)]
    pub description: String,
}

/// What one source did in a batch (Spark's `SourceProgress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// The source, e.g. `FileStreamSource[file:/data/in]`.
    pub description: String,
    /// Offset the batch started at (the source's JSON form).
    pub start_offset: Value,
    /// Offset the batch ended at, exclusive.
    pub end_offset: Value,
    /// The latest offset the source had when the batch was planned (its `endOffset`: sluice's
    /// sources report what a batch takes, rate limits applied).
    pub latest_offset: Value,
    /// Rows read from the source.
    pub num_input_rows: u64,
    /// Rows per second since the previous trigger started.
    #[serde(default = "nan", skip_serializing_if = "not_finite")]
    pub input_rows_per_second: f64,
    /// Rows per second of this trigger's duration.
    #[serde(default = "nan", skip_serializing_if = "not_finite")]
    pub processed_rows_per_second: f64,
    /// Source-specific counters as strings: `numBadRecordsDropped`, malformed records skipped
    /// by `bad_data = 'drop'`, when there were any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
}

/// Key of [`SourceProgress::metrics`] counting malformed records skipped.
pub const BAD_RECORDS_METRIC: &str = "numBadRecordsDropped";

/// What the sink got (Spark's `SinkProgress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// The sink, e.g. `FileSink[/data/out]`.
    pub description: String,
    /// Rows written.
    pub num_output_rows: u64,
}

fn nan() -> f64 {
    f64::NAN
}

fn not_finite(value: &f64) -> bool {
    !value.is_finite()
}

impl SourceProgress {
    /// A source that read `rows` rows from `range` and skipped `bad_records` malformed ones;
    /// rates are filled in when the trigger ends.
    pub(crate) fn read(description: String, range: &SourceRange, rows: u64, bad_records: u64) -> SourceProgress {
        let mut metrics = BTreeMap::new();
        if bad_records > 0 {
            metrics.insert(BAD_RECORDS_METRIC.to_string(), bad_records.to_string());
        }
        SourceProgress {
            description,
            start_offset: range.start.clone(),
            end_offset: range.end.clone(),
            latest_offset: range.end.clone(),
            num_input_rows: rows,
            input_rows_per_second: 0.0,
            processed_rows_per_second: 0.0,
            metrics,
        }
    }

    /// Malformed records the source skipped in the batch.
    pub fn bad_records_dropped(&self) -> u64 {
        self.metrics.get(BAD_RECORDS_METRIC).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

impl StateOperatorProgress {
    /// State rows the batch read: the custom metric `numRowsScanned` (0 when absent).
    pub fn rows_scanned(&self) -> u64 {
        self.custom_metrics.get(ROWS_SCANNED).map_or(0, |n| u64::try_from(*n).unwrap_or(0))
    }
}

/// The custom metric key of [`StateOperatorProgress::rows_scanned`].
const ROWS_SCANNED: &str = "numRowsScanned";

impl From<OperatorProgress> for StateOperatorProgress {
    fn from(p: OperatorProgress) -> Self {
        StateOperatorProgress {
            operator_name: p.operator_name.to_string(),
            num_rows_total: p.state.rows_total,
            num_rows_updated: p.state.rows_updated,
            num_rows_removed: p.state.rows_removed,
            num_rows_dropped_by_watermark: p.rows_dropped_by_watermark,
            memory_used_bytes: p.state.memory_bytes,
            custom_metrics: BTreeMap::from([(
                ROWS_SCANNED.to_string(),
                i64::try_from(p.state.rows_scanned).unwrap_or(i64::MAX),
            )]),
            description: p.name,
        }
    }
}

impl QueryProgress {
    /// State rows over all stateful operators after the batch.
    pub fn state_rows(&self) -> u64 {
        self.state_operators.iter().map(|o| o.num_rows_total).sum()
    }

    /// State memory over all stateful operators, bytes.
    pub fn state_bytes(&self) -> u64 {
        self.state_operators.iter().map(|o| o.memory_used_bytes).sum()
    }

    /// Late rows dropped over all stateful operators.
    pub fn late_rows_dropped(&self) -> u64 {
        self.state_operators.iter().map(|o| o.num_rows_dropped_by_watermark).sum()
    }

    /// Malformed records skipped over all sources.
    pub fn bad_records_dropped(&self) -> u64 {
        self.sources.iter().map(SourceProgress::bad_records_dropped).sum()
    }

    /// The progress line `sluice run` logs: batch, input, rates, duration, watermark, state rows,
    /// late rows, then each stateful operator's state rows and KiB (keys and values, as held in
    /// memory).
    pub fn line(&self) -> String {
        let watermark = self.watermark_ms.map_or_else(|| "none".to_string(), format_ms);
        let mut line = format!(
            "batch {} | input {} rows | {:.0} rows/s | {} ms | watermark {} | state {} rows | late dropped {}",
            self.batch_id,
            self.num_input_rows,
            finite_or_zero(self.processed_rows_per_second),
            self.batch_duration,
            watermark,
            self.state_rows(),
            self.late_rows_dropped(),
        );
        let bad = self.bad_records_dropped();
        if bad > 0 {
            line.push_str(&format!(" | bad records dropped {bad}"));
        }
        for op in &self.state_operators {
            line.push_str(&format!(
                " | {}: {} rows, {} KiB",
                op.description,
                op.num_rows_total,
                op.memory_used_bytes.div_ceil(1024)
            ));
        }
        line
    }
}

/// `value`, or 0 when it is infinite or NaN (a rate over no time).
pub(crate) fn finite_or_zero(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// `ms` since the epoch as `2024-01-01T00:00:00.000Z`, through arrow's formatter.
pub fn format_ms(ms: i64) -> String {
    use arrow::array::{Array, TimestampMillisecondArray};
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let array = TimestampMillisecondArray::from(vec![ms]);
    let options = FormatOptions::default().with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let formatter = ArrayFormatter::try_new(&array as &dyn Array, &options).expect("timestamps format");
    formatter.value(0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_spark_names_and_leaves_out_empty_maps_and_rates_that_are_not_finite() {
        let progress = QueryProgress {
            batch_id: 3,
            input_rows_per_second: f64::INFINITY,
            processed_rows_per_second: 2.5,
            sink: SinkProgress { description: "MemorySink".into(), num_output_rows: 1 },
            watermark_ms: Some(0),
            ..Default::default()
        };
        let json = serde_json::to_value(&progress).unwrap();
        assert_eq!(json["batchId"], 3);
        assert_eq!(json["processedRowsPerSecond"], 2.5);
        assert_eq!(json["sink"]["numOutputRows"], 1);
        for absent in ["inputRowsPerSecond", "durationMs", "eventTime", "watermarkMs", "watermark_ms"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        let back: QueryProgress = serde_json::from_value(json).unwrap();
        assert!(back.input_rows_per_second.is_nan(), "a left-out rate reads back as NaN");
        assert_eq!(back.sink, progress.sink);
    }
}
