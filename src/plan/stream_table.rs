//! The unbounded input table as DataFusion sees it: a table whose scan yields the rows of the
//! current micro-batch.

use std::any::Any;
use std::sync::{Arc, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::TableType;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan, TableScanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use super::stream_scan::StreamScanExec;
use crate::operator::watermark::event_time_delay_ms;

/// A stream source registered as a DataFusion table. The micro-batch loop sets the rows of each
/// batch with [`StreamTable::set_batch`]; every execution of the query's plan then scans exactly
/// those rows, split into up to `input_partitions` input partitions.
#[derive(Debug)]
pub struct StreamTable {
    name: String,
    schema: SchemaRef,
    current: Arc<RwLock<Vec<RecordBatch>>>,
    input_partitions: usize,
}

impl StreamTable {
    /// An empty stream table `name` of `schema`, scanned in up to `input_partitions` partitions.
    pub fn new(name: &str, schema: SchemaRef, input_partitions: usize) -> Self {
        let input_partitions = input_partitions.max(1);
        Self { name: name.to_string(), schema, current: Arc::default(), input_partitions }
    }

    /// The rows' schema; its event-time column carries the watermark delay.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The source name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the rows the next scan returns.
    pub fn set_batch(&self, batches: Vec<RecordBatch>) {
        *self.current.write().expect("stream table lock") = batches;
    }

    /// The stream table behind a scan, if the scan reads one.
    pub fn of_scan(scan: &TableScan) -> Option<Arc<StreamTable>> {
        let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
        let any: Arc<dyn Any + Send + Sync> = provider;
        any.downcast::<StreamTable>().ok()
    }

    /// `scan` reading `table` instead: the same name, projection, filters and limit (a query's
    /// own table for the planning one, or one whose schema marks a watermark).
    pub(crate) fn rescan(scan: &TableScan, table: Arc<StreamTable>) -> DFResult<LogicalPlan> {
        let scan = TableScanBuilder::new(scan.table_name.clone(), provider_as_source(table))
            .with_projection(scan.projection.clone())
            .with_filters(scan.filters.clone())
            .with_fetch(scan.fetch)
            .build()?;
        Ok(LogicalPlan::TableScan(scan))
    }

    /// The stream tables `plan` reads, subqueries included (a table read twice appears twice).
    pub fn sources_of(plan: &LogicalPlan) -> Vec<Arc<StreamTable>> {
        let mut found = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                found.extend(Self::of_scan(scan));
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .expect("plan walk does not fail");
        found
    }

    /// True when a stream `plan` reads declares a watermark, whether or not its event-time
    /// column reaches the top of `plan` (Spark: an `EventTimeWatermark` node upstream).
    pub fn has_watermark_upstream(plan: &LogicalPlan) -> bool {
        Self::sources_of(plan).iter().any(|t| t.schema.fields().iter().any(|f| event_time_delay_ms(f).is_some()))
    }
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(StreamScanExec::try_new(
            Arc::clone(&self.current),
            &self.schema,
            projection.cloned(),
            self.input_partitions,
        )?))
    }
}
