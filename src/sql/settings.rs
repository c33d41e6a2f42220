//! `SET key = 'value'` in a script and [`crate::StreamContext::set`]: sluice's options, under
//! Spark's own keys where Spark has the option (so a Spark job's settings carry over), under
//! `sluice.*` for sluice's own, and DataFusion's `datafusion.*` keys passed through to its config.

use crate::operator::watermark::MultipleWatermarkPolicy;
use crate::state::config::MIN_ROCKSDB_MEMORY_BYTES;
use crate::state::store::MAX_STATE_PARTITIONS;
use crate::state::StateStoreKind;
use crate::{Result, SluiceError};

/// `spark.sql.streaming.multipleWatermarkPolicy`: `min` (default) or `max`.
pub const WATERMARK_POLICY: &str = "spark.sql.streaming.multipleWatermarkPolicy";
/// `spark.sql.session.timeZone`: the session time zone (`UTC`, `Europe/Paris`, `+02:00`).
pub const SESSION_TIME_ZONE: &str = "spark.sql.session.timeZone";
/// `spark.sql.shuffle.partitions`: the number of state partitions of a new query, 1 to
/// [`MAX_STATE_PARTITIONS`].
pub const SHUFFLE_PARTITIONS: &str = "spark.sql.shuffle.partitions";
/// `sluice.sql.spark_functions`: `true` makes Spark's versions of functions DataFusion also has
/// (`concat`, `round`, ...) replace DataFusion's, and `/` between integers give a DOUBLE.
pub const SPARK_FUNCTIONS: &str = "sluice.sql.spark_functions";

/// `sluice.state_store`: where a new query keeps its state, `memory` (default) or `rocksdb` (state
/// larger than memory, on the local disk). A checkpoint keeps the store it was started with.
pub const STATE_STORE: &str = "sluice.state_store";
/// `sluice.state_store.rocksdb.memory_bytes`: the memory of a query's RocksDB instances (block
/// cache and write buffers), bytes; default 268435456 (256 MiB).
pub const ROCKSDB_MEMORY_BYTES: &str = "sluice.state_store.rocksdb.memory_bytes";
/// `sluice.state_store.rocksdb.local_dir`: the directory under which a query's RocksDB instances
/// live while it runs; default the system's temporary directory.
pub const ROCKSDB_LOCAL_DIR: &str = "sluice.state_store.rocksdb.local_dir";

/// The keys sluice accepts besides `datafusion.*`.
pub const KEYS: [&str; 7] = [
    WATERMARK_POLICY,
    SESSION_TIME_ZONE,
    SHUFFLE_PARTITIONS,
    SPARK_FUNCTIONS,
    STATE_STORE,
    ROCKSDB_MEMORY_BYTES,
    ROCKSDB_LOCAL_DIR,
];

/// One parsed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// How the watermarks of several inputs combine.
    WatermarkPolicy(MultipleWatermarkPolicy),
    /// The session time zone, as given (validated by arrow's time zone parser).
    TimeZone(String),
    /// State partitions of queries started from now on (a query's checkpoint keeps the number it
    /// was first started with, as Spark's does).
    StatePartitions(usize),
    /// Whether datafusion-spark's functions replace DataFusion's of the same name.
    SparkFunctions(bool),
    /// The state store of queries started from now on (a checkpoint keeps the one it was first
    /// started with).
    StateStore(StateStoreKind),
    /// The memory of a query's RocksDB instances, bytes.
    RocksDbMemoryBytes(usize),
    /// Where a query's RocksDB instances live.
    RocksDbLocalDir(std::path::PathBuf),
    /// A DataFusion configuration key, e.g. `datafusion.execution.batch_size`, checked by
    /// DataFusion when applied.
    DataFusion {
        /// The full key.
        key: String,
        /// The value as written.
        value: String,
    },
}

impl Setting {
    /// Parses `key` (case-insensitive, as Spark's SQL conf keys) and `value`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the key for an unknown key (listing the accepted ones) or a
    /// value the key does not take.
    pub fn parse(key: &str, value: &str) -> Result<Setting> {
        let bad = |expected: &str| SluiceError::sql(format!("SET {key}: expected {expected}, got '{value}'"));
        let value = value.trim();
        if key.to_ascii_lowercase().starts_with("datafusion.") {
            return Ok(Setting::DataFusion { key: key.to_string(), value: value.to_string() });
        }
        let Some(known) = KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) else {
            return Err(SluiceError::sql(format!(
                "unknown setting '{key}'; accepted: {}, and DataFusion's datafusion.* keys",
                KEYS.join(", ")
            )));
        };
        match *known {
            WATERMARK_POLICY => {
                MultipleWatermarkPolicy::parse(value).map(Setting::WatermarkPolicy).map_err(|_| bad("'min' or 'max'"))
            }
            SESSION_TIME_ZONE => {
                value
                    .parse::<arrow::array::timezone::Tz>()
                    .map_err(|_| bad("a time zone such as 'UTC', 'Europe/Paris' or '+02:00'"))?;
                Ok(Setting::TimeZone(value.to_string()))
            }
            SHUFFLE_PARTITIONS => value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_STATE_PARTITIONS).contains(n))
                .map(Setting::StatePartitions)
                .ok_or_else(|| bad(&format!("a number of partitions from 1 to {MAX_STATE_PARTITIONS}"))),
            STATE_STORE => StateStoreKind::parse(value).map(Setting::StateStore).ok_or_else(|| {
                let names: Vec<String> = StateStoreKind::ALL.iter().map(|k| format!("'{}'", k.name())).collect();
                bad(&names.join(" or "))
            }),
            ROCKSDB_MEMORY_BYTES => value
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= MIN_ROCKSDB_MEMORY_BYTES)
                .map(Setting::RocksDbMemoryBytes)
                .ok_or_else(|| bad(&format!("a number of bytes of at least {MIN_ROCKSDB_MEMORY_BYTES}"))),
            ROCKSDB_LOCAL_DIR if !value.is_empty() => Ok(Setting::RocksDbLocalDir(value.into())),
            ROCKSDB_LOCAL_DIR => Err(bad("a directory")),
            _ => match value.to_ascii_lowercase().as_str() {
                "true" => Ok(Setting::SparkFunctions(true)),
                "false" => Ok(Setting::SparkFunctions(false)),
                _ => Err(bad("'true' or 'false'")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_keys_parse_case_insensitively() {
        assert_eq!(
            Setting::parse("spark.sql.streaming.multiplewatermarkpolicy", "MAX").unwrap(),
            Setting::WatermarkPolicy(MultipleWatermarkPolicy::Max)
        );
        assert_eq!(Setting::parse("spark.sql.shuffle.partitions", "4").unwrap(), Setting::StatePartitions(4));
        assert_eq!(
            Setting::parse("spark.sql.session.timeZone", "Europe/Paris").unwrap(),
            Setting::TimeZone("Europe/Paris".into())
        );
        assert_eq!(Setting::parse("sluice.sql.spark_functions", "true").unwrap(), Setting::SparkFunctions(true));
        assert_eq!(
            Setting::parse("sluice.state_store", "RocksDB").unwrap(),
            Setting::StateStore(StateStoreKind::RocksDb)
        );
        assert_eq!(
            Setting::parse("sluice.state_store.rocksdb.memory_bytes", "67108864").unwrap(),
            Setting::RocksDbMemoryBytes(64 << 20)
        );
    }

    #[test]
    fn bad_keys_and_values_are_refused_by_name() {
        let err = Setting::parse("spark.sql.shuffle.partitionz", "4").unwrap_err().to_string();
        assert!(err.contains("'spark.sql.shuffle.partitionz'") && err.contains(SHUFFLE_PARTITIONS), "{err}");
        let err = Setting::parse("spark.sql.shuffle.partitions", "0").unwrap_err().to_string();
        assert!(err.contains("from 1 to 1000"), "{err}");
        // Found running the sql_script fuzz target on boundary values: a million partitions
        // stalled the first batch (a state file per partition per batch), 10^11 aborted the
        // process allocating them.
        assert_eq!(Setting::parse("spark.sql.shuffle.partitions", "1000").unwrap(), Setting::StatePartitions(1000));
        for too_many in ["1001", "1000000", "100000000000"] {
            let err = Setting::parse("spark.sql.shuffle.partitions", too_many).unwrap_err().to_string();
            assert!(err.contains("from 1 to 1000") && err.contains(too_many), "{err}");
        }
        let err = Setting::parse("spark.sql.session.timeZone", "Mars/Olympus").unwrap_err().to_string();
        assert!(err.contains("Mars/Olympus"), "{err}");
        let err = Setting::parse("sluice.state_store", "hdfs").unwrap_err().to_string();
        assert!(err.contains("'memory' or 'rocksdb'") && err.contains("hdfs"), "{err}");
        for bad in ["1000", "-1", "64MB", ""] {
            let err = Setting::parse("sluice.state_store.rocksdb.memory_bytes", bad).unwrap_err().to_string();
            assert!(err.contains("at least 4194304"), "{err}");
        }
    }
}
