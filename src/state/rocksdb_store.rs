//! The RocksDB state store's rows: one RocksDB instance per partition of each stateful operator,
//! in a local working directory, so a query's state may be larger than memory (Spark's
//! `RocksDBStateStoreProvider`, Flink's RocksDB state backend).
//!
//! The instance is a cache of the checkpoint, not its truth. Every batch's changes are written to
//! it at once (no write-ahead log: a crash loses nothing the checkpoint does not have) and to the
//! checkpoint as the batch's delta, as with the in-memory store — Spark's changelog
//! checkpointing. A snapshot, when due, is RocksDB's own: the memtable is flushed and a RocksDB
//! checkpoint hard-links the instance's files into a local directory, in the batch (its cost is
//! the memtable's rows); the files are then uploaded in the background, each SST file once
//! (they are immutable: a later snapshot that still holds one names the uploaded copy), and
//! `<version>.rocksdb` lists them (the version's manifest). A restore on any machine downloads
//! the files of the newest manifest at or below the version into a fresh instance, then applies
//! the deltas after it.
//!
//! Memory is bounded by `sluice.state_store.rocksdb.memory_bytes`, one LRU block cache per query
//! to which the write buffers (memtables) of all its instances are charged, as Spark's
//! `boundedMemoryUsage`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, DBPinnableSlice, Options, WriteBatch, WriteBufferManager,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use super::rocksdb_index::IndexInstance;
use crate::checkpoint::{framing, CheckpointLocation};
use crate::state::config::RocksDbSettings;
use crate::{Result, SluiceError};

/// Suffix of a version's manifest, `<version>.rocksdb`.
pub(crate) const MANIFEST_SUFFIX: &str = ".rocksdb";

/// The format of a manifest; a manifest of another format is refused, naming it.
const MANIFEST_FORMAT: u32 = 1;

/// The largest memtable of one instance, and SST file: RocksDB's default, lowered for small memory
/// budgets so that one instance cannot take the whole budget alone.
const MAX_WRITE_BUFFER_BYTES: usize = 64 << 20;

/// What the instances of one query share: the block cache their memory is charged to, and the
/// local working directory (removed when the query's last store is dropped).
pub(crate) struct RocksDbShared {
    cache: Cache,
    write_buffers: WriteBufferManager,
    memory_bytes: usize,
    /// The operators' indexes (closed before `root` is removed).
    indexes: IndexInstance,
    root: tempfile::TempDir,
}

impl std::fmt::Debug for RocksDbShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbShared")
            .field("memory_bytes", &self.memory_bytes)
            .field("root", &self.root.path())
            .finish()
    }
}

impl RocksDbShared {
    /// The cache and a fresh working directory under `settings.local_dir` (default: the system's
    /// temporary directory) for one query.
    ///
    /// # Errors
    /// [`SluiceError::Io`] when the working directory cannot be created.
    pub(crate) fn new(settings: &RocksDbSettings) -> Result<Arc<Self>> {
        let parent = settings.local_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let root = tempfile::Builder::new().prefix("sluice-rocksdb-").tempdir_in(&parent).map_err(io(&parent))?;
        let cache = Cache::new_lru_cache(settings.memory_bytes);
        // Half the budget for memtables, charged to the cache (Spark's writeBufferCacheRatio).
        let write_buffers =
            WriteBufferManager::new_write_buffer_manager_with_cache(settings.memory_bytes / 2, false, cache.clone());
        let indexes = IndexInstance::default();
        Ok(Arc::new(Self { cache, write_buffers, memory_bytes: settings.memory_bytes, indexes, root }))
    }

    /// The query's working directory.
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// The instance holding the operators' indexes.
    pub(crate) fn indexes(&self) -> &IndexInstance {
        &self.indexes
    }

    /// The options of every instance of the query: its block cache, its write buffers charged to
    /// the cache, lz4.
    pub(crate) fn options(&self) -> Options {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_cache_index_and_filter_blocks(true);
        // A bloom filter in each SST file and in the memtable: a lookup of an absent key (a new
        // group, a value a count(DISTINCT) has not seen) mostly skips the files and the skip
        // list. Spark's RocksDB state store sets the same SST filter (`BloomFilter`, 10 bits).
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.write_buffers);
        options.set_memtable_prefix_bloom_ratio(0.02);
        options.set_memtable_whole_key_filtering(true);
        let file_bytes = (self.memory_bytes / 4).clamp(1 << 20, MAX_WRITE_BUFFER_BYTES);
        options.set_write_buffer_size(file_bytes);
        // SST files no larger than a memtable: a snapshot's upload reads one file at a time.
        options.set_target_file_size_base(file_bytes as u64);
        options.set_keep_log_file_num(2);
        options
    }
}

/// One file of a snapshot: its name in the instance's directory, the checkpoint file holding it,
/// and its length (checked when it is downloaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    name: String,
    remote: String,
    bytes: u64,
}

/// `<version>.rocksdb`: the files a version's snapshot is made of.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    files: Vec<SnapshotFile>,
}

/// The rows of one partition in a RocksDB instance.
pub(crate) struct RocksDbRows {
    db: DB,
    /// `<root>/state/<op>/<p>`: `db/` is the instance, `snapshot-<version>/` the files of a
    /// snapshot being uploaded.
    dir: PathBuf,
    shared: Arc<RocksDbShared>,
    write: WriteOptions,
    /// The files of the newest uploaded snapshot, by name: the SST files a later snapshot can
    /// name instead of uploading them again.
    uploaded: Arc<Mutex<HashMap<String, SnapshotFile>>>,
}

impl std::fmt::Debug for RocksDbRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbRows").field("dir", &self.dir).finish()
    }
}

impl RocksDbRows {
    /// An empty instance for the store of checkpoint directory `dir` (`state/<op>/<p>`), in the
    /// same relative directory of the query's working directory.
    ///
    /// # Errors
    /// [`SluiceError::Io`], or a RocksDB error naming the directory, when the instance cannot be
    /// created.
    pub(crate) fn open(shared: &Arc<RocksDbShared>, dir: &str) -> Result<Self> {
        let db_dir = Self::fresh_dir(shared, dir)?;
        Self::open_dir(shared, db_dir, HashMap::new())
    }

    /// An instance for the store of `dir` holding the files of a snapshot, downloaded one by one
    /// from `location`.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when a snapshot file is missing or not of its recorded
    /// length; as [`Self::open`].
    pub(crate) async fn restore(
        shared: &Arc<RocksDbShared>,
        dir: &str,
        location: &CheckpointLocation,
        snapshot: Vec<SnapshotFile>,
    ) -> Result<Self> {
        let db_dir = Self::fresh_dir(shared, dir)?;
        for file in &snapshot {
            let bytes = location.get(&file.remote).await?.ok_or_else(|| {
                location.error(
                    &file.remote,
                    "state snapshot file missing: the checkpoint is incomplete; restore it or start over with a new checkpoint location",
                )
            })?;
            if bytes.len() as u64 != file.bytes {
                return Err(location.error(
                    &file.remote,
                    format!("state snapshot file cut short: {} bytes of {}", bytes.len(), file.bytes),
                ));
            }
            let path = db_dir.join(&file.name);
            tokio::fs::write(&path, &bytes).await.map_err(io(&path))?;
        }
        let uploaded = snapshot.into_iter().map(|f| (f.name.clone(), f)).collect();
        Self::open_dir(shared, db_dir, uploaded)
    }

    /// `<root>/<dir>/db`, empty.
    fn fresh_dir(shared: &RocksDbShared, dir: &str) -> Result<PathBuf> {
        let dir = shared.root.path().join(dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        let db_dir = dir.join("db");
        std::fs::create_dir_all(&db_dir).map_err(io(&db_dir))?;
        Ok(db_dir)
    }

    fn open_dir(shared: &Arc<RocksDbShared>, db_dir: PathBuf, uploaded: HashMap<String, SnapshotFile>) -> Result<Self> {
        let db = DB::open(&shared.options(), &db_dir).map_err(|e| rocksdb_error(&db_dir, e))?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        let dir = db_dir.parent().map_or_else(|| db_dir.clone(), Path::to_path_buf);
        Ok(Self { db, dir, shared: Arc::clone(shared), write, uploaded: Arc::new(Mutex::new(uploaded)) })
    }

    /// The value of `key`, pinned in the block cache or memtable while it is borrowed.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<DBPinnableSlice<'_>>> {
        self.db.get_pinned(key).map_err(|e| self.error(e))
    }

    /// Writes `key`; returns the length of the value it replaced, if any.
    pub(crate) fn put(&self, key: &[u8], value: &[u8]) -> Result<Option<usize>> {
        let old = self.get(key)?.map(|v| v.len());
        self.db.put_opt(key, value, &self.write).map_err(|e| self.error(e))?;
        Ok(old)
    }

    /// Writes `key`, which the caller has just read to be absent.
    pub(crate) fn put_absent(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.write).map_err(|e| self.error(e))
    }

    /// Deletes `key`; returns the length of its value, if it was present.
    pub(crate) fn remove(&self, key: &[u8]) -> Result<Option<usize>> {
        let old = self.get(key)?.map(|v| v.len());
        if old.is_some() {
            self.db.delete_opt(key, &self.write).map_err(|e| self.error(e))?;
        }
        Ok(old)
    }

    /// Deletes `key`; returns its value, if it was present.
    pub(crate) fn take(&self, key: &[u8]) -> Result<Option<Box<[u8]>>> {
        let old: Option<Box<[u8]>> = self.get(key)?.map(|v| Box::from(&*v));
        if old.is_some() {
            self.db.delete_opt(key, &self.write).map_err(|e| self.error(e))?;
        }
        Ok(old)
    }

    /// Every `(key, value)` in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>> + '_ {
        self.db.iterator(rocksdb::IteratorMode::Start).map(|entry| entry.map_err(|e| self.error(e)))
    }

    /// Applies a delta's changes (`None`: removed) in one write.
    pub(crate) fn apply(&self, changes: WriteBatch) -> Result<()> {
        self.db.write_opt(changes, &self.write).map_err(|e| self.error(e))
    }

    /// Hard-links the instance's files as they are now (after a flush of the memtable) into a
    /// local directory, and returns the background task that uploads them under `dir` of
    /// `location` as the snapshot of `version`: new files are uploaded, the SST files of the
    /// previous snapshot named again, then `<version>.rocksdb` is written and the local
    /// directory removed.
    ///
    /// # Errors
    /// A RocksDB error naming the directory when the flush or the checkpoint fails.
    pub(crate) fn snapshot(
        &self,
        location: CheckpointLocation,
        dir: String,
        version: u64,
    ) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
        let local = self.dir.join(format!("snapshot-{version}"));
        if local.exists() {
            std::fs::remove_dir_all(&local).map_err(io(&local))?;
        }
        self.db.flush().map_err(|e| self.error(e))?;
        Checkpoint::new(&self.db).and_then(|c| c.create_checkpoint(&local)).map_err(|e| self.error(e))?;
        let uploaded = Arc::clone(&self.uploaded);
        // Keeps the working directory (and the files linked into it) until the upload ends.
        let shared = Arc::clone(&self.shared);
        Ok(async move {
            let result = upload(&location, &dir, version, &local, &uploaded).await;
            let _ = tokio::fs::remove_dir_all(&local).await;
            drop(shared);
            result
        })
    }

    /// The remote files the newest uploaded snapshot is made of (kept by a purge).
    pub(crate) fn uploaded_remotes(&self) -> Vec<String> {
        self.uploaded.lock().expect("snapshot files lock").values().map(|f| f.remote.clone()).collect()
    }

    fn error(&self, e: rocksdb::Error) -> SluiceError {
        rocksdb_error(&self.dir, e)
    }
}

/// The error of a local file operation on `path`, for `map_err`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SluiceError + '_ {
    move |source| SluiceError::io(path, source)
}

pub(crate) fn rocksdb_error(dir: &Path, e: rocksdb::Error) -> SluiceError {
    SluiceError::Checkpoint {
        location: format!("RocksDB state store {}", dir.display()),
        message: format!(
            "{e}; check the local disk (sluice.state_store.rocksdb.local_dir), then restart from the checkpoint"
        ),
    }
}

/// Uploads the files of the local checkpoint `local`, then the manifest of `version`.
async fn upload(
    location: &CheckpointLocation,
    dir: &str,
    version: u64,
    local: &Path,
    uploaded: &Mutex<HashMap<String, SnapshotFile>>,
) -> Result<()> {
    let previous = uploaded.lock().expect("snapshot files lock").clone();
    let mut entries = tokio::fs::read_dir(local).await.map_err(io(local))?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io(local))? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let bytes = entry.metadata().await.map_err(io(&path))?.len();
        match previous.get(&name) {
            Some(same) if name.ends_with(".sst") && same.bytes == bytes => files.push(same.clone()),
            _ => {
                let contents = tokio::fs::read(&path).await.map_err(io(&path))?;
                // A unique name: after a restore to an earlier version, the instance may number
                // new files as files of the abandoned versions were numbered.
                let remote = format!("{dir}/rocksdb/{}-{name}", uuid::Uuid::new_v4());
                location.put(&remote, Bytes::from(contents)).await?;
                files.push(SnapshotFile { name, remote, bytes });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = serde_json::to_vec(&Manifest { format: MANIFEST_FORMAT, files: files.clone() })
        .map_err(|e| location.error(dir, format!("cannot encode a snapshot manifest: {e}")))?;
    location.put(&format!("{dir}/{version}{MANIFEST_SUFFIX}"), framing::seal(manifest)).await?;
    *uploaded.lock().expect("snapshot files lock") = files.into_iter().map(|f| (f.name.clone(), f)).collect();
    Ok(())
}

/// The files listed by the manifest `name` of `location`, whose sealed contents are `bytes`.
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the file when it is torn, not JSON, or of another format.
pub(crate) fn read_manifest(location: &CheckpointLocation, name: &str, bytes: &[u8]) -> Result<Vec<SnapshotFile>> {
    let contents =
        framing::open(bytes).map_err(|damage| location.error(name, format!("torn snapshot manifest: {damage}")))?;
    let manifest: Manifest = serde_json::from_slice(contents)
        .map_err(|e| location.error(name, format!("corrupted snapshot manifest: {e}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(location.error(
            name,
            format!(
                "snapshot manifest of format {} (this sluice reads format {MANIFEST_FORMAT}): written by another release; start over with a new checkpoint location",
                manifest.format
            ),
        ));
    }
    Ok(manifest.files)
}

/// The remote files named by a manifest.
pub(crate) fn remotes(files: &[SnapshotFile]) -> impl Iterator<Item = &str> {
    files.iter().map(|f| f.remote.as_str())
}
