//! Refuses, before a query starts, what the output mode cannot run — Spark's
//! `UnsupportedOperationChecker` is the reference list. Each refusal names the operator and the fix.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::NullEquality;
use datafusion::logical_expr::{Aggregate, Expr, JoinType, LogicalPlan};

use super::nodes::{StreamingDedupNode, StreamingGroupStateNode, StreamingJoinNode, StreamingTopNNode};
use super::retraction;
use super::session_window::is_session_window;
use super::stream_table::StreamTable;
use super::OutputMode;
use crate::operator::watermark::event_time_delay_ms;
use crate::{Result, SluiceError};

fn is_streaming(plan: &LogicalPlan) -> bool {
    !StreamTable::sources_of(plan).is_empty()
}

/// True when `agg` groups by a column that carries a watermark (a watermarked timestamp or a
/// window over one).
pub fn has_event_time_key(agg: &Aggregate) -> bool {
    agg.schema.fields().iter().take(agg.group_expr.len()).any(|f| event_time_delay_ms(f).is_some())
}

/// `table.column` for every watermarked column of the streams `plan` reads.
fn event_time_columns(plan: &LogicalPlan) -> Vec<String> {
    StreamTable::sources_of(plan)
        .iter()
        .flat_map(|t| {
            t.schema()
                .fields()
                .iter()
                .filter(|f| event_time_delay_ms(f).is_some())
                .map(|f| format!("{}.{}", t.name(), f.name()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Refuses subquery expressions (`IN (SELECT ...)`, `EXISTS (...)`, scalar subqueries) that read a
/// stream, as Spark does. Runs on the plan before optimization, which would decorrelate them into
/// joins whose refusals would not name the subquery.
///
/// # Errors
/// [`SluiceError::Unsupported`] naming the subquery form and the join to write instead.
pub fn check_subqueries(plan: &LogicalPlan) -> Result<()> {
    let mut error = None;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                error = error.take().or_else(|| subquery_refusal(e));
                Ok(if error.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
            })?;
        }
        Ok(if error.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    error.map_or(Ok(()), Err)
}

fn subquery_refusal(expr: &Expr) -> Option<SluiceError> {
    let (form, subquery, fix) = match expr {
        Expr::InSubquery(s) if s.negated => (
            "NOT IN (SELECT ...)",
            &s.subquery,
            "an anti-join of two streams has no streaming form; keep the excluded keys in a bounded table (CREATE EXTERNAL TABLE) and use NOT IN over it",
        ),
        Expr::InSubquery(s) => (
            "IN (SELECT ...)",
            &s.subquery,
            "rewrite as a join: FROM a LEFT SEMI JOIN b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR, with a WATERMARK on both streams",
        ),
        Expr::Exists(e) if e.negated => (
            "NOT EXISTS (SELECT ...)",
            &e.subquery,
            "an anti-join of two streams has no streaming form; keep the excluded rows in a bounded table (CREATE EXTERNAL TABLE) and use NOT EXISTS over it",
        ),
        Expr::Exists(e) => (
            "EXISTS (SELECT ...)",
            &e.subquery,
            "rewrite as a join: FROM a LEFT SEMI JOIN b ON <the subquery's correlation condition> AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' HOUR, with a WATERMARK on both streams",
        ),
        Expr::ScalarSubquery(s) => (
            "scalar subquery (SELECT ...)",
            s,
            "rewrite as a join with the stream's aggregation, e.g. JOIN (SELECT window, k, avg(v) AS a FROM b GROUP BY window(ts, '1 hour'), k) AS s ON ..., or compute it in a query of its own",
        ),
        _ => return None,
    };
    let streams: Vec<String> =
        StreamTable::sources_of(&subquery.subquery).iter().map(|t| format!("'{}'", t.name())).collect();
    (!streams.is_empty()).then(|| {
        SluiceError::unsupported(
            format!("{form} over the stream {}", streams.join(", ")),
            "subqueries over streams are not supported (as in Spark): the subquery would read the stream as a bounded table",
            fix,
        )
    })
}

/// Refuses the set operations Spark refuses on streams: `UNION` of a stream and a bounded table
/// (the bounded rows would be re-read by every micro-batch), `INTERSECT` with a stream, and
/// `EXCEPT` with a stream on the right. Runs on the plan before optimization, where DataFusion's
/// `INTERSECT` / `EXCEPT` are still recognisable: a semi / anti join on every column with nulls
/// equal (SQL's own joins never plan nulls equal).
///
/// # Errors
/// [`SluiceError::Unsupported`] naming the set operation and what to write instead.
pub fn check_set_operations(plan: &LogicalPlan) -> Result<()> {
    let mut error = None;
    plan.apply(|node| {
        error = set_operation_refusal(node);
        Ok(if error.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    error.map_or(Ok(()), Err)
}

fn set_operation_refusal(node: &LogicalPlan) -> Option<SluiceError> {
    match node {
        LogicalPlan::Union(union) => {
            let streams = union.inputs.iter().filter(|i| is_streaming(i)).count();
            (streams > 0 && streams < union.inputs.len()).then(|| {
                SluiceError::unsupported(
                    "UNION of a stream and a bounded table",
                    "the bounded table's rows would be read again by every micro-batch (Spark refuses it too: 'Union \
                     between streaming and batch DataFrames/Datasets is not supported')",
                    "union streams only; to add fixed rows once, put them in a file the stream's source reads",
                )
            })
        }
        LogicalPlan::Join(join)
            if join.null_equality == NullEquality::NullEqualsNull
                && join.on.len() == join.left.schema().fields().len()
                && matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti) =>
        {
            let (left, right) = (is_streaming(&join.left), is_streaming(&join.right));
            match join.join_type {
                JoinType::LeftSemi if left || right => Some(SluiceError::unsupported(
                    "INTERSECT with a stream",
                    "an intersection must see both inputs whole (Spark refuses it too: 'Intersect of streaming \
                     DataFrames/Datasets is not supported')",
                    "join the stream to the other input on every column (a stream-stream join needs a time range)",
                )),
                JoinType::LeftAnti if right => Some(SluiceError::unsupported(
                    "EXCEPT with a stream on the right",
                    "a row of the left input could be removed by any future stream row (Spark refuses it too: 'Except \
                     on a streaming DataFrame/Dataset on the right is not supported')",
                    "put the stream on the left of EXCEPT, or filter the stream against a bounded table",
                )),
                _ => None,
            }
        }
        _ => None,
    }
}

fn contains_aggregate(plan: &LogicalPlan) -> bool {
    plan.exists(|n| Ok(matches!(n, LogicalPlan::Aggregate(_)))).unwrap_or(false)
}

fn contains_top_n(plan: &LogicalPlan) -> bool {
    plan.exists(|n| Ok(matches!(n, LogicalPlan::Extension(e) if e.node.as_any().is::<StreamingTopNNode>())))
        .unwrap_or(false)
}

/// Checks an optimized streaming plan against `mode`.
///
/// # Errors
/// [`SluiceError::Unsupported`] for the first unsupported operator found, bottom-up.
pub fn check(plan: &LogicalPlan, mode: OutputMode) -> Result<()> {
    let mut seen = Seen { aggregates: 0, retracted: Vec::new(), joins_aggregated: joins_aggregated(plan) };
    let mut error: Option<SluiceError> = None;
    plan.apply(|node| {
        if let Some(e) = check_node(node, mode, &mut seen) {
            error = Some(e);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if let Some(e) = error {
        return Err(e);
    }
    let group_state_or_top_n = plan.exists(|n| {
        Ok(matches!(n, LogicalPlan::Extension(e)
            if e.node.as_any().is::<StreamingGroupStateNode>() || e.node.as_any().is::<StreamingTopNNode>()))
    })?;
    if mode == OutputMode::Complete && seen.aggregates == 0 && !group_state_or_top_n {
        return Err(SluiceError::unsupported(
            "output_mode 'complete'",
            "complete mode re-emits the whole result table, which needs a streaming aggregation to keep it bounded",
            "add a GROUP BY, or use output_mode 'append'",
        ));
    }
    Ok(())
}

/// What [`check`] has met on its way down the plan.
struct Seen {
    /// Aggregations met, but for the ones an aggregation above retracts (see `retracted`).
    aggregates: usize,
    /// The aggregations (by address) whose updates an aggregation above retracts, outside append
    /// mode (see [`super::retraction`]).
    retracted: Vec<*const Aggregate>,
    /// The stream-stream joins (by address of their node) whose rows an aggregation above
    /// consumes, with no aggregation below them.
    joins_aggregated: Vec<*const ()>,
}

/// The stream-stream joins of `plan` under an aggregation and over none, by address of their
/// node: their rows are final whatever the output mode, which is the aggregation's.
fn joins_aggregated(plan: &LogicalPlan) -> Vec<*const ()> {
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            let _ = agg.input.apply(|below| {
                if let LogicalPlan::Extension(e) = below {
                    if e.node.as_any().is::<StreamingJoinNode>() && !below.inputs().into_iter().any(contains_aggregate)
                    {
                        found.push(Arc::as_ptr(&e.node).cast::<()>());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn check_node(node: &LogicalPlan, mode: OutputMode, seen: &mut Seen) -> Option<SluiceError> {
    if !is_streaming(node) {
        return None;
    }
    let mut subquery_over_stream = false;
    node.apply_subqueries(|sub| {
        subquery_over_stream |= is_streaming(sub);
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    if subquery_over_stream {
        return Some(SluiceError::unsupported(
            "subquery over a stream",
            "a subquery expression would read the stream as a bounded table",
            "rewrite it as a join",
        ));
    }
    let stateful = match node {
        LogicalPlan::Aggregate(_) => Some("an aggregation".to_string()),
        LogicalPlan::Extension(e) => Some(e.node.name().to_string()),
        _ => None,
    };
    if let Some(stateful) = stateful.filter(|_| node.inputs().into_iter().any(contains_top_n)) {
        return Some(SluiceError::unsupported(
            format!("{stateful} after a ROW_NUMBER() top-N"),
            "a top-N's rows are updates (a rank's new row replaces the one emitted before), which a stateful operator above \
             would count as new rows",
            "write the top-N's rows to a sink in update or complete mode, and run other stateful operators on the stream's rows",
        ));
    }
    match node {
        LogicalPlan::Aggregate(agg) => {
            if mode != OutputMode::Append {
                if let Some(inner) = retraction::updating_input(agg) {
                    if let Some(refusal) = retraction::refusal(agg, mode) {
                        return Some(refusal);
                    }
                    seen.retracted.push(inner);
                }
            }
            if !seen.retracted.iter().any(|r| std::ptr::eq(*r, agg)) {
                seen.aggregates += 1;
            }
            if seen.aggregates > 1 && mode != OutputMode::Append {
                return Some(SluiceError::unsupported(
                    format!("several streaming aggregations in {mode} mode"),
                    "an aggregation over another one needs final input rows, which only append mode gives (as in Spark 3.5+)",
                    "use output_mode 'append' with event-time windows in both, e.g. GROUP BY window(window_time(w), '1 hour') over the first's window w",
                ));
            }
            if agg.group_expr.iter().any(|e| matches!(e, datafusion::logical_expr::Expr::GroupingSet(_))) {
                return Some(SluiceError::unsupported(
                    "GROUPING SETS / ROLLUP / CUBE on a stream",
                    "grouping sets are not incremental",
                    "group by plain columns",
                ));
            }
            if mode == OutputMode::Update
                && agg.schema.fields().iter().take(agg.group_expr.len()).any(|f| is_session_window(f))
            {
                return Some(SluiceError::unsupported(
                    "session window in update mode",
                    "a row can merge sessions already emitted, which update mode cannot retract (Spark refuses it too)",
                    "use output_mode 'append' (a session is emitted once the watermark passes its end) or 'complete'",
                ));
            }
            if mode == OutputMode::Append && !has_event_time_key(agg) {
                let event_time = event_time_columns(node);
                if !event_time.is_empty() {
                    let first = event_time[0].rsplit('.').next().unwrap_or_default().to_string();
                    return Some(SluiceError::unsupported(
                        "aggregation (GROUP BY or SELECT DISTINCT) in append mode without the event-time column among its keys",
                        format!(
                            "append mode emits a group once the watermark passes its event time, so the event-time column ({}) or a window on it must be among the grouping keys; the source's watermark says nothing about a group without it",
                            event_time.join(", ")
                        ),
                        format!(
                            "add {first} or window({first}, ...) to the GROUP BY (for SELECT DISTINCT, select {first} too), or use output_mode 'update' or 'complete'"
                        ),
                    ));
                }
                return Some(SluiceError::unsupported(
                    "aggregation in append mode without a watermark",
                    "append mode emits a group only once it is final, which needs a watermark on the event-time column it groups by",
                    "declare WATERMARK FOR <ts> AS <ts> - INTERVAL ... on the source and GROUP BY window(<ts>, ...) or <ts>, or use output_mode 'update' or 'complete'",
                ));
            }
            None
        }
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            if mode == OutputMode::Complete && contains_aggregate(node) {
                return None;
            }
            let what = if matches!(node, LogicalPlan::Sort(_)) { "ORDER BY" } else { "LIMIT" };
            Some(SluiceError::unsupported(
                format!("{what} on a stream"),
                "sorting or limiting an unbounded table is only defined on an aggregation in complete mode",
                "aggregate and use output_mode 'complete', or drop the clause",
            ))
        }
        LogicalPlan::Window(_) => Some(SluiceError::unsupported(
            "window function (OVER ...) on a stream",
            "non-time-based windows are not supported on streams (as in Spark)",
            "use GROUP BY window(ts, size) for event-time windows",
        )),
        LogicalPlan::Join(join) => {
            let (left, right) = (is_streaming(&join.left), is_streaming(&join.right));
            let stream_padded = match join.join_type {
                JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark => right,
                JoinType::Right | JoinType::RightAnti | JoinType::RightSemi | JoinType::RightMark => left,
                JoinType::Full => true,
                JoinType::Inner => false,
            };
            stream_padded.then(|| {
                SluiceError::unsupported(
                    format!("{} join between a stream and a bounded table", join.join_type),
                    "the bounded side's rows would need to see every future stream row",
                    "put the stream on the preserved side (stream LEFT JOIN table) or use an inner join",
                )
            })
        }
        LogicalPlan::Extension(e) if e.node.as_any().is::<StreamingGroupStateNode>() => {
            if mode == OutputMode::Complete {
                return Some(SluiceError::unsupported(
                    "flat_map_groups_with_state in complete mode",
                    "the function's rows are not a result table that can be re-emitted whole (Spark refuses it too)",
                    "use output_mode 'append' or 'update'",
                ));
            }
            node.inputs().into_iter().any(contains_aggregate).then(|| {
                SluiceError::unsupported(
                    "flat_map_groups_with_state after an aggregation",
                    "the aggregation's rows are not final when the function sees them (Spark refuses it too)",
                    "apply flat_map_groups_with_state to the stream's rows and aggregate in the function",
                )
            })
        }
        LogicalPlan::Extension(e) if e.node.as_any().is::<StreamingDedupNode>() => {
            if node.inputs().into_iter().any(contains_aggregate) {
                return Some(SluiceError::unsupported(
                    "deduplication after an aggregation",
                    "an aggregation's rows are already unique per group (Spark refuses dropDuplicates after aggregation)",
                    "deduplicate the stream before aggregating it",
                ));
            }
            None
        }
        LogicalPlan::Extension(e) if e.node.as_any().is::<StreamingTopNNode>() => {
            if node.inputs().into_iter().any(contains_aggregate) {
                return Some(SluiceError::unsupported(
                    "ROW_NUMBER() top-N after an aggregation",
                    "the aggregation's rows change from batch to batch, and a top-N over them would need to retract the rows they displaced",
                    "rank the stream's rows before aggregating, or use output_mode 'complete' with ORDER BY ... LIMIT on the aggregation",
                ));
            }
            (mode == OutputMode::Append).then(|| {
                SluiceError::unsupported(
                    "ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...) <= N (a top-N per key) in append mode",
                    "a row's rank changes when a better row of its key arrives, so no ranked row is final; only the first row per key \
                     in event time (ORDER BY the event-time column ascending, rn = 1) is, and runs as Spark's dropDuplicates",
                    "use output_mode 'update' (each batch emits the ranks it changed) or 'complete' (every key's ranked rows)",
                )
            })
        }
        LogicalPlan::Extension(e) => e.node.as_any().downcast_ref::<StreamingJoinNode>().and_then(|join| {
            // An aggregation's input rows are final, whatever its output mode (a departure from
            // Spark, which runs joins of two streams in append mode only, as Flink does not).
            let aggregated = seen.joins_aggregated.contains(&Arc::as_ptr(&e.node).cast::<()>());
            check_stream_join(join, if aggregated { OutputMode::Append } else { mode })
        }),
        _ => None,
    }
}

/// Spark's rules for joins of two streams: append mode only; an outer (or semi) join must be able
/// to evict its preserved side, or it could never emit that side's unmatched rows.
fn check_stream_join(join: &StreamingJoinNode, mode: OutputMode) -> Option<SluiceError> {
    if mode != OutputMode::Append {
        return Some(SluiceError::unsupported(
            format!("stream-stream join in {mode} mode"),
            "a joined pair is final when emitted; joins of two streams run in append mode only (as in Spark)",
            "use output_mode 'append'",
        ));
    }
    if join.on.is_empty() {
        return Some(SluiceError::unsupported(
            format!("{} join between two streams without an equality condition", join.join_type),
            "both sides are buffered in state and matched through a hash of the join keys; a cross join, or a condition of only \
             ranges, <> or OR, has no key (Spark refuses it too: 'Stream-stream join without equality predicate is not supported')",
            "add an equality between the two streams to the ON clause, e.g. ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' MINUTE",
        ));
    }
    let preserved: &[usize] = match join.join_type {
        JoinType::Inner => &[],
        JoinType::Left | JoinType::LeftSemi => &[0],
        JoinType::Right => &[1],
        JoinType::Full => &[0, 1],
        other => {
            return Some(SluiceError::unsupported(
                format!("{other} join between two streams"),
                "only inner, left/right/full outer and left semi joins of two streams are incremental",
                "rewrite the join as one of those, or join the stream with a bounded table",
            ))
        }
    };
    let sides = ["left", "right"];
    let missing = preserved.iter().find(|s| join.eviction[**s].is_none())?;
    let (side, other) = (sides[*missing], sides[1 - *missing]);
    Some(SluiceError::unsupported(
        format!("{} join between two streams without a watermark and a time range", join.join_type),
        format!(
            "an unmatched {side} row is emitted (padded with nulls) when the watermark shows no {other} row can still match it; \
             that needs a watermark on the {other} stream and a condition bounding its event time by a {side} time column, or an event-time column among the join keys"
        ),
        format!(
            "declare WATERMARK FOR on the {other} stream and add a time range to the ON clause, e.g. AND {other}.ts BETWEEN {side}.ts AND {side}.ts + INTERVAL '1' HOUR"
        ),
    ))
}
