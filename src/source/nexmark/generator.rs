//! The Nexmark event model (see the parent module's documentation for where each rule comes
//! from): which stream event `n` belongs to, its ids, values and timestamp, drawn from a generator
//! seeded by the seed and `n`, and the columns of a run of events built straight into Arrow.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder};
use arrow::datatypes::SchemaRef;

use super::{NexmarkOptions, NexmarkStream};
use crate::Result;

/// Events per block; the first `PERSON_PROPORTION` of a block are people, the next
/// `AUCTION_PROPORTION` auctions, the rest bids (Beam's `PROPORTION_DENOMINATOR`).
const PROPORTION_DENOMINATOR: u64 = 50;
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
/// Keys are "hot" by rounding the latest id down to a multiple of this.
const HOT_RATIO: u64 = 100;
/// 1 in `ratio` of draws is not hot: `hotAuctionRatio`, `hotBiddersRatio`, `hotSellersRatio`.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const AUCTION_ID_LEAD: u64 = 10;
const AVG_PERSON_BYTE_SIZE: usize = 200;
const AVG_AUCTION_BYTE_SIZE: usize = 500;
const AVG_BID_BYTE_SIZE: usize = 100;
const CHANNELS_NUMBER: u64 = 10_000;
pub(super) const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
/// Beam's `NexmarkUtils.BASE_TIME`, 2015-07-15T00:00:00Z, in ms since the epoch.
pub(super) const BASE_TIME_MS: i64 = 1_436_918_400_000;
/// The latest timestamp a TIMESTAMP (ns) column holds, in ms.
const MAX_TIME_MS: i64 = i64::MAX / 1_000_000;

impl NexmarkStream {
    /// The stream of event number `n`.
    pub(super) fn of_event(n: u64) -> Self {
        match n % PROPORTION_DENOMINATOR {
            r if r < PERSON_PROPORTION => Self::Person,
            r if r < PERSON_PROPORTION + AUCTION_PROPORTION => Self::Auction,
            _ => Self::Bid,
        }
    }
}

/// SplitMix64: small, fast and good enough for benchmark data; one per event.
struct Rng(u64);

impl Rng {
    fn for_event(seed: u64, n: u64) -> Self {
        let mut rng = Self(seed ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound)`; `bound` must be positive (multiply-shift, bias below 2^-32 for the
    /// bounds used here).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The 0-based id of the latest person at event `n` (Beam's `lastBase0PersonId`).
fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / PROPORTION_DENOMINATOR;
    let offset = (n % PROPORTION_DENOMINATOR).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The 0-based id of the latest auction at event `n` (Beam's `lastBase0AuctionId`); before the
/// first auction, 0.
fn last_base0_auction_id(n: u64) -> u64 {
    let (epoch, offset) = (n / PROPORTION_DENOMINATOR, n % PROPORTION_DENOMINATOR);
    if offset < PERSON_PROPORTION {
        (epoch * AUCTION_PROPORTION).saturating_sub(1)
    } else {
        epoch * AUCTION_PROPORTION + (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1)
    }
}

/// A person among the active ones, or a little ahead (Beam's `nextBase0PersonId`).
fn next_base0_person_id(n: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// An auction among those in flight, or a little ahead (Beam's `nextBase0AuctionId`).
fn next_base0_auction_id(n: u64, rng: &mut Rng) -> u64 {
    let max = last_base0_auction_id(n);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

/// A price in cents, log-uniform from 1 to 10^8 (Beam's `PriceGenerator.nextPrice`).
fn next_price(rng: &mut Rng) -> i64 {
    (10f64.powf(rng.unit() * 6.0) * 100.0).round() as i64
}

/// Appends `nextString(max_len)` to `buf` (3 to `max_len - 1` characters, a space with
/// probability 1/13, else a lower-case letter), trimmed of spaces.
fn push_string(buf: &mut String, rng: &mut Rng, max_len: u64, special: u8) {
    let from = buf.len();
    let len = 3 + rng.below(max_len - 3);
    for _ in 0..len {
        let c = if rng.below(13) == 0 { special } else { b'a' + rng.below(26) as u8 };
        if !(c == b' ' && buf.len() == from) {
            buf.push(char::from(c));
        }
    }
    let trimmed = buf[from..].trim_end_matches(' ').len();
    buf.truncate(from + trimmed);
}

/// Appends exactly `len` lower-case letters (Beam's `nextExactString`, 13 letters a draw).
fn push_letters(buf: &mut String, rng: &mut Rng, len: usize) {
    let mut left = len;
    while left > 0 {
        let mut r = rng.next_u64();
        for _ in 0..left.min(13) {
            buf.push(char::from(b'a' + (r % 26) as u8));
            r /= 26;
        }
        left -= left.min(13);
    }
}

/// The length of `extra` for an event whose other fields count `current` bytes, towards an
/// average of `average` (Beam's `nextExtra`): none when already larger, otherwise uniform in
/// `[missing - delta, missing + delta)` with `delta = round(missing / 5)`.
fn extra_len(rng: &mut Rng, current: usize, average: usize) -> usize {
    if current > average {
        return 0;
    }
    let missing = average - current;
    let delta = (missing as f64 * 0.2).round() as usize;
    missing - delta + if delta == 0 { 0 } else { rng.below(2 * delta as u64) as usize }
}

/// The base of a channel URL: `https://www.nexmark.com/<a>/<b>/<c>/item.htm?query=1`, each part
/// `nextString(5, '_')`.
fn base_url(rng: &mut Rng) -> String {
    let mut url = String::from("https://www.nexmark.com/");
    for _ in 0..3 {
        push_string(&mut url, rng, 5, b'_');
        url.push('/');
    }
    url.push_str("item.htm?query=1");
    url
}

/// The URLs of the hot channels and of the 10,000 others, fixed by the seed (Flink's
/// `ChannelCache`).
#[derive(Debug)]
pub(super) struct Channels {
    hot_urls: Vec<String>,
    urls: Vec<String>,
}

impl Channels {
    pub(super) fn new(seed: u64) -> Self {
        // Seeded apart from the events' generators (which use small event numbers).
        let mut rng = Rng::for_event(seed, u64::MAX);
        let hot_urls = HOT_CHANNELS.iter().map(|_| base_url(&mut rng)).collect();
        let urls = (0..CHANNELS_NUMBER as u32)
            .map(|k| {
                let mut url = base_url(&mut rng);
                if rng.below(10) > 0 {
                    url.push_str(&format!("&channel_id={}", (k.reverse_bits() as i32).unsigned_abs()));
                }
                url
            })
            .collect();
        Self { hot_urls, urls }
    }
}

/// The timestamp of event `n` in ms since the epoch, for event 0 at `base_ms`; `None` past what a
/// TIMESTAMP holds.
pub(super) fn event_time_ms(n: u64, rate: u64, base_ms: i64) -> Option<i64> {
    let since = u128::from(n) * 1000 / u128::from(rate);
    i64::try_from(since).ok()?.checked_add(base_ms).filter(|ms| *ms <= MAX_TIME_MS)
}

/// How many events are due `elapsed_ms` after event 0's time: those whose timestamp offset
/// `⌊n × 1000 / rate⌋` is at most `elapsed_ms`, i.e. `⌈(elapsed_ms + 1) × rate / 1000⌉`
/// (Beam's `isRateLimited`: an event is generated once its time has come).
pub(super) fn due_events(elapsed_ms: u64, rate: u64) -> u64 {
    let due = (u128::from(elapsed_ms) + 1) * u128::from(rate);
    u64::try_from(due.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// How many events of `[start, end)` are of `stream`.
pub(super) fn count_of(stream: NexmarkStream, start: u64, end: u64) -> usize {
    // Events of the kind before n: whole blocks, then the kind's share of the partial block.
    let before = |n: u64| {
        let (blocks, rest) = (n / PROPORTION_DENOMINATOR, n % PROPORTION_DENOMINATOR);
        let (from, len) = match stream {
            NexmarkStream::Person => (0, PERSON_PROPORTION),
            NexmarkStream::Auction => (PERSON_PROPORTION, AUCTION_PROPORTION),
            NexmarkStream::Bid => (
                PERSON_PROPORTION + AUCTION_PROPORTION,
                PROPORTION_DENOMINATOR - PERSON_PROPORTION - AUCTION_PROPORTION,
            ),
        };
        blocks * len + rest.saturating_sub(from).min(len)
    };
    usize::try_from(before(end) - before(start)).unwrap_or(usize::MAX)
}

/// The most rows a column builder reserves room for up front.
const CAPACITY_HINT_ROWS: usize = 1 << 20;

/// Generates the rows of `stream` among events `[start, end)` into one record batch of `schema`,
/// event 0 at `base_ms` (ms since the epoch); `None` when there are none. The caller checked that
/// every timestamp fits.
///
/// Column `i` is produced when `read[i]` (a missing entry counts as read); the `extra` padding
/// and a bid's `channel` and `url` strings of a column not read are left empty. Each event draws
/// from its own generator, and `extra`, the last draws of every event, is the only one whose
/// draws are skipped, so the columns read hold the same values either way.
pub(super) fn generate(
    options: &NexmarkOptions,
    channels: &Channels,
    schema: &SchemaRef,
    read: &[bool],
    base_ms: i64,
    start: u64,
    end: u64,
) -> Result<Option<RecordBatch>> {
    let rows = count_of(options.stream, start, end);
    if rows == 0 {
        return Ok(None);
    }
    // Builders start with room for at most this many rows and grow past it: a batch as large as
    // `max_events_per_trigger` allows must not ask for a capacity that overflows.
    let hint = rows.min(CAPACITY_HINT_ROWS);
    let (seed, rate) = (options.seed, options.first_event_rate);
    let time = |n: u64| event_time_ms(n, rate, base_ms).unwrap_or(MAX_TIME_MS);
    let mut buf = String::with_capacity(512);
    let events = (start..end).filter(|n| NexmarkStream::of_event(*n) == options.stream);
    let reads = |name: &str| schema.index_of(name).map_or(true, |c| read.get(c).copied().unwrap_or(true));
    let with_extra = reads("extra");
    let columns: Vec<ArrayRef> = match options.stream {
        NexmarkStream::Person => {
            let mut id = Int64Builder::with_capacity(hint);
            let mut name = StringBuilder::with_capacity(hint, hint * 12);
            let mut email = StringBuilder::with_capacity(hint, hint * 12);
            let mut card = StringBuilder::with_capacity(hint, hint * 19);
            let mut city = StringBuilder::with_capacity(hint, hint * 8);
            let mut state = StringBuilder::with_capacity(hint, hint * 2);
            let mut date_time = TimestampNanosecondBuilder::with_capacity(hint);
            let mut extra = StringBuilder::with_capacity(hint, hint * (AVG_PERSON_BYTE_SIZE - 60));
            for n in events {
                let mut rng = Rng::for_event(seed, n);
                id.append_value(last_base0_person_id(n) as i64 + FIRST_PERSON_ID);
                buf.clear();
                buf.push_str(FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize]);
                buf.push(' ');
                buf.push_str(LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]);
                name.append_value(&buf);
                let mut size = 8 + buf.len();
                buf.clear();
                push_string(&mut buf, &mut rng, 7, b' ');
                buf.push('@');
                push_string(&mut buf, &mut rng, 5, b' ');
                buf.push_str(".com");
                email.append_value(&buf);
                size += buf.len();
                buf.clear();
                for group in 0..4 {
                    if group > 0 {
                        buf.push(' ');
                    }
                    let digits = rng.below(10_000);
                    for d in [1000, 100, 10, 1] {
                        buf.push(char::from(b'0' + (digits / d % 10) as u8));
                    }
                }
                card.append_value(&buf);
                size += buf.len();
                let c = US_CITIES[rng.below(US_CITIES.len() as u64) as usize];
                let s = US_STATES[rng.below(US_STATES.len() as u64) as usize];
                city.append_value(c);
                state.append_value(s);
                size += c.len() + s.len();
                date_time.append_value(time(n) * 1_000_000);
                push_extra(&mut extra, &mut buf, with_extra.then_some((&mut rng, size, AVG_PERSON_BYTE_SIZE)));
            }
            vec![
                Arc::new(id.finish()),
                Arc::new(name.finish()),
                Arc::new(email.finish()),
                Arc::new(card.finish()),
                Arc::new(city.finish()),
                Arc::new(state.finish()),
                Arc::new(date_time.finish()),
                Arc::new(extra.finish()),
            ]
        }
        NexmarkStream::Auction => {
            let mut id = Int64Builder::with_capacity(hint);
            let mut item_name = StringBuilder::with_capacity(hint, hint * 12);
            let mut description = StringBuilder::with_capacity(hint, hint * 52);
            let mut initial_bid = Int64Builder::with_capacity(hint);
            let mut reserve = Int64Builder::with_capacity(hint);
            let mut date_time = TimestampNanosecondBuilder::with_capacity(hint);
            let mut expires = TimestampNanosecondBuilder::with_capacity(hint);
            let mut seller = Int64Builder::with_capacity(hint);
            let mut category = Int64Builder::with_capacity(hint);
            let mut extra = StringBuilder::with_capacity(hint, hint * (AVG_AUCTION_BYTE_SIZE - 100));
            // Events until 100 more auctions have opened (Beam's numEventsForAuctions).
            let horizon_events = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
            for n in events {
                let mut rng = Rng::for_event(seed, n);
                id.append_value(last_base0_auction_id(n) as i64 + FIRST_AUCTION_ID);
                let person = if rng.below(HOT_SELLERS_RATIO) > 0 {
                    last_base0_person_id(n) / HOT_RATIO * HOT_RATIO
                } else {
                    next_base0_person_id(n, &mut rng)
                };
                seller.append_value(person as i64 + FIRST_PERSON_ID);
                category.append_value(FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES) as i64);
                let bid = next_price(&mut rng);
                initial_bid.append_value(bid);
                let opened = time(n);
                date_time.append_value(opened * 1_000_000);
                let horizon_ms = time(n + horizon_events) - opened;
                let length_ms = 1 + rng.below((horizon_ms.max(0) as u64 * 2).max(1)) as i64;
                expires.append_value((opened + length_ms) * 1_000_000);
                buf.clear();
                push_string(&mut buf, &mut rng, 20, b' ');
                item_name.append_value(&buf);
                let mut size = 8 + buf.len();
                buf.clear();
                push_string(&mut buf, &mut rng, 100, b' ');
                description.append_value(&buf);
                size += buf.len() + 5 * 8;
                reserve.append_value(bid + next_price(&mut rng));
                push_extra(&mut extra, &mut buf, with_extra.then_some((&mut rng, size, AVG_AUCTION_BYTE_SIZE)));
            }
            vec![
                Arc::new(id.finish()),
                Arc::new(item_name.finish()),
                Arc::new(description.finish()),
                Arc::new(initial_bid.finish()),
                Arc::new(reserve.finish()),
                Arc::new(date_time.finish()),
                Arc::new(expires.finish()),
                Arc::new(seller.finish()),
                Arc::new(category.finish()),
                Arc::new(extra.finish()),
            ]
        }
        NexmarkStream::Bid => {
            let mut auction = Int64Builder::with_capacity(hint);
            let mut bidder = Int64Builder::with_capacity(hint);
            let mut price = Int64Builder::with_capacity(hint);
            let mut channel = StringBuilder::with_capacity(hint, hint * 11);
            let mut url = StringBuilder::with_capacity(hint, hint * 70);
            let mut date_time = TimestampNanosecondBuilder::with_capacity(hint);
            let mut extra = StringBuilder::with_capacity(hint, hint * (AVG_BID_BYTE_SIZE - 32));
            let (with_channel, with_url) = (reads("channel"), reads("url"));
            for n in events {
                let mut rng = Rng::for_event(seed, n);
                let a = if rng.below(HOT_AUCTION_RATIO) > 0 {
                    last_base0_auction_id(n) / HOT_RATIO * HOT_RATIO
                } else {
                    next_base0_auction_id(n, &mut rng)
                };
                auction.append_value(a as i64 + FIRST_AUCTION_ID);
                let b = if rng.below(HOT_BIDDERS_RATIO) > 0 {
                    last_base0_person_id(n) / HOT_RATIO * HOT_RATIO + 1
                } else {
                    next_base0_person_id(n, &mut rng)
                };
                bidder.append_value(b as i64 + FIRST_PERSON_ID);
                price.append_value(next_price(&mut rng));
                if rng.below(2) > 0 {
                    let hot = rng.below(HOT_CHANNELS.len() as u64) as usize;
                    channel.append_value(if with_channel { HOT_CHANNELS[hot] } else { "" });
                    url.append_value(if with_url { &channels.hot_urls[hot] } else { "" });
                } else {
                    let k = rng.below(CHANNELS_NUMBER);
                    buf.clear();
                    if with_channel {
                        buf.push_str("channel-");
                        buf.push_str(itoa(k, &mut [0; 20]));
                    }
                    channel.append_value(&buf);
                    url.append_value(if with_url { &channels.urls[k as usize] } else { "" });
                }
                date_time.append_value(time(n) * 1_000_000);
                push_extra(&mut extra, &mut buf, with_extra.then_some((&mut rng, 32, AVG_BID_BYTE_SIZE)));
            }
            vec![
                Arc::new(auction.finish()),
                Arc::new(bidder.finish()),
                Arc::new(price.finish()),
                Arc::new(channel.finish()),
                Arc::new(url.finish()),
                Arc::new(date_time.finish()),
                Arc::new(extra.finish()),
            ]
        }
    };
    Ok(Some(RecordBatch::try_new(schema.clone(), columns)?))
}

/// Appends an event's `extra` padding to `extra`: towards `average` bytes for an event whose
/// other fields count `current`, drawn from `rng` when `draw` is `Some((rng, current, average))`;
/// empty when `extra` is not read (its draws, every event's last, are skipped).
fn push_extra(extra: &mut StringBuilder, buf: &mut String, draw: Option<(&mut Rng, usize, usize)>) {
    buf.clear();
    if let Some((rng, current, average)) = draw {
        let len = extra_len(rng, current, average);
        push_letters(buf, rng, len);
    }
    extra.append_value(&*buf);
}

/// `k` in decimal, written into `digits` without allocating.
fn itoa(mut k: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (k % 10) as u8;
        k /= 10;
        if k == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or("0")
}

/// Whether every timestamp of events before `end` at `rate`, event 0 at `base_ms`, fits a
/// TIMESTAMP (ns): an auction expires at most twice the time until 100 more auctions after it
/// opens, so `2 × time(end + horizon) - base` bounds them all.
pub(super) fn timestamps_fit(end: u64, rate: u64, base_ms: i64) -> bool {
    let horizon = NUM_IN_FLIGHT_AUCTIONS * PROPORTION_DENOMINATOR / AUCTION_PROPORTION;
    end.checked_add(horizon)
        .and_then(|n| event_time_ms(n, rate, base_ms))
        .and_then(|ms| ms.checked_mul(2))
        .and_then(|ms| ms.checked_sub(base_ms))
        .is_some_and(|ms| ms <= MAX_TIME_MS)
}
