//! Sinks: where each micro-batch's output goes. One file per sink.
//!
//! Every sink is idempotent per batch id: the micro-batch loop may hand it batch `N` again after a
//! crash between writing the output and writing `commits/N`, and the sink must then replace what
//! batch `N` wrote, never duplicate it (DESIGN §1 step 4).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::Result;

pub mod console;
pub mod file;
pub mod memory;

/// A destination for the result rows of a streaming query.
pub trait Sink: Send {
    /// Writes the output of micro-batch `batch_id` (rows of `schema`, possibly none).
    ///
    /// Called once per batch, after the batch's stateful operators ran and before `commits/N`
    /// is written; a replayed batch is passed again with the same id and must replace its output.
    ///
    /// # Errors
    /// [`crate::SluiceError::Sink`] or [`crate::SluiceError::Io`] when the output cannot be written;
    /// the query stops and the batch is replayed on restart.
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()>;
}
