//! Spark's implicit casts for datafusion-spark functions declared with exact argument types.
//!
//! datafusion-spark declares `date_add(DATE, INT)`, `date_sub`, `add_months`, `next_day(DATE,
//! STRING)`, `space(INT)` and `factorial(INT)` with exact types, so the canonical Spark call
//! `date_add(d, 1)` (a BIGINT literal in DataFusion) or `date_add('2024-01-01', 1)` would not
//! plan. Spark casts such arguments implicitly (`ImplicitCastInputTypes`): an integer to INT, a
//! date string or a timestamp to DATE. This wrapper does the same and hands the call to the
//! datafusion-spark function; an integer outside INT's range is a cast error, never a wrap.

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result as DFResult;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The datafusion-spark functions that get Spark's casts, and whether their first argument is a
/// date.
const COERCED: [(&str, bool); 6] = [
    ("date_add", true),
    ("date_sub", true),
    ("add_months", true),
    ("next_day", true),
    ("space", false),
    ("factorial", false),
];

/// `udf` with Spark's implicit casts of its arguments when it is one of the functions above,
/// otherwise `udf` itself.
pub fn with_spark_coercion(udf: ScalarUDF) -> ScalarUDF {
    match COERCED.iter().find(|(name, _)| *name == udf.name()) {
        Some((_, date_first)) => ScalarUDF::new_from_impl(SparkCoercion {
            signature: Signature::user_defined(Volatility::Immutable),
            date_first: *date_first,
            inner: udf,
        }),
        None => udf,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SparkCoercion {
    inner: ScalarUDF,
    signature: Signature,
    date_first: bool,
}

impl ScalarUDFImpl for SparkCoercion {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DFResult<Vec<DataType>> {
        Ok(arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                t if t.is_integer() => DataType::Int32,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Timestamp(..)
                    if i == 0 && self.date_first =>
                {
                    DataType::Date32
                }
                DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
                other => other.clone(),
            })
            .collect())
    }
    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}
