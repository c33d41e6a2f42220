//! The offset log, the commit log and the query metadata: small JSON documents, one per batch.
//!
//! A log entry is `v1` and a newline (the format version, as Spark's logs begin), the JSON
//! document, then the checkpoint's framing trailer (a CRC-32, see [`super::framing`]). Entries
//! written before sluice had versions and checksums are bare JSON documents; they are still read
//! (see [`decode_entry`]), and every entry written from now on has both.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{framing, CheckpointLocation};
use crate::Result;

/// The format version of the log entries this version writes, and the newest it reads.
pub const LOG_FORMAT_VERSION: u32 = 1;

/// Encodes `entry` as a log entry: the version line, its JSON (indented if `pretty`), the trailer.
pub fn encode_entry<T: Serialize>(entry: &T, pretty: bool) -> Bytes {
    let mut bytes = format!("v{LOG_FORMAT_VERSION}\n").into_bytes();
    let json = if pretty { serde_json::to_vec_pretty(entry) } else { serde_json::to_vec(entry) };
    bytes.extend(json.expect("log entries serialize"));
    framing::seal(bytes)
}

/// Why a log entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// The file is torn: empty, cut short or failing its checksum (or, in the format without a
    /// checksum, not a whole JSON document). A crash while it was written leaves such a file.
    Torn(String),
    /// The file is whole (its checksum matches) but is not an entry this version reads: a newer
    /// format version, or a document of another shape.
    Invalid(String),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Torn(why) | EntryError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Decodes a log entry written by [`encode_entry`], or a bare JSON document (the format of the
/// entries written before versions and checksums).
///
/// # Errors
/// [`EntryError::Torn`] for an empty, truncated or checksum-failing file (and for a file without
/// a trailer that is not a whole entry of the earlier format); [`EntryError::Invalid`] for a whole
/// file of another format version or shape.
pub fn decode_entry<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, EntryError> {
    let body = match framing::open(bytes) {
        Ok(body) => body,
        Err(framing::Damage::NoTrailer) => {
            return serde_json::from_slice(bytes)
                .map_err(|e| EntryError::Torn(format!("{} ({e})", framing::Damage::NoTrailer)))
        }
        Err(damage) => return Err(EntryError::Torn(damage.to_string())),
    };
    let (line, json) = body.split_at(body.iter().position(|b| *b == b'\n').map_or(0, |at| at + 1));
    let version = std::str::from_utf8(line).ok().and_then(|l| l.trim_end().strip_prefix('v')?.parse::<u32>().ok());
    match version {
        Some(LOG_FORMAT_VERSION) => {
            serde_json::from_slice(json).map_err(|e| EntryError::Invalid(format!("not a valid entry: {e}")))
        }
        Some(newer) => Err(EntryError::Invalid(format!(
            "written in log format v{newer} by a newer sluice; this version reads v{LOG_FORMAT_VERSION}: run the query \
             with the version that wrote it"
        ))),
        None => Err(EntryError::Invalid("no format version line (`v1`) at its head".to_string())),
    }
}

/// A log entry as read, before recovery decides what a damaged one means.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadEntry<T> {
    /// No such file.
    Missing,
    /// A torn file (see [`EntryError::Torn`]), with why.
    Torn(String),
    /// A valid entry.
    Valid(T),
}

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
    /// The encoding of the state files' keys and values: arrow's row format, which arrow documents
    /// as free to change between releases, so the exact `arrow-row` release that wrote them
    /// ([`STATE_ENCODING`]). Empty in checkpoints written before it was recorded, all by
    /// `arrow-row` 59.3.2; such a checkpoint is given the current encoding at its next start.
    #[serde(default)]
    pub state_encoding: String,
    /// The state store the query was first started with, kept by every restart (as Spark keeps
    /// its state store provider): `memory` or `rocksdb`. Empty in checkpoints written before it
    /// was recorded, all by the in-memory store.
    #[serde(default)]
    pub state_store: String,
    /// How the watermarks of several inputs combine, `min` or `max`, fixed at the first start as
    /// Spark records `spark.sql.streaming.multipleWatermarkPolicy` in its offset log: a restart
    /// with another setting keeps it, so that the watermarks the state was evicted under do not
    /// change. Empty in checkpoints written before it was recorded; their next start records the
    /// setting it runs with.
    #[serde(default)]
    pub watermark_policy: String,
}

/// The state layout new checkpoints are written with (see [`QueryMetadata::state_layout`]).
pub const STATE_LAYOUT: u32 = 1;

/// The encoding of state keys and values this build writes and reads (see
/// [`QueryMetadata::state_encoding`]): `arrow-row` is pinned to this exact release in
/// `Cargo.toml`, and a unit test checks `Cargo.lock` resolves it.
pub const STATE_ENCODING: &str = "arrow-row 59.3.2";

/// Suffix of a compacted entry, `N.compact` (Spark's `CompactibleFileStreamLog`).
pub(crate) const COMPACT_SUFFIX: &str = ".compact";

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
        self.location.put(&self.relative(batch_id, false), encode_entry(entry, true)).await
    }

    /// Writes the compacted entry `N.compact` for `batch_id`: what the entries through `batch_id`
    /// add up to. It is one line of JSON, as it may be large.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it cannot be written.
    pub async fn write_compact<T: Serialize>(&self, batch_id: u64, entry: &T) -> Result<()> {
        self.location.put(&self.relative(batch_id, true), encode_entry(entry, false)).await
    }

    /// The file of entry `batch_id` in the checkpoint, for messages.
    pub fn describe(&self, batch_id: u64) -> String {
        self.location.describe(&self.relative(batch_id, false))
    }

    /// Error naming entry `batch_id`.
    pub fn error(&self, batch_id: u64, message: impl Into<String>) -> crate::SluiceError {
        self.location.error(&self.relative(batch_id, false), message)
    }

    /// The error for `relative`, whole or torn but not a valid entry.
    fn corrupted(&self, relative: &str, why: &str) -> crate::SluiceError {
        self.location.error(
            relative,
            format!("corrupted log entry ({why}); restore the file or start over with a new checkpoint location"),
        )
    }

    async fn read_entry_relative<T: DeserializeOwned>(&self, relative: &str) -> Result<ReadEntry<T>> {
        let Some(bytes) = self.location.get(relative).await? else { return Ok(ReadEntry::Missing) };
        match decode_entry(&bytes) {
            Ok(entry) => Ok(ReadEntry::Valid(entry)),
            Err(EntryError::Torn(why)) => Ok(ReadEntry::Torn(why)),
            Err(EntryError::Invalid(why)) => Err(self.corrupted(relative, &why)),
        }
    }

    /// The entry `read` from `relative`, which the log listed: an error unless valid.
    fn expect_listed<T>(&self, relative: &str, read: ReadEntry<T>) -> Result<T> {
        match read {
            ReadEntry::Valid(entry) => Ok(entry),
            ReadEntry::Torn(why) => Err(self.corrupted(relative, &why)),
            ReadEntry::Missing => {
                Err(self.location.error(relative, "log entry disappeared; is another query using this checkpoint?"))
            }
        }
    }

    /// Reads entry `batch_id`, telling a torn file (which recovery may treat as never written
    /// when it is the newest) from a missing or valid one.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming the file when it cannot be read, or is whole but
    /// not a valid entry (see [`EntryError::Invalid`]).
    pub async fn read_entry<T: DeserializeOwned>(&self, batch_id: u64) -> Result<ReadEntry<T>> {
        self.read_entry_relative(&self.relative(batch_id, false)).await
    }

    async fn read_listed_relative<T: DeserializeOwned>(&self, relative: &str) -> Result<T> {
        let read = self.read_entry_relative(relative).await?;
        self.expect_listed(relative, read)
    }

    /// Reads entry `batch_id`, which the log lists.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming the file when it is not a valid entry (a
    /// corrupted checkpoint, torn or not) or is missing (deleted while the query started).
    pub async fn read_listed<T: DeserializeOwned>(&self, batch_id: u64) -> Result<T> {
        self.read_listed_relative(&self.relative(batch_id, false)).await
    }

    /// Reads the compacted entry `N.compact` of `batch_id`, which the log lists. When it is torn
    /// and `newest` (the newest compacted entry: a crash while writing it, on a file system that
    /// does not keep renames atomic), it counts as never written: it is deleted with a warning
    /// and the result is `None`, for the caller to read the one before it and the entries since
    /// (see [`Self::stale_compacted_before`]).
    ///
    /// # Errors
    /// As [`Self::read_listed`]; also when a torn newest entry cannot be deleted.
    pub async fn read_compact<T: DeserializeOwned>(&self, batch_id: u64, newest: bool) -> Result<Option<T>> {
        let relative = self.relative(batch_id, true);
        match self.read_entry_relative(&relative).await? {
            ReadEntry::Torn(why) if newest => {
                tracing::warn!(
                    file = %self.location.describe(&relative),
                    "the newest compacted log entry is torn ({why}): read from the one before it and the entries since"
                );
                self.location.delete(&relative).await?;
                Ok(None)
            }
            read => self.expect_listed(&relative, read).map(Some),
        }
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

    /// The entries with ids below `keep_from`, which a purge deletes (Spark's
    /// `minBatchesToRetain`), as paths in the checkpoint.
    ///
    /// # Errors
    /// As [`Self::entries`].
    pub async fn stale_before(&self, keep_from: u64) -> Result<Vec<String>> {
        let ids = self.batch_ids().await?;
        Ok(ids.into_iter().filter(|id| *id < keep_from).map(|id| self.relative(id, false)).collect())
    }

    /// The entries and compacted entries below `keep_from` that the compacted entry before the
    /// latest stands for, as paths in the checkpoint; none when the log has fewer than two
    /// compacted entries. Restarting needs the latest compacted entry and the entries after it;
    /// should a crash tear that newest file, the one before it and the entries after that one
    /// stand in for it.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the listing fails.
    pub async fn stale_compacted_before(&self, keep_from: u64) -> Result<Vec<String>> {
        let entries = self.entries().await?;
        let [.., fallback, _latest] = entries.compacts[..] else { return Ok(vec![]) };
        let below = keep_from.min(fallback);
        let mut stale = Vec::new();
        for (ids, compact) in [(&entries.deltas, false), (&entries.compacts, true)] {
            stale.extend(ids.iter().filter(|id| **id < below).map(|id| self.relative(*id, compact)));
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_a_version_and_a_checksum_and_the_earlier_bare_json_still_reads() {
        let entry =
            CommitEntry { batch_id: 7, input_watermarks_ms: BTreeMap::from([("s".into(), 5)]), next_watermark_ms: 9 };
        let bytes = encode_entry(&entry, true);
        assert!(bytes.starts_with(b"v1\n{"), "{bytes:?}");
        assert_eq!(decode_entry::<CommitEntry>(&bytes), Ok(entry.clone()));
        assert_eq!(decode_entry::<CommitEntry>(&encode_entry(&entry, false)), Ok(entry.clone()));
        let bare = serde_json::to_vec(&entry).unwrap();
        assert_eq!(decode_entry::<CommitEntry>(&bare), Ok(entry.clone()), "the format before checksums");

        let torn = |bytes: &[u8]| matches!(decode_entry::<CommitEntry>(bytes), Err(EntryError::Torn(_)));
        assert!(torn(b""));
        assert!(torn(&bare[..bare.len() / 2]), "a bare entry cut short");
        for cut in 1..bytes.len() {
            assert!(torn(&bytes[..cut]), "cut to {cut} bytes");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[at] ^= 0xff;
            assert!(torn(&flipped), "byte {at} flipped");
        }
        let newer = framing::seal(b"v2\n{}".to_vec());
        let err = decode_entry::<CommitEntry>(&newer).unwrap_err();
        assert!(matches!(&err, EntryError::Invalid(why) if why.contains("v2") && why.contains("newer")), "{err:?}");
        let other_shape = encode_entry(&"a string", true);
        assert!(matches!(decode_entry::<CommitEntry>(&other_shape), Err(EntryError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_torn_entry_is_told_apart_from_a_missing_or_invalid_one() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let log = BatchLog::new(location.clone(), "commits");
        log.write(0, &1u64).await.unwrap();
        assert_eq!(log.read_entry::<u64>(0).await.unwrap(), ReadEntry::Valid(1));
        assert_eq!(log.read_entry::<u64>(1).await.unwrap(), ReadEntry::Missing);
        location.put("commits/1", Bytes::new()).await.unwrap();
        assert!(matches!(log.read_entry::<u64>(1).await.unwrap(), ReadEntry::Torn(_)));
        let err = log.read_listed::<u64>(1).await.unwrap_err().to_string();
        assert!(err.contains("commits/1") && err.contains("corrupted"), "{err}");
        location.put("commits/2", framing::seal(b"v9\n1".to_vec())).await.unwrap();
        let err = log.read_entry::<u64>(2).await.unwrap_err().to_string();
        assert!(err.contains("commits/2") && err.contains("v9"), "{err}");
    }

    #[tokio::test]
    async fn purging_a_compacted_log_keeps_the_two_latest_compacted_entries_and_those_after_them() {
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

        location.delete_all(log.stale_compacted_before(5).await.unwrap()).await.unwrap();
        let entries = log.entries().await.unwrap();
        assert_eq!((entries.deltas.first(), entries.compacts.clone()), (Some(&5), vec![9, 19]));

        location.delete_all(log.stale_compacted_before(100).await.unwrap()).await.unwrap();
        let entries = log.entries().await.unwrap();
        assert_eq!(entries.deltas, (9..25).collect::<Vec<u64>>(), "what 9.compact needs, should 19.compact be torn");
        assert_eq!(entries.compacts, vec![9, 19]);

        log.write_compact(29, &"through 29").await.unwrap();
        location.delete_all(log.stale_compacted_before(100).await.unwrap()).await.unwrap();
        let entries = log.entries().await.unwrap();
        assert_eq!(entries.deltas, (19..25).collect::<Vec<u64>>(), "nothing the two latest compacted entries need");
        assert_eq!(entries.compacts, vec![19, 29]);
        assert_eq!(log.read_compact::<String>(19, false).await.unwrap().as_deref(), Some("through 19"));
        assert!(log.read_compact::<String>(9, false).await.unwrap_err().to_string().contains("9.compact"));

        // A torn newest compacted entry counts as never written; a torn older one is an error.
        location.put("sources/s/29.compact", "{\"trunc".into()).await.unwrap();
        let err = log.read_compact::<String>(29, false).await.unwrap_err().to_string();
        assert!(err.contains("29.compact") && err.contains("corrupted"), "{err}");
        assert_eq!(log.read_compact::<String>(29, true).await.unwrap(), None);
        assert_eq!(log.entries().await.unwrap().compacts, vec![19], "the torn file is deleted");
    }
}
