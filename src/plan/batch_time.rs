//! `now()` / `current_timestamp()`, `current_date()` and `current_time()` as Spark evaluates them
//! on a stream: once per micro-batch, at the batch's timestamp from the offsets log (Spark's
//! `batchTimestampMs`), so all rows of a batch see one value and a replayed batch sees the same.
//!
//! DataFusion folds these `Stable` functions into literals when it simplifies a plan that has a
//! query start time. A streaming query is planned once, so it is optimized without a start time
//! (the calls stay, see [`crate::context`]) and each batch folds them at its own timestamp here,
//! through the functions' own `simplify` (time zone included).

use std::sync::Arc;

use chrono::DateTime;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use crate::{Result, SluiceError};

/// `plan` with every call of a `Stable` function (`now()`, `current_date()`, ...) replaced by
/// its value at `batch_timestamp_ms` (ms since the epoch).
///
/// # Errors
/// A DataFusion error when a function cannot be folded.
pub fn fold_batch_time(
    plan: &LogicalPlan,
    batch_timestamp_ms: i64,
    config: &Arc<ConfigOptions>,
) -> Result<LogicalPlan> {
    let start = DateTime::from_timestamp_millis(batch_timestamp_ms)
        .ok_or_else(|| SluiceError::sql(format!("batch timestamp {batch_timestamp_ms} ms is out of range")))?;
    let context = SimplifyContext::builder()
        .with_config_options(Arc::clone(config))
        .with_query_execution_start_time(Some(start))
        .build();
    let folded = plan.clone().transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| match &e {
                Expr::ScalarFunction(f) if f.func.signature().volatility == Volatility::Stable => {
                    match f.func.simplify(f.args.clone(), &context)? {
                        ExprSimplifyResult::Simplified(value) => Ok(Transformed::yes(value)),
                        ExprSimplifyResult::Original(_) => Ok(Transformed::no(e)),
                    }
                }
                _ => Ok(Transformed::no(e)),
            })
        })
    })?;
    Ok(folded.data)
}
