//! Stream-stream join state (Spark's `StreamingSymmetricHashJoinExec`, SEMANTICS §3).
//!
//! Each batch, in Spark's order: the new left rows join the buffered right rows and are buffered;
//! the new right rows join every buffered left row (the new ones included, so a pair of new rows
//! is produced once) and are buffered. A pair is emitted in the batch in which the later of its
//! rows arrives. Then each side evicts the rows its state watermark has passed; a row of an outer
//! join's preserved side that never matched is emitted then, once, padded with nulls. Rows whose
//! watermarked event time is at or below `W_{k-1}` are dropped as late before joining.
//!
//! State: each batch's new rows of a side are stored as chunks of up to [`CHUNK_ROWS`] rows, keyed
//! `[side][first arrival id]`, valued the rows in arrow's row format (see [`encode_chunk`]); a
//! buffered row's arrival id is its chunk's first id plus its position in the chunk. Beside the store each side keeps an
//! index from equality key to arrival ids, an index of ids by eviction time and, per chunk, each
//! row's key, so a batch decodes only the rows it matches or evicts, and its work follows the
//! rows that arrive and leave, not the rows buffered. Storing a batch's rows in a few entries, not
//! an entry per row, keeps the per-row cost of buffering to encoding the row and indexing it (a row
//! per entry cost two hash-map entries, four allocations and a delta record per buffered row,
//! which bounded q7); capping an entry at [`CHUNK_ROWS`] rows keeps a read of one buffered row
//! from reading a whole batch's bytes, which on RocksDB came from disk. Evicted rows leave the indexes at once; a chunk leaves the store when its
//! last row is evicted, and is rewritten without its evicted rows' bytes when fewer than half of
//! those it stores are still buffered. A side's latest eviction time is stored too
//! (`[EVICTED | side]`), so a restore drops the evicted rows a chunk still holds: after each
//! batch, a side holds exactly the rows whose eviction time is after it. Matched flags, kept only
//! where an outer or semi join reads them, are entries `[MATCHED | side][id]`. The indexes are
//! rebuilt from the store on restore.

mod buffer;

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::JoinType;
use datafusion::physical_expr::PhysicalExpr;

use self::buffer::{chunk_key, evicted_key, matched_key, Buffer, EVICTED, GONE, MATCHED};
use super::chunk::{encode_chunk, Chunk};
use super::exec::BatchOperator;
use super::watermark::{ceil_ms, drop_late_rows, time_values, TimeColumn};
use super::{BatchWatermarks, OperatorProgress};
use crate::plan::nodes::StateEviction;
use crate::state::{StateStore, StateValue};
use crate::{Result, SluiceError};

/// The layout of the join's stored state, recorded with the operator in the checkpoint (see
/// `crate::plan::fingerprint`): a checkpoint written with another layout (before it, a row per
/// store entry valued `[matched][row]`) is refused at start, before its bytes reach a decoder.
pub(crate) const JOIN_STATE_FORMAT: &str = "join state v2 (a chunk of rows per batch)";

/// The most rows of one stored chunk: a batch's rows are stored in chunks of this many, so that
/// reading a buffered row reads (and, on RocksDB, caches) at most this many rows' bytes, not the
/// whole batch's.
const CHUNK_ROWS: usize = 4096;

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

/// The encoded equality keys of a batch's rows.
struct Keys {
    rows: Rows,
    /// Whether row `i`'s key has no null (a null key matches nothing).
    valid: Vec<bool>,
}

impl Keys {
    /// The key of row `i`; `None` where it is null.
    fn get(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| self.rows.row(i).data())
    }

    /// `(i, key)` of each row whose key has no null, in row order.
    fn present(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        (0..self.valid.len()).filter_map(|i| Some((i, self.get(i)?)))
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
    /// Rows buffered and evicted by the current batch.
    buffered: u64,
    evicted: u64,
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
            buffers: [Buffer::for_store(&store)?, Buffer::for_store(&store)?],
            spec,
            store,
            watermarks: BatchWatermarks::default(),
            dropped: 0,
            buffered: 0,
            evicted: 0,
        })
    }

    fn corrupt(&self, what: &str) -> SluiceError {
        SluiceError::Checkpoint {
            location: format!("state of {}", self.spec.name),
            message: format!("{what}; the checkpoint is corrupted, start from a new one"),
        }
    }

    fn drop_late(&mut self, side: usize, input: RecordBatch) -> Result<RecordBatch> {
        let Some(late) = self.spec.sides[side].late else { return Ok(input) };
        let (kept, dropped) = drop_late_rows(input, late, self.watermarks.late_ms)?;
        self.dropped += dropped;
        Ok(kept)
    }

    /// Encoded equality keys of `batch`'s rows.
    fn key_rows(&self, side: usize, batch: &RecordBatch) -> Result<Keys> {
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
        let valid = (0..batch.num_rows()).map(|i| columns.iter().all(|c| c.is_valid(i))).collect();
        Ok(Keys { rows, valid })
    }

    /// The eviction time (ms, rounded up) of each row of `batch`; `None` for rows never evicted.
    fn evict_times(&self, side: usize, batch: &RecordBatch) -> Result<Vec<Option<i64>>> {
        let Some(eviction) = self.spec.sides[side].eviction else { return Ok(vec![None; batch.num_rows()]) };
        let (times, unit) = time_values(batch.column(eviction.column), eviction.is_window)?;
        Ok(times.iter().map(|t| t.map(|t| ceil_ms(t, &unit))).collect())
    }

    /// Buffers `batch` (new rows of `side`, with their equality `keys`): stored as chunks of at
    /// most [`CHUNK_ROWS`] rows, indexed. Its rows get the ids from the side's next id on.
    fn buffer(&mut self, side: usize, batch: &RecordBatch, keys: &Keys) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = self.evict_times(side, batch)?;
        let encoded = self.rows[side].convert_columns(batch.columns())?;
        for start in (0..batch.num_rows()).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(batch.num_rows());
            let rows: Vec<Option<&[u8]>> = (start..end).map(|i| Some(encoded.row(i).data())).collect();
            let first = self.buffers[side].next_id;
            self.store.put(&chunk_key(side, first), &encode_chunk(&rows)?)?;
            let entries = (start..end).map(|i| Some((keys.get(i), times[i])));
            self.buffered += self.buffers[side].add_chunk(first, rows.len(), entries)? as u64;
        }
        Ok(())
    }

    /// The bytes of the stored chunk of `side` whose first arrival id is `first` (pinned by a
    /// RocksDB store while held); read them with [`Self::parse_chunk`].
    fn stored_chunk(&self, side: usize, first: u64) -> Result<StateValue<'_>> {
        self.store
            .get(&chunk_key(side, first))?
            .ok_or_else(|| self.corrupt(&format!("buffered rows from {first} of side {side} are missing")))
    }

    /// `value`, the stored chunk `first` of `side`, read in place.
    fn parse_chunk<'v>(&self, side: usize, first: u64, value: &'v [u8]) -> Result<Chunk<'v>> {
        Chunk::parse(value).ok_or_else(|| self.corrupt(&format!("malformed join state chunk {first} of side {side}")))
    }

    /// The buffered rows `ids` of `side` (repeats allowed), decoded into one batch.
    fn decode(&self, side: usize, ids: &[u64]) -> Result<RecordBatch> {
        let schema = Arc::clone(&self.spec.sides[side].schema);
        if ids.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let missing = |id: u64| self.corrupt(&format!("buffered row {id} of side {side} is missing"));
        // Each row's chunk (ids mostly ascend: the last chunk's range is tried first), then each
        // chunk read once, then the rows.
        let mut firsts = Vec::with_capacity(ids.len());
        let mut last: Option<(u64, u64)> = None;
        for id in ids {
            let first = match last {
                Some((first, end)) if first <= *id && *id < end => first,
                _ => {
                    let first = self.buffers[side].chunk_first(*id).ok_or_else(|| missing(*id))?;
                    let len = self.buffers[side].chunks.get(&first).map_or(0, |c| c.slots.len() as u64);
                    last = Some((first, first + len));
                    first
                }
            };
            firsts.push(first);
        }
        let mut distinct = firsts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let stored = distinct.iter().map(|first| self.stored_chunk(side, *first)).collect::<Result<Vec<_>>>()?;
        let chunks = distinct
            .iter()
            .zip(&stored)
            .map(|(first, value)| self.parse_chunk(side, *first, value))
            .collect::<Result<Vec<_>>>()?;
        let parser = self.rows[side].parser();
        let mut values = Vec::with_capacity(ids.len());
        for (id, first) in ids.iter().zip(&firsts) {
            let chunk = distinct.binary_search(first).map(|i| &chunks[i]).map_err(|_| missing(*id))?;
            values.push(chunk.row((id - first) as usize).ok_or_else(|| missing(*id))?);
        }
        let columns = self.rows[side].convert_rows(values.iter().map(|v| parser.parse(v)))?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(ids.len()));
        Ok(RecordBatch::try_new_with_options(schema, columns, &options)?)
    }

    /// Marks buffered row `id` of `side` as matched; false if it already was.
    fn set_matched(&mut self, side: usize, id: u64) -> Result<bool> {
        let key = matched_key(side, id);
        if self.store.get(&key)?.is_some() {
            return Ok(false);
        }
        self.store.put(&key, &[])?;
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
        self.buffers[1].probe(left_keys.present(), |i, r| pairs.push((left_first + i as u64, r)))?;
        self.buffer(0, &left, &left_keys)?;
        let right_first = self.buffers[1].next_id;
        self.buffers[0].probe(right_keys.present(), |i, l| pairs.push((l, right_first + i as u64)))?;
        self.buffer(1, &right, &right_keys)?;
        let rows = self.pair_rows(&pairs)?;
        let Some(filter) = &self.spec.filter else { return Ok((pairs, rows)) };
        let mask = filter.evaluate(&rows)?.into_array(rows.num_rows())?;
        // A null condition is false: filter_record_batch drops it, and so does `== Some(true)`.
        let mask = mask.as_boolean().clone();
        let pairs =
            pairs.into_iter().zip(mask.iter()).filter(|(_, keep)| keep == &Some(true)).map(|(p, _)| p).collect();
        Ok((pairs, filter_record_batch(&rows, &mask)?))
    }

    /// Whether `side` is an outer join's preserved side, whose rows that never match are emitted
    /// padded with nulls when evicted.
    fn preserved(&self, side: usize) -> bool {
        match self.spec.join_type {
            JoinType::Left => side == 0,
            JoinType::Right => side == 1,
            JoinType::Full => true,
            _ => false,
        }
    }

    /// Whether buffered rows of `side` keep a matched flag: a preserved side's (to emit the
    /// unmatched ones) and a semi join's left side (to emit a row once).
    fn tracks_matches(&self, side: usize) -> bool {
        self.preserved(side) || (side == 0 && self.spec.join_type == JoinType::LeftSemi)
    }

    /// Rows of `side` the state watermark has passed, removed from the indexes and the store; the
    /// ones that never matched are returned (in arrival order) for an outer join to emit, and
    /// only then decoded (another join only drops them).
    fn evict(&mut self, side: usize) -> Result<RecordBatch> {
        let empty = RecordBatch::new_empty(Arc::clone(&self.spec.sides[side].schema));
        let Some(eviction) = self.spec.sides[side].eviction else { return Ok(empty) };
        let through = self.watermarks.current_ms.saturating_add(eviction.offset_ms);
        let evicted = self.buffers[side].evict_through(through)?;
        if evicted.is_empty() {
            return Ok(empty);
        }
        let mut unmatched: Vec<u64> = vec![];
        if self.preserved(side) {
            for id in &evicted {
                if self.store.get(&matched_key(side, *id))?.is_none() {
                    unmatched.push(*id);
                }
            }
        }
        let rows = self.decode(side, &unmatched)?;
        if self.tracks_matches(side) {
            for id in &evicted {
                self.store.remove(&matched_key(side, *id))?;
            }
        }
        // A restore drops the rows a chunk still holds that are due by this time.
        self.store.put(&evicted_key(side), &through.to_le_bytes())?;
        let mut firsts: Vec<u64> = evicted.iter().filter_map(|id| self.buffers[side].chunk_first(*id)).collect();
        firsts.dedup();
        for first in firsts {
            self.settle_chunk(side, first)?;
        }
        self.evicted += evicted.len() as u64;
        Ok(rows)
    }

    /// After evictions from chunk `first` of `side`: removes it once none of its rows is
    /// buffered; rewrites it without its evicted rows' bytes once fewer than half of the rows it
    /// stores are buffered (so the bytes held stay under twice those of the rows buffered, and
    /// each byte is rewritten at most about once).
    fn settle_chunk(&mut self, side: usize, first: u64) -> Result<()> {
        let Some(index) = self.buffers[side].chunks.get(&first) else { return Ok(()) };
        if index.live == 0 {
            self.buffers[side].chunks.remove(&first);
            self.store.remove(&chunk_key(side, first))?;
            return Ok(());
        }
        if index.live * 2 >= index.stored {
            return Ok(());
        }
        let value = {
            let stored = self.stored_chunk(side, first)?;
            let chunk = self.parse_chunk(side, first, &stored)?;
            let rows = index
                .slots
                .iter()
                .enumerate()
                .map(|(i, slot)| match (*slot, chunk.row(i)) {
                    (GONE, _) => Ok(None),
                    (_, Some(row)) => Ok(Some(row)),
                    (_, None) => {
                        Err(self.corrupt(&format!("buffered row {} of side {side} is missing", first + i as u64)))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            encode_chunk(&rows)?
        };
        self.store.put(&chunk_key(side, first), &value)?;
        if let Some(index) = self.buffers[side].chunks.get_mut(&first) {
            index.stored = index.live;
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

    /// Rebuilds the indexes of `side` from its stored `chunks` (first ids, ascending), dropping
    /// the rows due by the side's latest eviction time `through`; returns the chunks left with
    /// no row buffered.
    fn restore_side(&mut self, side: usize, chunks: &[u64], through: Option<i64>) -> Result<Vec<u64>> {
        let mut buffer = Buffer::for_store(&self.store)?;
        let mut empty = Vec::new();
        let schema = Arc::clone(&self.spec.sides[side].schema);
        let parser = self.rows[side].parser();
        for first in chunks {
            let stored = self.stored_chunk(side, *first)?;
            let chunk = self.parse_chunk(side, *first, &stored)?;
            let present: Vec<(usize, &[u8])> = (0..chunk.len).filter_map(|i| Some((i, chunk.row(i)?))).collect();
            let columns = self.rows[side].convert_rows(present.iter().map(|(_, row)| parser.parse(row)))?;
            let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(present.len()));
            let rows = RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)?;
            let keys = self.key_rows(side, &rows)?;
            let times = self.evict_times(side, &rows)?;
            let mut next = present.iter().enumerate().peekable();
            let entries = (0..chunk.len).map(|i| {
                let (j, _) = next.next_if(|(_, (at, _))| *at == i)?;
                let due = matches!((times[j], through), (Some(at), Some(through)) if at <= through);
                (!due).then(|| (keys.get(j), times[j]))
            });
            if buffer.add_chunk(*first, present.len(), entries)? == 0 {
                empty.push(*first);
            }
        }
        self.buffers[side] = buffer;
        Ok(empty)
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
            // Only an outer join's preserved side reads the flags.
            for (l, r) in &pairs {
                if self.tracks_matches(0) {
                    self.set_matched(0, *l)?;
                }
                if self.tracks_matches(1) {
                    self.set_matched(1, *r)?;
                }
            }
            output.push(self.with_output_schema(&rows)?);
        }
        for side in 0..2 {
            let unmatched = self.evict(side)?;
            if self.preserved(side) && unmatched.num_rows() > 0 {
                output.push(self.null_padded(side, &unmatched)?);
            }
        }
        let output = output.iter().map(|b| self.with_output_schema(b)).collect::<Result<Vec<_>>>()?;
        Ok(concat_batches(&self.spec.output_schema, &output)?)
    }

    /// Rebuilds both sides' indexes from the stored chunks (once per restore).
    fn restored(&mut self) -> Result<()> {
        let mut chunks: [Vec<u64>; 2] = [vec![], vec![]];
        let mut through: [Option<i64>; 2] = [None, None];
        for entry in self.store.iter() {
            let (key, value) = entry?;
            let id = key.get(1..).and_then(|id| <[u8; 8]>::try_from(id).ok()).map(u64::from_be_bytes);
            match (key.first().copied(), id) {
                (Some(side @ 0..=1), Some(id)) => chunks[usize::from(side)].push(id),
                (Some(tag), Some(_)) if tag & !1 == MATCHED => {}
                (Some(tag), None) if tag & !1 == EVICTED && key.len() == 1 => {
                    let time =
                        <[u8; 8]>::try_from(&*value).map_err(|_| self.corrupt("malformed join eviction time"))?;
                    through[usize::from(tag & 1)] = Some(i64::from_le_bytes(time));
                }
                _ => return Err(self.corrupt("malformed join state key")),
            }
        }
        for (side, mut side_chunks) in chunks.into_iter().enumerate() {
            side_chunks.sort_unstable();
            for first in self.restore_side(side, &side_chunks, through[side])? {
                self.store.remove(&chunk_key(side, first))?;
            }
        }
        Ok(())
    }

    fn begin_batch(&mut self, watermarks: BatchWatermarks) {
        self.watermarks = watermarks;
        self.dropped = 0;
        self.buffered = 0;
        self.evicted = 0;
    }

    /// Spark runs a no-data batch for a join that evicts state whenever the watermark advances
    /// (`StreamingSymmetricHashJoinExec.shouldRunAnotherBatch`).
    fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.spec.sides.iter().any(|s| s.eviction.is_some()) && next_ms > self.watermarks.current_ms
    }

    /// State rows are buffered rows (not the store's chunk entries); the batch's counts are
    /// zeroed with the store's at commit.
    fn progress(&self) -> OperatorProgress {
        let mut state = self.store.metrics();
        let pending = state.rows_updated + state.rows_removed > 0;
        state.rows_total = (self.buffers[0].len + self.buffers[1].len) as u64;
        state.rows_updated = if pending { self.buffered } else { 0 };
        state.rows_removed = if pending { self.evicted } else { 0 };
        OperatorProgress {
            name: self.spec.name.clone(),
            operator_name: "symmetricHashJoin",
            state,
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::physical_expr::expressions::col;

    use super::*;
    use crate::checkpoint::CheckpointLocation;
    use crate::state::store::tests::{kinds, open};
    use crate::state::StateStoreKind;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    /// A left outer join on `k`, each side evicted once the watermark passes its `ts`, its state
    /// in a store of `kind`.
    fn state(location: &CheckpointLocation, kind: StateStoreKind) -> JoinState {
        let side = JoinSideSpec {
            schema: schema(),
            keys: vec![col("k", &schema()).unwrap()],
            late: None,
            eviction: Some(StateEviction { column: 1, is_window: false, offset_ms: 0 }),
        };
        let fields: Vec<_> = schema().fields().iter().chain(schema().fields()).cloned().collect();
        let spec = JoinSpec {
            name: "join".to_string(),
            join_type: JoinType::Left,
            sides: [side.clone(), side],
            filter: None,
            output_schema: Arc::new(Schema::new(fields)),
        };
        JoinState::try_new(spec, open(location, 0, kind)).unwrap()
    }

    fn rows(keys: &[Option<i64>], ts: &[i64]) -> RecordBatch {
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(keys.to_vec())), Arc::new(TimestampMillisecondArray::from(ts.to_vec()))];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn run(join: &mut JoinState, watermark_ms: i64, left: RecordBatch, right: RecordBatch) -> usize {
        join.begin_batch(BatchWatermarks { current_ms: watermark_ms, late_ms: 0, processing_time_ms: 0 });
        join.apply(vec![left, right]).unwrap().num_rows()
    }

    /// What the indexes of a side hold: each key's ids, the ids by eviction time, the rows.
    fn indexes(buffer: &Buffer) -> (Vec<(Vec<u8>, Vec<u64>)>, Vec<(i64, u64)>, usize) {
        let (keys, expiry) = buffer.contents();
        (keys, expiry, buffer.len)
    }

    /// Rows leave a chunk one eviction at a time; the chunk is rewritten without them once most
    /// are gone and removed with its last row; a restore rebuilds the same indexes, dropping the
    /// evicted rows a chunk still holds.
    #[tokio::test]
    async fn partly_evicted_chunks_are_compacted_and_restored_without_their_evicted_rows() {
        for kind in kinds() {
            compacted_and_restored(kind).await;
        }
    }

    async fn compacted_and_restored(kind: StateStoreKind) {
        let location = CheckpointLocation::open("memory://").unwrap();
        let mut join = state(&location, kind);
        let empty = rows(&[], &[]);
        // One chunk of five left rows (one with a null key), due at 10..50 ms.
        let left = rows(&[Some(1), Some(2), None, Some(1), Some(3)], &[10, 20, 30, 40, 50]);
        assert_eq!(run(&mut join, 0, left, empty.clone()), 0);
        let value_len = |join: &JoinState| join.store.get(&chunk_key(0, 0)).unwrap().map(|v| v.len());
        let full = value_len(&join).unwrap();
        assert_eq!(indexes(&join.buffers[0]).1, vec![(10, 0), (20, 1), (30, 2), (40, 3), (50, 4)], "{kind:?}");
        // The first row goes, unmatched: emitted padded; the chunk keeps its bytes (4 of 5 live).
        assert_eq!(run(&mut join, 10, empty.clone(), empty.clone()), 1);
        assert_eq!(value_len(&join), Some(full));
        join.store.commit(0).await.unwrap();
        // A right row matches key 1 (row 3); two more left rows go: 2 of 5 live, compacted.
        assert_eq!(run(&mut join, 30, empty.clone(), rows(&[Some(1)], &[100])), 1 + 2);
        assert!(value_len(&join).unwrap() < full);
        join.store.commit(1).await.unwrap();
        let key_ids = indexes(&join.buffers[0]).0.into_iter().map(|(_, ids)| ids).collect::<Vec<_>>();
        assert_eq!(key_ids, vec![vec![3], vec![4]], "{kind:?}: keys 1 and 3 left");

        let mut restored = state(&location, kind);
        restored.store.load(Some(1)).await.unwrap();
        restored.restored().unwrap();
        for side in 0..2 {
            assert_eq!(indexes(&restored.buffers[side]), indexes(&join.buffers[side]), "{kind:?} side {side}");
        }
        assert_eq!(restored.decode(0, &[3, 4]).unwrap(), rows(&[Some(1), Some(3)], &[40, 50]));
        // Row 3 matched before the restart: not emitted when evicted; row 4 is, and the chunk goes.
        assert_eq!(run(&mut restored, 50, empty.clone(), empty.clone()), 1);
        assert!(restored.store.get(&chunk_key(0, 0)).unwrap().is_none());
        assert_eq!(indexes(&restored.buffers[0]), (vec![], vec![], 0), "{kind:?}");
        assert!(restored.buffers[0].chunks.is_empty());
    }
}
