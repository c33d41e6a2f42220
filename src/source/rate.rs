//! The rate source (`connector = 'rate'`): rows `(timestamp, value)` generated at a fixed rate, as
//! Spark's `RateStreamProvider` / `RateStreamMicroBatchStream` generate them, for tests and
//! benchmarks.
//!
//! An offset is the number of whole seconds elapsed since the source's start time, which the first
//! run records in the checkpoint (`sources/<name>/0`, as Spark records it in its source metadata
//! log). Every row derives from its batch's offsets: the values of `[start, end)` are
//! `value_at_second(start)..value_at_second(end)` ([`value_at_second`], ramp-up included), and
//! each value's timestamp is interpolated between the start time plus `start` and plus `end`
//! seconds. A replayed batch therefore gives identical rows, so the source is replayable.
//!
//! The values of a batch are dealt to `num_partitions` partitions round robin (partition `p` gets
//! `rangeStart + p`, `rangeStart + p + num_partitions`, ...); each partition with rows is one
//! record batch, in partition order, as Spark's partitions are.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Source, SourceData};
use crate::checkpoint::{BatchLog, CheckpointLocation, ReadEntry};
use crate::{Result, SluiceError};

/// The options of the rate source, validated. Spark's names are in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSourceOptions {
    /// `rows_per_second` (`rowsPerSecond`): rows generated per second once ramped up; default 1,
    /// must be positive.
    pub rows_per_second: i64,
    /// `ramp_up_time` (`rampUpTime`): seconds over which the rate grows to `rows_per_second`;
    /// default 0. Spark truncates finer units to whole seconds; sluice refuses them.
    pub ramp_up_time_s: i64,
    /// `num_partitions` (`numPartitions`): how many partitions the values of a batch are dealt to;
    /// default the number of cores (Spark's default parallelism in local mode).
    pub num_partitions: usize,
}

impl RateSourceOptions {
    /// The options of table `table` from its `WITH (...)` options (keys lower-cased; others are
    /// ignored here).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option for a value that is not a positive integer
    /// (`rows_per_second`, `num_partitions`, at most 2^31 - 1 partitions as in Spark) or a
    /// non-negative whole number of seconds (`ramp_up_time`, e.g. `'10s'`, `'2 minutes'`, or a
    /// bare number of seconds as Spark reads it), and when the ramp-up time is so long that the
    /// values it generates would overflow a BIGINT (Spark's "Integer overflow" check).
    pub fn parse(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let bad = |option: &str, value: &str, expected: &str| {
            SluiceError::sql(format!("table '{table}': option {option} must be {expected}, got '{value}'"))
        };
        let positive = |option: &str, max: i64| -> Result<Option<i64>> {
            let Some(value) = options.get(option) else { return Ok(None) };
            let expected = format!("a positive integer of at most {max}");
            match value.trim().parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(bad(option, value, &expected)),
            }
        };
        let rows_per_second = positive("rows_per_second", MAX_ROWS_PER_BATCH)?.unwrap_or(1);
        let num_partitions = match positive("num_partitions", i64::from(i32::MAX))? {
            Some(n) => usize::try_from(n).map_err(|_| bad("num_partitions", &n.to_string(), "smaller"))?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let ramp_up_time_s = match options.get("ramp_up_time") {
            None => 0,
            Some(value) => parse_whole_seconds(value).ok_or_else(|| {
                bad("ramp_up_time", value, "a whole number of seconds, not negative, such as '10s' or '2 minutes'")
            })?,
        };
        let max_seconds = i64::MAX / rows_per_second;
        if ramp_up_time_s > max_seconds {
            return Err(SluiceError::sql(format!(
                "table '{table}': option ramp_up_time is {ramp_up_time_s} s, but with rows_per_second = \
                 {rows_per_second} the values overflow a BIGINT after {max_seconds} s; shorten ramp_up_time"
            )));
        }
        Ok(Self { rows_per_second, ramp_up_time_s, num_partitions })
    }
}

/// The most rows one micro-batch of a rate source holds (1.6 GB of columns). When more have come
/// due (a query paused, or restarted after a stop, a long trigger interval), the batch ends at
/// an earlier second and the next batches catch up, instead of building a batch that cannot fit
/// in memory; `rows_per_second` is at most this, so that one second's rows fit in a batch.
pub const MAX_ROWS_PER_BATCH: i64 = 100_000_000;

/// A duration as whole seconds: a bare number is seconds (Spark's `timeStringAsSec`), otherwise a
/// unit is given (`10s`, `2 minutes`, `1 hour`, parsed by arrow's interval parser). `None` for
/// anything else, a negative duration, months or years, or a fraction of a second.
fn parse_whole_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return (seconds >= 0).then_some(seconds);
    }
    let interval = arrow::compute::kernels::cast_utils::parse_interval_month_day_nano(text).ok()?;
    if interval.months != 0 {
        return None;
    }
    let ns = i64::from(interval.days).checked_mul(86_400_000_000_000)?.checked_add(interval.nanoseconds)?;
    (ns >= 0 && ns % 1_000_000_000 == 0).then_some(ns / 1_000_000_000)
}

/// The number of values generated in the first `seconds` seconds: Spark's
/// `RateStreamProvider.valueAtSecond`. During the ramp-up the rate grows by
/// `rows_per_second / (ramp_up_time_s + 1)` (integer division) each second, from 0; after it, it
/// is `rows_per_second`. E.g. 10 rows/s with a 4 s ramp-up: 0, 2, 6, 12, 20, 30, 40 at seconds
/// 0 to 6.
///
/// # Errors
/// [`SluiceError::Source`] (for source `source`) when the value overflows a BIGINT, which Spark
/// also refuses ("Integer overflow. Max offset with ... rowsPerSecond is ...").
pub fn value_at_second(source: &str, seconds: i64, rows_per_second: i64, ramp_up_time_s: i64) -> Result<i64> {
    let overflow = || SluiceError::Source {
        source_name: source.to_string(),
        message: format!(
            "the value at second {seconds} overflows a BIGINT (at most {} s with rows_per_second = {rows_per_second}); \
             lower rows_per_second or restart the query with a new checkpoint location",
            i64::MAX / rows_per_second
        ),
    };
    let speed_delta_per_second = rows_per_second / (ramp_up_time_s + 1);
    if seconds <= ramp_up_time_s {
        // (speed_delta * seconds) * (seconds + 1) / 2, halving the even factor first, as Spark does.
        let value = if seconds % 2 == 1 {
            ((seconds + 1) / 2).checked_mul(speed_delta_per_second).and_then(|v| v.checked_mul(seconds))
        } else {
            (seconds / 2).checked_mul(speed_delta_per_second).and_then(|v| v.checked_mul(seconds + 1))
        };
        return value.ok_or_else(overflow);
    }
    let ramp_up = value_at_second(source, ramp_up_time_s, rows_per_second, ramp_up_time_s)?;
    (seconds - ramp_up_time_s).checked_mul(rows_per_second).and_then(|v| v.checked_add(ramp_up)).ok_or_else(overflow)
}

/// The schema of the rate source, Spark's `RateStreamProvider.SCHEMA`: `timestamp TIMESTAMP`
/// (nanoseconds, UTC, to the millisecond as in Spark), `value BIGINT`.
pub fn rate_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("value", DataType::Int64, true),
    ]))
}

/// What the rate source records in the checkpoint on a query's first run.
#[derive(Debug, Serialize, Deserialize)]
struct RateStart {
    /// The source's start time, ms since the epoch: offset 0.
    start_time_ms: i64,
}

/// The rate source. See the module documentation.
#[derive(Debug)]
pub struct RateSource {
    name: String,
    schema: SchemaRef,
    options: RateSourceOptions,
    /// The start time, ms since the epoch, once [`Source::restore`] read or recorded it.
    start_time_ms: Option<i64>,
    /// The latest time seen, ms since the epoch: the clock never goes back (Spark's `lastTimeMs`).
    last_time_ms: i64,
    /// Under `available-now`: the last offset later batches may reach.
    frozen: Option<i64>,
}

impl RateSource {
    /// A rate source `name` with `options`; `schema` is [`rate_schema`], perhaps with the
    /// watermark metadata of a declared `WATERMARK FOR timestamp`.
    pub fn new(name: &str, schema: SchemaRef, options: RateSourceOptions) -> Self {
        Self { name: name.to_string(), schema, options, start_time_ms: None, last_time_ms: i64::MIN, frozen: None }
    }

    fn log(&self, location: &CheckpointLocation) -> BatchLog {
        BatchLog::new(location.clone(), &format!("sources/{}", self.name))
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Source { source_name: self.name.clone(), message }
    }

    fn started(&self) -> Result<i64> {
        self.start_time_ms.ok_or_else(|| self.error("read before the query restored the source's start time".into()))
    }

    /// Seconds elapsed since the start time, never less than before.
    fn elapsed_seconds(&mut self) -> Result<i64> {
        let start = self.started()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.last_time_ms = self.last_time_ms.max(now);
        Ok(self.last_time_ms.saturating_sub(start).max(0) / 1000)
    }

    fn as_seconds(&self, offset: &Value) -> Result<i64> {
        offset.as_i64().filter(|s| *s >= 0).ok_or_else(|| SluiceError::Checkpoint {
            location: "offsets".into(),
            message: format!("rate source '{}' offset {offset} is not a number of seconds", self.name),
        })
    }

    /// The rows of `[start, end)` seconds, one record batch per partition with rows: Spark's
    /// `planInputPartitions` and `RateStreamMicroBatchPartitionReader`.
    fn rows(&self, start: i64, end: i64) -> Result<Vec<RecordBatch>> {
        let RateSourceOptions { rows_per_second, ramp_up_time_s, num_partitions } = self.options;
        let range_start = value_at_second(&self.name, start, rows_per_second, ramp_up_time_s)?;
        let range_end = value_at_second(&self.name, end, rows_per_second, ramp_up_time_s)?;
        if range_start >= range_end {
            return Ok(Vec::new());
        }
        let overflow = || self.error(format!("the timestamp of second {end} after the start time is after year 2262"));
        let start_time_ms = self.started()?;
        let at_ms = |seconds: i64| seconds.checked_mul(1000).and_then(|ms| ms.checked_add(start_time_ms));
        let local_start_ms = at_ms(start).ok_or_else(overflow)?;
        // No timestamp of the batch is after the end's, which must fit in nanoseconds.
        at_ms(end).and_then(|ms| ms.checked_mul(1_000_000)).ok_or_else(overflow)?;
        let relative_ms_per_value = ((end - start) * 1000) as f64 / (range_end - range_start) as f64;
        let count = range_end - range_start;
        let partitions = i64::try_from(num_partitions).unwrap_or(i64::MAX).min(count);
        (0..partitions)
            .map(|p| {
                let values: Vec<i64> = (range_start + p..range_end).step_by(num_partitions).collect();
                // Spark's Math.round rounds halves up; the products here are never negative.
                let timestamps: Vec<i64> = values
                    .iter()
                    .map(|v| {
                        (((v - range_start) as f64 * relative_ms_per_value).round() as i64 + local_start_ms) * 1_000_000
                    })
                    .collect();
                let columns = vec![
                    Arc::new(TimestampNanosecondArray::from(timestamps)) as _,
                    Arc::new(Int64Array::from(values)) as _,
                ];
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            })
            .collect()
    }
}

#[async_trait]
impl Source for RateSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_offset(&self) -> Value {
        Value::from(0)
    }

    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        let log = self.log(location);
        let start = match (log.read_entry::<RateStart>(0).await?, through_batch) {
            (ReadEntry::Valid(start), _) => start,
            (read, None) => {
                if let ReadEntry::Torn(why) = read {
                    tracing::warn!(file = %log.describe(0), "the rate source's start time is torn ({why}): written again");
                }
                let start_time_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                let start = RateStart { start_time_ms };
                log.write(0, &start).await?;
                start
            }
            (read, Some(_)) => {
                let what = match read {
                    ReadEntry::Torn(why) => format!("damaged ({why})"),
                    _ => "missing".to_string(),
                };
                return Err(log.error(
                    0,
                    format!(
                        "the rate source's start time is {what}, so its batches cannot be replayed with the same rows; \
                         restore the file or use a new checkpoint location"
                    ),
                ));
            }
        };
        self.start_time_ms = Some(start.start_time_ms);
        self.last_time_ms = start.start_time_ms;
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.frozen = Some(self.elapsed_seconds()?);
        Ok(())
    }

    async fn plan_batch(&mut self, _location: &CheckpointLocation, _batch_id: u64, start: &Value) -> Result<Value> {
        let start = self.as_seconds(start)?;
        let now = self.elapsed_seconds()?;
        let mut end = self.frozen.map_or(now, |f| f.min(now)).max(start);
        let RateSourceOptions { rows_per_second, ramp_up_time_s, .. } = self.options;
        let max_seconds = i64::MAX / rows_per_second;
        if end > max_seconds {
            return Err(self.error(format!(
                "after {end} s the values overflow a BIGINT (at most {max_seconds} s with rows_per_second = \
                 {rows_per_second}); restart the query with a new checkpoint location"
            )));
        }
        // One second's rows always fit (rows_per_second <= MAX_ROWS_PER_BATCH).
        let first = value_at_second(&self.name, start, rows_per_second, ramp_up_time_s)?;
        while end > start + 1
            && value_at_second(&self.name, end, rows_per_second, ramp_up_time_s)? - first > MAX_ROWS_PER_BATCH
        {
            end = start + (end - start) / 2;
        }
        Ok(Value::from(end))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (self.as_seconds(start)?, self.as_seconds(end)?);
        if end < start {
            return Err(self.error(format!("offsets {start}..{end} go backwards")));
        }
        // After a restart the clock resumes at least at the replayed end (Spark's "Fix lastTimeMs").
        self.last_time_ms = self.last_time_ms.max(end.saturating_mul(1000).saturating_add(self.started()?));
        Ok(SourceData { batches: self.rows(start, end)?, dropped_records: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampNanosecondType};
    use serde_json::json;

    fn options(pairs: &[(&str, &str)]) -> Result<RateSourceOptions> {
        RateSourceOptions::parse("r", &pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn value_at_second_follows_sparks_ramp_up_table() {
        // Spark's comment: rampUpTimeSeconds = 4, rowsPerSecond = 10 gives 0 2 6 12 20 30 40.
        let values: Vec<i64> = (0..=6).map(|s| value_at_second("r", s, 10, 4).unwrap()).collect();
        assert_eq!(values, vec![0, 2, 6, 12, 20, 30, 40]);
        assert_eq!(value_at_second("r", 7, 3, 0).unwrap(), 21);
        let err = value_at_second("r", i64::MAX / 2 + 1, 2, 0).unwrap_err().to_string();
        assert!(err.contains("overflows a BIGINT"), "{err}");
    }

    #[test]
    fn options_default_as_spark_and_bad_values_name_the_option() {
        let defaults = options(&[]).unwrap();
        assert_eq!((defaults.rows_per_second, defaults.ramp_up_time_s), (1, 0));
        assert!(defaults.num_partitions >= 1);
        assert_eq!(options(&[("ramp_up_time", "5")]).unwrap().ramp_up_time_s, 5);
        assert_eq!(options(&[("ramp_up_time", "2m")]).unwrap().ramp_up_time_s, 120);
        assert_eq!(options(&[("ramp_up_time", "10 seconds")]).unwrap().ramp_up_time_s, 10);
        assert_eq!(options(&[("ramp_up_time", "0s")]).unwrap().ramp_up_time_s, 0);
        for (option, value) in [
            ("rows_per_second", "0"),
            ("rows_per_second", "-3"),
            ("rows_per_second", "ten"),
            ("rows_per_second", "9223372036854775808"),
            ("num_partitions", "0"),
            ("num_partitions", "2147483648"),
            ("ramp_up_time", "1500ms"),
            ("ramp_up_time", "-1"),
            ("ramp_up_time", "1 month"),
            ("ramp_up_time", "soon"),
        ] {
            let err = options(&[(option, value)]).unwrap_err().to_string();
            assert!(err.contains(option) && err.contains(value), "{option} = {value}: {err}");
        }
        let err = options(&[("rows_per_second", "100000000"), ("ramp_up_time", "100000000000")]).unwrap_err();
        assert!(err.to_string().contains("overflow a BIGINT after 92233720368 s"), "{err}");
        let err = options(&[("rows_per_second", "9223372036854775807")]).unwrap_err().to_string();
        assert!(err.contains("at most 100000000"), "{err}");
    }

    /// A started rate source with `rows_per_second`, `ramp_up_time` seconds, `num_partitions`.
    async fn rate(
        rows_per_second: i64,
        ramp_up_time_s: i64,
        num_partitions: usize,
    ) -> (RateSource, CheckpointLocation) {
        let options = RateSourceOptions { rows_per_second, ramp_up_time_s, num_partitions };
        let mut source = RateSource::new("rates", rate_schema(), options);
        let location = CheckpointLocation::open("memory://").unwrap();
        source.restore(&location, None).await.unwrap();
        (source, location)
    }

    /// Per record batch (partition), the rows as `(value, ms after the source's start time)`.
    async fn read(source: &mut RateSource, start: i64, end: i64) -> Vec<Vec<(i64, i64)>> {
        let start_ms = source.start_time_ms.unwrap();
        let data = source.read(&json!(start), &json!(end)).await.unwrap();
        data.batches.iter().map(|b| pairs(b).into_iter().map(|(ts_ms, v)| (v, ts_ms - start_ms)).collect()).collect()
    }

    /// The rows as `(timestamp ms since the epoch, value)`.
    fn pairs(batch: &RecordBatch) -> Vec<(i64, i64)> {
        let ts = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let values = batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(ts.null_count() + values.null_count(), 0);
        ts.values().iter().zip(values.values()).map(|(t, v)| (t / 1_000_000, *v)).collect()
    }

    #[tokio::test]
    async fn rows_values_and_timestamps_follow_sparks_formulas_during_and_after_the_ramp_up() {
        // rowsPerSecond = 10, rampUpTime = 4 s: valueAtSecond(0..=6) = 0 2 6 12 20 30 40 (Spark's
        // comment in RateStreamProvider; speedDeltaPerSecond = 10 / (4 + 1) = 2).
        let (mut source, _) = rate(10, 4, 2).await;

        // Offsets [0, 2): values [0, 6), 2000 ms / 6 values = 333.33 ms per value, from the start
        // time. Partition p gets rangeStart + p + 2k; a timestamp is start + round((v - 0) * 333.33):
        // v=0 -> 0, 1 -> 333, 2 -> 667, 3 -> 1000, 4 -> 1333, 5 -> 1667.
        assert_eq!(
            read(&mut source, 0, 2).await,
            vec![vec![(0, 0), (2, 667), (4, 1333)], vec![(1, 333), (3, 1000), (5, 1667)]]
        );

        // Offsets [3, 5) straddle the end of the ramp-up: values [12, 30), 2000 ms / 18 values =
        // 111.11 ms per value from start + 3000 ms: v=13 -> 3111, v=21 -> 3000 + round(1000.0) = 4000,
        // v=29 -> 3000 + round(1888.9) = 4889.
        let batches = read(&mut source, 3, 5).await;
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].iter().map(|r| r.0).collect::<Vec<_>>(), vec![12, 14, 16, 18, 20, 22, 24, 26, 28]);
        assert_eq!(batches[1].iter().map(|r| r.0).collect::<Vec<_>>(), vec![13, 15, 17, 19, 21, 23, 25, 27, 29]);
        let by_value: BTreeMap<i64, i64> = batches.into_iter().flatten().collect();
        assert_eq!((by_value[&12], by_value[&13], by_value[&21], by_value[&29]), (3000, 3111, 4000, 4889));

        // After the ramp-up, 10 rows a second, 100 ms apart: [6, 7) is values [40, 50) from 6000 ms.
        let batches = read(&mut source, 6, 7).await;
        let rows: Vec<(i64, i64)> = batches.into_iter().flatten().collect();
        assert_eq!(rows.len(), 10);
        assert!(rows.iter().all(|(v, ms)| *ms == 6000 + (v - 40) * 100), "{rows:?}");

        // No time, no rows; and during the first ramp-up second nothing is generated (speed 0).
        assert!(read(&mut source, 5, 5).await.is_empty());
        let (mut slow, _) = rate(1, 3, 1).await;
        // speedDeltaPerSecond = 1 / 4 = 0: Spark's integer division generates nothing during the
        // ramp-up (valueAtSecond(0..=3) = 0), then 1 row a second: valueAtSecond(5) = 0 + 2 * 1 = 2.
        // [3, 5) is values [0, 2), 1000 ms apart from start + 3000 ms.
        assert!(read(&mut slow, 0, 3).await.is_empty());
        assert_eq!(read(&mut slow, 3, 5).await, vec![vec![(0, 3000), (1, 4000)]]);
    }

    #[tokio::test]
    async fn more_partitions_than_values_give_one_batch_per_value() {
        let (mut source, _) = rate(3, 0, 8).await;
        // [0, 1): values 0, 1, 2, 333.33 ms apart; partitions 3..8 have no rows.
        assert_eq!(read(&mut source, 0, 1).await, vec![vec![(0, 0)], vec![(1, 333)], vec![(2, 667)]]);
    }

    /// Ten seconds of rows due at the highest rate are more than a batch holds: each batch takes
    /// one second of them and the next batches catch up, instead of building them all at once.
    #[tokio::test]
    async fn a_batch_holds_at_most_max_rows_and_the_next_ones_catch_up() {
        let (mut source, location) = rate(MAX_ROWS_PER_BATCH, 0, 1).await;
        source.start_time_ms = source.start_time_ms.map(|ms| ms - 10_000);
        let end = source.plan_batch(&location, 0, &json!(0)).await.unwrap();
        assert_eq!(end, json!(1));
        assert_eq!(source.plan_batch(&location, 1, &end).await.unwrap(), json!(2));
    }

    #[tokio::test]
    async fn offsets_past_the_bigint_range_are_an_error_not_a_wrap() {
        // 4 s is the most at this rate: 4 * (2^63 - 1) / 4 fits, 5 times it does not.
        let (mut source, location) = rate(i64::MAX / 4, 0, 1).await;
        let end = source.plan_batch(&location, 0, &json!(0)).await.unwrap();
        assert!(end.as_i64().unwrap() <= 4, "a fresh source has run less than 4 s: {end}");
        let err = source.read(&json!(3), &json!(5)).await.unwrap_err().to_string();
        assert!(err.contains("source 'rates'") && err.contains("overflows a BIGINT"), "{err}");
        // Reading [3, 5) (a replay) moved the source's clock to 5 s, past the limit: planning refuses.
        let err = source.plan_batch(&location, 1, &end).await.unwrap_err().to_string();
        assert!(err.contains("after 5 s the values overflow a BIGINT (at most 4 s"), "{err}");
    }
}
