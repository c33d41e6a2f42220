//! The hash exchange in front of a stateful operator: every row of a micro-batch goes to the state
//! partition its keys hash to (Spark's `HashPartitioning` on the grouping, join, dedup or
//! group-state keys), so that each partition's state is complete for its keys and the partitions
//! run in parallel.
//!
//! Rows are routed with DataFusion's `BatchPartitioner`, the hash `RepartitionExec` uses. Unlike
//! `RepartitionExec`, which hands a partition its rows in arrival order, the exchange keeps a
//! defined order: a partition receives input partition 0's rows first, then input partition 1's,
//! and so on, each in its own order. A replayed batch therefore feeds every operator the same rows
//! in the same order (first-wins deduplication and floating-point sums included), and writes
//! byte-identical output.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;

/// Rows of one input, by state partition: `routed[p]` holds partition `p`'s batches in order.
pub type Routed = Vec<Vec<RecordBatch>>;

/// Runs every partition of `input` (each in its own task, so stateless work runs in parallel) and
/// routes its rows to `partitions` state partitions by the hash of `keys`; with no keys every row
/// goes to partition 0 (a global aggregation, a join without equality keys).
///
/// # Errors
/// The input's errors, or a task that panicked.
pub async fn exchange(
    input: &Arc<dyn ExecutionPlan>,
    keys: &[Arc<dyn PhysicalExpr>],
    partitions: usize,
    context: &Arc<TaskContext>,
) -> DFResult<Routed> {
    let inputs = input.output_partitioning().partition_count();
    let mut tasks = Vec::with_capacity(inputs);
    for m in 0..inputs {
        let stream = input.execute(m, Arc::clone(context))?;
        tasks.push(SpawnedTask::spawn(route(stream, keys.to_vec(), partitions)));
    }
    let mut routed: Routed = vec![Vec::new(); partitions];
    for task in tasks {
        let part = task.join_unwind().await.map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
        for (p, batches) in part.into_iter().enumerate() {
            routed[p].extend(batches);
        }
    }
    Ok(routed)
}

/// Routes the rows of one input partition.
async fn route(
    mut stream: SendableRecordBatchStream,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    partitions: usize,
) -> DFResult<Routed> {
    let mut routed: Routed = vec![Vec::new(); partitions];
    let mut partitioner = match keys.is_empty() || partitions == 1 {
        true => None,
        false => Some(BatchPartitioner::new_hash_partitioner(keys, partitions, Time::new())?),
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        match &mut partitioner {
            None => routed[0].push(batch),
            Some(partitioner) => partitioner.partition(batch, |p, part| {
                routed[p].push(part);
                Ok(())
            })?,
        }
    }
    Ok(routed)
}
