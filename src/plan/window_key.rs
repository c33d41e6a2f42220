//! An aggregation's event-time window key grouped by its bounds: a streaming aggregation's
//! partial `AggregateExec` groups each `window{start, end}` struct column as its two timestamp
//! bounds ([`WindowBound`]), and a projection above it puts the struct back together
//! ([`WindowStruct`]), so the stateful operator sees the same partial rows.
//!
//! DataFusion keeps primitive group columns in vectorized builders but a struct group column in
//! arrow's row format, which it re-encodes for every batch's rows when comparing and when
//! appending them; in Nexmark q5 (an aggregation by auction and sliding window) that encoding
//! was 17% of the process's instructions. Grouping by the bounds is the same grouping: a window
//! is its bounds, and a null window (a row without event time) has null bounds.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{make_array, Array, AsArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

/// Where a grouping expression of the aggregation went in the partial aggregation's groups.
#[derive(Debug, Clone)]
pub(crate) enum GroupSlot {
    /// Grouped as it is, at this index.
    Whole(usize),
    /// A window struct grouped by its bounds, `start` at this index and `end` after it; `field`
    /// is the struct's field.
    Bounds(usize, FieldRef),
}

/// `group_by` (expressions over `input` with their names) with every window struct replaced by
/// its two bounds, and where each expression went.
///
/// # Errors
/// A DataFusion error when an expression's field cannot be computed.
pub(crate) fn split_windows(
    group_by: Vec<(Arc<dyn PhysicalExpr>, String)>,
    input: &Schema,
) -> DFResult<(Vec<(Arc<dyn PhysicalExpr>, String)>, Vec<GroupSlot>)> {
    let mut split = Vec::with_capacity(group_by.len() + 1);
    let mut slots = Vec::with_capacity(group_by.len());
    for (expr, name) in group_by {
        let field = expr.return_field(input)?;
        if is_window(field.data_type()) {
            slots.push(GroupSlot::Bounds(split.len(), field));
            for (index, bound) in ["start", "end"].into_iter().enumerate() {
                let bound_expr = Arc::new(WindowBound { input: Arc::clone(&expr), index });
                split.push((bound_expr as Arc<dyn PhysicalExpr>, format!("{name}.{bound}")));
            }
        } else {
            slots.push(GroupSlot::Whole(split.len()));
            split.push((expr, name));
        }
    }
    Ok((split, slots))
}

/// `partial` (a partial aggregation grouped as [`split_windows`] said, then its aggregate
/// states) with each window put back together as a struct, its columns named as `names` (the
/// grouping expressions' names); `partial` itself when no window was split.
///
/// # Errors
/// A DataFusion error when the projection cannot be built.
pub(crate) fn join_windows(
    partial: Arc<dyn ExecutionPlan>,
    slots: &[GroupSlot],
    names: &[String],
) -> DFResult<Arc<dyn ExecutionPlan>> {
    if slots.iter().all(|s| matches!(s, GroupSlot::Whole(_))) {
        return Ok(partial);
    }
    let schema = partial.schema();
    let column = |i: usize| Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>;
    let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = slots
        .iter()
        .zip(names)
        .map(|(slot, name)| match slot {
            GroupSlot::Whole(i) => (column(*i), name.clone()),
            GroupSlot::Bounds(start, field) => {
                (Arc::new(WindowStruct { start: *start, field: Arc::clone(field) }) as _, name.clone())
            }
        })
        .collect();
    let groups = slots.iter().map(|s| if matches!(s, GroupSlot::Bounds(..)) { 2 } else { 1 }).sum::<usize>();
    exprs.extend((groups..schema.fields().len()).map(|i| (column(i), schema.field(i).name().clone())));
    Ok(Arc::new(ProjectionExec::try_new(exprs, partial)?))
}

/// A `window{start, end}` struct of two timestamps.
fn is_window(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Struct(fields) if fields.len() == 2
        && fields[0].name() == "start" && fields[1].name() == "end"
        && fields.iter().all(|f| matches!(f.data_type(), DataType::Timestamp(..))))
}

fn window_fields(field: &FieldRef) -> DFResult<Fields> {
    match field.data_type() {
        DataType::Struct(fields) => Ok(fields.clone()),
        other => Err(DataFusionError::Internal(format!("a window key of type {other}"))),
    }
}

/// Bound `index` (0: start, 1: end) of a window struct, null where the window is.
#[derive(Debug, Eq, Hash)]
struct WindowBound {
    input: Arc<dyn PhysicalExpr>,
    index: usize,
}

impl PartialEq for WindowBound {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && self.input.eq(&other.input)
    }
}

impl fmt::Display for WindowBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.input, ["start", "end"][self.index])
    }
}

impl PhysicalExpr for WindowBound {
    fn return_field(&self, input_schema: &Schema) -> DFResult<FieldRef> {
        let fields = window_fields(&self.input.return_field(input_schema)?)?;
        Ok(Arc::new(fields[self.index].as_ref().clone().with_nullable(true)))
    }

    fn evaluate(&self, batch: &RecordBatch) -> DFResult<ColumnarValue> {
        let windows = self.input.evaluate(batch)?.into_array(batch.num_rows())?;
        let windows = windows
            .as_struct_opt()
            .ok_or_else(|| DataFusionError::Internal(format!("a window key of type {}", windows.data_type())))?;
        let bound = windows.column(self.index);
        let Some(nulls) = windows.nulls() else { return Ok(ColumnarValue::Array(Arc::clone(bound))) };
        let nulls = NullBuffer::union(Some(nulls), bound.nulls());
        Ok(ColumnarValue::Array(make_array(bound.to_data().into_builder().nulls(nulls).build()?)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn PhysicalExpr>>) -> DFResult<Arc<dyn PhysicalExpr>> {
        let input = children.into_iter().next().ok_or_else(|| DataFusionError::Internal("no window".into()))?;
        Ok(Arc::new(Self { input, index: self.index }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The window struct of the bounds in columns `start` and `start + 1`, of type `field`'s; null
/// where the start is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowStruct {
    start: usize,
    field: FieldRef,
}

impl fmt::Display for WindowStruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "window(#{}, #{})", self.start, self.start + 1)
    }
}

impl PhysicalExpr for WindowStruct {
    fn return_field(&self, _input_schema: &Schema) -> DFResult<FieldRef> {
        Ok(Arc::clone(&self.field))
    }

    fn evaluate(&self, batch: &RecordBatch) -> DFResult<ColumnarValue> {
        let bound = |i: usize| {
            batch.columns().get(i).cloned().ok_or_else(|| DataFusionError::Internal(format!("no window bound #{i}")))
        };
        let (start, end) = (bound(self.start)?, bound(self.start + 1)?);
        let nulls = start.nulls().cloned();
        let windows = StructArray::try_new(window_fields(&self.field)?, vec![start, end], nulls)?;
        Ok(ColumnarValue::Array(Arc::new(windows)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn PhysicalExpr>>) -> DFResult<Arc<dyn PhysicalExpr>> {
        Ok(self)
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
