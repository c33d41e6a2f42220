//! The Kafka source's `topic_pattern`, `commit_offsets_to_group` and `bad_data = 'dead_letter'`
//! on the Kafka protocol (the mock cluster, or `SLUICE_KAFKA_BOOTSTRAP`'s broker).
//! `isolation_level` is tested where the consumer's settings are made (`options.rs`): the mock
//! cluster neither writes transaction markers nor filters aborted transactions, so
//! `read_committed` and `read_uncommitted` read the same records from it.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::Trigger;

use crate::common::{rows, sorted};
use crate::kafka_source::{start, temp_checkpoint, triples, Broker, SELECT_TRIPLES};

/// Topics whose whole name matches `topic_pattern` are read, those created mid-query from offset
/// 0; others are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_pattern_reads_every_matching_topic_and_picks_up_new_ones() {
    let broker = Broker::new();
    broker.create_topic("pat-a", 1).await;
    broker.create_topic("other", 1).await;
    broker.create_topic("xpat-c", 1).await;
    broker.produce_ids("pat-a", 0, 0, 2);
    broker.produce_ids("other", 0, 100, 2);
    broker.produce_ids("xpat-c", 0, 200, 2);
    let pattern = format!("{}pat-.*", broker.topic(""));
    let table = format!(
        "CREATE TABLE events (id BIGINT, topic STRING) WITH (connector = 'kafka', bootstrap_servers = '{}', \
         topic_pattern = '{pattern}', starting_offsets = 'earliest');",
        broker.servers
    );
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) =
        start(&format!("{table}\nINSERT INTO out SELECT topic, id FROM events;"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    let (a, b) = (broker.topic("pat-a"), broker.topic("pat-b"));
    assert_eq!(sorted(&rows(&sink.all())), sorted(&[format!("{a},0"), format!("{a},1")]));
    assert_eq!(query.recent_progress()[0].sources[0].description, format!("KafkaV2[SubscribePattern[{pattern}]]"));

    broker.create_topic("pat-b", 2).await;
    broker.produce_ids("pat-b", 1, 10, 1);
    broker.produce_ids("other", 0, 102, 1);
    query.run(Trigger::AvailableNow).await.unwrap();
    let expected = [format!("{a},0"), format!("{a},1"), format!("{b},10")];
    assert_eq!(sorted(&rows(&sink.all())), sorted(&expected));
}

/// With `commit_offsets_to_group`, the group `kafka.group.id` holds each committed batch's end
/// offsets (for monitoring; the checkpoint still decides what is read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_batches_commit_their_end_offsets_to_the_consumer_group() {
    let broker = Broker::new();
    broker.create_topic("grp", 2).await;
    broker.produce_ids("grp", 0, 0, 5);
    broker.produce_ids("grp", 1, 100, 3);
    let group = format!("{}monitor", broker.topic(""));
    let table = broker.events_table(
        "id BIGINT, partition INT, offset BIGINT",
        "grp",
        &format!(", starting_offsets = 'earliest', commit_offsets_to_group = 'true', 'kafka.group.id' = '{group}'"),
    );
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(triples(&sink.all()).len(), 8);

    let topic = broker.topic("grp");
    let watcher: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &broker.servers).set("group.id", &group).create().unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(&topic, 0);
    partitions.add_partition(&topic, 1);
    let committed = watcher.committed_offsets(partitions, Duration::from_secs(10)).unwrap();
    let offsets: Vec<(i32, Offset)> = committed.elements().iter().map(|e| (e.partition(), e.offset())).collect();
    assert_eq!(offsets, vec![(0, Offset::Offset(5)), (1, Offset::Offset(3))]);
}

/// Malformed records go to `dead_letter_topic` as read, with headers naming their topic,
/// partition and offset; the batch goes on with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_and_the_batch_goes_on() {
    let broker = Broker::new();
    broker.create_topic("dl", 1).await;
    broker.create_topic("dl-bad", 1).await;
    broker.produce(
        "dl",
        0,
        &[(None, r#"{"id":1}"#), (Some("k"), r#"{"id":"two"}"#), (None, "not json"), (None, r#"{"id":4}"#)],
    );
    let table = broker.events_table(
        "id BIGINT, partition INT, offset BIGINT",
        "dl",
        &format!(
            ", starting_offsets = 'earliest', bad_data = 'dead_letter', dead_letter_topic = '{}'",
            broker.topic("dl-bad")
        ),
    );
    let (_dir, checkpoint) = temp_checkpoint();
    let (query, sink) = start(&format!("{table}\n{SELECT_TRIPLES}"), &checkpoint).await.unwrap();
    query.run(Trigger::AvailableNow).await.unwrap();
    assert_eq!(triples(&sink.all()), vec![(0, 0, 1), (0, 3, 4)]);
    assert_eq!(query.recent_progress()[0].sources[0].bad_records_dropped(), 2);

    let reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &broker.servers).set("group.id", "dl-reader").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&broker.topic("dl-bad"), 0, Offset::Beginning).unwrap();
    reader.assign(&assignment).unwrap();
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while letters.len() < 2 && std::time::Instant::now() < deadline {
        let Some(message) = reader.poll(Duration::from_millis(100)) else { continue };
        let m = message.unwrap();
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).to_string());
        let headers: Vec<(String, String)> = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), text(h.value).unwrap_or_default())).collect())
            .unwrap_or_default();
        letters.push((text(m.key()), text(m.payload()), headers));
    }
    let source = |offset: &str| {
        vec![
            ("sluice.errors.topic".to_string(), broker.topic("dl")),
            ("sluice.errors.partition".to_string(), "0".to_string()),
            ("sluice.errors.offset".to_string(), offset.to_string()),
        ]
    };
    assert_eq!(
        letters,
        vec![
            (Some("k".to_string()), Some(r#"{"id":"two"}"#.to_string()), source("1")),
            (None, Some("not json".to_string()), source("2")),
        ]
    );
}

/// A memory sink that takes 1 ms per row, as a slow consumer would.
struct SlowSink(sluice::sink::MemorySink);

impl sluice::sink::Sink for SlowSink {
    fn add_batch(
        &mut self,
        batch_id: u64,
        schema: &arrow::datatypes::SchemaRef,
        batches: &[arrow::record_batch::RecordBatch],
    ) -> sluice::Result<()> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        std::thread::sleep(Duration::from_millis(rows as u64));
        self.0.add_batch(batch_id, schema, batches)
    }
}

/// With `backpressure`, a sink slower than the backlog brings batches down to what it processes
/// in one trigger interval (about 1000 rows/s over 200 ms here), below `max_offsets_per_trigger`,
/// and progress reports the limit. The bounds are loose: they only tell the limit took effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_keeps_batches_near_the_trigger_interval() {
    let broker = Broker::new();
    broker.create_topic("bp", 1).await;
    broker.produce_ids("bp", 0, 0, 4000);
    let table = broker.events_table(
        "id BIGINT",
        "bp",
        ", starting_offsets = 'earliest', max_offsets_per_trigger = '500', backpressure = 'true'",
    );
    let mut ctx = sluice::StreamContext::new();
    let sink = sluice::sink::MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", sluice::OutputMode::Append, move || Box::new(SlowSink(for_query.clone())));
    let definitions = ctx.execute(&format!("{table}\nINSERT INTO out SELECT id FROM events;")).await.unwrap();
    let (_dir, checkpoint) = temp_checkpoint();
    let query = ctx.start(&definitions[0], &checkpoint).await.unwrap();
    let stop = query.stop_handle();
    query.on_progress(move |p| {
        if p.batch_id >= 6 {
            stop.stop();
        }
    });
    query.run(Trigger::ProcessingTime(Duration::from_millis(200))).await.unwrap();
    let sizes: Vec<usize> = sink.batches().values().map(|b| b.iter().map(|b| b.num_rows()).sum()).collect();
    assert!(sizes.len() >= 7, "{sizes:?}");
    // Batch 0 measures, batch 1 sets the first rate: both take max_offsets_per_trigger.
    assert_eq!(&sizes[..2], &[500, 500], "{sizes:?}");
    assert!(sizes[2..].iter().all(|&n| (1..=350).contains(&n)), "{sizes:?}");
    let progress = query.recent_progress();
    let last = &progress.iter().rev().find(|p| p.num_input_rows > 0).unwrap().sources[0];
    let limit: u64 = last.metrics["backpressureMaxOffsets"].parse().unwrap();
    assert!((1..=350).contains(&limit), "{:?}", last.metrics);
    assert!(last.metrics.contains_key("backpressureRate"), "{:?}", last.metrics);
}
