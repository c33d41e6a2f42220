//! `bad_data = 'dead_letter'`: malformed records go, key and value as read, to the
//! `dead_letter_topic`, with headers naming where they came from (as Kafka Connect's dead
//! letter queue does): `sluice.errors.topic`, `sluice.errors.partition`,
//! `sluice.errors.offset`. A replayed batch writes its dead letters again (at-least-once).

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::ClientConfig;

use super::client::KafkaRecord;
use super::produce::{send, wait_delivered, Deliveries, KafkaProducer};

/// How long the dead letters of a batch may wait for the brokers' acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The producer of a source's dead letters.
pub struct DeadLetters {
    producer: KafkaProducer,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").field("topic", &self.topic).finish()
    }
}

impl DeadLetters {
    /// A producer of `config` writing to `topic`.
    ///
    /// # Errors
    /// A message when librdkafka cannot create the producer.
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Self, String> {
        let producer = config
            .create_with_context(Deliveries::default())
            .map_err(|e| format!("cannot create the producer of dead_letter_topic '{topic}': {e}"))?;
        Ok(Self { producer, topic: topic.to_string() })
    }

    /// Writes `records`, read from `topic` partition `partition`, and waits for their
    /// acknowledgement.
    ///
    /// # Errors
    /// A message naming the dead-letter topic when a record is refused or not acknowledged.
    pub fn write(&self, topic: &str, partition: i32, records: &[&KafkaRecord]) -> Result<(), String> {
        let partition_text = partition.to_string();
        for record in records {
            let offset = record.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: "sluice.errors.topic", value: Some(topic) })
                .insert(Header { key: "sluice.errors.partition", value: Some(&partition_text) })
                .insert(Header { key: "sluice.errors.offset", value: Some(&offset) });
            let mut message = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            if let Some(ms) = record.timestamp_ms {
                message = message.timestamp(ms);
            }
            send(&self.producer, message).map_err(|e| format!("dead_letter_topic '{}': {e}", self.topic))?;
        }
        wait_delivered(&self.producer, DELIVERY_TIMEOUT)
            .map_err(|e| format!("dead letters to topic '{}': {e}", self.topic))?;
        match self.producer.context().take_error() {
            Some(e) => Err(format!("a dead letter to topic '{}' was not delivered: {e}", self.topic)),
            None => Ok(()),
        }
    }
}
