//! Faults on the Kafka protocol, on librdkafka's mock cluster (always, `SLUICE_KAFKA_BOOTSTRAP`
//! or not: a real broker cannot be taken down or made to answer errors from a test): a broker
//! down and up during a query, and broker errors injected into its requests. Every test compares
//! the query's output, batch by batch, with an uninterrupted run's over the same topic (or, for
//! the sinks, the topic written with the rows expected, each once).
//!
//! What the mock cluster can simulate (`rdkafka::mocking::MockCluster`, librdkafka 2.12): a
//! broker that closes its connections and refuses new ones (`broker_down`) until `broker_up`; a
//! slow broker (`broker_round_trip_time`); an error code answered to the next requests of one
//! API (`request_errors`, which pops one error per request; `RD_KAFKA_RESP_ERR__TRANSPORT` closes
//! the connection instead), for `Produce`, `Fetch`, `ListOffsets`, `AddPartitionsToTxn`,
//! `EndTxn` and others; a topic error in `Metadata` answers (`topic_error`).
//!
//! What it cannot: `Metadata` requests ignore `request_errors` (so a `Metadata` fault is a topic
//! error); a broker down keeps its partitions' leadership (no failover to another replica, no
//! data lost with it, no unclean leader election); no network partition that leaves a connection
//! open but silent (only the round-trip delay); no broker restart that loses unflushed data.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice::sink::MemorySink;
use sluice::{StreamContext, Trigger};

use crate::common::{rows, sorted};
use crate::kafka_source::{start, temp_checkpoint, triples, Broker, SELECT_TRIPLES};

/// The mock cluster's id for "every broker".
const ALL_BROKERS: i32 = -1;
const PARTITIONS: i32 = 3;
const PER_PARTITION: i64 = 20;
/// `max_offsets_per_trigger`: 60 records in 5 batches of 12.
const PER_BATCH: i64 = 12;

/// Batch id -> the `(partition, offset, id)` rows the batch wrote.
type Batches = BTreeMap<u64, Vec<(i32, i64, i64)>>;

fn by_batch(sink: &MemorySink) -> Batches {
    sink.batches().iter().map(|(id, batches)| (*id, triples(batches))).collect()
}

fn mock(broker: &Broker) -> &MockCluster<'static, DefaultProducerContext> {
    broker.mock.as_ref().expect("the fault tests run on the mock cluster")
}

/// A mock cluster with topic `t`: `PER_PARTITION` records in each of its `PARTITIONS`
/// partitions, ids `1000 * partition + i`.
async fn input() -> Broker {
    let broker = Broker::mock();
    broker.create_topic("t", PARTITIONS).await;
    for p in 0..PARTITIONS {
        broker.produce_ids("t", p, 1000 * i64::from(p), PER_PARTITION);
    }
    broker
}

/// The query over topic `t` from the earliest offsets, `PER_BATCH` offsets a batch.
fn script(broker: &Broker, poll_timeout_ms: u64) -> String {
    let options = format!(
        ", starting_offsets = 'earliest', max_offsets_per_trigger = '{PER_BATCH}', poll_timeout_ms = '{poll_timeout_ms}'"
    );
    format!("{}\n{SELECT_TRIPLES}", broker.events_table("id BIGINT, partition INT, offset BIGINT", "t", &options))
}

/// The batches of an uninterrupted run over topic `t`; checks that they hold every record once.
async fn uninterrupted(broker: &Broker) -> Batches {
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&script(broker, 20_000), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let batches = by_batch(&sink);
    let mut all: Vec<(i32, i64, i64)> = batches.values().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<(i32, i64, i64)> =
        (0..PARTITIONS).flat_map(|p| (0..PER_PARTITION).map(move |o| (p, o, 1000 * i64::from(p) + o))).collect();
    assert_eq!(all, expected);
    assert_eq!(batches.len(), 5, "{batches:?}");
    batches
}

/// A broker down for 2 s (less than `poll_timeout_ms`) between two batches, and again while a
/// batch's requests are in flight: the batch waits for it and completes; nothing is lost or read
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_less_than_poll_timeout_delays_the_batch_and_loses_nothing() {
    let broker = input().await;
    let reference = uninterrupted(&broker).await;
    let mock = mock(&broker);
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&script(&broker, 20_000), &checkpoint).await.unwrap();
    assert!(query.run_next_batch().await.unwrap());

    // Down between batches: the next batch's first request waits for the broker.
    mock.broker_down(ALL_BROKERS).unwrap();
    let started = Instant::now();
    let (ran, ()) = tokio::join!(query.run_next_batch(), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        mock.broker_up(ALL_BROKERS).unwrap();
    });
    assert!(ran.unwrap());
    assert!(started.elapsed() >= Duration::from_secs(2), "the batch ran while the broker was down");

    // Down during a batch: every answer takes 300 ms, so the batch (metadata, offsets of each
    // partition, fetch) is still running when the broker goes down 700 ms into it.
    mock.broker_round_trip_time(ALL_BROKERS, Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let (ran, ()) = tokio::join!(query.run_next_batch(), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        mock.broker_down(ALL_BROKERS).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        mock.broker_up(ALL_BROKERS).unwrap();
    });
    assert!(ran.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(2700), "the batch ended before the broker went down");
    mock.broker_round_trip_time(ALL_BROKERS, Duration::ZERO).unwrap();

    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(by_batch(&sink), reference);
}

/// Runs the query (`poll_timeout_ms` = 1.5 s) for a batch, then `fault` makes the next batch
/// fail; once `heal` has undone it, the query restarted on its checkpoint runs to the end. The
/// two runs together must write what an uninterrupted run writes, each batch once. Returns the
/// failed batch's error and how long it took to fail.
async fn failed_then_restarted(
    broker: &Broker,
    fault: impl FnOnce(&MockCluster<'static, DefaultProducerContext>),
    heal: impl FnOnce(&MockCluster<'static, DefaultProducerContext>),
) -> (String, Duration) {
    let reference = uninterrupted(broker).await;
    let mock = mock(broker);
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&script(broker, 1_500), &checkpoint).await.unwrap();
    assert!(query.run_next_batch().await.unwrap());
    let mut got = by_batch(&sink);

    fault(mock);
    let started = Instant::now();
    let err = query.run_next_batch().await.unwrap_err().to_string();
    let failed_after = started.elapsed();
    drop(query);
    heal(mock);

    let (query, sink) = start(&script(broker, 1_500), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    for (id, rows) in by_batch(&sink) {
        assert!(got.insert(id, rows).is_none(), "batch {id} was written by both runs");
    }
    assert_eq!(got, reference);
    (err, failed_after)
}

/// A broker down for longer than `poll_timeout_ms`: the batch fails with an error naming the
/// brokers and the timeout; restarted on its checkpoint once the broker is back, the query
/// writes what an uninterrupted run writes, each batch once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_longer_than_poll_timeout_fails_the_query_and_a_restart_resumes() {
    let broker = input().await;
    let (err, failed_after) = failed_then_restarted(
        &broker,
        |mock| mock.broker_down(ALL_BROKERS).unwrap(),
        |mock| mock.broker_up(ALL_BROKERS).unwrap(),
    )
    .await;
    assert!(err.contains(&broker.servers) && err.contains("poll_timeout_ms = 1500"), "{err}");
    assert!(failed_after < Duration::from_secs(10), "failed after {failed_after:?}");
}

/// Fetch requests answered "not leader" for longer than `poll_timeout_ms`, after the batch's
/// offsets were planned: the read fails naming the brokers, the timeout and the partitions;
/// the restarted query reads that batch's planned offsets again, so its output is an
/// uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_fetch_errors_fail_the_read_and_a_restart_replays_the_planned_batch() {
    let broker = input().await;
    let (err, _) = failed_then_restarted(
        &broker,
        |mock| {
            mock.request_errors(
                RDKafkaApiKey::Fetch,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 1000],
            )
        },
        |mock| mock.clear_request_errors(RDKafkaApiKey::Fetch),
    )
    .await;
    let topic = broker.topic("t");
    assert!(
        err.contains("no records received")
            && err.contains(&broker.servers)
            && err.contains("poll_timeout_ms = 1500")
            && err.contains(&format!("topic '{topic}' partition 0")),
        "{err}"
    );
}

/// Transient errors answered to the source's requests: `ListOffsets` and `Fetch` errors (a
/// leader moving, a request timing out, a connection closed) and a topic's "leader not
/// available" in `Metadata` for 1 s. The batches retry through them; the output is an
/// uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_on_list_offsets_fetch_and_metadata_are_retried_with_exact_output() {
    use RDKafkaRespErr::*;
    let broker = input().await;
    let reference = uninterrupted(&broker).await;
    let mock = mock(&broker);
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&script(&broker, 20_000), &checkpoint).await.unwrap();
    assert!(query.run_next_batch().await.unwrap());

    mock.request_errors(
        RDKafkaApiKey::ListOffsets,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR__TRANSPORT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        ],
    );
    assert!(query.run_next_batch().await.unwrap());
    assert!(query.run_next_batch().await.unwrap());

    let topic = broker.topic("t");
    mock.topic_error(&topic, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE).unwrap();
    let started = Instant::now();
    let (ran, ()) = tokio::join!(query.run_next_batch(), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        mock.topic_error(&topic, RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
    });
    assert!(ran.unwrap());
    assert!(started.elapsed() >= Duration::from_secs(1), "the batch ran while the topic had no leader");

    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(by_batch(&sink), reference);
}

/// Topic `in` (ids 0..10 in partition 0, 100..110 in partition 1) into the Kafka sink's topic
/// `out` with the sink `options`, under `errors` injected into the sink's requests; then reads
/// `out` back and checks that it holds every row exactly once.
async fn through_the_sink_with_errors(sink_options: &str, errors: &[(RDKafkaApiKey, &[RDKafkaRespErr])]) {
    let broker = Broker::mock();
    broker.create_topic("in", 2).await;
    broker.create_topic("out", 1).await;
    broker.create_topic("out.sluice-commits", 1).await;
    broker.produce_ids("in", 0, 0, 10);
    broker.produce_ids("in", 1, 100, 10);
    let script = format!(
        "{}\nCREATE TABLE results WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{}', key = 'v'{sink_options});\n\
         INSERT INTO results SELECT id, v FROM events;",
        broker.events_table("id BIGINT, v STRING", "in", ", starting_offsets = 'earliest', max_offsets_per_trigger = '8'"),
        broker.servers,
        broker.topic("out")
    );
    for (api, codes) in errors {
        mock(&broker).request_errors(*api, codes);
    }
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&script).await.unwrap();
    let (_dir, checkpoint) = temp_checkpoint();
    let query = ctx.start(&definitions[0], &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();

    let table = broker.events_table("id BIGINT, v STRING, key STRING", "out", ", starting_offsets = 'earliest'");
    let (_dir, checkpoint) = temp_checkpoint();
    let (reader, read) =
        start(&format!("{table}\nINSERT INTO out SELECT id, v, key FROM events;"), &checkpoint).await.unwrap();
    reader.run(Trigger::AvailableNow).await.unwrap();
    let expected: Vec<String> =
        (0..10).map(|id| format!("{id},p0,p0")).chain((100..110).map(|id| format!("{id},p1,p1"))).collect();
    assert_eq!(sorted(&rows(&read.all())), sorted(&expected), "every row once");
}

/// Transient errors answered to the at-least-once sink's `Produce` requests: librdkafka sends
/// again; the topic holds every row once (the mock appends nothing for a request it fails). No
/// `__TRANSPORT` here: a closed connection can lose the acknowledgement of an append, and the
/// (not idempotent) resend then writes it twice, which at-least-once allows. No
/// `NETWORK_EXCEPTION` either: it is the Java client's name for a connection lost before the
/// answer, which no broker sends; librdkafka fails a message answered with it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_produce_errors_are_retried_by_the_at_least_once_sink() {
    use RDKafkaRespErr::*;
    let produce: &[RDKafkaRespErr] = &[
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    ];
    through_the_sink_with_errors("", &[(RDKafkaApiKey::Produce, produce)]).await;
}

/// Transient errors answered to the exactly-once sink's `AddPartitionsToTxn` and `EndTxn`
/// requests (a coordinator loading, a transaction still completing): librdkafka retries them;
/// every transaction commits and the topic holds every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_transaction_errors_are_retried_by_the_exactly_once_sink() {
    use RDKafkaRespErr::*;
    let retried: &[RDKafkaRespErr] =
        &[RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS];
    through_the_sink_with_errors(
        ", delivery = 'exactly_once'",
        &[(RDKafkaApiKey::AddPartitionsToTxn, retried), (RDKafkaApiKey::EndTxn, retried)],
    )
    .await;
}
