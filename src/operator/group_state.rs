//! Arbitrary stateful processing (Spark's `flatMapGroupsWithState` / `applyInPandasWithState`):
//! per key, a user function gets the batch's rows of that key and a mutable [`GroupState`], and
//! returns output rows. State values are serialized with serde (JSON) into the state store, so
//! they are checkpointed and restored like every other operator's state.
//!
//! Each batch, as Spark runs it: rows at or below `W_{k-1}` are dropped (when the input has a
//! watermark); keys with rows are called in key order; then keys without rows whose timeout has
//! passed are called with no rows and [`GroupState::has_timed_out`] true. A processing-time
//! timeout passes when the batch's processing time reaches it; an event-time timeout when the
//! watermark `W_k` exceeds it. A timeout fires once: set it again to be called again.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::exec::BatchOperator;
use super::watermark::{drop_late_rows, TimeColumn};
use super::{BatchWatermarks, OperatorProgress};
use crate::state::{StateStore, TimerIndex};
use crate::{Result, SluiceError};

/// Which clock can time a key out (Spark's `GroupStateTimeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GroupStateTimeout {
    /// Keys are called only when they have rows.
    #[default]
    NoTimeout,
    /// [`GroupState::set_timeout_duration`]: ms of processing time after the batch.
    ProcessingTime,
    /// [`GroupState::set_timeout_timestamp`]: an event time the watermark must pass; needs a
    /// watermark on the input.
    EventTime,
}

/// The state of one key, as the user function of `flat_map_groups_with_state`
/// ([`crate::StreamFrame::flat_map_groups_with_state`],
/// [`crate::QueryDefinition::flat_map_groups_with_state`]) sees it.
///
/// Each batch, as Spark runs it: rows at or below the previous batch's watermark are dropped
/// (when the input has a watermark); keys with rows are called in key order; then keys without
/// rows whose timeout has passed are called with no rows and [`GroupState::has_timed_out`] true.
/// A processing-time timeout passes when the batch's processing time reaches it; an event-time
/// timeout when the batch's watermark exceeds it. A timeout fires once: set it again to be
/// called again.
#[derive(Debug, Clone)]
pub struct GroupState<S> {
    value: Option<S>,
    timeout_at_ms: Option<i64>,
    timed_out: bool,
    timeout: GroupStateTimeout,
    watermark_ms: i64,
    processing_time_ms: i64,
}

impl<S> GroupState<S> {
    /// The key's state, if it has one.
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Whether the key has state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// Replaces the key's state.
    pub fn update(&mut self, value: S) {
        self.value = Some(value);
    }

    /// Removes the key's state (and its timeout).
    pub fn remove(&mut self) {
        self.value = None;
        self.timeout_at_ms = None;
    }

    /// True when this call is the key's timeout (no rows).
    pub fn has_timed_out(&self) -> bool {
        self.timed_out
    }

    /// Times the key out `duration_ms` of processing time after this batch's.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] when the operator was not built with
    /// [`GroupStateTimeout::ProcessingTime`].
    pub fn set_timeout_duration(&mut self, duration_ms: i64) -> Result<()> {
        self.require(GroupStateTimeout::ProcessingTime)?;
        self.timeout_at_ms = Some(self.processing_time_ms.saturating_add(duration_ms));
        Ok(())
    }

    /// Times the key out once the watermark passes event time `timestamp_ms` (ms since the epoch).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] when the operator was not built with [`GroupStateTimeout::EventTime`].
    pub fn set_timeout_timestamp(&mut self, timestamp_ms: i64) -> Result<()> {
        self.require(GroupStateTimeout::EventTime)?;
        self.timeout_at_ms = Some(timestamp_ms);
        Ok(())
    }

    /// The watermark `W_k` of this batch, ms since the epoch.
    pub fn current_watermark_ms(&self) -> i64 {
        self.watermark_ms
    }

    /// This batch's processing time, ms since the epoch.
    pub fn current_processing_time_ms(&self) -> i64 {
        self.processing_time_ms
    }

    fn with_value<T>(self, value: Option<T>) -> GroupState<T> {
        GroupState {
            value,
            timeout_at_ms: self.timeout_at_ms,
            timed_out: self.timed_out,
            timeout: self.timeout,
            watermark_ms: self.watermark_ms,
            processing_time_ms: self.processing_time_ms,
        }
    }

    fn require(&self, timeout: GroupStateTimeout) -> Result<()> {
        if self.timeout != timeout {
            return Err(SluiceError::sql(format!(
                "a {timeout:?} timeout was set on a group state configured with {:?}; pass GroupStateTimeout::{timeout:?} when adding the stage",
                self.timeout
            )));
        }
        Ok(())
    }
}

/// The type-erased user function: key values, the key's rows of the batch, its state (serialized).
pub type GroupFunction =
    Arc<dyn Fn(&[ScalarValue], &RecordBatch, &mut GroupState<Vec<u8>>) -> Result<Vec<Vec<ScalarValue>>> + Send + Sync>;

/// Wraps a typed user function into a [`GroupFunction`] that (de)serializes its state as JSON.
pub fn erase<S, F>(function: F) -> GroupFunction
where
    S: Serialize + DeserializeOwned + 'static,
    F: Fn(&[ScalarValue], &RecordBatch, &mut GroupState<S>) -> Result<Vec<Vec<ScalarValue>>> + Send + Sync + 'static,
{
    Arc::new(move |key, rows, raw| {
        let bad = |e: serde_json::Error| SluiceError::Checkpoint {
            location: "group state".into(),
            message: format!("a stored state value does not deserialize ({e}); was the state type changed?"),
        };
        let value = raw.value.as_deref().map(serde_json::from_slice).transpose().map_err(bad)?;
        let mut typed = GroupState { value, ..raw.clone().with_value(None) };
        let out = function(key, rows, &mut typed)?;
        raw.value = typed.value.as_ref().map(serde_json::to_vec).transpose().map_err(bad)?;
        raw.timeout_at_ms = typed.timeout_at_ms;
        Ok(out)
    })
}

/// How to build a [`GroupStateOperator`].
pub struct GroupStateSpec {
    /// Operator name for progress.
    pub name: String,
    /// Input column indexes of the grouping keys.
    pub keys: Vec<usize>,
    /// The user function.
    pub function: GroupFunction,
    /// Which timeout the function may set.
    pub timeout: GroupStateTimeout,
    /// Input column index of the watermarked event-time column, if any.
    pub event_time: Option<usize>,
    /// Schema of the rows the function returns.
    pub output_schema: SchemaRef,
}

impl std::fmt::Debug for GroupStateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStateSpec").field("name", &self.name).field("keys", &self.keys).finish()
    }
}

/// Per-key user state and the per-batch calls of the user function.
#[derive(Debug)]
pub struct GroupStateOperator {
    spec: GroupStateSpec,
    keys: RowConverter,
    store: StateStore,
    watermarks: BatchWatermarks,
    /// Keys by their timeout (ms): Flink's timer service. A batch calls only the keys due; with
    /// no timeout configured it stays empty and no batch looks at the keys.
    timers: TimerIndex,
    dropped: u64,
}

/// Stored value: timeout (`i64::MIN` = none), little-endian, then the serialized state.
fn encode(state: &GroupState<Vec<u8>>) -> Vec<u8> {
    let mut out = state.timeout_at_ms.unwrap_or(i64::MIN).to_le_bytes().to_vec();
    out.extend_from_slice(state.value.as_deref().unwrap_or_default());
    out
}

fn timeout_of(value: &[u8]) -> Option<i64> {
    let at = i64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    (at != i64::MIN).then_some(at)
}

impl GroupStateOperator {
    /// An operator with empty state kept in `store`, for input of `input_schema`.
    ///
    /// # Errors
    /// A DataFusion error when a key type has no row encoding; [`SluiceError::Sql`] for an
    /// event-time timeout over input without a watermark.
    pub fn try_new(spec: GroupStateSpec, input_schema: &SchemaRef, store: StateStore) -> Result<Self> {
        if spec.timeout == GroupStateTimeout::EventTime && spec.event_time.is_none() {
            return Err(SluiceError::sql(format!(
                "{}: an event-time timeout needs a watermark on the input; declare WATERMARK FOR on the stream",
                spec.name
            )));
        }
        let fields = spec.keys.iter().map(|i| SortField::new(input_schema.field(*i).data_type().clone())).collect();
        Ok(Self {
            keys: RowConverter::new(fields)?,
            spec,
            timers: TimerIndex::for_store(&store)?,
            store,
            watermarks: BatchWatermarks::default(),
            dropped: 0,
        })
    }

    fn state_for(&self, value: Option<&[u8]>, timed_out: bool) -> GroupState<Vec<u8>> {
        GroupState {
            value: value.map(|v| v[8..].to_vec()),
            timeout_at_ms: None,
            timed_out,
            timeout: self.spec.timeout,
            watermark_ms: self.watermarks.current_ms,
            processing_time_ms: self.watermarks.processing_time_ms,
        }
    }

    /// Calls the function for one key and stores what it left.
    fn call(&mut self, key: &[u8], rows: &RecordBatch, timed_out: bool) -> Result<Vec<Vec<ScalarValue>>> {
        let mut state = {
            let stored = self.store.get(key)?;
            self.state_for(stored.as_deref(), timed_out)
        };
        // As in Spark, a timeout holds for one call: the function sets it again to keep one.
        state.timeout_at_ms = None;
        let parser = self.keys.parser();
        let key_columns = self.keys.convert_rows([parser.parse(key)])?;
        let key_values =
            key_columns.iter().map(|c| ScalarValue::try_from_array(c, 0)).collect::<Result<Vec<_>, _>>()?;
        let out = (self.spec.function)(&key_values, rows, &mut state)?;
        match &state.value {
            Some(_) => self.store.put(key, &encode(&state))?,
            None => self.store.remove(key)?,
        }
        match (&state.value, state.timeout_at_ms) {
            (Some(_), Some(at)) => self.timers.set(key, at)?,
            _ => self.timers.remove(key)?,
        }
        Ok(out)
    }

    fn drop_late(&mut self, input: RecordBatch) -> Result<RecordBatch> {
        let Some(index) = self.spec.event_time else { return Ok(input) };
        let (kept, dropped) = drop_late_rows(input, TimeColumn { index, is_window: false }, self.watermarks.late_ms)?;
        self.dropped += dropped;
        Ok(kept)
    }

    /// The latest timeout that is due in this batch: processing time at or before the batch's
    /// time, event time before `W_k` (Spark's rules); `None` without a timeout.
    fn due_through(&self) -> Option<i64> {
        match self.spec.timeout {
            GroupStateTimeout::NoTimeout => None,
            GroupStateTimeout::ProcessingTime => Some(self.watermarks.processing_time_ms),
            GroupStateTimeout::EventTime => Some(self.watermarks.current_ms.saturating_sub(1)),
        }
    }

    fn to_batch(&self, rows: Vec<Vec<ScalarValue>>) -> Result<RecordBatch> {
        let schema = &self.spec.output_schema;
        if let Some(bad) = rows.iter().find(|r| r.len() != schema.fields().len()) {
            return Err(SluiceError::sql(format!(
                "{}: the function returned a row of {} values for an output of {} columns ({})",
                self.spec.name,
                bad.len(),
                schema.fields().len(),
                schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let values = rows.iter().map(|r| r[i].clone());
                let array: ArrayRef = if rows.is_empty() {
                    arrow::array::new_empty_array(f.data_type())
                } else {
                    ScalarValue::iter_to_array(values)?
                };
                Ok(if array.data_type() == f.data_type() { array } else { cast(&array, f.data_type())? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

impl BatchOperator for GroupStateOperator {
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch> {
        let [input] = <[_; 1]>::try_from(inputs).expect("a group state operator has one input");
        let input = self.drop_late(input)?;
        let key_columns: Vec<ArrayRef> = self.spec.keys.iter().map(|i| Arc::clone(input.column(*i))).collect();
        let key_rows = self.keys.convert_columns(&key_columns)?;
        let mut groups: BTreeMap<Box<[u8]>, Vec<u32>> = BTreeMap::new();
        for i in 0..input.num_rows() {
            groups.entry(key_rows.row(i).data().into()).or_default().push(i as u32);
        }
        let mut out = Vec::new();
        for (key, indexes) in &groups {
            let rows = take_record_batch(&input, &UInt32Array::from(indexes.clone()))?;
            out.extend(self.call(key, &rows, false)?);
        }
        // Keys called with rows above had their timeout reset by that call.
        let mut due: Vec<Box<[u8]>> = match self.due_through() {
            Some(through) => {
                self.timers.due_through(through)?.into_iter().filter(|k| !groups.contains_key(k)).collect()
            }
            None => Vec::new(),
        };
        due.sort_unstable();
        let empty = input.slice(0, 0);
        for key in due {
            out.extend(self.call(&key, &empty, true)?);
        }
        self.to_batch(out)
    }

    /// Rebuilds the timer index from the stored timeouts (once per restore).
    fn restored(&mut self) -> Result<()> {
        self.timers.clear()?;
        if self.spec.timeout != GroupStateTimeout::NoTimeout {
            for entry in self.store.iter() {
                let (key, value) = entry?;
                if let Some(at) = timeout_of(&value) {
                    self.timers.set(&key, at)?;
                }
            }
        }
        Ok(())
    }

    fn begin_batch(&mut self, watermarks: BatchWatermarks) {
        self.watermarks = watermarks;
        self.dropped = 0;
    }

    /// Spark runs a no-data batch for an event-time timeout whenever the watermark advances; a
    /// processing-time timeout runs one when a stored timeout is due by the wall clock.
    fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        match self.spec.timeout {
            GroupStateTimeout::NoTimeout => false,
            GroupStateTimeout::EventTime => next_ms > self.watermarks.current_ms,
            GroupStateTimeout::ProcessingTime => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                // An index that cannot be read runs the batch, which then reports the error.
                self.timers.earliest().map_or(true, |earliest| earliest.is_some_and(|at| at <= now))
            }
        }
    }

    fn progress(&self) -> OperatorProgress {
        OperatorProgress {
            name: self.spec.name.clone(),
            operator_name: "flatMapGroupsWithState",
            state: self.store.metrics(),
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
