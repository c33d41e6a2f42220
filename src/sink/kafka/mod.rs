//! The Kafka sink (`connector = 'kafka'`): each row of a batch becomes one message, its value the
//! row as a JSON object (the JSON lines the file sink writes), its key the `key` option's column
//! as text (none when null or when the option is not set), all sent to the `topic` option's topic.
//!
//! `delivery` chooses the guarantee:
//! - `at_least_once` (the default, as Spark's Kafka sink): the batch is done when the brokers
//!   acknowledged every message. A batch replayed after a crash between its messages' delivery
//!   and its commit is written again, so readers may see its rows twice.
//! - `exactly_once`: each batch is one Kafka transaction that also writes a marker recording the
//!   batch id; a replayed batch whose transaction committed is skipped, so `read_committed`
//!   readers see every row once whatever the crash. The protocol is in [`exactly_once`].

pub mod exactly_once;
#[cfg(test)]
mod exactly_once_tests;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientConfig;

use self::exactly_once::{default_marker_topic, transactional_id, Transactions};
use super::Sink;
use crate::format::encode::encode;
use crate::format::Format;
use crate::source::kafka::produce::{send, wait_delivered, Deliveries, KafkaProducer};
use crate::source::kafka::{KafkaClient, CLIENT_OPTION_PREFIX};
use crate::{Result, SluiceError};

/// How long a batch may wait for the brokers to acknowledge its messages.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The options of the Kafka sink besides the shared `bootstrap_servers`, `topic` and `kafka.*`.
pub const KAFKA_SINK_OPTIONS: &[&str] = &["key", "output_mode", "delivery", "marker_topic"];

/// The sink's delivery guarantee (option `delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// `at_least_once` (default): a replayed batch may be written twice.
    #[default]
    AtLeastOnce,
    /// `exactly_once`: one Kafka transaction per batch with a commit marker.
    ExactlyOnce,
}

/// The Kafka sink. See the module documentation.
pub struct KafkaSink {
    name: String,
    topic: String,
    key: Option<String>,
    time_zone: Option<Tz>,
    delivery: Delivery,
    /// `bootstrap.servers` and the `kafka.*` settings.
    config: ClientConfig,
    marker_topic: String,
    /// Created by [`KafkaSink::new`] (at-least-once) or [`Sink::open`] (exactly-once, whose
    /// transactional id comes from the query id).
    producer: Option<KafkaProducer>,
    /// The exactly-once state, from [`Sink::open`].
    transactions: Option<Transactions>,
}

impl KafkaSink {
    /// The sink of table `name` from its `WITH (...)` options: `bootstrap_servers`, `topic`,
    /// `key` (a column), `delivery` (`at_least_once` or `exactly_once`), `marker_topic`,
    /// `kafka.*` producer settings.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option when `bootstrap_servers` or `topic` is missing,
    /// `delivery` is neither value, `kafka.transactional.id` is set (the exactly-once sink
    /// derives it) or librdkafka refuses a `kafka.*` setting.
    pub fn new(name: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let required = |option: &str| {
            options
                .get(option)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SluiceError::sql(format!("kafka sink table '{name}' needs the option {option}")))
        };
        let delivery = match options.get("delivery").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("at_least_once") => Delivery::AtLeastOnce,
            Some("exactly_once") => Delivery::ExactlyOnce,
            Some(other) => {
                return Err(SluiceError::sql(format!(
                    "table '{name}': option delivery must be 'at_least_once' or 'exactly_once', got '{other}'"
                )))
            }
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", required("bootstrap_servers")?);
        for (key, value) in options {
            if let Some(setting) = key.strip_prefix(CLIENT_OPTION_PREFIX) {
                if setting == "transactional.id" {
                    return Err(SluiceError::sql(format!(
                        "table '{name}': option '{key}' cannot be set: delivery = 'exactly_once' derives the \
                         transactional id from the query id"
                    )));
                }
                config.set(setting, value);
            }
        }
        let topic = required("topic")?;
        let mut sink = Self {
            name: name.to_string(),
            marker_topic: options.get("marker_topic").map_or_else(|| default_marker_topic(&topic), |t| t.trim().into()),
            topic,
            key: options.get("key").map(|k| k.trim().to_ascii_lowercase()),
            time_zone: None,
            delivery,
            config,
            producer: None,
            transactions: None,
        };
        // The exactly-once producer is created when the query id is known; this one checks the
        // settings in both cases.
        let producer = sink.create_producer(&sink.config)?;
        if delivery == Delivery::AtLeastOnce {
            sink.producer = Some(producer);
        }
        Ok(sink)
    }

    /// Writes timestamps in `time_zone` (Spark's `spark.sql.session.timeZone`); UTC by default.
    ///
    /// # Errors
    /// [`SluiceError::Arrow`] when `time_zone` is not a known time zone.
    pub fn with_time_zone(mut self, time_zone: Option<&str>) -> Result<Self> {
        self.time_zone = time_zone.map(str::parse::<Tz>).transpose()?;
        Ok(self)
    }

    fn create_producer(&self, config: &ClientConfig) -> Result<KafkaProducer> {
        config.create_with_context(Deliveries::default()).map_err(|e| {
            SluiceError::sql(format!(
                "table '{}': the Kafka producer refuses the {CLIENT_OPTION_PREFIX}* options: {e}",
                self.name
            ))
        })
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Sink { sink: self.name.clone(), message }
    }

    fn producer(&self) -> Result<&KafkaProducer> {
        self.producer.as_ref().ok_or_else(|| {
            self.error("the exactly-once Kafka sink was used before the query opened it with its id".into())
        })
    }

    /// The key of every row, as text.
    fn keys(&self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<Option<String>>> {
        let Some(column) = &self.key else { return Ok(Vec::new()) };
        let index = schema.index_of(column).map_err(|_| {
            self.error(format!("the key option names column '{column}', which the query does not produce"))
        })?;
        let mut keys = Vec::new();
        for batch in batches {
            let text = cast(batch.column(index), &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            keys.extend((0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_string())));
        }
        Ok(keys)
    }

    /// Exactly-once step 1: begins the transaction of batch `batch_id`. False when the marker
    /// says the batch already committed: its rows must not be written again.
    ///
    /// # Errors
    /// [`SluiceError::Sink`] when the sink is at-least-once or not opened, or the transaction
    /// cannot begin.
    pub fn begin_batch(&mut self, batch_id: u64) -> Result<bool> {
        let producer = self.producer()?;
        let transactions = self.transactions.as_ref().ok_or_else(|| {
            self.error("begin_batch is a step of delivery = 'exactly_once', which this sink does not use".into())
        })?;
        transactions.begin(producer, batch_id).map_err(|e| self.error(e))
    }

    /// Sends every row of `batches` (of `schema`) and waits until the brokers acknowledged them
    /// all (at-least-once: the whole batch; exactly-once step 2, inside the open transaction).
    ///
    /// # Errors
    /// [`SluiceError::Sink`] naming the topic when a message is refused or not acknowledged
    /// within 60 s; [`SluiceError::Arrow`] when a row cannot be encoded.
    pub fn write_rows(&mut self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let keys = self.keys(schema, batches)?;
        let json = encode(schema, batches, Format::Json, self.time_zone.as_ref())?;
        let producer = self.producer()?;
        for (i, line) in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let record = BaseRecord::to(&self.topic).payload(line);
            let record = match keys.get(i).and_then(Option::as_ref) {
                Some(key) => record.key(key.as_bytes()),
                None => record,
            };
            send(producer, record).map_err(|e| self.error(e))?;
        }
        wait_delivered(producer, DELIVERY_TIMEOUT).map_err(|e| self.error(format!("topic '{}': {e}", self.topic)))?;
        if let Some(e) = producer.context().take_error() {
            return Err(self.error(format!("a message to topic '{}' was not delivered: {e}", self.topic)));
        }
        Ok(())
    }

    /// Exactly-once step 3: writes the marker of batch `batch_id` and commits its transaction.
    ///
    /// # Errors
    /// [`SluiceError::Sink`] when the commit fails (the transaction is then aborted) or the
    /// sink is not exactly-once.
    pub fn commit_batch(&mut self, batch_id: u64) -> Result<()> {
        let committed = match (&self.producer, &mut self.transactions) {
            (Some(producer), Some(transactions)) => transactions.commit(producer, batch_id),
            _ => Err("commit_batch is a step of delivery = 'exactly_once', which this sink does not use".to_string()),
        };
        committed.map_err(|e| self.error(e))
    }

    /// Exactly-once: steps 2 and 3, aborting the transaction when the rows cannot be written.
    fn write_transaction(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        if let Err(e) = self.write_rows(schema, batches) {
            if let (Some(producer), Some(transactions)) = (&self.producer, &self.transactions) {
                return Err(self.error(transactions.abort(producer, batch_id, e.to_string())));
            }
            return Err(e);
        }
        self.commit_batch(batch_id)
    }
}

#[async_trait]
impl Sink for KafkaSink {
    /// Exactly-once: creates the transactional producer of `query_id`, fences earlier runs and
    /// reads the last committed batch from the marker topic. At-least-once: nothing.
    async fn open(&mut self, query_id: &str) -> Result<()> {
        if self.delivery == Delivery::AtLeastOnce {
            return Ok(());
        }
        let mut producer_config = self.config.clone();
        producer_config.set("transactional.id", transactional_id(query_id));
        let producer = self.create_producer(&producer_config)?;
        let mut reader_config = self.config.clone();
        reader_config
            .set("group.id", format!("sluice-marker-reader-{}", uuid::Uuid::new_v4()))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false");
        let servers = self.config.get("bootstrap.servers").unwrap_or_default().to_string();
        let reader = KafkaClient::with_config(&reader_config, &servers, DELIVERY_TIMEOUT).map_err(|e| self.error(e))?;
        let transactions = Transactions::start(&producer, &reader, &self.config, query_id, &self.marker_topic)
            .await
            .map_err(|e| self.error(e))?;
        tracing::info!(
            sink = %self.name,
            transactional_id = %transactional_id(query_id),
            last_committed_batch = ?transactions.last_committed(),
            "exactly-once Kafka sink opened"
        );
        self.producer = Some(producer);
        self.transactions = Some(transactions);
        Ok(())
    }

    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        match self.delivery {
            Delivery::AtLeastOnce => self.write_rows(schema, batches),
            // A batch without rows writes nothing, so it needs no transaction or marker.
            Delivery::ExactlyOnce if batches.iter().all(|b| b.num_rows() == 0) => Ok(()),
            Delivery::ExactlyOnce => match self.begin_batch(batch_id)? {
                true => self.write_transaction(batch_id, schema, batches),
                false => {
                    tracing::info!(sink = %self.name, batch_id, "batch already committed to Kafka; not written again");
                    Ok(())
                }
            },
        }
    }

    fn description(&self) -> String {
        format!("KafkaSink[{}]", self.topic)
    }
}
