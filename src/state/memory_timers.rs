//! The in-memory timer index: each key stored once, with its time and hash, and each time listing
//! the hashes of its keys (8 bytes a key, no second copy of it). Setting a new key's time is one
//! hash-table insertion and a push; taking the due keys finds each by its stored hash, without
//! hashing or comparing a key again.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::timers::take_due;

/// One key's timer.
#[derive(Debug)]
struct Timer {
    hash: u64,
    at_ms: i64,
    key: Box<[u8]>,
}

/// The keys of one time.
#[derive(Debug, Default)]
struct Slot {
    /// The hashes of the keys set to this time, in the order set: a superset of the live ones'.
    /// A key removed or moved to another time leaves its hash behind (passed over when the time
    /// comes due), so a removal does not search this list; [`MemoryTimers::unlist`] compacts it
    /// when such leftovers outnumber the live keys.
    hashes: Vec<u64>,
    /// Keys whose time this is (never 0: a time without keys is dropped).
    live: usize,
}

/// Keys ordered by a time in ms; at most one time per key.
#[derive(Debug, Default)]
pub(crate) struct MemoryTimers {
    hasher: foldhash::fast::RandomState,
    /// Each key with its time: the truth.
    of_key: HashTable<Timer>,
    by_time: BTreeMap<i64, Slot>,
}

impl MemoryTimers {
    /// Sets the time of `key` to `at_ms`, replacing any earlier one.
    pub(crate) fn set(&mut self, key: &[u8], at_ms: i64) {
        let hash = self.hasher.hash_one(key);
        match self.of_key.find_mut(hash, |t| t.hash == hash && *t.key == *key) {
            Some(timer) if timer.at_ms == at_ms => return,
            Some(timer) => {
                let old = std::mem::replace(&mut timer.at_ms, at_ms);
                self.unlist(old);
            }
            None => {
                self.of_key.insert_unique(hash, Timer { hash, at_ms, key: key.into() }, |t| t.hash);
            }
        }
        let slot = self.by_time.entry(at_ms).or_default();
        slot.hashes.push(hash);
        slot.live += 1;
    }

    /// Removes the time of `key`, if it has one.
    pub(crate) fn remove(&mut self, key: &[u8]) {
        let hash = self.hasher.hash_one(key);
        if let Ok(timer) = self.of_key.find_entry(hash, |t| t.hash == hash && *t.key == *key) {
            let at_ms = timer.remove().0.at_ms;
            self.unlist(at_ms);
        }
    }

    /// Accounts for a key that left time `at_ms`: drops the time with its last key, and compacts
    /// its hash list when left-behind hashes outnumber twice the live keys (so each compaction
    /// follows as many removals as the keys it keeps: constant work per removal, amortized).
    fn unlist(&mut self, at_ms: i64) {
        let Some(slot) = self.by_time.get_mut(&at_ms) else { return };
        slot.live = slot.live.saturating_sub(1);
        if slot.live == 0 {
            self.by_time.remove(&at_ms);
        } else if slot.hashes.len() > 2 * slot.live + 16 {
            slot.hashes.sort_unstable();
            slot.hashes.dedup();
            let of_key = &self.of_key;
            slot.hashes.retain(|&h| of_key.iter_hash(h).any(|t| t.hash == h && t.at_ms == at_ms));
        }
    }

    /// Removes and returns the keys whose time is at or before `through_ms`, earliest first
    /// (ties in key order).
    pub(crate) fn take_through(&mut self, through_ms: i64) -> Vec<Box<[u8]>> {
        let mut keys = Vec::new();
        for (at_ms, slot) in take_due(&mut self.by_time, through_ms) {
            let first = keys.len();
            // A hash listed twice finds nothing the second time: its keys are taken already.
            for h in slot.hashes {
                while let Ok(timer) = self.of_key.find_entry(h, |t| t.hash == h && t.at_ms == at_ms) {
                    keys.push(timer.remove().0.key);
                }
            }
            keys[first..].sort_unstable();
        }
        keys
    }

    /// The keys whose time is at or before `through_ms`, earliest first (ties in key order),
    /// left in the index.
    pub(crate) fn due_through(&self, through_ms: i64) -> Vec<Box<[u8]>> {
        let mut keys = Vec::new();
        for (&at_ms, slot) in self.by_time.range(..=through_ms) {
            let mut due: Vec<&[u8]> = slot
                .hashes
                .iter()
                .flat_map(|&h| self.of_key.iter_hash(h).filter(move |t| t.hash == h && t.at_ms == at_ms))
                .map(|t| &*t.key)
                .collect();
            // A hash listed twice found its keys twice.
            due.sort_unstable();
            due.dedup();
            keys.extend(due.into_iter().map(Box::from));
        }
        keys
    }

    /// The earliest time, if any key has one.
    pub(crate) fn earliest(&self) -> Option<i64> {
        self.by_time.first_key_value().map(|(at_ms, _)| *at_ms)
    }

    /// Forgets every key.
    pub(crate) fn clear(&mut self) {
        self.of_key.clear();
        self.by_time.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(keys: &[&[u8]]) -> Vec<Box<[u8]>> {
        keys.iter().map(|k| Box::from(*k)).collect()
    }

    #[test]
    fn moved_and_removed_keys_leave_nothing_due_and_their_leftovers_are_compacted() {
        let mut t = MemoryTimers::default();
        t.set(b"stays", 100);
        for round in 0..1000u32 {
            let key = round.to_le_bytes();
            t.set(&key, 100);
            t.set(&key, 200); // moved away from 100
            t.remove(&key); // and gone
            t.set(b"back", 100);
            t.set(b"back", 300);
        }
        assert!(t.by_time[&100].hashes.len() <= 2 * 1 + 16 + 1, "leftovers compacted");
        assert_eq!(t.by_time.len(), 2, "times 200 (no key left) dropped; 100 and 300 stay");
        t.set(b"back", 100); // a key set to a time it left before is due there once
        assert_eq!(t.due_through(250), boxed(&[b"back", b"stays"]));
        assert_eq!(t.take_through(250), boxed(&[b"back", b"stays"]));
        assert_eq!(t.take_through(250), boxed(&[]));
        assert_eq!(t.earliest(), None);
    }

    #[test]
    fn keys_sharing_a_hash_and_a_time_are_all_due() {
        let mut t = MemoryTimers::default();
        // Two keys stored under one hash, as a 64-bit collision would.
        for key in [&b"x"[..], b"y"] {
            t.of_key.insert_unique(7, Timer { hash: 7, at_ms: 5, key: key.into() }, |t| t.hash);
            let slot = t.by_time.entry(5).or_default();
            slot.hashes.push(7);
            slot.live += 1;
        }
        assert_eq!(t.due_through(5), boxed(&[b"x", b"y"]));
        assert_eq!(t.take_through(5), boxed(&[b"x", b"y"]));
        assert!(t.of_key.is_empty());
    }
}
