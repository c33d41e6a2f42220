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
//! arrow's row format; the buffers and their hash indexes are rebuilt from it on restore.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use super::exec::BatchOperator;
use super::watermark::{drop_late_rows, ms_in_unit, time_values, TimeColumn};
use super::{BatchWatermarks, OperatorProgress};
use crate::plan::nodes::StateEviction;
use crate::state::StateStore;
use crate::{Result, SluiceError};

/// One input of a stream-stream join.
#[derive(Debug)]
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

/// The buffered rows of one side, in arrival order.
#[derive(Debug)]
struct Buffer {
    rows: RecordBatch,
    ids: Vec<u64>,
    keys: Vec<Option<Box<[u8]>>>,
    matched: Vec<bool>,
    /// The row's current value is not in the store yet (new, or its matched flag changed).
    dirty: Vec<bool>,
    /// The row has been written to the store before.
    stored: Vec<bool>,
    index: HashMap<Box<[u8]>, Vec<u32>>,
    next_id: u64,
}

impl Buffer {
    fn new(schema: SchemaRef) -> Self {
        Self {
            rows: RecordBatch::new_empty(schema),
            ids: vec![],
            keys: vec![],
            matched: vec![],
            dirty: vec![],
            stored: vec![],
            index: HashMap::new(),
            next_id: 0,
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn append(&mut self, batch: &RecordBatch, keys: Vec<Option<Box<[u8]>>>, stored: bool) -> Result<()> {
        let base = self.len() as u32;
        for (i, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                self.index.entry(key.clone()).or_default().push(base + i as u32);
            }
        }
        self.rows = concat_batches(&self.rows.schema(), [&self.rows, batch])?;
        self.ids.extend((0..batch.num_rows() as u64).map(|i| self.next_id + i));
        self.next_id += batch.num_rows() as u64;
        self.keys.extend(keys);
        self.matched.resize(self.rows.num_rows(), false);
        self.dirty.resize(self.rows.num_rows(), !stored);
        self.stored.resize(self.rows.num_rows(), stored);
        Ok(())
    }

    /// Positions of buffered rows with key `key`, in arrival order.
    fn probe(&self, key: &[u8]) -> &[u32] {
        self.index.get(key).map_or(&[], Vec::as_slice)
    }

    fn set_matched(&mut self, position: usize) {
        if !self.matched[position] {
            self.matched[position] = true;
            self.dirty[position] = true;
        }
    }

    /// Keeps the rows where `keep` is true.
    fn retain(&mut self, keep: &[bool]) -> Result<()> {
        let mask = BooleanArray::from(keep.to_vec());
        self.rows = filter_record_batch(&self.rows, &mask)?;
        let mut kept = keep.iter();
        self.ids.retain(|_| *kept.next().expect("one flag per row"));
        let mut kept = keep.iter();
        self.keys.retain(|_| *kept.next().expect("one flag per row"));
        for flags in [&mut self.matched, &mut self.dirty, &mut self.stored] {
            let mut kept = keep.iter();
            flags.retain(|_| *kept.next().expect("one flag per row"));
        }
        self.index.clear();
        for (i, key) in self.keys.iter().enumerate() {
            if let Some(key) = key {
                self.index.entry(key.clone()).or_default().push(i as u32);
            }
        }
        Ok(())
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
            buffers: [Buffer::new(Arc::clone(&spec.sides[0].schema)), Buffer::new(Arc::clone(&spec.sides[1].schema))],
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

    /// The left and right rows of `pairs` side by side.
    fn pair_rows(&self, pairs: &[(u32, u32)]) -> Result<RecordBatch> {
        let left = take_record_batch(&self.buffers[0].rows, &UInt32Array::from_iter_values(pairs.iter().map(|p| p.0)))?;
        let right =
            take_record_batch(&self.buffers[1].rows, &UInt32Array::from_iter_values(pairs.iter().map(|p| p.1)))?;
        let fields: Vec<_> = left.schema().fields().iter().chain(right.schema().fields()).cloned().collect();
        let columns = left.columns().iter().chain(right.columns()).cloned().collect();
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
    }

    /// Joins this batch's rows: returns the matching pairs, as `(left position, right position)`
    /// in the buffers, and the pairs' rows.
    fn join_new_rows(&mut self, left: RecordBatch, right: RecordBatch) -> Result<(Vec<(u32, u32)>, RecordBatch)> {
        let left_keys = self.key_rows(0, &left)?;
        let right_keys = self.key_rows(1, &right)?;
        let mut pairs = Vec::new();
        let left_base = self.buffers[0].len() as u32;
        for (i, key) in left_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            pairs.extend(self.buffers[1].probe(key).iter().map(|r| (left_base + i as u32, *r)));
        }
        self.buffers[0].append(&left, left_keys, false)?;
        let right_base = self.buffers[1].len() as u32;
        for (i, key) in right_keys.iter().enumerate() {
            let Some(key) = key else { continue };
            pairs.extend(self.buffers[0].probe(key).iter().map(|l| (*l, right_base + i as u32)));
        }
        self.buffers[1].append(&right, right_keys, false)?;
        let rows = self.pair_rows(&pairs)?;
        let Some(filter) = &self.spec.filter else { return Ok((pairs, rows)) };
        let mask = filter.evaluate(&rows)?.into_array(rows.num_rows())?;
        // A null condition is false: filter_record_batch drops it, and so does `== Some(true)`.
        let mask = mask.as_boolean().clone();
        let pairs =
            pairs.into_iter().zip(mask.iter()).filter(|(_, keep)| keep == &Some(true)).map(|(p, _)| p).collect();
        Ok((pairs, filter_record_batch(&rows, &mask)?))
    }

    /// Rows of `side` the state watermark has passed, removed from the buffer and the store; the
    /// ones that never matched are returned for an outer join to emit.
    fn evict(&mut self, side: usize) -> Result<RecordBatch> {
        let buffer = &self.buffers[side];
        let Some(eviction) = self.spec.sides[side].eviction else {
            return Ok(RecordBatch::new_empty(buffer.rows.schema()));
        };
        let (times, unit) = time_values(buffer.rows.column(eviction.column), eviction.is_window)?;
        let watermark = ms_in_unit(self.watermarks.current_ms.saturating_add(eviction.offset_ms), &unit);
        let keep: Vec<bool> = times.iter().map(|t| t.is_none_or(|t| t > watermark)).collect();
        if keep.iter().all(|k| *k) {
            return Ok(RecordBatch::new_empty(buffer.rows.schema()));
        }
        let unmatched: BooleanArray = keep.iter().zip(&buffer.matched).map(|(k, m)| Some(!k && !m)).collect();
        let unmatched = filter_record_batch(&buffer.rows, &unmatched)?;
        for (i, kept) in keep.iter().enumerate() {
            if !kept && buffer.stored[i] {
                self.store.remove(&side_key(side, buffer.ids[i]));
            }
        }
        self.buffers[side].retain(&keep)?;
        Ok(unmatched)
    }

    /// Writes buffered rows that are new or changed to the store.
    fn write_state(&mut self) -> Result<()> {
        for side in 0..2 {
            let buffer = &mut self.buffers[side];
            let dirty: Vec<u32> = (0..buffer.len() as u32).filter(|i| buffer.dirty[*i as usize]).collect();
            if dirty.is_empty() {
                continue;
            }
            let rows = take_record_batch(&buffer.rows, &UInt32Array::from(dirty.clone()))?;
            let encoded = self.rows[side].convert_columns(rows.columns())?;
            for (row, position) in encoded.iter().zip(&dirty) {
                let position = *position as usize;
                let mut value = Vec::with_capacity(row.data().len() + 1);
                value.push(u8::from(buffer.matched[position]));
                value.extend_from_slice(row.data());
                self.store.put(&side_key(side, buffer.ids[position]), &value);
                buffer.dirty[position] = false;
                buffer.stored[position] = true;
            }
        }
        Ok(())
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
                if !self.buffers[0].matched[*l as usize] {
                    self.buffers[0].set_matched(*l as usize);
                    first.push(*l);
                }
            }
            output.push(take_record_batch(&self.buffers[0].rows, &UInt32Array::from(first))?);
        } else {
            for (l, r) in &pairs {
                self.buffers[0].set_matched(*l as usize);
                self.buffers[1].set_matched(*r as usize);
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
        self.write_state()?;
        let output = output.iter().map(|b| self.with_output_schema(b)).collect::<Result<Vec<_>>>()?;
        Ok(concat_batches(&self.spec.output_schema, &output)?)
    }

    fn restored(&mut self) -> Result<()> {
        let mut entries: Vec<(&[u8], &[u8])> = self.store.iter().collect();
        entries.sort_unstable_by_key(|(k, _)| *k);
        let corrupt = |what: &str| SluiceError::Checkpoint {
            location: format!("state of {}", self.spec.name),
            message: format!("malformed join state row ({what}); the checkpoint is corrupted, start from a new one"),
        };
        let mut loaded: [Vec<(u64, bool, &[u8])>; 2] = [vec![], vec![]];
        for (key, value) in entries {
            let (Some(side), Ok(id), Some((matched, row))) =
                (key.first(), <[u8; 8]>::try_from(&key[1..]), value.split_first())
            else {
                return Err(corrupt("short key or value"));
            };
            let side = usize::from(*side);
            if side > 1 {
                return Err(corrupt("unknown side"));
            }
            loaded[side].push((u64::from_be_bytes(id), *matched != 0, row));
        }
        for (side, rows) in loaded.iter().enumerate() {
            let schema = Arc::clone(&self.spec.sides[side].schema);
            let mut buffer = Buffer::new(Arc::clone(&schema));
            if !rows.is_empty() {
                let parser = self.rows[side].parser();
                let columns = self.rows[side].convert_rows(rows.iter().map(|(_, _, r)| parser.parse(r)))?;
                let batch = RecordBatch::try_new(schema, columns)?;
                let keys = self.key_rows(side, &batch)?;
                buffer.append(&batch, keys, true)?;
                buffer.ids = rows.iter().map(|(id, _, _)| *id).collect();
                buffer.matched = rows.iter().map(|(_, m, _)| *m).collect();
                buffer.next_id = rows.last().map_or(0, |(id, _, _)| id + 1);
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
            state: self.store.metrics(),
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
