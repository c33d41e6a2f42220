//! The exactly-once protocol of the Kafka sink (`delivery = 'exactly_once'`): Kafka
//! transactions with a stable transactional id and a commit marker per batch.
//!
//! - The transactional id is `sluice-<query id>`, the id the checkpoint's `metadata` keeps across
//!   restarts, so every run of a query is the same transactional producer to the brokers.
//! - When the query starts, `init_transactions` fences earlier producers with that id (a zombie
//!   run can no longer commit) and has the coordinator finish their open transaction: a
//!   transaction whose commit was under way completes, any other is aborted.
//! - Then the sink reads the marker topic (`marker_topic`, default `<topic>.sluice-commits`,
//!   partition 0, `read_committed`) to its end; the last record keyed by the transactional id
//!   holds the last batch id whose transaction committed.
//! - Batch `N` at or below that id is skipped: its rows are already in the topic (a crash came
//!   between the Kafka commit and the checkpoint's `commits/N`). Otherwise the sink begins a
//!   transaction, sends the rows, waits for their acknowledgement, sends the marker record
//!   `{"query_id":...,"batch_id":N}` (key: the transactional id) and commits. Rows and marker
//!   become visible to `read_committed` readers together or not at all.
//!
//! A crash at any step therefore leaves either a committed transaction with its marker (the
//! replay is skipped) or none (the replay writes the batch; the aborted attempt is invisible to
//! `read_committed` readers). The marker topic is created compacted (`cleanup.policy=compact`)
//! when missing, so it keeps the last marker of every query however old.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use serde_json::json;

use crate::source::kafka::produce::{send, wait_delivered, KafkaProducer};
use crate::source::kafka::{KafkaClient, PartitionRange, Subscription};

/// How long a transaction request (init, commit, abort) may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The transactional id of the exactly-once Kafka sink of query `query_id`.
pub fn transactional_id(query_id: &str) -> String {
    format!("sluice-{query_id}")
}

/// The default marker topic of a sink writing to `topic`.
pub fn default_marker_topic(topic: &str) -> String {
    format!("{topic}.sluice-commits")
}

/// The transactional state of an exactly-once sink: which batch committed last.
#[derive(Debug)]
pub(super) struct Transactions {
    query_id: String,
    transactional_id: String,
    marker_topic: String,
    /// The last batch whose transaction committed, per the marker topic and this run.
    last_committed: Option<u64>,
}

impl Transactions {
    /// Fences earlier producers of `producer`'s transactional id (for `query_id`), then reads
    /// the last committed batch from `marker_topic` (created compacted when missing) with
    /// `reader`, a `read_committed` consumer; `admin` is the configuration of the admin client.
    ///
    /// # Errors
    /// A message when the brokers refuse or do not answer, naming the step.
    pub(super) async fn start(
        producer: &KafkaProducer,
        reader: &KafkaClient,
        admin: &ClientConfig,
        query_id: &str,
        marker_topic: &str,
    ) -> Result<Self, String> {
        let transactional_id = transactional_id(query_id);
        producer.init_transactions(TRANSACTION_TIMEOUT).map_err(|e| {
            format!("cannot initialise Kafka transactions for transactional id '{transactional_id}': {e}")
        })?;
        if reader.partitions(&Subscription::Topics(vec![marker_topic.to_string()]))?.is_empty() {
            create_marker_topic(admin, marker_topic).await?;
        }
        let last_committed = read_marker(reader, marker_topic, &transactional_id)?;
        Ok(Self {
            query_id: query_id.to_string(),
            transactional_id,
            marker_topic: marker_topic.to_string(),
            last_committed,
        })
    }

    /// The last batch whose rows are committed.
    pub(super) fn last_committed(&self) -> Option<u64> {
        self.last_committed
    }

    /// Begins the transaction of batch `batch_id`; false when that batch already committed.
    ///
    /// # Errors
    /// librdkafka's message when the transaction cannot begin.
    pub(super) fn begin(&self, producer: &KafkaProducer, batch_id: u64) -> Result<bool, String> {
        if self.last_committed.is_some_and(|last| batch_id <= last) {
            return Ok(false);
        }
        producer.begin_transaction().map_err(|e| format!("cannot begin the transaction of batch {batch_id}: {e}"))?;
        Ok(true)
    }

    /// Sends the marker of batch `batch_id` and commits the open transaction; on failure the
    /// transaction is aborted when it can be (the batch then runs again after a restart).
    ///
    /// # Errors
    /// A message naming the batch and librdkafka's error; a fenced producer is named as such.
    pub(super) fn commit(&mut self, producer: &KafkaProducer, batch_id: u64) -> Result<(), String> {
        let marker = json!({ "query_id": self.query_id, "batch_id": batch_id }).to_string();
        let record = BaseRecord::to(&self.marker_topic).partition(0).key(&self.transactional_id).payload(&marker);
        // The marker acknowledged first: `commit_transaction` then finds nothing to flush (its
        // flush would take 100 ms, see `wait_delivered`).
        let committed = send(producer, record)
            .and_then(|()| wait_delivered(producer, TRANSACTION_TIMEOUT))
            .and_then(|()| producer.commit_transaction(TRANSACTION_TIMEOUT).map_err(|e| self.explain(batch_id, &e)));
        match committed {
            Ok(()) => {
                self.last_committed = Some(batch_id);
                Ok(())
            }
            Err(message) => Err(self.abort(producer, batch_id, message)),
        }
    }

    /// Aborts the open transaction of batch `batch_id` after `message` (best effort: a failed
    /// abort is left to the next run's `init_transactions`); returns the message to report.
    pub(super) fn abort(&self, producer: &KafkaProducer, batch_id: u64, message: String) -> String {
        match producer.abort_transaction(TRANSACTION_TIMEOUT) {
            Ok(()) => format!("{message}; the transaction of batch {batch_id} was aborted"),
            Err(e) => format!("{message}; aborting the transaction of batch {batch_id} failed too: {e}"),
        }
    }

    fn explain(&self, batch_id: u64, e: &KafkaError) -> String {
        let fenced = matches!(e, KafkaError::Transaction(t) if t.is_fatal())
            || e.rdkafka_error_code() == Some(RDKafkaErrorCode::ProducerFenced);
        if fenced {
            format!(
                "cannot commit batch {batch_id}: another producer with transactional id '{}' (another run of this query?) \
                 fenced this one ({e}); stop the other run",
                self.transactional_id
            )
        } else {
            format!("cannot commit the transaction of batch {batch_id}: {e}")
        }
    }
}

/// The last batch id committed under `transactional_id`, from partition 0 of `marker_topic`.
fn read_marker(reader: &KafkaClient, marker_topic: &str, transactional_id: &str) -> Result<Option<u64>, String> {
    let (low, high) = reader.watermarks(marker_topic, 0)?;
    let range = PartitionRange { topic: marker_topic.to_string(), partition: 0, start: low, end: high };
    let records = reader.read(std::slice::from_ref(&range))?;
    let mut last = None;
    for record in records.into_values().flatten() {
        if record.key.as_deref() != Some(transactional_id.as_bytes()) {
            continue;
        }
        let value: Option<serde_json::Value> = record.value.as_deref().and_then(|v| serde_json::from_slice(v).ok());
        let batch_id = value.as_ref().and_then(|v| v.get("batch_id")).and_then(serde_json::Value::as_u64);
        last = Some(batch_id.ok_or_else(|| {
            format!(
                "the marker record at offset {} of topic '{marker_topic}' partition 0 is not {{\"batch_id\": N, ...}}; \
                 only the exactly-once Kafka sink may write to the marker topic",
                record.offset
            )
        })?);
    }
    Ok(last)
}

/// Creates `topic` with one partition, compacted, with the brokers' default replication.
async fn create_marker_topic(admin: &ClientConfig, topic: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        admin.create().map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(TRANSACTION_TIMEOUT));
    let fail = |e: String| {
        format!(
            "cannot create the marker topic '{topic}' ({e}); create it (one partition, cleanup.policy=compact) or name \
             another with the option marker_topic"
        )
    };
    for result in admin.create_topics([&new], &options).await.map_err(|e| fail(e.to_string()))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    Ok(())
}
