//! An event-time (or processing-time) ordered index of state keys: Flink's timer service, in the
//! small. Operators that emit or evict by time register each key's time here when they store it,
//! and a batch takes only the keys whose time has passed, so its work follows the keys that are
//! due, not every key in state.
//!
//! The index is derived from the [`super::StateStore`], which stays the truth: operators rebuild
//! it from the store after a restore. It lives in memory beside the in-memory store, and in the
//! query's RocksDB index instance beside a RocksDB store (range scans in time order over
//! `[T][time][key]` entries, a `[K][key]` entry giving each key's time), so that its size is
//! bounded by the store's memory budget, not by the keys held.

use std::collections::BTreeMap;

use super::memory_timers::MemoryTimers;
#[cfg(feature = "rocksdb")]
use super::rocksdb_index::{ms_of, ordered_ms, IndexSpace};
use super::StateStore;
use crate::Result;

/// Keys ordered by a time in ms since the epoch; at most one time per key.
#[derive(Debug, Default)]
pub struct TimerIndex(Timers);

#[derive(Debug)]
enum Timers {
    /// Keys share few distinct times (a window's end, a batch's event times), so the keys of a
    /// time are listed under it: setting a key's time costs a hash insertion, not an insertion
    /// into an ordered set of every key; a time's keys are sorted when they are due.
    Memory(MemoryTimers),
    #[cfg(feature = "rocksdb")]
    RocksDb(IndexSpace),
}

impl Default for Timers {
    fn default() -> Self {
        Timers::Memory(MemoryTimers::default())
    }
}

/// Key tags in a RocksDB index: `[BY_TIME][time][key]` (no value), `[OF_KEY][key]` (the time).
#[cfg(feature = "rocksdb")]
const BY_TIME: u8 = b'T';
#[cfg(feature = "rocksdb")]
const OF_KEY: u8 = b'K';

impl TimerIndex {
    /// An empty index in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index kept where `store` keeps its rows: in memory, or in the query's RocksDB
    /// index instance.
    ///
    /// # Errors
    /// As `StateStore::index_space`: the RocksDB index instance cannot be opened.
    pub fn for_store(store: &StateStore) -> Result<Self> {
        #[cfg(feature = "rocksdb")]
        if let Some(space) = store.index_space()? {
            return Ok(Self(Timers::RocksDb(space)));
        }
        let _ = store;
        Ok(Self::new())
    }

    /// Sets the time of `key` to `at_ms`, replacing any earlier one.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn set(&mut self, key: &[u8], at_ms: i64) -> Result<()> {
        match &mut self.0 {
            Timers::Memory(timers) => timers.set(key, at_ms),
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => {
                let at = ordered_ms(at_ms);
                let old = space.get(&[&[OF_KEY][..], key].concat())?;
                if old.as_deref() == Some(&at[..]) {
                    return Ok(());
                }
                let mut batch = space.batch();
                if let Some(old) = old {
                    batch.delete(&[&[BY_TIME], &old, key]);
                }
                batch.put(&[&[BY_TIME], &at, key], &[]);
                batch.put(&[&[OF_KEY], key], &at);
                space.write(batch)?;
            }
        }
        Ok(())
    }

    /// Removes the time of `key`, if it has one.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn remove(&mut self, key: &[u8]) -> Result<()> {
        match &mut self.0 {
            Timers::Memory(timers) => timers.remove(key),
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => {
                let of_key = [&[OF_KEY][..], key].concat();
                if let Some(at) = space.get(&of_key)? {
                    let mut batch = space.batch();
                    batch.delete(&[&[BY_TIME], &at, key]);
                    batch.delete(&[&of_key]);
                    space.write(batch)?;
                }
            }
        }
        Ok(())
    }

    /// Removes and returns the keys whose time is at or before `through_ms`, earliest first
    /// (ties in key order).
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn take_through(&mut self, through_ms: i64) -> Result<Vec<Box<[u8]>>> {
        match &mut self.0 {
            Timers::Memory(timers) => Ok(timers.take_through(through_ms)),
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => {
                let due = Self::due_entries(space, through_ms)?;
                let mut batch = space.batch();
                for (entry, key) in &due {
                    batch.delete(&[entry]);
                    batch.delete(&[&[OF_KEY], key]);
                }
                space.write(batch)?;
                Ok(due.into_iter().map(|(_, key)| key).collect())
            }
        }
    }

    /// The `[BY_TIME][time][key]` entries at or before `through_ms`, with their keys.
    #[cfg(feature = "rocksdb")]
    fn due_entries(space: &IndexSpace, through_ms: i64) -> Result<Vec<(Box<[u8]>, Box<[u8]>)>> {
        let end = through_ms.checked_add(1).map(|after| [&[BY_TIME][..], &ordered_ms(after)].concat());
        let end = end.unwrap_or_else(|| vec![BY_TIME + 1]);
        space
            .range(&[BY_TIME], Some(&end))
            .map(|entry| {
                let (entry, _) = entry?;
                let key = Box::from(entry.get(9..).unwrap_or_default());
                Ok((entry, key))
            })
            .collect()
    }

    /// The keys whose time is at or before `through_ms`, earliest first, left in the index.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn due_through(&self, through_ms: i64) -> Result<Vec<Box<[u8]>>> {
        match &self.0 {
            Timers::Memory(timers) => Ok(timers.due_through(through_ms)),
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => {
                Ok(Self::due_entries(space, through_ms)?.into_iter().map(|(_, key)| key).collect())
            }
        }
    }

    /// The earliest time, if any key has one.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn earliest(&self) -> Result<Option<i64>> {
        match &self.0 {
            Timers::Memory(timers) => Ok(timers.earliest()),
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => match space.range(&[BY_TIME], Some(&[BY_TIME + 1])).next() {
                Some(entry) => Ok(ms_of(entry?.0.get(1..9).unwrap_or_default())),
                None => Ok(None),
            },
        }
    }

    /// Forgets every key.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn clear(&mut self) -> Result<()> {
        match &mut self.0 {
            Timers::Memory(timers) => {
                timers.clear();
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Timers::RocksDb(space) => space.clear(),
        }
    }
}

/// Takes the entries of `by_time` whose time (ms) is at or before `through_ms` out of it.
pub(crate) fn take_due<V>(by_time: &mut BTreeMap<i64, V>, through_ms: i64) -> BTreeMap<i64, V> {
    match through_ms.checked_add(1) {
        Some(after) => {
            let rest = by_time.split_off(&after);
            std::mem::replace(by_time, rest)
        }
        None => std::mem::take(by_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointLocation;
    use crate::state::store::tests::{kinds, open};

    #[test]
    fn keys_come_out_in_time_order_once() {
        for kind in kinds() {
            let store = open(&CheckpointLocation::open("memory://").unwrap(), 0, kind);
            let mut t = TimerIndex::for_store(&store).unwrap();
            let boxed = |keys: &[&[u8]]| keys.iter().map(|k| Box::from(*k)).collect::<Vec<Box<[u8]>>>();
            t.set(b"b", 20).unwrap();
            t.set(b"a", 10).unwrap();
            t.set(b"c", 30).unwrap();
            t.set(b"b", 5).unwrap(); // replaces 20
            t.set(b"d", -7).unwrap();
            t.remove(b"d").unwrap();
            assert_eq!(t.earliest().unwrap(), Some(5), "{kind:?}");
            assert_eq!(t.due_through(10).unwrap(), boxed(&[b"b", b"a"]), "{kind:?}");
            assert_eq!(t.take_through(10).unwrap(), boxed(&[b"b", b"a"]), "{kind:?}");
            assert_eq!(t.take_through(10).unwrap(), boxed(&[]), "{kind:?}");
            assert_eq!(t.due_through(i64::MAX).unwrap(), boxed(&[b"c"]), "{kind:?}");
            t.remove(b"c").unwrap();
            assert_eq!(t.earliest().unwrap(), None, "{kind:?}");
            t.set(b"e", i64::MAX).unwrap();
            t.set(b"f", i64::MIN).unwrap();
            assert_eq!(t.take_through(i64::MAX).unwrap(), boxed(&[b"f", b"e"]), "{kind:?}");
            t.set(b"g", 1).unwrap();
            t.clear().unwrap();
            assert_eq!(t.due_through(i64::MAX).unwrap(), boxed(&[]), "{kind:?}");
        }
    }
}
