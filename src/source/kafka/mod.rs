//! The Kafka source (`connector = 'kafka'`), the *direct* approach of Spark's Kafka source: no
//! receivers and no consumer group offsets; the offsets log is the only record of what was read,
//! and Kafka itself is the replayable store.
//!
//! - The topics are `topic` (a list) or `topic_pattern` (a regular expression on whole names,
//!   checked at every batch, so matching topics created later are read).
//! - `isolation_level` (default `read_committed`) is the consumer's: under `read_committed`,
//!   batches plan up to the last stable offset and records of aborted transactions are skipped.
//! - `commit_offsets_to_group = 'true'` commits each committed batch's end offsets to the
//!   consumer group `kafka.group.id`, for monitoring tools only.
//! - `backpressure = 'true'` adds an adaptive limit to `max_offsets_per_trigger` under a
//!   processing-time trigger (Spark Streaming's PID rate estimator), reported in progress as
//!   the metrics `backpressureRate` (rows per second) and `backpressureMaxOffsets`.
//! - `bad_data = 'dead_letter'` writes malformed records to `dead_letter_topic` (see
//!   `dead_letter.rs`) and goes on without them.
//!
//! - An offset is an offset per topic and partition ([`PartitionOffsets`], written as Spark's
//!   `KafkaSourceOffset` JSON `{"topic":{"0":23,"1":45}}`): the next offset to read.
//! - A new query resolves `starting_offsets` against the brokers when it starts (its first batch
//!   starts there). Each batch plans its end from the partitions' high watermarks, capped by
//!   `max_offsets_per_trigger` (spread by backlog, as Spark's `rateLimit`), and reads exactly
//!   `[start, end)` of every partition by assigning the partitions at their start offsets. A
//!   replayed batch reads the same ranges, so it gets the same records.
//! - Partitions that appear later (more partitions, or a listed topic created later) are read
//!   from offset 0, as Spark reads them from the earliest.
//! - Offsets that the brokers no longer hold when they are read (retention) or that go backwards
//!   (a recreated topic) stop the query with `fail_on_data_loss = true` (default); otherwise a
//!   warning names them and the source reads what is left.
//! - Broker requests and reads fail the query after `poll_timeout_ms` (default 30 s) without an
//!   answer or a record, with an error naming the brokers; a restart resumes from the
//!   checkpoint. The source does not wait for brokers indefinitely. Within that time, a broker
//!   that is down comes back and transient broker errors (a leader moving, a request timing
//!   out) are retried: the batch completes with the records it planned.
//! - Each partition read becomes one record batch, in topic then partition order.

mod client;
mod columns;
mod dead_letter;
mod offsets;
mod options;
pub mod produce;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde_json::Value;

pub use self::client::{KafkaRecord, PartitionRange};
pub use self::columns::KafkaColumns;
pub use self::offsets::PartitionOffsets;
pub use self::options::{
    KafkaBadData, KafkaSourceOptions, StartingOffsets, Subscription, CLIENT_OPTION_PREFIX, KAFKA_SOURCE_OPTIONS,
};
use super::backpressure::{BatchFeedback, RateEstimator};
use super::{Source, SourceData};
use crate::checkpoint::CheckpointLocation;
use crate::format::decode::DecodeOptions;
use crate::format::BadData;
use crate::{Result, SluiceError};
pub(crate) use client::KafkaClient;
use dead_letter::DeadLetters;

/// The Kafka source. See the module documentation.
#[derive(Debug)]
pub struct KafkaSource {
    name: String,
    options: KafkaSourceOptions,
    columns: KafkaColumns,
    decode: DecodeOptions,
    /// The consumer, created when the query starts.
    client: Option<Arc<KafkaClient>>,
    /// The producer of `bad_data = 'dead_letter'`, created when the query starts.
    dead_letters: Option<Arc<DeadLetters>>,
    /// The resolved starting offsets of a new query.
    initial: PartitionOffsets,
    /// Under `available-now`: the high watermarks when the trigger started.
    frozen: Option<PartitionOffsets>,
    /// Lifts `max_offsets_per_trigger` (`Trigger.Once`).
    read_all: bool,
    /// The adaptive limit of `backpressure`, and the trigger interval it aims at.
    estimator: RateEstimator,
    interval: Option<std::time::Duration>,
}

impl KafkaSource {
    /// A Kafka source `name` of the declared `schema` (its watermark metadata included);
    /// `decode` says how values are decoded (its `bad_data` is the option's).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] when the declared columns do not fit (see [`KafkaColumns::new`]).
    pub fn try_new(name: &str, schema: SchemaRef, options: KafkaSourceOptions, decode: DecodeOptions) -> Result<Self> {
        let columns = KafkaColumns::new(name, schema, options.format)?;
        let bad_data = match options.bad_data {
            KafkaBadData::Decode(bad_data) => bad_data,
            KafkaBadData::DeadLetter(_) => BadData::Drop,
        };
        let decode = DecodeOptions { bad_data, ..decode };
        Ok(Self {
            name: name.to_string(),
            options,
            columns,
            decode,
            client: None,
            dead_letters: None,
            initial: PartitionOffsets::default(),
            frozen: None,
            read_all: false,
            estimator: RateEstimator::new(),
            interval: None,
        })
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Source { source_name: self.name.clone(), message }
    }

    /// Runs `f` with the consumer on a blocking thread.
    async fn with_client<T: Send + 'static>(
        &self,
        f: impl FnOnce(&KafkaClient) -> std::result::Result<T, String> + Send + 'static,
    ) -> Result<T> {
        let client = self.client.clone().ok_or_else(|| self.error("used before the query started it".into()))?;
        let joined = tokio::task::spawn_blocking(move || f(&client)).await;
        joined.map_err(|e| self.error(format!("the Kafka client thread failed: {e}")))?.map_err(|e| self.error(e))
    }

    /// The low and high watermarks of every partition of the source's topics.
    async fn latest(&self) -> Result<BTreeMap<(String, i32), (i64, i64)>> {
        let subscription = self.options.subscription.clone();
        self.with_client(move |client| {
            let mut out = BTreeMap::new();
            for (topic, partitions) in client.partitions(&subscription)? {
                for partition in partitions {
                    out.insert((topic.clone(), partition), client.watermarks(&topic, partition)?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// `starting_offsets` resolved against the brokers now.
    async fn resolve_starting_offsets(&self) -> Result<PartitionOffsets> {
        let latest = self.latest().await?;
        let mut resolved = PartitionOffsets::default();
        for ((topic, partition), (low, high)) in &latest {
            let offset = match &self.options.starting_offsets {
                StartingOffsets::Earliest => *low,
                StartingOffsets::Latest => *high,
                StartingOffsets::Specific(given) => match given.get(topic, *partition) {
                    Some(-2) => *low,
                    Some(-1) => *high,
                    Some(offset) => offset,
                    None => {
                        return Err(self.error(format!(
                            "starting_offsets gives no offset for topic '{topic}' partition {partition}; give one for every \
                             partition of the listed topics (-2: earliest, -1: latest), as Spark requires"
                        )))
                    }
                },
            };
            resolved.set(topic, *partition, offset);
        }
        if let StartingOffsets::Specific(given) = &self.options.starting_offsets {
            if let Some((topic, partition, _)) =
                given.iter().find(|(t, p, _)| !latest.contains_key(&(t.to_string(), *p)))
            {
                return Err(self.error(format!(
                    "starting_offsets names topic '{topic}' partition {partition}, which the brokers do not have"
                )));
            }
        }
        Ok(resolved)
    }

    fn parse_offsets(&self, offset: &Value) -> Result<PartitionOffsets> {
        PartitionOffsets::from_json(offset).map_err(|e| SluiceError::Checkpoint {
            location: "offsets".into(),
            message: format!("kafka source '{}' offset {offset}: {e}", self.name),
        })
    }

    /// The offsets the next batch may take under `backpressure`, if it limits them now.
    fn backpressure_limit(&self) -> Option<u64> {
        self.options.backpressure.then(|| self.estimator.limit(self.interval)).flatten()
    }

    /// Offsets that are lost: an error with `fail_on_data_loss`, else a warning.
    fn data_loss(&self, message: String) -> Result<()> {
        if self.options.fail_on_data_loss {
            return Err(self.error(format!(
                "{message}. Some data may have been lost; set fail_on_data_loss = 'false' to skip it with a warning"
            )));
        }
        tracing::warn!(source = %self.name, "{message}; skipped (fail_on_data_loss = false)");
        Ok(())
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        format!("KafkaV2[{}]", self.options.subscription.describe())
    }

    fn initial_offset(&self) -> Value {
        self.initial.to_json()
    }

    async fn restore(&mut self, _location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        if self.client.is_none() {
            // Spark's group id for the source's consumer: unique, so that no other consumer
            // shares or changes it.
            let group_id = format!("sluice-kafka-source-{}-{}", self.name, uuid::Uuid::new_v4());
            let client = KafkaClient::new(&self.options, &group_id).map_err(|e| self.error(e))?;
            self.client = Some(Arc::new(client));
        }
        if let (KafkaBadData::DeadLetter(topic), None) = (&self.options.bad_data, &self.dead_letters) {
            let mut config = rdkafka::ClientConfig::new();
            config.set("bootstrap.servers", &self.options.bootstrap_servers);
            for (key, value) in &self.options.client_settings {
                config.set(key, value);
            }
            self.dead_letters = Some(Arc::new(DeadLetters::new(&config, topic).map_err(|e| self.error(e))?));
        }
        if through_batch.is_none() {
            self.initial = self.resolve_starting_offsets().await?;
        }
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        let mut frozen = PartitionOffsets::default();
        for ((topic, partition), (_, high)) in self.latest().await? {
            frozen.set(&topic, partition, high);
        }
        self.frozen = Some(frozen);
        Ok(())
    }

    fn read_all_available(&mut self) {
        self.read_all = true;
    }

    async fn plan_batch(&mut self, _location: &CheckpointLocation, _batch_id: u64, start: &Value) -> Result<Value> {
        let start = self.parse_offsets(start)?;
        let mut end = start.clone();
        for ((topic, partition), (_, high)) in self.latest().await? {
            // Under available-now, partitions not seen when the trigger started stay put.
            let high = match &self.frozen {
                Some(frozen) => frozen
                    .get(&topic, partition)
                    .map_or_else(|| start.get(&topic, partition).unwrap_or(0), |f| f.min(high)),
                None => high,
            };
            match start.get(&topic, partition) {
                Some(from) if high < from => {
                    self.data_loss(format!(
                        "topic '{topic}' partition {partition}: the latest offset went back from {from} to {high} (was the \
                         topic recreated?)"
                    ))?;
                }
                Some(_) => end.set(&topic, partition, high),
                // A new partition, read from offset 0; left out until it has records.
                None if high > 0 => end.set(&topic, partition, high),
                None => end.remove(&topic, partition),
            }
        }
        let adaptive = self.backpressure_limit();
        let limit = [self.options.max_offsets_per_trigger, adaptive].into_iter().flatten().min();
        if let (Some(limit), false) = (limit, self.read_all) {
            end = PartitionOffsets::rate_limited(&start, &end, limit);
        }
        Ok(end.to_json())
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (self.parse_offsets(start)?, self.parse_offsets(end)?);
        let mut ranges = Vec::new();
        for (topic, partition, until) in end.iter() {
            let from = start.get(topic, partition).unwrap_or(0);
            if until > from {
                ranges.push(PartitionRange { topic: topic.to_string(), partition, start: from, end: until });
            }
        }
        // Offsets deleted since they were planned are data loss, found before reading.
        let to_check = ranges.clone();
        let lows = self
            .with_client(move |client| {
                to_check
                    .iter()
                    .map(|r| client.watermarks(&r.topic, r.partition).map(|(low, _)| low))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .await?;
        for (range, low) in ranges.iter_mut().zip(lows) {
            if range.start < low {
                self.data_loss(format!(
                    "topic '{}' partition {}: offsets {}..{} were deleted before they were read (the earliest offset held is \
                     {low})",
                    range.topic,
                    range.partition,
                    range.start,
                    low.min(range.end)
                ))?;
                range.start = low.min(range.end);
            }
        }
        let to_read = ranges.clone();
        let mut records = self.with_client(move |client| client.read(&to_read)).await?;
        let mut data = SourceData::default();
        for range in &ranges {
            let records = records.remove(&(range.topic.clone(), range.partition)).unwrap_or_default();
            let rows = self.columns.rows(&self.name, &range.topic, range.partition, &records, &self.decode)?;
            data.dropped_records += rows.dropped.len() as u64;
            data.batches.extend(rows.batch);
            if let (Some(dead_letters), false) = (&self.dead_letters, rows.dropped.is_empty()) {
                let (dead_letters, range) = (dead_letters.clone(), range.clone());
                let joined = tokio::task::spawn_blocking(move || {
                    let bad: Vec<&KafkaRecord> =
                        records.iter().filter(|r| rows.dropped.binary_search(&r.offset).is_ok()).collect();
                    dead_letters.write(&range.topic, range.partition, &bad)
                })
                .await;
                joined
                    .map_err(|e| self.error(format!("the dead letter thread failed: {e}")))?
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(data)
    }

    fn batch_finished(&mut self, feedback: &BatchFeedback) {
        if self.options.backpressure {
            self.estimator.update(feedback);
            self.interval = feedback.interval;
        }
    }

    fn progress_metrics(&self) -> BTreeMap<String, String> {
        let mut metrics = BTreeMap::new();
        if let (Some(rate), Some(limit)) = (self.estimator.rate(), self.backpressure_limit()) {
            metrics.insert("backpressureRate".to_string(), format!("{rate:.1}"));
            metrics.insert("backpressureMaxOffsets".to_string(), limit.to_string());
        }
        metrics
    }

    /// With `commit_offsets_to_group`, commits `end` to the consumer group for monitoring; a
    /// failure is only a warning (the checkpoint, not the group, records what was read).
    async fn commit(&mut self, _location: &CheckpointLocation, batch_id: u64, end: &Value) -> Result<()> {
        if !self.options.commit_offsets_to_group {
            return Ok(());
        }
        let end = self.parse_offsets(end)?;
        let committed = self
            .with_client(move |client| {
                let offsets: Vec<(&str, i32, i64)> = end.iter().collect();
                client.commit(&offsets)
            })
            .await;
        if let Err(e) = committed {
            tracing::warn!(source = %self.name, batch_id, "cannot commit the offsets to the consumer group: {e}");
        }
        Ok(())
    }
}
