//! The options of the exactly-once Kafka sink (`delivery = 'exactly_once'`), checked when the
//! query starts. Its crash tests step the sink through its internal phases and live beside it, in
//! `src/sink/kafka/exactly_once_tests.rs`.

use sluice::StreamContext;

use crate::kafka_source::temp_checkpoint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_transactional_id_options_are_checked() {
    for (options, named) in [
        ("delivery = 'twice'", "twice"),
        ("delivery = 'exactly_once', 'kafka.transactional.id' = 'mine'", "kafka.transactional.id"),
    ] {
        let sql = format!(
            "CREATE TABLE out WITH (connector = 'kafka', bootstrap_servers = 'h:1', topic = 't', {options});\n\
             CREATE TABLE events (id BIGINT) WITH (connector = 'kafka', bootstrap_servers = 'h:1', topic = 'i');\n\
             INSERT INTO out SELECT id FROM events;"
        );
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(&sql).await.unwrap();
        let (_dir, checkpoint) = temp_checkpoint();
        let err = ctx.start(&definitions[0], &checkpoint).await.err().unwrap().to_string();
        assert!(err.contains(named) && err.contains("table 'out'"), "{options}: {err}");
    }
}
