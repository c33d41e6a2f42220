//! The offset log, the commit log and the query metadata: small JSON documents, one per batch.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::CheckpointLocation;
use crate::Result;

/// What `offsets/N` records before batch `N` reads any data (DESIGN §1 step 1): enough to run the
/// batch again, identically, after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetEntry {
    /// The batch id `N`.
    pub batch_id: u64,
    /// Wall-clock time the batch was planned, ms since the epoch (Spark's `batchTimestampMs`).
    pub timestamp_ms: i64,
    /// `W_N`: the watermark for emission and eviction, ms since the epoch.
    pub watermark_ms: i64,
    /// `W_{N-1}`: the watermark for dropping late rows, ms since the epoch.
    pub late_watermark_ms: i64,
    /// Per source: its `[start, end)` offsets for this batch, in the source's own JSON form.
    pub sources: BTreeMap<String, SourceRange>,
    /// Per watermarked source: `max event time - delay` before this batch, ms since the epoch.
    pub input_watermarks_ms: BTreeMap<String, i64>,
}

/// A source's offset range for one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRange {
    /// Inclusive start.
    pub start: serde_json::Value,
    /// Exclusive end.
    pub end: serde_json::Value,
}

/// What `commits/N` records once the sink has batch `N`'s output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitEntry {
    /// The batch id `N`.
    pub batch_id: u64,
    /// Per watermarked source: `max event time - delay` after this batch, ms since the epoch.
    pub input_watermarks_ms: BTreeMap<String, i64>,
    /// `W_{N+1}`, the watermark batch `N+1` will use (Spark's `nextBatchWatermarkMs`).
    pub next_watermark_ms: i64,
}

/// Settings fixed by a query's first run (`metadata`): changing them would scatter existing state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryMetadata {
    /// A random id naming the query, kept across restarts (Spark's query `id`).
    pub id: String,
    /// Number of state partitions `P`; keys are assigned to a partition by hash.
    pub state_partitions: usize,
    /// The sluice version that created the checkpoint; state files use arrow's row format.
    pub sluice_version: String,
}

/// The largest batch id, Spark's (a `Long`): a log entry past it is corrupted, and the ids of the
/// batches after any valid one exist.
pub const MAX_BATCH_ID: u64 = i64::MAX as u64;

/// A log of JSON entries named by batch id under one directory of the checkpoint.
#[derive(Debug, Clone)]
pub struct BatchLog {
    location: CheckpointLocation,
    dir: String,
}

impl BatchLog {
    /// The log in `dir` (e.g. `offsets`) of `location`.
    pub fn new(location: CheckpointLocation, dir: &str) -> Self {
        Self { location, dir: dir.to_string() }
    }

    /// Writes entry `batch_id`, replacing an entry of an earlier attempt of the same batch.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it cannot be written.
    pub async fn write<T: Serialize>(&self, batch_id: u64, entry: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(entry).expect("log entries serialize");
        self.location.put(&format!("{}/{batch_id}", self.dir), json.into()).await
    }

    /// Reads entry `batch_id`, `None` if absent.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it exists but is not a valid entry (a corrupted
    /// checkpoint): the message names the file.
    pub async fn read<T: DeserializeOwned>(&self, batch_id: u64) -> Result<Option<T>> {
        let relative = format!("{}/{batch_id}", self.dir);
        let Some(bytes) = self.location.get(&relative).await? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            self.location.error(
                &relative,
                format!("corrupted log entry ({e}); restore the file or start over with a new checkpoint location"),
            )
        })
    }

    /// Reads entry `batch_id`, which the log lists.
    ///
    /// # Errors
    /// As [`Self::read`], and [`crate::SluiceError::Checkpoint`] when the entry is missing (deleted
    /// while the query started).
    pub async fn read_listed<T: DeserializeOwned>(&self, batch_id: u64) -> Result<T> {
        self.read(batch_id).await?.ok_or_else(|| {
            self.location.error(
                &format!("{}/{batch_id}", self.dir),
                "log entry disappeared; is another query using this checkpoint?",
            )
        })
    }

    /// Ids of all entries, ascending; names that are not batch ids are ignored.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the listing fails, or naming the entry whose id is
    /// past [`MAX_BATCH_ID`] (a corrupted checkpoint: the next batch id would not exist).
    pub async fn batch_ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for name in self.location.list(&self.dir).await? {
            let Ok(id) = name.parse::<u64>() else { continue };
            if id > MAX_BATCH_ID {
                return Err(self.location.error(
                    &format!("{}/{name}", self.dir),
                    format!(
                        "batch id past the largest, {MAX_BATCH_ID}: a corrupted log entry; remove it or start over with a new \
                         checkpoint location"
                    ),
                ));
            }
            ids.push(id);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest batch id in the log.
    ///
    /// # Errors
    /// As [`Self::batch_ids`].
    pub async fn latest(&self) -> Result<Option<u64>> {
        Ok(self.batch_ids().await?.last().copied())
    }

    /// Deletes entries with ids below `keep_from` (Spark's `minBatchesToRetain`).
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a delete fails.
    pub async fn purge_before(&self, keep_from: u64) -> Result<()> {
        for id in self.batch_ids().await?.into_iter().filter(|id| *id < keep_from) {
            self.location.delete(&format!("{}/{id}", self.dir)).await?;
        }
        Ok(())
    }
}
