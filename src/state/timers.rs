//! An event-time (or processing-time) ordered index of state keys: Flink's timer service, in the
//! small. Operators that emit or evict by time register each key's time here when they store it,
//! and a batch takes only the keys whose time has passed, so its work follows the keys that are
//! due, not every key in state.
//!
//! The index lives in memory beside the [`super::StateStore`], which stays the truth: operators
//! rebuild it from the store after a restore.

use std::collections::BTreeSet;

use foldhash::HashMap;

/// Keys ordered by a time in ms since the epoch; at most one time per key.
#[derive(Debug, Default)]
pub struct TimerIndex {
    by_time: BTreeSet<(i64, Box<[u8]>)>,
    of_key: HashMap<Box<[u8]>, i64>,
}

impl TimerIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time of `key` to `at_ms`, replacing any earlier one.
    pub fn set(&mut self, key: &[u8], at_ms: i64) {
        match self.of_key.get_mut(key) {
            Some(old) if *old == at_ms => {}
            Some(old) => {
                self.by_time.remove(&(*old, Box::from(key)));
                *old = at_ms;
                self.by_time.insert((at_ms, key.into()));
            }
            None => {
                self.of_key.insert(key.into(), at_ms);
                self.by_time.insert((at_ms, key.into()));
            }
        }
    }

    /// Removes the time of `key`, if it has one.
    pub fn remove(&mut self, key: &[u8]) {
        if let Some(at) = self.of_key.remove(key) {
            self.by_time.remove(&(at, Box::from(key)));
        }
    }

    /// Removes and returns the keys whose time is at or before `through_ms`, earliest first
    /// (ties in key order).
    pub fn take_through(&mut self, through_ms: i64) -> Vec<Box<[u8]>> {
        let mut due = Vec::new();
        while let Some(first) = self.by_time.first() {
            if first.0 > through_ms {
                break;
            }
            let (_, key) = self.by_time.pop_first().expect("checked non-empty");
            self.of_key.remove(&key);
            due.push(key);
        }
        due
    }

    /// The keys whose time is at or before `through_ms`, earliest first, left in the index.
    pub fn due_through(&self, through_ms: i64) -> impl Iterator<Item = &[u8]> {
        self.by_time.iter().take_while(move |(at, _)| *at <= through_ms).map(|(_, k)| &**k)
    }

    /// The earliest time, if any key has one.
    pub fn earliest(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.by_time.clear();
        self.of_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_in_time_order_once() {
        let mut t = TimerIndex::new();
        t.set(b"b", 20);
        t.set(b"a", 10);
        t.set(b"c", 30);
        t.set(b"b", 5); // replaces 20
        assert_eq!((t.of_key.len(), t.by_time.len()), (3, 3));
        assert_eq!(t.earliest(), Some(5));
        assert_eq!(t.due_through(10).collect::<Vec<_>>(), vec![&b"b"[..], &b"a"[..]]);
        assert_eq!(t.take_through(10), vec![Box::from(&b"b"[..]), Box::from(&b"a"[..])]);
        assert_eq!(t.take_through(10), Vec::<Box<[u8]>>::new());
        t.remove(b"c");
        assert!(t.of_key.is_empty() && t.by_time.is_empty());
        assert_eq!(t.earliest(), None);
    }
}
