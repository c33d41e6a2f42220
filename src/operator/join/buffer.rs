//! One side's buffered rows of a stream-stream join: how they are stored (a chunk of rows per
//! batch, see [`crate::operator::chunk`], with matched flags and the side's latest eviction time beside
//! them) and the indexes over them ([`Buffer`]: equality key → arrival ids, eviction times, per
//! chunk each row's key slot), rebuilt from the store on restore; the first two are kept in
//! memory, or on RocksDB beside a RocksDB store ([`Indexes`]).

use foldhash::HashMap;
use std::collections::{BTreeMap, VecDeque};

#[cfg(feature = "rocksdb")]
use crate::state::rocksdb_index::{length_prefixed, ordered_ms, IndexSpace};
use crate::state::timers::take_due;
use crate::state::StateStore;
use crate::{Result, SluiceError};

/// Store key prefix of a matched flag, `[MATCHED | side][id]` (no value).
pub(super) const MATCHED: u8 = 0x10;
/// Store key of a side's latest eviction time, `[EVICTED | side]`, valued the time (ms, i64 LE).
pub(super) const EVICTED: u8 = 0x20;
/// The key slot of a chunk row without an equality key (a null key matches nothing).
const NO_KEY: u32 = u32::MAX;
/// The key slot of an evicted chunk row.
pub(super) const GONE: u32 = u32::MAX - 1;

pub(super) fn chunk_key(side: usize, first: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = side as u8;
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

pub(super) fn matched_key(side: usize, id: u64) -> [u8; 9] {
    let mut key = chunk_key(side, id);
    key[0] |= MATCHED;
    key
}

pub(super) fn evicted_key(side: usize) -> [u8; 1] {
    [EVICTED | side as u8]
}

/// The index of one stored chunk of a side.
#[derive(Debug)]
pub(super) struct ChunkIndex {
    /// Each row's key slot ([`KEYED`] in a RocksDB index, which finds keys itself), [`NO_KEY`],
    /// or [`GONE`] once evicted.
    pub(super) slots: Vec<u32>,
    /// Rows still buffered.
    pub(super) live: usize,
    /// Rows whose bytes the stored chunk holds.
    pub(super) stored: usize,
}

/// The key slot of a buffered row with a key in a RocksDB index (which keeps no slots).
#[cfg(feature = "rocksdb")]
const KEYED: u32 = 0;

impl ChunkIndex {
    /// Appends a row: buffered with key slot `slot`, or `None` when already evicted.
    fn push(&mut self, slot: Option<u32>) {
        self.slots.push(slot.unwrap_or(GONE));
        self.live += usize::from(slot.is_some());
    }
}

/// The in-memory index from equality key to the arrival ids of the buffered rows with it.
#[derive(Debug, Default)]
pub(super) struct MemoryKeys {
    /// Equality key → its slot in `slots`.
    pub(super) by_key: HashMap<Box<[u8]>, u32>,
    /// Per key slot: the key and the arrival ids of the buffered rows with it, ascending; a free
    /// slot (listed in `free`) has no ids.
    pub(super) slots: Vec<(Box<[u8]>, VecDeque<u64>)>,
    free: Vec<u32>,
}

impl MemoryKeys {
    /// Indexes row `id` under `key`; returns the key's slot, taken (from the free ones first) if
    /// the key has none.
    fn add(&mut self, key: &[u8], id: u64) -> Result<u32> {
        let slot = match self.by_key.get(key) {
            Some(slot) => *slot,
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize].0 = key.into();
                        slot
                    }
                    None => {
                        let slot = u32::try_from(self.slots.len()).ok().filter(|s| *s < GONE).ok_or_else(|| {
                            SluiceError::from(datafusion::error::DataFusionError::Execution(
                                "a join side buffers more than 4 billion distinct keys".to_string(),
                            ))
                        })?;
                        self.slots.push((key.into(), Default::default()));
                        slot
                    }
                };
                self.by_key.insert(key.into(), slot);
                slot
            }
        };
        self.slots[slot as usize].1.push_back(id);
        Ok(slot)
    }

    /// Removes the ids `gone` (ascending) from the list of key slot `slot`, in one pass (mostly
    /// from its front: ids arrive in order); frees the slot when none is left.
    fn remove(&mut self, slot: u32, gone: &[u64]) {
        let (key, list) = &mut self.slots[slot as usize];
        let mut rest = gone;
        while let (Some(front), Some(next)) = (list.front(), rest.first()) {
            if front != next {
                break;
            }
            list.pop_front();
            rest = &rest[1..];
        }
        if !rest.is_empty() {
            list.retain(|i| rest.binary_search(i).is_err());
        }
        if list.is_empty() {
            self.by_key.remove(&**key);
            *key = Box::default();
            *list = Default::default();
            self.free.push(slot);
        }
    }
}

/// A side's key and eviction-time indexes: in memory beside the in-memory store, in the query's
/// RocksDB index instance beside a RocksDB store (bounded by its memory budget, not by the rows
/// buffered).
#[derive(Debug)]
pub(super) enum Indexes {
    Memory {
        keys: MemoryKeys,
        /// By the time (ms, rounded up) the state watermark must pass to evict them, the ids of
        /// the rows due then, in arrival order; rows that are never evicted are not in it. Rows
        /// share few distinct times (a window's end, a batch's event times), so adding a row is
        /// a push onto its time's list, not an insertion into an ordered set of rows.
        expiry: BTreeMap<i64, Vec<u64>>,
    },
    /// Entries `[BY_KEY][key length, u32 BE][key][id, BE]` (no value): a key's ids in arrival
    /// order by a range scan; `[EXPIRY][time][id, BE]` valued `[0]`, or `[1]` and the row's key.
    #[cfg(feature = "rocksdb")]
    RocksDb(IndexSpace),
}

#[cfg(feature = "rocksdb")]
const BY_KEY: u8 = b'K';
#[cfg(feature = "rocksdb")]
const EXPIRY: u8 = b'E';

/// `[BY_KEY][key length][key]`: the prefix of the entries of `key`'s rows.
#[cfg(feature = "rocksdb")]
fn key_prefix(key: &[u8]) -> Vec<u8> {
    length_prefixed(BY_KEY, key)
}

/// The indexes over one side's buffered rows (whose bytes are in the store).
#[derive(Debug)]
pub(super) struct Buffer {
    pub(super) index: Indexes,
    /// The stored chunks, by first arrival id.
    pub(super) chunks: BTreeMap<u64, ChunkIndex>,
    /// Number of buffered rows.
    pub(super) len: usize,
    pub(super) next_id: u64,
}

impl Buffer {
    /// An empty buffer whose indexes are kept where `store` keeps its rows.
    ///
    /// # Errors
    /// As `StateStore::index_space`.
    pub(super) fn for_store(store: &StateStore) -> Result<Self> {
        #[cfg(feature = "rocksdb")]
        if let Some(space) = store.index_space()? {
            return Ok(Self::with(Indexes::RocksDb(space)));
        }
        let _ = store;
        Ok(Self::with(Indexes::Memory { keys: MemoryKeys::default(), expiry: BTreeMap::new() }))
    }

    fn with(index: Indexes) -> Self {
        Self { index, chunks: BTreeMap::new(), len: 0, next_id: 0 }
    }

    /// Indexes the chunk whose first arrival id is `first`, holding `stored` rows' bytes: each
    /// of its rows as `Some((key, eviction time))`, or `None` for a row already evicted. Returns
    /// the number of rows buffered (a chunk with none is not indexed).
    pub(super) fn add_chunk<'a>(
        &mut self,
        first: u64,
        stored: usize,
        rows: impl Iterator<Item = Option<(Option<&'a [u8]>, Option<i64>)>>,
    ) -> Result<usize> {
        let mut chunk = ChunkIndex { slots: Vec::new(), live: 0, stored };
        let rows = rows.enumerate().map(|(i, row)| (first + i as u64, row));
        match &mut self.index {
            Indexes::Memory { keys, expiry } => {
                for (id, row) in rows {
                    let slot = match row {
                        None => None,
                        Some((key, at)) => {
                            if let Some(at) = at {
                                expiry.entry(at).or_default().push(id);
                            }
                            Some(key.map_or(Ok(NO_KEY), |key| keys.add(key, id))?)
                        }
                    };
                    chunk.push(slot);
                }
            }
            #[cfg(feature = "rocksdb")]
            Indexes::RocksDb(space) => {
                let mut batch = space.batch();
                for (id, row) in rows {
                    let id_bytes = id.to_be_bytes();
                    let slot = row.map(|(key, at)| {
                        if let Some(key) = key {
                            batch.put(&[&key_prefix(key), &id_bytes], &[]);
                        }
                        if let Some(at) = at {
                            let value = key.map_or_else(|| vec![0], |key| [&[1u8][..], key].concat());
                            batch.put(&[&[EXPIRY], &ordered_ms(at), &id_bytes], &value);
                        }
                        if key.is_some() {
                            KEYED
                        } else {
                            NO_KEY
                        }
                    });
                    chunk.push(slot);
                }
                space.write(batch)?;
            }
        }
        self.next_id = self.next_id.max(first + chunk.slots.len() as u64);
        let live = chunk.live;
        self.len += live;
        if live > 0 {
            self.chunks.insert(first, chunk);
        }
        Ok(live)
    }

    /// Calls `found(i, id)` with the id of each buffered row whose key is `key`, for each `(i,
    /// key)` of `keys`, in arrival order.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub(super) fn probe<'k>(
        &self,
        keys: impl Iterator<Item = (usize, &'k [u8])>,
        mut found: impl FnMut(usize, u64),
    ) -> Result<()> {
        match &self.index {
            Indexes::Memory { keys: index, .. } => {
                for (i, key) in keys {
                    if let Some(slot) = index.by_key.get(key) {
                        index.slots[*slot as usize].1.iter().for_each(|id| found(i, *id));
                    }
                }
            }
            #[cfg(feature = "rocksdb")]
            Indexes::RocksDb(space) => {
                let mut scanner = space.prefix_scanner();
                for (i, key) in keys {
                    scanner.scan(&key_prefix(key), |id| {
                        if let Ok(id) = <[u8; 8]>::try_from(id) {
                            found(i, u64::from_be_bytes(id));
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    /// The first arrival id of the chunk holding row `id`.
    pub(super) fn chunk_first(&self, id: u64) -> Option<u64> {
        self.chunks.range(..=id).next_back().map(|(first, _)| *first)
    }

    /// Marks row `id` evicted in its chunk's index; returns its key slot, `None` when it was not
    /// buffered.
    fn take_row(chunks: &mut BTreeMap<u64, ChunkIndex>, id: u64) -> Option<u32> {
        let (first, chunk) = chunks.range_mut(..=id).next_back()?;
        let slot = chunk.slots.get_mut((id - first) as usize)?;
        if *slot == GONE {
            return None;
        }
        chunk.live -= 1;
        Some(std::mem::replace(slot, GONE))
    }

    /// Takes the rows whose eviction time is at or before `through_ms` out of the indexes;
    /// returns their ids, ascending.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub(super) fn evict_through(&mut self, through_ms: i64) -> Result<Vec<u64>> {
        let mut evicted = 0;
        let mut ids = match &mut self.index {
            Indexes::Memory { keys, expiry } => {
                let mut ids: Vec<u64> = take_due(expiry, through_ms).into_values().flatten().collect();
                ids.sort_unstable();
                // Each key's list loses all its evicted ids in one pass, not one pass per id.
                let mut gone: HashMap<u32, Vec<u64>> = HashMap::default();
                for id in &ids {
                    let Some(slot) = Self::take_row(&mut self.chunks, *id) else { continue };
                    if slot != NO_KEY {
                        gone.entry(slot).or_default().push(*id);
                    }
                    evicted += 1;
                }
                for (slot, gone) in gone {
                    keys.remove(slot, &gone);
                }
                ids
            }
            #[cfg(feature = "rocksdb")]
            Indexes::RocksDb(space) => {
                let end = match through_ms.checked_add(1) {
                    Some(after) => [&[EXPIRY][..], &ordered_ms(after)].concat(),
                    None => vec![EXPIRY + 1],
                };
                let mut ids = Vec::new();
                let mut batch = space.batch();
                for entry in space.range(&[EXPIRY], Some(&end)) {
                    let (entry, value) = entry?;
                    let Some(id_bytes) = entry.get(9..17) else { continue };
                    batch.delete(&[&entry]);
                    if let Some(key) = value.strip_prefix(&[1]) {
                        batch.delete(&[&key_prefix(key), id_bytes]);
                    }
                    let id = u64::from_be_bytes(id_bytes.try_into().unwrap_or_default());
                    ids.push(id);
                    if Self::take_row(&mut self.chunks, id).is_some() {
                        evicted += 1;
                    }
                }
                space.write(batch)?;
                ids
            }
        };
        ids.sort_unstable();
        self.len -= evicted;
        Ok(ids)
    }

    /// What the indexes hold: each key's ids (by key) and the ids by eviction time.
    #[cfg(test)]
    pub(super) fn contents(&self) -> (Vec<(Vec<u8>, Vec<u64>)>, Vec<(i64, u64)>) {
        match &self.index {
            Indexes::Memory { keys, expiry } => {
                let mut by_key: Vec<_> = keys
                    .by_key
                    .iter()
                    .map(|(k, s)| (k.to_vec(), keys.slots[*s as usize].1.iter().copied().collect()))
                    .collect();
                by_key.sort();
                let mut by_time: Vec<(i64, u64)> =
                    expiry.iter().flat_map(|(at, ids)| ids.iter().map(|id| (*at, *id))).collect();
                by_time.sort_unstable();
                (by_key, by_time)
            }
            #[cfg(feature = "rocksdb")]
            Indexes::RocksDb(space) => {
                let mut by_key: Vec<(Vec<u8>, Vec<u64>)> = Vec::new();
                let mut expiry = Vec::new();
                for entry in space.range(&[], None) {
                    let (entry, _) = entry.unwrap();
                    let id = u64::from_be_bytes(entry[entry.len() - 8..].try_into().unwrap());
                    if entry[0] == BY_KEY {
                        let key = entry[5..entry.len() - 8].to_vec();
                        match by_key.last_mut() {
                            Some((last, ids)) if *last == key => ids.push(id),
                            _ => by_key.push((key, vec![id])),
                        }
                    } else {
                        expiry.push((crate::state::rocksdb_index::ms_of(&entry[1..9]).unwrap(), id));
                    }
                }
                by_key.sort();
                (by_key, expiry)
            }
        }
    }
}
