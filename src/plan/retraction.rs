//! An aggregation over an updating aggregation, by retraction, in update and complete mode — a
//! departure from Spark, which refuses a second aggregation outside append mode; Flink's retract
//! streams are the model (Nexmark q4: `avg` of each auction's `max` bid, per category).
//!
//! The inner aggregation emits its changes: for each group a batch changed, the row it emitted
//! before with sign −1 and its new row with sign +1, in a column [`SIGN`] that the projections,
//! filters and aliases between the two carry up (each evaluates a retracted row as it evaluated
//! the row when it was new). The outer aggregation sums signed values instead of values:
//! `count(x)` becomes `sum(sign if x is not NULL)`, `sum(x)` becomes `sum(x × sign)` (NULL while
//! no value is left), `avg(x)` the quotient of the two, and a group whose row count falls to 0 is
//! left out of the result — the rows of a batch query over the inner result table, exactly,
//! since only integer values are retracted (a DOUBLE's running sum would keep the rounding of
//! values long retracted; `min` and `max` would need every value kept).
//!
//! [`refusal`] names what cannot retract, before the query starts; [`plan_retraction`] rewrites
//! the outer aggregation once the inner one is a [`StreamingAggregateNode`].

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    cast, lit, when, Aggregate, Expr, ExprSchemable, Extension, Filter, LogicalPlan, Projection, SubqueryAlias,
    Volatility,
};

use super::checks::has_event_time_key;
use super::nodes::StreamingAggregateNode;
use super::session_window::is_session_window;
use super::OutputMode;
use crate::sql::checked_sum::checked_sum_udaf;
use crate::{Result, SluiceError};

/// The column of an updating aggregation's rows that says whether a row is new (+1) or retracts
/// the row its group emitted before (−1); BIGINT, never NULL.
pub(crate) const SIGN: &str = "__sluice_sign";

/// The aggregation's row count per group, in the rewritten outer aggregation.
const ROWS: &str = "__sluice_rows";

/// The column of aggregate `i`'s signed count of non-NULL values, in the rewritten outer
/// aggregation's input and output.
fn count_column(i: usize) -> String {
    format!("__sluice_n{i}")
}

/// The column of aggregate `i`'s signed values, in the rewritten outer aggregation's input and
/// output.
fn value_column(i: usize) -> String {
    format!("__sluice_v{i}")
}

/// The refusal of several aggregations in `mode`, for `reason`, with `fix`.
fn refused(mode: OutputMode, reason: &str, fix: &str) -> SluiceError {
    SluiceError::unsupported(
        format!("several streaming aggregations in {mode} mode"),
        format!(
            "outside append mode an aggregation over another one retracts the rows the inner one updates, and {reason}"
        ),
        fix,
    )
}

/// The fix for an outer aggregate that cannot retract.
const AGGREGATE_FIX: &str =
    "aggregate with count, sum or avg over integers (CAST a DECIMAL amount to BIGINT cents), or \
                             use output_mode 'append' with event-time windows in both";

/// The node below `plan` through projections, filters and subquery aliases: the nodes that map
/// each row on its own, and so map a retracted row as they mapped it when it was new.
fn below_row_maps(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Projection(p) => below_row_maps(&p.input),
        LogicalPlan::Filter(f) => below_row_maps(&f.input),
        LogicalPlan::SubqueryAlias(s) => below_row_maps(&s.input),
        other => other,
    }
}

/// Whether `expr` may give a row another value in a later batch: a volatile function
/// (`random()`), or one evaluated at the batch's time (`now()`, see [`super::batch_time`]).
fn varies(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.signature().volatility == Volatility::Volatile
                || (f.func.signature().volatility == Volatility::Stable && f.args.is_empty())))
    })
    .unwrap_or(true)
}

/// Whether a projection or filter between `plan` and the aggregation below [`varies`].
fn varying_row_maps(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => p.expr.iter().any(varies) || varying_row_maps(&p.input),
        LogicalPlan::Filter(f) => varies(&f.predicate) || varying_row_maps(&f.input),
        LogicalPlan::SubqueryAlias(s) => varying_row_maps(&s.input),
        _ => false,
    }
}

/// The aggregation `agg` reads through projections, filters and aliases only, if any: the one
/// whose updates it must retract outside append mode.
pub(crate) fn updating_input(agg: &Aggregate) -> Option<&Aggregate> {
    match below_row_maps(&agg.input) {
        LogicalPlan::Aggregate(inner) => Some(inner),
        _ => None,
    }
}

/// Whether `agg` reads a [`StreamingAggregateNode`] through projections, filters and aliases
/// (the planned form of [`updating_input`]).
pub(crate) fn reads_streaming_aggregation(agg: &Aggregate) -> bool {
    matches!(below_row_maps(&agg.input), LogicalPlan::Extension(e) if e.node.as_any().is::<StreamingAggregateNode>())
}

/// How an outer aggregate is computed from signed sums.
enum Signed {
    /// `count(*)`: the group's row count.
    Rows,
    /// `count(x)`: the sum of the signs of the rows where `x` is not NULL.
    Count,
    /// `sum(x)`: the sum of `x × sign`, NULL when no value is left.
    Sum,
    /// `avg(x)`: that sum over that count, a DOUBLE.
    Avg,
}

fn is_retractable_integer(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// The value `aggregate` (an aggregate expression of `agg`, maybe aliased) aggregates, with its
/// `FILTER` folded in (NULL where the filter is not true), and how it is retracted; or why it
/// cannot be.
fn signed_form(aggregate: &Expr, input: &DFSchema) -> std::result::Result<(Signed, Option<Expr>), String> {
    let aggregate = match aggregate {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = aggregate else {
        return Err(format!("{aggregate} is not an aggregate function"));
    };
    let name = func.name().to_ascii_lowercase();
    if params.distinct || !params.order_by.is_empty() {
        return Err(format!("{aggregate}: DISTINCT and ORDER BY are not retracted"));
    }
    let [arg] = params.args.as_slice() else { return Err(format!("{aggregate} takes one argument here")) };
    // DataFusion's `avg` casts an integer argument to DOUBLE; the integer is what is retracted.
    let arg = match arg {
        Expr::Cast(c) if name == "avg" && c.expr.get_type(input).is_ok_and(|t| is_retractable_integer(&t)) => &*c.expr,
        other => other,
    };
    let row_count = matches!(arg, Expr::Literal(value, _) if !value.is_null()) && params.filter.is_none();
    let value = match &params.filter {
        Some(filter) => when(filter.as_ref().clone(), arg.clone()).end().map_err(|e| e.to_string())?,
        None => arg.clone(),
    };
    let data_type = arg.get_type(input).map_err(|e| e.to_string())?;
    let signed = match name.as_str() {
        "count" if row_count => return Ok((Signed::Rows, None)),
        "count" => Signed::Count,
        "sum" | "avg" if !is_retractable_integer(&data_type) => {
            return Err(format!(
                "{aggregate} over {data_type}: only integer values (BIGINT and smaller, not unsigned BIGINT) are retracted \
                 exactly; a floating-point sum would keep the rounding of values retracted long ago"
            ))
        }
        "sum" => Signed::Sum,
        "avg" => Signed::Avg,
        _ => {
            return Err(format!(
                "{aggregate}: only count, sum and avg can retract a row; min, max and the others would need every value kept"
            ))
        }
    };
    Ok((signed, Some(value)))
}

/// Why `agg` cannot run over the updating aggregation it reads (see [`updating_input`]) in
/// `mode`; `None` when it can.
pub(crate) fn refusal(agg: &Aggregate, mode: OutputMode) -> Option<SluiceError> {
    let inner = updating_input(agg)?;
    let refuse = |reason: &str, fix: &str| Some(refused(mode, reason, fix));
    if has_event_time_key(agg) {
        return refuse(
            "the outer one groups by event time, whose late rows and closed groups would drop a retraction without its row",
            "use output_mode 'append' with event-time windows in both, e.g. GROUP BY window(window_time(w), '1 hour') over the first's window w",
        );
    }
    if updating_input(inner).is_some() {
        return refuse("only two aggregations are chained so", "compute the third aggregation in a query of its own");
    }
    if inner.schema.fields().iter().take(inner.group_expr.len()).any(|f| is_session_window(f)) {
        return refuse(
            "the inner one is a session window, whose sessions merge rather than update",
            "use output_mode 'append' (a session is emitted once, when final)",
        );
    }
    if varying_row_maps(&agg.input) || agg.group_expr.iter().chain(&agg.aggr_expr).any(varies) {
        return refuse(
            "a volatile function (random(), ...) or one of the batch's time (now(), ...) would map a retracted row to \
             another value than it mapped the row to",
            "compute that value after the outer aggregation",
        );
    }
    let reasons: Vec<String> = agg.aggr_expr.iter().filter_map(|a| signed_form(a, agg.input.schema()).err()).collect();
    (!reasons.is_empty())
        .then(|| refused(mode, &format!("these aggregates cannot retract: {}", reasons.join("; ")), AGGREGATE_FIX))
}

/// `plan` with its columns and [`SIGN`] from the updating aggregation below (which it reads
/// through projections, filters and aliases, see [`updating_input`]), that aggregation now
/// emitting its changes.
fn with_sign(plan: &LogicalPlan) -> Result<LogicalPlan> {
    Ok(match plan {
        LogicalPlan::Projection(p) => {
            let input = with_sign(&p.input)?;
            let mut expr = p.expr.clone();
            expr.push(sign_column(input.schema())?);
            LogicalPlan::Projection(Projection::try_new(expr, Arc::new(input))?)
        }
        LogicalPlan::Filter(f) => {
            LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(with_sign(&f.input)?))?)
        }
        LogicalPlan::SubqueryAlias(s) => {
            LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(with_sign(&s.input)?), s.alias.clone())?)
        }
        LogicalPlan::Extension(e) => {
            let Some(node) = e.node.as_any().downcast_ref::<StreamingAggregateNode>() else {
                return Err(SluiceError::sql(format!(
                    "an updating aggregation expected below, found {}",
                    e.node.name()
                )));
            };
            let sign = DFSchema::from_unqualified_fields(
                vec![Field::new(SIGN, DataType::Int64, false)].into(),
                Default::default(),
            )?;
            let changes = StreamingAggregateNode {
                schema: Arc::new(node.schema.join(&sign)?),
                emits_changes: true,
                ..node.clone()
            };
            LogicalPlan::Extension(Extension { node: Arc::new(changes) })
        }
        other => {
            return Err(SluiceError::sql(format!("an updating aggregation expected below, found {}", other.display())))
        }
    })
}

/// The [`SIGN`] column of `schema`, under its qualifier.
fn sign_column(schema: &DFSchema) -> Result<Expr> {
    let (qualifier, _) = schema.qualified_field_with_unqualified_name(SIGN)?;
    Ok(Expr::Column(Column::new(qualifier.cloned(), SIGN)))
}

fn signed_sum(column: Expr, alias: &str) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        Arc::new(checked_sum_udaf()),
        vec![column],
        false,
        None,
        vec![],
        None,
    ))
    .alias(alias)
}

/// Rewrites `agg`, whose input reads an updating [`StreamingAggregateNode`] through
/// projections, filters and aliases (already checked by [`refusal`]), into
/// `Projection(Filter(rows > 0, agg'))`, `agg'` summing signed values (see the module
/// documentation) and the projection giving `agg`'s schema back: the plan returned has
/// `agg`'s output columns, names and types. `streaming` makes `agg'` a streaming aggregation.
///
/// # Errors
/// [`SluiceError::Unsupported`] for an aggregate that cannot retract in `mode` (as [`refusal`]
/// says), a DataFusion error when a node cannot be rebuilt.
pub(crate) fn plan_retraction(
    agg: &Aggregate,
    mode: OutputMode,
    streaming: impl FnOnce(&Aggregate) -> LogicalPlan,
) -> Result<LogicalPlan> {
    let input = with_sign(&agg.input)?;
    let sign = sign_column(input.schema())?;
    // The input's columns, then per aggregate its signed count and value.
    let mut columns: Vec<Expr> = input.schema().iter().map(|f| Expr::Column(Column::from(f))).collect();
    let mut sums = vec![signed_sum(sign.clone(), ROWS)];
    let mut forms = Vec::with_capacity(agg.aggr_expr.len());
    for (i, aggregate) in agg.aggr_expr.iter().enumerate() {
        let (form, value) = signed_form(aggregate, agg.input.schema())
            .map_err(|reason| refused(mode, &format!("this aggregate cannot retract: {reason}"), AGGREGATE_FIX))?;
        if let Some(value) = value {
            let present = cast(value.clone().is_not_null(), DataType::Int64) * sign.clone();
            columns.push(present.alias(count_column(i)));
            sums.push(signed_sum(Expr::Column(Column::from_name(count_column(i))), &count_column(i)));
            if matches!(form, Signed::Sum | Signed::Avg) {
                columns.push((cast(value, DataType::Int64) * sign.clone()).alias(value_column(i)));
                sums.push(signed_sum(Expr::Column(Column::from_name(value_column(i))), &value_column(i)));
            }
        }
        forms.push(form);
    }
    let signed_input = LogicalPlan::Projection(Projection::try_new(columns, Arc::new(input))?);
    let signed = Aggregate::try_new(Arc::new(signed_input), agg.group_expr.clone(), sums)?;
    let groups = agg.group_expr.len();
    let column = |name: &str| Expr::Column(Column::from_name(name));
    let rows = column(ROWS);
    let nonempty = LogicalPlan::Filter(Filter::try_new(rows.clone().gt(lit(0i64)), Arc::new(streaming(&signed)))?);
    let mut exprs: Vec<Expr> =
        (0..groups).map(|i| Expr::Column(Column::from(signed.schema.qualified_field(i)))).collect();
    for (i, form) in forms.iter().enumerate() {
        let (n, v) = (column(&count_column(i)), column(&value_column(i)));
        let none = || lit(ScalarValue::Int64(None));
        let value = match form {
            Signed::Rows => rows.clone(),
            Signed::Count => when(n.clone().is_null(), lit(0i64)).otherwise(n)?,
            Signed::Sum => when(n.eq(lit(0i64)), none()).otherwise(v)?,
            Signed::Avg => when(n.clone().eq(lit(0i64)), lit(ScalarValue::Float64(None)))
                .otherwise(cast(v, DataType::Float64) / cast(n, DataType::Float64))?,
        };
        let (qualifier, field) = agg.schema.qualified_field(groups + i);
        exprs.push(cast(value, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(nonempty))?))
}
