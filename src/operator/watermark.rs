//! Event-time watermarks: per input `max event time - delay`, combined over inputs (SEMANTICS §1).

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::{Result, SluiceError};

/// Field metadata key marking an event-time column and carrying its watermark delay in ms, as
/// Spark marks the attribute with `spark.watermarkDelayMs`. A window struct computed from such a
/// column carries it too, which is how the planner recognises an event-time grouping key.
pub const WATERMARK_DELAY_METADATA: &str = "sluice.watermark.delay_ms";

/// Field metadata key on a window struct's `start` and `end` fields: the watermark delay (ms) of
/// the event-time column the window was computed from. The struct's children carry it because the
/// window's type travels through every plan node (`unnest` included), while a field's own metadata
/// does not. It is not [`WATERMARK_DELAY_METADATA`]: a bound read out of the window
/// (`window.start`) is not an event-time column, as in Spark, whose window struct fields carry no
/// watermark; `window_time(window)` is one (see [`window_end_event_time`]).
pub const WINDOW_DELAY_METADATA: &str = "sluice.window.delay_ms";

/// The watermark delay (ms) an event-time field carries: its own metadata, or for a
/// `window{start, end}` struct that of its `end` field.
pub fn event_time_delay_ms(field: &arrow::datatypes::Field) -> Option<i64> {
    let own = field.metadata().get(WATERMARK_DELAY_METADATA);
    let nested = match field.data_type() {
        DataType::Struct(children) => children.find("end").and_then(|(_, f)| f.metadata().get(WINDOW_DELAY_METADATA)),
        _ => None,
    };
    own.or(nested).and_then(|d| d.parse().ok())
}

/// The metadata of a window's `start` and `end` fields, from that of the event-time column `ts`
/// it is computed from: its watermark delay moves to [`WINDOW_DELAY_METADATA`].
pub fn window_bound_metadata(ts: &HashMap<String, String>) -> HashMap<String, String> {
    let mut meta = ts.clone();
    if let Some(delay) = meta.remove(WATERMARK_DELAY_METADATA) {
        meta.insert(WINDOW_DELAY_METADATA.to_string(), delay);
    }
    meta
}

/// The metadata of `window_time(window)`, from that of the window's `end` field: an event-time
/// column with the window's watermark delay (Spark's `window_time` keeps the watermark).
pub fn window_end_event_time(end: &HashMap<String, String>) -> HashMap<String, String> {
    let mut meta = end.clone();
    if let Some(delay) = meta.remove(WINDOW_DELAY_METADATA) {
        meta.insert(WATERMARK_DELAY_METADATA.to_string(), delay);
    }
    meta
}

/// How the watermarks of several inputs combine (Spark's `spark.sql.streaming.multipleWatermarkPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MultipleWatermarkPolicy {
    /// The slowest input decides (Spark's default): no input's rows become late early.
    #[default]
    Min,
    /// The fastest input decides: the slower inputs' rows may be dropped as late.
    Max,
}

impl MultipleWatermarkPolicy {
    /// Parses `min` or `max`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "min" => Ok(Self::Min),
            "max" => Ok(Self::Max),
            other => Err(SluiceError::sql(format!(
                "spark.sql.streaming.multipleWatermarkPolicy must be 'min' or 'max', got '{other}'"
            ))),
        }
    }

    /// `min` or `max`, as [`Self::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// A watermarked input: its event-time column and delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// Event-time column name in the source schema.
    pub column: String,
    /// Delay, ms.
    pub delay_ms: i64,
}

impl WatermarkSpec {
    /// The watermark a stream table's schema declares: the column marked with
    /// [`WATERMARK_DELAY_METADATA`], if any.
    pub fn of_schema(schema: &arrow::datatypes::Schema) -> Option<WatermarkSpec> {
        schema.fields().iter().find_map(|f| {
            let delay_ms = f.metadata().get(WATERMARK_DELAY_METADATA)?.parse().ok()?;
            Some(WatermarkSpec { column: f.name().clone(), delay_ms })
        })
    }
}

/// Tracks `max event time - delay` per input and the global watermark.
///
/// Inputs that have never had a row count as 0 (1970-01-01), holding a `Min` watermark back, as in
/// Spark. The global watermark never decreases.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    specs: BTreeMap<String, WatermarkSpec>,
    inputs: BTreeMap<String, i64>,
    policy: MultipleWatermarkPolicy,
}

impl WatermarkTracker {
    /// A tracker for the given watermarked inputs, all at 0.
    pub fn new(specs: BTreeMap<String, WatermarkSpec>, policy: MultipleWatermarkPolicy) -> Self {
        let inputs = specs.keys().map(|k| (k.clone(), 0)).collect();
        Self { specs, inputs, policy }
    }

    /// True when at least one input has a watermark.
    pub fn is_active(&self) -> bool {
        !self.specs.is_empty()
    }

    /// Per input `max - delay`, ms.
    pub fn inputs(&self) -> &BTreeMap<String, i64> {
        &self.inputs
    }

    /// Restores per-input values recorded in the checkpoint.
    pub fn restore(&mut self, inputs: &BTreeMap<String, i64>) {
        for (k, v) in inputs {
            if let Some(slot) = self.inputs.get_mut(k) {
                *slot = *v;
            }
        }
    }

    /// Folds the rows `source` delivered in a batch into its watermark; returns their event-time
    /// statistics (`None` for a source without watermark or rows with an event time).
    ///
    /// # Errors
    /// [`SluiceError::Source`] when the event-time column is missing or not a timestamp.
    pub fn observe(&mut self, source: &str, batches: &[RecordBatch]) -> Result<Option<EventTimeStats>> {
        let Some(spec) = self.specs.get(source) else { return Ok(None) };
        let mut stats: Option<EventTimeStats> = None;
        for batch in batches {
            let column = batch.column_by_name(&spec.column).ok_or_else(|| SluiceError::Source {
                source_name: source.to_string(),
                message: format!("watermark column '{}' is missing", spec.column),
            })?;
            if let Some(s) = event_time_stats(column.as_ref())? {
                stats = Some(stats.map_or(s, |x| x.merge(s)));
            }
        }
        if let Some(s) = stats {
            let slot = self.inputs.get_mut(source).expect("specs and inputs share keys");
            *slot = (*slot).max(s.max_ms - spec.delay_ms);
        }
        Ok(stats)
    }

    /// `W_{k+1} = max(W_k, combine(inputs))`.
    pub fn next_watermark(&self, current_ms: i64) -> i64 {
        let combined = match self.policy {
            MultipleWatermarkPolicy::Min => self.inputs.values().min(),
            MultipleWatermarkPolicy::Max => self.inputs.values().max(),
        };
        combined.map_or(current_ms, |c| current_ms.max(*c))
    }
}

/// Nanoseconds per unit of a timestamp type.
pub fn unit_nanos(data_type: &DataType) -> Option<i64> {
    match data_type {
        DataType::Timestamp(TimeUnit::Second, _) => Some(1_000_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some(1_000_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some(1_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(1),
        _ => None,
    }
}

/// A watermark in ms expressed in the unit of `data_type` (a timestamp type).
pub fn ms_in_unit(ms: i64, data_type: &DataType) -> i64 {
    let nanos = unit_nanos(data_type).unwrap_or(1_000_000);
    if nanos >= 1_000_000 {
        // Floor, also before the epoch: `t <= w` in ms holds exactly for `t <= floor(w)` in s.
        ms.div_euclid(nanos / 1_000_000)
    } else {
        ms.saturating_mul(1_000_000 / nanos)
    }
}

/// A time `value` of `data_type` (a timestamp unit) as the smallest millisecond at or after it,
/// so that `value <= ms_in_unit(w)` exactly when `ceil_ms(value) <= w` (for whole-unit `w`): an
/// index of times in ms takes exactly the keys a comparison in the column's unit would.
pub fn ceil_ms(value: i64, data_type: &DataType) -> i64 {
    let nanos = unit_nanos(data_type).unwrap_or(1_000_000);
    if nanos >= 1_000_000 {
        value.saturating_mul(nanos / 1_000_000)
    } else {
        let per_ms = 1_000_000 / nanos;
        value.div_euclid(per_ms) + i64::from(value.rem_euclid(per_ms) != 0)
    }
}

/// An event-time column of an operator's input: its index, and whether it is a
/// `window{start, end}` struct, whose `end` is its event time (as Spark compares windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeColumn {
    /// Column index.
    pub index: usize,
    /// A window struct rather than a timestamp.
    pub is_window: bool,
}

/// The event times of `column` (a window's `end`) in the column's own unit, and that unit's type.
///
/// # Errors
/// An arrow error when the values do not cast to integers (not a timestamp).
pub fn time_values(column: &ArrayRef, is_window: bool) -> Result<(Int64Array, DataType)> {
    let time = if is_window {
        column.as_struct().column_by_name("end").cloned().expect("window structs have an end")
    } else {
        Arc::clone(column)
    };
    let values = arrow::compute::cast(&time, &DataType::Int64)?.as_primitive::<Int64Type>().clone();
    Ok((values, time.data_type().clone()))
}

/// Drops the rows of `input` whose event time is at or below `late_ms` (`W_{k-1}`, SEMANTICS
/// §2); rows without event time stay, as in Spark. Returns the kept rows and how many were dropped.
///
/// # Errors
/// An arrow error when the column is not a timestamp or a window.
pub fn drop_late_rows(input: RecordBatch, column: TimeColumn, late_ms: i64) -> Result<(RecordBatch, u64)> {
    let (times, unit) = time_values(input.column(column.index), column.is_window)?;
    let late = ms_in_unit(late_ms, &unit);
    let keep: BooleanArray = times.iter().map(|t| Some(t.is_none_or(|t| t > late))).collect();
    let kept = arrow::compute::filter_record_batch(&input, &keep)?;
    let dropped = (input.num_rows() - kept.num_rows()) as u64;
    Ok((kept, dropped))
}

/// Min, max and sum of the event times of a batch's rows, ms (Spark's `EventTimeStats`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventTimeStats {
    /// Earliest event time.
    pub min_ms: i64,
    /// Latest event time.
    pub max_ms: i64,
    /// Sum of the event times, for the average.
    pub sum_ms: i128,
    /// Rows with an event time.
    pub count: u64,
}

impl EventTimeStats {
    /// The statistics of both.
    pub fn merge(self, other: EventTimeStats) -> EventTimeStats {
        EventTimeStats {
            min_ms: self.min_ms.min(other.min_ms),
            max_ms: self.max_ms.max(other.max_ms),
            sum_ms: self.sum_ms + other.sum_ms,
            count: self.count + other.count,
        }
    }

    /// The mean event time truncated to a ms, as Spark's `avg.toLong`.
    pub fn avg_ms(&self) -> i64 {
        (self.sum_ms / i128::from(self.count.max(1))) as i64
    }
}

/// Min, max and mean of a timestamp column's non-null values, each floored to ms; `None`
/// without such values.
///
/// # Errors
/// [`SluiceError::Sql`] when the column is not a timestamp.
pub fn event_time_stats(column: &dyn Array) -> Result<Option<EventTimeStats>> {
    let nanos = unit_nanos(column.data_type()).ok_or_else(|| {
        SluiceError::sql(format!("an event-time column must be a TIMESTAMP, found {}", column.data_type()))
    })?;
    let values = arrow::compute::cast(&arrow::array::make_array(column.to_data()), &DataType::Int64)?;
    let to_ms = |v: i64| (i128::from(v) * i128::from(nanos)).div_euclid(1_000_000) as i64;
    let mut stats: Option<EventTimeStats> = None;
    for ms in values.as_primitive::<Int64Type>().iter().flatten().map(to_ms) {
        let one = EventTimeStats { min_ms: ms, max_ms: ms, sum_ms: i128::from(ms), count: 1 };
        stats = Some(stats.map_or(one, |s| s.merge(one)));
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn ceil_ms_agrees_with_a_comparison_in_the_unit() {
        use arrow::datatypes::TimeUnit::*;
        for unit in [Second, Millisecond, Microsecond, Nanosecond] {
            let ty = DataType::Timestamp(unit, None);
            for value in [-2_000_001, -1_000_000, -999_999, -1, 0, 1, 999, 1_000, 999_999, 1_000_000, 1_000_001] {
                for w in [-2_000, -1_001, -1_000, -1, 0, 1, 999, 1_000, 1_001] {
                    assert_eq!(value <= ms_in_unit(w, &ty), ceil_ms(value, &ty) <= w, "{value} {unit:?} {w}");
                }
            }
        }
    }

    fn batch(ms: &[i64]) -> RecordBatch {
        let ts = TimestampNanosecondArray::from(ms.iter().map(|m| m * 1_000_000).collect::<Vec<_>>());
        let schema = Arc::new(Schema::new(vec![Field::new("ts", ts.data_type().clone(), true)]));
        RecordBatch::try_new(schema, vec![Arc::new(ts)]).unwrap()
    }

    fn spec(delay_ms: i64) -> WatermarkSpec {
        WatermarkSpec { column: "ts".into(), delay_ms }
    }

    #[test]
    fn global_watermark_is_the_minimum_and_never_decreases() {
        let specs = BTreeMap::from([("a".to_string(), spec(10)), ("b".to_string(), spec(0))]);
        let mut t = WatermarkTracker::new(specs, MultipleWatermarkPolicy::Min);
        t.observe("a", &[batch(&[100, 50])]).unwrap();
        // b has never had a row: it holds the minimum at 0.
        assert_eq!(t.next_watermark(0), 0);
        t.observe("b", &[batch(&[70])]).unwrap();
        assert_eq!(t.next_watermark(0), 70);
        t.observe("b", &[batch(&[20])]).unwrap();
        assert_eq!(t.next_watermark(0), 70);
        assert_eq!(t.next_watermark(80), 80);
    }

    #[test]
    fn event_time_stats_are_min_max_and_truncated_mean_of_non_null_rows() {
        let ts = TimestampNanosecondArray::from(vec![Some(1_500_000), None, Some(4_000_000), Some(2_000_000)]);
        let stats = event_time_stats(&ts).unwrap().unwrap();
        // 1.5 ms floors to 1 ms, as the watermark does; the mean of 1, 4 and 2 ms truncates to 2.
        assert_eq!((stats.min_ms, stats.max_ms, stats.count, stats.avg_ms()), (1, 4, 3, 2));
        assert_eq!(event_time_stats(&TimestampNanosecondArray::from(vec![None::<i64>])).unwrap(), None);
        assert!(event_time_stats(&Int64Array::from(vec![1])).is_err(), "not a timestamp");
    }

    #[test]
    fn max_policy_follows_the_fastest_input() {
        let specs = BTreeMap::from([("a".to_string(), spec(0)), ("b".to_string(), spec(0))]);
        let mut t = WatermarkTracker::new(specs, MultipleWatermarkPolicy::Max);
        t.observe("a", &[batch(&[100])]).unwrap();
        assert_eq!(t.next_watermark(0), 100);
    }

    #[test]
    fn units_convert_exactly() {
        let ns = DataType::Timestamp(TimeUnit::Nanosecond, None);
        assert_eq!(ms_in_unit(1500, &ns), 1_500_000_000);
        assert_eq!(ms_in_unit(1500, &DataType::Timestamp(TimeUnit::Second, None)), 1);
    }
}
