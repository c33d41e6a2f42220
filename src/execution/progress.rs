//! What each micro-batch did (Spark's `StreamingQueryProgress`), and its one-line rendering.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::operator::OperatorProgress;

/// The progress of one micro-batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchProgress {
    /// Batch id.
    pub batch_id: u64,
    /// Rows read, all sources.
    pub input_rows: u64,
    /// Rows read per source.
    pub input_rows_per_source: BTreeMap<String, u64>,
    /// Input rows per second of batch duration.
    pub rows_per_second: f64,
    /// Wall-clock duration of the batch, ms.
    pub duration_ms: u64,
    /// The watermark the batch used for emission and eviction, ms since the epoch.
    pub watermark_ms: i64,
    /// Rows the sink received.
    pub output_rows: u64,
    /// State rows over all operators after the batch.
    pub state_rows: u64,
    /// State memory over all operators, bytes (approximate).
    pub state_bytes: u64,
    /// Late rows dropped by stateful operators (counted after partial aggregation, as Spark).
    pub late_rows_dropped: u64,
    /// Malformed records skipped by sources with `bad_data = 'drop'`.
    pub bad_records_dropped: u64,
    /// Per stateful operator.
    #[serde(skip)]
    pub operators: Vec<OperatorProgress>,
}

impl BatchProgress {
    /// The progress line printed on stderr by `sluice run`; ends with each stateful operator's
    /// state rows and KiB (keys and values, as held in memory).
    pub fn line(&self) -> String {
        let mut line = format!(
            "batch {} | input {} rows | {:.0} rows/s | {} ms | watermark {} | state {} rows | late dropped {}",
            self.batch_id,
            self.input_rows,
            self.rows_per_second,
            self.duration_ms,
            format_ms(self.watermark_ms),
            self.state_rows,
            self.late_rows_dropped,
        );
        if self.bad_records_dropped > 0 {
            line.push_str(&format!(" | bad records dropped {}", self.bad_records_dropped));
        }
        for op in &self.operators {
            line.push_str(&format!(
                " | {}: {} rows, {} KiB",
                op.name,
                op.state.rows_total,
                op.state.memory_bytes.div_ceil(1024)
            ));
        }
        line
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
