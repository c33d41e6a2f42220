//! Operators added to a query from Rust rather than SQL, applied on top of the SQL query's plan:
//! Spark's `dropDuplicates`, `dropDuplicatesWithinWatermark` and `flatMapGroupsWithState`.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{col, Extension, LogicalPlan};

use super::nodes::{StreamingDedupNode, StreamingGroupStateNode};
use crate::operator::group_state::{GroupFunction, GroupStateTimeout};
use crate::operator::watermark::event_time_delay_ms;
use crate::{Result, SluiceError};

/// A stateful operator applied to the rows of a query before they reach its sink.
#[derive(Clone)]
pub enum Stage {
    /// Spark's `dropDuplicates(keys)` (SEMANTICS §3).
    DropDuplicates {
        /// Column names.
        keys: Vec<String>,
    },
    /// Spark's `dropDuplicatesWithinWatermark(keys)`: a key expires at its first event time plus
    /// the watermark delay.
    DropDuplicatesWithinWatermark {
        /// Column names.
        keys: Vec<String>,
    },
    /// Spark's `flatMapGroupsWithState`.
    GroupsWithState {
        /// Grouping column names.
        keys: Vec<String>,
        /// The user function.
        function: GroupFunction,
        /// Which timeout the function may set.
        timeout: GroupStateTimeout,
        /// The schema of the rows the function returns.
        output: SchemaRef,
    },
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DropDuplicates { keys } => write!(f, "DropDuplicates({keys:?})"),
            Self::DropDuplicatesWithinWatermark { keys } => write!(f, "DropDuplicatesWithinWatermark({keys:?})"),
            Self::GroupsWithState { keys, timeout, .. } => write!(f, "GroupsWithState({keys:?}, {timeout:?})"),
        }
    }
}

/// Wraps `plan` in `stages`, in order, numbering operators from `*next_id`.
///
/// # Errors
/// [`SluiceError::Sql`] naming a key column the query does not produce, or a
/// `drop_duplicates_within_watermark` over rows without a watermark.
pub fn apply_stages(mut plan: LogicalPlan, stages: &[Stage], next_id: &mut usize) -> Result<LogicalPlan> {
    for stage in stages {
        let schema = Arc::clone(plan.schema());
        let keys = match stage {
            Stage::DropDuplicates { keys }
            | Stage::DropDuplicatesWithinWatermark { keys }
            | Stage::GroupsWithState { keys, .. } => keys,
        };
        for key in keys {
            if schema.index_of_column_by_name(None, key).is_none() {
                let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SluiceError::sql(format!(
                    "{stage:?}: the query produces no column '{key}' (it produces {})",
                    columns.join(", ")
                )));
            }
        }
        let key_exprs = keys.iter().map(|k| col(datafusion::common::Column::new_unqualified(k))).collect();
        let node: Arc<dyn datafusion::logical_expr::UserDefinedLogicalNode> = match stage {
            Stage::DropDuplicates { .. } | Stage::DropDuplicatesWithinWatermark { .. } => {
                let within_watermark = matches!(stage, Stage::DropDuplicatesWithinWatermark { .. });
                if within_watermark && !schema.fields().iter().any(|f| event_time_delay_ms(f).is_some()) {
                    return Err(SluiceError::sql(
                        "drop_duplicates_within_watermark needs a watermark on the query's rows; declare WATERMARK FOR on the stream and keep its event-time column in the SELECT",
                    ));
                }
                Arc::new(StreamingDedupNode {
                    operator_id: *next_id,
                    input: plan,
                    keys: key_exprs,
                    order_by: vec![],
                    schema,
                    within_watermark,
                })
            }
            Stage::GroupsWithState { function, timeout, output, .. } => Arc::new(StreamingGroupStateNode {
                operator_id: *next_id,
                input: plan,
                keys: key_exprs,
                function: Arc::clone(function),
                timeout: *timeout,
                schema: Arc::new(DFSchema::try_from(output.as_ref().clone())?),
            }),
        };
        *next_id += 1;
        plan = LogicalPlan::Extension(Extension { node });
    }
    Ok(plan)
}
