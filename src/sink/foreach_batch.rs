//! The foreach-batch sink: each micro-batch's output handed to a user function (Spark's
//! `foreachBatch`, the Structured Streaming form of Spark Streaming's `foreachRDD`).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::Result;

/// The user function of [`crate::DataStreamWriter::foreach_batch`], as the query keeps it:
/// `(batch id, the batch's output rows)`. It is called again with the same batch id when a batch
/// is replayed after a crash, so it must replace what that batch wrote (as Spark's
/// `foreachBatch` documents), e.g. by writing to a path named after the batch id. A program sharing
/// one function between queries can hold it as this type and give each writer a closure over a
/// clone (`move |id, rows| f(id, rows)`).
pub type ForeachBatchFn = Arc<dyn Fn(u64, &[RecordBatch]) -> Result<()> + Send + Sync>;

/// Calls a [`ForeachBatchFn`] with each batch, empty batches included.
pub(crate) struct ForeachBatchSink(pub ForeachBatchFn);

impl Sink for ForeachBatchSink {
    /// `ForeachBatchSink`, as Spark's.
    fn description(&self) -> String {
        "ForeachBatchSink".to_string()
    }

    fn add_batch(&mut self, batch_id: u64, _schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        (self.0)(batch_id, batches)
    }
}
