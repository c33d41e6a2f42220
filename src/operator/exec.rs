//! The physical node shared by the stateful operators, and the handle through which the
//! micro-batch loop drives them.
//!
//! Each operator's per-batch logic implements [`BatchOperator`]; [`StatefulExec`] feeds it the
//! batch's rows (all of them at once: state is updated once per micro-batch) and streams out what
//! it emits, while [`OperatorHandle`] gives the loop restore, watermarks, commit and progress.

use std::fmt;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use tokio::sync::Mutex;

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

/// A stateful operator shared by the micro-batch loop and the physical node planned for each
/// batch, so its state outlives the per-batch physical plans.
///
/// The operator sees the query's watermarks shifted by `watermark_offset_ms` (≤ 0): the output
/// watermark of the stream-stream joins below it, as Spark 3.5+ propagates watermarks through
/// chained stateful operators (`WatermarkPropagator`).
#[derive(Debug, Clone)]
pub struct OperatorHandle {
    operator: Arc<Mutex<Box<dyn BatchOperator>>>,
    watermark_offset_ms: i64,
}

impl OperatorHandle {
    /// Wraps `operator`, whose input watermark is the query's plus `watermark_offset_ms`.
    pub fn new(operator: Box<dyn BatchOperator>, watermark_offset_ms: i64) -> Self {
        Self { operator: Arc::new(Mutex::new(operator)), watermark_offset_ms }
    }
}

#[async_trait]
impl StatefulOperator for OperatorHandle {
    async fn restore(&self, version: Option<u64>) -> Result<()> {
        let mut operator = self.operator.lock().await;
        operator.store_mut().load(version).await?;
        operator.restored()
    }

    async fn begin_batch(&self, watermarks: BatchWatermarks) {
        let offset = self.watermark_offset_ms;
        let shifted = BatchWatermarks {
            current_ms: watermarks.current_ms.saturating_add(offset),
            late_ms: watermarks.late_ms.saturating_add(offset),
            processing_time_ms: watermarks.processing_time_ms,
        };
        self.operator.lock().await.begin_batch(shifted);
    }

    async fn commit(&self, version: u64) -> Result<()> {
        self.operator.lock().await.store_mut().commit(version).await
    }

    async fn purge_before(&self, keep_from: u64) -> Result<()> {
        self.operator.lock().await.store_mut().purge_before(keep_from).await
    }

    async fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.operator.lock().await.needs_no_data_batch(next_ms.saturating_add(self.watermark_offset_ms))
    }

    async fn progress(&self) -> OperatorProgress {
        self.operator.lock().await.progress()
    }
}

/// Runs one micro-batch of a stateful operator: collects its inputs and applies them to the
/// operator's state, producing one output batch in one partition.
#[derive(Debug)]
pub struct StatefulExec {
    name: String,
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    operator: OperatorHandle,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl StatefulExec {
    /// A node named `name` (for `EXPLAIN`) feeding `inputs` to `operator`, producing `schema`.
    pub fn new(name: &str, inputs: Vec<Arc<dyn ExecutionPlan>>, operator: OperatorHandle, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { name: name.to_string(), inputs, operator, schema, properties }
    }
}

impl DisplayAs for StatefulExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StatefulExec: {}", self.name)
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
        vec![Distribution::SinglePartition; self.inputs.len()]
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
        Ok(Arc::new(Self::new(&self.name, children, self.operator.clone(), Arc::clone(&self.schema))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("StatefulExec has one partition, asked for {partition}")));
        }
        let inputs = self.inputs.clone();
        let operator = Arc::clone(&self.operator.operator);
        let output = async move {
            let mut batches = Vec::with_capacity(inputs.len());
            for input in inputs {
                let schema = input.schema();
                let collected = datafusion::physical_plan::collect(input, Arc::clone(&context)).await?;
                batches.push(concat_batches(&schema, &collected)?);
            }
            let out = operator.lock().await.apply(batches)?;
            Ok(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::once(output))))
    }
}
