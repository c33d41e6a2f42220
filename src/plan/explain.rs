//! `EXPLAIN` of a continuous query: the output mode and why it was chosen, the watermarks, each
//! stateful operator with its keys, the state it keeps and when that state is evicted, then the
//! incremental plan itself. The eviction rules stated are the ones the operators apply
//! (SEMANTICS §2–§5, after Spark's `StateStoreSaveExec`, `StreamingDeduplicateExec`,
//! `StreamingSymmetricHashJoinExec` and `FlatMapGroupsWithStateExec`; a top-N after Flink's Top-N).

use std::fmt::Write;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::nodes::{
    StateEviction, StreamingAggregateNode, StreamingDedupNode, StreamingGroupStateNode, StreamingJoinNode,
    StreamingTopNNode,
};
use super::OutputMode;
use crate::operator::group_state::GroupStateTimeout;
use crate::operator::watermark::{MultipleWatermarkPolicy, WatermarkSpec};

/// The `EXPLAIN` text of the incremental plan `plan` run in `mode` (chosen because of `why`),
/// over streams declaring `watermarks` (stream name, watermark) combined under `policy`.
pub(crate) fn explain(
    plan: &LogicalPlan,
    watermarks: &[(String, WatermarkSpec)],
    policy: MultipleWatermarkPolicy,
    mode: OutputMode,
    why: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Output mode: {mode} ({why})");
    if watermarks.is_empty() {
        let _ = writeln!(out, "Watermark: none (no stream read declares one; state is never evicted by event time)");
    } else {
        for (stream, w) in watermarks {
            let _ = writeln!(out, "Watermark: {stream}.{} minus {}", w.column, human_ms(w.delay_ms));
        }
        if watermarks.len() > 1 {
            let which = match policy {
                MultipleWatermarkPolicy::Min => "minimum",
                MultipleWatermarkPolicy::Max => "maximum",
            };
            let _ = writeln!(
                out,
                "  the query's watermark is the {which} of the streams' (spark.sql.streaming.multipleWatermarkPolicy = \
                 '{}'; a checkpoint keeps the policy it was created with)",
                policy.name()
            );
        }
    }
    let watermarked: Vec<&str> = watermarks.iter().map(|(_, w)| w.column.as_str()).collect();
    let mut operators = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Extension(ext) = node {
            let any = ext.node.as_any();
            if let Some(agg) = any.downcast_ref::<StreamingAggregateNode>() {
                operators.push(aggregate(agg, mode, !watermarks.is_empty()));
            } else if let Some(dedup) = any.downcast_ref::<StreamingDedupNode>() {
                operators.push(deduplicate(dedup, &watermarked));
            } else if let Some(top_n) = any.downcast_ref::<StreamingTopNNode>() {
                operators.push(rank(top_n, mode));
            } else if let Some(join) = any.downcast_ref::<StreamingJoinNode>() {
                operators.push(stream_join(join));
            } else if let Some(groups) = any.downcast_ref::<StreamingGroupStateNode>() {
                operators.push(groups_with_state(groups));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if operators.is_empty() {
        let _ = writeln!(out, "Stateful operators: none (each row is processed once, in the batch it arrives in)");
    } else {
        let _ = writeln!(out, "Stateful operators:");
        // Listed from the source up, the order rows pass through them.
        for text in operators.iter().rev() {
            out.push_str(text);
        }
    }
    let _ = writeln!(out, "Incremental plan:");
    for line in plan.display_indent().to_string().lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

fn aggregate(agg: &StreamingAggregateNode, mode: OutputMode, watermark: bool) -> String {
    let mut out = format!("  [{}] StreamingAggregate  keys: {}\n", agg.operator_id, list(&agg.group_expr));
    let _ = writeln!(out, "      aggregates: {}", list(&agg.aggr_expr));
    let time = agg.event_time.map(|key| {
        let column = agg.group_expr.get(key.index).map_or_else(String::new, ToString::to_string);
        let kind = if key.is_session {
            "session window: sessions of a key merge when their gaps overlap"
        } else if key.is_window {
            "event-time window"
        } else {
            "event-time column"
        };
        (column, kind, if key.is_window { "its window's end" } else { "its event time" })
    });
    let event_time = match &time {
        Some((column, kind, _)) => format!("{column} ({kind})"),
        None => "none among the keys".to_string(),
    };
    let _ = writeln!(out, "      event time: {event_time}");
    let _ = writeln!(out, "      state: one row per group (its keys and each aggregate's partial state)");
    let evicted = match (&time, watermark, mode) {
        (_, _, OutputMode::Complete) => "never: complete mode re-emits every group each batch".to_string(),
        (Some((_, _, end)), true, _) => format!("when the watermark passes {end}"),
        (Some(_), false, _) => "never: no watermark on the input (declare WATERMARK FOR ... to bound the state)".into(),
        (None, _, _) => "never: group by an event-time window with a watermark to bound the state".into(),
    };
    let _ = writeln!(out, "      evicted: {evicted}");
    let emits = match (mode, &time) {
        (OutputMode::Append, Some((_, _, end))) => format!("each group once, when the watermark passes {end}"),
        (OutputMode::Append, None) => "each group once, when it is final".to_string(),
        (OutputMode::Update, _) => "the groups each batch changed, with their new values".to_string(),
        (OutputMode::Complete, _) => "every group, every batch".to_string(),
    };
    let _ = writeln!(out, "      emits: {emits}");
    out
}

fn deduplicate(dedup: &StreamingDedupNode, watermarked: &[&str]) -> String {
    let mut out = format!("  [{}] StreamingDeduplicate  keys: {}\n", dedup.operator_id, list(&dedup.keys));
    let _ = writeln!(out, "      state: one row per key seen");
    let time_key = dedup.keys.iter().find_map(|k| match k {
        Expr::Column(c) if watermarked.contains(&c.name.as_str()) => Some(c.name.clone()),
        _ => None,
    });
    let evicted = if dedup.within_watermark {
        "when the watermark passes the key's first event time plus the watermark delay".to_string()
    } else if let Some(column) = time_key {
        format!("when the watermark passes the key's {column}")
    } else {
        "never: no event-time column with a watermark among the keys".to_string()
    };
    let _ = writeln!(out, "      evicted: {evicted}");
    let _ = writeln!(out, "      emits: a key's first row, in the batch it arrives in");
    out
}

fn rank(top_n: &StreamingTopNNode, mode: OutputMode) -> String {
    let mut out = format!("  [{}] StreamingTopN  keys: {}\n", top_n.operator_id, list(&top_n.keys));
    let order = if top_n.order_by.is_empty() { "arrival".to_string() } else { list(&top_n.order_by) };
    let _ = writeln!(out, "      order: {order} (equal orders rank in arrival order)");
    let _ = writeln!(out, "      state: the first {} rows of each key seen", top_n.limit);
    let _ = writeln!(out, "      evicted: never: a key's ranking changes whenever a better row arrives");
    let emits = match mode {
        OutputMode::Complete => "every key's ranked rows, every batch",
        _ => "the ranks each batch changed, with their new rows",
    };
    let _ = writeln!(out, "      emits: {emits}");
    out
}

fn stream_join(join: &StreamingJoinNode) -> String {
    let on = join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(", ");
    let mut out = format!("  [{}] StreamingJoin ({})  keys: {on}\n", join.operator_id, join.join_type);
    if let Some(filter) = &join.filter {
        let _ = writeln!(out, "      condition: {filter}");
    }
    let _ = writeln!(out, "      state: the rows of both sides, indexed by the keys");
    for (side, plan, eviction) in [("left", &join.left, join.eviction[0]), ("right", &join.right, join.eviction[1])] {
        let _ = writeln!(out, "      {side} rows evicted: {}", side_eviction(plan, eviction));
    }
    out
}

fn side_eviction(side: &LogicalPlan, eviction: Option<StateEviction>) -> String {
    let Some(e) = eviction else {
        return "never: no watermark bounds this side (add a time-range condition or join on an event-time key)".into();
    };
    let field = side.schema().fields().get(e.column).map_or_else(|| format!("#{}", e.column), |f| f.name().clone());
    let column = if e.is_window { format!("{field}.end") } else { field };
    match e.offset_ms {
        0 => format!("when {column} <= the watermark"),
        ms if ms < 0 => format!("when {column} <= the watermark minus {}", human_ms(-ms)),
        ms => format!("when {column} <= the watermark plus {}", human_ms(ms)),
    }
}

fn groups_with_state(groups: &StreamingGroupStateNode) -> String {
    let mut out = format!("  [{}] FlatMapGroupsWithState  keys: {}\n", groups.operator_id, list(&groups.keys));
    let _ = writeln!(out, "      state: one user state per key");
    let evicted = match groups.timeout {
        GroupStateTimeout::NoTimeout => "when the function removes it",
        GroupStateTimeout::ProcessingTime => "when the function removes it, or after its processing-time timeout fires",
        GroupStateTimeout::EventTime => "when the function removes it, or after the watermark passes its timeout",
    };
    let _ = writeln!(out, "      evicted: {evicted}");
    out
}

fn list(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `ms` in the largest unit that divides it: `10 minutes`, `1500 ms`.
fn human_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] =
        [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1_000, "second"), (1, "millisecond")];
    let (size, unit) = UNITS.iter().copied().find(|(size, _)| ms != 0 && ms % size == 0).unwrap_or((1, "millisecond"));
    let n = ms / size;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::human_ms;

    #[test]
    fn delays_read_in_their_largest_whole_unit() {
        assert_eq!(human_ms(600_000), "10 minutes");
        assert_eq!(human_ms(3_600_000), "1 hour");
        assert_eq!(human_ms(1_500), "1500 milliseconds");
        assert_eq!(human_ms(0), "0 milliseconds");
    }
}
