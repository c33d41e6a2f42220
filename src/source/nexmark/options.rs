//! The Nexmark source's table options (`stream`, `first_event_rate`, `num_events`, ...), checked
//! with errors naming the option.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Result, SluiceError};

/// Which of the three Nexmark streams a table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NexmarkStream {
    /// People registering to sell or bid.
    Person,
    /// Auctions opening.
    Auction,
    /// Bids on auctions.
    Bid,
}

impl NexmarkStream {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }
}

/// The options of the Nexmark source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmarkOptions {
    /// `stream`: `person`, `auction` or `bid`; required.
    pub stream: NexmarkStream,
    /// `seed`: the seed of the random values, a non-negative integer; default 0.
    pub seed: u64,
    /// `first_event_rate`: events (of all three kinds) per second of event time, which spaces the
    /// events' `date_time`s; default 10,000 (Beam's `firstEventRate`), positive.
    pub first_event_rate: u64,
    /// `num_events`: how many events (of all three kinds) the stream has; absent, unbounded.
    pub num_events: Option<u64>,
    /// `num_partitions`: the consecutive runs of event numbers a batch is cut into, each generated
    /// on its own thread into its own record batch; default 1, at most 1024.
    pub num_partitions: usize,
    /// `max_events_per_trigger`: at most this many events (of all kinds) a batch; default 100,000.
    pub max_events_per_trigger: u64,
    /// `is_rate_limited` (Beam's `isRateLimited`): when true, event `n` becomes available once the
    /// wall clock reaches the stream's start time plus `⌊n × 1000 / first_event_rate⌋` ms, so the
    /// stream flows at `first_event_rate` events per second of wall clock; default false (every
    /// event at once).
    pub is_rate_limited: bool,
    /// `use_wallclock_event_time` (Beam's `useWallclockEventTime`): when true, event 0 happens at
    /// the stream's start time instead of Beam's base time 2015-07-15T00:00:00Z; default false.
    pub use_wallclock_event_time: bool,
    /// `start_time_ms`: the stream's start time, ms since the epoch (as Spark's `rate-micro-batch`
    /// `startTimestamp`); default the wall clock when the query first runs, recorded in the
    /// checkpoint.
    pub start_time_ms: Option<i64>,
}

/// The options a `nexmark` table accepts.
pub(crate) const NEXMARK_OPTIONS: &[&str] = &[
    "connector",
    "stream",
    "seed",
    "first_event_rate",
    "num_events",
    "num_partitions",
    "max_events_per_trigger",
    "is_rate_limited",
    "use_wallclock_event_time",
    "start_time_ms",
];

impl NexmarkOptions {
    /// The options of table `table` from its `WITH (...)` options (keys lower-cased; `connector`
    /// is not checked here).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option: `stream` missing or not one of the three,
    /// `first_event_rate`, `num_events`, `num_partitions` (at most 1024) or
    /// `max_events_per_trigger` not a positive integer, `seed` or `start_time_ms` not a
    /// non-negative integer, `is_rate_limited` or `use_wallclock_event_time` not `true` or `false`.
    pub fn parse(table: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let bad = |option: &str, value: &str, expected: &str| {
            SluiceError::sql(format!("table '{table}': option {option} must be {expected}, got '{value}'"))
        };
        let number = |option: &str, min: u64, max: u64| -> Result<Option<u64>> {
            let Some(value) = options.get(option) else { return Ok(None) };
            let expected = if min == 0 {
                format!("an integer from 0 to {max}")
            } else {
                format!("a positive integer of at most {max}")
            };
            match value.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(bad(option, value, &expected)),
            }
        };
        let flag = |option: &str| -> Result<bool> {
            match options.get(option).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(_) => Err(bad(option, &options[option], "'true' or 'false'")),
            }
        };
        let stream = match options.get("stream").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("person") => NexmarkStream::Person,
            Some("auction") => NexmarkStream::Auction,
            Some("bid") => NexmarkStream::Bid,
            Some(_) => return Err(bad("stream", &options["stream"], "'person', 'auction' or 'bid'")),
            None => {
                return Err(SluiceError::sql(format!(
                    "table '{table}': a nexmark table needs option stream = 'person', 'auction' or 'bid'"
                )))
            }
        };
        // Offsets travel as JSON numbers, read back as i64.
        let max = i64::MAX as u64;
        Ok(Self {
            stream,
            seed: number("seed", 0, u64::MAX)?.unwrap_or(0),
            first_event_rate: number("first_event_rate", 1, max)?.unwrap_or(10_000),
            num_events: number("num_events", 1, max)?,
            num_partitions: number("num_partitions", 1, 1024)?.map_or(1, |n| n as usize),
            max_events_per_trigger: number("max_events_per_trigger", 1, max)?.unwrap_or(100_000),
            is_rate_limited: flag("is_rate_limited")?,
            use_wallclock_event_time: flag("use_wallclock_event_time")?,
            // At most the last millisecond a TIMESTAMP (ns) holds.
            start_time_ms: number("start_time_ms", 0, (i64::MAX / 1_000_000) as u64)?.map(|ms| ms as i64),
        })
    }
}
