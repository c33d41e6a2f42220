//! The files of a store's partition in the checkpoint: finding those that make up a version,
//! decoding them into rows, and writing a snapshot from them in the background (Spark's
//! maintenance task), so the live store is never copied on the batch path.

use std::hash::BuildHasher;

use bytes::Bytes;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;

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

/// Decodes state files in order into one in-memory table, its keys hashed by `hasher` (CPU
/// work: run it off the async workers).
pub(crate) fn apply_files(
    location: &CheckpointLocation,
    files: Vec<(String, Bytes)>,
    hasher: &impl BuildHasher,
) -> Result<MemoryRows> {
    let mut rows = MemoryRows::default();
    for (name, bytes) in files {
        codec::decode(bytes, |k, v| {
            let hash = hasher.hash_one(k);
            match v {
                Some(v) => {
                    rows.put(hash, k, v);
                }
                None => {
                    rows.take(hash, k);
                }
            }
        })
        .map_err(|e| location.error(&name, format!("corrupted state file: {e}")))?;
    }
    Ok(rows)
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
        let rows = apply_files(&files_location, files, &foldhash::fast::RandomState::default())?;
        codec::encode(rows.iter().map(|(k, v)| (k, Some(v))))
    })
    .await?;
    location.put(&format!("{dir}/{version}{SNAPSHOT_SUFFIX}"), snapshot).await
}
