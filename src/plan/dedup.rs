//! Recognises the SQL form of deduplication and plans it as a [`StreamingDedupNode`]:
//!
//! ```sql
//! SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM s) WHERE rn = 1
//! ```
//!
//! On a stream the window function cannot run as written (it would need every future row), but
//! "the first row per key" is exactly Spark's `dropDuplicates(k)`, which is incremental.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{BinaryExpr, Expr, Extension, LogicalPlan, Operator};

use super::nodes::StreamingDedupNode;
use super::stream_table::StreamTable;
use crate::Result;

/// Replaces every `Window` over a stream that computes only `row_number()` and is filtered to
/// row number 1 by a streaming deduplication, numbering operators from `*next_id`.
///
/// # Errors
/// A DataFusion error if the plan cannot be rewritten.
pub fn plan_deduplication(plan: LogicalPlan, next_id: &mut usize) -> Result<LogicalPlan> {
    Ok(plan
        .transform_down(|node| {
            let LogicalPlan::Filter(filter) = &node else { return Ok(Transformed::no(node)) };
            let Some(column) = first_row_column(&filter.predicate) else { return Ok(Transformed::no(node)) };
            let rewritten = replace_row_number_window(filter.input.as_ref().clone(), &column, next_id)?;
            if !rewritten.transformed {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(node.with_new_exprs(node.expressions(), vec![rewritten.data])?))
        })?
        .data)
}

/// `c = 1` (either way round) or `c <= 1`: the column that must be the row number.
fn first_row_column(predicate: &Expr) -> Option<String> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return None };
    let is_one = |e: &Expr| match e {
        Expr::Literal(v, _) => matches!(v.cast_to(&arrow::datatypes::DataType::Int64), Ok(ScalarValue::Int64(Some(1)))),
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Literal(v, _) if v.to_string() == "1"),
        _ => false,
    };
    let column = |e: &Expr| match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        _ => None,
    };
    match op {
        Operator::Eq if is_one(right) => column(left),
        Operator::Eq if is_one(left) => column(right),
        Operator::LtEq if is_one(right) => column(left),
        _ => None,
    }
}

/// Follows `column` down through projections and aliases to a `row_number()` window over a
/// stream and replaces that window.
fn replace_row_number_window(
    plan: LogicalPlan,
    column: &str,
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
            let input = replace_row_number_window(projection.input.as_ref().clone(), &source, next_id)?;
            if !input.transformed {
                return Ok(Transformed::no(plan));
            }
            Ok(Transformed::yes(plan.with_new_exprs(plan.expressions(), vec![input.data])?))
        }
        LogicalPlan::SubqueryAlias(ref alias) => {
            let input = replace_row_number_window(alias.input.as_ref().clone(), column, next_id)?;
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
            let node = StreamingDedupNode {
                operator_id: *next_id,
                input: window.input.as_ref().clone(),
                keys: params.partition_by,
                order_by: params.order_by,
                schema: Arc::clone(&window.schema),
                within_watermark: false,
            };
            *next_id += 1;
            Ok(Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(node) })))
        }
        other => Ok(Transformed::no(other)),
    }
}
