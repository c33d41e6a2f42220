//! The options of the Kafka source, validated when the table is created. The names are Spark's
//! Kafka source options in snake case (`startingOffsets` is `starting_offsets`, ...).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use super::offsets::PartitionOffsets;
use crate::format::BadData;
use crate::{Result, SluiceError};

/// The options a `connector = 'kafka'` table accepts besides the `kafka.*` client settings.
pub const KAFKA_SOURCE_OPTIONS: &[&str] = &[
    "connector",
    "bootstrap_servers",
    "topic",
    "starting_offsets",
    "max_offsets_per_trigger",
    "fail_on_data_loss",
    "poll_timeout_ms",
    "format",
    "bad_data",
];

/// The prefix of options passed to the Kafka client as they are, without it (Spark's `kafka.`).
pub const CLIENT_OPTION_PREFIX: &str = "kafka.";

/// Client settings sluice sets itself to read exact offset ranges; setting them is refused, as
/// Spark refuses `kafka.auto.offset.reset` and `kafka.enable.auto.commit`.
const RESERVED_CLIENT_SETTINGS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use the option bootstrap_servers"),
    ("auto.offset.reset", "use the option starting_offsets"),
    ("enable.auto.commit", "sluice tracks offsets in its checkpoint"),
    ("enable.auto.offset.store", "sluice tracks offsets in its checkpoint"),
    ("enable.partition.eof", "sluice reads planned offset ranges"),
];

/// Where a new query starts reading (Spark's `startingOffsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    /// `earliest`: the oldest offset each partition still holds.
    Earliest,
    /// `latest` (the default): only records produced after the query starts.
    Latest,
    /// Spark's JSON, `{"topic":{"0":23,"1":-2}}`: an offset per partition, `-2` for the earliest,
    /// `-1` for the latest.
    Specific(PartitionOffsets),
}

/// How a message's value becomes the declared columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// A JSON object per value, decoded into the declared columns (as the file source's JSON).
    Json,
    /// One CSV line per value, its fields taken by position in the declared columns.
    Csv,
    /// The value itself in a column `value` (STRING: valid UTF-8; BINARY: the bytes), as
    /// Spark's Kafka source gives it.
    Raw,
}

/// The options of a Kafka source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceOptions {
    /// `bootstrap_servers` (Spark's `kafka.bootstrap.servers`): `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `topic` (Spark's `subscribe`): one topic or a comma list, in the order given.
    pub topics: Vec<String>,
    /// `starting_offsets`; default `latest`, as in Spark.
    pub starting_offsets: StartingOffsets,
    /// `max_offsets_per_trigger`: at most this many offsets per batch over all partitions, spread
    /// over the partitions in proportion to their backlog; default no limit.
    pub max_offsets_per_trigger: Option<u64>,
    /// `fail_on_data_loss` (default true): offsets deleted before they were read (retention) or
    /// going backwards stop the query; false: skipped with a warning.
    pub fail_on_data_loss: bool,
    /// `poll_timeout_ms` (Spark's `kafkaConsumer.pollTimeoutMs`): how long a request to the
    /// brokers may take, and how long a read may go without receiving a record, before the query
    /// fails; default 30 s.
    pub poll_timeout: Duration,
    /// `format`: `json` (default), `csv` or `raw`.
    pub format: ValueFormat,
    /// `bad_data`: what a record that does not fit the declared columns does.
    pub bad_data: BadData,
    /// The `kafka.*` options without the prefix, handed to librdkafka as they are.
    pub client_settings: BTreeMap<String, String>,
}

impl KafkaSourceOptions {
    /// The options of table `table` from its `WITH (...)` options (keys lower-cased).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option when `bootstrap_servers` or `topic` is missing or
    /// empty, a value is not of its kind (`max_offsets_per_trigger` and `poll_timeout_ms`
    /// positive integers, `fail_on_data_loss` true or false, `starting_offsets` earliest, latest
    /// or Spark's JSON), `format` is not json, csv or raw, a `kafka.*` setting is one sluice sets
    /// itself, or librdkafka does not know a `kafka.*` setting or refuses its value.
    pub fn parse(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let bad = |option: &str, value: &str, expected: &str| {
            SluiceError::sql(format!("table '{table}': option {option} must be {expected}, got '{value}'"))
        };
        let required = |option: &str, example: &str| {
            options.get(option).map(|v| v.trim()).filter(|v| !v.is_empty()).ok_or_else(|| {
                SluiceError::sql(format!(
                    "kafka table '{table}' needs the option {option}, e.g. {option} = '{example}'"
                ))
            })
        };
        let bootstrap_servers = required("bootstrap_servers", "localhost:9092")?.to_string();
        let topic = required("topic", "events")?;
        let topics: Vec<String> = topic.split(',').map(|t| t.trim().to_string()).collect();
        if topics.iter().any(String::is_empty) {
            return Err(bad("topic", topic, "a topic name or a comma-separated list of them"));
        }
        let positive = |option: &str| -> Result<Option<u64>> {
            let Some(value) = options.get(option) else { return Ok(None) };
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(option, value, "a positive integer")),
            }
        };
        let max_offsets_per_trigger = positive("max_offsets_per_trigger")?;
        let poll_timeout = Duration::from_millis(positive("poll_timeout_ms")?.unwrap_or(30_000));
        let fail_on_data_loss = match options.get("fail_on_data_loss").map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(v) => return Err(bad("fail_on_data_loss", &v, "'true' or 'false'")),
        };
        let starting_offsets = match options.get("starting_offsets") {
            None => StartingOffsets::Latest,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "earliest" => StartingOffsets::Earliest,
                "latest" => StartingOffsets::Latest,
                _ => StartingOffsets::Specific(PartitionOffsets::parse_starting(value).map_err(|e| {
                    bad(
                        "starting_offsets",
                        value,
                        &format!("'earliest', 'latest' or JSON such as {{\"topic\":{{\"0\":23,\"1\":-2}}}} ({e})"),
                    )
                })?),
            },
        };
        if let StartingOffsets::Specific(offsets) = &starting_offsets {
            if let Some(other) = offsets.topics().find(|t| !topics.iter().any(|s| s.as_str() == *t)) {
                return Err(SluiceError::sql(format!(
                    "table '{table}': starting_offsets names topic '{other}', which the option topic does not list"
                )));
            }
        }
        let format = match options.get("format").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("json" | "jsonl") => ValueFormat::Json,
            Some("csv") => ValueFormat::Csv,
            Some("raw") => ValueFormat::Raw,
            Some(other) => return Err(bad("format", other, "'json', 'csv' or 'raw'")),
        };
        let bad_data = options.get("bad_data").map(|v| BadData::parse(v)).transpose()?.unwrap_or_default();
        let client_settings: BTreeMap<String, String> = options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(CLIENT_OPTION_PREFIX).map(|k| (k.to_string(), v.clone())))
            .collect();
        for (key, why) in RESERVED_CLIENT_SETTINGS {
            if client_settings.contains_key(*key) {
                return Err(SluiceError::sql(format!(
                    "table '{table}': option '{CLIENT_OPTION_PREFIX}{key}' cannot be set: {why}"
                )));
            }
        }
        let parsed = Self {
            bootstrap_servers,
            topics,
            starting_offsets,
            max_offsets_per_trigger,
            fail_on_data_loss,
            poll_timeout,
            format,
            bad_data,
            client_settings,
        };
        // librdkafka checks every setting's name and value without connecting.
        parsed.client_config("check").create_native_config().map_err(|e| {
            SluiceError::sql(format!(
                "table '{table}': the Kafka client refuses the {CLIENT_OPTION_PREFIX}* options: {e}"
            ))
        })?;
        Ok(parsed)
    }

    /// The consumer configuration: the `kafka.*` settings over sluice's (no consumer group
    /// offsets, exact ranges); `group_id` unless `kafka.group.id` is set.
    pub fn client_config(&self, group_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false");
        for (key, value) in &self.client_settings {
            config.set(key, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Result<KafkaSourceOptions> {
        let mut map: BTreeMap<String, String> = [("bootstrap_servers", "localhost:9092"), ("topic", "a, b")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        map.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        KafkaSourceOptions::parse("k", &map)
    }

    #[test]
    fn defaults_follow_spark() {
        let o = options(&[]).unwrap();
        assert_eq!(o.topics, vec!["a", "b"]);
        assert_eq!(o.starting_offsets, StartingOffsets::Latest);
        assert_eq!((o.max_offsets_per_trigger, o.fail_on_data_loss, o.format), (None, true, ValueFormat::Json));
        assert_eq!(o.poll_timeout, Duration::from_secs(30));
        let o = options(&[("starting_offsets", "EARLIEST"), ("kafka.client.id", "me"), ("format", "raw")]).unwrap();
        assert_eq!((o.starting_offsets, o.format), (StartingOffsets::Earliest, ValueFormat::Raw));
        assert_eq!(o.client_settings["client.id"], "me");
        let o = options(&[("starting_offsets", r#"{"a":{"0":5,"1":-2}}"#)]).unwrap();
        let StartingOffsets::Specific(offsets) = o.starting_offsets else { panic!("{o:?}") };
        assert_eq!((offsets.get("a", 0), offsets.get("a", 1), offsets.get("b", 0)), (Some(5), Some(-2), None));
    }

    #[test]
    fn bad_values_name_the_option() {
        for (option, value) in [
            ("max_offsets_per_trigger", "0"),
            ("max_offsets_per_trigger", "many"),
            ("poll_timeout_ms", "-1"),
            ("fail_on_data_loss", "maybe"),
            ("starting_offsets", "soonest"),
            ("starting_offsets", r#"{"a":{"x":1}}"#),
            ("starting_offsets", r#"{"a":{"0":-3}}"#),
            ("format", "avro"),
            ("topic", "a,,b"),
        ] {
            let err = options(&[(option, value)]).unwrap_err().to_string();
            assert!(err.contains(option) && err.contains(value), "{option} = {value}: {err}");
        }
        let err = options(&[("starting_offsets", r#"{"c":{"0":1}}"#)]).unwrap_err().to_string();
        assert!(err.contains("topic 'c'"), "{err}");
        let err = options(&[("kafka.auto.offset.reset", "latest")]).unwrap_err().to_string();
        assert!(err.contains("kafka.auto.offset.reset") && err.contains("starting_offsets"), "{err}");
        let err = options(&[("kafka.no.such.setting", "1")]).unwrap_err().to_string();
        assert!(err.contains("no.such.setting"), "{err}");
        let err = KafkaSourceOptions::parse("k", &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("bootstrap_servers"), "{err}");
    }
}
