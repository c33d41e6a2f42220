//! Plans joins of two streams as [`StreamingJoinNode`]s, and the watermark each stateful
//! operator runs under when joins sit below it.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Extension, LogicalPlan};

use super::nodes::StreamingJoinNode;
use super::stream_table::StreamTable;
use super::time_range::state_evictions;
use crate::Result;

fn is_streaming(plan: &LogicalPlan) -> bool {
    !StreamTable::sources_of(plan).is_empty()
}

/// Replaces every join whose two inputs are streams by a streaming join, numbering operators
/// bottom-up from `*next_id`. Joins with a bounded side stay DataFusion joins: each batch joins
/// the bounded table afresh, with no state.
///
/// # Errors
/// A DataFusion error if the plan cannot be rewritten.
pub fn plan_stream_joins(plan: LogicalPlan, next_id: &mut usize) -> Result<LogicalPlan> {
    Ok(plan
        .transform_up(|node| {
            let LogicalPlan::Join(join) = &node else { return Ok(Transformed::no(node)) };
            if !is_streaming(&join.left) || !is_streaming(&join.right) {
                return Ok(Transformed::no(node));
            }
            let eviction = state_evictions(join.left.schema(), join.right.schema(), &join.on, join.filter.as_ref());
            let streaming = StreamingJoinNode {
                operator_id: *next_id,
                left: join.left.as_ref().clone(),
                right: join.right.as_ref().clone(),
                on: join.on.clone(),
                filter: join.filter.clone(),
                join_type: join.join_type,
                eviction,
                schema: Arc::clone(&join.schema),
            };
            *next_id += 1;
            Ok(Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(streaming) })))
        })?
        .data)
}

/// The watermark of `plan`'s output relative to the query's, ms: each stream-stream join below
/// shifts it by its output watermark, and a node with several streaming inputs takes the lowest
/// (Spark 3.5+ `WatermarkPropagator`). Stateful operators are fed their input's watermark.
pub fn watermark_offset_ms(plan: &LogicalPlan) -> i64 {
    let inputs = plan.inputs().into_iter().filter(|p| is_streaming(p)).map(watermark_offset_ms).min().unwrap_or(0);
    match plan {
        LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<StreamingJoinNode>() {
            Some(join) => inputs + join.output_watermark_offset_ms(),
            None => inputs,
        },
        _ => inputs,
    }
}
