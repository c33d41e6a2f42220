//! Reads a stream-stream join's condition for what bounds each side's event time, and derives
//! from it when a buffered row can no longer match (Spark's `StreamingJoinHelper` and
//! `getStateWatermarkPredicates`).

use arrow::datatypes::{DataType, Field};
use datafusion::common::{Column, DFSchema, ExprSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use super::nodes::StateEviction;
use crate::operator::watermark::event_time_delay_ms;

/// A constant day-time interval literal in ms; `None` for month intervals or anything else.
pub fn interval_literal_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _) if i.months == 0 => {
            Some(i64::from(i.days) * 86_400_000 + i.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(i)), _) => {
            Some(i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds))
        }
        _ => None,
    }
}

/// `column + c` (c in ms) for a column, optionally plus or minus constant intervals and casts.
fn linear(expr: &Expr) -> Option<(&Column, i64)> {
    match expr {
        Expr::Column(c) => Some((c, 0)),
        Expr::Cast(c) => linear(&c.expr),
        Expr::TryCast(c) => linear(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) => match interval_literal_ms(right) {
            Some(ms) => linear(left).map(|(c, k)| (c, k + ms)),
            None => linear(right).and_then(|(c, k)| Some((c, k + interval_literal_ms(left)?))),
        },
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => {
            linear(left).and_then(|(c, k)| Some((c, k - interval_literal_ms(right)?)))
        }
        _ => None,
    }
}

/// Comparisons `a op b` with `op` one of `<`, `<=`, `>`, `>=`, `BETWEEN` expanded.
fn comparisons(condition: &Expr) -> Vec<(Expr, Operator, Expr)> {
    split_conjunction(condition)
        .into_iter()
        .flat_map(|e| match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) =>
            {
                vec![(left.as_ref().clone(), *op, right.as_ref().clone())]
            }
            Expr::Between(Between { expr, negated: false, low, high }) => vec![
                (expr.as_ref().clone(), Operator::GtEq, low.as_ref().clone()),
                (expr.as_ref().clone(), Operator::LtEq, high.as_ref().clone()),
            ],
            _ => vec![],
        })
        .collect()
}

/// The first column of `schema` that carries a watermark (a timestamp or a window struct), as
/// an index and whether it is a window.
pub fn watermarked_column(schema: &DFSchema) -> Option<(usize, bool)> {
    schema.fields().iter().position(|f| event_time_delay_ms(f).is_some()).map(|i| (i, is_window(schema.field(i))))
}

fn is_window(field: &Field) -> bool {
    matches!(field.data_type(), DataType::Struct(_))
}

fn is_watermarked(schema: &DFSchema, column: &Column) -> bool {
    schema.field_from_column(column).is_ok_and(|f| event_time_delay_ms(f).is_some())
}

/// How each side's state is evicted, `[left, right]`, following Spark:
///
/// 1. an equality key that is an event-time column (a timestamp or a window) on either side:
///    both sides evict by that key, `key <= W` (windows compare their `end`);
/// 2. otherwise, for each side, every condition bounding a time column of it from below by the
///    other side's watermarked time, `s >= o + c` (or `>`), gives a state watermark `W + c` (minus
///    1 ms when the bound is inclusive); the lowest one is used. The side itself needs no
///    watermark (Spark's `getStateValueWatermark` only asks one of the side it is bounded by):
///    `a LEFT JOIN b ON ... AND b.t BETWEEN a.t AND a.t + D` runs with a watermark on `b` only.
///
/// A side with neither keeps its rows forever.
pub fn state_evictions(
    left: &DFSchema,
    right: &DFSchema,
    on: &[(Expr, Expr)],
    filter: Option<&Expr>,
) -> [Option<StateEviction>; 2] {
    let key_column = |schema: &DFSchema, e: &Expr| match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        _ => None,
    };
    let watermarked_key = on.iter().find(|(l, r)| {
        matches!(l, Expr::Column(c) if is_watermarked(left, c))
            || matches!(r, Expr::Column(c) if is_watermarked(right, c))
    });
    if let Some((l, r)) = watermarked_key {
        let by_key = |schema: &DFSchema, e: &Expr| {
            key_column(schema, e).map(|column| StateEviction {
                column,
                is_window: is_window(schema.field(column)),
                offset_ms: 0,
            })
        };
        return [by_key(left, l), by_key(right, r)];
    }
    let Some(filter) = filter else { return [None, None] };
    let mut bounds: [Option<StateEviction>; 2] = [None, None];
    for (a, op, b) in comparisons(filter) {
        let (Some((ca, ka)), Some((cb, kb))) = (linear(&a), linear(&b)) else { continue };
        // `lower >= upper_side + c`: the side of `lower` is bounded below by the other side.
        let inclusive = matches!(op, Operator::LtEq | Operator::GtEq);
        let (lower, upper, c) = match op {
            Operator::Gt | Operator::GtEq => (ca, cb, kb - ka),
            _ => (cb, ca, ka - kb),
        };
        for (side, (own, other)) in [(left, right), (right, left)].into_iter().enumerate() {
            let (Ok(column), true) = (own.index_of_column(lower), is_watermarked(other, upper)) else { continue };
            let offset_ms = c - i64::from(inclusive);
            let eviction = StateEviction { column, is_window: is_window(own.field(column)), offset_ms };
            bounds[side] = Some(match bounds[side] {
                Some(found) if found.offset_ms <= offset_ms => found,
                _ => eviction,
            });
        }
    }
    bounds
}
