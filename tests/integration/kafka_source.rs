//! The Kafka source (`connector = 'kafka'`) on the Kafka protocol: against librdkafka's mock
//! cluster (an in-process broker), or against the real broker `SLUICE_KAFKA_BOOTSTRAP` names
//! (`host:port`; every test then uses topics of its own, created with the admin API), such as
//! the tansu broker `scripts/kafka-broker.sh` starts.
//!
//! Neither the mock cluster (no admin API) nor tansu 0.6 (no `CreatePartitions` in its
//! `ApiVersions`) can add partitions to a topic, so "a new partition" is tested as the partitions
//! of a listed topic created while the query runs (the same code path: a partition missing from
//! the batch's start offset).

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;
use sluice::kafka::{produce_files, ProduceOptions};
use sluice::sink::MemorySink;
use sluice::{OutputMode, StreamContext, StreamingQuery, Trigger};

use crate::common::{rows, sorted};

/// A Kafka-protocol broker for one test.
pub(crate) struct Broker {
    /// The mock cluster, unless `SLUICE_KAFKA_BOOTSTRAP` names a real broker.
    pub(crate) mock: Option<MockCluster<'static, DefaultProducerContext>>,
    pub(crate) servers: String,
    /// Prefix of this test's topic names (unique on a shared real broker).
    prefix: String,
}

impl Broker {
    pub(crate) fn new() -> Self {
        match std::env::var("SLUICE_KAFKA_BOOTSTRAP") {
            Ok(servers) if !servers.is_empty() => {
                Broker { mock: None, servers, prefix: format!("t{}-", uuid::Uuid::new_v4().simple()) }
            }
            _ => Self::mock(),
        }
    }

    /// Always the mock cluster (for what tansu 0.6, the suite's real broker, lacks: it advertises
    /// no `EndTxn`, so no transaction can commit).
    pub(crate) fn mock() -> Self {
        let mock = MockCluster::new(1).unwrap();
        let servers = mock.bootstrap_servers();
        Broker { mock: Some(mock), servers, prefix: String::new() }
    }

    /// This test's name for topic `name`.
    pub(crate) fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates topic `name` with `partitions` partitions.
    pub(crate) async fn create_topic(&self, name: &str, partitions: i32) {
        let topic = self.topic(name);
        match &self.mock {
            Some(mock) => mock.create_topic(&topic, partitions, 1).unwrap(),
            None => {
                let admin: AdminClient<DefaultClientContext> =
                    ClientConfig::new().set("bootstrap.servers", &self.servers).create().unwrap();
                let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
                for result in admin.create_topics([&new], &AdminOptions::new()).await.unwrap() {
                    result.unwrap();
                }
            }
        }
    }

    /// Writes `(key, value)` messages to `partition` of topic `name`, in order.
    pub(crate) fn produce(&self, name: &str, partition: i32, messages: &[(Option<&str>, &str)]) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &self.servers).create().unwrap();
        let topic = self.topic(name);
        for (key, value) in messages {
            let mut record = BaseRecord::to(&topic).partition(partition).payload(*value);
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// `count` JSON events `{"id": first + i, "v": "p<partition>"}` to `partition`, unkeyed.
    pub(crate) fn produce_ids(&self, name: &str, partition: i32, first: i64, count: i64) {
        let values: Vec<String> =
            (first..first + count).map(|id| format!(r#"{{"id":{id},"v":"p{partition}"}}"#)).collect();
        let messages: Vec<(Option<&str>, &str)> = values.iter().map(|v| (None, v.as_str())).collect();
        self.produce(name, partition, &messages);
    }

    /// `CREATE TABLE events (...) WITH (connector = 'kafka', ...)` over topics `names` (comma
    /// list) with the extra `options`.
    pub(crate) fn events_table(&self, columns: &str, names: &str, options: &str) -> String {
        let topics: Vec<String> = names.split(',').map(|n| self.topic(n)).collect();
        format!(
            "CREATE TABLE events ({columns}) WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{}'{options});",
            self.servers,
            topics.join(",")
        )
    }
}

/// Starts `script`'s query writing its rows to a memory sink `out` (append mode).
pub(crate) async fn start(script: &str, checkpoint: &str) -> sluice::Result<(StreamingQuery, MemorySink)> {
    let mut ctx = StreamContext::new();
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(for_query.clone()));
    let definitions = ctx.execute(script).await?;
    Ok((ctx.start(&definitions[0], checkpoint).await?, sink))
}

/// The `(partition, offset, id)` of every row of `batches` (columns in that order).
pub(crate) fn triples(batches: &[RecordBatch]) -> Vec<(i32, i64, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let p = b.column(0).as_primitive::<Int32Type>();
        let o = b.column(1).as_primitive::<Int64Type>();
        let id = b.column(2).as_primitive::<Int64Type>();
        out.extend((0..b.num_rows()).map(|r| (p.value(r), o.value(r), id.value(r))));
    }
    out.sort_unstable();
    out
}

pub(crate) const SELECT_TRIPLES: &str = "INSERT INTO out SELECT partition, offset, id FROM events;";

pub(crate) fn temp_checkpoint() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint").to_str().unwrap().to_string();
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_partition_with_kafkas_columns_beside_the_value() {
    let broker = Broker::new();
    broker.create_topic("a", 3).await;
    for p in 0..3 {
        broker.produce(
            "a",
            p,
            &[(Some("k1"), &format!(r#"{{"id":{},"v":"x"}}"#, p * 10)), (None, &format!(r#"{{"id":{}}}"#, p * 10 + 1))],
        );
    }
    let table = broker.events_table(
        "id BIGINT, v STRING, key STRING, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP",
        "a",
        ", starting_offsets = 'earliest'",
    );
    let select =
        "INSERT INTO out SELECT id, v, key, topic, partition, offset, timestamp IS NOT NULL AS has_ts FROM events;";
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&format!("{table}\n{select}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let topic = broker.topic("a");
    let expected: Vec<String> = (0..3)
        .flat_map(|p| {
            [format!("{},x,k1,{topic},{p},0,true", p * 10), format!("{},null,null,{topic},{p},1,true", p * 10 + 1)]
        })
        .collect();
    assert_eq!(sorted(&rows(&sink.all())), sorted(&expected));
    assert_eq!(query.recent_progress()[0].sources[0].description, format!("KafkaV2[Subscribe[{topic}]]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_offsets_latest_and_per_partition_json() {
    let broker = Broker::new();
    broker.create_topic("b", 2).await;
    broker.produce_ids("b", 0, 0, 5);
    broker.produce_ids("b", 1, 100, 5);
    let columns = "id BIGINT, partition INT, offset BIGINT";

    // latest (the default): only what is produced after the start.
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) =
        start(&format!("{}\n{SELECT_TRIPLES}", broker.events_table(columns, "b", "")), &checkpoint).await.unwrap();
    assert!(!query.run_next_batch().await.unwrap(), "nothing new yet");
    broker.produce_ids("b", 1, 105, 2);
    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(triples(&sink.all()), vec![(1, 5, 105), (1, 6, 106)]);

    // Spark's JSON: partition 0 from offset 3, partition 1 from the earliest (-2).
    let topic = broker.topic("b");
    let json = format!(r#", starting_offsets = '{{"{topic}":{{"0":3,"1":-2}}}}'"#);
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) =
        start(&format!("{}\n{SELECT_TRIPLES}", broker.events_table(columns, "b", &json)), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let got = triples(&sink.all());
    assert_eq!(got.iter().filter(|t| t.0 == 0).map(|t| t.1).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(got.iter().filter(|t| t.0 == 1).map(|t| t.1).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());

    // A JSON that leaves out a partition is refused when the query starts, as in Spark.
    let partial = format!(r#", starting_offsets = '{{"{topic}":{{"0":3}}}}'"#);
    let (_dir, checkpoint) = temp_checkpoint();
    let err = start(&format!("{}\n{SELECT_TRIPLES}", broker.events_table(columns, "b", &partial)), &checkpoint)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&format!("topic '{topic}' partition 1")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_offsets_per_trigger_splits_the_backlog_over_batches_by_partition_backlog() {
    let broker = Broker::new();
    broker.create_topic("c", 2).await;
    broker.produce_ids("c", 0, 0, 30);
    broker.produce_ids("c", 1, 1000, 10);
    let table = broker.events_table(
        "id BIGINT, partition INT, offset BIGINT",
        "c",
        ", starting_offsets = 'earliest', max_offsets_per_trigger = '8'",
    );
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let by_batch = sink.batches();
    // 8 a batch, shared 30:10 -> 6 + 2 while both have a backlog: 5 batches.
    assert_eq!(by_batch.len(), 5, "{by_batch:?}");
    let first = triples(&by_batch[&0]);
    assert_eq!(first.iter().filter(|t| t.0 == 0).count(), 6);
    assert_eq!(first.iter().filter(|t| t.0 == 1).count(), 2);
    assert!(by_batch.values().all(|b| triples(b).len() <= 8));
    let all = triples(&sink.all());
    let expected: Vec<(i32, i64, i64)> = (0..30).map(|o| (0, o, o)).chain((0..10).map(|o| (1, o, 1000 + o))).collect();
    assert_eq!(all, expected, "every record exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_crash_replays_the_uncommitted_batch_exactly() {
    let broker = Broker::new();
    broker.create_topic("d", 2).await;
    broker.produce_ids("d", 0, 0, 12);
    broker.produce_ids("d", 1, 100, 12);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let checkpoint = dir.path().join("checkpoint");
    let script = format!(
        "{}\nCREATE TABLE sink WITH (connector = 'file', path = '{}', format = 'json');\n\
         INSERT INTO sink SELECT partition, offset, id FROM events;",
        broker.events_table(
            "id BIGINT, partition INT, offset BIGINT",
            "d",
            ", starting_offsets = 'earliest', max_offsets_per_trigger = '10'"
        ),
        out.display()
    );
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&script).await.unwrap();
    let query = ctx.start(&definitions[0], checkpoint.to_str().unwrap()).await.unwrap();
    assert!(query.run_next_batch().await.unwrap());
    assert!(query.run_next_batch().await.unwrap());
    // The process dies: its context (which keeps a handle to every query it started) goes with
    // it, and so does the checkpoint's lock.
    drop(query);
    drop(ctx);
    // A crash after batch 1's output, before its commit: the restart runs batch 1 again.
    std::fs::remove_file(checkpoint.join("commits").join("1")).unwrap();
    broker.produce_ids("d", 1, 112, 3);
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&script).await.unwrap();
    let query = ctx.start(&definitions[0], checkpoint.to_str().unwrap()).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let mut got: Vec<(i64, i64, i64)> = crate::common::sink_rows_by_batch(&out)
        .into_values()
        .flatten()
        .map(|r| (r["partition"].as_i64().unwrap(), r["offset"].as_i64().unwrap(), r["id"].as_i64().unwrap()))
        .collect();
    got.sort_unstable();
    let expected: Vec<(i64, i64, i64)> = (0..12).map(|o| (0, o, o)).chain((0..15).map(|o| (1, o, 100 + o))).collect();
    assert_eq!(got, expected, "nothing lost, nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_a_listed_topic_created_mid_query_are_read_from_offset_0() {
    let broker = Broker::new();
    broker.create_topic("e1", 1).await;
    broker.produce_ids("e1", 0, 0, 2);
    let table =
        broker.events_table("id BIGINT, partition INT, offset BIGINT", "e1,e2", ", starting_offsets = 'latest'");
    let select = "INSERT INTO out SELECT topic, partition, offset, id FROM events;";
    let table = table.replace("id BIGINT,", "id BIGINT, topic STRING,");
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&format!("{table}\n{select}"), &checkpoint).await.unwrap();
    assert!(!query.run_next_batch().await.unwrap());
    broker.create_topic("e2", 2).await;
    broker.produce_ids("e2", 0, 50, 2);
    broker.produce_ids("e2", 1, 60, 1);
    broker.produce_ids("e1", 0, 2, 1);
    query.run(Trigger::AvailableNow).await.unwrap();
    let (e1, e2) = (broker.topic("e1"), broker.topic("e2"));
    let expected = [format!("{e1},0,2,2"), format!("{e2},0,0,50"), format!("{e2},0,1,51"), format!("{e2},1,0,60")];
    assert_eq!(sorted(&rows(&sink.all())), sorted(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_fails_naming_topic_partition_offset_or_is_dropped_and_counted() {
    let broker = Broker::new();
    broker.create_topic("f", 1).await;
    broker.produce(
        "f",
        0,
        &[(None, r#"{"id":1}"#), (None, r#"{"id":"two"}"#), (None, "not json"), (None, r#"{"id":4}"#)],
    );
    let columns = "id BIGINT, partition INT, offset BIGINT";
    let (_dir, checkpoint) = temp_checkpoint();
    let table = broker.events_table(columns, "f", ", starting_offsets = 'earliest'");
    let (query, _) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    let err = query.run(Trigger::AvailableNow).await.unwrap_err().to_string();
    assert!(err.contains(&format!("topic '{}' partition 0 at offset 1", broker.topic("f"))), "{err}");
    assert!(err.contains("bad_data"), "{err}");

    let (_dir, checkpoint) = temp_checkpoint();
    let table = broker.events_table(columns, "f", ", starting_offsets = 'earliest', bad_data = 'drop'");
    let (query, sink) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(triples(&sink.all()), vec![(0, 0, 1), (0, 3, 4)]);
    assert_eq!(query.recent_progress()[0].sources[0].bad_records_dropped(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_the_start_naming_it_and_options_are_checked_at_create() {
    // Nothing listens on port 1: the start fails after poll_timeout_ms with the address.
    let script = "CREATE TABLE events (id BIGINT) WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:1', \
                  topic = 't', poll_timeout_ms = '1500');\nINSERT INTO out SELECT id FROM events;";
    let (_dir, checkpoint) = temp_checkpoint();
    let started = std::time::Instant::now();
    let err = start(script, &checkpoint).await.err().unwrap().to_string();
    assert!(err.contains("127.0.0.1:1") && err.contains("poll_timeout_ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let mut ctx = StreamContext::new();
    for (options, named) in [
        ("topic = 't', colour = 'red'", "colour"),
        ("topic = 't', max_offsets_per_trigger = 'lots'", "max_offsets_per_trigger"),
        ("topic = 't', 'kafka.not.a.setting' = '1'", "not.a.setting"),
        ("max_offsets_per_trigger = '5'", "topic"),
    ] {
        let sql =
            format!("CREATE TABLE k (id BIGINT) WITH (connector = 'kafka', bootstrap_servers = 'h:1', {options});");
        let err = ctx.execute(&sql).await.err().unwrap().to_string();
        assert!(err.contains(named), "{options}: {err}");
    }
    let sql = "CREATE TABLE k (key BIGINT) WITH (connector = 'kafka', bootstrap_servers = 'h:1', topic = 't');";
    let err = ctx.execute(sql).await.err().unwrap().to_string();
    assert!(err.contains("column 'key'"), "{err}");
}

/// The January flights of `data/flights`, produced into a 4-partition topic with `sluice produce`'s
/// code, give the flight-delays example the same windows as the files.
///
/// Unkeyed (round robin over 4 partitions, ~2.5 MB each): the mock cluster keeps at most 5 MB
/// per partition and deletes the oldest message sets beyond that (its own retention), so keyed
/// by `origin` (two origins share a partition, 6.5 MB) the earliest offsets would be gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flight_delays_example_over_kafka_equals_the_same_query_over_files() {
    let broker = Broker::new();
    broker.create_topic("flights", 4).await;
    let mut files: Vec<PathBuf> =
        std::fs::read_dir("data/flights").unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    let options = ProduceOptions {
        bootstrap_servers: broker.servers.clone(),
        topic: broker.topic("flights"),
        partitions: None,
        key: None,
    };
    let produced = produce_files(&options, &files).await.unwrap();
    assert!(produced > 20_000, "{produced}");

    let console = "CREATE TABLE hourly_delays WITH (connector = 'console', output_mode = 'append', num_rows = '10');";
    let run = |script: String| async move {
        let mut ctx = StreamContext::new();
        let sink = MemorySink::new();
        let for_query = sink.clone();
        ctx.register_sink("hourly_delays", OutputMode::Append, move || Box::new(for_query.clone()));
        let definitions = ctx.execute(&script.replace(console, "")).await.unwrap();
        let (_dir, checkpoint) = temp_checkpoint();
        let query = ctx.start(&definitions[0], &checkpoint).await.unwrap();
        query.run(Trigger::AvailableNow).await.unwrap();
        let progress = query.recent_progress();
        let input: u64 = progress.iter().map(|p| p.num_input_rows).sum();
        let late: u64 = progress.iter().map(|p| p.late_rows_dropped()).sum();
        (sorted(&rows(&sink.all())), input, late, progress.len())
    };
    let kafka_example = std::fs::read_to_string("sql/examples/kafka_flight_delays.sql").unwrap();
    assert!(kafka_example.contains(console));
    let kafka_script = kafka_example
        .replace("bootstrap_servers = 'localhost:9092'", &format!("bootstrap_servers = '{}'", broker.servers))
        .replace("topic = 'flights'", &format!("topic = '{}'", broker.topic("flights")));
    let files_dir = tempfile::tempdir().unwrap();
    crate::common::copy_in_order(std::path::Path::new("data/flights"), files_dir.path());
    let file_script = std::fs::read_to_string("sql/examples/flight_delays.sql")
        .unwrap()
        .replace("path = 'data/flights'", &format!("path = '{}'", files_dir.path().display()));
    let (from_kafka, kafka_rows, kafka_late, kafka_batches) = run(kafka_script).await;
    let (from_files, file_rows, file_late, file_batches) = run(file_script).await;
    assert_eq!((kafka_rows, kafka_late), (produced, 0), "{kafka_batches} Kafka batches");
    assert_eq!((file_rows, file_late), (produced, 0), "{file_batches} file batches");
    assert!(from_files.len() > 100, "{}", from_files.len());
    assert_eq!(from_kafka.len(), from_files.len(), "windows");
    assert_eq!(from_kafka, from_files);
}

/// A batch's offsets are Spark's `KafkaSourceOffset` JSON, one offset per topic and partition,
/// from the resolved starting offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_records_its_offsets_as_json_per_topic_and_partition() {
    let broker = Broker::new();
    broker.create_topic("g", 2).await;
    broker.produce_ids("g", 0, 0, 3);
    broker.produce_ids("g", 1, 0, 1);
    let table = broker.events_table("id BIGINT, partition INT, offset BIGINT", "g", ", starting_offsets = 'earliest'");
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, _) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let source = &query.recent_progress()[0].sources[0];
    let topic = broker.topic("g");
    assert_eq!(source.start_offset, serde_json::json!({ topic.clone(): {"0": 0, "1": 0} }));
    assert_eq!(source.end_offset, serde_json::json!({ topic: {"0": 3, "1": 1} }));
    assert_eq!(source.num_input_rows, 4);
}

/// The at-least-once Kafka sink writes each row as a JSON message keyed by the `key` column;
/// the Kafka source reads them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_sink_writes_json_rows_keyed_by_a_column_and_the_source_reads_them_back() {
    let broker = Broker::new();
    broker.create_topic("in", 2).await;
    broker.create_topic("out", 1).await;
    broker.produce_ids("in", 0, 0, 3);
    broker.produce_ids("in", 1, 10, 2);
    let script = format!(
        "{}\nCREATE TABLE results WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{}', key = 'v');\n\
         INSERT INTO results SELECT id * 2 AS doubled, v FROM events;",
        broker.events_table("id BIGINT, v STRING", "in", ", starting_offsets = 'earliest'"),
        broker.servers,
        broker.topic("out")
    );
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&script).await.unwrap();
    let (_dir, checkpoint) = temp_checkpoint();
    let query = ctx.start(&definitions[0], &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(query.recent_progress()[0].sink.description, format!("KafkaSink[{}]", broker.topic("out")));

    let table = broker.events_table("doubled BIGINT, v STRING, key STRING", "out", ", starting_offsets = 'earliest'");
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) =
        start(&format!("{table}\nINSERT INTO out SELECT doubled, v, key FROM events;"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let expected: Vec<String> =
        [(0, 0), (1, 0), (2, 0), (10, 1), (11, 1)].iter().map(|(id, p)| format!("{},p{p},p{p}", id * 2)).collect();
    assert_eq!(sorted(&rows(&sink.all())), sorted(&expected));
}
