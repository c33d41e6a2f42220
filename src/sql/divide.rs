//! Spark's `/`: the quotient of two non-decimal numbers is a DOUBLE (`7 / 2` is `3.5`), where
//! DataFusion divides integers as integers (`3`). Planned with `SET sluice.sql.spark_functions =
//! 'true'` by [`SparkDivisionPlanner`].
//!
//! Spark (`Divide` in `arithmetic.scala`, ANSI mode, the default since Spark 4.0) casts integer and
//! float operands to DOUBLE, returns NULL when either side is NULL and fails with
//! `DIVIDE_BY_ZERO` when the divisor is 0 and the dividend is not NULL; decimals keep decimal
//! division (DataFusion's, left as it is).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{exec_err, DFSchema, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// Plans `a / b` over two non-decimal numbers (or NULL) as [`SparkDivide`].
#[derive(Debug, Default)]
pub struct SparkDivisionPlanner;

impl ExprPlanner for SparkDivisionPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::Divide {
            return Ok(PlannerResult::Original(expr));
        }
        let types = (expr.left.get_type(schema), expr.right.get_type(schema));
        let (Ok(left), Ok(right)) = types else { return Ok(PlannerResult::Original(expr)) };
        let operand = |t: &DataType| t.is_integer() || t.is_floating() || t.is_null();
        if !operand(&left) || !operand(&right) || (left.is_null() && right.is_null()) {
            return Ok(PlannerResult::Original(expr));
        }
        let divide = ScalarUDF::new_from_impl(SparkDivide::new());
        Ok(PlannerResult::Planned(divide.call(vec![expr.left, expr.right])))
    }
}

/// `a / b` as DOUBLE with Spark's division by zero error. Its column name is `a / b`, as the
/// operator's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkDivide {
    signature: Signature,
}

impl SparkDivide {
    /// The function; its arguments are coerced to DOUBLE.
    pub fn new() -> Self {
        Self { signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable) }
    }
}

impl Default for SparkDivide {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SparkDivide {
    fn name(&self) -> &str {
        "spark_divide"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} / {}", left.schema_name(), right.schema_name())),
            _ => exec_err!("/ takes two operands"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (dividend, divisor) = (arrays[0].as_primitive::<Float64Type>(), arrays[1].as_primitive::<Float64Type>());
        let by_zero =
            (0..divisor.len()).any(|i| divisor.is_valid(i) && dividend.is_valid(i) && divisor.value(i) == 0.0);
        if by_zero {
            return exec_err!(
                "[DIVIDE_BY_ZERO] Division by zero (Spark's `/` in ANSI mode); divide by nullif(divisor, 0) to get NULL instead"
            );
        }
        let quotient = arrow::compute::kernels::numeric::div(dividend, divisor)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&quotient, 0)?));
        }
        Ok(ColumnarValue::Array(quotient))
    }
}
