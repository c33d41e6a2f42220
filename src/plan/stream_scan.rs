//! The scan of an unbounded input table: each execution reads the rows the micro-batch loop set
//! for the current batch, split into input partitions so that the stateless work below the first
//! stateful operator (decoding done, then filters, projections, partial aggregation) runs on every
//! core.

use std::fmt;
use std::sync::{Arc, RwLock};

use crate::row_ranges::split_rows;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

/// Rows below which a batch is not split further: an input partition gets at least this many
/// rows (Spark packs small files into one partition by `openCostInBytes` for the same reason),
/// so small batches keep one partition and their partial aggregation stays whole.
pub const MIN_ROWS_PER_INPUT_PARTITION: usize = 8192;

/// Scans the current micro-batch of a stream table in `partitions` input partitions: partition
/// `m` holds the `m`-th contiguous slice of the batch's rows, so the partitions taken in order are
/// the batch in source order.
#[derive(Debug)]
pub struct StreamScanExec {
    current: Arc<RwLock<Vec<RecordBatch>>>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl StreamScanExec {
    /// A scan of `current` (rows of `table_schema`) projected to `projection`, in `partitions`
    /// partitions.
    ///
    /// # Errors
    /// A DataFusion error when `projection` names a column `table_schema` lacks.
    pub fn try_new(
        current: Arc<RwLock<Vec<RecordBatch>>>,
        table_schema: &SchemaRef,
        projection: Option<Vec<usize>>,
        partitions: usize,
    ) -> DFResult<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(table_schema.project(p)?),
            None => Arc::clone(table_schema),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { current, projection, schema, properties })
    }

    /// True when this scan reads the rows of `table_rows` (a [`super::StreamTable`]'s).
    pub(crate) fn reads(&self, table_rows: &Arc<RwLock<Vec<RecordBatch>>>) -> bool {
        Arc::ptr_eq(&self.current, table_rows)
    }

    /// The table's columns this scan returns (`None`: all of them).
    pub(crate) fn projection(&self) -> Option<&[usize]> {
        self.projection.as_deref()
    }

    /// The rows of input partition `m`.
    fn slice(&self, m: usize) -> DFResult<Vec<RecordBatch>> {
        let current =
            self.current.read().map_err(|_| DataFusionError::Internal("stream table lock poisoned".into()))?;
        let total: usize = current.iter().map(RecordBatch::num_rows).sum();
        let parts =
            self.properties.output_partitioning().partition_count().min(total.div_ceil(MIN_ROWS_PER_INPUT_PARTITION));
        let Some(rows) = split_rows(&current, parts).into_iter().nth(m) else { return Ok(Vec::new()) };
        match &self.projection {
            Some(p) => rows.iter().map(|b| Ok(b.project(p)?)).collect(),
            None => Ok(rows),
        }
    }
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScanExec: input partitions={}", self.properties.output_partitioning().partition_count())
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        match children.is_empty() {
            true => Ok(self),
            false => Err(DataFusionError::Internal("StreamScanExec has no children".into())),
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let rows = self.slice(partition)?;
        let stream = futures::stream::iter(rows.into_iter().map(Ok));
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream)))
    }
}
