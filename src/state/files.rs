//! The files of a store's partition in the checkpoint: finding those that make up a version,
//! decoding them into rows, and writing a snapshot from them in the background (Spark's
//! maintenance task), so the live store is never copied on the batch path.

use std::hash::BuildHasher;

use arrow::array::{Array, BinaryArray};
use bytes::Bytes;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;
use hashbrown::hash_table::{Entry, HashTable};

use crate::checkpoint::{framing, CheckpointLocation};
use crate::state::codec;
use crate::state::memory_rows::MemoryRows;
#[cfg(feature = "rocksdb")]
use crate::state::rocksdb_store::RocksDbRows;
use crate::Result;

/// Suffix of the in-memory store's snapshots, `<version>.snapshot`.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// The contents of the files that make up version `version` of the partition in `dir`, in the
/// order they apply: the newest snapshot (a file named `<v><suffix>`) at or below it, then every
/// later delta. A torn newest snapshot (a crash while it was written in the background) is
/// passed over, with a warning, for the snapshot before it and the deltas after that.
pub(crate) async fn partition_files(
    location: &CheckpointLocation,
    dir: &str,
    version: u64,
    suffix: &str,
) -> Result<Vec<(String, Bytes)>> {
    let listed = location.list(dir).await?;
    let mut snapshots: Vec<u64> = listed.iter().filter_map(|f| f.strip_suffix(suffix)?.parse::<u64>().ok()).collect();
    snapshots.sort_unstable();
    let newest_snapshot = snapshots.last().copied();
    snapshots.retain(|v| *v <= version);
    let mut files = Vec::new();
    let mut snapshot = snapshots.pop();
    if let Some(s) = snapshot.filter(|s| Some(*s) == newest_snapshot) {
        let name = format!("{dir}/{s}{suffix}");
        let bytes = location.get(&name).await?;
        let damage = match &bytes {
            Some(bytes) => framing::open(bytes).err().map(|d| d.to_string()),
            None => Some("missing".to_string()),
        };
        match (damage, bytes) {
            (None, Some(bytes)) => files.push((name, bytes)),
            (why, _) => {
                tracing::warn!(
                    file = %location.describe(&name),
                    "the newest state snapshot is torn ({}): restoring from the files before it",
                    why.unwrap_or_default()
                );
                snapshot = snapshots.pop();
            }
        }
    }
    let mut names = Vec::new();
    if let Some(s) = snapshot.filter(|_| files.is_empty()) {
        names.push(format!("{dir}/{s}{suffix}"));
    }
    let first_delta = snapshot.map_or(0, |s| s + 1);
    names.extend((first_delta..=version).map(|v| format!("{dir}/{v}.delta")));
    files.reserve(names.len());
    for name in names {
        let bytes = location.get(&name).await?.ok_or_else(|| {
            location.error(
                &name,
                "state file missing: the checkpoint is incomplete; restore it or start over with a new checkpoint location",
            )
        })?;
        files.push((name, bytes));
    }
    Ok(files)
}

/// The rows state files leave when applied in order, indexed where they lie: each live key points
/// at its newest row in the files' decoded columns, so rebuilding a version hashes each entry
/// once and copies no key or value (a snapshot encodes straight from the columns; a load copies
/// only the rows that remain). CPU work: run it off the async workers.
pub(crate) struct FileRows {
    /// The `(keys, values)` columns of every record batch of the files, in the order applied.
    columns: Vec<(BinaryArray, BinaryArray)>,
    /// Each live key: its hash, and the batch (in `columns`) and row of its newest value.
    index: HashTable<(u64, u32, u32)>,
}

impl FileRows {
    /// Decodes `files` (name, contents) in order, hashing keys with `hasher`.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming the file that is not a state file or fails its
    /// checksum, or that holds more than 2³² rows in one batch.
    pub(crate) fn decode(
        location: &CheckpointLocation,
        files: Vec<(String, Bytes)>,
        hasher: &impl BuildHasher,
    ) -> Result<Self> {
        let (mut columns, mut index) = (Vec::new(), HashTable::new());
        for (name, bytes) in files {
            let corrupted = |e: String| location.error(&name, format!("corrupted state file: {e}"));
            for (keys, values) in codec::decode_columns(bytes).map_err(|e| corrupted(e.to_string()))? {
                let batch = u32::try_from(columns.len()).map_err(|_| corrupted("too many record batches".into()))?;
                let rows = u32::try_from(keys.len()).map_err(|_| corrupted("too many rows in a batch".into()))?;
                columns.push((keys, values));
                let (keys, values) = &columns[batch as usize];
                for row in 0..rows {
                    let key = keys.value(row as usize);
                    let hash = hasher.hash_one(key);
                    let same_key =
                        |&(h, b, r): &(u64, u32, u32)| h == hash && columns[b as usize].0.value(r as usize) == key;
                    match (index.entry(hash, same_key, |e| e.0), values.is_valid(row as usize)) {
                        (Entry::Occupied(mut newest), true) => *newest.get_mut() = (hash, batch, row),
                        (Entry::Occupied(deleted), false) => drop(deleted.remove()),
                        (Entry::Vacant(absent), true) => drop(absent.insert((hash, batch, row))),
                        (Entry::Vacant(_), false) => {}
                    }
                }
            }
        }
        Ok(Self { columns, index })
    }

    /// Every live `(key, value)`, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.index.iter().map(|&(_, b, r)| {
            let (keys, values) = &self.columns[b as usize];
            (keys.value(r as usize), values.value(r as usize))
        })
    }

    /// The live rows as an in-memory table; the hashes are those of the `hasher` given to
    /// [`Self::decode`], which must be the table's.
    pub(crate) fn into_memory_rows(self) -> MemoryRows {
        let mut rows = MemoryRows::with_capacity(self.index.len());
        for &(hash, b, r) in &self.index {
            let (keys, values) = &self.columns[b as usize];
            rows.put(hash, keys.value(r as usize), values.value(r as usize));
        }
        rows
    }
}

/// Applies deltas in order to a RocksDB instance, one write each (CPU and disk work: run it off
/// the async workers).
#[cfg(feature = "rocksdb")]
pub(crate) fn apply_deltas(
    location: &CheckpointLocation,
    rows: RocksDbRows,
    deltas: Vec<(String, Bytes)>,
) -> Result<RocksDbRows> {
    for (name, bytes) in deltas {
        let mut batch = rocksdb::WriteBatch::default();
        codec::decode(bytes, |k, v| match v {
            Some(v) => batch.put(k, v),
            None => batch.delete(k),
        })
        .map_err(|e| location.error(&name, format!("corrupted state file: {e}")))?;
        rows.apply(batch)?;
    }
    Ok(rows)
}

/// Runs CPU-bound state work (decoding or encoding a whole partition) on a blocking thread, so a
/// large partition never holds one of the runtime's workers, where it would stall the batch's own
/// tasks queued behind it.
pub(crate) async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    SpawnedTask::spawn_blocking(work).join_unwind().await.map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
}

/// Writes `<version>.snapshot` of the in-memory partition in `dir`, rebuilt from the
/// checkpoint's files (so the batches go on with the live state meanwhile).
pub(crate) async fn write_snapshot(location: CheckpointLocation, dir: String, version: u64) -> Result<()> {
    let files = partition_files(&location, &dir, version, SNAPSHOT_SUFFIX).await?;
    let files_location = location.clone();
    let snapshot = run_blocking(move || {
        let rows = FileRows::decode(&files_location, files, &foldhash::fast::RandomState::default())?;
        codec::encode(rows.iter().map(|(k, v)| (k, Some(v))))
    })
    .await?;
    location.put(&format!("{dir}/{version}{SNAPSHOT_SUFFIX}"), snapshot).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&[u8], Option<&[u8]>)]) -> Bytes {
        codec::encode(entries.iter().copied()).unwrap()
    }

    #[test]
    fn files_applied_in_order_leave_each_key_at_its_newest_value_and_deleted_keys_out() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let files = vec![
            ("state/0/0/1.snapshot".to_string(), file(&[(b"a", Some(b"1")), (b"b", Some(b"1")), (b"c", Some(b"1"))])),
            ("state/0/0/2.delta".to_string(), file(&[(b"a", Some(b"2")), (b"b", None), (b"d", None)])),
            ("state/0/0/3.delta".to_string(), file(&[(b"b", Some(b"3")), (b"c", None), (b"", Some(b"e"))])),
        ];
        let hasher = foldhash::fast::RandomState::default();
        let rows = FileRows::decode(&location, files, &hasher).unwrap();
        let mut live: Vec<(&[u8], &[u8])> = rows.iter().collect();
        live.sort();
        let expected: Vec<(&[u8], &[u8])> = vec![(b"", b"e"), (b"a", b"2"), (b"b", b"3")];
        assert_eq!(live, expected);
        let table = rows.into_memory_rows();
        for (key, value) in expected {
            assert_eq!(table.get(hasher.hash_one(key), key), Some(value), "key {key:?}");
        }
        for gone in [b"c".as_slice(), b"d"] {
            assert_eq!(table.get(hasher.hash_one(gone), gone), None, "key {gone:?}");
        }
    }

    #[test]
    fn a_damaged_file_is_refused_by_name() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let good = file(&[(b"a", Some(b"1"))]);
        let torn = good.slice(..good.len() - 3);
        let files = vec![("state/0/0/1.delta".to_string(), good), ("state/0/0/2.delta".to_string(), torn)];
        let err = FileRows::decode(&location, files, &foldhash::fast::RandomState::default()).err().unwrap();
        assert!(err.to_string().contains("state/0/0/2.delta: corrupted state file"), "{err}");
    }
}
