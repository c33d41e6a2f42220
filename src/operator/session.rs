//! Session merging for a session-window aggregation (Spark's `MergingSessionsExec` and
//! `SessionWindowStateStoreRestoreExec`, SEMANTICS §3).
//!
//! A batch's partial aggregates arrive grouped by (keys, one-row session `[t, t + gap)`). Per key,
//! the new sessions and the stored ones are sorted by start and merged while the next starts at or
//! before the current end (Spark's rule). New rows take their merged session's bounds; a stored
//! session whose bounds grow is taken out of the store and re-enters as a partial row with the new
//! bounds. The ordinary aggregation merge then folds every piece of a session into one state row.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StructArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};

#[cfg(feature = "rocksdb")]
use crate::state::rocksdb_index::{length_prefixed, IndexSpace};
use crate::state::StateStore;
use crate::Result;

/// Where an interval comes from: a row of the batch's partial aggregates, or a stored session.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Partial(usize),
    Stored(usize),
}

/// Start and end values (in the event-time unit) of a session struct column.
fn bounds(column: &ArrayRef) -> Result<(Vec<i64>, Vec<i64>)> {
    let sessions: &StructArray = column.as_struct();
    let values = |i: usize| -> Result<Vec<i64>> {
        Ok(cast(sessions.column(i), &DataType::Int64)?.as_primitive::<Int64Type>().values().to_vec())
    };
    Ok((values(0)?, values(1)?))
}

/// A session struct column like `like` holding `starts` and `ends`.
fn session_column(like: &ArrayRef, starts: Vec<i64>, ends: Vec<i64>) -> Result<ArrayRef> {
    let DataType::Struct(fields) = like.data_type() else { unreachable!("session columns are structs") };
    let unit = fields[0].data_type();
    let starts = cast(&(Arc::new(Int64Array::from(starts)) as ArrayRef), unit)?;
    let ends = cast(&(Arc::new(Int64Array::from(ends)) as ArrayRef), unit)?;
    Ok(Arc::new(StructArray::try_new(fields.clone(), vec![starts, ends], None)?))
}

/// The stored sessions of each key (the group columns other than the session), so that merging a
/// batch reads only the sessions of the keys the batch brings, not every stored session.
#[derive(Debug)]
pub struct SessionIndex {
    /// Indexes of the group columns other than the session.
    others: Vec<usize>,
    /// Encodes those columns.
    converter: RowConverter,
    sessions: Sessions,
}

/// Other-columns key → the state keys of its stored sessions, and back: in memory beside the
/// in-memory store, in the query's RocksDB index instance beside a RocksDB store.
#[derive(Debug)]
enum Sessions {
    Memory {
        /// Other-columns key → the state keys of its stored sessions.
        sessions: HashMap<Box<[u8]>, HashSet<Box<[u8]>>>,
        /// State key → its other-columns key.
        other_of: HashMap<Box<[u8]>, Box<[u8]>>,
    },
    /// `[BY_OTHER][other length, u32 BE][other][state key]` (no value) and `[OTHER_OF][state
    /// key]` valued the other-columns key.
    #[cfg(feature = "rocksdb")]
    RocksDb(IndexSpace),
}

#[cfg(feature = "rocksdb")]
const BY_OTHER: u8 = b'S';
#[cfg(feature = "rocksdb")]
const OTHER_OF: u8 = b'O';

impl SessionIndex {
    /// An empty index for group columns of `group_types`, the session being column `session`,
    /// kept where `store` keeps its rows.
    ///
    /// # Errors
    /// An arrow error when a key type has no row encoding; as `StateStore::index_space`.
    pub fn try_new(group_types: &[DataType], session: usize, store: &StateStore) -> Result<Self> {
        let others: Vec<usize> = (0..group_types.len()).filter(|i| *i != session).collect();
        let converter = RowConverter::new(others.iter().map(|i| SortField::new(group_types[*i].clone())).collect())?;
        #[cfg(feature = "rocksdb")]
        if let Some(space) = store.index_space()? {
            return Ok(Self { others, converter, sessions: Sessions::RocksDb(space) });
        }
        let _ = store;
        let sessions = Sessions::Memory { sessions: HashMap::default(), other_of: HashMap::default() };
        Ok(Self { others, converter, sessions })
    }

    /// The other-columns key of each row of `group_columns`.
    fn other_keys(&self, group_columns: &[ArrayRef]) -> Result<arrow::row::Rows> {
        let columns: Vec<ArrayRef> = self.others.iter().map(|i| Arc::clone(&group_columns[*i])).collect();
        Ok(self.converter.convert_columns(&columns)?)
    }

    /// Records that the sessions `keys` (state keys of the rows of `group_columns`) are stored.
    ///
    /// # Errors
    /// An arrow error when the columns cannot be encoded; a RocksDB error.
    pub fn insert(&mut self, keys: &[Box<[u8]>], group_columns: &[ArrayRef]) -> Result<()> {
        let others = self.other_keys(group_columns)?;
        match &mut self.sessions {
            Sessions::Memory { sessions, other_of } => {
                for (key, other) in keys.iter().zip(others.iter()) {
                    if !other_of.contains_key(key) {
                        let other: Box<[u8]> = other.data().into();
                        sessions.entry(other.clone()).or_default().insert(key.clone());
                        other_of.insert(key.clone(), other);
                    }
                }
            }
            #[cfg(feature = "rocksdb")]
            Sessions::RocksDb(space) => {
                let mut batch = space.batch();
                for (key, other) in keys.iter().zip(others.iter()) {
                    batch.put(&[&length_prefixed(BY_OTHER, other.data()), key], &[]);
                    batch.put(&[&[OTHER_OF], key], other.data());
                }
                space.write(batch)?;
            }
        }
        Ok(())
    }

    /// Records that the session `key` left the state.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn remove(&mut self, key: &[u8]) -> Result<()> {
        match &mut self.sessions {
            Sessions::Memory { sessions, other_of } => {
                if let Some(other) = other_of.remove(key) {
                    if let Some(set) = sessions.get_mut(&other) {
                        set.remove(key);
                        if set.is_empty() {
                            sessions.remove(&other);
                        }
                    }
                }
            }
            #[cfg(feature = "rocksdb")]
            Sessions::RocksDb(space) => {
                let of = [&[OTHER_OF][..], key].concat();
                if let Some(other) = space.get(&of)? {
                    let mut batch = space.batch();
                    batch.delete(&[&length_prefixed(BY_OTHER, &other), key]);
                    batch.delete(&[&of]);
                    space.write(batch)?;
                }
            }
        }
        Ok(())
    }

    /// The state keys of the stored sessions of the other-columns keys `others`.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    fn stored<'a>(&self, others: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Box<[u8]>>> {
        match &self.sessions {
            Sessions::Memory { sessions, .. } => {
                Ok(others.filter_map(|other| sessions.get(other)).flatten().cloned().collect())
            }
            #[cfg(feature = "rocksdb")]
            Sessions::RocksDb(space) => {
                let mut stored = Vec::new();
                let mut scanner = space.prefix_scanner();
                for other in others {
                    scanner.scan(&length_prefixed(BY_OTHER, other), |key| stored.push(Box::from(key)))?;
                }
                Ok(stored)
            }
        }
    }

    /// Forgets every session.
    ///
    /// # Errors
    /// A RocksDB error (the local disk failing).
    pub fn clear(&mut self) -> Result<()> {
        match &mut self.sessions {
            Sessions::Memory { sessions, other_of } => {
                sessions.clear();
                other_of.clear();
                Ok(())
            }
            #[cfg(feature = "rocksdb")]
            Sessions::RocksDb(space) => space.clear(),
        }
    }
}

/// The state an aggregation keeps, as session merging reads it.
pub struct SessionInputs<'a> {
    /// The aggregation's state.
    pub store: &'a StateStore,
    /// The stored sessions by key.
    pub index: &'a SessionIndex,
    /// Encodes group keys (the state keys).
    pub keys: &'a RowConverter,
    /// Encodes accumulator states (the state values).
    pub values: &'a RowConverter,
    /// Number of group columns.
    pub group_count: usize,
    /// Index of the session column among them.
    pub session: usize,
}

/// Rewrites `partial` (group columns then state columns, sessions one row each) so that each row
/// carries its merged session; returns it with the stored sessions that were merged into a larger
/// one appended, and the state keys those leave behind (to be removed by the caller).
///
/// # Errors
/// An arrow error when keys or states cannot be converted.
pub fn merge_sessions(inputs: &SessionInputs, partial: RecordBatch) -> Result<(RecordBatch, Vec<Box<[u8]>>)> {
    if partial.num_rows() == 0 {
        return Ok((partial, vec![]));
    }
    let index = inputs.index;
    let partial_others = index.other_keys(&partial.columns()[..inputs.group_count])?;
    let (p_starts, p_ends) = bounds(partial.column(inputs.session))?;
    let mut pieces: HashMap<&[u8], Vec<(i64, i64, Piece)>> = HashMap::default();
    for i in 0..partial.num_rows() {
        pieces.entry(partial_others.row(i).data()).or_default().push((p_starts[i], p_ends[i], Piece::Partial(i)));
    }

    // Only the stored sessions of the keys this batch brings.
    let mut stored = index.stored(pieces.keys().copied())?;
    stored.sort_unstable();
    let parser = inputs.keys.parser();
    let stored_columns =
        if stored.is_empty() { vec![] } else { inputs.keys.convert_rows(stored.iter().map(|k| parser.parse(k)))? };
    let stored_others = if stored.is_empty() { None } else { Some(index.other_keys(&stored_columns)?) };
    let (s_starts, s_ends) =
        if stored.is_empty() { (vec![], vec![]) } else { bounds(&stored_columns[inputs.session])? };
    if let Some(stored_others) = &stored_others {
        for j in 0..stored.len() {
            if let Some(list) = pieces.get_mut(stored_others.row(j).data()) {
                list.push((s_starts[j], s_ends[j], Piece::Stored(j)));
            }
        }
    }

    let mut new_starts = p_starts.clone();
    let mut new_ends = p_ends.clone();
    let mut moved: Vec<(usize, i64, i64)> = Vec::new();
    for list in pieces.values_mut() {
        list.sort_unstable_by_key(|(s, e, _)| (*s, *e));
        let mut at = 0;
        while at < list.len() {
            let (start, mut end) = (list[at].0, list[at].1);
            let mut next = at + 1;
            while next < list.len() && list[next].0 <= end {
                end = end.max(list[next].1);
                next += 1;
            }
            for (s, e, piece) in &list[at..next] {
                match piece {
                    Piece::Partial(i) => (new_starts[*i], new_ends[*i]) = (start, end),
                    Piece::Stored(j) if (*s, *e) != (start, end) => moved.push((*j, start, end)),
                    Piece::Stored(_) => {}
                }
            }
            at = next;
        }
    }

    let session_like = partial.column(inputs.session);
    let mut columns = partial.columns().to_vec();
    columns[inputs.session] = session_column(session_like, new_starts, new_ends)?;
    let rewritten = RecordBatch::try_new(partial.schema(), columns)?;
    if moved.is_empty() {
        return Ok((rewritten, vec![]));
    }
    moved.sort_unstable_by_key(|(j, _, _)| *j);
    let rows = UInt32Array::from_iter_values(moved.iter().map(|(j, _, _)| *j as u32));
    let mut columns = stored_columns.iter().map(|c| take(c.as_ref(), &rows, None)).collect::<Result<Vec<_>, _>>()?;
    columns[inputs.session] =
        session_column(session_like, moved.iter().map(|m| m.1).collect(), moved.iter().map(|m| m.2).collect())?;
    let value_parser = inputs.values.parser();
    let values = moved.iter().map(|(j, _, _)| inputs.store.get_indexed(&stored[*j])).collect::<Result<Vec<_>>>()?;
    let states = inputs.values.convert_rows(values.iter().map(|v| value_parser.parse(v)))?;
    columns.extend(states);
    let moved_rows = RecordBatch::try_new(partial.schema(), columns)?;
    let removed = moved.iter().map(|(j, _, _)| stored[*j].clone()).collect();
    Ok((concat_batches(&partial.schema(), [&rewritten, &moved_rows])?, removed))
}
