//! Sinks: where each micro-batch's output goes.
//!
//! Public here are the [`Sink`] trait, which a program implements to write a query's output
//! anywhere (register it with [`crate::StreamContext::register_sink`]), and the sinks an
//! embedding program or a test uses directly: [`MemorySink`] (each batch's rows kept in process)
//! and [`ConsoleSink`] (batches printed as tables). File, Kafka, console and memory-table sinks
//! are otherwise declared in SQL or with [`crate::DataStreamWriter`].
//!
//! Every sink is idempotent per batch id: the micro-batch loop may hand it batch `N` again after a
//! crash between writing the output and writing `commits/N`, and the sink must then replace what
//! batch `N` wrote, never duplicate it (DESIGN §1 step 4).

use std::sync::Arc;

use arrow::array::new_null_array;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;

use crate::{Result, SluiceError};

pub(crate) mod console;
pub(crate) mod file;
pub(crate) mod foreach_batch;
pub(crate) mod kafka;
pub(crate) mod memory;
pub(crate) mod memory_table;

pub use console::ConsoleSink;
pub use memory::MemorySink;

/// A destination for the result rows of a streaming query.
#[async_trait]
pub trait Sink: Send {
    /// Prepares the sink for the query whose id (kept across restarts in the checkpoint's
    /// `metadata`, Spark's `LogicalWriteInfo.queryId`) is `query_id`, before the query runs or
    /// replays any batch. The default does nothing.
    ///
    /// # Errors
    /// [`crate::SluiceError::Sink`] when the sink cannot be prepared; the query does not start.
    async fn open(&mut self, _query_id: &str) -> Result<()> {
        Ok(())
    }

    /// Writes the output of micro-batch `batch_id` (rows of `schema`, possibly none).
    ///
    /// Called once per batch, after the batch's stateful operators ran and before `commits/N`
    /// is written; a replayed batch is passed again with the same id and must replace its output.
    ///
    /// # Errors
    /// [`crate::SluiceError::Sink`] or [`crate::SluiceError::Io`] when the output cannot be written;
    /// the query stops and the batch is replayed on restart.
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()>;

    /// The sink as progress reports describe it (Spark's `SinkProgress.description`); by
    /// default `Sink`.
    fn description(&self) -> String {
        "Sink".to_string()
    }

    /// Checks, before the query starts, that the sink can write rows of `schema` (e.g. CSV holds
    /// no struct, list or map column). The default accepts everything.
    ///
    /// # Errors
    /// [`SluiceError::Sink`] naming the first column it cannot write, its type, and what to do.
    fn check_schema(&self, _schema: &SchemaRef) -> Result<()> {
        Ok(())
    }
}

/// Checks each column of `schema` by passing `write` a batch of that column alone with one null
/// row — the writer itself says what it cannot encode; the first failure is reported as a
/// [`SluiceError::Sink`] of `sink` naming the column, its type and `format`.
pub(crate) fn check_columns(
    sink: &str,
    format: &str,
    schema: &SchemaRef,
    write: impl Fn(&SchemaRef, &RecordBatch) -> Result<()>,
) -> Result<()> {
    for field in schema.fields() {
        let field = field.as_ref().clone().with_nullable(true);
        let probe = Arc::new(Schema::new(vec![field.clone()]));
        let batch = RecordBatch::try_new(probe.clone(), vec![new_null_array(field.data_type(), 1)])?;
        write(&probe, &batch).map_err(|e| {
            let why = match e {
                SluiceError::Sink { message, .. } => message,
                other => other.to_string(),
            };
            SluiceError::Sink {
                sink: sink.to_string(),
                message: format!(
                    "cannot write column '{}' of type {} as {format}: {why}",
                    field.name(),
                    field.data_type()
                ),
            }
        })?;
    }
    Ok(())
}
