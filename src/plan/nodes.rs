//! Logical streaming nodes that replace DataFusion nodes whose meaning changes on a stream.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use datafusion::common::DFSchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, SortExpr, UserDefinedLogicalNodeCore};

use crate::operator::aggregate::EventTimeKey;
use crate::operator::group_state::{GroupFunction, GroupStateTimeout};

/// `items` in `EXPLAIN` form, comma-separated.
fn list(items: &[impl fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The expressions of a node partitioned by `keys` and ordered by `order_by`: the keys, then the
/// order's.
fn keys_then_order(keys: &[Expr], order_by: &[SortExpr]) -> Vec<Expr> {
    keys.iter().cloned().chain(order_by.iter().map(|s| s.expr.clone())).collect()
}

/// [`keys_then_order`]'s `exprs` back as keys and an order with `order_by`'s directions.
fn keys_and_order(mut exprs: Vec<Expr>, order_by: &[SortExpr]) -> (Vec<Expr>, Vec<SortExpr>) {
    let order_exprs = exprs.split_off(exprs.len().saturating_sub(order_by.len()));
    (exprs, order_by.iter().zip(order_exprs).map(|(s, e)| s.with_expr(e)).collect())
}

/// A `GROUP BY` over a stream: the same grouping and aggregates as the `Aggregate` it replaces
/// (and the same output schema), computed incrementally with state kept across batches.
#[derive(Debug, Clone)]
pub struct StreamingAggregateNode {
    /// Operator id, unique within the query; names its state directory `state/<id>`.
    pub operator_id: usize,
    /// The aggregation's input.
    pub input: LogicalPlan,
    /// Grouping expressions, over `input`.
    pub group_expr: Vec<Expr>,
    /// Aggregate expressions, over `input`.
    pub aggr_expr: Vec<Expr>,
    /// Output schema: group columns then aggregate values (the replaced `Aggregate`'s schema).
    pub schema: DFSchemaRef,
    /// The event-time grouping column, if the grouping has one.
    pub event_time: Option<EventTimeKey>,
    /// Read by an aggregation outside append mode (see [`super::retraction`]): each batch emits
    /// the rows of the groups it changed, the old row with sign −1 and the new one with +1, in
    /// a last column `__sluice_sign` (BIGINT) the schema ends with.
    pub emits_changes: bool,
}

impl PartialEq for StreamingAggregateNode {
    fn eq(&self, other: &Self) -> bool {
        self.operator_id == other.operator_id
            && self.emits_changes == other.emits_changes
            && self.input == other.input
            && self.group_expr == other.group_expr
            && self.aggr_expr == other.aggr_expr
    }
}

impl Eq for StreamingAggregateNode {}

impl Hash for StreamingAggregateNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operator_id.hash(state);
        self.group_expr.hash(state);
        self.aggr_expr.hash(state);
    }
}

impl PartialOrd for StreamingAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.operator_id.partial_cmp(&other.operator_id)
    }
}

impl UserDefinedLogicalNodeCore for StreamingAggregateNode {
    fn name(&self) -> &str {
        "StreamingAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.group_expr.iter().chain(&self.aggr_expr).cloned().collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamingAggregate[{}]: groupBy=[{}], aggr=[{}]{}",
            self.operator_id,
            list(&self.group_expr),
            list(&self.aggr_expr),
            if self.emits_changes { ", emits changes" } else { "" }
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let (group_expr, aggr_expr) = exprs.split_at(self.group_expr.len());
        Ok(Self {
            operator_id: self.operator_id,
            input: inputs.swap_remove(0),
            group_expr: group_expr.to_vec(),
            aggr_expr: aggr_expr.to_vec(),
            schema: self.schema.clone(),
            event_time: self.event_time,
            emits_changes: self.emits_changes,
        })
    }
}

/// Deduplication of a stream (Spark's `dropDuplicates(keys)`), planned from the SQL pattern
/// `... ROW_NUMBER() OVER (PARTITION BY keys ORDER BY ts) AS rn ... WHERE rn = 1`: a key's first
/// row (lowest `ts`, then first to arrive) is emitted in the batch it arrives in; later rows with
/// the key are suppressed while the key is in state.
#[derive(Debug, Clone)]
pub struct StreamingDedupNode {
    /// Operator id, unique within the query; names its state directory `state/<id>`.
    pub operator_id: usize,
    /// The rows to deduplicate.
    pub input: LogicalPlan,
    /// The deduplication keys, over `input`.
    pub keys: Vec<Expr>,
    /// The window's `ORDER BY`, whose first expression chooses the first row of a key within a
    /// batch; [`super::checks`] accepts only the event-time column, ascending.
    pub order_by: Vec<SortExpr>,
    /// Output schema: `input`'s columns, then the row number (always 1) when replacing a
    /// `Window`.
    pub schema: DFSchemaRef,
    /// Spark's `dropDuplicatesWithinWatermark`: a key expires at its first event time plus the
    /// watermark delay, whatever the keys are.
    pub within_watermark: bool,
}

impl PartialEq for StreamingDedupNode {
    fn eq(&self, other: &Self) -> bool {
        self.operator_id == other.operator_id
            && self.input == other.input
            && self.keys == other.keys
            && self.order_by == other.order_by
    }
}

impl Eq for StreamingDedupNode {}

impl Hash for StreamingDedupNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operator_id.hash(state);
        self.keys.hash(state);
    }
}

impl PartialOrd for StreamingDedupNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.operator_id.partial_cmp(&other.operator_id)
    }
}

impl UserDefinedLogicalNodeCore for StreamingDedupNode {
    fn name(&self) -> &str {
        "StreamingDeduplicate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        keys_then_order(&self.keys, &self.order_by)
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamingDeduplicate[{}]: keys=[{}], order_by=[{}], within_watermark={}",
            self.operator_id,
            list(&self.keys),
            list(&self.order_by),
            self.within_watermark
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let (keys, order_by) = keys_and_order(exprs, &self.order_by);
        Ok(Self {
            operator_id: self.operator_id,
            input: inputs.swap_remove(0),
            keys,
            order_by,
            schema: self.schema.clone(),
            within_watermark: self.within_watermark,
        })
    }
}

/// The first `limit` rows of each key of a stream in an order (Flink's Top-N), planned from the
/// SQL pattern `... ROW_NUMBER() OVER (PARTITION BY keys ORDER BY order_by) AS rn ... WHERE rn <=
/// limit` when it is not a deduplication ([`StreamingDedupNode`]). A row's rank changes as better
/// rows arrive, so it runs in update mode (the ranks a batch changed) or complete mode (every
/// key's ranked rows), never in append mode. Rows of equal order rank in arrival order.
#[derive(Debug, Clone)]
pub struct StreamingTopNNode {
    /// Operator id, unique within the query; names its state directory `state/<id>`.
    pub operator_id: usize,
    /// The rows to rank.
    pub input: LogicalPlan,
    /// The window's `PARTITION BY`, over `input`.
    pub keys: Vec<Expr>,
    /// The window's `ORDER BY`, over `input`.
    pub order_by: Vec<SortExpr>,
    /// The most rows kept per key (the largest row number the filter above can pass).
    pub limit: usize,
    /// Output schema: `input`'s columns, then the row number (`UInt64`, from 1).
    pub schema: DFSchemaRef,
}

impl PartialEq for StreamingTopNNode {
    fn eq(&self, other: &Self) -> bool {
        self.operator_id == other.operator_id
            && self.input == other.input
            && self.keys == other.keys
            && self.order_by == other.order_by
            && self.limit == other.limit
    }
}

impl Eq for StreamingTopNNode {}

impl Hash for StreamingTopNNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operator_id.hash(state);
        self.keys.hash(state);
        self.limit.hash(state);
    }
}

impl PartialOrd for StreamingTopNNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.operator_id.partial_cmp(&other.operator_id)
    }
}

impl UserDefinedLogicalNodeCore for StreamingTopNNode {
    fn name(&self) -> &str {
        "StreamingTopN"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        keys_then_order(&self.keys, &self.order_by)
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamingTopN[{}]: keys=[{}], order_by=[{}], limit={}",
            self.operator_id,
            list(&self.keys),
            list(&self.order_by),
            self.limit
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let (keys, order_by) = keys_and_order(exprs, &self.order_by);
        Ok(Self {
            operator_id: self.operator_id,
            input: inputs.swap_remove(0),
            keys,
            order_by,
            limit: self.limit,
            schema: self.schema.clone(),
        })
    }
}

/// How one side of a stream-stream join evicts its buffered rows: a row leaves the state once
/// `time <= W + offset_ms`, where `time` is a column of that side (a timestamp, or a window's
/// `end`) and `W` the join's input watermark (Spark's `JoinStateWatermarkPredicate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateEviction {
    /// Index of the time column in the side's schema.
    pub column: usize,
    /// The column is a `window{start, end}` struct: compare its `end`.
    pub is_window: bool,
    /// Offset from the watermark, ms: 0 for an event-time join key, else derived from the join's
    /// time-range condition (minus 1 ms for an inclusive bound).
    pub offset_ms: i64,
}

/// A join of two streams (Spark's `StreamingSymmetricHashJoinExec`): both sides are buffered in
/// state, each new row joins the other side's state, and each side's state is evicted by the
/// watermark and the join's time-range condition.
#[derive(Debug, Clone)]
pub struct StreamingJoinNode {
    /// Operator id, unique within the query; names its state directory `state/<id>`.
    pub operator_id: usize,
    /// Left input.
    pub left: LogicalPlan,
    /// Right input.
    pub right: LogicalPlan,
    /// Equality keys `(left expression, right expression)`.
    pub on: Vec<(Expr, Expr)>,
    /// The residual condition over left and right columns (time ranges included).
    pub filter: Option<Expr>,
    /// Inner, left, right, full or left semi.
    pub join_type: JoinType,
    /// Eviction of the left and right state; `None` keeps that side's rows forever.
    pub eviction: [Option<StateEviction>; 2],
    /// Output schema, as the replaced `Join`'s.
    pub schema: DFSchemaRef,
}

impl StreamingJoinNode {
    /// The join's output watermark relative to its input watermark, ms (≤ 0 in practice): the
    /// lower of the two sides' state watermarks, or the input watermark when neither side is
    /// evicted (Spark's `produceOutputWatermark`). Downstream stateful operators run under it.
    pub fn output_watermark_offset_ms(&self) -> i64 {
        self.eviction.iter().flatten().map(|e| e.offset_ms).min().unwrap_or(0)
    }
}

impl PartialEq for StreamingJoinNode {
    fn eq(&self, other: &Self) -> bool {
        self.operator_id == other.operator_id
            && self.left == other.left
            && self.right == other.right
            && self.on == other.on
            && self.filter == other.filter
            && self.join_type == other.join_type
    }
}

impl Eq for StreamingJoinNode {}

impl Hash for StreamingJoinNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operator_id.hash(state);
        self.on.hash(state);
        self.filter.hash(state);
    }
}

impl PartialOrd for StreamingJoinNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.operator_id.partial_cmp(&other.operator_id)
    }
}

impl UserDefinedLogicalNodeCore for StreamingJoinNode {
    fn name(&self) -> &str {
        "StreamingJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.on.iter().flat_map(|(l, r)| [l.clone(), r.clone()]).chain(self.filter.clone()).collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamingJoin[{}]: type={}, on=[{}], filter={}, eviction={:?}",
            self.operator_id,
            self.join_type,
            self.on.iter().map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(", "),
            self.filter.as_ref().map_or_else(|| "none".to_string(), ToString::to_string),
            self.eviction
        )
    }

    fn with_exprs_and_inputs(&self, mut exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        let filter = if self.filter.is_some() { exprs.pop() } else { None };
        let mut pairs = exprs.into_iter();
        let on = std::iter::from_fn(|| Some((pairs.next()?, pairs.next()?))).collect();
        let right = inputs.pop().expect("a join has two inputs");
        let left = inputs.pop().expect("a join has two inputs");
        Ok(Self { left, right, on, filter, ..self.clone() })
    }
}

/// Arbitrary stateful processing of a stream (Spark's `flatMapGroupsWithState`): a user function
/// per key with state and timeouts; see [`crate::operator::group_state`].
#[derive(Clone)]
pub struct StreamingGroupStateNode {
    /// Operator id, unique within the query; names its state directory `state/<id>`.
    pub operator_id: usize,
    /// The rows to group.
    pub input: LogicalPlan,
    /// Grouping columns of `input`.
    pub keys: Vec<Expr>,
    /// The user function.
    pub function: GroupFunction,
    /// Which timeout the function may set.
    pub timeout: GroupStateTimeout,
    /// The rows the function returns.
    pub schema: DFSchemaRef,
}

impl fmt::Debug for StreamingGroupStateNode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("StreamingGroupStateNode")
            .field("operator_id", &self.operator_id)
            .field("keys", &self.keys)
            .finish()
    }
}

impl PartialEq for StreamingGroupStateNode {
    fn eq(&self, other: &Self) -> bool {
        self.operator_id == other.operator_id && self.input == other.input && self.keys == other.keys
    }
}

impl Eq for StreamingGroupStateNode {}

impl Hash for StreamingGroupStateNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operator_id.hash(state);
        self.keys.hash(state);
    }
}

impl PartialOrd for StreamingGroupStateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.operator_id.partial_cmp(&other.operator_id)
    }
}

impl UserDefinedLogicalNodeCore for StreamingGroupStateNode {
    fn name(&self) -> &str {
        "StreamingGroupsWithState"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.keys.clone()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamingGroupsWithState[{}]: keys=[{}], timeout={:?}",
            self.operator_id,
            list(&self.keys),
            self.timeout
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> DFResult<Self> {
        Ok(Self { input: inputs.swap_remove(0), keys: exprs, ..self.clone() })
    }
}
