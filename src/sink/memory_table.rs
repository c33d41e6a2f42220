//! The memory table sink: a query's result kept as a bounded table of the context, which SQL and
//! the DataFrame API read at any moment (Spark's `format("memory")` with `queryName`, and
//! `toTable` on an in-memory table).
//!
//! In append mode each batch's rows are added; in complete mode each batch replaces the table;
//! in update mode each batch's rows replace the rows with the same key (the aggregation's
//! grouping columns) and add the others. A replayed batch id at or below the last one applied is
//! ignored, as Spark's `MemorySink` does. The table lives in process memory: it is for
//! interactive use and tests, and an update costs time proportional to the table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::Sink;
use crate::plan::OutputMode;
use crate::Result;

/// The rows of a memory table and the last batch applied.
#[derive(Debug, Default)]
struct Contents {
    rows: Vec<RecordBatch>,
    last_batch_id: Option<u64>,
}

/// A bounded table holding a streaming query's result; see the module doc.
#[derive(Debug)]
pub(crate) struct MemoryTable {
    schema: SchemaRef,
    contents: Arc<RwLock<Contents>>,
}

impl MemoryTable {
    pub(crate) fn new(schema: SchemaRef) -> Self {
        Self { schema, contents: Arc::default() }
    }

    /// The rows now in the table.
    pub(crate) fn rows(&self) -> Vec<RecordBatch> {
        self.contents.read().unwrap_or_else(|e| e.into_inner()).rows.clone()
    }

    /// The sink writing into this table in `mode`; `keys` are the columns identifying a row in
    /// update mode (none: rows are added, as in append mode).
    pub(crate) fn sink(&self, mode: OutputMode, keys: Vec<String>) -> MemoryTableSink {
        MemoryTableSink { contents: Arc::clone(&self.contents), mode, keys }
    }
}

#[async_trait]
impl TableProvider for MemoryTable {
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
        Ok(MemorySourceConfig::try_new_exec(&[self.rows()], Arc::clone(&self.schema), projection.cloned())?)
    }
}

/// Writes a query's batches into a [`MemoryTable`].
pub(crate) struct MemoryTableSink {
    contents: Arc<RwLock<Contents>>,
    mode: OutputMode,
    keys: Vec<String>,
}

impl Sink for MemoryTableSink {
    /// `MemorySink`, as Spark's.
    fn description(&self) -> String {
        "MemorySink".to_string()
    }

    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let mut contents = self.contents.write().unwrap_or_else(|e| e.into_inner());
        if contents.last_batch_id.is_some_and(|last| batch_id <= last) {
            return Ok(());
        }
        let new: Vec<RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        contents.rows = match self.mode {
            OutputMode::Complete => new,
            OutputMode::Update if !self.keys.is_empty() => {
                let all: Vec<RecordBatch> = contents.rows.iter().chain(&new).cloned().collect();
                vec![last_row_per_key(schema, &all, &self.keys)?]
            }
            _ => contents.rows.iter().cloned().chain(new).collect(),
        };
        contents.last_batch_id = Some(batch_id);
        Ok(())
    }
}

/// The rows of `batches`, keeping for each value of the `keys` columns only its last row, in the
/// order of the rows kept.
fn last_row_per_key(schema: &SchemaRef, batches: &[RecordBatch], keys: &[String]) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    let columns = keys.iter().map(|k| Ok(Arc::clone(all.column(schema.index_of(k)?)))).collect::<Result<Vec<_>>>()?;
    let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&columns)?;
    let mut last: HashMap<arrow::row::Row<'_>, u32> = HashMap::with_capacity(rows.num_rows());
    for (i, row) in rows.iter().enumerate() {
        last.insert(row, i as u32);
    }
    let mut kept: Vec<u32> = last.into_values().collect();
    kept.sort_unstable();
    Ok(take_record_batch(&all, &arrow::array::UInt32Array::from(kept))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, keys: &[&str], counts: &[i64]) -> RecordBatch {
        let columns: Vec<arrow::array::ArrayRef> =
            vec![Arc::new(StringArray::from(keys.to_vec())), Arc::new(Int64Array::from(counts.to_vec()))];
        RecordBatch::try_new(Arc::clone(schema), columns).unwrap()
    }

    fn rows(table: &MemoryTable) -> Vec<(String, i64)> {
        let contents = table.contents.read().unwrap();
        let mut out = Vec::new();
        for b in &contents.rows {
            let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let c = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            out.extend((0..b.num_rows()).map(|i| (k.value(i).to_string(), c.value(i))));
        }
        out
    }

    #[test]
    fn each_mode_keeps_what_spark_keeps_and_a_replay_is_ignored() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let first = batch(&schema, &["a", "b"], &[1, 1]);
        let second = batch(&schema, &["b", "c"], &[2, 1]);
        let expected = [
            (OutputMode::Append, vec![("a", 1), ("b", 1), ("b", 2), ("c", 1)]),
            (OutputMode::Complete, vec![("b", 2), ("c", 1)]),
            (OutputMode::Update, vec![("a", 1), ("b", 2), ("c", 1)]),
        ];
        for (mode, want) in expected {
            let table = MemoryTable::new(Arc::clone(&schema));
            let mut sink = table.sink(mode, vec!["k".to_string()]);
            sink.add_batch(0, &schema, std::slice::from_ref(&first)).unwrap();
            sink.add_batch(1, &schema, std::slice::from_ref(&second)).unwrap();
            sink.add_batch(1, &schema, std::slice::from_ref(&second)).unwrap();
            let want: Vec<(String, i64)> = want.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
            assert_eq!(rows(&table), want, "{mode:?}");
        }
    }
}
