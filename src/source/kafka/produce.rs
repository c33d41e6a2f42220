//! `sluice produce`: writes JSON lines files (gzipped too) into a Kafka topic, one message per
//! line, so that a query can read from Kafka what it reads from files and the results compare.
//!
//! Messages without a key go to the partitions round robin, line by line over all files, so a
//! partition holds its lines in file order; with `--key COLUMN` the key is the line's JSON field
//! (a string as is, another value as its JSON text; none when missing or null) and librdkafka's
//! partitioner places it by the key's hash.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::{Result, SluiceError};

/// What `sluice produce` writes where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceOptions {
    /// `host:port[,host:port...]` of the brokers.
    pub bootstrap_servers: String,
    /// The topic.
    pub topic: String,
    /// Creates the topic with this many partitions (replication factor 1) unless it exists with
    /// as many; `None`: the topic must exist.
    pub partitions: Option<i32>,
    /// The JSON field whose value keys each message; `None`: no key.
    pub key: Option<String>,
}

/// The producer of sluice's Kafka writers: its own thread serves the delivery reports.
pub(crate) type KafkaProducer = ThreadedProducer<Deliveries>;

/// A producer's context that keeps the first delivery error (librdkafka reports deliveries
/// asynchronously; the default context drops failures) and counts the messages not yet reported.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    first_error: Mutex<Option<String>>,
    /// Messages handed to librdkafka whose delivery (or failure) is not reported yet.
    outstanding: Mutex<u64>,
    reported: Condvar,
}

impl Deliveries {
    /// The first delivery error since the last call, if any.
    pub(crate) fn take_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn add_outstanding(&self, delta: i64) {
        let mut outstanding = self.outstanding.lock().unwrap_or_else(PoisonError::into_inner);
        *outstanding = outstanding.saturating_add_signed(delta);
        if *outstanding == 0 {
            self.reported.notify_all();
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert_with(|| e.to_string());
        }
        self.add_outstanding(-1);
    }
}

fn error(options: &ProduceOptions, message: String) -> SluiceError {
    SluiceError::Sink { sink: format!("kafka topic '{}'", options.topic), message }
}

/// Writes every line of `files` to the topic; returns the number of messages written.
///
/// # Errors
/// [`SluiceError::Io`] for an unreadable file; [`SluiceError::MalformedRecord`] for a line that
/// is not JSON when `key` is set; [`SluiceError::Sink`] naming the topic when it does not exist
/// (without `partitions`), exists with another partition count, cannot be created, or a message
/// is not delivered within 60 s.
pub async fn produce_files(options: &ProduceOptions, files: &[PathBuf]) -> Result<u64> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &options.bootstrap_servers).set("linger.ms", "20");
    if let Some(n) = options.partitions {
        create_topic(options, &config, n).await?;
    }
    let producer: KafkaProducer = config
        .create_with_context(Deliveries::default())
        .map_err(|e| error(options, format!("cannot create the Kafka producer: {e}")))?;
    let metadata = producer
        .client()
        .fetch_metadata(Some(&options.topic), Duration::from_secs(30))
        .map_err(|e| error(options, format!("cannot reach the brokers at {}: {e}", options.bootstrap_servers)))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == options.topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if partitions == 0 {
        return Err(error(options, "the topic does not exist; create it, or pass --partitions N".into()));
    }
    let mut count: u64 = 0;
    for path in files {
        let file = std::fs::File::open(path).map_err(|e| SluiceError::io(path, e))?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| SluiceError::io(path, e))?;
            let value = line.trim();
            if value.is_empty() {
                continue;
            }
            let key = match &options.key {
                None => None,
                Some(column) => {
                    let json: serde_json::Value =
                        serde_json::from_str(value).map_err(|e| SluiceError::MalformedRecord {
                            path: path.clone(),
                            line: i as u64 + 1,
                            message: format!("invalid JSON, so no key column '{column}': {e}"),
                        })?;
                    match json.get(column) {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::String(s)) => Some(s.clone()),
                        Some(other) => Some(other.to_string()),
                    }
                }
            };
            let mut record = BaseRecord::to(&options.topic).payload(value);
            if let Some(key) = &key {
                record = record.key(key);
            } else {
                record = record.partition((count % partitions as u64) as i32);
            }
            send(&producer, record).map_err(|e| error(options, e))?;
            count += 1;
        }
    }
    wait_delivered(&producer, Duration::from_secs(60)).map_err(|e| error(options, e))?;
    if let Some(e) = producer.context().take_error() {
        return Err(error(options, format!("a message was not delivered: {e}")));
    }
    Ok(count)
}

/// Sends `record`, waiting while the producer's queue is full.
///
/// # Errors
/// A message with librdkafka's error when it refuses the message (e.g. larger than
/// `message.max.bytes`).
pub(crate) fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    producer: &KafkaProducer,
    mut record: BaseRecord<'_, K, P>,
) -> std::result::Result<(), String> {
    // Counted before the send: the delivery report may come before `send` returns.
    producer.context().add_outstanding(1);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                // The producer's thread serves delivery reports, which frees the queue.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => {
                producer.context().add_outstanding(-1);
                return Err(format!("cannot send a message: {e}"));
            }
        }
    }
}

/// Waits until the delivery of every message sent through [`send`] was reported, at most
/// `timeout`.
///
/// `rdkafka`'s `flush` polls in slices of 100 ms that always run to their end, so it takes at
/// least 100 ms whenever a message is in flight: a floor on every sink batch. This waits on the
/// delivery reports the producer's thread serves instead.
///
/// # Errors
/// A message when deliveries are still unreported after `timeout`.
pub(crate) fn wait_delivered(producer: &KafkaProducer, timeout: Duration) -> std::result::Result<(), String> {
    let deliveries = producer.context();
    let outstanding = deliveries.outstanding.lock().unwrap_or_else(PoisonError::into_inner);
    let (outstanding, _) = deliveries
        .reported
        .wait_timeout_while(outstanding, timeout, |n| *n > 0)
        .unwrap_or_else(PoisonError::into_inner);
    match *outstanding {
        0 => Ok(()),
        n => Err(format!("{n} messages not acknowledged within {timeout:?}")),
    }
}

/// Creates the topic with `partitions` partitions; an existing topic must have as many.
async fn create_topic(options: &ProduceOptions, config: &ClientConfig, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|e| error(options, format!("cannot create the Kafka admin client: {e}")))?;
    let topic = NewTopic::new(&options.topic, partitions, TopicReplication::Fixed(1));
    let admin_options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&topic], &admin_options)
        .await
        .map_err(|e| error(options, format!("cannot create the topic at {}: {e}", options.bootstrap_servers)))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(error(options, format!("cannot create the topic: {code}"))),
        }
    }
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&options.topic), Duration::from_secs(30))
        .map_err(|e| error(options, format!("cannot read the topic's partitions: {e}")))?;
    let existing = metadata.topics().iter().find(|t| t.name() == options.topic).map_or(0, |t| t.partitions().len());
    if existing != partitions as usize {
        return Err(error(options, format!("the topic exists with {existing} partitions, not {partitions}")));
    }
    Ok(())
}
