//! The blocking side of the Kafka source: one librdkafka consumer that lists partitions and their
//! offsets and reads exact offset ranges by assigning partitions (no consumer group membership,
//! no committed offsets). Every call blocks; the source runs them on tokio's blocking threads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::options::{KafkaSourceOptions, Subscription};

/// How long to wait before repeating a request that met a transient error.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Whether a broker error is transient: the same request may succeed a moment later (a leader
/// moving or not elected yet, a request timing out, a connection lost or not made yet).
fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::ReplicaNotAvailable
            | RDKafkaErrorCode::KafkaStorageError
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::OffsetNotAvailable
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
    )
}

/// One message as read: what the source's columns are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The message's offset in its partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// The message's timestamp, ms since the epoch, if it has one.
    pub timestamp_ms: Option<i64>,
}

/// The offsets `[start, end)` of one partition to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset to read.
    pub start: i64,
    /// The offset after the last to read.
    pub end: i64,
}

/// The consumer and how long its requests may take.
pub struct KafkaClient {
    consumer: BaseConsumer,
    servers: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient").field("servers", &self.servers).field("timeout", &self.timeout).finish()
    }
}

impl KafkaClient {
    /// A consumer for `options`, in consumer group `group_id` (used for nothing but the
    /// brokers' bookkeeping). It connects lazily.
    ///
    /// # Errors
    /// A message when librdkafka cannot create the client.
    pub fn new(options: &KafkaSourceOptions, group_id: &str) -> Result<Self, String> {
        Self::with_config(&options.client_config(group_id), &options.bootstrap_servers, options.poll_timeout)
    }

    /// A consumer of `config` (which must not commit offsets by itself) for the brokers at
    /// `servers`, whose requests fail after `timeout`. It connects lazily.
    ///
    /// # Errors
    /// A message when librdkafka cannot create the client.
    pub fn with_config(config: &ClientConfig, servers: &str, timeout: Duration) -> Result<Self, String> {
        let consumer: BaseConsumer = config.create().map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        Ok(Self { consumer, servers: servers.to_string(), timeout })
    }

    fn unreachable(&self, what: &str, e: &KafkaError) -> String {
        format!(
            "cannot {what} from the Kafka brokers at {} within poll_timeout_ms = {} ({e}); check bootstrap_servers and \
             that the brokers are running",
            self.servers,
            self.timeout.as_millis()
        )
    }

    /// The partitions of each topic of `subscription` that exists (a topic that does not exist
    /// yet has none).
    ///
    /// Transient errors (for the request, or for a topic such as "leader not available") are
    /// retried until the timeout.
    ///
    /// # Errors
    /// A message naming the brokers when they cannot be reached within the timeout, or naming
    /// the topic when the brokers report an error other than "unknown topic" for it (a transient
    /// one still after the timeout).
    pub fn partitions(&self, subscription: &Subscription) -> Result<BTreeMap<String, Vec<i32>>, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let metadata =
                self.retrying("fetch the topics", deadline, |timeout| self.consumer.fetch_metadata(None, timeout))?;
            let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
            let selected = subscription.selects(&names)?;
            let mut partitions = BTreeMap::new();
            let mut transient_error = None;
            for (topic, _) in metadata.topics().iter().zip(selected).filter(|(_, s)| *s) {
                match topic.error().map(RDKafkaErrorCode::from) {
                    None => {
                        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
                        ids.sort_unstable();
                        partitions.insert(topic.name().to_string(), ids);
                    }
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {}
                    Some(code) if is_transient(code) => transient_error = Some((topic.name().to_string(), code)),
                    Some(code) => {
                        return Err(format!("the brokers report an error for topic '{}': {code}", topic.name()))
                    }
                }
            }
            match transient_error {
                None => return Ok(partitions),
                Some((topic, code)) if Instant::now() >= deadline => {
                    return Err(format!(
                        "the Kafka brokers at {} report an error for topic '{topic}' for poll_timeout_ms = {}: {code}",
                        self.servers,
                        self.timeout.as_millis()
                    ))
                }
                Some((topic, code)) => {
                    tracing::debug!(%topic, %code, "transient topic error in the brokers' metadata; retrying");
                    std::thread::sleep(RETRY_BACKOFF);
                }
            }
        }
    }

    /// The low and high watermarks of a partition: its earliest offset held and the offset the
    /// next message will get.
    ///
    /// Transient errors are retried until the timeout.
    ///
    /// # Errors
    /// A message naming the brokers when they cannot be reached within the timeout.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), String> {
        let deadline = Instant::now() + self.timeout;
        self.retrying(&format!("fetch the offsets of topic '{topic}' partition {partition}"), deadline, |timeout| {
            self.consumer.fetch_watermarks(topic, partition, timeout)
        })
    }

    /// Runs `request` (given the time left) until it succeeds, fails with an error that is not
    /// transient, or `deadline` passes: librdkafka answers a transient broker error (a leader
    /// moving, a request timing out, a connection lost) to `ListOffsets` or `Metadata` without
    /// retrying it, where a moment later the request succeeds.
    fn retrying<T>(
        &self,
        what: &str,
        deadline: Instant,
        mut request: impl FnMut(Duration) -> Result<T, KafkaError>,
    ) -> Result<T, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match request(left) {
                Ok(value) => return Ok(value),
                Err(e) if !left.is_zero() && e.rdkafka_error_code().is_some_and(is_transient) => {
                    tracing::debug!("cannot {what} ({e}); retrying");
                    std::thread::sleep(RETRY_BACKOFF.min(left));
                }
                Err(e) => return Err(self.unreachable(what, &e)),
            }
        }
    }

    /// Commits `offsets` (topic, partition, next offset) to the consumer's group.
    ///
    /// # Errors
    /// A message naming the group coordinator's error.
    pub fn commit(&self, offsets: &[(&str, i32, i64)]) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset)).map_err(|e| e.to_string())?;
        }
        self.consumer.commit(&list, CommitMode::Sync).map_err(|e| e.to_string())
    }

    /// The messages of every range, by (topic, partition), in offset order. A range is done when
    /// a message at or past its end was received or the consumer's position reached its end,
    /// so offsets without a message (transaction markers, compacted records) are skipped.
    ///
    /// # Errors
    /// A message naming the partitions still incomplete when no message arrives for the
    /// timeout, or the Kafka error that stopped reading (`OffsetOutOfRange` when the range was
    /// deleted meanwhile).
    pub fn read(&self, ranges: &[PartitionRange]) -> Result<BTreeMap<(String, i32), Vec<KafkaRecord>>, String> {
        let mut out: BTreeMap<(String, i32), Vec<KafkaRecord>> = BTreeMap::new();
        // (topic, partition) -> (next offset wanted, end)
        let mut remaining: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| r.start < r.end) {
            assignment
                .add_partition_offset(&r.topic, r.partition, Offset::Offset(r.start))
                .map_err(|e| format!("cannot assign topic '{}' partition {}: {e}", r.topic, r.partition))?;
            remaining.insert((r.topic.clone(), r.partition), (r.start, r.end));
            out.insert((r.topic.clone(), r.partition), Vec::new());
        }
        if remaining.is_empty() {
            return Ok(out);
        }
        self.consumer.assign(&assignment).map_err(|e| format!("cannot assign the partitions to read: {e}"))?;
        let result = self.poll_ranges(&mut remaining, &mut out);
        // Stops fetching; the next read assigns its own partitions.
        let _ = self.consumer.unassign();
        result.map(|()| out)
    }

    fn poll_ranges(
        &self,
        remaining: &mut BTreeMap<(String, i32), (i64, i64)>,
        out: &mut BTreeMap<(String, i32), Vec<KafkaRecord>>,
    ) -> Result<(), String> {
        let mut last_progress = Instant::now();
        let mut last_error: Option<KafkaError> = None;
        while !remaining.is_empty() {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let key = (message.topic().to_string(), message.partition());
                    let Some((next, end)) = remaining.get_mut(&key) else { continue };
                    let offset = message.offset();
                    if offset >= *next && offset < *end {
                        out.entry(key.clone()).or_default().push(KafkaRecord {
                            offset,
                            key: message.key().map(<[u8]>::to_vec),
                            value: message.payload().map(<[u8]>::to_vec),
                            timestamp_ms: message.timestamp().to_millis(),
                        });
                        *next = offset + 1;
                        last_progress = Instant::now();
                    }
                    if offset + 1 >= *end {
                        remaining.remove(&key);
                    }
                }
                Some(Err(KafkaError::MessageConsumption(code)))
                    if matches!(code, RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) =>
                {
                    let partitions: Vec<String> = remaining
                        .iter()
                        .map(|((t, p), (n, e))| format!("topic '{t}' partition {p} offsets {n}..{e}"))
                        .collect();
                    return Err(format!(
                        "offsets to read are no longer held by the brokers ({code}) while reading {}: the data was deleted \
                         (retention) or the topic recreated",
                        partitions.join(", ")
                    ));
                }
                Some(Err(e)) => last_error = Some(e),
                None => {
                    self.drop_finished(remaining)?;
                    if last_progress.elapsed() > self.timeout {
                        let partitions: Vec<String> = remaining
                            .iter()
                            .map(|((t, p), (n, e))| format!("topic '{t}' partition {p} at offset {n} of {e}"))
                            .collect();
                        let cause = last_error.map_or_else(String::new, |e| format!(" (last error: {e})"));
                        return Err(format!(
                            "no records received from the Kafka brokers at {} for poll_timeout_ms = {} while reading {}{cause}; \
                             check that the brokers are running",
                            self.servers,
                            self.timeout.as_millis(),
                            partitions.join(", ")
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the ranges whose partition position reached their end without a message there.
    fn drop_finished(&self, remaining: &mut BTreeMap<(String, i32), (i64, i64)>) -> Result<(), String> {
        let positions = self.consumer.position().map_err(|e| format!("cannot read the consumer's positions: {e}"))?;
        for element in positions.elements() {
            if let Offset::Offset(position) = element.offset() {
                let key = (element.topic().to_string(), element.partition());
                if remaining.get(&key).is_some_and(|(_, end)| position >= *end) {
                    remaining.remove(&key);
                }
            }
        }
        Ok(())
    }
}
