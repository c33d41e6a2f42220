//! A union's event-time columns are its first input's, as Spark's `Union` outputs its first
//! child's attributes with their watermark metadata.
//!
//! DataFusion keeps a union field's metadata only where every input agrees on it, so a union of
//! two streams declared with different watermark delays (`a` 5 s, `b` 1 s) would lose its
//! event-time column: a window over it would never close in update mode, late rows would update
//! windows the watermark had passed, and append mode would be refused. The global watermark is
//! unaffected (each source keeps its own `max - delay`, combined by the policy, SEMANTICS §1).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, TableReference};
use datafusion::logical_expr::{LogicalPlan, Union};

use crate::operator::watermark::WATERMARK_DELAY_METADATA;
use crate::Result;

/// `plan` with every union's event-time marks taken from its first input, and the schemas above
/// a changed union recomputed; `plan` itself when no union needs it.
///
/// # Errors
/// A DataFusion error when a schema above a union cannot be recomputed.
pub fn first_input_event_time(plan: LogicalPlan) -> Result<LogicalPlan> {
    let needed = plan.exists(|node| Ok(matches!(node, LogicalPlan::Union(u) if first_input_schema(u).is_some())))?;
    if !needed {
        return Ok(plan);
    }
    let rewritten = plan.transform_up(|node| match node {
        LogicalPlan::Union(union) => match first_input_schema(&union) {
            Some(schema) => Ok(Transformed::yes(LogicalPlan::Union(Union { inputs: union.inputs, schema }))),
            None => Ok(Transformed::no(LogicalPlan::Union(union))),
        },
        // A union below may have changed: the fields derived from it follow.
        other => Ok(Transformed::yes(other.recompute_schema()?)),
    })?;
    Ok(rewritten.data)
}

/// The schema of `union` with each field's watermark mark as its first input's, when that
/// differs from the schema it has.
fn first_input_schema(union: &Union) -> Option<Arc<DFSchema>> {
    let first = union.inputs.first()?.schema();
    if first.fields().len() != union.schema.fields().len() {
        return None;
    }
    let mark = |field: &arrow::datatypes::Field| field.metadata().get(WATERMARK_DELAY_METADATA).cloned();
    let differs = union.schema.fields().iter().zip(first.fields()).any(|(out, input)| mark(out) != mark(input));
    if !differs {
        return None;
    }
    let fields: Vec<(Option<TableReference>, Arc<arrow::datatypes::Field>)> = union
        .schema
        .iter()
        .zip(first.fields())
        .map(|((qualifier, out), input)| {
            let mut metadata = out.metadata().clone();
            match mark(input) {
                Some(delay) => metadata.insert(WATERMARK_DELAY_METADATA.to_string(), delay),
                None => metadata.remove(WATERMARK_DELAY_METADATA),
            };
            (qualifier.cloned(), Arc::new(out.as_ref().clone().with_metadata(metadata)))
        })
        .collect();
    let schema = DFSchema::new_with_metadata(fields, union.schema.metadata().clone())
        .and_then(|s| s.with_functional_dependencies(union.schema.functional_dependencies().clone()))
        .ok()?;
    Some(Arc::new(schema))
}
