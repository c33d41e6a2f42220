//! Event-time window assignment as DataFusion scalar functions.
//!
//! `window(ts, size)` and `window(ts, size, slide)` in a streaming `GROUP BY` are rewritten (see
//! [`crate::sql::rewrite`]) into a column named `window` computed by these functions, so that
//! `window.start` / `window.end` resolve as in Spark. Boundaries are aligned to the epoch plus an
//! optional start offset, exactly as Spark's `TimeWindow` computes them:
//! `start = ts - ((ts - offset) mod slide)`, a row belongs to every window `[start, start + size)`
//! that contains it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, PrimitiveArray, StructArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result as DFResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::operator::watermark::{window_bound_metadata, window_end_event_time};

/// Name of the tumbling-window function the rewrite targets: `tumble_window(ts, size[, offset])`.
pub const TUMBLE_WINDOW: &str = "tumble_window";
/// Name of the sliding-window function: `sliding_windows(ts, size, slide[, offset])`, a list of
/// windows that `unnest` expands to one row per window.
pub const SLIDING_WINDOWS: &str = "sliding_windows";

/// Parses a Spark interval string such as `'10 seconds'`, `'1 hour'` or `'90 minutes'` into
/// nanoseconds, through arrow's interval parser.
///
/// # Errors
/// A plan error when the text is not an interval, is not positive, or uses months or years (a
/// window needs a fixed duration, as in Spark).
pub fn parse_duration_ns(text: &str) -> DFResult<i64> {
    positive(signed_duration_ns(text)?, &format!("'{text}'"))
}

/// [`parse_duration_ns`] without the sign check: a window's start offset may be negative.
fn signed_duration_ns(text: &str) -> DFResult<i64> {
    let interval = arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text).map_err(|e| {
        datafusion::error::DataFusionError::Plan(format!(
            "invalid interval '{text}': {e}; write e.g. '10 seconds' or '1 hour'"
        ))
    })?;
    if interval.months != 0 {
        return plan_err!("interval '{text}' uses months or years; windows need a fixed duration");
    }
    i64::from(interval.days)
        .checked_mul(86_400_000_000_000)
        .and_then(|d| d.checked_add(interval.nanoseconds))
        .ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("interval '{text}' is too long")))
}

fn positive(ns: i64, written: &str) -> DFResult<i64> {
    if ns <= 0 {
        return plan_err!("interval {written} must be positive");
    }
    Ok(ns)
}

/// A constant window size or slide in nanoseconds: a duration string (`'10 seconds'`) or a
/// day-time interval (`INTERVAL '10' SECOND`, `INTERVAL 1 HOUR`), as Spark accepts both.
///
/// # Errors
/// A plan error for anything else, a month or year interval, or a duration that is not positive.
pub fn scalar_duration_ns(value: &ScalarValue) -> DFResult<i64> {
    positive(scalar_signed_duration_ns(value)?, &value.to_string())
}

/// [`scalar_duration_ns`] without the sign check (a window's start offset).
fn scalar_signed_duration_ns(value: &ScalarValue) -> DFResult<i64> {
    let ns = match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            return signed_duration_ns(s)
        }
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            i64::from(i.days).checked_mul(86_400_000_000_000).and_then(|d| d.checked_add(i.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            (i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds)).checked_mul(1_000_000)
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!("interval {value} uses months or years; windows need a fixed duration");
        }
        other => {
            return plan_err!(
                "window sizes must be constant durations such as '10 seconds' or INTERVAL '10' SECOND, got {other}"
            )
        }
    };
    ns.ok_or_else(|| datafusion::error::DataFusionError::Plan(format!("interval {value} is too long")))
}

/// The `window{start, end}` struct type for an event-time column of type `ts` whose field
/// metadata is `meta`. Both children keep its watermark delay (as
/// [`crate::operator::watermark::WINDOW_DELAY_METADATA`]), so
/// the type itself says the window is an event-time key wherever the plan moves it.
pub fn window_struct_type(ts: &DataType, meta: &HashMap<String, String>) -> DataType {
    let meta = window_bound_metadata(meta);
    let child = |name: &str| Field::new(name, ts.clone(), true).with_metadata(meta.clone());
    DataType::Struct(Fields::from(vec![child("start"), child("end")]))
}

pub(crate) fn struct_fields(data_type: &DataType) -> DFResult<Fields> {
    match data_type {
        DataType::Struct(fields) => Ok(fields.clone()),
        DataType::List(item) => struct_fields(item.data_type()),
        other => exec_err!("window functions planned with return type {other}"),
    }
}

pub(crate) fn unit_ns(ts: &DataType) -> DFResult<i64> {
    match ts {
        DataType::Timestamp(TimeUnit::Second, _) => Ok(1_000_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Ok(1_000_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(1_000),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(1),
        other => plan_err!("window() needs a TIMESTAMP event-time column, got {other}"),
    }
}

/// Window geometry in the event-time column's own unit.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    size: i64,
    slide: i64,
    offset: i64,
}

impl Geometry {
    fn from_args(args: &[ColumnarValue], ts: &DataType, sliding: bool) -> DFResult<Self> {
        let scalars: Vec<Option<&ScalarValue>> = args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(value) => Some(value),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        Self::from_scalars(&scalars, ts, sliding)
    }

    /// The geometry of a window call whose arguments after the event time are `scalars` (`None`
    /// for an argument that is not a constant).
    fn from_scalars(scalars: &[Option<&ScalarValue>], ts: &DataType, sliding: bool) -> DFResult<Self> {
        let unit = unit_ns(ts)?;
        let text = |i: usize, parse: fn(&ScalarValue) -> DFResult<i64>| -> DFResult<Option<i64>> {
            match scalars.get(i) {
                None => Ok(None),
                Some(Some(value)) => Ok(Some(parse(value)? / unit)),
                Some(None) => exec_err!("window sizes must be constants such as '10 seconds' or INTERVAL '10' SECOND"),
            }
        };
        let size = text(1, scalar_duration_ns)?.expect("signature guarantees a size");
        let (slide, offset_at) = if sliding { (text(2, scalar_duration_ns)?.unwrap_or(size), 3) } else { (size, 2) };
        let offset = text(offset_at, scalar_signed_duration_ns)?.unwrap_or(0);
        if slide > size {
            return exec_err!("window slide must not exceed the window size");
        }
        if slide == 0 {
            return exec_err!("window size and slide must be at least one unit of the event-time column ({ts})");
        }
        // Spark's TimeWindow: "The absolute value of start time must be less than the slideDuration".
        if offset.checked_abs().is_none_or(|abs| abs >= slide) {
            return exec_err!(
                "the absolute value of a window's start offset ({offset}) must be less than its slide ({slide}), in units \
                 of the event-time column ({ts})"
            );
        }
        if size / slide > MAX_WINDOWS_PER_ROW {
            return exec_err!(
                "a window of {size} sliding by {slide} (units of {ts}) puts each row in {} windows, more than {MAX_WINDOWS_PER_ROW}; use a larger slide",
                size / slide
            );
        }
        Ok(Geometry { size, slide, offset })
    }

    /// Start of the last window (latest start) containing `t`, and that window's end; `None`
    /// when a bound does not fit an `i64` (an event time near the limits of its type).
    fn last_window(&self, t: i64) -> Option<(i64, i64)> {
        let start = t.checked_sub(t.checked_sub(self.offset)?.rem_euclid(self.slide))?;
        Some((start, start.checked_add(self.size)?))
    }

    /// Start of the first (earliest) window containing `t`, given the start of the last one.
    fn first_start(&self, t: i64, last: i64) -> Option<i64> {
        let mut first = last;
        while first.checked_sub(self.slide)?.checked_add(self.size)? > t {
            first -= self.slide;
        }
        Some(first)
    }
}

/// The error for an event time whose window's bounds do not fit its type.
fn bounds_out_of_range(t: i64, ts: &DataType) -> datafusion::error::DataFusionError {
    let at = with_ts_type(Int64Array::from(vec![t]), ts)
        .and_then(|a| Ok(arrow::util::display::array_value_to_string(&a, 0)?))
        .unwrap_or_else(|_| t.to_string());
    datafusion::error::DataFusionError::Execution(format!(
        "the event time {at} is too close to the limits of its type ({ts}) for its window's bounds to fit; filter \
         such rows out (e.g. WHERE ts BETWEEN ...) or declare the column with a coarser unit"
    ))
}

/// [`event_time_field`] of a `tumble_window` or `sliding_windows` call, whose sizes, when constants
/// (as a window's must be), are checked here: a query with an impossible window is refused when
/// it is planned rather than at its first row.
fn window_field(args: &ReturnFieldArgs, sliding: bool) -> DFResult<FieldRef> {
    let field = event_time_field(args, sliding)?;
    if args.scalar_arguments.iter().skip(1).all(Option::is_some) {
        let ts = ts_arg(&[args.arg_fields[0].data_type().clone()])?;
        Geometry::from_scalars(args.scalar_arguments, &ts, sliding).map_err(|e| match e {
            datafusion::error::DataFusionError::Execution(message) => datafusion::error::DataFusionError::Plan(message),
            other => other,
        })?;
    }
    Ok(field)
}

/// The most windows one row may belong to (`size / slide`): beyond it a sliding window expands
/// each row into more rows than a micro-batch can hold, so the query is refused.
const MAX_WINDOWS_PER_ROW: i64 = 100_000;

pub(crate) fn timestamp_values(array: &ArrayRef) -> DFResult<PrimitiveArray<Int64Type>> {
    Ok(arrow::compute::cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

fn with_ts_type(values: Int64Array, ts: &DataType) -> DFResult<ArrayRef> {
    Ok(arrow::compute::cast(&(Arc::new(values) as ArrayRef), ts)?)
}

pub(crate) fn ts_arg(args: &[DataType]) -> DFResult<DataType> {
    match args.first() {
        Some(t @ DataType::Timestamp(_, _)) => Ok(t.clone()),
        Some(other) => plan_err!("window() needs a TIMESTAMP event-time column, got {other}"),
        None => plan_err!("window() needs an event-time column"),
    }
}

/// The return field keeps the event-time column's metadata (its watermark delay), so the planner
/// can tell that a `window` group key is an event-time key, as Spark tracks it on the attribute.
pub(crate) fn event_time_field(args: &ReturnFieldArgs, list: bool) -> DFResult<FieldRef> {
    let ts = ts_arg(&args.arg_fields.iter().map(|f| f.data_type().clone()).collect::<Vec<_>>())?;
    let meta = args.arg_fields[0].metadata().clone();
    let window = window_struct_type(&ts, &meta);
    let data_type = if list { DataType::List(Arc::new(Field::new("item", window, true))) } else { window };
    Ok(Arc::new(Field::new("window", data_type, true).with_metadata(meta)))
}

/// `tumble_window(ts, size[, offset])`: the one window `[start, start + size)` holding `ts`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TumbleWindow {
    signature: Signature,
}

impl ScalarUDFImpl for TumbleWindow {
    fn name(&self) -> &str {
        TUMBLE_WINDOW
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        Ok(window_struct_type(&ts_arg(args)?, &HashMap::new()))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        window_field(&args, false)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let ts_type = args.arg_fields[0].data_type().clone();
        let geometry = Geometry::from_args(&args.args, &ts_type, false)?;
        let ts = args.args[0].clone().into_array(args.number_rows)?;
        let values = timestamp_values(&ts)?;
        if let Some(t) = values.iter().flatten().find(|t| geometry.last_window(*t).is_none()) {
            return Err(bounds_out_of_range(t, &ts_type));
        }
        // Every valid row's window fits (checked above); null rows' slots hold anything.
        let starts: Int64Array = values.unary(|t| geometry.last_window(t).map_or(0, |w| w.0));
        let ends: Int64Array = starts.unary(|s| s.saturating_add(geometry.size));
        let nulls = values.nulls().cloned();
        let columns = vec![with_ts_type(starts, &ts_type)?, with_ts_type(ends, &ts_type)?];
        let fields = struct_fields(args.return_field.data_type())?;
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, columns, nulls)?)))
    }
}

/// `sliding_windows(ts, size, slide[, offset])`: every window of the given size and slide that
/// holds `ts`, earliest first, as a list (Spark's `Expand` of a sliding `window`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SlidingWindows {
    signature: Signature,
}

impl ScalarUDFImpl for SlidingWindows {
    fn name(&self) -> &str {
        SLIDING_WINDOWS
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        let item = Field::new("item", window_struct_type(&ts_arg(args)?, &HashMap::new()), true);
        Ok(DataType::List(Arc::new(item)))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        window_field(&args, true)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let ts_type = args.arg_fields[0].data_type().clone();
        let g = Geometry::from_args(&args.args, &ts_type, true)?;
        let ts = args.args[0].clone().into_array(args.number_rows)?;
        let values = timestamp_values(&ts)?;
        let mut starts = Vec::with_capacity(values.len());
        let mut offsets = Vec::with_capacity(values.len() + 1);
        offsets.push(0i32);
        for t in values.iter() {
            if let Some(t) = t {
                let (last, first) = g
                    .last_window(t)
                    .and_then(|(last, _)| Some((last, g.first_start(t, last)?)))
                    .ok_or_else(|| bounds_out_of_range(t, &ts_type))?;
                starts.extend((first..=last).step_by(g.slide as usize));
            }
            let end = i32::try_from(starts.len()).map_err(|_| {
                datafusion::error::DataFusionError::Execution(format!(
                    "a micro-batch puts rows in more than {} sliding windows; use a larger slide or fewer rows per batch",
                    i32::MAX
                ))
            })?;
            offsets.push(end);
        }
        let starts = Int64Array::from(starts);
        let ends: Int64Array = starts.unary(|s| s + g.size);
        let windows = StructArray::try_new(
            struct_fields(args.return_field.data_type())?,
            vec![with_ts_type(starts, &ts_type)?, with_ts_type(ends, &ts_type)?],
            None,
        )?;
        let item = match args.return_field.data_type() {
            DataType::List(item) => item.clone(),
            other => return exec_err!("sliding_windows planned with return type {other}"),
        };
        let nulls = values.nulls().cloned().map(|n| NullBuffer::new(n.inner().clone()));
        let list = ListArray::try_new(item, OffsetBuffer::new(offsets.into()), Arc::new(windows), nulls)?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `window_time(window)`: the event time of a window, `end - 1 µs` (at least one unit of the
/// column), keeping the watermark, so a window aggregation can group by the windows of an
/// aggregation below it (Spark's `window_time`, for chained window aggregations).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct WindowTime {
    signature: Signature,
}

fn window_end_field(arg: &Field) -> DFResult<FieldRef> {
    match arg.data_type() {
        DataType::Struct(children) => match children.find("end") {
            Some((_, end)) => Ok(Arc::clone(end)),
            None => plan_err!("window_time() needs a window struct with an end, got {}", arg.data_type()),
        },
        other => plan_err!("window_time() needs a window column, got {other}"),
    }
}

impl ScalarUDFImpl for WindowTime {
    fn name(&self) -> &str {
        "window_time"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        match args.first() {
            Some(DataType::Struct(children)) if children.len() == 2 => Ok(children[1].data_type().clone()),
            other => plan_err!("window_time() needs a window column, got {other:?}"),
        }
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        let end = window_end_field(&args.arg_fields[0])?;
        let meta = window_end_event_time(end.metadata());
        Ok(Arc::new(Field::new("window_time", end.data_type().clone(), true).with_metadata(meta)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let windows = args.args[0].clone().into_array(args.number_rows)?;
        let end = windows.as_struct().column_by_name("end").cloned().expect("checked when planned");
        let ts_type = end.data_type().clone();
        let micro = (1_000 / unit_ns(&ts_type)?).max(1);
        let values = timestamp_values(&end)?;
        let shifted: Int64Array = values.unary(|e| e - micro);
        let shifted = Int64Array::new(shifted.values().clone(), windows.nulls().cloned());
        Ok(ColumnarValue::Array(with_ts_type(shifted, &ts_type)?))
    }
}

/// The window functions to register with a DataFusion session.
pub fn window_udfs() -> Vec<ScalarUDF> {
    let sig = |n: std::ops::RangeInclusive<usize>| {
        Signature::one_of(n.map(datafusion::logical_expr::TypeSignature::Any).collect(), Volatility::Immutable)
    };
    vec![
        ScalarUDF::new_from_impl(TumbleWindow { signature: sig(2..=3) }),
        ScalarUDF::new_from_impl(SlidingWindows { signature: sig(3..=4) }),
        ScalarUDF::new_from_impl(super::session_window::SessionRowWindow::default()),
        ScalarUDF::new_from_impl(WindowTime { signature: sig(1..=1) }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_spark() {
        assert_eq!(parse_duration_ns("10 seconds").unwrap(), 10_000_000_000);
        assert_eq!(parse_duration_ns("1 hour").unwrap(), 3_600_000_000_000);
        assert!(parse_duration_ns("1 month").is_err());
        assert!(parse_duration_ns("banana").is_err());
    }

    #[test]
    fn intervals_are_durations() {
        use arrow::datatypes::IntervalMonthDayNano;
        let seconds = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 10_000_000_000)));
        assert_eq!(scalar_duration_ns(&seconds).unwrap(), 10_000_000_000);
        let day = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 1, 0)));
        assert_eq!(scalar_duration_ns(&day).unwrap(), 86_400_000_000_000);
        let month = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(1, 0, 0)));
        assert!(scalar_duration_ns(&month).unwrap_err().to_string().contains("months"));
        let zero = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 0)));
        assert!(scalar_duration_ns(&zero).is_err());
        assert!(scalar_duration_ns(&ScalarValue::Int64(Some(10))).is_err());
    }

    #[test]
    fn window_start_is_aligned_to_the_epoch_and_offset() {
        let g = Geometry { size: 10, slide: 10, offset: 0 };
        assert_eq!(g.last_window(15), Some((10, 20)));
        assert_eq!(g.last_window(10), Some((10, 20)));
        assert_eq!(g.last_window(-1), Some((-10, 0)));
        let g = Geometry { size: 10, slide: 5, offset: 2 };
        assert_eq!(g.last_window(8), Some((7, 17)));
        assert_eq!(g.first_start(8, 7), Some(2));
    }

    /// Event times near the ends of the type: no bound wraps, and the search for a row's first
    /// sliding window ends (it once looped for ever at the type's lower end).
    #[test]
    fn windows_whose_bounds_do_not_fit_are_none() {
        let g = Geometry { size: 3_600, slide: 600, offset: 0 };
        assert_eq!(g.last_window(i64::MAX - 10), None);
        let near_min = i64::MIN + 1_000;
        let (last, _) = g.last_window(near_min).unwrap();
        assert_eq!(g.first_start(near_min, last), None);
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let array = ColumnarValue::Array(Arc::new(arrow::array::TimestampNanosecondArray::from(vec![near_min])));
        let size = ColumnarValue::Scalar(ScalarValue::Utf8(Some("1 hour".into())));
        let slide = ColumnarValue::Scalar(ScalarValue::Utf8(Some("10 minutes".into())));
        let field = Arc::new(Field::new("ts", ts.clone(), true));
        let return_field = Arc::new(Field::new(
            "w",
            DataType::List(Arc::new(Field::new("item", window_struct_type(&ts, &HashMap::new()), true))),
            true,
        ));
        let args = ScalarFunctionArgs {
            args: vec![array, size, slide],
            arg_fields: vec![
                field.clone(),
                Arc::new(Field::new("s", DataType::Utf8, false)),
                Arc::new(Field::new("l", DataType::Utf8, false)),
            ],
            number_rows: 1,
            return_field,
            config_options: Arc::new(Default::default()),
        };
        let err =
            SlidingWindows { signature: Signature::any(3, Volatility::Immutable) }.invoke_with_args(args).unwrap_err();
        assert!(err.to_string().contains("1677-09-21"), "{err}");
    }
}
