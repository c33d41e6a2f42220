//! Operators' indexes on RocksDB: the ordered keyspaces that serve the timer index
//! ([`super::TimerIndex`]), a session window aggregation's sessions by group, and the join's key
//! and eviction indexes when the query's state store is RocksDB, so that those indexes, like the state they point into, are bounded by
//! `sluice.state_store.rocksdb.memory_bytes` and not by the keys held. A batch reads them by
//! range scans in key order: in event-time order for the timers, in arrival order for one join
//! key's rows, by seeks of one reused iterator for many prefixes ([`PrefixScanner`]) (Spark's RocksDB-backed `TimerStateImpl` and join state, Flink's RocksDB timer
//! service).
//!
//! An index is derived data, never checkpointed: operators rebuild it from the state store on
//! restore, exactly as they rebuild their in-memory indexes. All the indexes of a query live in one
//! RocksDB instance (`<working dir>/index`, no write-ahead log, charged to the query's block cache),
//! each under its own 8-byte prefix; an index's entries are deleted when it is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ReadOptions, WriteBatch, WriteOptions, DB};

use super::rocksdb_store::{io, rocksdb_error, RocksDbShared};
use crate::Result;

/// The index instance of one query, opened on first use.
#[derive(Default)]
pub(crate) struct IndexInstance {
    db: Mutex<Option<Arc<DB>>>,
    next_prefix: AtomicU64,
}

impl std::fmt::Debug for IndexInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexInstance").field("spaces", &self.next_prefix.load(Ordering::Relaxed)).finish()
    }
}

/// One index's keyspace in the query's index instance.
pub(crate) struct IndexSpace {
    db: Arc<DB>,
    prefix: [u8; 8],
    write: WriteOptions,
    path: PathBuf,
    /// Keeps the working directory until the index is dropped.
    _shared: Arc<RocksDbShared>,
}

impl std::fmt::Debug for IndexSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexSpace").field("path", &self.path).field("prefix", &self.prefix).finish()
    }
}

impl IndexSpace {
    /// A new, empty keyspace in the index instance of the query `shared` belongs to (opened on
    /// the first call).
    ///
    /// # Errors
    /// [`crate::SluiceError::Io`] or a RocksDB error naming the directory when the instance
    /// cannot be opened.
    pub(crate) fn open(shared: &Arc<RocksDbShared>) -> Result<Self> {
        let path = shared.root().join("index");
        let instance = shared.indexes();
        let db = {
            let mut db = instance.db.lock().expect("index instance lock");
            match &*db {
                Some(open) => Arc::clone(open),
                None => {
                    std::fs::create_dir_all(&path).map_err(io(&path))?;
                    let open = Arc::new(DB::open(&shared.options(), &path).map_err(|e| rocksdb_error(&path, e))?);
                    *db = Some(Arc::clone(&open));
                    open
                }
            }
        };
        let prefix = instance.next_prefix.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self { db, prefix, write, path, _shared: Arc::clone(shared) })
    }

    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(8 + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
    }

    fn error(&self, e: rocksdb::Error) -> crate::SluiceError {
        rocksdb_error(&self.path, e)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(self.full(key)).map_err(|e| self.error(e))
    }

    /// A batch of writes to this keyspace, applied at once by [`Self::write`].
    pub(crate) fn batch(&self) -> IndexBatch {
        IndexBatch { batch: WriteBatch::default(), prefix: self.prefix, key: Vec::new() }
    }

    /// Applies `batch`.
    pub(crate) fn write(&self, batch: IndexBatch) -> Result<()> {
        self.db.write_opt(batch.batch, &self.write).map_err(|e| self.error(e))
    }

    /// The entries whose keys are at or after `from` and before `to` (the end of the keyspace when
    /// `None`), in key order, their keys without the keyspace's prefix.
    pub(crate) fn range(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, Box<[u8]>)>> + '_ {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(match to {
            Some(to) => self.full(to),
            None => self.end(),
        });
        let from = self.full(from);
        self.db
            .iterator_opt(rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward), options)
            .map(|entry| entry.map(|(k, v)| (Box::from(k.get(8..).unwrap_or_default()), v)).map_err(|e| self.error(e)))
    }

    /// A reader of the entries under given prefixes, one prefix after another, on one RocksDB
    /// iterator (opening an iterator costs more than a seek, and a join probes one prefix a row).
    pub(crate) fn prefix_scanner(&self) -> PrefixScanner<'_> {
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(self.end());
        PrefixScanner { space: self, iter: self.db.raw_iterator_opt(options), prefix: Vec::new() }
    }

    /// The first key past the keyspace: the next prefix (none follows `u64::MAX`'s).
    fn end(&self) -> Vec<u8> {
        match u64::from_be_bytes(self.prefix).checked_add(1) {
            Some(next) => next.to_be_bytes().to_vec(),
            None => vec![0xff; 9],
        }
    }

    /// Deletes every entry.
    pub(crate) fn clear(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(self.prefix.to_vec(), self.end());
        self.db.write_opt(batch, &self.write).map_err(|e| self.error(e))
    }
}

impl Drop for IndexSpace {
    /// Deletes the index's entries; an error here only leaves dead entries in a working directory
    /// that is removed when the query stops.
    fn drop(&mut self) {
        let _ = self.clear();
    }
}

/// See [`IndexSpace::prefix_scanner`].
pub(crate) struct PrefixScanner<'a> {
    space: &'a IndexSpace,
    iter: rocksdb::DBRawIterator<'a>,
    /// The full key prefix of the current scan, reused.
    prefix: Vec<u8>,
}

impl PrefixScanner<'_> {
    /// Calls `found` with the rest of each key that starts with `prefix` (after the prefix), in
    /// key order.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub(crate) fn scan(&mut self, prefix: &[u8], mut found: impl FnMut(&[u8])) -> Result<()> {
        self.prefix.clear();
        self.prefix.extend_from_slice(&self.space.prefix);
        self.prefix.extend_from_slice(prefix);
        self.iter.seek(&self.prefix);
        while let Some(key) = self.iter.key() {
            let Some(rest) = key.strip_prefix(&self.prefix[..]) else { break };
            found(rest);
            self.iter.next();
        }
        self.iter.status().map_err(|e| self.space.error(e))
    }
}

/// Writes to one [`IndexSpace`], applied together.
pub(crate) struct IndexBatch {
    batch: WriteBatch,
    prefix: [u8; 8],
    /// Reused to build each full key.
    key: Vec<u8>,
}

impl IndexBatch {
    fn full(&mut self, parts: &[&[u8]]) -> &[u8] {
        self.key.clear();
        self.key.extend_from_slice(&self.prefix);
        for part in parts {
            self.key.extend_from_slice(part);
        }
        &self.key
    }

    /// Sets the key made of `parts`, concatenated, to `value`.
    pub(crate) fn put(&mut self, parts: &[&[u8]], value: &[u8]) {
        self.full(parts);
        self.batch.put(&self.key, value);
    }

    /// Deletes the key made of `parts`, concatenated.
    pub(crate) fn delete(&mut self, parts: &[&[u8]]) {
        self.full(parts);
        self.batch.delete(&self.key);
    }
}

/// `[tag][key length, u32 BE][key]`: a prefix under which the entries of `key` follow one another
/// (no key's prefix is a prefix of another's).
pub(crate) fn length_prefixed(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(5 + key.len());
    prefix.push(tag);
    prefix.extend_from_slice(&(key.len() as u32).to_be_bytes());
    prefix.extend_from_slice(key);
    prefix
}

/// `ms` as 8 bytes whose byte order is the numbers' order (big-endian, sign bit flipped).
pub(crate) fn ordered_ms(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time encoded by [`ordered_ms`]; `None` when `bytes` is not 8 bytes long.
pub(crate) fn ms_of(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RocksDbSettings;

    #[test]
    fn times_order_as_bytes_prefixes_scan_and_spaces_are_apart() {
        let times = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for pair in times.windows(2) {
            assert!(ordered_ms(pair[0]) < ordered_ms(pair[1]));
            assert_eq!(ms_of(&ordered_ms(pair[0])), Some(pair[0]));
        }
        let shared = RocksDbShared::new(&RocksDbSettings::default()).unwrap();
        let (a, b) = (IndexSpace::open(&shared).unwrap(), IndexSpace::open(&shared).unwrap());
        let put = |s: &IndexSpace, key: &[u8], value: &[u8]| {
            let mut batch = s.batch();
            batch.put(&[key], value);
            s.write(batch).unwrap();
        };
        put(&a, b"k1", b"1");
        put(&a, b"k2", b"2");
        put(&b, b"k1", b"other");
        let mut batch = a.batch();
        batch.put(&[b"k", b"3"], b"3");
        batch.delete(&[b"k1"]);
        a.write(batch).unwrap();
        let all = |s: &IndexSpace, from: &[u8], to: Option<&[u8]>| {
            s.range(from, to).map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<Vec<_>>>().unwrap()
        };
        assert_eq!(all(&a, b"", None), vec![(b"k2".to_vec(), b"2".to_vec()), (b"k3".to_vec(), b"3".to_vec())]);
        assert_eq!(all(&a, b"k3", None).len(), 1);
        assert_eq!(all(&a, b"", Some(b"k3")).len(), 1);
        put(&a, b"j\xff", b"4");
        put(&a, b"k\xff\xff", b"5");
        let mut scanner = a.prefix_scanner();
        let mut keys = |prefix: &[u8]| {
            let mut rests = Vec::new();
            scanner.scan(prefix, |rest| rests.push(rest.to_vec())).unwrap();
            rests
        };
        assert_eq!(keys(b"k"), vec![b"2".to_vec(), b"3".to_vec(), b"\xff\xff".to_vec()]);
        assert_eq!(keys(b"k\xff"), vec![b"\xff".to_vec()]);
        assert_eq!(keys(b"j"), vec![b"\xff".to_vec()]);
        assert_eq!(keys(b"k2"), vec![Vec::<u8>::new()]);
        assert!(keys(b"\xff").is_empty());
        drop(scanner);
        assert_eq!(a.get(b"k2").unwrap(), Some(b"2".to_vec()));
        drop(a);
        assert_eq!(all(&b, b"", None), vec![(b"k1".to_vec(), b"other".to_vec())]);
        b.clear().unwrap();
        assert!(all(&b, b"", None).is_empty());
    }
}
