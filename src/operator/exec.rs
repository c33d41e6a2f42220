//! The physical node shared by the stateful operators, and the handle through which the
//! micro-batch loop drives them.
//!
//! Each operator's per-batch logic implements [`BatchOperator`], one instance per state partition;
//! [`StatefulExec`] feeds each the batch's rows of its partition (all of them at once: state is
//! updated once per micro-batch) and streams out what it emits, while [`OperatorHandle`] gives the
//! loop restore, watermarks, commit and progress of all partitions.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

use super::exchange::{exchange, Routed};
use super::{BatchWatermarks, OperatorProgress, StatefulOperator};
use crate::state::StateStore;
use crate::Result;

/// The per-batch logic of a stateful operator.
pub trait BatchOperator: Send + fmt::Debug {
    /// Applies one micro-batch of input rows (one batch per input, in input order) to the state;
    /// returns the rows to emit.
    ///
    /// # Errors
    /// A DataFusion or arrow error; the batch then fails and runs again on restart.
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch>;
    /// Rebuilds in-memory structures after the store was loaded (the store is the truth).
    ///
    /// # Errors
    /// A checkpoint error when a stored row cannot be decoded.
    fn restored(&mut self) -> Result<()> {
        Ok(())
    }
    /// Sets the batch's watermarks and resets its counters.
    fn begin_batch(&mut self, watermarks: BatchWatermarks);
    /// Whether watermark `next_ms` calls for a no-data batch (Spark's `shouldRunAnotherBatch`).
    fn needs_no_data_batch(&self, next_ms: i64) -> bool;
    /// Progress of the current batch.
    fn progress(&self) -> OperatorProgress;
    /// The operator's state store.
    fn store_mut(&mut self) -> &mut StateStore;
}

/// A stateful operator, one instance per state partition, shared by the micro-batch loop and the
/// physical plan, so its state outlives each execution of the plan.
///
/// The operator sees the query's watermarks shifted by `watermark_offset_ms` (≤ 0): the output
/// watermark of the stream-stream joins below it, as Spark 3.5+ propagates watermarks through
/// chained stateful operators (`WatermarkPropagator`).
#[derive(Debug, Clone)]
pub struct OperatorHandle {
    partitions: Arc<[Partition]>,
    watermark_offset_ms: i64,
}

/// One state partition of an operator.
type Partition = Arc<Mutex<Box<dyn BatchOperator>>>;

impl OperatorHandle {
    /// Wraps `partitions` (one operator per state partition, in partition order), whose input
    /// watermark is the query's plus `watermark_offset_ms`.
    pub fn new(partitions: Vec<Box<dyn BatchOperator>>, watermark_offset_ms: i64) -> Self {
        let partitions = partitions.into_iter().map(|op| Arc::new(Mutex::new(op))).collect();
        Self { partitions, watermark_offset_ms }
    }

    /// Number of state partitions.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// Runs `f` on every partition, each in its own task (so they run in parallel, as Spark's
    /// tasks commit their state stores); results in partition order.
    async fn each<T, F>(&self, f: impl Fn(OwnedMutexGuard<Box<dyn BatchOperator>>) -> F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let mut tasks = Vec::with_capacity(self.partitions.len());
        for p in self.partitions.iter() {
            tasks.push(tokio::spawn(f(Arc::clone(p).lock_owned().await)));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            results.push(task.await.map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??);
        }
        Ok(results)
    }
}

#[async_trait]
impl StatefulOperator for OperatorHandle {
    async fn restore(&self, version: Option<u64>) -> Result<()> {
        self.each(move |mut op| async move {
            op.store_mut().load(version).await?;
            op.restored()?;
            op.store_mut().clear_counts();
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn damaged_state(&self, version: u64) -> Result<Option<(String, String)>> {
        let damaged = self.each(move |mut op| async move { op.store_mut().damaged_delta(version).await }).await?;
        Ok(damaged.into_iter().flatten().next())
    }

    async fn begin_batch(&self, watermarks: BatchWatermarks) {
        let offset = self.watermark_offset_ms;
        let shifted = BatchWatermarks {
            current_ms: watermarks.current_ms.saturating_add(offset),
            late_ms: watermarks.late_ms.saturating_add(offset),
            processing_time_ms: watermarks.processing_time_ms,
        };
        for p in self.partitions.iter() {
            p.lock().await.begin_batch(shifted);
        }
    }

    async fn commit(&self, version: u64) -> Result<()> {
        self.each(move |mut op| async move { op.store_mut().commit(version).await }).await?;
        Ok(())
    }

    async fn stale_before(&self, keep_from: u64) -> Result<Vec<String>> {
        let stale = self.each(move |mut op| async move { op.store_mut().stale_before(keep_from).await }).await?;
        Ok(stale.concat())
    }

    async fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        let next_ms = next_ms.saturating_add(self.watermark_offset_ms);
        for p in self.partitions.iter() {
            if p.lock().await.needs_no_data_batch(next_ms) {
                return true;
            }
        }
        false
    }

    async fn progress(&self) -> OperatorProgress {
        let mut total = OperatorProgress::default();
        for p in self.partitions.iter() {
            total.absorb(p.lock().await.progress());
        }
        total
    }
}

/// Runs one micro-batch of a stateful operator: exchanges its inputs by key (see
/// [`super::exchange`]) and applies each state partition's rows to that partition's operator,
/// producing one output batch per partition; the partitions run in parallel.
///
/// The node is planned once per query and executed once per batch: [`ExecutionPlan::reset_state`]
/// gives each execution a fresh exchange.
#[derive(Debug)]
pub struct StatefulExec {
    name: String,
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    /// For each input, the expressions whose hash picks a row's state partition.
    keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    operator: OperatorHandle,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// The current execution's exchanged inputs, computed by the first partition executed.
    exchanged: Arc<OnceCell<Vec<Routed>>>,
}

impl StatefulExec {
    /// A node named `name` (for `EXPLAIN`; the operator's name in progress reports, e.g.
    /// `aggregate[0]`) feeding `inputs`, partitioned by `keys` (one list per
    /// input), to `operator`, producing `schema`.
    pub fn new(
        name: &str,
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
        operator: OperatorHandle,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(operator.partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { name: name.to_string(), inputs, keys, operator, schema, properties, exchanged: Arc::default() }
    }
}

impl DisplayAs for StatefulExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StatefulExec: {}, state partitions={}", self.name, self.operator.partition_count())
    }
}

impl ExecutionPlan for StatefulExec {
    fn name(&self) -> &str {
        "StatefulExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::UnspecifiedDistribution; self.inputs.len()]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.len() != self.inputs.len() {
            return Err(DataFusionError::Internal(format!("StatefulExec has {} children", self.inputs.len())));
        }
        let (keys, operator, schema) = (self.keys.clone(), self.operator.clone(), Arc::clone(&self.schema));
        Ok(Arc::new(Self::new(&self.name, children, keys, operator, schema)))
    }

    fn reset_state(self: Arc<Self>) -> DFResult<Arc<dyn ExecutionPlan>> {
        let (inputs, keys, operator, schema) =
            (self.inputs.clone(), self.keys.clone(), self.operator.clone(), Arc::clone(&self.schema));
        Ok(Arc::new(Self::new(&self.name, inputs, keys, operator, schema)))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let partitions = self.operator.partition_count();
        let Some(operator) = self.operator.partitions.get(partition).cloned() else {
            return Err(DataFusionError::Internal(format!(
                "StatefulExec has {partitions} partitions, asked for {partition}"
            )));
        };
        let (inputs, keys, exchanged) = (self.inputs.clone(), self.keys.clone(), Arc::clone(&self.exchanged));
        let output = async move {
            let routed = exchanged
                .get_or_try_init(|| async {
                    let each =
                        inputs.iter().zip(&keys).map(|(input, keys)| exchange(input, keys, partitions, &context));
                    futures::future::try_join_all(each).await
                })
                .await?;
            let batches = inputs
                .iter()
                .zip(routed)
                .map(|(input, routed)| concat_batches(&input.schema(), &routed[partition]))
                .collect::<Result<Vec<_>, _>>()?;
            // The operator works on a blocking thread. On a runtime worker, a long `apply` would
            // hold the sibling partitions that this task woke when the exchange finished: tokio
            // puts them in the worker's LIFO slot, which other workers cannot steal, and the
            // state partitions would run one after another.
            let mut operator = operator.lock_owned().await;
            let out = SpawnedTask::spawn_blocking(move || operator.apply(batches))
                .join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
            Ok(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::once(output))))
    }
}
