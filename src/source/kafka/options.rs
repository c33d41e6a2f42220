//! The options of the Kafka source, validated when the table is created. The names are Spark's
//! Kafka source options in snake case (`startingOffsets` is `starting_offsets`, ...).

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::StringArray;
use arrow::compute::kernels::regexp::regexp_is_match_scalar;
use rdkafka::ClientConfig;

use super::offsets::PartitionOffsets;
use crate::format::BadData;
use crate::{Result, SluiceError};

/// The options a `connector = 'kafka'` table accepts besides the `kafka.*` client settings.
pub const KAFKA_SOURCE_OPTIONS: &[&str] = &[
    "connector",
    "bootstrap_servers",
    "topic",
    "topic_pattern",
    "starting_offsets",
    "max_offsets_per_trigger",
    "fail_on_data_loss",
    "poll_timeout_ms",
    "format",
    "bad_data",
    "dead_letter_topic",
    "isolation_level",
    "commit_offsets_to_group",
    "backpressure",
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
    ("isolation.level", "use the option isolation_level"),
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

/// Which topics the source reads: Spark's `subscribe` or `subscribePattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// `topic`: one topic or a comma list, in the order given.
    Topics(Vec<String>),
    /// `topic_pattern`: every topic whose whole name matches this regular expression (Rust's
    /// `regex` syntax, close to Java's), checked again at every batch so that topics created
    /// later are read; Kafka's internal topics (`__` names) are left out, as Kafka does.
    Pattern(String),
}

impl Subscription {
    /// For each of `names`, whether the source reads that topic.
    ///
    /// # Errors
    /// A message when the pattern is not a valid regular expression.
    pub fn selects(&self, names: &[&str]) -> std::result::Result<Vec<bool>, String> {
        match self {
            Subscription::Topics(topics) => Ok(names.iter().map(|n| topics.iter().any(|t| t == n)).collect()),
            Subscription::Pattern(pattern) => {
                let array = StringArray::from(names.to_vec());
                let anchored = format!("^(?:{pattern})$");
                let matches = regexp_is_match_scalar(&array, &anchored, None).map_err(|e| e.to_string())?;
                Ok(names.iter().zip(matches.iter()).map(|(n, m)| m == Some(true) && !n.starts_with("__")).collect())
            }
        }
    }

    /// The subscription as Spark's progress describes it: `Subscribe[a,b]`, `SubscribePattern[p]`.
    pub fn describe(&self) -> String {
        match self {
            Subscription::Topics(topics) => format!("Subscribe[{}]", topics.join(",")),
            Subscription::Pattern(pattern) => format!("SubscribePattern[{pattern}]"),
        }
    }
}

/// What a record that does not fit the declared columns does (`bad_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaBadData {
    /// `fail` (default) or `drop`, as every source.
    Decode(BadData),
    /// `dead_letter`: the record is written, key and value as read, to `dead_letter_topic` with
    /// headers naming where it came from, and left out of the batch (counted as dropped).
    DeadLetter(String),
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

/// How long the broker may hold a fetch that finds no new data, ms (librdkafka's
/// `fetch.wait.max.ms`, 500 by default). The source reads offset ranges it knows exist, but the
/// consumer keeps a fetch out past the end of each batch's range, and the next batch's fetch
/// waits for it: at 500 ms every batch took up to half a second whatever its size (2.3x the
/// rows/s at 10 ms in `benches/kafka_throughput.rs`, for 1.14x the CPU). An idle source costs one
/// fetch per 10 ms per broker. `'kafka.fetch.wait.max.ms'` overrides it.
pub const FETCH_WAIT_MAX_MS: &str = "10";

/// The options of a Kafka source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceOptions {
    /// `bootstrap_servers` (Spark's `kafka.bootstrap.servers`): `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `topic` (Spark's `subscribe`) or `topic_pattern` (Spark's `subscribePattern`).
    pub subscription: Subscription,
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
    /// `bad_data` (`fail`, `drop` or `dead_letter` with `dead_letter_topic`): what a record that
    /// does not fit the declared columns does.
    pub bad_data: KafkaBadData,
    /// `isolation_level` (Spark's `kafka.isolation.level`): `read_committed` (default; records of
    /// open or aborted transactions are not read, and batches end at the last stable offset) or
    /// `read_uncommitted`.
    pub isolation_level: String,
    /// `commit_offsets_to_group` (default false): after each batch commits, its end offsets are
    /// committed to the consumer group `kafka.group.id`, for monitoring tools only (the
    /// checkpoint stays the record of what was read; a failed commit is a warning).
    pub commit_offsets_to_group: bool,
    /// `backpressure` (default false; Spark Streaming's `spark.streaming.backpressure.enabled`):
    /// under a processing-time trigger, each batch takes at most the rows the last batches
    /// processed per second times the interval (see [`crate::source::backpressure`]), besides
    /// `max_offsets_per_trigger`.
    pub backpressure: bool,
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
        let subscription = match (options.get("topic"), options.get("topic_pattern")) {
            (Some(_), Some(_)) => {
                return Err(SluiceError::sql(format!(
                    "table '{table}': give either the option topic or the option topic_pattern, not both"
                )))
            }
            (None, Some(pattern)) if pattern.trim().is_empty() => {
                return Err(bad("topic_pattern", pattern, "a regular expression matching topic names"))
            }
            (None, Some(pattern)) => {
                let subscription = Subscription::Pattern(pattern.trim().to_string());
                subscription
                    .selects(&[])
                    .map_err(|e| bad("topic_pattern", pattern, &format!("a regular expression ({e})")))?;
                subscription
            }
            _ => {
                let topic = required("topic", "events")?;
                let topics: Vec<String> = topic.split(',').map(|t| t.trim().to_string()).collect();
                if topics.iter().any(String::is_empty) {
                    return Err(bad("topic", topic, "a topic name or a comma-separated list of them"));
                }
                Subscription::Topics(topics)
            }
        };
        let positive = |option: &str| -> Result<Option<u64>> {
            let Some(value) = options.get(option) else { return Ok(None) };
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(option, value, "a positive integer")),
            }
        };
        let max_offsets_per_trigger = positive("max_offsets_per_trigger")?;
        let poll_timeout = Duration::from_millis(positive("poll_timeout_ms")?.unwrap_or(30_000));
        let flag = |option: &str, default: bool| match options.get(option).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(bad(option, &v, "'true' or 'false'")),
        };
        let fail_on_data_loss = flag("fail_on_data_loss", true)?;
        let commit_offsets_to_group = flag("commit_offsets_to_group", false)?;
        let backpressure = flag("backpressure", false)?;
        let isolation_level = match options.get("isolation_level").map(|v| v.trim().to_ascii_lowercase()) {
            None => "read_committed".to_string(),
            Some(v) if v == "read_committed" || v == "read_uncommitted" => v,
            Some(v) => return Err(bad("isolation_level", &v, "'read_committed' or 'read_uncommitted'")),
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
            let named: Vec<&str> = offsets.topics().collect();
            let selected = subscription.selects(&named).map_err(SluiceError::sql)?;
            if let Some((other, _)) = named.iter().zip(selected).find(|(_, s)| !s) {
                return Err(SluiceError::sql(format!(
                    "table '{table}': starting_offsets names topic '{other}', which the option {} does not select",
                    if matches!(subscription, Subscription::Topics(_)) { "topic" } else { "topic_pattern" }
                )));
            }
        }
        let format = match options.get("format").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("json" | "jsonl") => ValueFormat::Json,
            Some("csv") => ValueFormat::Csv,
            Some("raw") => ValueFormat::Raw,
            Some(other) => return Err(bad("format", other, "'json', 'csv' or 'raw'")),
        };
        let dead_letter_topic = options.get("dead_letter_topic").map(|t| t.trim().to_string());
        let bad_data = match (options.get("bad_data"), dead_letter_topic) {
            (Some(v), Some(topic)) if v.trim().eq_ignore_ascii_case("dead_letter") && !topic.is_empty() => {
                KafkaBadData::DeadLetter(topic)
            }
            (Some(v), _) if v.trim().eq_ignore_ascii_case("dead_letter") => {
                return Err(SluiceError::sql(format!(
                    "table '{table}': bad_data = 'dead_letter' needs the option dead_letter_topic, the topic to write \
                     malformed records to"
                )))
            }
            (_, Some(_)) => {
                return Err(SluiceError::sql(format!(
                    "table '{table}': dead_letter_topic is only used with bad_data = 'dead_letter'"
                )))
            }
            (Some(v), None) => KafkaBadData::Decode(
                BadData::parse(v)
                    .map_err(|_| bad("bad_data", v, "'fail', 'drop' or 'dead_letter' (with dead_letter_topic)"))?,
            ),
            (None, None) => KafkaBadData::Decode(BadData::Fail),
        };
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
        if commit_offsets_to_group && !client_settings.contains_key("group.id") {
            return Err(SluiceError::sql(format!(
                "table '{table}': commit_offsets_to_group = 'true' needs the option '{CLIENT_OPTION_PREFIX}group.id', the \
                 consumer group to commit the offsets to"
            )));
        }
        let parsed = Self {
            bootstrap_servers,
            subscription,
            starting_offsets,
            max_offsets_per_trigger,
            fail_on_data_loss,
            poll_timeout,
            format,
            bad_data,
            isolation_level,
            commit_offsets_to_group,
            backpressure,
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
    /// offsets, exact ranges, a [`FETCH_WAIT_MAX_MS`] fetch wait); `group_id` unless
    /// `kafka.group.id` is set.
    pub fn client_config(&self, group_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            .set("allow.auto.create.topics", "false")
            .set("isolation.level", &self.isolation_level);
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
        assert_eq!(o.subscription, Subscription::Topics(vec!["a".into(), "b".into()]));
        assert_eq!((o.isolation_level.as_str(), o.commit_offsets_to_group), ("read_committed", false));
        assert_eq!(o.client_config("g").get("isolation.level"), Some("read_committed"));
        assert_eq!(o.client_config("g").get("fetch.wait.max.ms"), Some(FETCH_WAIT_MAX_MS));
        let waiting = parse(&[("topic", "t"), ("kafka.fetch.wait.max.ms", "500")]).unwrap();
        assert_eq!(waiting.client_config("g").get("fetch.wait.max.ms"), Some("500"), "the user's setting wins");
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
            ("isolation_level", "dirty"),
            ("commit_offsets_to_group", "sometimes"),
            ("backpressure", "on"),
            ("bad_data", "ignore"),
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

    fn parse(pairs: &[(&str, &str)]) -> Result<KafkaSourceOptions> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([("bootstrap_servers".into(), "h:1".into())])
            .collect();
        KafkaSourceOptions::parse("k", &map)
    }

    #[test]
    fn topic_pattern_matches_whole_names_but_not_internal_topics() {
        let o = parse(&[("topic_pattern", "ev-.*")]).unwrap();
        assert_eq!(o.subscription.describe(), "SubscribePattern[ev-.*]");
        let names = ["ev-a", "ev-b", "xev-a", "ev", "__ev-x"];
        assert_eq!(o.subscription.selects(&names).unwrap(), vec![true, true, false, false, false]);
        let err = parse(&[("topic_pattern", "ev-(")]).unwrap_err().to_string();
        assert!(err.contains("topic_pattern") && err.contains("ev-("), "{err}");
        let err = parse(&[("topic_pattern", "a"), ("topic", "a")]).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        let err =
            parse(&[("topic_pattern", "ev-.*"), ("starting_offsets", r#"{"other":{"0":1}}"#)]).unwrap_err().to_string();
        assert!(err.contains("topic 'other'") && err.contains("topic_pattern"), "{err}");
        assert!(parse(&[("topic_pattern", "ev-.*"), ("starting_offsets", r#"{"ev-a":{"0":1}}"#)]).is_ok());
    }

    #[test]
    fn isolation_level_group_commits_and_dead_letters() {
        let o = parse(&[("topic", "t"), ("isolation_level", "READ_UNCOMMITTED")]).unwrap();
        assert_eq!(o.client_config("g").get("isolation.level"), Some("read_uncommitted"));
        let err = parse(&[("topic", "t"), ("kafka.isolation.level", "read_uncommitted")]).unwrap_err().to_string();
        assert!(err.contains("isolation_level"), "{err}");

        let o = parse(&[("topic", "t"), ("commit_offsets_to_group", "true"), ("kafka.group.id", "watch")]).unwrap();
        assert!(o.commit_offsets_to_group);
        assert_eq!(o.client_config("generated").get("group.id"), Some("watch"));
        let err = parse(&[("topic", "t"), ("commit_offsets_to_group", "true")]).unwrap_err().to_string();
        assert!(err.contains("kafka.group.id"), "{err}");

        let o = parse(&[("topic", "t"), ("bad_data", "dead_letter"), ("dead_letter_topic", "bad")]).unwrap();
        assert_eq!(o.bad_data, KafkaBadData::DeadLetter("bad".into()));
        let err = parse(&[("topic", "t"), ("bad_data", "dead_letter")]).unwrap_err().to_string();
        assert!(err.contains("dead_letter_topic"), "{err}");
        let err = parse(&[("topic", "t"), ("bad_data", "drop"), ("dead_letter_topic", "bad")]).unwrap_err().to_string();
        assert!(err.contains("dead_letter_topic"), "{err}");
        assert_eq!(
            parse(&[("topic", "t"), ("bad_data", "drop")]).unwrap().bad_data,
            KafkaBadData::Decode(BadData::Drop)
        );
    }
}
