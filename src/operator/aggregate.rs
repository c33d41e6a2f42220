//! Incremental aggregation state: group key → DataFusion accumulator state, merged batch by batch.
//!
//! Each batch, DataFusion's own `AggregateExec` in `Partial` mode turns the new rows into one row
//! of accumulator state per group (see [`super::aggregate_exec`]). This operator drops late
//! groups, merges the partial states into the stored states with each aggregate's
//! `GroupsAccumulator::merge_batch`, and emits final values through `evaluate`, so every built-in
//! aggregate (and every UDAF) runs incrementally without keeping raw rows (DESIGN §4). A
//! `count(DISTINCT x)` is kept value by value instead of as DataFusion's list of values (see
//! [`super::distinct_count`]).

use foldhash::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::GroupsAccumulatorAdapter;

use super::distinct_count::{group_of_seen, is_kept_by_value, plain_count, DistinctCounts};
use super::exec::BatchOperator;
use super::session::{merge_sessions, SessionIndex, SessionInputs};
use super::watermark::{ceil_ms, ms_in_unit, time_values};
use super::{BatchWatermarks, OperatorProgress};
use crate::plan::OutputMode;
use crate::state::{StateStore, TimerIndex};
use crate::Result;

/// The grouping column that carries event time, by which state is dropped and evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeKey {
    /// Index among the group columns.
    pub index: usize,
    /// A `window{start, end}` struct (compare `end`) rather than a plain timestamp.
    pub is_window: bool,
    /// A session window: sessions of a key merge (see [`super::session`]), and late rows are
    /// dropped in complete mode too (SEMANTICS §2).
    pub is_session: bool,
}

/// The outcome of merging a batch into the store: the groups touched (stored ones first), their
/// merged state columns, and the states the first `stored` had before.
#[derive(Default)]
struct Merged {
    touched: Vec<Box<[u8]>>,
    states: Vec<ArrayRef>,
    stored: usize,
    stored_states: Vec<ArrayRef>,
}

/// An aggregation's state and its per-batch logic.
#[derive(Debug)]
pub struct AggregateState {
    name: String,
    mode: OutputMode,
    event_time: Option<EventTimeKey>,
    watermark_upstream: bool,
    /// The aggregates the state merges: the partial aggregation's, with a plain `count` in place
    /// of each `count(DISTINCT)` kept value by value.
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The `count(DISTINCT)`s kept value by value, by state column.
    distinct: DistinctCounts,
    /// In complete mode with a `count(DISTINCT)` kept value by value, every group's key: the
    /// store also holds the seen values, which listing the groups every batch must not visit.
    listed_groups: Option<Vec<Box<[u8]>>>,
    /// Number of state columns of each aggregate, in order.
    state_widths: Vec<usize>,
    /// Group columns, then one final value per aggregate.
    output_schema: SchemaRef,
    /// When the aggregation emits its changes (read by another, see
    /// [`crate::plan::retraction`]): `output_schema` then the sign column, and the row encoding
    /// of the final values, to tell the groups whose values changed.
    changes: Option<(SchemaRef, RowConverter)>,
    keys: RowConverter,
    values: RowConverter,
    group_count: usize,
    store: StateStore,
    watermarks: BatchWatermarks,
    /// Groups by event-time end (ms, rounded up), in append and update mode: a batch takes the
    /// groups the watermark closes without looking at the others.
    closing: TimerIndex,
    /// A session-window aggregation's stored sessions by key.
    sessions: Option<SessionIndex>,
    dropped: u64,
}

/// How to build an [`AggregateState`].
#[derive(Debug)]
pub struct AggregateStateSpec {
    /// Operator name for progress and errors.
    pub name: String,
    /// The query's output mode.
    pub mode: OutputMode,
    /// The event-time grouping column, if any.
    pub event_time: Option<EventTimeKey>,
    /// A stream below declares a watermark (decides no-data batches, SEMANTICS §4).
    pub watermark_upstream: bool,
    /// The aggregate functions, as the partial `AggregateExec` runs them.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Schema of the partial aggregation's input (the aggregates' arguments are over it).
    pub input_schema: SchemaRef,
    /// Schema of the partial aggregation's output: group columns, then every state column.
    pub partial_schema: SchemaRef,
    /// Number of group columns.
    pub group_count: usize,
    /// Schema of the operator's output: group columns, then one final value per aggregate, then
    /// with `emits_changes` the sign column (BIGINT).
    pub output_schema: SchemaRef,
    /// Emit changes instead of rows, in update or complete mode (late rows and closed groups as
    /// that mode has them): for each stored group whose values the batch changed, its old row
    /// with sign −1 and its new row with sign +1; a new group's row with +1 (see
    /// [`crate::plan::retraction`]).
    pub emits_changes: bool,
}

impl AggregateState {
    /// A new, empty aggregation state kept in `store`.
    ///
    /// # Errors
    /// A DataFusion error when an aggregate's state type has no row encoding.
    pub fn try_new(spec: AggregateStateSpec, store: StateStore) -> Result<Self> {
        let fields = spec.partial_schema.fields();
        let state_fields = &fields[spec.group_count..];
        // count(DISTINCT x) value by value, except in a session window (see `distinct_count`).
        let by_value = !spec.event_time.is_some_and(|e| e.is_session);
        let (mut aggregates, mut state_widths, mut distinct) = (Vec::new(), Vec::new(), Vec::new());
        for aggregate in spec.aggregates {
            let column = state_widths.iter().sum::<usize>();
            state_widths.push(aggregate.state_fields()?.len());
            match state_fields[column].data_type() {
                DataType::List(item) if by_value && is_kept_by_value(&aggregate) => {
                    distinct.push((column, item.data_type().clone()));
                    aggregates.push(plain_count(&aggregate, Arc::clone(&spec.input_schema))?);
                }
                _ => aggregates.push(aggregate),
            }
        }
        let distinct = DistinctCounts::try_new(distinct)?;
        let keys = RowConverter::new(
            fields[..spec.group_count].iter().map(|f| SortField::new(f.data_type().clone())).collect(),
        )?;
        // A count(DISTINCT) kept value by value is stored as its count.
        let values = RowConverter::new(
            state_fields
                .iter()
                .enumerate()
                .map(|(i, f)| SortField::new(if distinct.holds(i) { DataType::Int64 } else { f.data_type().clone() }))
                .collect(),
        )?;
        let group_types: Vec<DataType> = fields[..spec.group_count].iter().map(|f| f.data_type().clone()).collect();
        let (output_schema, changes) = if spec.emits_changes {
            let fields = spec.output_schema.fields();
            let values = Arc::new(Schema::new(fields[..fields.len() - 1].to_vec()));
            let finals = RowConverter::new(
                values.fields()[spec.group_count..].iter().map(|f| SortField::new(f.data_type().clone())).collect(),
            )?;
            (values, Some((spec.output_schema, finals)))
        } else {
            (spec.output_schema, None)
        };
        let sessions = match spec.event_time {
            Some(et) if et.is_session => Some(SessionIndex::try_new(&group_types, et.index, &store)?),
            _ => None,
        };
        Ok(Self {
            name: spec.name,
            mode: spec.mode,
            event_time: spec.event_time,
            watermark_upstream: spec.watermark_upstream,
            aggregates,
            listed_groups: (spec.mode == OutputMode::Complete && !distinct.is_empty()).then(Vec::new),
            distinct,
            state_widths,
            output_schema,
            changes,
            group_count: spec.group_count,
            keys,
            values,
            closing: TimerIndex::for_store(&store)?,
            store,
            watermarks: BatchWatermarks::default(),
            sessions,
            dropped: 0,
        })
    }

    /// One accumulator set per aggregate. A global aggregation (no `GROUP BY`) merges with the
    /// plain `Accumulator`s, as DataFusion's own final aggregation without groups does: the
    /// partial states it receives come from them, and their conventions differ from the grouped
    /// ones (`avg`'s count of an all-NULL input is 0, not NULL, which a `GroupsAccumulator`
    /// would turn into NaN).
    fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.aggregates
            .iter()
            .map(|a| {
                if a.groups_accumulator_supported() && self.group_count > 0 {
                    Ok(a.create_groups_accumulator()?)
                } else {
                    let a = Arc::clone(a);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || a.create_accumulator()))
                        as Box<dyn GroupsAccumulator>)
                }
            })
            .collect()
    }

    /// Merges `columns` (all aggregates' state columns) into fresh accumulators.
    fn merge(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
        columns: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        let mut at = 0;
        for (acc, width) in accumulators.iter_mut().zip(&self.state_widths) {
            acc.merge_batch(&columns[at..at + width], groups, total_groups)?;
            at += width;
        }
        Ok(())
    }

    /// Event-time ends (window end or timestamp) of group key columns, in the column's unit, and
    /// that unit's type.
    fn event_time_ends(&self, key_columns: &[ArrayRef]) -> Result<Option<(Int64Array, DataType)>> {
        let Some(et) = self.event_time else { return Ok(None) };
        Ok(Some(time_values(&key_columns[et.index], et.is_window)?))
    }

    /// Applies one batch of partial aggregation output (group columns then state columns) and
    /// returns the rows to emit under the output mode, sorted by group key (SEMANTICS §3):
    /// append emits a group once, when `W_k` passes its event time, and forgets it; update emits
    /// the groups this batch changed, then forgets those `W_k` passed; complete emits everything.
    ///
    /// # Errors
    /// A DataFusion or arrow error from merging or evaluating accumulators.
    fn apply_partial(&mut self, partial: RecordBatch) -> Result<RecordBatch> {
        let mut partial = self.drop_late(partial)?;
        if let (Some(session), Some(index)) = (self.event_time.filter(|e| e.is_session), &self.sessions) {
            let inputs = SessionInputs {
                store: &self.store,
                index,
                keys: &self.keys,
                values: &self.values,
                group_count: self.group_count,
                session: session.index,
            };
            let replaced;
            (partial, replaced) = merge_sessions(&inputs, partial)?;
            for key in replaced {
                self.forget(&key)?;
            }
        }
        let Merged { touched, states, stored, stored_states } = self.merge_into_store(&partial)?;
        match self.mode {
            // Read by an aggregation above: late rows and closed groups as in the query's mode.
            OutputMode::Update | OutputMode::Complete if self.changes.is_some() => {
                let out = self.changes(touched, &states, stored, stored_states)?;
                self.forget_closed_groups()?;
                Ok(out)
            }
            OutputMode::Complete => {
                // The touched groups' merged states are at hand; only the others are decoded
                // from the store (decoding them all again cost as much as the merge for large
                // states such as sum(DISTINCT)'s value lists).
                let touched_set: HashSet<&[u8]> = touched.iter().map(|k| &**k).collect();
                let mut untouched: Vec<Box<[u8]>> = Vec::new();
                if let Some(groups) = &self.listed_groups {
                    untouched.extend(groups.iter().filter(|k| !touched_set.contains(&***k)).cloned());
                } else {
                    for entry in self.store.iter() {
                        let (k, _) = entry?;
                        if !touched_set.contains(&*k) {
                            untouched.push(k.into());
                        }
                    }
                }
                drop(touched_set);
                if untouched.is_empty() {
                    return self.evaluate(touched, states);
                }
                let old = self.stored_states(&untouched)?;
                let states = if states.is_empty() {
                    old
                } else {
                    states
                        .iter()
                        .zip(&old)
                        .map(|(new, old)| {
                            // An accumulator's state type may differ from the stored one in a
                            // list's field name or nullability.
                            let new = if new.data_type() == old.data_type() {
                                Arc::clone(new)
                            } else {
                                arrow::compute::cast(new, old.data_type())?
                            };
                            arrow::compute::concat(&[new.as_ref(), old.as_ref()])
                        })
                        .collect::<Result<Vec<_>, _>>()?
                };
                let mut keys = touched;
                keys.extend(untouched);
                self.evaluate(keys, states)
            }
            OutputMode::Update => {
                // The touched groups' merged states are at hand: evaluated from them, not read back.
                let out = self.evaluate(touched, states)?;
                self.forget_closed_groups()?;
                Ok(out)
            }
            OutputMode::Append => {
                // Each closed group's state is taken out of the store as it is read.
                let closed = self.closed_groups()?;
                let values = closed.iter().map(|key| self.take_closed(key)).collect::<Result<Vec<_>>>()?;
                let states = self.decode_states(&values)?;
                drop(values);
                self.evaluate(closed, states)
            }
        }
    }

    /// Drops partial rows whose event time is at or below the late-row watermark `W_{k-1}`
    /// (window aggregations in append and update mode, session windows in every mode; complete
    /// mode drops nothing otherwise). A session row's end is `t + gap`, as Spark's rule has it. A
    /// group without event time (a null timestamp key) is never late, as in Spark, where the late
    /// predicate on a null time is not true (nor is it ever evicted).
    fn drop_late(&mut self, partial: RecordBatch) -> Result<RecordBatch> {
        let is_session = self.event_time.is_some_and(|e| e.is_session);
        if (self.mode == OutputMode::Complete && !is_session) || partial.num_rows() == 0 {
            return Ok(partial);
        }
        let Some((ends, unit)) = self.event_time_ends(&partial.columns()[..self.group_count])? else {
            return Ok(partial);
        };
        let late = ms_in_unit(self.watermarks.late_ms, &unit);
        let keep: BooleanArray = ends.iter().map(|e| Some(e.is_none_or(|e| e > late))).collect();
        let kept = filter_record_batch(&partial, &keep)?;
        self.dropped += (partial.num_rows() - kept.num_rows()) as u64;
        Ok(kept)
    }

    /// The group key of each partial row, as row bytes. A global aggregation (no `GROUP BY`) has
    /// one group, whose key is empty.
    fn group_keys(&self, partial: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        if self.group_count == 0 {
            return Ok(vec![Box::from(&[][..]); partial.num_rows()]);
        }
        let rows = self.keys.convert_columns(&partial.columns()[..self.group_count])?;
        Ok(rows.iter().map(|row| Box::from(row.data())).collect())
    }

    /// Merges the batch's partial states into the stored states; returns the touched keys, their
    /// merged state columns in the same order, and the states the stored ones among them had.
    ///
    /// Groups are numbered stored keys first, then new keys, and each `merge_batch` call names
    /// only groups that call or an earlier one introduced. DataFusion's accumulators rely on this
    /// (its `NullState` marks every group below `total_num_groups` as seen after a call without
    /// nulls), so a new group whose values are all NULL stays NULL for `sum`, `min`, `max`.
    fn merge_into_store(&mut self, partial: &RecordBatch) -> Result<Merged> {
        if partial.num_rows() == 0 {
            return Ok(Merged::default());
        }
        let keys = self.group_keys(partial)?;
        if let Some(sessions) = &mut self.sessions {
            sessions.insert(&keys, &partial.columns()[..self.group_count])?;
        }
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity_and_hasher(keys.len(), Default::default());
        let distinct: Vec<&[u8]> = keys.iter().map(|k| &**k).filter(|k| seen.insert(k)).collect();
        let mut stored_values = Vec::new();
        let mut new = Vec::new();
        let mut stored = Vec::new();
        for key in distinct {
            match self.store.get(key)? {
                Some(value) => {
                    stored.push(key);
                    stored_values.push(value);
                }
                None => new.push(key),
            }
        }
        if let Some(groups) = &mut self.listed_groups {
            groups.extend(new.iter().map(|k| Box::from(*k)));
        }
        let touched: Vec<&[u8]> = stored.iter().chain(&new).copied().collect();
        let index: HashMap<&[u8], usize> = touched.iter().enumerate().map(|(g, k)| (*k, g)).collect();
        // Only a new group enters the closing index: a group's event time is part of its key, so
        // a stored group's is already there.
        let is_new: Vec<bool> = keys.iter().map(|k| index[&**k] >= stored.len()).collect();
        let mut accumulators = self.accumulators()?;
        let mut stored_states = Vec::new();
        if !stored.is_empty() {
            let parser = self.values.parser();
            stored_states = self.values.convert_rows(stored_values.iter().map(|v| parser.parse(v)))?;
            let old_groups: Vec<usize> = (0..stored.len()).collect();
            self.merge(&mut accumulators, &stored_states, &old_groups, stored.len())?;
        }
        // The values read (pinned by a RocksDB store) are released before the store is written.
        drop(stored_values);
        let key_columns = &partial.columns()[..self.group_count];
        self.index_closing(&keys, key_columns, Some(&is_new))?;
        let mut partial_states = partial.columns()[self.group_count..].to_vec();
        if !self.distinct.is_empty() {
            // A group's seen values close with it.
            let ends = self.closing_ends(key_columns)?;
            let closing = &mut self.closing;
            let index_seen = |row: usize, key: &[u8]| match ends.as_ref().and_then(|ends| ends[row]) {
                Some(end) => closing.set(key, end),
                None => Ok(()),
            };
            partial_states = self.distinct.count_new(&mut self.store, &keys, &partial_states, index_seen)?;
        }
        let groups: Vec<usize> = keys.iter().map(|k| index[&**k]).collect();
        self.merge(&mut accumulators, &partial_states, &groups, touched.len())?;
        let mut states = Vec::with_capacity(self.state_widths.iter().sum());
        for acc in &mut accumulators {
            states.extend(acc.state(EmitTo::All)?);
        }
        let touched: Vec<Box<[u8]>> = touched.into_iter().map(Box::from).collect();
        let stored = stored.len();
        if states.is_empty() {
            // No aggregate (SELECT DISTINCT): the group key is the whole state.
            for key in &touched {
                self.store.put(key, &[])?;
            }
            return Ok(Merged { touched, states, stored, stored_states });
        }
        let value_rows = self.values.convert_columns(&states)?;
        for (key, value) in touched.iter().zip(value_rows.iter()) {
            self.store.put(key, value.data())?;
        }
        Ok(Merged { touched, states, stored, stored_states })
    }

    /// The changes of the groups `touched` (merged states `states`, the first `stored` of them
    /// stored before with states `stored_states`): each stored group whose final values changed
    /// as its old row with sign −1 and its new row with +1, each new group's row with +1.
    fn changes(
        &self,
        touched: Vec<Box<[u8]>>,
        states: &[ArrayRef],
        stored: usize,
        stored_states: Vec<ArrayRef>,
    ) -> Result<RecordBatch> {
        let (schema, finals) = self.changes.as_ref().expect("an aggregation emitting changes");
        let rows = |columns: &[ArrayRef], from: usize, to: usize| -> Vec<ArrayRef> {
            columns.iter().map(|c| c.slice(from, to - from)).collect()
        };
        let old = self.evaluate(touched[..stored].to_vec(), stored_states)?;
        let updated = self.evaluate(touched[..stored].to_vec(), rows(states, 0, stored))?;
        let fresh = self.evaluate(touched[stored..].to_vec(), rows(states, stored, touched.len()))?;
        // Without an aggregate (SELECT DISTINCT) a stored group never changes.
        let changed: BooleanArray = if self.stateless() {
            vec![Some(false); stored].into()
        } else {
            let before = finals.convert_columns(&old.columns()[self.group_count..])?;
            let after = finals.convert_columns(&updated.columns()[self.group_count..])?;
            (0..stored).map(|i| Some(before.row(i) != after.row(i))).collect()
        };
        let signed = |batch: RecordBatch, sign: i64| -> Result<RecordBatch> {
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(Int64Array::from(vec![sign; batch.num_rows()])));
            Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
        };
        let parts = [
            signed(filter_record_batch(&old, &changed)?, -1)?,
            signed(filter_record_batch(&updated, &changed)?, 1)?,
            signed(fresh, 1)?,
        ];
        Ok(arrow::compute::concat_batches(schema, &parts)?)
    }

    /// The groups whose event time `W_k` has reached (`end <= W_k`), taken from the index: the
    /// work follows the groups that close, not the groups in state. Their seen values (see
    /// [`super::distinct_count`]), indexed at the same time, are removed from the store.
    fn closed_groups(&mut self) -> Result<Vec<Box<[u8]>>> {
        let mut closed = self.closing.take_through(self.watermarks.current_ms)?;
        if !self.distinct.is_empty() {
            let mut groups = Vec::with_capacity(closed.len());
            for key in closed {
                if group_of_seen(&key).is_some() {
                    self.store.remove(&key)?;
                } else {
                    groups.push(key);
                }
            }
            closed = groups;
        }
        Ok(closed)
    }

    /// Removes the groups [`Self::closed_groups`] gives (none in complete mode, which indexes
    /// none).
    fn forget_closed_groups(&mut self) -> Result<()> {
        for key in self.closed_groups()? {
            self.forget_closed(&key)?;
        }
        Ok(())
    }

    /// Removes group `key` from the state and the indexes.
    fn forget(&mut self, key: &[u8]) -> Result<()> {
        self.closing.remove(key)?;
        self.forget_closed(key)
    }

    /// Removes group `key`, which [`Self::closed_groups`] took out of the closing index, from the
    /// state and the session index.
    fn forget_closed(&mut self, key: &[u8]) -> Result<()> {
        self.store.remove(key)?;
        self.forget_session(key)
    }

    /// Removes group `key`, which [`Self::closed_groups`] took out of the closing index, from the
    /// state and the session index, and returns its stored state.
    ///
    /// # Errors
    /// As [`StateStore::take_indexed`].
    fn take_closed(&mut self, key: &[u8]) -> Result<Box<[u8]>> {
        let value = self.store.take_indexed(key)?;
        self.forget_session(key)?;
        Ok(value)
    }

    fn forget_session(&mut self, key: &[u8]) -> Result<()> {
        if let Some(sessions) = &mut self.sessions {
            sessions.remove(key)?;
        }
        Ok(())
    }

    /// When each group of `key_columns` closes (ms, its event-time end rounded up; `None`: a
    /// NULL time, never); `None` without event time and in complete mode, which never closes a
    /// group.
    fn closing_ends(&self, key_columns: &[ArrayRef]) -> Result<Option<Vec<Option<i64>>>> {
        if self.mode == OutputMode::Complete {
            return Ok(None);
        }
        let Some((ends, unit)) = self.event_time_ends(key_columns)? else { return Ok(None) };
        Ok(Some(ends.iter().map(|end| end.map(|end| ceil_ms(end, &unit))).collect()))
    }

    /// Registers when each entry `keys[i]` closes, by its group's row `i` of `key_columns`, in
    /// the closing index, only the rows `only` marks when given.
    fn index_closing(&mut self, keys: &[Box<[u8]>], key_columns: &[ArrayRef], only: Option<&[bool]>) -> Result<()> {
        let Some(ends) = self.closing_ends(key_columns)? else { return Ok(()) };
        for (row, (key, end)) in keys.iter().zip(ends).enumerate() {
            if let (Some(end), true) = (end, only.is_none_or(|only| only[row])) {
                self.closing.set(key, end)?;
            }
        }
        Ok(())
    }

    /// No aggregate (`SELECT DISTINCT`): a group's key is its whole state, its value empty.
    fn stateless(&self) -> bool {
        self.state_widths.iter().sum::<usize>() == 0
    }

    /// The stored state columns of `keys` (which must be in the store), row `i` of each being
    /// group `keys[i]`; none when the aggregation has no aggregate.
    fn stored_states(&self, keys: &[Box<[u8]>]) -> Result<Vec<ArrayRef>> {
        if self.stateless() {
            return Ok(vec![]);
        }
        let values = keys.iter().map(|k| self.store.get_indexed(k)).collect::<Result<Vec<_>>>()?;
        self.decode_states(&values)
    }

    /// The state columns of stored `values`, row `i` of each being `values[i]`'s; none when the
    /// aggregation has no aggregate.
    fn decode_states<V: std::ops::Deref<Target = [u8]>>(&self, values: &[V]) -> Result<Vec<ArrayRef>> {
        if self.stateless() {
            return Ok(vec![]);
        }
        let parser = self.values.parser();
        Ok(self.values.convert_rows(values.iter().map(|v| parser.parse(v)))?)
    }

    /// Final values of the groups `keys` whose state columns are `states` (row `i` of each is
    /// group `keys[i]`), sorted by key: group columns, then each aggregate's `evaluate`.
    fn evaluate(&self, keys: Vec<Box<[u8]>>, states: Vec<ArrayRef>) -> Result<RecordBatch> {
        if keys.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.output_schema)));
        }
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_unstable_by(|a, b| keys[*a as usize].cmp(&keys[*b as usize]));
        let key_parser = self.keys.parser();
        let mut columns = if self.group_count == 0 {
            vec![]
        } else {
            self.keys.convert_rows(order.iter().map(|i| key_parser.parse(&keys[*i as usize])))?
        };
        let order = UInt32Array::from(order);
        let states = states.iter().map(|c| take(c, &order, None)).collect::<Result<Vec<_>, _>>()?;
        let mut accumulators = self.accumulators()?;
        let groups: Vec<usize> = (0..keys.len()).collect();
        self.merge(&mut accumulators, &states, &groups, keys.len())?;
        for acc in &mut accumulators {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let columns = columns
            .into_iter()
            .zip(self.output_schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c) } else { arrow::compute::cast(&c, f.data_type()) })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.output_schema), columns)?)
    }
}

impl BatchOperator for AggregateState {
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch> {
        let [partial] = <[_; 1]>::try_from(inputs).expect("an aggregation has one input");
        self.apply_partial(partial)
    }

    /// Rebuilds the closing and session indexes and the listed groups from the store (once per
    /// restore).
    fn restored(&mut self) -> Result<()> {
        self.closing.clear()?;
        if let Some(sessions) = &mut self.sessions {
            sessions.clear()?;
        }
        if let Some(groups) = &mut self.listed_groups {
            groups.clear();
            for entry in self.store.iter() {
                let (k, _) = entry?;
                if group_of_seen(&k).is_none() {
                    groups.push(k.into());
                }
            }
        }
        if self.event_time.is_none() || self.store.is_empty() {
            return Ok(());
        }
        // Every entry, a group's or a seen value's (indexed by its group's end).
        let keys: Vec<Box<[u8]>> =
            self.store.iter().map(|entry| entry.map(|(k, _)| k.into())).collect::<Result<_>>()?;
        let parser = self.keys.parser();
        let groups = keys.iter().map(|k| parser.parse(group_of_seen(k).unwrap_or(k)));
        let key_columns = self.keys.convert_rows(groups)?;
        if let Some(sessions) = &mut self.sessions {
            sessions.insert(&keys, &key_columns)?;
        }
        self.index_closing(&keys, &key_columns, None)
    }

    fn begin_batch(&mut self, watermarks: BatchWatermarks) {
        self.watermarks = watermarks;
        self.dropped = 0;
    }

    /// Spark runs a no-data batch for an aggregation (windowed, session or plain `GROUP BY`) in
    /// append and update mode whenever a watermark is declared upstream and it advances, whatever
    /// the keys and the state hold (`StateStoreSaveExec.shouldRunAnotherBatch`, SEMANTICS §4).
    fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.mode != OutputMode::Complete && self.watermark_upstream && next_ms > self.watermarks.current_ms
    }

    fn progress(&self) -> OperatorProgress {
        OperatorProgress {
            name: self.name.clone(),
            operator_name: if self.event_time.is_some_and(|e| e.is_session) {
                "sessionWindowStateStoreSaveExec"
            } else {
                "stateStoreSave"
            },
            state: self.store.metrics(),
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
