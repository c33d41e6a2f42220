//! `session_row_window(ts, gap)`: the one-row session `{start: ts, end: ts + gap}` of each row,
//! which a streaming session aggregation merges per key (Spark's `session_window`).
//!
//! The gap is a constant (`'5 minutes'`) or an expression per row (Spark's dynamic gap): a
//! duration string or a day-time interval. A row whose gap is null or not positive belongs to no
//! session (a null struct, filtered out), as Spark drops it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, IntervalUnit};
use datafusion::common::{exec_err, Result as DFResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::window::{
    event_time_field, parse_duration_ns, struct_fields, timestamp_values, ts_arg, unit_ns, window_struct_type,
};

/// Name of the per-row session function the rewrite of `session_window(ts, gap)` targets.
pub const SESSION_ROW_WINDOW: &str = "session_row_window";

/// Metadata key on a session struct's `start` child marking it as a session window (the type
/// travels through every plan node, field metadata of the column itself does not).
const SESSION_METADATA: &str = "sluice.session_window";

/// True when `field` is a session window struct made by [`SessionRowWindow`].
pub fn is_session_window(field: &Field) -> bool {
    match field.data_type() {
        DataType::Struct(children) => children.iter().any(|c| c.metadata().contains_key(SESSION_METADATA)),
        _ => false,
    }
}

/// Gaps in ns, one per row; `None` where the row has no valid gap.
fn gaps_ns(gap: &ArrayRef) -> DFResult<Vec<Option<i64>>> {
    let positive = |ns: i64| (ns > 0).then_some(ns);
    Ok(match gap.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = arrow::compute::cast(gap, &DataType::Utf8)?;
            let mut parsed = std::collections::HashMap::new();
            text.as_string::<i32>()
                .iter()
                .map(|t| {
                    let Some(t) = t else { return Ok(None) };
                    if let Some(ns) = parsed.get(t) {
                        return Ok(*ns);
                    }
                    let ns = parse_duration_ns(t).ok();
                    parsed.insert(t, ns);
                    Ok(ns)
                })
                .collect::<DFResult<_>>()?
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => gap
            .as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>()
            .iter()
            .map(|i| {
                i.filter(|i| i.months == 0)
                    .and_then(|i| positive(i64::from(i.days) * 86_400_000_000_000 + i.nanoseconds))
            })
            .collect(),
        DataType::Interval(IntervalUnit::DayTime) => gap
            .as_primitive::<arrow::datatypes::IntervalDayTimeType>()
            .iter()
            .map(|i| i.and_then(|i| positive((i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds)) * 1_000_000)))
            .collect(),
        other => return exec_err!("session_window gap must be a duration string or an INTERVAL, got {other}"),
    })
}

/// `session_row_window(ts, gap)`: see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SessionRowWindow {
    signature: Signature,
}

impl Default for SessionRowWindow {
    fn default() -> Self {
        Self { signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for SessionRowWindow {
    fn name(&self) -> &str {
        SESSION_ROW_WINDOW
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DFResult<DataType> {
        Ok(window_struct_type(&ts_arg(args)?, &Default::default()))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        let field = event_time_field(&args, false)?;
        let DataType::Struct(children) = field.data_type() else { unreachable!("windows are structs") };
        let mut children: Vec<Field> = children.iter().map(|c| c.as_ref().clone()).collect();
        let mut metadata = children[0].metadata().clone();
        metadata.insert(SESSION_METADATA.to_string(), "true".to_string());
        children[0] = children[0].clone().with_metadata(metadata);
        Ok(Arc::new(field.as_ref().clone().with_data_type(DataType::Struct(children.into()))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let ts_type = args.arg_fields[0].data_type().clone();
        let unit = unit_ns(&ts_type)?;
        let ts = timestamp_values(&args.args[0].clone().into_array(args.number_rows)?)?;
        let gaps = gaps_ns(&args.args[1].clone().into_array(args.number_rows)?)?;
        let ends: Int64Array = ts.iter().zip(&gaps).map(|(t, g)| Some(t? + g.as_ref()? / unit)).collect();
        let valid = NullBuffer::from(ends.iter().map(|e| e.is_some()).collect::<Vec<_>>());
        let starts = Int64Array::new(ts.values().clone(), Some(valid.clone()));
        let cast = |a: Int64Array| arrow::compute::cast(&(Arc::new(a) as ArrayRef), &ts_type);
        let columns = vec![cast(starts)?, cast(ends)?];
        let fields = struct_fields(args.return_field.data_type())?;
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(fields, columns, Some(valid))?)))
    }
}
