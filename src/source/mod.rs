//! Sources: replayable streams of Arrow record batches addressed by offsets.
//!
//! Public here is [`MemoryStream`], the stream an embedding program or a test pushes record
//! batches into (register one with [`crate::StreamContext::register_memory_stream`]), and the
//! [`nexmark`] generator, which `sluice bench nexmark` times alone. The other
//! sources (files, Kafka, rate, nexmark, socket) are declared in SQL (`CREATE TABLE ... WITH (connector =
//! ...)`) or with [`crate::StreamContext::read_stream`]; user-written sources are not supported,
//! so the source trait is internal.
//!
//! Internally a source hands the micro-batch loop an end offset for each batch (capped by its
//! rate limit), and later the rows between two offsets. Reading the same range again returns the
//! same rows, which is what lets a crashed batch run again identically (DESIGN §1). The socket
//! source is the exception, as in Spark: its lines live only in the process.

pub(crate) mod backpressure;
pub(crate) mod file;
pub(crate) mod kafka;
pub(crate) mod memory;
pub mod nexmark;
pub(crate) mod rate;
pub(crate) mod seen_files;
pub(crate) mod socket;

pub use memory::MemoryStream;

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde_json::Value;

use crate::checkpoint::CheckpointLocation;
use crate::Result;
use backpressure::BatchFeedback;

/// Rows a source read for one batch.
#[derive(Debug, Default)]
pub(crate) struct SourceData {
    /// The rows, in the source's schema.
    pub batches: Vec<RecordBatch>,
    /// Malformed records skipped under `bad_data = 'drop'`.
    pub dropped_records: u64,
}

/// A replayable source of an unbounded input table.
#[async_trait]
pub(crate) trait Source: Send + Sync + std::fmt::Debug {
    /// The source's table name.
    fn name(&self) -> &str;

    /// The source as progress reports describe it (Spark's `SourceProgress.description`);
    /// by default its name.
    fn description(&self) -> String {
        self.name().to_string()
    }

    /// The offset before any data.
    fn initial_offset(&self) -> Value;

    /// Reloads what the source recorded in the checkpoint for batches `0..=through_batch`
    /// (`None`: a new query), before the query resumes.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the records are unreadable or inconsistent.
    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()>;

    /// Limits every later batch to the data available now (the `available-now` trigger).
    ///
    /// # Errors
    /// [`crate::SluiceError::Source`] when the source cannot be listed.
    async fn freeze_available(&mut self) -> Result<()>;

    /// Tells the source which columns of its schema the query reads (ascending indexes), once,
    /// before the first batch: it may return the other columns empty (an empty string, a zero)
    /// instead of producing their values, which nothing reads (column pruning: Spark's
    /// `SupportsPushDownRequiredColumns`). A replayed batch returns the same values in the
    /// columns read. The default produces every column.
    fn prune_columns(&mut self, _required: &[usize]) {}

    /// Lifts the source's rate limit (e.g. `max_files_per_trigger`) for the batches that follow:
    /// the next batch takes everything available (Spark's `ReadAllAvailable` for `Trigger.Once`).
    fn read_all_available(&mut self) {}

    /// Chooses the end offset of batch `batch_id` starting at `start`, at most the source's rate
    /// limit further; returns `start` when there is nothing new. Whatever the source must remember
    /// to replay the range is written to `location` before this returns.
    ///
    /// # Errors
    /// [`crate::SluiceError::Source`] when the source cannot be listed, or a checkpoint error.
    async fn plan_batch(&mut self, location: &CheckpointLocation, batch_id: u64, start: &Value) -> Result<Value>;

    /// The rows in `[start, end)`.
    ///
    /// # Errors
    /// [`crate::SluiceError::MalformedRecord`] (naming file and line) for a bad record unless the
    /// source drops them; [`crate::SluiceError::Io`] for unreadable data.
    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData>;

    /// How long until the source has new data, when it knows (a rate-limited generator does): an
    /// idle query under the default trigger looks again then instead of after its idle poll
    /// interval (100 ms). `None` (the default): not known.
    fn next_data_in(&self) -> Option<std::time::Duration> {
        None
    }

    /// Tells the source how the batch it just read went (rows, duration, the trigger's interval),
    /// after the batch committed: what an adaptive rate limit (backpressure) adjusts to. The
    /// default ignores it.
    fn batch_finished(&mut self, _feedback: &BatchFeedback) {}

    /// Source-specific counters for the batch's progress ([`crate::SourceProgress::metrics`]),
    /// taken after the batch is read; by default none.
    fn progress_metrics(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Informs the source that batch `batch_id`, which read up to `end`, is committed: no batch
    /// will read an offset below `end` again, so the source may release what it kept to replay
    /// them and compact its log (Spark's `Source.commit(end)`). The default keeps everything.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the source's log cannot be written.
    async fn commit(&mut self, _location: &CheckpointLocation, _batch_id: u64, _end: &Value) -> Result<()> {
        Ok(())
    }

    /// The entries of the source's own log (`sources/<name>/`) below batch `keep_from` that a
    /// restart no longer reads, as paths in the checkpoint: the query deletes them when it purges
    /// its offset and commit logs (Spark's `minBatchesToRetain`). The default has no log.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the log cannot be listed.
    async fn stale_before(&mut self, _location: &CheckpointLocation, _keep_from: u64) -> Result<Vec<String>> {
        Ok(vec![])
    }
}
