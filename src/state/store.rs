//! A versioned key-value store of arrow rows: the state of one partition of one stateful operator.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;
use foldhash::HashMap;

use crate::checkpoint::{framing, CheckpointLocation};
use crate::state::codec;
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

#[derive(Debug, Default)]
struct Partition {
    rows: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Changes since the last commit: `None` = removed.
    changes: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
}

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
/// changes, and [`StateStore::commit`] writes them as `state/<op>/<p>/N.delta` (and every
/// [`SNAPSHOT_INTERVAL`] versions `N.snapshot`), so a restart can rebuild any committed version.
#[derive(Debug)]
pub struct StateStore {
    location: CheckpointLocation,
    /// `state/<op>/<p>`.
    dir: String,
    partition: Partition,
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
    /// An empty store for partition `partition` of operator `operator`, checkpointed under
    /// `state/<operator>/<partition>/` of `location`.
    pub fn new(location: CheckpointLocation, operator: &str, partition: usize) -> Self {
        Self {
            location,
            dir: format!("state/{operator}/{partition}"),
            partition: Partition::default(),
            updated: 0,
            removed: 0,
            scanned: AtomicU64::new(0),
            bytes: 0,
            maintenance: None,
            deltas_since_snapshot: 0,
            delta_bytes_since_snapshot: 0,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.scanned.fetch_add(1, Ordering::Relaxed);
        self.partition.rows.get(key).map(|v| &**v)
    }

    /// Inserts or replaces the value of `key`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        let p = &mut self.partition;
        match p.rows.insert(key.into(), value.into()) {
            Some(old) => self.bytes = self.bytes - old.len() as u64 + value.len() as u64,
            None => self.bytes += (key.len() + value.len()) as u64,
        }
        p.changes.insert(key.into(), Some(value.into()));
        self.updated += 1;
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &[u8]) {
        let p = &mut self.partition;
        if let Some(old) = p.rows.remove(key) {
            p.changes.insert(key.into(), None);
            self.removed += 1;
            self.bytes -= (key.len() + old.len()) as u64;
        }
    }

    /// Every `(key, value)`, in no particular order; each row visited counts as scanned.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.partition.rows.iter().map(|(k, v)| {
            self.scanned.fetch_add(1, Ordering::Relaxed);
            (&**k, &**v)
        })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.partition.rows.len()
    }

    /// True when the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts since the last commit, and the current totals.
    pub fn metrics(&self) -> StateMetrics {
        StateMetrics {
            rows_total: self.len() as u64,
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
    /// suffice).
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a file cannot be written, or when the last
    /// background snapshot failed to (the checkpoint's storage is failing).
    pub async fn commit(&mut self, version: u64) -> Result<()> {
        let changes = std::mem::take(&mut self.partition.changes);
        let delta = codec::encode(changes.iter().map(|(k, v)| (&**k, v.as_deref())))?;
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
            self.maintenance = Some(tokio::spawn(write_snapshot(location, dir, version)));
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

    /// Replaces the contents with committed version `version` (`None`: the empty initial state).
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming the file when a delta the version needs is
    /// missing or unreadable (a corrupted checkpoint).
    pub async fn load(&mut self, version: Option<u64>) -> Result<()> {
        self.wait_for_maintenance().await?;
        self.partition = match version {
            Some(version) => read_partition(&self.location, &self.dir, version).await?,
            None => Partition::default(),
        };
        self.bytes = self.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
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

    /// Deletes state files no longer needed to rebuild versions `>= keep_from`.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a listing or delete fails.
    pub async fn purge_before(&self, keep_from: u64) -> Result<()> {
        let dir = &self.dir;
        let files = self.location.list(dir).await?;
        let version = |f: &str| f.split('.').next().and_then(|v| v.parse::<u64>().ok());
        // The newest snapshot at or below keep_from stays, with every delta after it.
        let base = files
            .iter()
            .filter(|f| f.ends_with(".snapshot"))
            .filter_map(|f| version(f))
            .filter(|v| *v <= keep_from)
            .max();
        let Some(base) = base else { return Ok(()) };
        for f in files.iter().filter(|f| version(f).is_some_and(|v| v < base)) {
            self.location.delete(&format!("{dir}/{f}")).await?;
        }
        Ok(())
    }
}

/// The rows of the partition in `dir` at committed `version`: the newest snapshot at or below it,
/// then every later delta.
async fn read_partition(location: &CheckpointLocation, dir: &str, version: u64) -> Result<Partition> {
    let files = partition_files(location, dir, version).await?;
    let location = location.clone();
    run_blocking(move || apply_files(&location, files)).await
}

/// The contents of the files that make up version `version` of the partition in `dir`, in the
/// order they apply: the newest snapshot at or below it, then every later delta. A torn newest
/// snapshot (a crash while it was written in the background) is passed over, with a warning, for
/// the snapshot before it and the deltas after that.
async fn partition_files(location: &CheckpointLocation, dir: &str, version: u64) -> Result<Vec<(String, Bytes)>> {
    let listed = location.list(dir).await?;
    let mut snapshots: Vec<u64> =
        listed.iter().filter_map(|f| f.strip_suffix(".snapshot")?.parse::<u64>().ok()).collect();
    snapshots.sort_unstable();
    let newest_snapshot = snapshots.last().copied();
    snapshots.retain(|v| *v <= version);
    let mut files = Vec::new();
    let mut snapshot = snapshots.pop();
    if let Some(s) = snapshot.filter(|s| Some(*s) == newest_snapshot) {
        let name = format!("{dir}/{s}.snapshot");
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
        names.push(format!("{dir}/{s}.snapshot"));
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

/// Decodes state files in order into one partition (CPU work: run it off the async workers).
fn apply_files(location: &CheckpointLocation, files: Vec<(String, Bytes)>) -> Result<Partition> {
    let mut partition = Partition::default();
    for (name, bytes) in files {
        codec::decode(bytes, |k, v| match v {
            Some(v) => {
                partition.rows.insert(k.into(), v.into());
            }
            None => {
                partition.rows.remove(k);
            }
        })
        .map_err(|e| location.error(&name, format!("corrupted state file: {e}")))?;
    }
    Ok(partition)
}

/// Runs CPU-bound state work (decoding or encoding a whole partition) on a blocking thread, so a
/// large partition never holds one of the runtime's workers, where it would stall the batch's own
/// tasks queued behind it.
async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    SpawnedTask::spawn_blocking(work).join_unwind().await.map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
}

/// Writes `<version>.snapshot` of the partition in `dir`, rebuilt from the checkpoint's files (so
/// the batches go on with the live state meanwhile).
async fn write_snapshot(location: CheckpointLocation, dir: String, version: u64) -> Result<()> {
    let files = partition_files(&location, &dir, version).await?;
    let files_location = location.clone();
    let snapshot = run_blocking(move || {
        let partition = apply_files(&files_location, files)?;
        codec::encode(partition.rows.iter().map(|(k, v)| (&**k, Some(&**v))))
    })
    .await?;
    location.put(&format!("{dir}/{version}.snapshot"), snapshot).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn restores_any_committed_version_across_snapshots() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location.clone(), "0", 3);
        for version in 0..25u64 {
            store.put(format!("k{version}").as_bytes(), &version.to_le_bytes());
            if version >= 2 {
                store.remove(format!("k{}", version - 2).as_bytes());
            }
            store.commit(version).await.unwrap();
        }
        let mut restored = StateStore::new(location.clone(), "0", 3);
        restored.load(Some(14)).await.unwrap();
        let mut keys: Vec<_> = restored.iter().map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect();
        keys.sort();
        assert_eq!(keys, vec!["k13", "k14"]);
        assert_eq!(restored.get(b"k14"), Some(&14u64.to_le_bytes()[..]));
        assert_eq!(restored.metrics().memory_bytes, 2 * (3 + 8), "two 3-byte keys with 8-byte values");
        restored.load(None).await.unwrap();
        assert!(restored.is_empty());
    }

    /// The snapshot of every tenth version is written in the background and then serves a
    /// restore alone: the deltas before it can go.
    #[tokio::test]
    async fn snapshots_are_written_in_the_background_and_restore_alone() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location.clone(), "0", 2);
        for version in 0..12u64 {
            store.put(format!("k{version}").as_bytes(), b"v");
            store.commit(version).await.unwrap();
        }
        store.wait_for_maintenance().await.unwrap();
        assert!(location.get("state/0/2/9.snapshot").await.unwrap().is_some());
        for v in 0..=9 {
            location.delete(&format!("state/0/2/{v}.delta")).await.unwrap();
        }
        let mut restored = StateStore::new(location, "0", 2);
        restored.load(Some(11)).await.unwrap();
        assert_eq!(restored.len(), 12);
    }

    /// A state much larger than its deltas is not copied every ten versions: the snapshot waits
    /// until the deltas add up to twice the state's bytes.
    #[tokio::test]
    async fn a_large_state_that_changes_little_is_snapshotted_rarely() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location.clone(), "0", 0);
        let big = vec![7u8; 100_000];
        store.put(b"big", &big);
        let mut first_snapshot = None;
        for version in 0..40u64 {
            store.put(b"small", &version.to_le_bytes());
            store.commit(version).await.unwrap();
            store.wait_for_maintenance().await.unwrap();
            let written = location.list("state/0/0").await.unwrap().iter().any(|f| f.ends_with(".snapshot"));
            if written && first_snapshot.is_none() {
                first_snapshot = Some(version);
            }
        }
        assert_eq!(first_snapshot, None, "40 small deltas (about 40 KB with the file overhead) vs 100 KB of state");
        for version in 40..50u64 {
            store.put(b"big", &vec![version as u8; 100_000]);
            store.commit(version).await.unwrap();
        }
        store.wait_for_maintenance().await.unwrap();
        assert!(location.list("state/0/0").await.unwrap().iter().any(|f| f.ends_with(".snapshot")));
        let mut restored = StateStore::new(location, "0", 0);
        restored.load(Some(49)).await.unwrap();
        assert_eq!(restored.get(b"big"), Some(&vec![49u8; 100_000][..]));
    }

    /// A crash while the background snapshot was written leaves it torn: a restore passes over
    /// it to the snapshot before it and the deltas after that; a torn delta is reported.
    #[tokio::test]
    async fn a_torn_newest_snapshot_is_passed_over_and_a_torn_delta_reported() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location.clone(), "0", 0);
        for version in 0..22u64 {
            store.put(format!("k{version}").as_bytes(), b"v");
            store.commit(version).await.unwrap();
            store.wait_for_maintenance().await.unwrap();
        }
        let snapshots: Vec<String> =
            location.list("state/0/0").await.unwrap().into_iter().filter(|f| f.ends_with(".snapshot")).collect();
        assert_eq!(snapshots, ["19.snapshot", "9.snapshot"]);
        let whole = location.get("state/0/0/19.snapshot").await.unwrap().unwrap();
        for torn in [Bytes::new(), whole.slice(..whole.len() / 2)] {
            location.put("state/0/0/19.snapshot", torn).await.unwrap();
            let mut restored = StateStore::new(location.clone(), "0", 0);
            restored.load(Some(21)).await.unwrap();
            assert_eq!(restored.len(), 22);
        }
        location.put("state/0/0/9.snapshot", Bytes::new()).await.unwrap();
        let err = StateStore::new(location.clone(), "0", 0).load(Some(21)).await.unwrap_err().to_string();
        assert!(err.contains("/9.snapshot"), "an older snapshot is history: {err}");

        assert_eq!(store.damaged_delta(21).await.unwrap(), None);
        let delta = location.get("state/0/0/21.delta").await.unwrap().unwrap();
        let mut flipped = delta.to_vec();
        flipped[delta.len() / 2] ^= 0xff;
        location.put("state/0/0/21.delta", Bytes::from(flipped)).await.unwrap();
        let (file, why) = store.damaged_delta(21).await.unwrap().unwrap();
        assert!(file.ends_with("state/0/0/21.delta") && why.contains("checksum"), "{file}: {why}");
        assert!(store.damaged_delta(22).await.unwrap().unwrap().1.contains("missing"));
    }

    #[tokio::test]
    async fn a_missing_delta_is_a_clear_error() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut store = StateStore::new(location.clone(), "0", 1);
        store.put(b"a", b"1");
        store.commit(0).await.unwrap();
        location.delete("state/0/1/0.delta").await.unwrap();
        let err = store.load(Some(0)).await.unwrap_err().to_string();
        assert!(err.contains("state/0/1/0.delta") && err.contains("missing"), "{err}");
    }
}
