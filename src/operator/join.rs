//! Stream-stream join state (Spark's `StreamingSymmetricHashJoinExec`, SEMANTICS §3).
//!
//! Each batch, in Spark's order: the new left rows join the buffered right rows and are buffered;
//! the new right rows join every buffered left row (the new ones included, so a pair of new rows
//! is produced once) and are buffered. A pair is emitted in the batch in which the later of its
//! rows arrives. Then each side evicts the rows its state watermark has passed; a row of an outer
//! join's preserved side that never matched is emitted then, once, padded with nulls. Rows whose
//! watermarked event time is at or below `W_{k-1}` are dropped as late before joining.
//!
//! State: a row per buffered input row, keyed `[side][arrival id]`, valued `[matched][row]` in
//! arrow's row format. The store holds each buffered row once; beside it each side keeps an index
//! from equality key to arrival ids and an index of ids by eviction time, so a batch decodes only
//! the rows it matches or evicts: its work follows the rows that arrive and leave, not the rows
//! buffered. The indexes are rebuilt from the store on restore.

use foldhash::HashMap;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::exec::BatchOperator;
use super::watermark::{ceil_ms, drop_late_rows, time_values, TimeColumn};
use super::{BatchWatermarks, OperatorProgress};
use crate::plan::nodes::StateEviction;
use crate::state::{StateStore, TimerIndex};
use crate::{Result, SluiceError};

/// One input of a stream-stream join.
#[derive(Debug, Clone)]
pub struct JoinSideSpec {
    /// The input's schema.
    pub schema: SchemaRef,
    /// Equality key expressions over the input, in the order of the other side's.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The watermarked event-time column: rows at or below `W_{k-1}` are late.
    pub late: Option<TimeColumn>,
    /// How buffered rows leave the state; `None`: never.
    pub eviction: Option<StateEviction>,
}

/// How to build a [`JoinState`].
#[derive(Debug)]
pub struct JoinSpec {
    /// Operator name for progress.
    pub name: String,
    /// Inner, left, right, full or left semi.
    pub join_type: JoinType,
    /// Left and right inputs.
    pub sides: [JoinSideSpec; 2],
    /// Residual condition over the left columns followed by the right columns.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Output schema: left then right columns (left only for a semi join).
    pub output_schema: SchemaRef,
}

/// The indexes over one side's buffered rows (whose bytes are in the store).
#[derive(Debug, Default)]
struct Buffer {
    /// Equality key → arrival ids of the buffered rows with it, in arrival order.
    by_key: HashMap<Box<[u8]>, Vec<u64>>,
    /// The equality key of each buffered row that has one (null keys match nothing).
    key_of: HashMap<u64, Box<[u8]>>,
    /// Arrival ids (big-endian) by the time (ms, rounded up) the state watermark must pass to
    /// evict the row; rows that are never evicted are not in it.
    expiry: TimerIndex,
    /// Number of buffered rows.
    len: usize,
    next_id: u64,
}

impl Buffer {
    /// Adds buffered row `id`, with its equality key and eviction time.
    fn add(&mut self, id: u64, key: Option<Box<[u8]>>, evict_at_ms: Option<i64>) {
        if let Some(key) = key {
            self.by_key.entry(key.clone()).or_default().push(id);
            self.key_of.insert(id, key);
        }
        if let Some(at) = evict_at_ms {
            self.expiry.set(&id.to_be_bytes(), at);
        }
        self.len += 1;
        self.next_id = self.next_id.max(id + 1);
    }

    /// Ids of buffered rows with key `key`, in arrival order.
    fn probe(&self, key: &[u8]) -> &[u64] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// Takes the ids whose eviction time is at or before `through_ms`, in arrival order, out of
    /// the indexes.
    fn evict_through(&mut self, through_ms: i64) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .expiry
            .take_through(through_ms)
            .iter()
            .filter_map(|k| <[u8; 8]>::try_from(&**k).ok().map(u64::from_be_bytes))
            .collect();
        ids.sort_unstable();
        for id in &ids {
            if let Some(key) = self.key_of.remove(id) {
                if let Some(list) = self.by_key.get_mut(&key) {
                    list.retain(|i| i != id);
                    if list.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
            }
        }
        self.len -= ids.len();
        ids
    }
}

/// A stream-stream join's two buffers and its per-batch logic.
#[derive(Debug)]
pub struct JoinState {
    spec: JoinSpec,
    /// Encodes equality keys (in the left side's key types) for hashing.
    keys: RowConverter,
    /// Encodes each side's whole rows for the store.
    rows: [RowConverter; 2],
    buffers: [Buffer; 2],
    store: StateStore,
    watermarks: BatchWatermarks,
    dropped: u64,
}

fn side_key(side: usize, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = side as u8;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

impl JoinState {
    /// An empty join state kept in `store`.
    ///
    /// # Errors
    /// A DataFusion error when a key or column type has no row encoding.
    pub fn try_new(spec: JoinSpec, store: StateStore) -> Result<Self> {
        let left = &spec.sides[0];
        let key_fields =
            left.keys.iter().map(|k| Ok(SortField::new(k.data_type(&left.schema)?))).collect::<Result<Vec<_>>>()?;
        let row_codec = |schema: &SchemaRef| {
            RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())
        };
        Ok(Self {
            keys: RowConverter::new(key_fields)?,
            rows: [row_codec(&spec.sides[0].schema)?, row_codec(&spec.sides[1].schema)?],
            buffers: [Buffer::default(), Buffer::default()],
            spec,
            store,
            watermarks: BatchWatermarks::default(),
            dropped: 0,
        })
    }

    fn drop_late(&mut self, side: usize, input: RecordBatch) -> Result<RecordBatch> {
        let Some(late) = self.spec.sides[side].late else { return Ok(input) };
        let (kept, dropped) = drop_late_rows(input, late, self.watermarks.late_ms)?;
        self.dropped += dropped;
        Ok(kept)
    }

    /// Encoded equality keys of `batch`'s rows; `None` where a key is null (it matches nothing).
    fn key_rows(&self, side: usize, batch: &RecordBatch) -> Result<Vec<Option<Box<[u8]>>>> {
        let left = &self.spec.sides[0];
        let columns = self.spec.sides[side]
            .keys
            .iter()
            .zip(&left.keys)
            .map(|(k, l)| {
                let array = k.evaluate(batch)?.into_array(batch.num_rows())?;
                let wanted = l.data_type(&left.schema)?;
                Ok(if array.data_type() == &wanted { array } else { cast(&array, &wanted)? })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let rows = self.keys.convert_columns(&columns)?;
        Ok((0..batch.num_rows())
            .map(|i| columns.iter().all(|c| c.is_valid(i)).then(|| Box::from(rows.row(i).data())))
            .collect())
    }

    /// The eviction time (ms, rounded up) of each row of `batch`; `None` for rows never evicted.
    fn evict_times(&self, side: usize, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let Some(eviction) = self.spec.sides[side].eviction else { return Ok(vec![None; batch.num_rows()]) };
        let (times, unit) = time_values(batch.column(eviction.column), eviction.is_window)?;
        Ok(times.iter().map(|t| t.map(|t| ceil_ms(t, &unit))).collect())
    }

    /// Buffers `batch` (new rows of `side`, with their equality `keys`): stored once, indexed.
    /// Returns the ids given to its rows.
    fn buffer(&mut self, side: usize, batch: &RecordBatch, keys: Vec<Option<Box<[u8]>>>) -> Result<Vec<u64>> {
        let times = self.evict_times(side, batch)?;
        let encoded = self.rows[side].convert_columns(batch.columns())?;
        let first = self.buffers[side].next_id;
        let mut ids = Vec::with_capacity(batch.num_rows());
        for (i, (key, at)) in keys.into_iter().zip(times).enumerate() {
            let id = first + i as u64;
            let row = encoded.row(i);
            let mut value = Vec::with_capacity(row.data().len() + 1);
            value.push(0);
            value.extend_from_slice(row.data());
            self.store.put(&side_key(side, id), &value);
            self.buffers[side].add(id, key, at);
            ids.push(id);
        }
        Ok(ids)
    }

    /// The stored value (`[matched][row]`) of buffered row `id` of `side`.
    fn stored(&self, side: usize, id: u64) -> Result<&[u8]> {
        self.store.get(&side_key(side, id)).filter(|v| !v.is_empty()).ok_or_else(|| SluiceError::Checkpoint {
            location: format!("state of {}", self.spec.name),
            message: format!("buffered row {id} of side {side} is missing; the checkpoint is corrupted"),
        })
    }

    /// The buffered rows `ids` of `side` (repeats allowed), decoded into one batch.
    fn decode(&self, side: usize, ids: &[u64]) -> Result<RecordBatch> {
        let schema = Arc::clone(&self.spec.sides[side].schema);
        if ids.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let parser = self.rows[side].parser();
        let values = ids.iter().map(|id| self.stored(side, *id)).collect::<Result<Vec<_>>>()?;
        let columns = self.rows[side].convert_rows(values.iter().map(|v| parser.parse(&v[1..])))?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    /// Marks buffered row `id` of `side` as matched; false if it already was.
    fn set_matched(&mut self, side: usize, id: u64) -> Result<bool> {
        let value = self.stored(side, id)?;
        if value[0] != 0 {
            return Ok(false);
        }
        let mut value = value.to_vec();
        value[0] = 1;
        self.store.put(&side_key(side, id), &value);
        Ok(true)
    }

    /// The left and right rows of `pairs` (arrival ids) side by side.
    fn pair_rows(&self, pairs: &[(u64, u64)]) -> Result<RecordBatch> {
        let left = self.decode(0, &pairs.iter().map(|p| p.0).collect::<Vec<_>>())?;
        let right = self.decode(1, &pairs.iter().map(|p| p.1).collect::<Vec<_>>())?;
        let fields: Vec<_> = left.schema().fields().iter().chain(right.schema().fields()).cloned().collect();
        let columns = left.columns().iter().chain(right.columns()).cloned().collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(pairs.len()));
        Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
    }

    /// Joins this batch's rows and buffers them: returns the matching pairs, as `(left id, right
    /// id)`, and the pairs' rows.
    fn join_new_rows(&mut self, left: RecordBatch, right: RecordBatch) -> Result<(Vec<(u64, u64)>, RecordBatch)> {
        let left_keys = self.key_rows(0, &left)?;
        let right_keys = self.key_rows(1, &right)?;
        let mut pairs = Vec::new();
        let left_first = self.buffers[0].next_id;
        for (i, key) in left_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            pairs.extend(self.buffers[1].probe(key).iter().map(|r| (left_first + i as u64, *r)));
        }
        self.buffer(0, &left, left_keys)?;
        let right_first = self.buffers[1].next_id;
        for (i, key) in right_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            pairs.extend(self.buffers[0].probe(key).iter().map(|l| (*l, right_first + i as u64)));
        }
        self.buffer(1, &right, right_keys)?;
        let rows = self.pair_rows(&pairs)?;
        let Some(filter) = &self.spec.filter else { return Ok((pairs, rows)) };
        let mask = filter.evaluate(&rows)?.into_array(rows.num_rows())?;
        // A null condition is false: filter_record_batch drops it, and so does `== Some(true)`.
        let mask = mask.as_boolean().clone();
        let pairs =
            pairs.into_iter().zip(mask.iter()).filter(|(_, keep)| keep == &Some(true)).map(|(p, _)| p).collect();
        Ok((pairs, filter_record_batch(&rows, &mask)?))
    }

    /// Rows of `side` the state watermark has passed, removed from the indexes and the store; the
    /// ones that never matched are returned (in arrival order) for an outer join to emit.
    fn evict(&mut self, side: usize) -> Result<RecordBatch> {
        let Some(eviction) = self.spec.sides[side].eviction else {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.spec.sides[side].schema)));
        };
        let through = self.watermarks.current_ms.saturating_add(eviction.offset_ms);
        let evicted = self.buffers[side].evict_through(through);
        let mut unmatched = Vec::new();
        for id in &evicted {
            if self.stored(side, *id)?[0] == 0 {
                unmatched.push(*id);
            }
        }
        let rows = self.decode(side, &unmatched)?;
        for id in evicted {
            self.store.remove(&side_key(side, id));
        }
        Ok(rows)
    }

    /// `rows` of one side padded with nulls for the other side's columns.
    fn null_padded(&self, side: usize, rows: &RecordBatch) -> Result<RecordBatch> {
        let output = &self.spec.output_schema;
        let left_width = self.spec.sides[0].schema.fields().len();
        let columns = output
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match (side, i < left_width) {
                (0, true) => Arc::clone(rows.column(i)),
                (1, false) => Arc::clone(rows.column(i - left_width)),
                _ => new_null_array(f.data_type(), rows.num_rows()),
            })
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(output), columns)?)
    }

    fn with_output_schema(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(Arc::clone(&self.spec.output_schema), batch.columns().to_vec())?)
    }
}

impl BatchOperator for JoinState {
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch> {
        let [left, right] = <[_; 2]>::try_from(inputs).expect("a join has two inputs");
        let left = self.drop_late(0, left)?;
        let right = self.drop_late(1, right)?;
        let (pairs, rows) = self.join_new_rows(left, right)?;
        let mut output = Vec::new();
        if self.spec.join_type == JoinType::LeftSemi {
            // A left row is emitted once, by the first batch in which it matches.
            let mut first = Vec::new();
            for (l, _) in &pairs {
                if self.set_matched(0, *l)? {
                    first.push(*l);
                }
            }
            output.push(self.decode(0, &first)?);
        } else {
            for (l, r) in &pairs {
                self.set_matched(0, *l)?;
                self.set_matched(1, *r)?;
            }
            output.push(self.with_output_schema(&rows)?);
        }
        for side in 0..2 {
            let unmatched = self.evict(side)?;
            let preserved = match self.spec.join_type {
                JoinType::Left => side == 0,
                JoinType::Right => side == 1,
                JoinType::Full => true,
                _ => false,
            };
            if preserved && unmatched.num_rows() > 0 {
                output.push(self.null_padded(side, &unmatched)?);
            }
        }
        let output = output.iter().map(|b| self.with_output_schema(b)).collect::<Result<Vec<_>>>()?;
        Ok(concat_batches(&self.spec.output_schema, &output)?)
    }

    /// Rebuilds both sides' indexes from the stored rows (once per restore).
    fn restored(&mut self) -> Result<()> {
        let corrupt = |what: &str| SluiceError::Checkpoint {
            location: format!("state of {}", self.spec.name),
            message: format!("malformed join state row ({what}); the checkpoint is corrupted, start from a new one"),
        };
        let mut ids: [Vec<u64>; 2] = [vec![], vec![]];
        for (key, value) in self.store.iter() {
            let id = key.get(1..).and_then(|id| <[u8; 8]>::try_from(id).ok());
            let (Some(side), Some(id), false) = (key.first(), id, value.is_empty()) else {
                return Err(corrupt("short key or value"));
            };
            match ids.get_mut(usize::from(*side)) {
                Some(side_ids) => side_ids.push(u64::from_be_bytes(id)),
                None => return Err(corrupt("unknown side")),
            }
        }
        for (side, mut side_ids) in ids.into_iter().enumerate() {
            side_ids.sort_unstable();
            let mut buffer = Buffer::default();
            let rows = self.decode(side, &side_ids)?;
            let keys = self.key_rows(side, &rows)?;
            let times = self.evict_times(side, &rows)?;
            for ((id, key), at) in side_ids.iter().zip(keys).zip(times) {
                buffer.add(*id, key, at);
            }
            self.buffers[side] = buffer;
        }
        Ok(())
    }

    fn begin_batch(&mut self, watermarks: BatchWatermarks) {
        self.watermarks = watermarks;
        self.dropped = 0;
    }

    /// Spark runs a no-data batch for a join that evicts state whenever the watermark advances
    /// (`StreamingSymmetricHashJoinExec.shouldRunAnotherBatch`).
    fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.spec.sides.iter().any(|s| s.eviction.is_some()) && next_ms > self.watermarks.current_ms
    }

    fn progress(&self) -> OperatorProgress {
        OperatorProgress {
            name: self.spec.name.clone(),
            operator_name: "symmetricHashJoin",
            state: self.store.metrics(),
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
