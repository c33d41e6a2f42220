//! Recognises the SQL form of a per-key `ROW_NUMBER()` filtered to its first rows, which cannot
//! run on a stream as written (the window function would need every future row), and plans it as
//! one of two incremental operators:
//!
//! ```sql
//! SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM s) WHERE rn = 1
//! ```
//!
//! - the first row per key, ordered by nothing or by the event time ascending, is Spark's
//!   `dropDuplicates(k)` ([`StreamingDedupNode`]): a row is final once emitted;
//! - any other order, or more than one row per key (`rn <= N`, `rn < N`, `rn = N`), is a top-N
//!   per key ([`StreamingTopNNode`], Flink's Top-N), whose rows change rank as better rows arrive.
//!
//! The filter stays above the new node (it passes every row of a top-N of `N`, or only rank `N`
//! for `rn = N`).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{BinaryExpr, Expr, Extension, LogicalPlan, Operator, SortExpr, UserDefinedLogicalNode};

use super::nodes::{StreamingDedupNode, StreamingTopNNode};
use super::stream_table::StreamTable;
use crate::operator::watermark::event_time_delay_ms;
use crate::Result;

/// Replaces every `Window` over a stream that computes only `row_number()` and is filtered to its
/// first rows by a streaming deduplication or top-N, numbering operators from `*next_id`.
///
/// # Errors
/// A DataFusion error if the plan cannot be rewritten.
pub fn plan_row_number_filters(plan: LogicalPlan, next_id: &mut usize) -> Result<LogicalPlan> {
    Ok(plan
        .transform_down(|node| {
            let LogicalPlan::Filter(filter) = &node else { return Ok(Transformed::no(node)) };
            let Some((column, limit)) = first_rows(&filter.predicate) else { return Ok(Transformed::no(node)) };
            let rewritten = replace_row_number_window(filter.input.as_ref().clone(), &column, limit, next_id)?;
            if !rewritten.transformed {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(node.with_new_exprs(node.expressions(), vec![rewritten.data])?))
        })?
        .data)
}

/// `c = n` (either way round), `c <= n` or `c < n + 1` (or `n >= c`, `n + 1 > c`), `n >= 1`: the
/// column that must be the row number, and `n`, the most rows per key the filter can pass.
fn first_rows(predicate: &Expr) -> Option<(String, usize)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return None };
    let number = |e: &Expr| -> Option<i64> {
        let value = match e {
            Expr::Literal(v, _) => v.clone(),
            Expr::Cast(c) => match c.expr.as_ref() {
                Expr::Literal(v, _) => v.clone(),
                _ => return None,
            },
            _ => return None,
        };
        match value.cast_to(&arrow::datatypes::DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => Some(n),
            _ => None,
        }
    };
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        _ => None,
    };
    let (column, last) = match op {
        Operator::Eq | Operator::LtEq if number(right).is_some() => (column(left)?, number(right)?),
        Operator::Lt => (column(left)?, number(right)?.checked_sub(1)?),
        Operator::Eq | Operator::GtEq => (column(right)?, number(left)?),
        Operator::Gt => (column(right)?, number(left)?.checked_sub(1)?),
        _ => return None,
    };
    Some((column, usize::try_from(last).ok().filter(|n| *n >= 1)?))
}

/// Whether `order_by` keeps a key's first row as Spark's `dropDuplicates` does: no order, or the
/// event-time column ascending (the watermarked column, or any timestamp column of an input
/// without a watermark).
fn is_deduplication(order_by: &[SortExpr], input: &LogicalPlan) -> bool {
    match order_by {
        [] => true,
        [first] => {
            first.asc
                && matches!(&first.expr, Expr::Column(c)
                    if input.schema().field_from_column(c).is_ok_and(|f| event_time_delay_ms(f).is_some()
                        || matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..))))
        }
        _ => false,
    }
}

/// Follows `column` down through projections and aliases to a `row_number()` window over a
/// stream and replaces that window.
fn replace_row_number_window(
    plan: LogicalPlan,
    column: &str,
    limit: usize,
    next_id: &mut usize,
) -> datafusion::error::Result<Transformed<LogicalPlan>> {
    match plan {
        LogicalPlan::Projection(ref projection) => {
            let source = projection.expr.iter().zip(projection.schema.fields()).find_map(|(e, f)| {
                (f.name() == column).then(|| match e.clone().unalias() {
                    Expr::Column(c) => Some(c.name),
                    _ => None,
                })
            });
            let Some(Some(source)) = source else { return Ok(Transformed::no(plan)) };
            let input = replace_row_number_window(projection.input.as_ref().clone(), &source, limit, next_id)?;
            if !input.transformed {
                return Ok(Transformed::no(plan));
            }
            Ok(Transformed::yes(plan.with_new_exprs(plan.expressions(), vec![input.data])?))
        }
        LogicalPlan::SubqueryAlias(ref alias) => {
            let input = replace_row_number_window(alias.input.as_ref().clone(), column, limit, next_id)?;
            if !input.transformed {
                return Ok(Transformed::no(plan));
            }
            Ok(Transformed::yes(plan.with_new_exprs(vec![], vec![input.data])?))
        }
        LogicalPlan::Window(ref window) => {
            let [expr] = window.window_expr.as_slice() else { return Ok(Transformed::no(plan)) };
            let output = window.schema.fields().last().map(|f| f.name().as_str());
            let Expr::WindowFunction(function) = expr.clone().unalias() else { return Ok(Transformed::no(plan)) };
            let WindowFunction { fun: WindowFunctionDefinition::WindowUDF(udwf), params } = *function else {
                return Ok(Transformed::no(plan));
            };
            let streaming = !StreamTable::sources_of(&window.input).is_empty();
            if udwf.name() != "row_number" || output != Some(column) || params.partition_by.is_empty() || !streaming {
                return Ok(Transformed::no(plan));
            }
            let input = window.input.as_ref().clone();
            let schema = Arc::clone(&window.schema);
            let (keys, order_by, operator_id) = (params.partition_by, params.order_by, *next_id);
            let node: Arc<dyn UserDefinedLogicalNode> = if limit == 1 && is_deduplication(&order_by, &input) {
                Arc::new(StreamingDedupNode { operator_id, input, keys, order_by, schema, within_watermark: false })
            } else {
                Arc::new(StreamingTopNNode { operator_id, input, keys, order_by, limit, schema })
            };
            *next_id += 1;
            Ok(Transformed::yes(LogicalPlan::Extension(Extension { node })))
        }
        other => Ok(Transformed::no(other)),
    }
}
