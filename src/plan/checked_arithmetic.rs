//! Integer arithmetic that overflows is an error, as in Spark's ANSI mode (Spark 4's default),
//! never a wrapped value: DataFusion's `+`, `-` and `*` wrap unless their physical expression is
//! marked `fail_on_overflow`, which its planner leaves unset. This pass sets it in the query's
//! projections and filters (where a select list's and a `WHERE` clause's arithmetic runs), so
//! `v + 1` with `v = 9223372036854775807` fails the batch with an arithmetic overflow error.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::ExecutionPlan;

use crate::Result;

/// `plan` with every `+`, `-` and `*` of its projections and filters checked for overflow.
///
/// # Errors
/// A DataFusion error when a rewritten node cannot be rebuilt.
pub fn checked_arithmetic(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let rewritten = plan.transform_up(|node| {
        if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let mut changed = false;
            let exprs = projection
                .expr()
                .iter()
                .map(|e| {
                    let checked = checked(&e.expr)?;
                    changed |= checked.transformed;
                    Ok(ProjectionExpr { expr: checked.data, alias: e.alias.clone() })
                })
                .collect::<datafusion::common::Result<Vec<_>>>()?;
            if !changed {
                return Ok(Transformed::no(node));
            }
            let schema = projection.schema();
            let rebuilt = ProjectionExec::try_new_with_schema_metadata(exprs, Arc::clone(projection.input()), &schema)?;
            return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
        }
        if let Some(filter) = node.downcast_ref::<FilterExec>() {
            let predicate = checked(filter.predicate())?;
            if !predicate.transformed {
                return Ok(Transformed::no(node));
            }
            let rebuilt = FilterExecBuilder::from(filter).with_predicate(predicate.data).build()?;
            return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
        }
        Ok(Transformed::no(node))
    })?;
    Ok(rewritten.data)
}

/// `expr` with each `+`, `-` and `*` failing on overflow.
fn checked(expr: &Arc<dyn PhysicalExpr>) -> datafusion::common::Result<Transformed<Arc<dyn PhysicalExpr>>> {
    Arc::clone(expr).transform_up(|e| {
        let Some(binary) = e.downcast_ref::<BinaryExpr>() else { return Ok(Transformed::no(e)) };
        if !matches!(binary.op(), Operator::Plus | Operator::Minus | Operator::Multiply) {
            return Ok(Transformed::no(e));
        }
        let checked = BinaryExpr::new(Arc::clone(binary.left()), *binary.op(), Arc::clone(binary.right()))
            .with_fail_on_overflow(true);
        Ok(Transformed::yes(Arc::new(checked) as Arc<dyn PhysicalExpr>))
    })
}
