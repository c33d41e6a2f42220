//! One side's buffered rows of a stream-stream join: how they are stored (a chunk of rows per
//! batch, see [`encode_chunk`], with matched flags and the side's latest eviction time beside
//! them) and the in-memory index over them ([`Buffer`]: equality key → arrival ids, eviction
//! times, per chunk each row's key), rebuilt from the store on restore.

use foldhash::HashMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{Result, SluiceError};

/// Store key prefix of a matched flag, `[MATCHED | side][id]` (no value).
pub(super) const MATCHED: u8 = 0x10;
/// Store key of a side's latest eviction time, `[EVICTED | side]`, valued the time (ms, i64 LE).
pub(super) const EVICTED: u8 = 0x20;
/// Set in an evicted row's end offset in a stored chunk: its bytes were dropped.
const DEAD: u64 = 1 << 63;
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

/// Encodes rows as a stored chunk: the row count (u32 LE), each row's end offset in the bytes
/// that follow (u64 LE; [`DEAD`] set for an evicted row, `None` here, whose bytes are dropped),
/// then the rows' bytes.
pub(super) fn encode_chunk(rows: &[Option<&[u8]>]) -> Result<Vec<u8>> {
    let count = u32::try_from(rows.len()).map_err(|_| {
        datafusion::error::DataFusionError::Execution(format!(
            "a join side received more than {} rows in one batch",
            u32::MAX
        ))
    })?;
    let data: usize = rows.iter().flatten().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(4 + 8 * rows.len() + data);
    out.extend_from_slice(&count.to_le_bytes());
    let mut end = 0u64;
    for row in rows {
        match row {
            Some(r) => {
                end += r.len() as u64;
                out.extend_from_slice(&end.to_le_bytes());
            }
            None => out.extend_from_slice(&(end | DEAD).to_le_bytes()),
        }
    }
    for row in rows.iter().flatten() {
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// A stored chunk of buffered rows (see [`encode_chunk`]), read in place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chunk<'a> {
    pub(super) ends: &'a [u8],
    pub(super) data: &'a [u8],
    pub(super) len: usize,
}

impl<'a> Chunk<'a> {
    /// `None` when `value` is not a chunk.
    pub(super) fn parse(value: &'a [u8]) -> Option<Self> {
        let len = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
        let header = len.checked_mul(8)?.checked_add(4)?;
        Some(Self { ends: value.get(4..header)?, data: value.get(header..)?, len })
    }

    pub(super) fn end(&self, i: usize) -> u64 {
        let bytes: [u8; 8] = self.ends[8 * i..8 * i + 8].try_into().unwrap_or_default();
        u64::from_le_bytes(bytes)
    }

    /// The bytes of row `i`; `None` when it was evicted (or lies outside the chunk).
    pub(super) fn row(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.len {
            return None;
        }
        let end = self.end(i);
        if end & DEAD != 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1) & !DEAD };
        self.data.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }
}

/// The index of one stored chunk of a side.
#[derive(Debug)]
pub(super) struct ChunkIndex {
    /// Each row's key slot, [`NO_KEY`], or [`GONE`] once evicted.
    pub(super) slots: Vec<u32>,
    /// Rows still buffered.
    pub(super) live: usize,
    /// Rows whose bytes the stored chunk holds.
    pub(super) stored: usize,
}

/// The indexes over one side's buffered rows (whose bytes are in the store).
#[derive(Debug, Default)]
pub(super) struct Buffer {
    /// Equality key → its slot in `slots`.
    pub(super) by_key: HashMap<Box<[u8]>, u32>,
    /// Per key slot: the key and the arrival ids of the buffered rows with it, ascending; a free
    /// slot (listed in `free`) has no ids.
    pub(super) slots: Vec<(Box<[u8]>, VecDeque<u64>)>,
    pub(super) free: Vec<u32>,
    /// The stored chunks, by first arrival id.
    pub(super) chunks: BTreeMap<u64, ChunkIndex>,
    /// `(time, id)`: the time (ms, rounded up) the state watermark must pass to evict row `id`;
    /// rows that are never evicted are not in it.
    pub(super) expiry: BTreeSet<(i64, u64)>,
    /// Number of buffered rows.
    pub(super) len: usize,
    pub(super) next_id: u64,
}

impl Buffer {
    /// The slot of `key`, taken (from the free ones first) if the key has none.
    pub(super) fn slot_of(&mut self, key: &[u8]) -> Result<u32> {
        if let Some(slot) = self.by_key.get(key) {
            return Ok(*slot);
        }
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
        Ok(slot)
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
        for (i, row) in rows.enumerate() {
            let id = first + i as u64;
            let Some((key, at)) = row else {
                chunk.slots.push(GONE);
                continue;
            };
            let slot = match key {
                Some(key) => {
                    let slot = self.slot_of(key)?;
                    self.slots[slot as usize].1.push_back(id);
                    slot
                }
                None => NO_KEY,
            };
            chunk.slots.push(slot);
            if let Some(at) = at {
                self.expiry.insert((at, id));
            }
            chunk.live += 1;
        }
        self.next_id = self.next_id.max(first + chunk.slots.len() as u64);
        let live = chunk.live;
        self.len += live;
        if live > 0 {
            self.chunks.insert(first, chunk);
        }
        Ok(live)
    }

    /// Ids of buffered rows with key `key`, in arrival order.
    pub(super) fn probe(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        self.by_key.get(key).into_iter().flat_map(|slot| self.slots[*slot as usize].1.iter().copied())
    }

    /// The first arrival id of the chunk holding row `id`.
    pub(super) fn chunk_first(&self, id: u64) -> Option<u64> {
        self.chunks.range(..=id).next_back().map(|(first, _)| *first)
    }

    /// Takes the rows whose eviction time is at or before `through_ms` out of the indexes;
    /// returns their ids, ascending. Each key's list loses all its evicted ids in one pass
    /// (mostly from its front: ids arrive in order), not one pass per id.
    pub(super) fn evict_through(&mut self, through_ms: i64) -> Vec<u64> {
        let due = match through_ms.checked_add(1) {
            Some(after) => {
                let rest = self.expiry.split_off(&(after, 0));
                std::mem::replace(&mut self.expiry, rest)
            }
            None => std::mem::take(&mut self.expiry),
        };
        let mut ids: Vec<u64> = due.into_iter().map(|(_, id)| id).collect();
        ids.sort_unstable();
        let mut gone: HashMap<u32, Vec<u64>> = HashMap::default();
        let mut evicted = 0;
        for id in &ids {
            let Some((first, chunk)) = self.chunks.range_mut(..=*id).next_back() else { continue };
            let Some(slot) = chunk.slots.get_mut((id - first) as usize) else { continue };
            if *slot == GONE {
                continue;
            }
            if *slot != NO_KEY {
                gone.entry(*slot).or_default().push(*id);
            }
            *slot = GONE;
            chunk.live -= 1;
            evicted += 1;
        }
        for (slot, gone) in gone {
            let (key, list) = &mut self.slots[slot as usize];
            let mut rest = &gone[..];
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
        self.len -= evicted;
        ids
    }
}
