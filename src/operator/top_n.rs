//! Top-N per key (Flink's Top-N; Spark refuses every window function on a stream), planned from
//! `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) AS rn ... WHERE rn <= N` (see
//! `crate::plan::row_number`): each key's first `N` rows in `ORDER BY` order, each with its rank.
//!
//! State: per key, its best rows so far (at most `N`), in rank order, as one store entry valued a
//! [chunk](super::chunk) of entries `[order length, u32 LE][order][row]`: the `ORDER BY` values
//! in arrow's row format (which compares as bytes, directions and null placement included) and
//! the whole input row in arrow's row format.
//!
//! Each batch ranks, per key it touches, the stored rows and then the batch's rows of the key in
//! a stable sort by order bytes, so rows of equal order rank in arrival order (a stored row before
//! a new one, new rows in batch order), and keeps the first `N`. Update mode emits, for each key
//! whose ranking changed, its rows from the first rank a new row took to the last (every rank
//! below a new row shifts); complete mode emits every key's rows, sorted by key. A key's ranking
//! is never final, so no key leaves the state and no row is dropped as late: the result is the
//! batch query's over every row received. Update-mode work follows the keys a batch touches.

use foldhash::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::chunk::{encode_chunk, Chunk};
use super::exec::BatchOperator;
use super::{BatchWatermarks, OperatorProgress};
use crate::plan::OutputMode;
use crate::state::{StateEntry, StateStore};
use crate::{Result, SluiceError};

/// The layout of a top-N's stored state, recorded with the operator in the checkpoint (see
/// `crate::plan::fingerprint`), so that a later layout refuses this one at start.
pub(crate) const TOP_N_STATE_FORMAT: &str = "top-N state v1 (a chunk of ranked rows per key)";

/// How to build a [`TopNState`].
#[derive(Debug)]
pub struct TopNSpec {
    /// Operator name for progress.
    pub name: String,
    /// The `PARTITION BY` expressions over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` expressions over the input, with their directions and null placement.
    pub order_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    /// The most rows kept per key (≥ 1).
    pub limit: usize,
    /// The sink's output mode: update or complete (the planner refuses append).
    pub mode: OutputMode,
    /// Output schema: the input's columns, then the rank (`UInt64`, from 1).
    pub output_schema: SchemaRef,
}

/// Each key's best rows and the per-batch ranking logic.
#[derive(Debug)]
pub struct TopNState {
    spec: TopNSpec,
    keys: RowConverter,
    /// `None` without `ORDER BY`: rows rank in arrival order.
    order: Option<RowConverter>,
    rows: RowConverter,
    store: StateStore,
}

/// One ranked row: its order bytes and row bytes, and whether this batch brought it.
#[derive(Debug, Clone, Copy)]
struct Ranked<'a> {
    order: &'a [u8],
    row: &'a [u8],
    new: bool,
}

impl TopNState {
    /// An empty top-N kept in `store`, for input of `input_schema`.
    ///
    /// # Errors
    /// A DataFusion error when a key, order or input column's type has no row encoding.
    pub fn try_new(spec: TopNSpec, input_schema: &SchemaRef, store: StateStore) -> Result<Self> {
        let keys = spec.keys.iter().map(|k| Ok(SortField::new(k.data_type(input_schema)?))).collect::<Result<_>>()?;
        let order: Vec<SortField> = spec
            .order_by
            .iter()
            .map(|(e, options)| Ok(SortField::new_with_options(e.data_type(input_schema)?, *options)))
            .collect::<Result<_>>()?;
        let rows = input_schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(Self {
            keys: RowConverter::new(keys)?,
            order: if order.is_empty() { None } else { Some(RowConverter::new(order)?) },
            rows: RowConverter::new(rows)?,
            spec,
            store,
        })
    }

    fn corrupt(&self, what: &str) -> SluiceError {
        SluiceError::Checkpoint {
            location: format!("state of {}", self.spec.name),
            message: format!("{what}; the checkpoint is corrupted, start from a new one"),
        }
    }

    fn evaluate(exprs: impl Iterator<Item = Arc<dyn PhysicalExpr>>, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        Ok(exprs.map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect::<Result<_, _>>()?)
    }

    /// A key's stored rows, in rank order.
    fn stored<'v>(&self, value: &'v [u8]) -> Result<Vec<Ranked<'v>>> {
        let chunk = Chunk::parse(value).ok_or_else(|| self.corrupt("malformed top-N state value"))?;
        (0..chunk.len)
            .map(|i| {
                let entry = chunk.row(i).ok_or_else(|| self.corrupt("malformed top-N state row"))?;
                let split = entry
                    .get(..4)
                    .and_then(|b| Some(4 + u32::from_le_bytes(b.try_into().ok()?) as usize))
                    .filter(|s| *s <= entry.len())
                    .ok_or_else(|| self.corrupt("malformed top-N state row"))?;
                Ok(Ranked { order: &entry[4..split], row: &entry[split..], new: false })
            })
            .collect()
    }

    /// Ranks a key's stored rows and its `new` rows (indices into `order` and `rows`, in batch
    /// order); when a new row made the first `limit`, stores the new ranking and appends the rows
    /// to emit in update mode (from the first new row on) to `emit`.
    fn rank_key(
        &mut self,
        key: &[u8],
        new: &[usize],
        order: Option<&Rows>,
        rows: &Rows,
        emit: &mut Emitted,
    ) -> Result<()> {
        let ranking = {
            let value = self.store.get(key)?;
            let stored = match &value {
                Some(v) => self.stored(v)?,
                None => Vec::new(),
            };
            let mut arriving: Vec<Ranked> = new
                .iter()
                .map(|i| Ranked {
                    order: order.map_or(&[][..], |o| o.row(*i).data()),
                    row: rows.row(*i).data(),
                    new: true,
                })
                .collect();
            arriving.sort_by(|a, b| a.order.cmp(b.order));
            let ranked = merge(&stored, &arriving, self.spec.limit);
            let Some(first_new) = ranked.iter().position(|r| r.new) else { return Ok(()) };
            if self.spec.mode == OutputMode::Update {
                for (rank, r) in ranked.iter().enumerate().skip(first_new) {
                    emit.push(r.row, rank);
                }
            }
            let entries: Vec<Vec<u8>> = ranked.iter().map(|r| entry(r.order, r.row)).collect::<Result<_>>()?;
            encode_chunk(&entries.iter().map(|e| Some(e.as_slice())).collect::<Vec<_>>())?
        };
        self.store.put(key, &ranking)
    }

    /// Every key's rows, sorted by key, then rank (complete mode).
    fn emit_all(&self, emit: &mut Emitted) -> Result<()> {
        let mut entries: Vec<StateEntry> = self.store.iter().collect::<Result<_>>()?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, value) in &entries {
            for (rank, r) in self.stored(value)?.iter().enumerate() {
                emit.push(r.row, rank);
            }
        }
        Ok(())
    }
}

/// `[order length, u32 LE][order][row]`.
fn entry(order: &[u8], row: &[u8]) -> Result<Vec<u8>> {
    let length = u32::try_from(order.len()).map_err(|_| {
        datafusion::error::DataFusionError::Execution(format!("a top-N ORDER BY value of over {} bytes", u32::MAX))
    })?;
    let mut out = Vec::with_capacity(4 + order.len() + row.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(order);
    out.extend_from_slice(row);
    Ok(out)
}

/// The first `limit` of two rankings merged, `stored` first among equal orders.
fn merge<'a>(stored: &[Ranked<'a>], arriving: &[Ranked<'a>], limit: usize) -> Vec<Ranked<'a>> {
    let mut out = Vec::with_capacity(limit.min(stored.len() + arriving.len()));
    let (mut s, mut a) = (stored.iter().peekable(), arriving.iter().peekable());
    while out.len() < limit {
        let next = match (s.peek(), a.peek()) {
            (Some(x), Some(y)) if y.order < x.order => a.next(),
            (Some(_), _) => s.next(),
            (None, _) => a.next(),
        };
        let Some(next) = next else { break };
        out.push(*next);
    }
    out
}

/// The rows a batch emits: their bytes end to end, each row's end, and its rank (from 0).
#[derive(Debug, Default)]
struct Emitted {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    ranks: Vec<u64>,
}

impl Emitted {
    fn push(&mut self, row: &[u8], rank: usize) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
        self.ranks.push(rank as u64 + 1);
    }

    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, end)| &self.bytes[start..*end])
    }
}

impl BatchOperator for TopNState {
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch> {
        let [input] = <[_; 1]>::try_from(inputs).expect("a top-N has one input");
        let keys = self.keys.convert_columns(&Self::evaluate(self.spec.keys.iter().cloned(), &input)?)?;
        let order = match &self.order {
            Some(converter) => {
                let columns = Self::evaluate(self.spec.order_by.iter().map(|(e, _)| Arc::clone(e)), &input)?;
                Some(converter.convert_columns(&columns)?)
            }
            None => None,
        };
        let rows = self.rows.convert_columns(input.columns())?;
        // Each key's rows, keys in order of first arrival.
        let mut slots: HashMap<&[u8], usize> = HashMap::default();
        let mut touched: Vec<(&[u8], Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = *slots.entry(key.data()).or_insert_with(|| {
                touched.push((key.data(), Vec::new()));
                touched.len() - 1
            });
            touched[slot].1.push(i);
        }
        let mut emit = Emitted::default();
        for (key, new) in &touched {
            self.rank_key(key, new, order.as_ref(), &rows, &mut emit)?;
        }
        if self.spec.mode == OutputMode::Complete {
            self.emit_all(&mut emit)?;
        }
        let parser = self.rows.parser();
        let mut columns = self.rows.convert_rows(emit.rows().map(|r| parser.parse(r)))?;
        if self.spec.output_schema.fields().len() > columns.len() {
            columns.push(Arc::new(UInt64Array::from(emit.ranks)));
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(emit.ends.len()));
        Ok(RecordBatch::try_new_with_options(Arc::clone(&self.spec.output_schema), columns, &options)?)
    }

    fn begin_batch(&mut self, _watermarks: BatchWatermarks) {}

    /// A top-N neither emits nor evicts by time.
    fn needs_no_data_batch(&self, _next_ms: i64) -> bool {
        false
    }

    fn progress(&self) -> OperatorProgress {
        OperatorProgress {
            name: self.spec.name.clone(),
            operator_name: "topN",
            state: self.store.metrics(),
            rows_dropped_by_watermark: 0,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
