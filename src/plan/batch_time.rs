//! `now()` / `current_timestamp()`, `current_date()` and `current_time()` as Spark evaluates them
//! on a stream: once per micro-batch, at the batch's timestamp from the offsets log (Spark's
//! `batchTimestampMs`), so all rows of a batch see one value and a replayed batch sees the same.
//!
//! DataFusion folds these `Stable` functions into literals when it simplifies a plan that has a
//! query start time. A streaming query is planned once, so it is optimized without a start time
//! (the calls stay, see [`crate::context`]) and [`with_batch_clock`] makes each call read the
//! query's [`BatchClock`], which the micro-batch loop sets before it runs a batch. The value is
//! still computed by the function's own `simplify` (time zone included).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use chrono::DateTime;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::Result;

/// The timestamp of the micro-batch a query runs, in ms since the epoch; clones share it.
#[derive(Debug, Clone, Default)]
pub struct BatchClock(Arc<AtomicI64>);

impl BatchClock {
    /// Sets the timestamp (ms since the epoch) the next batch's `now()` calls return.
    pub fn set(&self, batch_timestamp_ms: i64) {
        self.0.store(batch_timestamp_ms, Ordering::SeqCst);
    }

    fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl PartialEq for BatchClock {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BatchClock {}

impl Hash for BatchClock {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// `plan` with every call of a `Stable` function without arguments (`now()`, `current_date()`,
/// `current_time()`) evaluated at the time `clock` holds when a batch runs.
///
/// # Errors
/// A DataFusion error from rewriting the plan.
pub fn with_batch_clock(plan: &LogicalPlan, clock: &BatchClock) -> Result<LogicalPlan> {
    let rewritten = plan.clone().transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| match e {
                Expr::ScalarFunction(f)
                    if f.func.signature().volatility == Volatility::Stable
                        && f.args.is_empty()
                        && !f.func.inner().is::<AtBatchTime>() =>
                {
                    let at = AtBatchTime { inner: Arc::clone(&f.func), clock: clock.clone() };
                    let func = Arc::new(ScalarUDF::new_from_impl(at));
                    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction { func, args: f.args })))
                }
                e => Ok(Transformed::no(e)),
            })
        })
    })?;
    Ok(rewritten.data)
}

/// A `Stable` function evaluated at the batch's timestamp; named, typed and displayed as the
/// function it wraps.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AtBatchTime {
    inner: Arc<ScalarUDF>,
    clock: BatchClock,
}

impl ScalarUDFImpl for AtBatchTime {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> DFResult<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let ms = self.clock.get();
        let start = DateTime::from_timestamp_millis(ms).ok_or_else(|| {
            DataFusionError::Execution(format!("batch timestamp {ms} ms is out of range for {}()", self.name()))
        })?;
        let context = SimplifyContext::builder()
            .with_config_options(args.config_options)
            .with_query_execution_start_time(Some(start))
            .build();
        match self.inner.simplify(Vec::new(), &context)? {
            ExprSimplifyResult::Simplified(Expr::Literal(value, _)) => Ok(ColumnarValue::Scalar(value)),
            _ => Err(DataFusionError::Execution(format!("{}() has no value at the batch time", self.name()))),
        }
    }
}
