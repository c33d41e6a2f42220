//! The memory source: batches pushed from Rust, for embedding and tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use super::{Source, SourceData};
use crate::checkpoint::CheckpointLocation;
use crate::{Result, SluiceError};

/// A stream of record batches pushed from Rust, made by
/// [`crate::StreamContext::register_memory_stream`] (which names it as a table); clones share the
/// stream.
///
/// Each [`MemoryStream::push`] is one offset: a batch reads every push since the last batch.
/// The data lives only in this process, so a restarted process must push the same data again to
/// replay (like Spark's `MemoryStream`). A push is released once a committed batch of every query
/// reading the stream has read it (Spark's `MemoryStream.commit` trims its batches), so a long
/// running stream holds only what its queries have not committed yet; a query started later on
/// the same stream cannot read the released pushes again.
#[derive(Debug, Clone)]
pub struct MemoryStream {
    schema: SchemaRef,
    pushed: Arc<Mutex<Pushed>>,
}

/// The pushes a [`MemoryStream`] still holds and the queries that read them.
#[derive(Debug, Default)]
struct Pushed {
    /// Pushes not yet read by a committed batch of every reader; the first is push `released`.
    batches: VecDeque<RecordBatch>,
    /// Number of pushes released (offsets below it can no longer be read).
    released: u64,
    /// Per reading [`MemorySource`] (by id), the end offset of its last committed batch.
    readers: BTreeMap<u64, u64>,
    next_reader: u64,
}

impl Pushed {
    /// Releases the pushes every reader has committed.
    fn release_committed(&mut self) {
        let Some(&committed) = self.readers.values().min() else { return };
        while self.released < committed && self.batches.pop_front().is_some() {
            self.released += 1;
        }
    }
}

impl MemoryStream {
    /// An empty stream of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema, pushed: Arc::new(Mutex::new(Pushed::default())) }
    }

    /// The schema of the stream.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pushed> {
        // A panic while the lock was held cannot leave `Pushed` half-updated: keep using it.
        self.pushed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.lock().batches.push_back(batch);
        Ok(())
    }

    /// Number of batches pushed so far, including those already released.
    pub fn len(&self) -> usize {
        let pushed = self.lock();
        pushed.released as usize + pushed.batches.len()
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of pushed batches the stream still holds: those some reading query has not
    /// committed yet.
    pub fn retained(&self) -> usize {
        self.lock().batches.len()
    }
}

/// The source side of a [`MemoryStream`]. Offsets are push counts.
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    stream: MemoryStream,
    /// This source's id among the stream's readers.
    reader: u64,
    available: Option<u64>,
}

impl MemorySource {
    /// A source named `name` reading `stream`; until it commits a batch, the stream keeps every
    /// push it still holds.
    pub fn new(name: &str, stream: MemoryStream) -> Self {
        let reader = {
            let mut pushed = stream.lock();
            let reader = pushed.next_reader;
            pushed.next_reader += 1;
            let released = pushed.released;
            pushed.readers.insert(reader, released);
            reader
        };
        Self { name: name.to_string(), stream, reader, available: None }
    }
}

impl Drop for MemorySource {
    /// A query that is gone no longer holds pushes back.
    fn drop(&mut self) {
        let mut pushed = self.stream.lock();
        pushed.readers.remove(&self.reader);
        pushed.release_committed();
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

    /// `MemoryStream[name]`, after Spark's `MemoryStream`.
    fn description(&self) -> String {
        format!("MemoryStream[{}]", self.name)
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
        let (start, end) = (as_index(start)?, as_index(end)?);
        let pushed = self.stream.lock();
        if start < pushed.released {
            return Err(SluiceError::Source {
                source_name: self.name.clone(),
                message: format!(
                    "offsets {start}..{end}: the first {} pushes were released after committed batches read them; \
                     a query that must read them again needs a new MemoryStream with the same pushes",
                    pushed.released
                ),
            });
        }
        if end < start || end > pushed.released + pushed.batches.len() as u64 {
            return Err(SluiceError::Source {
                source_name: self.name.clone(),
                message: format!(
                    "offsets {start}..{end} were never pushed; push the same data again before restarting"
                ),
            });
        }
        let range = (start - pushed.released) as usize..(end - pushed.released) as usize;
        let batches = pushed.batches.range(range).cloned().collect();
        Ok(SourceData { batches, dropped_records: 0 })
    }

    async fn commit(&mut self, _location: &CheckpointLocation, _batch_id: u64, end: &Value) -> Result<()> {
        let end = as_index(end)?;
        let mut pushed = self.stream.lock();
        pushed.readers.insert(self.reader, end);
        pushed.release_committed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn stream() -> MemoryStream {
        MemoryStream::new(Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])))
    }

    fn push(stream: &MemoryStream, v: i64) -> std::sync::Weak<dyn Array> {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![v]));
        let weak = Arc::downgrade(&column);
        stream.push(RecordBatch::try_new(stream.schema(), vec![column]).unwrap()).unwrap();
        weak
    }

    fn values(data: &SourceData) -> Vec<i64> {
        data.batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn a_committed_batch_releases_what_it_read() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let stream = stream();
        let mut source = MemorySource::new("s", stream.clone());
        let first = push(&stream, 1);
        push(&stream, 2);
        let end = source.plan_batch(&location, 0, &Value::from(0u64)).await.unwrap();
        assert_eq!(values(&source.read(&Value::from(0u64), &end).await.unwrap()), vec![1, 2]);
        assert_eq!(stream.retained(), 2, "an uncommitted batch may be read again");
        push(&stream, 3);
        source.commit(&location, 0, &end).await.unwrap();
        assert_eq!((stream.len(), stream.retained()), (3, 1));
        assert!(first.upgrade().is_none(), "the released batch's memory is freed");

        let next = source.plan_batch(&location, 1, &end).await.unwrap();
        assert_eq!(values(&source.read(&end, &next).await.unwrap()), vec![3], "offsets stay push counts");
        let err = source.read(&Value::from(0u64), &end).await.unwrap_err().to_string();
        assert!(err.contains("released after committed batches read them"), "{err}");
    }

    #[tokio::test]
    async fn a_push_is_kept_until_every_reading_query_committed_it() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let stream = stream();
        let mut fast = MemorySource::new("s", stream.clone());
        let mut slow = MemorySource::new("s", stream.clone());
        push(&stream, 1);
        push(&stream, 2);
        fast.commit(&location, 0, &Value::from(2u64)).await.unwrap();
        assert_eq!(stream.retained(), 2);
        slow.commit(&location, 0, &Value::from(1u64)).await.unwrap();
        assert_eq!(stream.retained(), 1);
        assert_eq!(values(&slow.read(&Value::from(1u64), &Value::from(2u64)).await.unwrap()), vec![2]);
        drop(slow);
        assert_eq!(stream.retained(), 0, "a dropped query holds nothing back");
        let err = fast.read(&Value::from(2u64), &Value::from(3u64)).await.unwrap_err().to_string();
        assert!(err.contains("never pushed"), "{err}");
    }
}
