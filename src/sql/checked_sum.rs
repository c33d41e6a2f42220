//! `sum` that fails on overflow, as Spark's `sum` does in ANSI mode (Spark 4's default).
//!
//! DataFusion's sum accumulators add with wrapping: `sum` over `9223372036854775807` and `1` was
//! `-9223372036854775808`, and a `DECIMAL(38, 0)` sum past 38 digits gave a value that does not
//! fit its type, both silently. This is DataFusion's `sum` (same signature, return types, state
//! and planning) whose BIGINT, unsigned BIGINT and DECIMAL accumulators check each addition, the
//! grouped one through DataFusion's own `PrimitiveGroupsAccumulator`; floats, durations, intervals
//! and `sum(DISTINCT ...)` stay DataFusion's. `try_sum` still gives NULL on overflow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Decimal128Type, DecimalType, FieldRef, Int64Type, UInt64Type};
use datafusion::common::{exec_datafusion_err, Result as DFResult, ScalarValue};
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator, Operator,
    ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::prim_op::PrimitiveGroupsAccumulator;

/// The checked `sum`, registered in place of DataFusion's.
pub fn checked_sum_udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(CheckedSum::default())
}

#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct CheckedSum {
    inner: Sum,
}

/// The sum types that can overflow silently: BIGINT, unsigned BIGINT, and a 128-bit DECIMAL
/// (whose precision is checked too).
enum Checked {
    Int64,
    UInt64,
    Decimal128(u8),
}

impl Checked {
    fn of(data_type: &DataType) -> Option<Self> {
        match data_type {
            DataType::Int64 => Some(Self::Int64),
            DataType::UInt64 => Some(Self::UInt64),
            DataType::Decimal128(precision, _) => Some(Self::Decimal128(*precision)),
            _ => None,
        }
    }
}

/// `a + b` when it fits a DECIMAL of `precision` digits.
fn decimal_add(a: i128, b: i128, precision: u8) -> Option<i128> {
    a.checked_add(b).filter(|v| Decimal128Type::is_valid_decimal_precision(*v, precision))
}

fn overflow(data_type: &DataType) -> datafusion::error::DataFusionError {
    exec_datafusion_err!(
        "sum overflows its type {data_type} (Spark's ANSI mode fails here too); use try_sum(...) to get NULL instead, \
         or sum a wider type such as DECIMAL(38, 0)"
    )
}

impl AggregateUDFImpl for CheckedSum {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> DFResult<Box<dyn Accumulator>> {
        let data_type = args.return_field.data_type().clone();
        if args.is_distinct {
            return self.inner.accumulator(args);
        }
        Ok(match Checked::of(&data_type) {
            Some(Checked::Int64) => {
                Box::new(SumAccumulator::<Int64Type>::new(data_type, 0, |a, b, _| a.checked_add(b)))
            }
            Some(Checked::UInt64) => {
                Box::new(SumAccumulator::<UInt64Type>::new(data_type, 0, |a, b, _| a.checked_add(b)))
            }
            Some(Checked::Decimal128(p)) => Box::new(SumAccumulator::<Decimal128Type>::new(data_type, p, decimal_add)),
            None => return self.inner.accumulator(args),
        })
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DFResult<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }
    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }
    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> DFResult<Box<dyn GroupsAccumulator>> {
        let data_type = args.return_field.data_type().clone();
        Ok(match Checked::of(&data_type) {
            Some(Checked::Int64) => checked_groups::<Int64Type>(data_type, i64::checked_add),
            Some(Checked::UInt64) => checked_groups::<UInt64Type>(data_type, u64::checked_add),
            Some(Checked::Decimal128(p)) => {
                checked_groups::<Decimal128Type>(data_type, move |a, b| decimal_add(a, b, p))
            }
            None => return self.inner.create_groups_accumulator(args),
        })
    }
    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> DFResult<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }
    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.reverse_expr()
    }
    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }
    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.value_from_stats(statistics_args)
    }
    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> DFResult<Option<Expr>> {
        self.inner.simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }
}

/// DataFusion's grouped primitive accumulator with a checked addition: an overflow is recorded
/// by the addition (which cannot fail) and reported after the batch.
fn checked_groups<T: ArrowPrimitiveType + Send>(
    data_type: DataType,
    add: impl Fn(T::Native, T::Native) -> Option<T::Native> + Send + Sync + 'static,
) -> Box<dyn GroupsAccumulator> {
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&overflowed);
    let inner =
        PrimitiveGroupsAccumulator::<T, _>::new(&data_type, move |sum: &mut T::Native, value| match add(*sum, value) {
            Some(total) => *sum = total,
            None => flag.store(true, Ordering::Relaxed),
        });
    Box::new(CheckedGroups { inner: Box::new(inner), overflowed, data_type })
}

struct CheckedGroups {
    inner: Box<dyn GroupsAccumulator>,
    overflowed: Arc<AtomicBool>,
    data_type: DataType,
}

impl CheckedGroups {
    fn check(&self) -> DFResult<()> {
        if self.overflowed.load(Ordering::Relaxed) {
            return Err(overflow(&self.data_type));
        }
        Ok(())
    }
}

impl GroupsAccumulator for CheckedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DFResult<()> {
        self.inner.update_batch(values, group_indices, opt_filter, total_num_groups)?;
        self.check()
    }
    fn evaluate(&mut self, emit_to: EmitTo) -> DFResult<ArrayRef> {
        self.inner.evaluate(emit_to)
    }
    fn state(&mut self, emit_to: EmitTo) -> DFResult<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }
    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> DFResult<()> {
        self.inner.merge_batch(values, group_indices, total_num_groups)?;
        self.check()
    }
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> DFResult<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
}

/// The ungrouped sum (a global aggregation), checked value by value: `add(sum, value,
/// precision)` is `None` on overflow.
struct SumAccumulator<T: ArrowPrimitiveType> {
    sum: Option<T::Native>,
    data_type: DataType,
    precision: u8,
    add: fn(T::Native, T::Native, u8) -> Option<T::Native>,
}

impl<T: ArrowPrimitiveType> std::fmt::Debug for SumAccumulator<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SumAccumulator({})", self.data_type)
    }
}

impl<T: ArrowPrimitiveType> SumAccumulator<T> {
    fn new(data_type: DataType, precision: u8, add: fn(T::Native, T::Native, u8) -> Option<T::Native>) -> Self {
        Self { sum: None, data_type, precision, add }
    }
}

impl<T: ArrowPrimitiveType> Accumulator for SumAccumulator<T> {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DFResult<()> {
        for value in values[0].as_primitive::<T>().iter().flatten() {
            let total = match self.sum {
                Some(sum) => (self.add)(sum, value, self.precision).ok_or_else(|| overflow(&self.data_type))?,
                None => value,
            };
            self.sum = Some(total);
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DFResult<()> {
        self.update_batch(states)
    }
    fn state(&mut self) -> DFResult<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }
    fn evaluate(&mut self) -> DFResult<ScalarValue> {
        ScalarValue::new_primitive::<T>(self.sum, &self.data_type)
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn sums_that_overflow_are_errors() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1]));
        let mut groups = checked_groups::<Int64Type>(DataType::Int64, i64::checked_add);
        let err = groups.update_batch(&[values.clone()], &[0, 0], None, 1).unwrap_err().to_string();
        assert!(err.contains("sum overflows its type Int64"), "{err}");
        let mut row = SumAccumulator::<Int64Type>::new(DataType::Int64, 0, |a, b, _| a.checked_add(b));
        assert!(row.update_batch(&[values]).is_err());
        let fits: ArrayRef = Arc::new(Int64Array::from(vec![Some(i64::MAX - 1), None, Some(1)]));
        let mut groups = checked_groups::<Int64Type>(DataType::Int64, i64::checked_add);
        groups.update_batch(&[fits], &[0, 0, 1], None, 2).unwrap();
        let sums = groups.evaluate(EmitTo::All).unwrap();
        assert_eq!(sums.as_primitive::<Int64Type>().values(), &[i64::MAX - 1, 1]);
        // 38 nines plus one no longer fits DECIMAL(38, 0).
        assert_eq!(decimal_add(10i128.pow(38) - 1, 1, 38), None);
        assert_eq!(decimal_add(10i128.pow(37), 1, 38), Some(10i128.pow(37) + 1));
    }
}
