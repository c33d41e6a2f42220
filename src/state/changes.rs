//! A store's changes since its last commit, the contents of its next delta file: each changed
//! key with its last written value (or none: removed), in the order the keys first changed.
//!
//! Keys and values are copied end to end into one buffer that is cleared, not freed, at commit:
//! recording a change allocates nothing once the buffers have grown to a batch's size, and the
//! delta is encoded straight from them (no read of the store at commit, which on RocksDB would be
//! a read per written key).

use std::ops::Range;

use hashbrown::HashTable;

/// One changed key: its bytes and those of its last value in [`ChangeSet::bytes`].
#[derive(Debug)]
struct Change {
    hash: u64,
    key: Range<usize>,
    /// `None`: the key was removed.
    value: Option<Range<usize>>,
}

/// The changes of one batch to one store.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    /// The changed keys and their written values, end to end; a value a later write replaced
    /// stays until the commit clears the buffer (a batch's writes bound it).
    bytes: Vec<u8>,
    /// In the order each key first changed.
    changes: Vec<Change>,
    /// Indexes into `changes`, by their key's hash.
    by_key: HashTable<usize>,
}

impl ChangeSet {
    /// Records that `key` (whose hash, from the store's hasher, is `hash`) now has `value`
    /// (`None`: it was removed), replacing any earlier change of it.
    pub(crate) fn record(&mut self, hash: u64, key: &[u8], value: Option<&[u8]>) {
        let Self { bytes, changes, by_key } = self;
        let value = value.map(|value| append(bytes, value));
        let found = by_key.find(hash, |&i| changes[i].hash == hash && bytes[changes[i].key.clone()] == *key);
        match found {
            Some(&i) => changes[i].value = value,
            None => {
                let key = append(bytes, key);
                changes.push(Change { hash, key, value });
                by_key.insert_unique(hash, changes.len() - 1, |&i| changes[i].hash);
            }
        }
    }

    /// Every changed key with its value (`None`: removed), in the order the keys first changed.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> + '_ {
        self.changes.iter().map(|c| (&self.bytes[c.key.clone()], c.value.clone().map(|v| &self.bytes[v])))
    }

    /// Forgets every change. The buffers keep their capacity for the next batch, unless they hold
    /// more than four times what this batch used (a burst's): then they shrink to this batch's
    /// size, so a burst does not pin its memory for the life of the query.
    pub(crate) fn clear(&mut self) {
        let (used, count) = (self.bytes.len(), self.changes.len());
        self.bytes.clear();
        self.changes.clear();
        self.by_key.clear();
        if self.bytes.capacity() > 4 * used.max(4096) {
            self.bytes.shrink_to(used);
        }
        if self.changes.capacity() > 4 * count.max(1024) {
            self.changes.shrink_to(count);
            self.by_key = HashTable::with_capacity(count);
        }
    }
}

/// Appends `data` to `bytes`; returns where it lies.
fn append(bytes: &mut Vec<u8>, data: &[u8]) -> Range<usize> {
    let start = bytes.len();
    bytes.extend_from_slice(data);
    start..bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(changes: &ChangeSet) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        changes.entries().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect()
    }

    #[test]
    fn the_last_change_of_a_key_wins_in_first_change_order() {
        let mut changes = ChangeSet::default();
        changes.record(1, b"b", Some(b"1"));
        changes.record(2, b"a", None);
        changes.record(1, b"b", Some(b"22"));
        // Another key under the same hash (a collision) is its own change.
        changes.record(1, b"c", Some(b"3"));
        changes.record(2, b"a", Some(b"4"));
        changes.record(1, b"c", None);
        assert_eq!(
            entries(&changes),
            vec![(b"b".to_vec(), Some(b"22".to_vec())), (b"a".to_vec(), Some(b"4".to_vec())), (b"c".to_vec(), None)]
        );
        changes.clear();
        assert_eq!(entries(&changes), vec![]);
        changes.record(1, b"b", None);
        assert_eq!(entries(&changes), vec![(b"b".to_vec(), None)]);
    }

    #[test]
    fn a_burst_gives_its_memory_back_at_the_next_commit() {
        let mut changes = ChangeSet::default();
        for i in 0..100_000u64 {
            changes.record(i, &i.to_le_bytes(), Some(&[0; 32]));
        }
        changes.clear();
        assert!(changes.bytes.capacity() >= 4_000_000, "a steady load keeps its buffers");
        changes.record(0, b"k", Some(b"v"));
        changes.clear();
        assert!(changes.bytes.capacity() < 100_000 && changes.changes.capacity() < 100_000);
        assert!(changes.by_key.capacity() < 100_000);
    }
}
