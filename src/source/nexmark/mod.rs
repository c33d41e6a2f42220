//! The Nexmark source (`connector = 'nexmark'`): the events of the Nexmark benchmark (people
//! registering, auctions opening, bids placed), generated column by column into Arrow arrays.
//!
//! The model is the one of Beam's `NexmarkGenerator` (`sdks/java/testing/nexmark`, classes
//! `GeneratorConfig`, `PersonGenerator`, `AuctionGenerator`, `BidGenerator`, `StringsGenerator`,
//! `PriceGenerator`), which Flink's `nexmark/nexmark` repository (`nexmark-flink`) carries over;
//! sluice reimplements it from their descriptions and constants:
//!
//! - **Kinds by position.** Event number `n` (0, 1, 2, ... over the whole stream) is a person when
//!   `n % 50 == 0`, an auction when `n % 50` is 1 to 3, a bid otherwise: the 1 : 3 : 46 proportions
//!   (`PERSON_PROPORTION`, `AUCTION_PROPORTION`, `BID_PROPORTION`, `PROPORTION_DENOMINATOR`).
//! - **Ids.** People and auctions are numbered from 1000 (`FIRST_PERSON_ID`, `FIRST_AUCTION_ID`) in
//!   the order they are generated, so the id of the latest person or auction at event `n` follows
//!   from `n` (`lastBase0PersonId`, `lastBase0AuctionId`).
//! - **Hot keys.** A bid's auction is a hot one with probability 1/2 (`hotAuctionRatio` 2: the
//!   latest auction rounded down to a multiple of 100, `HOT_AUCTION_RATIO`), otherwise one of the
//!   last 100 auctions in flight plus a lead of 10 not yet opened (`numInFlightAuctions`,
//!   `AUCTION_ID_LEAD`). A bid's bidder is hot with probability 3/4 (`hotBiddersRatio` 4: the
//!   latest person rounded down to a multiple of 100, plus 1), otherwise one of the last 1000
//!   people (`numActivePeople`) plus a lead of 10 (`PERSON_ID_LEAD`). An auction's seller is hot
//!   with probability 3/4 (`hotSellersRatio` 4, the latest person rounded down to 100), otherwise
//!   an active person likewise.
//! - **Values.** A price is `round(10^(6u) × 100)` for `u` uniform in `[0, 1)` (`PriceGenerator`):
//!   1 to 100,000,000, log-uniform. A reserve is the initial bid plus another price. A category is
//!   10 to 14 (`FIRST_CATEGORY_ID`, `NUM_CATEGORIES` 5). A name is a first name and a last name from
//!   Beam's lists, a city and a state from its US lists; an e-mail is `<3-7 letters>@<3-5
//!   letters>.com`, a credit card four groups of four digits. Random text is
//!   `nextString(maxLength)`: 3 to `maxLength - 1` characters, each a space with probability 1/13,
//!   else a letter, trimmed (item names at most 20, descriptions at most 100).
//! - **Channels and URLs.** Half the bids come from one of 4 hot channels (`Google`, `Facebook`,
//!   `Baidu`, `Apple`, each with a fixed URL); the others from `channel-<k>` for `k` uniform below
//!   10,000 (`CHANNELS_NUMBER`), whose URL is `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`
//!   followed, for 9 channels in 10, by `&channel_id=<|Integer.reverse(k)|>`. Flink draws those URLs
//!   from an unseeded random; sluice derives them from the seed, so they replay.
//! - **Padding.** `extra` pads each event towards the standard average sizes (`avgPersonByteSize`
//!   200, `avgAuctionByteSize` 500, `avgBidByteSize` 100): the fields' size counted as Beam counts
//!   it, then letters for a length uniform within ±20% of what is missing (`nextExtra`).
//! - **Time.** Event `n` happens at `2015-07-15T00:00:00Z` (Beam's `BASE_TIME`) plus
//!   `⌊n × 1000 / first_event_rate⌋` ms (`timestampAndInterEventDelayUsForEvent` for one generator
//!   and a constant rate); with `use_wallclock_event_time` (Beam's `useWallclockEventTime`) at the
//!   stream's start time instead (below). An auction expires `1 + uniform(2 × h)` ms after it
//!   opens, where `h` is the event time until 100 more auctions have opened
//!   (`nextAuctionLengthMs`).
//!
//! Randomness: each event draws from its own generator seeded by the `seed` option and the event
//! number (Beam seeds a `java.util.Random` with the event id), a SplitMix64, so the rows of event
//! `n` depend only on `seed`, `first_event_rate` and `n`: the values follow the standard
//! distributions but are not Java's bit for bit.
//!
//! Offsets are event numbers: batch `[s, e)` holds the events numbered `s` to `e - 1` of the
//! table's kind, so the `person`, `auction` and `bid` tables of one script (same options) read
//! consistent slices of the same event stream. A batch takes at most `max_events_per_trigger`
//! events (all remaining ones under the `once` trigger of a bounded source), up to `num_events`.
//! The slice is cut into `num_partitions` consecutive runs of event numbers, generated in parallel,
//! one record batch each.
//!
//! **Wall clock.** The stream's start time is `start_time_ms` if given, else the wall clock when
//! the query first runs. With `is_rate_limited` (Beam's `isRateLimited`: "generate events only
//! when they are due according to their timestamp") event `n` becomes available once the wall
//! clock reaches the start time plus its offset `⌊n × 1000 / first_event_rate⌋` ms, so the stream
//! flows at `first_event_rate` events per second of wall clock, each batch taking the events due
//! when it is planned (at most `max_events_per_trigger`); nothing is due before the start time.
//! With `use_wallclock_event_time` as well, an event's `date_time` is the instant it became due,
//! so a result's delay from the event's generation is the wall clock minus its `date_time`.
//! Tables that must read consistent slices of one stream under `use_wallclock_event_time` need the
//! same `start_time_ms` (each table's first run reads the clock at a different instant).
//!
//! The seed, rate, stream, `use_wallclock_event_time` and the start time go into the checkpoint
//! (`sources/<table>/0`) on the first run; a restart reuses the recorded start time (so replayed
//! batches keep their timestamps and the rate limit its schedule), and a restart with another
//! seed, rate, stream, `use_wallclock_event_time` or `start_time_ms` is refused, since its replayed
//! batches would differ.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::generator::{due_events, event_time_ms, generate, timestamps_fit, Channels, BASE_TIME_MS};
use super::{Source, SourceData};
use crate::checkpoint::{BatchLog, CheckpointLocation, ReadEntry};
use crate::{Result, SluiceError};

mod generator;
mod options;

pub(crate) use self::options::NEXMARK_OPTIONS;
pub use self::options::{NexmarkOptions, NexmarkStream};

/// The columns of a Nexmark stream. Beam's camelCase names are snake_case here (`dateTime` is
/// `date_time`, `emailAddress` `email_address`, `creditCard` `credit_card`, `itemName`
/// `item_name`, `initialBid` `initial_bid`); times are TIMESTAMP (ns, UTC), to the millisecond;
/// prices are BIGINT cents, as in Beam.
///
/// - `person`: `id, name, email_address, credit_card, city, state, date_time, extra`
/// - `auction`: `id, item_name, description, initial_bid, reserve, date_time, expires, seller,
///   category, extra`
/// - `bid`: `auction, bidder, price, channel, url, date_time, extra`
pub fn nexmark_schema(stream: NexmarkStream) -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, true);
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let time = |name: &str| Field::new(name, DataType::Timestamp(TimeUnit::Nanosecond, None), true);
    let fields = match stream {
        NexmarkStream::Person => vec![
            int("id"),
            text("name"),
            text("email_address"),
            text("credit_card"),
            text("city"),
            text("state"),
            time("date_time"),
            text("extra"),
        ],
        NexmarkStream::Auction => vec![
            int("id"),
            text("item_name"),
            text("description"),
            int("initial_bid"),
            int("reserve"),
            time("date_time"),
            time("expires"),
            int("seller"),
            int("category"),
            text("extra"),
        ],
        NexmarkStream::Bid => vec![
            int("auction"),
            int("bidder"),
            int("price"),
            text("channel"),
            text("url"),
            time("date_time"),
            text("extra"),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// What the source records in the checkpoint on a query's first run: what its rows and its
/// schedule depend on.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NexmarkStart {
    stream: NexmarkStream,
    seed: u64,
    first_event_rate: u64,
    /// False in checkpoints written before the option existed.
    #[serde(default)]
    use_wallclock_event_time: bool,
    /// The stream's start time, ms since the epoch; absent in checkpoints written before it was
    /// recorded.
    #[serde(default)]
    start_time_ms: Option<i64>,
}

impl NexmarkStart {
    /// Whether a batch replayed under `self` gives the rows it gave under `recorded`; a start time
    /// matters only when given (otherwise the recorded one is reused).
    fn replays(&self, recorded: &Self) -> bool {
        (self.stream, self.seed, self.first_event_rate, self.use_wallclock_event_time)
            == (recorded.stream, recorded.seed, recorded.first_event_rate, recorded.use_wallclock_event_time)
            && (self.start_time_ms.is_none() || self.start_time_ms == recorded.start_time_ms)
    }

    fn describe(&self) -> String {
        let start = self.start_time_ms.map_or(String::new(), |ms| format!(", start_time_ms = {ms}"));
        format!(
            "stream = '{}', seed = {}, first_event_rate = {}, use_wallclock_event_time = {}{start}",
            self.stream.name(),
            self.seed,
            self.first_event_rate,
            self.use_wallclock_event_time
        )
    }
}

/// The wall clock, ms since the epoch.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The Nexmark source. See the module documentation.
#[derive(Debug)]
pub struct NexmarkSource {
    name: String,
    schema: SchemaRef,
    options: NexmarkOptions,
    channels: Arc<Channels>,
    /// Set by the `once` trigger: a bounded source's next batch takes every remaining event.
    read_all: bool,
    /// The stream's start time, ms since the epoch, once [`Source::restore`] read or recorded it.
    start_time_ms: Option<i64>,
    /// The latest wall clock seen, ms since the epoch: the schedule never goes back.
    last_time_ms: i64,
    /// Under `available-now` with `is_rate_limited`: the last offset later batches may reach.
    frozen: Option<u64>,
    /// The end of the latest batch planned: the next event to come.
    planned: u64,
    /// Which columns of `schema` the query reads (see [`Source::prune_columns`]); empty: all.
    read: Vec<bool>,
}

impl NexmarkSource {
    /// A Nexmark source `name` with `options`; `schema` is [`nexmark_schema`] of its stream,
    /// perhaps with the watermark metadata of a declared `WATERMARK FOR date_time`.
    pub fn new(name: &str, schema: SchemaRef, options: NexmarkOptions) -> Self {
        let channels = Arc::new(Channels::new(options.seed));
        Self {
            name: name.to_string(),
            schema,
            options,
            channels,
            read_all: false,
            start_time_ms: None,
            last_time_ms: i64::MIN,
            frozen: None,
            planned: 0,
            read: Vec::new(),
        }
    }

    fn started(&self) -> Result<i64> {
        self.start_time_ms.ok_or_else(|| self.error("used before the query restored the stream's start time".into()))
    }

    /// The time of event 0, ms since the epoch.
    fn base_time_ms(&self) -> Result<i64> {
        if self.options.use_wallclock_event_time {
            self.started()
        } else {
            Ok(BASE_TIME_MS)
        }
    }

    /// How many events are due now under `is_rate_limited`: see the module documentation.
    fn due(&mut self) -> Result<u64> {
        let start = self.started()?;
        self.last_time_ms = self.last_time_ms.max(wall_clock_ms());
        Ok(match u64::try_from(self.last_time_ms.saturating_sub(start)) {
            Ok(elapsed_ms) => due_events(elapsed_ms, self.options.first_event_rate),
            Err(_) => 0,
        })
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Source { source_name: self.name.clone(), message }
    }

    fn as_event_number(&self, offset: &Value) -> Result<u64> {
        offset.as_u64().ok_or_else(|| SluiceError::Checkpoint {
            location: "offsets".into(),
            message: format!("nexmark source '{}' offset {offset} is not an event number", self.name),
        })
    }

    /// The rows of events `[start, end)` (event numbers, all kinds counted): one record batch per
    /// partition with rows of the stream, what a batch with these offsets reads. Public for
    /// `sluice bench nexmark`, which times the generator alone.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when a timestamp would be past year 2262, or, under
    /// `use_wallclock_event_time`, before the query restored the stream's start time.
    pub fn rows(&self, start: u64, end: u64) -> Result<Vec<RecordBatch>> {
        if end <= start {
            return Ok(Vec::new());
        }
        let rate = self.options.first_event_rate;
        let base = self.base_time_ms()?;
        if !timestamps_fit(end, rate, base) {
            return Err(self.error(format!(
                "event {end} at first_event_rate = {rate} would be after year 2262, past what a TIMESTAMP holds; \
                 raise first_event_rate or lower num_events"
            )));
        }
        let parts = self.options.num_partitions as u64;
        let len = end - start;
        let bounds: Vec<(u64, u64)> = (0..parts)
            .map(|p| {
                let at = |p: u64| start + (u128::from(len) * u128::from(p) / u128::from(parts)) as u64;
                (at(p), at(p + 1))
            })
            .filter(|(a, b)| a < b)
            .collect();
        let (options, channels, schema, read) = (&self.options, &*self.channels, &self.schema, &self.read[..]);
        let batches: Vec<Result<Option<RecordBatch>>> = if bounds.len() <= 1 {
            bounds.iter().map(|(a, b)| generate(options, channels, schema, read, base, *a, *b)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = bounds
                    .iter()
                    .map(|(a, b)| scope.spawn(move || generate(options, channels, schema, read, base, *a, *b)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(self.error("a generator thread panicked".into()))))
                    .collect()
            })
        };
        batches.into_iter().filter_map(Result::transpose).collect()
    }
}

#[async_trait]
impl Source for NexmarkSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_offset(&self) -> Value {
        Value::from(0)
    }

    /// Leaves the `extra` padding, and a bid's `channel` and `url`, empty when not read: the
    /// strings that are most of the generator's work.
    fn prune_columns(&mut self, required: &[usize]) {
        self.read = (0..self.schema.fields().len()).map(|c| required.contains(&c)).collect();
    }

    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        let log = BatchLog::new(location.clone(), &format!("sources/{}", self.name));
        let current = NexmarkStart {
            stream: self.options.stream,
            seed: self.options.seed,
            first_event_rate: self.options.first_event_rate,
            use_wallclock_event_time: self.options.use_wallclock_event_time,
            start_time_ms: self.options.start_time_ms,
        };
        let recorded = match log.read_entry::<NexmarkStart>(0).await? {
            ReadEntry::Valid(recorded) if current.replays(&recorded) => recorded,
            ReadEntry::Valid(recorded) => {
                return Err(log.error(
                    0,
                    format!(
                        "the checkpoint was written with {}, but the table now says {}; a replayed batch would \
                         differ: restore the options or use a new checkpoint location",
                        recorded.describe(),
                        current.describe()
                    ),
                ))
            }
            // A new query, or one that crashed before batch 0 planned: nothing was read yet.
            _ if through_batch.is_none() => {
                let first = NexmarkStart { start_time_ms: current.start_time_ms.or(Some(wall_clock_ms())), ..current };
                log.write(0, &first).await?;
                first
            }
            ReadEntry::Torn(why) => {
                return Err(log.error(
                    0,
                    format!(
                        "the nexmark source's options are damaged ({why}); restore the file or use a new checkpoint \
                         location"
                    ),
                ))
            }
            ReadEntry::Missing => {
                return Err(log.error(
                    0,
                    "the nexmark source's options are missing; restore the file or use a new checkpoint location",
                ))
            }
        };
        self.start_time_ms = recorded.start_time_ms;
        if self.start_time_ms.is_none() && self.options.is_rate_limited {
            return Err(log.error(
                0,
                "the checkpoint holds no start time (it was written before the nexmark source recorded one), which \
                 is_rate_limited needs; set start_time_ms or use a new checkpoint location",
            ));
        }
        Ok(())
    }

    async fn freeze_available(&mut self) -> Result<()> {
        if self.options.is_rate_limited {
            self.frozen = Some(self.due()?);
        } else if self.options.num_events.is_none() {
            return Err(self.error(
                "an unbounded nexmark stream has no end for the available-now or once trigger; set num_events or \
                 is_rate_limited"
                    .into(),
            ));
        }
        Ok(())
    }

    fn read_all_available(&mut self) {
        self.read_all = true;
    }

    async fn plan_batch(&mut self, _location: &CheckpointLocation, _batch_id: u64, start: &Value) -> Result<Value> {
        let start = self.as_event_number(start)?;
        let mut end = self.options.num_events.unwrap_or(i64::MAX as u64);
        if !self.read_all {
            end = end.min(start.saturating_add(self.options.max_events_per_trigger));
        }
        self.read_all = false;
        if self.options.is_rate_limited {
            end = end.min(self.due()?);
        }
        if let Some(frozen) = self.frozen {
            end = end.min(frozen);
        }
        self.planned = end.max(start);
        Ok(Value::from(self.planned))
    }

    fn next_data_in(&self) -> Option<std::time::Duration> {
        let next = self.planned;
        if !self.options.is_rate_limited || self.options.num_events.is_some_and(|total| next >= total) {
            return None;
        }
        // Event `next` is due at the start time plus its offset (ms).
        let due_ms = event_time_ms(next, self.options.first_event_rate, self.start_time_ms?)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
        let due = std::time::Duration::from_millis(u64::try_from(due_ms).ok()?);
        Some(due.saturating_sub(now))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (self.as_event_number(start)?, self.as_event_number(end)?);
        if end < start {
            return Err(self.error(format!("offsets {start}..{end} go backwards")));
        }
        if let Some(total) = self.options.num_events.filter(|total| end > *total) {
            return Err(self.error(format!(
                "offset {end} is past num_events = {total}; the checkpoint was written with more events: restore \
                 num_events or use a new checkpoint location"
            )));
        }
        Ok(SourceData { batches: self.rows(start, end)?, dropped_records: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::generator::{count_of, BASE_TIME_MS, HOT_CHANNELS};
    use super::*;

    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Int64Type, TimestampNanosecondType};
    use serde_json::json;

    fn options(pairs: &[(&str, &str)]) -> Result<NexmarkOptions> {
        NexmarkOptions::parse("n", &pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn source(stream: &str, extra: &[(&str, &str)]) -> NexmarkSource {
        let mut pairs = vec![("stream", stream)];
        pairs.extend_from_slice(extra);
        let options = options(&pairs).unwrap();
        NexmarkSource::new("n", nexmark_schema(options.stream), options)
    }

    async fn read(source: &mut NexmarkSource, start: u64, end: u64) -> RecordBatch {
        let data = source.read(&json!(start), &json!(end)).await.unwrap();
        concat_batches(&source.schema, &data.batches).unwrap()
    }

    fn ints(batch: &RecordBatch, column: &str) -> Vec<i64> {
        batch.column_by_name(column).unwrap().as_primitive::<Int64Type>().values().to_vec()
    }

    fn times_ms(batch: &RecordBatch, column: &str) -> Vec<i64> {
        let array = batch.column_by_name(column).unwrap().as_primitive::<TimestampNanosecondType>();
        array.values().iter().map(|ns| ns / 1_000_000).collect()
    }

    #[test]
    fn options_default_and_bad_values_name_the_option() {
        let defaults = options(&[("stream", "Bid")]).unwrap();
        assert_eq!(
            defaults,
            NexmarkOptions {
                stream: NexmarkStream::Bid,
                seed: 0,
                first_event_rate: 10_000,
                num_events: None,
                num_partitions: 1,
                max_events_per_trigger: 100_000,
                is_rate_limited: false,
                use_wallclock_event_time: false,
                start_time_ms: None,
            }
        );
        let err = options(&[]).unwrap_err().to_string();
        assert!(err.contains("needs option stream"), "{err}");
        for (option, value) in [
            ("stream", "bids"),
            ("seed", "-1"),
            ("first_event_rate", "0"),
            ("first_event_rate", "1e6"),
            ("num_events", "0"),
            ("num_events", "9223372036854775808"),
            ("num_partitions", "1025"),
            ("max_events_per_trigger", "ten"),
            ("is_rate_limited", "yes"),
            ("use_wallclock_event_time", "1"),
            ("start_time_ms", "-1"),
            ("start_time_ms", "9223372036855"),
        ] {
            let mut pairs = vec![("stream", "bid")];
            pairs.retain(|(k, _)| *k != option);
            pairs.push((option, value));
            let err = options(&pairs).unwrap_err().to_string();
            assert!(err.contains(&format!("option {option} must be")) && err.contains(value), "{option}: {err}");
        }
    }

    #[tokio::test]
    async fn the_same_offsets_and_seed_give_the_same_rows_and_another_seed_others() {
        for stream in ["person", "auction", "bid"] {
            let mut a = source(stream, &[("num_partitions", "3")]);
            let first = read(&mut a, 0, 5_000).await;
            assert_eq!(read(&mut a, 0, 5_000).await, first, "{stream}: read twice");
            // Another source, one partition: the same rows in the same order.
            let mut b = source(stream, &[]);
            assert_eq!(read(&mut b, 0, 5_000).await, first, "{stream}: another source");
            // A sub-range replayed equals the matching rows of the first read.
            let part = read(&mut b, 1_000, 2_000).await;
            let skip = count_of(a.options.stream, 0, 1_000);
            assert_eq!(part, first.slice(skip, part.num_rows()), "{stream}: sub-range");
            let mut other = source(stream, &[("seed", "7")]);
            assert_ne!(read(&mut other, 0, 5_000).await, first, "{stream}: another seed");
        }
    }

    #[tokio::test]
    async fn pruned_columns_come_back_empty_and_the_columns_read_unchanged() {
        for stream in ["person", "auction", "bid"] {
            let mut whole = source(stream, &[]);
            let all = read(&mut whole, 0, 5_000).await;
            let schema = Arc::clone(&whole.schema);
            // Every column read but the strings pruning leaves out; then only the first one.
            let prunable = ["extra", "channel", "url"];
            let kept: Vec<usize> =
                (0..schema.fields().len()).filter(|c| !prunable.contains(&schema.field(*c).name().as_str())).collect();
            for required in [kept, vec![0]] {
                let mut pruned = source(stream, &[("num_partitions", "2")]);
                pruned.prune_columns(&required);
                let rows = read(&mut pruned, 0, 5_000).await;
                assert_eq!(rows.num_rows(), all.num_rows(), "{stream}");
                for c in 0..schema.fields().len() {
                    let name = schema.field(c).name();
                    if required.contains(&c) || !prunable.contains(&name.as_str()) {
                        assert_eq!(rows.column(c), all.column(c), "{stream}.{name}: same values");
                    } else {
                        let strings = rows.column(c).as_string::<i32>();
                        assert!(strings.iter().all(|v| v == Some("")), "{stream}.{name}: left empty");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn kinds_follow_the_1_3_46_proportions_and_ids_count_up_from_1000() {
        let (mut p, mut a, mut b) = (source("person", &[]), source("auction", &[]), source("bid", &[]));
        let (people, auctions, bids) =
            (read(&mut p, 0, 10_000).await, read(&mut a, 0, 10_000).await, read(&mut b, 0, 10_000).await);
        assert_eq!((people.num_rows(), auctions.num_rows(), bids.num_rows()), (200, 600, 9_200));
        assert_eq!(ints(&people, "id"), (1000..1200).collect::<Vec<_>>());
        assert_eq!(ints(&auctions, "id"), (1000..1600).collect::<Vec<_>>());
        // A partial block: events 45..105 hold 1 person (50) and 3 auctions (51..=53), plus those of 100.
        assert_eq!(read(&mut p, 45, 105).await.num_rows(), 2);
        assert_eq!(read(&mut a, 45, 102).await.num_rows(), 4);
        assert_eq!(read(&mut b, 45, 105).await.num_rows(), 5 + 46 + 1);
        // Bids reference people and auctions that exist or are about to (the lead of 10).
        let max_person = 1000 + 200 + 10;
        assert!(ints(&bids, "bidder").iter().all(|id| (1000..max_person).contains(id)));
        assert!(ints(&bids, "auction").iter().all(|id| (1000..1600 + 10).contains(id)));
        assert!(ints(&auctions, "seller").iter().all(|id| (1000..max_person).contains(id)));
        // Hot auctions: about half the bids go to a multiple of 100 (plus 1000).
        let hot = ints(&bids, "auction").iter().filter(|a| *a % 100 == 0).count();
        assert!((4_200..5_600).contains(&hot), "{hot} of 9200 bids on hot auctions");
        // Prices: log-uniform in [1, 10^8] cents, so about a sixth below 10.
        let prices = ints(&bids, "price");
        assert!(prices.iter().all(|p| (1..=100_000_000).contains(p)));
        let cheap = prices.iter().filter(|p| **p < 1_000).count();
        assert!((1_000..2_100).contains(&cheap), "{cheap} of 9200 prices under 1000");
        // Categories 10 to 14; half the channels hot.
        assert!(ints(&auctions, "category").iter().all(|c| (10..15).contains(c)));
        let channels = bids.column_by_name("channel").unwrap().as_string::<i32>();
        let hot = channels.iter().flatten().filter(|c| HOT_CHANNELS.contains(c)).count();
        assert!((4_200..5_000).contains(&hot), "{hot} hot channels");
        assert_eq!(bids.column_by_name("url").unwrap().null_count(), 0);
    }

    #[tokio::test]
    async fn extra_pads_events_to_the_standard_average_sizes() {
        let total = |batch: &RecordBatch, column: &str| {
            let array = batch.column_by_name(column).unwrap().as_string::<i32>();
            array.iter().flatten().map(str::len).sum::<usize>() as f64 / batch.num_rows() as f64
        };
        let bids = read(&mut source("bid", &[]), 0, 20_000).await;
        // 32 bytes of numbers, then extra to average 100: 68 ± 14.
        let extra = total(&bids, "extra");
        assert!((66.0..70.0).contains(&extra), "bid extra {extra}");
        let people = read(&mut source("person", &[]), 0, 50_000).await;
        let size = 8.0
            + ["name", "email_address", "credit_card", "city", "state", "extra"]
                .iter()
                .map(|c| total(&people, c))
                .sum::<f64>();
        assert!((195.0..205.0).contains(&size), "person size {size}");
        let auctions = read(&mut source("auction", &[]), 0, 20_000).await;
        let size = 48.0 + ["item_name", "description", "extra"].iter().map(|c| total(&auctions, c)).sum::<f64>();
        assert!((490.0..510.0).contains(&size), "auction size {size}");
    }

    #[tokio::test]
    async fn timestamps_follow_the_event_number_and_rate() {
        let mut bids = source("bid", &[("first_event_rate", "1000")]);
        let batch = read(&mut bids, 0, 100).await;
        // 1000 events a second: event n at base + n ms; bids are events 4..50 and 54..100.
        let expected: Vec<i64> = (0..100).filter(|n| n % 50 >= 4).map(|n| BASE_TIME_MS + n).collect();
        assert_eq!(times_ms(&batch, "date_time"), expected);
        let mut slow = source("person", &[("first_event_rate", "3")]);
        // 3 a second: person 50 at floor(50000 / 3) ms.
        assert_eq!(times_ms(&read(&mut slow, 0, 51).await, "date_time"), vec![BASE_TIME_MS, BASE_TIME_MS + 16_666]);
        // Auctions expire after they open, within twice the time to 100 more auctions (1666 events).
        let mut auctions = source("auction", &[("first_event_rate", "1000")]);
        let batch = read(&mut auctions, 0, 5_000).await;
        for (open, expires) in times_ms(&batch, "date_time").iter().zip(times_ms(&batch, "expires")) {
            assert!(expires > *open && expires <= open + 2 * 1_666 + 1, "{open} {expires}");
        }
    }

    #[tokio::test]
    async fn batches_stop_at_num_events_and_time_past_2262_is_an_error() {
        let mut bounded = source("bid", &[("num_events", "250"), ("max_events_per_trigger", "100")]);
        let location = CheckpointLocation::open("memory://").unwrap();
        bounded.restore(&location, None).await.unwrap();
        let mut at = json!(0);
        let mut ends = Vec::new();
        for batch in 0..4 {
            at = bounded.plan_batch(&location, batch, &at).await.unwrap();
            ends.push(at.as_u64().unwrap());
        }
        assert_eq!(ends, vec![100, 200, 250, 250]);
        bounded.read_all_available();
        assert_eq!(bounded.plan_batch(&location, 4, &json!(10)).await.unwrap(), json!(250));
        let err = bounded.read(&json!(200), &json!(300)).await.unwrap_err().to_string();
        assert!(err.contains("past num_events = 250"), "{err}");
        let mut unbounded = source("bid", &[("first_event_rate", "1")]);
        assert!(unbounded.freeze_available().await.unwrap_err().to_string().contains("set num_events"));
        let err = unbounded.read(&json!(9_000_000_000u64), &json!(9_000_000_001u64)).await.unwrap_err();
        assert!(err.to_string().contains("after year 2262"), "{err}");
    }

    #[test]
    fn events_are_due_once_their_time_offset_has_come() {
        let due: Vec<u64> = [0, 1, 9, 999].iter().map(|ms| due_events(*ms, 1000)).collect();
        assert_eq!(due, vec![1, 2, 10, 1000]);
        // 3 a second: events 0, 1, 2 at 0, 333 and 666 ms.
        let due: Vec<u64> = [0, 332, 333, 665, 666, 999].iter().map(|ms| due_events(*ms, 3)).collect();
        assert_eq!(due, vec![1, 1, 2, 2, 3, 3]);
        // 100,000 a second: 100 a millisecond.
        assert_eq!(due_events(0, 100_000), 100);
        assert_eq!(due_events(9, 100_000), 1_000);
        assert_eq!(due_events(u64::MAX, u64::MAX), u64::MAX);
    }

    #[tokio::test]
    async fn a_rate_limited_stream_offers_the_events_due_by_the_wall_clock() {
        let location = CheckpointLocation::open("memory://").unwrap();
        // Started 10 s ago at 1 event a second: events 0 to 10 are due (for the next 999 ms).
        let start = (wall_clock_ms() - 10_000).to_string();
        let mut paced = source(
            "bid",
            &[
                ("is_rate_limited", "true"),
                ("first_event_rate", "1"),
                ("start_time_ms", start.as_str()),
                ("max_events_per_trigger", "4"),
            ],
        );
        paced.restore(&location, None).await.unwrap();
        let mut ends = Vec::new();
        for from in [0, 4, 8, 11, 30] {
            ends.push(paced.plan_batch(&location, 0, &json!(from)).await.unwrap().as_u64().unwrap());
        }
        assert_eq!(ends, vec![4, 8, 11, 11, 30]);
        // Event 30 is due at 30 s, about 20 s from now.
        let wait = paced.next_data_in().unwrap();
        assert!(wait > std::time::Duration::from_secs(18) && wait <= std::time::Duration::from_secs(20), "{wait:?}");
        paced.read_all_available();
        assert_eq!(paced.plan_batch(&location, 0, &json!(0)).await.unwrap(), json!(11));
        // Event 11 is due within the second.
        assert!(paced.next_data_in().unwrap() <= std::time::Duration::from_secs(1));
        // Unbounded, yet available-now stops at what is due when it starts.
        paced.freeze_available().await.unwrap();
        assert_eq!(paced.frozen, Some(11));
        // Nothing is due before the start time.
        let later = (wall_clock_ms() + 60_000).to_string();
        let mut early = source("bid", &[("is_rate_limited", "true"), ("start_time_ms", later.as_str())]);
        early.restore(&CheckpointLocation::open("memory://").unwrap(), None).await.unwrap();
        assert_eq!(early.plan_batch(&location, 0, &json!(0)).await.unwrap(), json!(0));
    }

    #[tokio::test]
    async fn wallclock_event_time_starts_at_the_recorded_start_time_and_a_restart_reuses_it() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let wallclock = [("use_wallclock_event_time", "true"), ("first_event_rate", "1000")];
        let mut first = source("bid", &wallclock);
        let err = first.rows(0, 10).unwrap_err().to_string();
        assert!(err.contains("before the query restored"), "{err}");
        let before = wall_clock_ms();
        first.restore(&location, None).await.unwrap();
        let start = first.start_time_ms.unwrap();
        assert!((before..=wall_clock_ms()).contains(&start));
        let rows = read(&mut first, 0, 100).await;
        let expected: Vec<i64> = (0..100).filter(|n| n % 50 >= 4).map(|n| start + n).collect();
        assert_eq!(times_ms(&rows, "date_time"), expected);
        // A restart later reads the recorded start time: the replayed batch is the same.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut again = source("bid", &wallclock);
        again.restore(&location, Some(3)).await.unwrap();
        assert_eq!(read(&mut again, 0, 100).await, rows);
        // Without wall-clock time, or with another start time, the rows would differ: refused.
        for other in [("use_wallclock_event_time", "false"), ("start_time_ms", "5")] {
            let mut pairs = wallclock.to_vec();
            pairs.retain(|(k, _)| *k != other.0);
            pairs.push(other);
            let err = source("bid", &pairs).restore(&location, Some(3)).await.unwrap_err().to_string();
            assert!(err.contains(&format!("start_time_ms = {start}")), "{err}");
        }
    }

    #[tokio::test]
    async fn a_restart_with_another_seed_is_refused() {
        let location = CheckpointLocation::open("memory://").unwrap();
        source("bid", &[]).restore(&location, None).await.unwrap();
        source("bid", &[]).restore(&location, Some(3)).await.unwrap();
        let err = source("bid", &[("seed", "2")]).restore(&location, Some(3)).await.unwrap_err().to_string();
        assert!(err.contains("seed = 0") && err.contains("seed = 2"), "{err}");
    }
}
