//! The memory source: batches pushed from Rust, for embedding and tests.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use super::{Source, SourceData};
use crate::checkpoint::CheckpointLocation;
use crate::{Result, SluiceError};

/// A handle to push record batches into a [`MemorySource`]; clones share the stream.
///
/// Each [`MemoryStream::push`] is one offset: a batch reads every push since the last batch.
/// The data lives only in this process, so a restarted process must push the same data again to
/// replay (like Spark's `MemoryStream`).
#[derive(Debug, Clone)]
pub struct MemoryStream {
    schema: SchemaRef,
    pushed: Arc<Mutex<Vec<RecordBatch>>>,
}

impl MemoryStream {
    /// An empty stream of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema, pushed: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The schema of the stream.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Appends a batch.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when the batch's columns differ from the stream's.
    pub fn push(&self, batch: RecordBatch) -> Result<()> {
        // Re-labelled with the stream's schema, which carries the watermark metadata.
        let batch =
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()).map_err(|e| SluiceError::Source {
                source_name: "memory".into(),
                message: format!("pushed batch does not match the stream's schema {:?}: {e}", self.schema),
            })?;
        self.pushed.lock().expect("memory stream lock").push(batch);
        Ok(())
    }

    /// Number of batches pushed so far.
    pub fn len(&self) -> usize {
        self.pushed.lock().expect("memory stream lock").len()
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The source side of a [`MemoryStream`]. Offsets are push counts.
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    stream: MemoryStream,
    available: Option<u64>,
}

impl MemorySource {
    /// A source named `name` reading `stream`.
    pub fn new(name: &str, stream: MemoryStream) -> Self {
        Self { name: name.to_string(), stream, available: None }
    }
}

fn as_index(offset: &Value) -> Result<u64> {
    offset.as_u64().ok_or_else(|| SluiceError::Checkpoint {
        location: "offsets".into(),
        message: format!("memory source offset {offset} is not a count"),
    })
}

#[async_trait]
impl Source for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }

    fn initial_offset(&self) -> Value {
        Value::from(0u64)
    }

    async fn restore(&mut self, _location: &CheckpointLocation, _through_batch: Option<u64>) -> Result<()> {
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.available = Some(self.stream.len() as u64);
        Ok(())
    }

    async fn plan_batch(&mut self, _location: &CheckpointLocation, _batch_id: u64, start: &Value) -> Result<Value> {
        let end = self.available.unwrap_or(self.stream.len() as u64).max(as_index(start)?);
        Ok(Value::from(end))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (as_index(start)? as usize, as_index(end)? as usize);
        let pushed = self.stream.pushed.lock().expect("memory stream lock");
        let batches = pushed.get(start..end).ok_or_else(|| SluiceError::Source {
            source_name: self.name.clone(),
            message: format!("offsets {start}..{end} were never pushed; push the same data again before restarting"),
        })?;
        Ok(SourceData { batches: batches.to_vec(), dropped_records: 0 })
    }
}
