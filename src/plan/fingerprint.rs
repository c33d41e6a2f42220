//! What a query's state depends on, so that a restart on a checkpoint written by another query
//! is refused instead of reading foreign state.
//!
//! Each stateful operator is described by one line: its definition as `EXPLAIN` shows it, the
//! types of the rows its state encodes (the input of an aggregation, a join or a top-N, the keys
//! of a deduplication), for an aggregation the event-time windows computed below it and, for a
//! join, a top-N or an aggregation with a `count(DISTINCT)`, the layout of its stored state. A
//! query whose lines differ from the checkpoint's would decode stored rows with another layout,
//! or merge results of another definition (a window of another size), so the restart is refused
//! (see [`crate::execution::recovery::check_stateful_operators`]). Spark refuses such changes in
//! its state schema check; changes to the stateless part of the query
//! (a filter, a projection above the stateful operators) are allowed, as in Spark.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use super::nodes::{
    StreamingAggregateNode, StreamingDedupNode, StreamingGroupStateNode, StreamingJoinNode, StreamingTopNNode,
};
use super::session_window::SESSION_ROW_WINDOW;
use super::window::{SLIDING_WINDOWS, TUMBLE_WINDOW};
use crate::operator::distinct_count::DISTINCT_COUNT_STATE_FORMAT;
use crate::operator::join::JOIN_STATE_FORMAT;
use crate::operator::top_n::TOP_N_STATE_FORMAT;

/// One line per stateful operator of `plan`, bottom-up (the order of their operator ids).
pub fn stateful_operators(plan: &LogicalPlan) -> Vec<String> {
    let mut lines = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Extension(e) = node {
            let any = e.node.as_any();
            let depends_on = if let Some(agg) = any.downcast_ref::<StreamingAggregateNode>() {
                Some(format!(
                    "input {}{}{}",
                    types(agg.input.schema()),
                    windows_below(&agg.input),
                    distinct_counts(agg)
                ))
            } else if let Some(dedup) = any.downcast_ref::<StreamingDedupNode>() {
                let schema = dedup.input.schema();
                let keys =
                    dedup.keys.iter().map(|k| k.get_type(schema).map_or_else(|e| e.to_string(), |t| t.to_string()));
                Some(format!("key types ({})", keys.collect::<Vec<_>>().join(", ")))
            } else if let Some(top_n) = any.downcast_ref::<StreamingTopNNode>() {
                Some(format!("input {}; {TOP_N_STATE_FORMAT}", types(top_n.input.schema())))
            } else if let Some(join) = any.downcast_ref::<StreamingJoinNode>() {
                Some(format!(
                    "left {}, right {}; {JOIN_STATE_FORMAT}",
                    types(join.left.schema()),
                    types(join.right.schema())
                ))
            } else if let Some(group_state) = any.downcast_ref::<StreamingGroupStateNode>() {
                Some(format!("input {}", types(group_state.input.schema())))
            } else {
                None
            };
            if let Some(depends_on) = depends_on {
                lines.push(without_field_metadata(&format!("{}; {depends_on}", node.display())));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    // `apply` visits parents first; operator ids are numbered bottom-up.
    lines.reverse();
    lines
}

/// `line` without the field metadata arrow prints inside struct types (`, metadata: {...}`). The
/// metadata marks event time and carries the watermark delay, which the state's layout does not
/// depend on: a restart with another delay is accepted, as Spark accepts it. Applied to the lines
/// a checkpoint stored too, so that checkpoints written when a window's bounds carried another
/// metadata key still match.
pub fn without_field_metadata(line: &str) -> String {
    const MARK: &str = ", metadata: {";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        // Skip to the brace closing the map, past quoted keys and values.
        let (mut depth, mut quoted, mut escaped) = (1usize, false, false);
        let mut end = rest.len();
        for (i, c) in rest[at + MARK.len()..].char_indices() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => quoted = false,
                (false, _, '"') => quoted = true,
                (false, _, '{') => depth += 1,
                (false, _, '}') => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + MARK.len() + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `; <layout>` when the aggregation keeps a `count(DISTINCT x)` value by value (see
/// [`crate::operator::distinct_count`]; a session window keeps DataFusion's lists), so that a
/// checkpoint holding the lists is refused.
fn distinct_counts(agg: &StreamingAggregateNode) -> String {
    let by_value = |e: &Expr| match e.clone().unalias() {
        Expr::AggregateFunction(f) => f.func.name() == "count" && f.params.distinct && f.params.args.len() == 1,
        _ => false,
    };
    if agg.event_time.is_some_and(|e| e.is_session) || !agg.aggr_expr.iter().any(by_value) {
        return String::new();
    }
    format!("; {DISTINCT_COUNT_STATE_FORMAT}")
}

/// `(name type, ...)` of a schema's fields.
fn types(schema: &DFSchema) -> String {
    let fields: Vec<String> = schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    format!("({})", fields.join(", "))
}

/// `; <column> := <expression>` for every event-time window a projection below the aggregation
/// computes (`window(...)` and `session_window(...)` are rewritten into such projections, so the
/// aggregation itself only sees a column named `window`).
fn windows_below(input: &LogicalPlan) -> String {
    let mut found = String::new();
    let _ = input.apply(|node| {
        if let LogicalPlan::Projection(p) = node {
            for (expr, field) in p.expr.iter().zip(p.schema.fields()) {
                let text = expr.clone().unalias().to_string();
                if [TUMBLE_WINDOW, SLIDING_WINDOWS, SESSION_ROW_WINDOW].iter().any(|f| text.contains(f)) {
                    found.push_str(&format!("; {} := {text}", field.name()));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_metadata_is_left_out_of_the_lines() {
        let stored = r#"input (k Utf8View, window Struct("start": Timestamp(ns), metadata: {"sluice.watermark.delay_ms": "5000"}, "end": Timestamp(ns), metadata: {"a": "{\"}", "b": "x"}))"#;
        assert_eq!(
            without_field_metadata(stored),
            r#"input (k Utf8View, window Struct("start": Timestamp(ns), "end": Timestamp(ns)))"#
        );
        assert_eq!(without_field_metadata("no metadata"), "no metadata");
    }
}
