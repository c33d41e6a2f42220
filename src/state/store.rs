//! A versioned key-value store of arrow rows: the state of one partition of one stateful operator.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::checkpoint::{framing, CheckpointLocation};
use crate::state::changes::ChangeSet;
use crate::state::codec;
use crate::state::config::StateBackend;
#[cfg(feature = "rocksdb")]
use crate::state::files::apply_deltas;
use crate::state::files::{partition_files, run_blocking, write_snapshot, FileRows, SNAPSHOT_SUFFIX};
use crate::state::memory_rows::MemoryRows;
#[cfg(feature = "rocksdb")]
use crate::state::rocksdb_store::{self, RocksDbRows};
use crate::Result;

/// A partition gets a full snapshot besides its delta once at least this many deltas were written
/// since its last snapshot (Spark's `minDeltasForSnapshot` default), and those deltas add up to
/// at least [`SNAPSHOT_DELTA_RATIO`] times the bytes the state holds. The snapshot is written in
/// the background, from the files, as Spark's maintenance task does: a batch never waits for it.
pub const SNAPSHOT_INTERVAL: u64 = 10;

/// A snapshot copies the whole state, so it waits until the deltas since the last one add up to
/// this many times the state's bytes: its cost, spread over the batches that wrote those deltas,
/// stays proportional to the rows they changed (a large state that changes little is not copied
/// every ten batches), and a restore reads at most the snapshot and this many times its size in
/// deltas. Small states, whose deltas are mostly file overhead, still get one every
/// [`SNAPSHOT_INTERVAL`] versions.
pub const SNAPSHOT_DELTA_RATIO: u64 = 2;

/// Row counts of one batch's state changes, for progress reporting (Spark's `stateOperators`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateMetrics {
    /// Rows in the store after the batch.
    pub rows_total: u64,
    /// Rows written (inserted or updated) by the batch.
    pub rows_updated: u64,
    /// Rows removed by the batch (evicted or emitted).
    pub rows_removed: u64,
    /// Bytes of the keys and values held (hash-table overhead not counted).
    pub memory_bytes: u64,
    /// Rows the batch read from the store: lookups (found or not) plus rows visited by a scan.
    /// The measure of a batch's state work: it follows the rows that arrive and the entries that
    /// are due, not the rows held (a complete-mode aggregation, which outputs all of them, reads
    /// them all). Reported as the operator's custom metric `numRowsScanned`.
    pub rows_scanned: u64,
}

/// Where a store's rows are kept.
#[derive(Debug)]
enum Rows {
    Memory(MemoryRows),
    #[cfg(feature = "rocksdb")]
    RocksDb(RocksDbRows),
}

/// A value read from a [`StateStore`]: borrowed from the in-memory table, or pinned in RocksDB's
/// block cache or memtable while it is held. Dereferences to the value's bytes.
pub enum StateValue<'a> {
    /// A value of the in-memory store.
    Memory(&'a [u8]),
    /// A value of the RocksDB store.
    #[cfg(feature = "rocksdb")]
    RocksDb(rocksdb::DBPinnableSlice<'a>),
}

impl std::ops::Deref for StateValue<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StateValue::Memory(v) => v,
            #[cfg(feature = "rocksdb")]
            StateValue::RocksDb(v) => v,
        }
    }
}

/// A `(key, value)` of a scan: borrowed from the in-memory table, owned when read from RocksDB.
pub type StateEntry<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The most state partitions a query may have (`spark.sql.shuffle.partitions`, a checkpoint's
/// `metadata`): each partition of each stateful operator writes a file per micro-batch and is
/// listed on every restart, so a count in the millions would stall every batch, and one past the
/// memory would abort the process. Spark's default is 200.
pub const MAX_STATE_PARTITIONS: usize = 1000;

/// The state of one partition of one operator: key → value rows, versioned by batch id.
///
/// Rows reach a partition by the hash of the operator's keys (see
/// [`crate::operator::exchange`]), so each partition of each operator has its own store, loaded,
/// committed and purged on its own (Spark's `StateStoreProvider` per operator and partition).
/// Version `N` is the state after batch `N`. Batch `N` starts from version `N-1`, applies its
/// changes, and [`StateStore::commit`] writes them as `state/<op>/<p>/N.delta` (and, when one is
/// due, a snapshot: `N.snapshot` of the in-memory store, `N.rocksdb` and the files it lists of
/// the RocksDB store), so a restart can rebuild any committed version.
#[derive(Debug)]
pub struct StateStore {
    location: CheckpointLocation,
    /// `state/<op>/<p>`.
    dir: String,
    backend: StateBackend,
    rows: Rows,
    /// Hashes each key once per operation, for both the in-memory rows and the change set.
    hasher: foldhash::fast::RandomState,
    /// The changes since the last commit: the next delta.
    changes: ChangeSet,
    /// Keys held.
    len: u64,
    updated: u64,
    removed: u64,
    /// Rows read since the counts were last cleared (`get` takes `&self`, hence atomic).
    scanned: AtomicU64,
    /// Bytes of keys and values held, kept up to date by every change.
    bytes: u64,
    /// The background snapshot task last started, if it may still run.
    maintenance: Option<tokio::task::JoinHandle<Result<()>>>,
    /// Deltas written since the last snapshot (or load), and their bytes.
    deltas_since_snapshot: u64,
    delta_bytes_since_snapshot: u64,
}

impl StateStore {
    /// An empty in-memory store for partition `partition` of operator `operator`, checkpointed
    /// under `state/<operator>/<partition>/` of `location`.
    pub fn new(location: CheckpointLocation, operator: &str, partition: usize) -> Self {
        Self {
            location,
            dir: format!("state/{operator}/{partition}"),
            backend: StateBackend::Memory,
            rows: Rows::Memory(MemoryRows::default()),
            hasher: foldhash::fast::RandomState::default(),
            changes: ChangeSet::default(),
            len: 0,
            updated: 0,
            removed: 0,
            scanned: AtomicU64::new(0),
            bytes: 0,
            maintenance: None,
            deltas_since_snapshot: 0,
            delta_bytes_since_snapshot: 0,
        }
    }

    /// An empty store as [`Self::new`], keeping its rows in `backend`.
    ///
    /// # Errors
    /// As `RocksDbRows::open` when the RocksDB instance cannot be created.
    pub(crate) fn open(
        location: CheckpointLocation,
        operator: &str,
        partition: usize,
        backend: &StateBackend,
    ) -> Result<Self> {
        let mut store = Self::new(location, operator, partition);
        store.backend = backend.clone();
        store.rows = store.empty_rows()?;
        Ok(store)
    }

    fn empty_rows(&self) -> Result<Rows> {
        Ok(match &self.backend {
            StateBackend::Memory => Rows::Memory(MemoryRows::default()),
            #[cfg(feature = "rocksdb")]
            StateBackend::RocksDb(shared) => Rows::RocksDb(RocksDbRows::open(shared, &self.dir)?),
        })
    }

    /// A keyspace for an index an operator keeps beside this store (its timers, a join's keys):
    /// on RocksDB when this store is, so that the index is bounded by the same memory budget;
    /// `None` for the in-memory store, whose operators keep their indexes in memory.
    ///
    /// # Errors
    /// As [`crate::state::rocksdb_index::IndexSpace::open`].
    #[cfg(feature = "rocksdb")]
    pub(crate) fn index_space(&self) -> Result<Option<crate::state::rocksdb_index::IndexSpace>> {
        match &self.backend {
            StateBackend::Memory => Ok(None),
            StateBackend::RocksDb(shared) => crate::state::rocksdb_index::IndexSpace::open(shared).map(Some),
        }
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// A RocksDB read error (the local disk failing).
    pub fn get(&self, key: &[u8]) -> Result<Option<StateValue<'_>>> {
        self.scanned.fetch_add(1, Ordering::Relaxed);
        Ok(match &self.rows {
            Rows::Memory(rows) => rows.get(self.hasher.hash_one(key), key).map(StateValue::Memory),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => rows.get(key)?.map(StateValue::RocksDb),
        })
    }

    /// The value of `key`, which the operator's own index says is stored.
    ///
    /// # Errors
    /// As [`Self::get`], and [`crate::SluiceError::Checkpoint`] when the key is missing: the
    /// state and the index disagree (a damaged checkpoint).
    pub fn get_indexed(&self, key: &[u8]) -> Result<StateValue<'_>> {
        self.get(key)?.ok_or_else(|| self.missing_indexed_key())
    }

    /// Removes `key`, which the operator's own index says is stored, and returns its value.
    ///
    /// # Errors
    /// As [`Self::get_indexed`].
    pub fn take_indexed(&mut self, key: &[u8]) -> Result<Box<[u8]>> {
        self.take(key)?.ok_or_else(|| self.missing_indexed_key())
    }

    fn missing_indexed_key(&self) -> crate::SluiceError {
        self.location.error(
            &self.dir,
            "a key of the operator's index is missing from its state: the checkpoint's state is damaged; restore it or start over with a new checkpoint location",
        )
    }

    /// Inserts or replaces the value of `key`.
    ///
    /// # Errors
    /// A RocksDB write error (the local disk failing).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let hash = self.hasher.hash_one(key);
        let old = match &mut self.rows {
            Rows::Memory(rows) => rows.put(hash, key, value),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => rows.put(key, value)?,
        };
        self.note_write(hash, key, value, old);
        Ok(())
    }

    /// Inserts `key` with an empty value unless it is present: a set's insert, one lookup of
    /// the key (counted as a read). Returns whether it was absent.
    ///
    /// # Errors
    /// A RocksDB read or write error (the local disk failing).
    pub fn insert_absent(&mut self, key: &[u8]) -> Result<bool> {
        *self.scanned.get_mut() += 1;
        let hash = self.hasher.hash_one(key);
        let absent = match &mut self.rows {
            Rows::Memory(rows) => rows.insert_absent(hash, key),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => {
                let absent = rows.get(key)?.is_none();
                if absent {
                    rows.put_absent(key, &[])?;
                }
                absent
            }
        };
        if absent {
            self.note_write(hash, key, &[], None);
        }
        Ok(absent)
    }

    /// Accounts for the write of `value` to `key` (whose hash is `hash`), whose former value
    /// had `old` bytes (`None`: it was absent).
    fn note_write(&mut self, hash: u64, key: &[u8], value: &[u8], old: Option<usize>) {
        match old {
            Some(old) => self.bytes = self.bytes - old as u64 + value.len() as u64,
            None => {
                self.bytes += (key.len() + value.len()) as u64;
                self.len += 1;
            }
        }
        self.changes.record(hash, key, Some(value));
        self.updated += 1;
    }

    /// Removes `key` if present.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn remove(&mut self, key: &[u8]) -> Result<()> {
        let hash = self.hasher.hash_one(key);
        let old = match &mut self.rows {
            Rows::Memory(rows) => rows.take(hash, key).map(|old| old.len()),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => rows.remove(key)?,
        };
        self.note_removal(hash, key, old);
        Ok(())
    }

    /// Removes `key` and returns its value, if it was present: [`Self::get`] and
    /// [`Self::remove`] in one lookup. Counts as a read.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn take(&mut self, key: &[u8]) -> Result<Option<Box<[u8]>>> {
        *self.scanned.get_mut() += 1;
        let hash = self.hasher.hash_one(key);
        let old = match &mut self.rows {
            Rows::Memory(rows) => rows.take(hash, key),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => rows.take(key)?,
        };
        self.note_removal(hash, key, old.as_ref().map(|v| v.len()));
        Ok(old)
    }

    /// Accounts for the removal of `key` (whose hash is `hash`), whose value had `old` bytes
    /// (`None`: it was absent).
    fn note_removal(&mut self, hash: u64, key: &[u8], old: Option<usize>) {
        if let Some(old) = old {
            self.changes.record(hash, key, None);
            self.removed += 1;
            self.len -= 1;
            self.bytes -= (key.len() + old) as u64;
        }
    }

    /// Every `(key, value)`, in no particular order; each row visited counts as scanned.
    ///
    /// # Errors
    /// Each item: a RocksDB read error (the local disk failing).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Result<StateEntry<'_>>> + Send + '_> {
        let entries: Box<dyn Iterator<Item = Result<StateEntry<'_>>> + Send + '_> = match &self.rows {
            Rows::Memory(rows) => Box::new(rows.iter().map(|(k, v)| Ok((Cow::Borrowed(k), Cow::Borrowed(v))))),
            #[cfg(feature = "rocksdb")]
            Rows::RocksDb(rows) => Box::new(
                rows.iter().map(|entry| entry.map(|(k, v)| (Cow::Owned(k.into_vec()), Cow::Owned(v.into_vec())))),
            ),
        };
        Box::new(entries.inspect(|_| {
            self.scanned.fetch_add(1, Ordering::Relaxed);
        }))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts since the last commit, and the current totals.
    pub fn metrics(&self) -> StateMetrics {
        StateMetrics {
            rows_total: self.len,
            rows_updated: self.updated,
            rows_removed: self.removed,
            memory_bytes: self.bytes,
            rows_scanned: self.scanned.load(Ordering::Relaxed),
        }
    }

    /// Zeroes the per-batch counts (updated, removed, scanned): at commit, and after a restore
    /// has rebuilt the operator's indexes from the store, so that work is not billed to a batch.
    pub fn clear_counts(&mut self) {
        self.updated = 0;
        self.removed = 0;
        *self.scanned.get_mut() = 0;
    }

    /// Writes the changes since the last commit as version `version`, and starts writing a
    /// snapshot of that version in the background when one is due (see [`SNAPSHOT_INTERVAL`] and
    /// [`SNAPSHOT_DELTA_RATIO`]; skipped while the previous one is still being written: deltas
    /// suffice). The RocksDB store flushes its memtable and links its files for the snapshot in
    /// the batch; their upload runs in the background.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a file cannot be written, when the last
    /// background snapshot failed to (the checkpoint's storage is failing), or when RocksDB
    /// cannot flush.
    pub async fn commit(&mut self, version: u64) -> Result<()> {
        let delta = codec::encode(self.changes.entries());
        self.changes.clear();
        let delta = delta?;
        self.deltas_since_snapshot += 1;
        self.delta_bytes_since_snapshot += delta.len() as u64;
        self.location.put(&format!("{}/{version}.delta", self.dir), delta).await?;
        self.clear_counts();
        if self.maintenance.as_ref().is_some_and(|task| task.is_finished()) {
            self.wait_for_maintenance().await?;
        }
        let due = self.deltas_since_snapshot >= SNAPSHOT_INTERVAL
            && self.delta_bytes_since_snapshot >= SNAPSHOT_DELTA_RATIO * self.bytes;
        if due && self.maintenance.is_none() {
            let (location, dir) = (self.location.clone(), self.dir.clone());
            self.maintenance = Some(match &self.rows {
                Rows::Memory(_) => tokio::spawn(write_snapshot(location, dir, version)),
                #[cfg(feature = "rocksdb")]
                Rows::RocksDb(rows) => tokio::spawn(rows.snapshot(location, dir, version)?),
            });
            self.deltas_since_snapshot = 0;
            self.delta_bytes_since_snapshot = 0;
        }
        Ok(())
    }

    /// Waits for the background snapshot task, if one runs.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when it failed to write a snapshot.
    pub async fn wait_for_maintenance(&mut self) -> Result<()> {
        match self.maintenance.take() {
            Some(task) => {
                task.await.map_err(|e| self.location.error(&self.dir, format!("snapshot task failed: {e}")))?
            }
            None => Ok(()),
        }
    }

    /// The suffix of this store's snapshots.
    fn snapshot_suffix(&self) -> &'static str {
        match &self.backend {
            StateBackend::Memory => SNAPSHOT_SUFFIX,
            #[cfg(feature = "rocksdb")]
            StateBackend::RocksDb(_) => rocksdb_store::MANIFEST_SUFFIX,
        }
    }

    /// Replaces the contents with committed version `version` (`None`: the empty initial state).
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming the file when a delta or snapshot file the
    /// version needs is missing or unreadable (a corrupted checkpoint); a RocksDB error when the
    /// local instance cannot be rebuilt.
    pub async fn load(&mut self, version: Option<u64>) -> Result<()> {
        self.wait_for_maintenance().await?;
        self.changes.clear();
        // The old rows go first: a RocksDB instance frees its directory for the new one.
        self.rows = Rows::Memory(MemoryRows::default());
        let files = match version {
            Some(version) => partition_files(&self.location, &self.dir, version, self.snapshot_suffix()).await?,
            None => vec![],
        };
        self.rows = match &self.backend {
            StateBackend::Memory => {
                let (location, hasher) = (self.location.clone(), self.hasher.clone());
                Rows::Memory(
                    run_blocking(move || Ok(FileRows::decode(&location, files, &hasher)?.into_memory_rows())).await?,
                )
            }
            #[cfg(feature = "rocksdb")]
            StateBackend::RocksDb(shared) => {
                let mut files = files.into_iter().peekable();
                let snapshot = match files.next_if(|(name, _)| name.ends_with(rocksdb_store::MANIFEST_SUFFIX)) {
                    Some((name, bytes)) => rocksdb_store::read_manifest(&self.location, &name, &bytes)?,
                    None => vec![],
                };
                let rows = RocksDbRows::restore(shared, &self.dir, &self.location, snapshot).await?;
                let (location, deltas) = (self.location.clone(), files.collect::<Vec<_>>());
                Rows::RocksDb(run_blocking(move || apply_deltas(&location, rows, deltas)).await?)
            }
        };
        let (mut len, mut bytes) = (0, 0);
        for entry in self.iter() {
            let (k, v) = entry?;
            len += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        (self.len, self.bytes) = (len, bytes);
        self.clear_counts();
        // The deltas since the newest snapshot are not counted: the next snapshot comes at the
        // earliest after SNAPSHOT_INTERVAL more.
        self.deltas_since_snapshot = 0;
        self.delta_bytes_since_snapshot = 0;
        Ok(())
    }

    /// Checks the file version `version` adds, `<version>.delta`, without loading anything:
    /// `None` when it is whole, else the file (in the checkpoint) and why it is not — missing,
    /// empty, cut short or failing its checksum. Recovery calls this for the newest version,
    /// which a crash may have left torn, to run that batch again instead.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when the file cannot be read at all.
    pub async fn damaged_delta(&self, version: u64) -> Result<Option<(String, String)>> {
        let name = format!("{}/{version}.delta", self.dir);
        let why = match self.location.get(&name).await? {
            None => Some("missing".to_string()),
            Some(bytes) => framing::open(&bytes).err().map(|damage| damage.to_string()),
        };
        Ok(why.map(|why| (self.location.describe(&name), why)))
    }

    /// The state files no longer needed to rebuild versions `>= keep_from`, as paths in the
    /// checkpoint: the deltas and snapshots before the newest snapshot at or below it, and the
    /// RocksDB files no kept snapshot lists nor the live instance may name again (after waiting
    /// for a snapshot being uploaded, which may name them). None of them is written again, so
    /// they may be deleted while later batches run.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a listing or read fails.
    pub async fn stale_before(&mut self, keep_from: u64) -> Result<Vec<String>> {
        let suffix = self.snapshot_suffix();
        if suffix != SNAPSHOT_SUFFIX {
            self.wait_for_maintenance().await?;
        }
        let dir = &self.dir;
        let files = self.location.list(dir).await?;
        let version = |f: &str| f.split('.').next().and_then(|v| v.parse::<u64>().ok());
        // The newest snapshot at or below keep_from stays, with every delta after it.
        let base =
            files.iter().filter(|f| f.ends_with(suffix)).filter_map(|f| version(f)).filter(|v| *v <= keep_from).max();
        let Some(base) = base else { return Ok(vec![]) };
        #[cfg_attr(not(feature = "rocksdb"), allow(unused_mut))]
        let mut stale: Vec<String> =
            files.iter().filter(|f| version(f).is_some_and(|v| v < base)).map(|f| format!("{dir}/{f}")).collect();
        #[cfg(feature = "rocksdb")]
        if let Rows::RocksDb(rows) = &self.rows {
            let mut kept: std::collections::HashSet<String> = rows.uploaded_remotes().into_iter().collect();
            for f in files.iter().filter(|f| f.ends_with(suffix) && version(f).is_some_and(|v| v >= base)) {
                let name = format!("{dir}/{f}");
                if let Some(bytes) = self.location.get(&name).await? {
                    let listed = rocksdb_store::read_manifest(&self.location, &name, &bytes)?;
                    kept.extend(rocksdb_store::remotes(&listed).map(str::to_string));
                }
            }
            for f in self.location.list(&format!("{dir}/rocksdb")).await? {
                let remote = format!("{dir}/rocksdb/{f}");
                if !kept.contains(&remote) {
                    stale.push(remote);
                }
            }
        }
        Ok(stale)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::state::{RocksDbSettings, StateStoreKind};

    /// The kinds of store this build has.
    pub(crate) fn kinds() -> Vec<StateStoreKind> {
        StateStoreKind::ALL.into_iter().filter(|k| cfg!(feature = "rocksdb") || *k == StateStoreKind::Memory).collect()
    }

    /// A store of `kind` for partition `partition` of operator 0; a RocksDB store in a working
    /// directory of its own, as on another machine.
    pub(crate) fn open(location: &CheckpointLocation, partition: usize, kind: StateStoreKind) -> StateStore {
        let backend = StateBackend::for_query(kind, &RocksDbSettings::default()).unwrap();
        StateStore::open(location.clone(), "0", partition, &backend).unwrap()
    }

    fn suffix(kind: StateStoreKind) -> &'static str {
        open(&CheckpointLocation::open("memory://").unwrap(), 0, kind).snapshot_suffix()
    }

    fn value(store: &StateStore, key: &[u8]) -> Option<Vec<u8>> {
        store.get(key).unwrap().map(|v| v.to_vec())
    }

    #[tokio::test]
    async fn restores_any_committed_version_across_snapshots() {
        for kind in kinds() {
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut store = open(&location, 3, kind);
            for version in 0..25u64 {
                store.put(format!("k{version}").as_bytes(), &version.to_le_bytes()).unwrap();
                if version >= 2 {
                    store.remove(format!("k{}", version - 2).as_bytes()).unwrap();
                }
                store.commit(version).await.unwrap();
            }
            let mut restored = open(&location, 3, kind);
            restored.load(Some(14)).await.unwrap();
            let mut keys: Vec<_> = restored.iter().map(|e| String::from_utf8(e.unwrap().0.to_vec()).unwrap()).collect();
            keys.sort();
            assert_eq!(keys, vec!["k13", "k14"], "{kind:?}");
            assert_eq!(value(&restored, b"k14"), Some(14u64.to_le_bytes().to_vec()));
            assert_eq!(restored.metrics().memory_bytes, 2 * (3 + 8), "two 3-byte keys with 8-byte values");
            assert_eq!(restored.len(), 2);
            restored.load(None).await.unwrap();
            assert!(restored.is_empty() && restored.iter().next().is_none(), "{kind:?}");
        }
    }

    /// The snapshot of every tenth version is written in the background and then serves a
    /// restore alone: the deltas before it can go.
    #[tokio::test]
    async fn snapshots_are_written_in_the_background_and_restore_alone() {
        for kind in kinds() {
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut store = open(&location, 2, kind);
            for version in 0..12u64 {
                store.put(format!("k{version}").as_bytes(), b"v").unwrap();
                store.commit(version).await.unwrap();
            }
            store.wait_for_maintenance().await.unwrap();
            let snapshot = format!("state/0/2/9{}", suffix(kind));
            assert!(location.get(&snapshot).await.unwrap().is_some(), "{snapshot}");
            for v in 0..=9 {
                location.delete(&format!("state/0/2/{v}.delta")).await.unwrap();
            }
            let mut restored = open(&location, 2, kind);
            restored.load(Some(11)).await.unwrap();
            assert_eq!(restored.len(), 12, "{kind:?}");
            assert_eq!(value(&restored, b"k0"), Some(b"v".to_vec()));
        }
    }

    /// A state much larger than its deltas is not copied every ten versions: the snapshot waits
    /// until the deltas add up to twice the state's bytes.
    #[tokio::test]
    async fn a_large_state_that_changes_little_is_snapshotted_rarely() {
        for kind in kinds() {
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut store = open(&location, 0, kind);
            let snapshotted = |files: Vec<String>| files.iter().any(|f| f.ends_with(suffix(kind)));
            let big = vec![7u8; 100_000];
            store.put(b"big", &big).unwrap();
            let mut first_snapshot = None;
            for version in 0..40u64 {
                store.put(b"small", &version.to_le_bytes()).unwrap();
                store.commit(version).await.unwrap();
                store.wait_for_maintenance().await.unwrap();
                if snapshotted(location.list("state/0/0").await.unwrap()) && first_snapshot.is_none() {
                    first_snapshot = Some(version);
                }
            }
            assert_eq!(first_snapshot, None, "40 small deltas (about 40 KB with the file overhead) vs 100 KB of state");
            for version in 40..50u64 {
                store.put(b"big", &vec![version as u8; 100_000]).unwrap();
                store.commit(version).await.unwrap();
            }
            store.wait_for_maintenance().await.unwrap();
            assert!(snapshotted(location.list("state/0/0").await.unwrap()), "{kind:?}");
            let mut restored = open(&location, 0, kind);
            restored.load(Some(49)).await.unwrap();
            assert_eq!(value(&restored, b"big"), Some(vec![49u8; 100_000]), "{kind:?}");
        }
    }

    /// A crash while the background snapshot was written leaves it torn: a restore passes over
    /// it to the snapshot before it and the deltas after that; a torn delta is reported.
    #[tokio::test]
    async fn a_torn_newest_snapshot_is_passed_over_and_a_torn_delta_reported() {
        for kind in kinds() {
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut store = open(&location, 0, kind);
            for version in 0..22u64 {
                store.put(format!("k{version}").as_bytes(), b"v").unwrap();
                store.commit(version).await.unwrap();
                store.wait_for_maintenance().await.unwrap();
            }
            let suffix = suffix(kind);
            let snapshots: Vec<String> =
                location.list("state/0/0").await.unwrap().into_iter().filter(|f| f.ends_with(suffix)).collect();
            assert_eq!(snapshots, [format!("19{suffix}"), format!("9{suffix}")]);
            let newest = format!("state/0/0/19{suffix}");
            let whole = location.get(&newest).await.unwrap().unwrap();
            for torn in [Bytes::new(), whole.slice(..whole.len() / 2)] {
                location.put(&newest, torn).await.unwrap();
                let mut restored = open(&location, 0, kind);
                restored.load(Some(21)).await.unwrap();
                assert_eq!(restored.len(), 22, "{kind:?}");
            }
            location.put(&format!("state/0/0/9{suffix}"), Bytes::new()).await.unwrap();
            let err = open(&location, 0, kind).load(Some(21)).await.unwrap_err().to_string();
            assert!(err.contains(&format!("/9{suffix}")), "an older snapshot is history: {err}");

            assert_eq!(store.damaged_delta(21).await.unwrap(), None);
            let delta = location.get("state/0/0/21.delta").await.unwrap().unwrap();
            let mut flipped = delta.to_vec();
            flipped[delta.len() / 2] ^= 0xff;
            location.put("state/0/0/21.delta", Bytes::from(flipped)).await.unwrap();
            let (file, why) = store.damaged_delta(21).await.unwrap().unwrap();
            assert!(file.ends_with("state/0/0/21.delta") && why.contains("checksum"), "{file}: {why}");
            assert!(store.damaged_delta(22).await.unwrap().unwrap().1.contains("missing"));
        }
    }

    #[tokio::test]
    async fn a_missing_delta_is_a_clear_error() {
        for kind in kinds() {
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut store = open(&location, 1, kind);
            store.put(b"a", b"1").unwrap();
            store.commit(0).await.unwrap();
            location.delete("state/0/1/0.delta").await.unwrap();
            let err = store.load(Some(0)).await.unwrap_err().to_string();
            assert!(err.contains("state/0/1/0.delta") && err.contains("missing"), "{err}");
        }
    }

    /// RocksDB snapshots upload each SST file once: a later snapshot names the files it shares
    /// with the one before; a purge deletes the files no kept snapshot names, and a restore from
    /// the kept files alone (on a fresh working directory) has every row.
    #[cfg(feature = "rocksdb")]
    #[tokio::test]
    async fn rocksdb_snapshots_share_sst_files_and_a_purge_deletes_the_unlisted_ones() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = open(&location, 0, StateStoreKind::RocksDb);
        let listed = |version: u64| {
            let location = location.clone();
            async move {
                let name = format!("state/0/0/{version}.rocksdb");
                let bytes = location.get(&name).await.unwrap().unwrap();
                let files = rocksdb_store::read_manifest(&location, &name, &bytes).unwrap();
                rocksdb_store::remotes(&files).filter(|r| r.ends_with(".sst")).map(str::to_string).collect::<Vec<_>>()
            }
        };
        // 50 keys rewritten by every version (so the deltas soon outweigh the state, and a
        // snapshot is due every tenth version), and one new key a version.
        for version in 0..20u64 {
            for i in 0..50u64 {
                store.put(format!("k{i}").as_bytes(), &[version as u8; 100]).unwrap();
            }
            store.put(format!("n{version}").as_bytes(), b"new").unwrap();
            store.commit(version).await.unwrap();
            store.wait_for_maintenance().await.unwrap();
        }
        let (first, second) = (listed(9).await, listed(19).await);
        assert!(!first.is_empty() && second.len() > first.len(), "{first:?} {second:?}");
        assert!(
            first.iter().all(|f| second.contains(f)),
            "the SST files of version 9 are named again, not uploaded again"
        );
        store.remove(b"n0").unwrap();
        store.commit(20).await.unwrap();
        let stale = store.stale_before(19).await.unwrap();
        store.location.delete_all(stale).await.unwrap();
        let files = location.list("state/0/0").await.unwrap();
        assert!(!files.iter().any(|f| f.starts_with("9.") || f == "18.delta"), "{files:?}");
        let ssts = location.list("state/0/0/rocksdb").await.unwrap();
        assert_eq!(ssts.iter().filter(|f| f.ends_with(".sst")).count(), second.len(), "{ssts:?}");
        let mut restored = open(&location, 0, StateStoreKind::RocksDb);
        restored.load(Some(20)).await.unwrap();
        assert_eq!(restored.len(), 50 + 20 - 1);
        assert_eq!(value(&restored, b"k49"), Some(vec![19u8; 100]));
        assert_eq!(value(&restored, b"n19"), Some(b"new".to_vec()));
        assert_eq!(value(&restored, b"n0"), None);
    }
}
