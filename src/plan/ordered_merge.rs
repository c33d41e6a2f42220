//! Deterministic merges of partitions. DataFusion merges partitions into one
//! (`CoalescePartitionsExec`, or a `RepartitionExec` to one partition) in the order their batches
//! arrive, which differs from run to run; a streaming query must not: a replayed batch writes
//! byte-identical output, and a `LIMIT` takes the same rows. [`ordered_merges`] replaces each such
//! merge with an [`OrderedCoalesceExec`], which yields partition 0's rows, then partition 1's, and
//! so on, while all partitions still run in parallel.

use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    common, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::TryStreamExt;

/// `plan` with every merge of several partitions into one replaced by an [`OrderedCoalesceExec`].
///
/// # Errors
/// A DataFusion error from rewriting the plan.
pub fn ordered_merges(plan: Arc<dyn ExecutionPlan>) -> DFResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let merges_into_one = node.is::<CoalescePartitionsExec>()
            || (node.is::<RepartitionExec>() && node.output_partitioning().partition_count() == 1);
        let Some(input) = node.children().first().filter(|_| merges_into_one).map(|c| Arc::clone(c)) else {
            return Ok(Transformed::no(node));
        };
        Ok(Transformed::yes(Arc::new(OrderedCoalesceExec::new(input, node.fetch())) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// Merges its input's partitions into one in partition order, keeping at most `fetch` rows.
#[derive(Debug)]
pub struct OrderedCoalesceExec {
    input: Arc<dyn ExecutionPlan>,
    fetch: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl OrderedCoalesceExec {
    /// The merge of `input`'s partitions, limited to `fetch` rows if given.
    pub fn new(input: Arc<dyn ExecutionPlan>, fetch: Option<usize>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { input, fetch, properties }
    }
}

impl DisplayAs for OrderedCoalesceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "OrderedCoalesceExec")?;
        match self.fetch {
            Some(fetch) => write!(f, ": fetch={fetch}"),
            None => Ok(()),
        }
    }
}

impl ExecutionPlan for OrderedCoalesceExec {
    fn name(&self) -> &str {
        "OrderedCoalesceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::UnspecifiedDistribution]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("OrderedCoalesceExec has one child".into()))?;
        Ok(Arc::new(Self::new(input, self.fetch)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "OrderedCoalesceExec has one partition, asked for {partition}"
            )));
        }
        let tasks = (0..self.input.output_partitioning().partition_count())
            .map(|p| Ok(SpawnedTask::spawn(common::collect(self.input.execute(p, Arc::clone(&context))?))))
            .collect::<DFResult<Vec<_>>>()?;
        let fetch = self.fetch;
        let merged = async move {
            let mut batches = Vec::new();
            for task in tasks {
                batches.extend(task.join_unwind().await.map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??);
            }
            Ok::<_, DataFusionError>(limit(batches, fetch))
        };
        let stream =
            futures::stream::once(merged).map_ok(|b| futures::stream::iter(b.into_iter().map(Ok))).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), stream)))
    }
}

/// The first `fetch` rows of `batches` (all with `None`).
fn limit(batches: Vec<RecordBatch>, fetch: Option<usize>) -> Vec<RecordBatch> {
    let Some(mut left) = fetch else { return batches };
    let mut kept = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        left -= take;
        kept.push(batch.slice(0, take));
    }
    kept
}
