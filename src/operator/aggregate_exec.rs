//! The physical node of a streaming aggregation: DataFusion's partial `AggregateExec` below,
//! [`AggregateState`] above, one output partition.

use std::fmt;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
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

use super::aggregate::AggregateState;
use super::{BatchWatermarks, OperatorProgress, StatefulOperator};
use crate::Result;

/// A streaming aggregation's state, shared by the micro-batch loop (restore, watermarks, commit)
/// and the physical node planned for each batch.
#[derive(Debug, Clone)]
pub struct AggregateOperator {
    state: Arc<Mutex<AggregateState>>,
}

impl AggregateOperator {
    /// Wraps `state`.
    pub fn new(state: AggregateState) -> Self {
        Self { state: Arc::new(Mutex::new(state)) }
    }
}

#[async_trait]
impl StatefulOperator for AggregateOperator {
    async fn restore(&self, version: Option<u64>) -> Result<()> {
        self.state.lock().await.store_mut().load(version).await
    }

    async fn begin_batch(&self, watermarks: BatchWatermarks) {
        self.state.lock().await.begin_batch(watermarks);
    }

    async fn commit(&self, version: u64) -> Result<()> {
        self.state.lock().await.store_mut().commit(version).await
    }

    async fn purge_before(&self, keep_from: u64) -> Result<()> {
        self.state.lock().await.store_mut().purge_before(keep_from).await
    }

    async fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.state.lock().await.needs_no_data_batch(next_ms)
    }

    async fn progress(&self) -> OperatorProgress {
        self.state.lock().await.progress()
    }
}

/// Runs one batch of a streaming aggregation: collects the partial aggregation of the batch's rows
/// and applies it to the operator's state; emits the rows the output mode calls for.
#[derive(Debug)]
pub struct StatefulAggregateExec {
    partial: Arc<dyn ExecutionPlan>,
    operator: AggregateOperator,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl StatefulAggregateExec {
    /// A node reading `partial` (a `Partial`-mode `AggregateExec`) and producing `schema`.
    pub fn new(partial: Arc<dyn ExecutionPlan>, operator: AggregateOperator, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self { partial, operator, schema, properties }
    }
}

impl DisplayAs for StatefulAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StatefulAggregateExec")
    }
}

impl ExecutionPlan for StatefulAggregateExec {
    fn name(&self) -> &str {
        "StatefulAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.partial]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [partial] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("StatefulAggregateExec has one child".into()))?;
        Ok(Arc::new(Self::new(partial, self.operator.clone(), Arc::clone(&self.schema))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StatefulAggregateExec has one partition, asked for {partition}"
            )));
        }
        let partial = Arc::clone(&self.partial);
        let state = Arc::clone(&self.operator.state);
        let output = async move {
            let schema = partial.schema();
            let batches = datafusion::physical_plan::collect(partial, context).await?;
            let batch = concat_batches(&schema, &batches)?;
            let out = state.lock().await.apply(batch)?;
            Ok(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::once(output))))
    }
}
