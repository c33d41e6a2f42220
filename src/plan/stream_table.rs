//! The unbounded input table as DataFusion sees it: a table whose scan yields the rows of the
//! current micro-batch.

use std::any::Any;
use std::sync::{Arc, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
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

    /// The columns of this table that `plan` reads, ascending: the union of the projections of
    /// its scans of this table, with the event-time column the watermark reads from the source's
    /// rows. `None` when every column is read, or when `plan` has no scan of this table (nothing
    /// is pruned then).
    pub(crate) fn columns_read_by(&self, plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<usize>> {
        let width = self.schema.fields().len();
        let mut read: Vec<bool> = self.schema.fields().iter().map(|f| event_time_delay_ms(f).is_some()).collect();
        let mut scanned = false;
        plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<StreamScanExec>() {
                if scan.reads(&self.current) {
                    scanned = true;
                    match scan.projection() {
                        Some(columns) => {
                            for c in columns {
                                if let Some(r) = read.get_mut(*c) {
                                    *r = true;
                                }
                            }
                        }
                        None => read.fill(true),
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
        let read: Vec<usize> = (0..width).filter(|c| read[*c]).collect();
        (scanned && read.len() < width).then_some(read)
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
            Ok(TreeNodeRecursion::Continue)
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::operator::watermark::WATERMARK_DELAY_METADATA;

    #[tokio::test]
    async fn the_columns_read_are_those_the_scans_project_and_the_event_time() {
        let time = Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, None), false)
            .with_metadata(HashMap::from([(WATERMARK_DELAY_METADATA.to_string(), "4000".to_string())]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            time,
            Field::new("c", DataType::Utf8, false),
        ]));
        let ctx = SessionContext::new();
        let events = Arc::new(StreamTable::new("events", Arc::clone(&schema), 1));
        let other = Arc::new(StreamTable::new("other", Arc::clone(&schema), 1));
        ctx.register_table("events", Arc::clone(&events) as _).unwrap();
        ctx.register_table("other", Arc::clone(&other) as _).unwrap();
        let read = |sql: &'static str| {
            let ctx = ctx.clone();
            let (events, other) = (Arc::clone(&events), Arc::clone(&other));
            async move {
                let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
                (events.columns_read_by(&plan), other.columns_read_by(&plan))
            }
        };
        assert_eq!(read("SELECT a FROM events WHERE a > 1").await, (Some(vec![0, 2]), None));
        // Two scans of one table: the union of their columns.
        assert_eq!(
            read("SELECT x.a FROM events x JOIN events y ON x.a = y.a WHERE y.c = 'k'").await,
            (Some(vec![0, 2, 3]), None)
        );
        assert_eq!(read("SELECT a, b, c FROM events").await, (None, None), "every column read");
        assert_eq!(read("SELECT b FROM other").await, (None, Some(vec![1, 2])));
    }
}
