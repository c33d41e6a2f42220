//! Writing JSON lines files into a Kafka topic, as `sluice produce` does: test data and demos
//! for queries reading a Kafka source. The Kafka source and sink themselves are declared in SQL
//! (`CREATE TABLE ... WITH (connector = 'kafka', ...)`) or with the DataFrame API
//! (`format("kafka")`).

pub use crate::source::kafka::produce::{produce_files, ProduceOptions};
