//! The memory sink: each batch's output kept in process, for embedding and tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::Result;

/// Collected output by batch id; a replayed batch replaces its entry. Clones share the data.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    batches: Arc<Mutex<BTreeMap<u64, Vec<RecordBatch>>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The output of every batch so far, by batch id (batches with no rows included).
    pub fn batches(&self) -> BTreeMap<u64, Vec<RecordBatch>> {
        self.batches.lock().expect("memory sink lock").clone()
    }

    /// All output rows so far, in batch order.
    pub fn all(&self) -> Vec<RecordBatch> {
        self.batches().into_values().flatten().collect()
    }
}

impl Sink for MemorySink {
    /// `MemorySink`, as Spark's.
    fn description(&self) -> String {
        "MemorySink".to_string()
    }

    fn add_batch(&mut self, batch_id: u64, _schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let rows: Vec<RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        self.batches.lock().expect("memory sink lock").insert(batch_id, rows);
        Ok(())
    }
}
