//! The in-memory store's rows: a hash table of `(key, value)` byte rows, each stored with its
//! key's hash, so that the caller hashes a key once for this table and the store's change set,
//! and a growing table moves its rows without rehashing their keys.

use hashbrown::HashTable;

/// One stored row.
#[derive(Debug)]
struct Row {
    hash: u64,
    key: Box<[u8]>,
    value: Box<[u8]>,
}

/// Key → value rows; every method takes the key's hash, computed by the caller with one hasher
/// for the life of the table.
#[derive(Debug, Default)]
pub(crate) struct MemoryRows {
    table: HashTable<Row>,
}

impl MemoryRows {
    /// An empty table with room for `rows` rows.
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self { table: HashTable::with_capacity(rows) }
    }

    /// The value of `key` (whose hash is `hash`).
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<&[u8]> {
        self.table.find(hash, |row| row.hash == hash && *row.key == *key).map(|row| &*row.value)
    }

    /// Sets the value of `key` (whose hash is `hash`); returns the length of the value it
    /// replaced, if any. An update writes over the old value when the sizes match (an
    /// accumulator's fixed-width state): no allocation.
    pub(crate) fn put(&mut self, hash: u64, key: &[u8], value: &[u8]) -> Option<usize> {
        match self.table.find_mut(hash, |row| row.hash == hash && *row.key == *key) {
            Some(row) => {
                let old = row.value.len();
                if old == value.len() {
                    row.value.copy_from_slice(value);
                } else {
                    row.value = value.into();
                }
                Some(old)
            }
            None => {
                self.table.insert_unique(hash, Row { hash, key: key.into(), value: value.into() }, |row| row.hash);
                None
            }
        }
    }

    /// Inserts `key` (whose hash is `hash`) with an empty value unless it is present, in one
    /// probe; returns whether it was absent.
    pub(crate) fn insert_absent(&mut self, hash: u64, key: &[u8]) -> bool {
        match self.table.entry(hash, |row| row.hash == hash && *row.key == *key, |row| row.hash) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(Row { hash, key: key.into(), value: Box::default() });
                true
            }
        }
    }

    /// Removes `key` (whose hash is `hash`) and returns its value, if it was present.
    pub(crate) fn take(&mut self, hash: u64, key: &[u8]) -> Option<Box<[u8]>> {
        let row = self.table.find_entry(hash, |row| row.hash == hash && *row.key == *key).ok()?;
        Some(row.remove().0.value)
    }

    /// Every `(key, value)`, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.table.iter().map(|row| (&*row.key, &*row.value))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn puts_replace_takes_remove_and_colliding_hashes_keep_keys_apart() {
        let hasher = foldhash::fast::RandomState::default();
        let mut rows = MemoryRows::default();
        let (a, b) = (b"a".as_slice(), b"bb".as_slice());
        let (ha, hb) = (hasher.hash_one(a), hasher.hash_one(b));
        assert_eq!(rows.put(ha, a, b"1"), None);
        assert_eq!(rows.put(ha, a, b"2"), Some(1), "same size: written over");
        assert_eq!(rows.put(ha, a, b"333"), Some(1), "another size: replaced");
        // A key stored under another key's hash (a collision) is a different row.
        assert_eq!(rows.put(ha, b, b"x"), None);
        assert_eq!(rows.get(ha, a), Some(&b"333"[..]));
        assert_eq!(rows.get(ha, b), Some(&b"x"[..]));
        assert_eq!(rows.get(hb, b), None);
        assert_eq!(rows.take(ha, a).as_deref(), Some(&b"333"[..]));
        assert_eq!(rows.take(ha, a), None);
        assert_eq!(rows.iter().collect::<Vec<_>>(), vec![(b, &b"x"[..])]);
    }
}
