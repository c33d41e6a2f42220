//! The Kafka sink (`connector = 'kafka'`), at-least-once: each row of a batch becomes one
//! message, its value the row as a JSON object (the JSON lines the file sink writes), its key the
//! `key` option's column as text (none when null or when the option is not set), all sent to the
//! `topic` option's topic; the batch is done when the brokers acknowledged every message.
//!
//! **At-least-once**, as Spark's Kafka sink: a batch replayed after a crash between its messages'
//! delivery and its commit is written again, so readers may see its rows twice. (The
//! exactly-once delivery with Kafka transactions is not built yet.)

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::Sink;
use crate::format::encode::encode;
use crate::format::Format;
use crate::source::kafka::produce::{send, Deliveries};
use crate::source::kafka::CLIENT_OPTION_PREFIX;
use crate::{Result, SluiceError};

/// How long a batch may wait for the brokers to acknowledge its messages.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The options of the Kafka sink besides the shared `bootstrap_servers`, `topic` and `kafka.*`.
pub const KAFKA_SINK_OPTIONS: &[&str] = &["key", "output_mode"];

/// The Kafka sink. See the module documentation.
pub struct KafkaSink {
    name: String,
    topic: String,
    key: Option<String>,
    producer: BaseProducer<Deliveries>,
    time_zone: Option<Tz>,
}

impl KafkaSink {
    /// The sink of table `name` from its `WITH (...)` options: `bootstrap_servers`, `topic`,
    /// `key` (a column), `kafka.*` producer settings.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option when `bootstrap_servers` or `topic` is missing or
    /// librdkafka refuses a `kafka.*` setting.
    pub fn new(name: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let required = |option: &str| {
            options
                .get(option)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| SluiceError::sql(format!("kafka sink table '{name}' needs the option {option}")))
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", required("bootstrap_servers")?);
        for (key, value) in options {
            if let Some(setting) = key.strip_prefix(CLIENT_OPTION_PREFIX) {
                config.set(setting, value);
            }
        }
        let producer = config.create_with_context(Deliveries::default()).map_err(|e| {
            SluiceError::sql(format!(
                "table '{name}': the Kafka producer refuses the {CLIENT_OPTION_PREFIX}* options: {e}"
            ))
        })?;
        Ok(Self {
            name: name.to_string(),
            topic: required("topic")?,
            key: options.get("key").map(|k| k.trim().to_ascii_lowercase()),
            producer,
            time_zone: None,
        })
    }

    /// Writes timestamps in `time_zone` (Spark's `spark.sql.session.timeZone`); UTC by default.
    ///
    /// # Errors
    /// [`SluiceError::Arrow`] when `time_zone` is not a known time zone.
    pub fn with_time_zone(mut self, time_zone: Option<&str>) -> Result<Self> {
        self.time_zone = time_zone.map(str::parse::<Tz>).transpose()?;
        Ok(self)
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Sink { sink: self.name.clone(), message }
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
}

impl Sink for KafkaSink {
    fn add_batch(&mut self, _batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let keys = self.keys(schema, batches)?;
        let json = encode(schema, batches, Format::Json, self.time_zone.as_ref())?;
        for (i, line) in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            let record = BaseRecord::to(&self.topic).payload(line);
            let record = match keys.get(i).and_then(Option::as_ref) {
                Some(key) => record.key(key.as_bytes()),
                None => record,
            };
            send(&self.producer, record).map_err(|e| self.error(e))?;
        }
        self.producer.flush(DELIVERY_TIMEOUT).map_err(|e| {
            self.error(format!("messages to topic '{}' not acknowledged within {DELIVERY_TIMEOUT:?}: {e}", self.topic))
        })?;
        if let Some(e) = self.producer.context().take_error() {
            return Err(self.error(format!("a message to topic '{}' was not delivered: {e}", self.topic)));
        }
        Ok(())
    }

    fn description(&self) -> String {
        format!("KafkaSink[{}]", self.topic)
    }
}
