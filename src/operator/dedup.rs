//! Streaming deduplication (Spark's `dropDuplicates(keys)`, SEMANTICS §3): the first row of a key
//! is emitted in the batch it arrives in; later rows of the key are suppressed while the key is in
//! state. When the event-time column is one of the keys, a key leaves the state at the end of the
//! first batch whose watermark reaches its event time (`t <= W_k`); otherwise it stays forever, as
//! in Spark. Rows at or below the previous batch's watermark (`t <= W_{k-1}`) are late and dropped
//! whenever the input carries a watermark.
//!
//! With `within_watermark_delay_ms` it is Spark's `dropDuplicatesWithinWatermark(keys)` instead: a
//! key keeps `expiry = first event time + delay` (later duplicates do not extend it) and leaves the
//! state at the end of the first batch with `expiry <= W_k`.

use foldhash::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, UInt64Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::exec::BatchOperator;
use super::watermark::{ceil_ms, drop_late_rows, ms_in_unit, TimeColumn};
use super::{BatchWatermarks, OperatorProgress};
use crate::state::{StateStore, TimerIndex};
use crate::Result;

/// How to build a [`DedupState`].
#[derive(Debug)]
pub struct DedupSpec {
    /// Operator name for progress.
    pub name: String,
    /// Deduplication key expressions over the input.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Expression choosing a key's first row within a batch (lowest first), if any.
    pub order_by: Option<Arc<dyn PhysicalExpr>>,
    /// Input column index of the watermarked event-time column, if the input has one.
    pub event_time: Option<usize>,
    /// A stream below declares a watermark (decides no-data batches, SEMANTICS §4).
    pub watermark_upstream: bool,
    /// Index among `keys` of a key that is the event-time column, if one is.
    pub event_time_key: Option<usize>,
    /// Output schema: the input's columns, then the row number (1) when planned from the
    /// `ROW_NUMBER` pattern.
    pub output_schema: SchemaRef,
    /// `Some(delay)` for Spark's `dropDuplicatesWithinWatermark`: a key expires at its first
    /// event time plus the watermark delay (ms), whatever the keys.
    pub within_watermark_delay_ms: Option<i64>,
}

/// The keys seen so far and the per-batch deduplication logic.
#[derive(Debug)]
pub struct DedupState {
    spec: DedupSpec,
    keys: RowConverter,
    store: StateStore,
    watermarks: BatchWatermarks,
    /// Keys by the time (ms, rounded up) at which they leave the state: their event time, or
    /// their expiry within the watermark; keys kept forever are not indexed.
    expiring: TimerIndex,
    dropped: u64,
}

impl DedupState {
    /// An empty deduplication state kept in `store`, for input of `input_schema`.
    ///
    /// # Errors
    /// A DataFusion error when a key's type has no row encoding.
    pub fn try_new(spec: DedupSpec, input_schema: &SchemaRef, store: StateStore) -> Result<Self> {
        let fields = spec.keys.iter().map(|k| Ok(SortField::new(k.data_type(input_schema)?))).collect::<Result<_>>()?;
        Ok(Self {
            keys: RowConverter::new(fields)?,
            spec,
            expiring: TimerIndex::for_store(&store)?,
            store,
            watermarks: BatchWatermarks::default(),
            dropped: 0,
        })
    }

    /// Drops rows whose event time is at or below `W_{k-1}`; null event times stay, as in Spark.
    fn drop_late(&mut self, input: RecordBatch) -> Result<RecordBatch> {
        let Some(index) = self.spec.event_time else { return Ok(input) };
        let (kept, dropped) = drop_late_rows(input, TimeColumn { index, is_window: false }, self.watermarks.late_ms)?;
        self.dropped += dropped;
        Ok(kept)
    }

    fn evaluate(&self, exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        Ok(exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect::<Result<_, _>>()?)
    }

    /// For `drop_duplicates_within_watermark`, each chosen row's expiry: its event time (ms)
    /// plus the delay; a row without event time never expires.
    fn expiries(&self, input: &RecordBatch, chosen: &[u32]) -> Result<Vec<Option<i64>>> {
        let (Some(delay), Some(index)) = (self.spec.within_watermark_delay_ms, self.spec.event_time) else {
            return Ok(vec![None; chosen.len()]);
        };
        let column = input.column(index);
        let per_ms = ms_in_unit(1, column.data_type()).max(1);
        let values = arrow::compute::cast(column, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        Ok(chosen
            .iter()
            .map(|i| values.is_valid(*i as usize).then(|| values.value(*i as usize).div_euclid(per_ms) + delay))
            .collect())
    }

    /// Removes the keys `W_k` has passed, taken from the index: the work follows the keys that
    /// expire, not the keys in state.
    fn evict(&mut self) -> Result<()> {
        for key in self.expiring.take_through(self.watermarks.current_ms)? {
            self.store.remove(&key)?;
        }
        Ok(())
    }

    /// Registers when each of `keys` (row bytes, with its `expiry` for
    /// `drop_duplicates_within_watermark`) leaves the state.
    fn index_expiry(&mut self, keys: &[Box<[u8]>], expiries: &[Option<i64>]) -> Result<()> {
        if self.spec.within_watermark_delay_ms.is_some() {
            for (key, expiry) in keys.iter().zip(expiries) {
                if let Some(at) = expiry {
                    self.expiring.set(key, *at)?;
                }
            }
            return Ok(());
        }
        let Some(key_index) = self.spec.event_time_key else { return Ok(()) };
        let parser = self.keys.parser();
        let columns = self.keys.convert_rows(keys.iter().map(|k| parser.parse(k)))?;
        let time = &columns[key_index];
        let values = arrow::compute::cast(time, &DataType::Int64)?;
        for (key, t) in keys.iter().zip(values.as_primitive::<Int64Type>().iter()) {
            if let Some(t) = t {
                self.expiring.set(key, ceil_ms(t, time.data_type()))?;
            }
        }
        Ok(())
    }
}

impl BatchOperator for DedupState {
    fn apply(&mut self, inputs: Vec<RecordBatch>) -> Result<RecordBatch> {
        let [input] = <[_; 1]>::try_from(inputs).expect("a deduplication has one input");
        let input = self.drop_late(input)?;
        let keys = self.keys.convert_columns(&self.evaluate(&self.spec.keys, &input)?)?;
        let order = match &self.spec.order_by {
            Some(e) => {
                let column = self.evaluate(std::slice::from_ref(e), &input)?;
                let converter = RowConverter::new(vec![SortField::new(column[0].data_type().clone())])?;
                Some(converter.convert_columns(&column)?)
            }
            None => None,
        };
        // The first row of each new key: lowest ORDER BY value, then first to arrive.
        let mut first: HashMap<&[u8], usize> = HashMap::default();
        for (i, key) in keys.iter().enumerate() {
            if self.store.get(key.data())?.is_some() {
                continue;
            }
            first
                .entry(key.data())
                .and_modify(|best| {
                    if order.as_ref().is_some_and(|o| o.row(i) < o.row(*best)) {
                        *best = i;
                    }
                })
                .or_insert(i);
        }
        let mut chosen: Vec<u32> = first.values().map(|i| *i as u32).collect();
        chosen.sort_unstable();
        let expiries = self.expiries(&input, &chosen)?;
        let new_keys: Vec<Box<[u8]>> = chosen.iter().map(|i| keys.row(*i as usize).data().into()).collect();
        for (key, expiry) in new_keys.iter().zip(&expiries) {
            self.store.put(key, &expiry.map(i64::to_le_bytes).unwrap_or_default())?;
        }
        self.index_expiry(&new_keys, &expiries)?;
        let rows = take_record_batch(&input, &UInt32Array::from(chosen))?;
        self.evict()?;
        let mut columns = rows.columns().to_vec();
        if self.spec.output_schema.fields().len() > columns.len() {
            columns.push(Arc::new(UInt64Array::from(vec![1u64; rows.num_rows()])));
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.spec.output_schema), columns)?)
    }

    /// Rebuilds the expiry index from the stored keys (once per restore).
    fn restored(&mut self) -> Result<()> {
        self.expiring.clear()?;
        let stored: Vec<(Box<[u8]>, Option<i64>)> = self
            .store
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                Ok((k.into(), <[u8; 8]>::try_from(&*v).ok().map(i64::from_le_bytes)))
            })
            .collect::<Result<_>>()?;
        let (keys, expiries): (Vec<_>, Vec<_>) = stored.into_iter().unzip();
        self.index_expiry(&keys, &expiries)
    }

    fn begin_batch(&mut self, watermarks: BatchWatermarks) {
        self.watermarks = watermarks;
        self.dropped = 0;
    }

    /// Spark runs a no-data batch for a deduplication with a watermark upstream whenever the
    /// watermark advances (`StreamingDeduplicateExec.shouldRunAnotherBatch`).
    fn needs_no_data_batch(&self, next_ms: i64) -> bool {
        self.spec.watermark_upstream && next_ms > self.watermarks.current_ms
    }

    fn progress(&self) -> OperatorProgress {
        OperatorProgress {
            name: self.spec.name.clone(),
            operator_name: if self.spec.within_watermark_delay_ms.is_some() {
                "dedupeWithinWatermark"
            } else {
                "dedupe"
            },
            state: self.store.metrics(),
            rows_dropped_by_watermark: self.dropped,
        }
    }

    fn store_mut(&mut self) -> &mut StateStore {
        &mut self.store
    }
}
