//! The logical rewrite of a streaming query: each `Aggregate` over a stream becomes a
//! [`StreamingAggregateNode`] (one over an updating aggregation, outside append mode, sums signed
//! rows: see [`super::retraction`]); everything else stays a DataFusion node and runs per batch.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Aggregate, Extension, LogicalPlan};

use super::nodes::StreamingAggregateNode;
use super::retraction;
use super::session_window::is_session_window;
use super::stream_table::StreamTable;
use super::OutputMode;
use crate::operator::aggregate::EventTimeKey;
use crate::operator::watermark::event_time_delay_ms;
use crate::Result;

/// Replaces every aggregation over a stream by a streaming aggregation (query output mode
/// `mode`), numbering the operators
/// bottom-up from `*next_id` (the numbers name their state directories, so they must be stable for
/// a given query text).
///
/// # Errors
/// A DataFusion error if the plan cannot be rewritten.
pub fn plan_aggregations(plan: LogicalPlan, mode: OutputMode, next_id: &mut usize) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up(|node| {
        let LogicalPlan::Aggregate(agg) = &node else { return Ok(Transformed::no(node)) };
        if StreamTable::sources_of(&agg.input).is_empty() {
            return Ok(Transformed::no(node));
        }
        if mode != OutputMode::Append && retraction::reads_streaming_aggregation(agg) {
            let plan = retraction::plan_retraction(agg, mode, |signed| streaming(signed, next_id))?;
            return Ok(Transformed::yes(plan));
        }
        Ok(Transformed::yes(streaming(agg, next_id)))
    })?;
    Ok(rewritten.data)
}

/// `agg` as a [`StreamingAggregateNode`] numbered `*next_id`.
fn streaming(agg: &Aggregate, next_id: &mut usize) -> LogicalPlan {
    let event_time =
        agg.schema.fields().iter().take(agg.group_expr.len()).position(|f| event_time_delay_ms(f).is_some()).map(
            |index| EventTimeKey {
                index,
                is_window: matches!(agg.schema.field(index).data_type(), arrow::datatypes::DataType::Struct(_)),
                is_session: is_session_window(agg.schema.field(index)),
            },
        );
    let streaming = StreamingAggregateNode {
        operator_id: *next_id,
        input: agg.input.as_ref().clone(),
        group_expr: agg.group_expr.clone(),
        aggr_expr: agg.aggr_expr.clone(),
        schema: Arc::clone(&agg.schema),
        event_time,
        emits_changes: false,
    };
    *next_id += 1;
    LogicalPlan::Extension(Extension { node: Arc::new(streaming) })
}
