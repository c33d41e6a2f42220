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
    /// A random id naming the query, kept across restarts (Spark's query `id`, a UUID). Empty in
    /// a `metadata` written without one; the query then gives itself one.
    #[serde(default)]
    pub id: String,
    /// Number of state partitions `P`; keys are assigned to a partition by hash.
    pub state_partitions: usize,
    /// The sluice version that created the checkpoint; state files use arrow's row format.
    pub sluice_version: String,
    /// How state rows are assigned to partitions: 0 (absent) in checkpoints written before
    /// [`STATE_LAYOUT`], which hashed each stored key; [`STATE_LAYOUT`]: by DataFusion's hash of
    /// the operator's keys (see [`crate::operator::exchange`]).
    #[serde(default)]
    pub state_layout: u32,
}

/// The state layout new checkpoints are written with (see [`QueryMetadata::state_layout`]).
pub const STATE_LAYOUT: u32 = 1;

/// Suffix of a compacted entry, `N.compact` (Spark's `CompactibleFileStreamLog`).
const COMPACT_SUFFIX: &str = ".compact";

/// The entries a log holds, ascending: deltas `N` and compacted entries `N.compact`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEntries {
    /// Ids of the per-batch entries `N`.
    pub deltas: Vec<u64>,
    /// Ids of the compacted entries `N.compact`, each standing for every entry up to `N`.
    pub compacts: Vec<u64>,
}

/// The largest batch id, Spark's (a `Long`): a log entry past it is corrupted, and the ids of the
/// batches after any valid one exist.
pub const MAX_BATCH_ID: u64 = i64::MAX as u64;

/// A log of JSON entries named by batch id under one directory of the checkpoint.
///
/// A log may also be compacted, as Spark's `CompactibleFileStreamLog`: `N.compact` holds what the
/// entries up to `N` add up to, so a restart reads it and the few entries after it instead of
/// every entry ever written, and the entries before it can be deleted.
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

    fn relative(&self, batch_id: u64, compact: bool) -> String {
        format!("{}/{batch_id}{}", self.dir, if compact { COMPACT_SUFFIX } else { "" })
    }

    /// Writes entry `batch_id`, replacing an entry of an earlier attempt of the same batch.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it cannot be written.
    pub async fn write<T: Serialize>(&self, batch_id: u64, entry: &T) -> Result<()> {
        let json = serde_json::to_vec_pretty(entry).expect("log entries serialize");
        self.location.put(&self.relative(batch_id, false), json.into()).await
    }

    /// Writes the compacted entry `N.compact` for `batch_id`: what the entries through `batch_id`
    /// add up to. It is one line of JSON, as it may be large.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it cannot be written.
    pub async fn write_compact<T: Serialize>(&self, batch_id: u64, entry: &T) -> Result<()> {
        let json = serde_json::to_vec(entry).expect("log entries serialize");
        self.location.put(&self.relative(batch_id, true), json.into()).await
    }

    async fn read_relative<T: DeserializeOwned>(&self, relative: &str) -> Result<Option<T>> {
        let Some(bytes) = self.location.get(relative).await? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            self.location.error(
                relative,
                format!("corrupted log entry ({e}); restore the file or start over with a new checkpoint location"),
            )
        })
    }

    /// Reads entry `batch_id`, `None` if absent.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it exists but is not a valid entry (a corrupted
    /// checkpoint): the message names the file.
    pub async fn read<T: DeserializeOwned>(&self, batch_id: u64) -> Result<Option<T>> {
        self.read_relative(&self.relative(batch_id, false)).await
    }

    async fn read_listed_relative<T: DeserializeOwned>(&self, relative: &str) -> Result<T> {
        self.read_relative(relative).await?.ok_or_else(|| {
            self.location.error(relative, "log entry disappeared; is another query using this checkpoint?")
        })
    }

    /// Reads entry `batch_id`, which the log lists.
    ///
    /// # Errors
    /// As [`Self::read`], and [`crate::SluiceError::Checkpoint`] when the entry is missing (deleted
    /// while the query started).
    pub async fn read_listed<T: DeserializeOwned>(&self, batch_id: u64) -> Result<T> {
        self.read_listed_relative(&self.relative(batch_id, false)).await
    }

    /// Reads the compacted entry `N.compact` of `batch_id`, which the log lists.
    ///
    /// # Errors
    /// As [`Self::read_listed`].
    pub async fn read_compact<T: DeserializeOwned>(&self, batch_id: u64) -> Result<T> {
        self.read_listed_relative(&self.relative(batch_id, true)).await
    }

    /// The log's entries; names that are neither `N` nor `N.compact` are ignored.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the listing fails, or naming the entry whose id is
    /// past [`MAX_BATCH_ID`] (a corrupted checkpoint: the next batch id would not exist).
    pub async fn entries(&self) -> Result<LogEntries> {
        let mut entries = LogEntries::default();
        for name in self.location.list(&self.dir).await? {
            let (id, list) = match name.strip_suffix(COMPACT_SUFFIX) {
                Some(id) => (id, &mut entries.compacts),
                None => (name.as_str(), &mut entries.deltas),
            };
            let Ok(id) = id.parse::<u64>() else { continue };
            if id > MAX_BATCH_ID {
                return Err(self.location.error(
                    &format!("{}/{name}", self.dir),
                    format!(
                        "batch id past the largest, {MAX_BATCH_ID}: a corrupted log entry; remove it or start over with a new \
                         checkpoint location"
                    ),
                ));
            }
            list.push(id);
        }
        entries.deltas.sort_unstable();
        entries.compacts.sort_unstable();
        Ok(entries)
    }

    /// Ids of all (delta) entries, ascending.
    ///
    /// # Errors
    /// As [`Self::entries`].
    pub async fn batch_ids(&self) -> Result<Vec<u64>> {
        Ok(self.entries().await?.deltas)
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
            self.location.delete(&self.relative(id, false)).await?;
        }
        Ok(())
    }

    /// Deletes the entries and compacted entries below `keep_from` that the latest compacted
    /// entry stands for; nothing when the log has no compacted entry. Restarting needs only the
    /// latest compacted entry and the entries after it.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the listing or a delete fails.
    pub async fn purge_compacted_before(&self, keep_from: u64) -> Result<()> {
        let entries = self.entries().await?;
        let Some(&latest_compact) = entries.compacts.last() else { return Ok(()) };
        let below = keep_from.min(latest_compact);
        for (ids, compact) in [(&entries.deltas, false), (&entries.compacts, true)] {
            for id in ids.iter().filter(|id| **id < below) {
                self.location.delete(&self.relative(*id, compact)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn purging_a_compacted_log_keeps_the_latest_compacted_entry_and_those_after_it() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let log = BatchLog::new(location.clone(), "sources/s");
        for id in 0..25 {
            log.write(id, &id).await.unwrap();
        }
        log.write_compact(9, &"through 9").await.unwrap();
        log.write_compact(19, &"through 19").await.unwrap();
        location.put("sources/s/notes.txt", "x".into()).await.unwrap();
        assert_eq!(log.entries().await.unwrap().compacts, vec![9, 19]);
        assert_eq!(log.latest().await.unwrap(), Some(24), "compacted entries are not batch entries");

        log.purge_compacted_before(5).await.unwrap();
        let entries = log.entries().await.unwrap();
        assert_eq!((entries.deltas.first(), entries.compacts.clone()), (Some(&5), vec![9, 19]));

        log.purge_compacted_before(100).await.unwrap();
        let entries = log.entries().await.unwrap();
        assert_eq!(entries.deltas, (19..25).collect::<Vec<u64>>(), "nothing the latest compacted entry needs");
        assert_eq!(entries.compacts, vec![19]);
        assert_eq!(log.read_compact::<String>(19).await.unwrap(), "through 19");
        assert!(log.read_compact::<String>(9).await.unwrap_err().to_string().contains("9.compact"));
    }
}
