//! `sluice bench nexmark` (part of the `sluice` binary, not of the library): runs the Nexmark
//! queries of `sql/nexmark/` on the `nexmark` connector into a sink that discards the rows, and
//! reports per query the events, wall seconds, events per second, events per second of process
//! CPU time (user + system, all threads, generator included, from `/proc/self/stat`), the
//! micro-batch duration p50 / p99 and the process's peak resident memory (`VmHWM` of
//! `/proc/self/status`, the peak of the whole run so far). With `--batch` it also runs the same
//! SELECT once as a DataFusion batch query over the same events, pre-generated into memory, and
//! reports its events per second.
//!
//! Every query's figures come with those of the generator alone: the same record batches of the
//! streams the query reads (same events, batch size and partitions) built with no query, in
//! events per second of wall clock and of process CPU time.
//!
//! With `--rate R` the source is paced by the wall clock (`is_rate_limited`, `first_event_rate` =
//! R, `use_wallclock_event_time` with one `start_time_ms` for every table, a second after the
//! query is planned): event `n` becomes available at the start plus `⌊n × 1000 / R⌋` ms and is
//! stamped with that instant. The query runs under the default trigger (each batch takes what is
//! due) until it has read all `--events` and gone idle, and the sink stamps each output row with
//! the wall clock on arrival. A row's latency is its arrival minus its generation instant: for a
//! stateless query the `date_time` of the event it comes from (q2's output has no time, so the
//! bench adds the bid's `date_time` to its SELECT), for a windowed one the instant the watermark
//! closing its window could have been reached (the window's end plus the 4 s watermark delay, in
//! generation time). Queries whose output has neither (q3, q4, q5, q16, q17, q22) report no latency,
//! nor does q19, whose update rows include bids moved down a rank long after they arrived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::datasource::MemTable;
use sluice::sink::Sink;
use sluice::source::nexmark::{nexmark_schema, NexmarkOptions, NexmarkSource};
use sluice::{OutputMode, QueryProgress, SluiceError, StreamContext, StreamingQueryListener, Trigger};

/// The queries run when none is named: those of `sql/nexmark/`.
pub const QUERIES: &[&str] =
    &["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "q14", "q16", "q17", "q18", "q19", "q22"];

/// What to run.
#[derive(clap::Args)]
pub struct BenchOptions {
    /// A query to run (e.g. q5); repeat for several. Default: every query of the directory.
    #[arg(long = "query", value_name = "QUERY")]
    pub queries: Vec<String>,
    /// Events generated (people, auctions and bids together).
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub events: u64,
    /// Partitions of the source: threads generating each batch's events.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub partitions: u64,
    /// Events per micro-batch.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub batch_events: u64,
    /// Also runs each SELECT once as a DataFusion batch query over the same events (generated
    /// into memory first) and reports its events/s.
    #[arg(long)]
    pub batch: bool,
    /// One JSON object per query, one per line.
    #[arg(long)]
    pub json: bool,
    /// Events per second of wall clock: the source offers each event when its time comes, the
    /// query runs under the default trigger, and the end-to-end latency p50/p99 is reported (see
    /// the module documentation). Without it, every event is available at once.
    #[arg(long, value_name = "EVENTS_PER_S", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub rate: Option<u64>,
    /// Checkpoints in memory (`memory://`) instead of a new temporary directory: no disk flush in
    /// the figures.
    #[arg(long)]
    pub checkpoint_in_memory: bool,
    /// The state store of the queries: `memory` (default) or `rocksdb` (a build with the
    /// `rocksdb` feature), as `sluice run --state-store`.
    #[arg(long, value_name = "STORE", default_value = "memory", value_parser = ["memory", "rocksdb"])]
    pub state_store: String,
    /// The directory of the query files.
    #[arg(long, default_value = "sql/nexmark")]
    pub dir: PathBuf,
}

/// The watermark delay of every query file (`date_time - INTERVAL '4' SECOND`), ms.
const WATERMARK_DELAY_MS: i64 = 4_000;
/// Under `--rate`, how long after the bench reads the clock the stream starts, ms: room to plan
/// and start the query, so that no event waits for it.
const RATE_LEAD_MS: i64 = 1_000;
/// q2's SELECT, and what `--rate` runs instead: the same rows with their bid's `date_time`.
const Q2_SELECT: (&str, &str) = ("SELECT auction, price FROM bid", "SELECT auction, price, date_time FROM bid");

/// Where an output row's generation instant is, under `--rate`.
#[derive(Debug, Clone, Copy)]
enum Generated {
    /// A stateless query: the column is the time of the event the row comes from.
    EventTime(&'static str),
    /// The row is emitted when the watermark passes the end of its window, the column plus
    /// this many ms.
    WindowEnd(&'static str, i64),
    /// The column lies in a tumbling window of this many ms (aligned on the epoch), and the row is
    /// emitted when the watermark passes the window's end.
    InTumblingWindow(&'static str, i64),
}

impl Generated {
    /// The generation instant of query `name`'s rows, if its output shows it.
    fn of(name: &str) -> Option<Self> {
        match name {
            // q18 emits a pair's latest bid in the batch it arrives in.
            "q0" | "q1" | "q2" | "q14" | "q18" => Some(Self::EventTime("date_time")),
            // b.date_time of the bid with the highest price of its 10 s window.
            "q7" => Some(Self::InTumblingWindow("date_time", 10_000)),
            // The window's start.
            "q8" => Some(Self::WindowEnd("starttime", 10_000)),
            // The session's end.
            "q11" => Some(Self::WindowEnd("endtime", 0)),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::EventTime(c) | Self::WindowEnd(c, _) | Self::InTumblingWindow(c, _) => c,
        }
    }

    /// The generation instant, µs since the epoch, of a row whose column holds `ns`.
    fn instant_us(self, ns: i64) -> i64 {
        let ms = ns.div_euclid(1_000_000);
        let closing = |end_ms: i64| (end_ms + WATERMARK_DELAY_MS) * 1_000;
        match self {
            Self::EventTime(_) => ns.div_euclid(1_000),
            Self::WindowEnd(_, plus_ms) => closing(ms + plus_ms),
            Self::InTumblingWindow(_, size_ms) => closing((ms.div_euclid(size_ms) + 1) * size_ms),
        }
    }
}

/// The wall clock, µs since the epoch.
fn wall_clock_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The latency of every output row so far, µs.
type Latencies = Arc<Mutex<Vec<u64>>>;

/// A sink that only counts the rows it is given and, under `--rate`, the latency of each: its
/// arrival minus its generation instant (0 if the wall clock stepped back). The latencies are
/// computed here rather than the columns kept, since an output column may hold on to a much
/// larger buffer (a coalesced batch's capacity).
struct Discard {
    rows: Arc<Mutex<u64>>,
    latencies: Option<(Generated, Latencies)>,
}

impl Sink for Discard {
    fn add_batch(&mut self, _batch_id: u64, _schema: &SchemaRef, batches: &[RecordBatch]) -> sluice::Result<()> {
        let now = wall_clock_us();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        *self.rows.lock().unwrap_or_else(|e| e.into_inner()) += rows as u64;
        if let Some((generated, latencies)) = &self.latencies {
            let mut latencies = latencies.lock().unwrap_or_else(|e| e.into_inner());
            for batch in batches {
                let column = generated.column();
                let values = batch.column_by_name(column).ok_or_else(|| {
                    SluiceError::sql(format!("the output has no column {column} to time its rows by"))
                })?;
                let values = arrow::compute::cast(values, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
                let values = values.as_primitive::<TimestampNanosecondType>();
                latencies.extend(
                    values.iter().flatten().map(|ns| u64::try_from(now - generated.instant_us(ns)).unwrap_or(0)),
                );
            }
        }
        Ok(())
    }
}

/// Latency figures, ms.
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    rows: usize,
}

/// The p50 and p99 of latencies `us` (µs).
fn latency(mut us: Vec<u64>) -> Latency {
    us.sort_unstable();
    let ms = |p| percentile(&us, p) as f64 / 1_000.0;
    Latency { p50_ms: ms(50), p99_ms: ms(99), rows: us.len() }
}

/// Collects every batch's duration, ms, and the least end offset of its sources (events read).
#[derive(Default)]
struct Durations {
    durations: Mutex<Vec<u64>>,
    read: AtomicU64,
}

impl StreamingQueryListener for Durations {
    fn on_query_progress(&self, progress: &QueryProgress) {
        self.durations.lock().unwrap_or_else(|e| e.into_inner()).push(progress.batch_duration);
        let read = progress.sources.iter().map(|s| s.end_offset.as_u64().unwrap_or(0)).min().unwrap_or(0);
        self.read.fetch_max(read, Ordering::Relaxed);
    }
}

/// CPU seconds (user + system, every thread) of this process so far; 0 where `/proc` is missing.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command (which may hold spaces) in parentheses: utime is the 14th
    // field of the line, the 12th after the closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports in USER_HZ, 100 a second on every mainstream architecture.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The peak resident memory of this process so far, bytes; 0 where `/proc` is missing.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The `p`-th percentile (0 to 100) of sorted `values`, nearest rank; 0 when empty.
fn percentile(values: &[u64], p: usize) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank - 1]
}

/// The script of query `name` with the bench's sizes (and, under `--rate`, pacing from
/// `start_time_ms`), its SELECT, and the output mode of its sink.
fn script(options: &BenchOptions, name: &str, start_time_ms: i64) -> sluice::Result<(String, String, OutputMode)> {
    let path = options.dir.join(format!("{name}.sql"));
    let text = std::fs::read_to_string(&path).map_err(|e| SluiceError::io(&path, e))?;
    let marker = "num_events = '10000000'";
    if !text.contains(marker) {
        return Err(SluiceError::sql(format!("{}: no {marker} option to replace", path.display())));
    }
    let paced = options.rate.map_or(String::new(), |rate| {
        format!(
            ", is_rate_limited = 'true', first_event_rate = '{rate}', use_wallclock_event_time = 'true', \
             start_time_ms = '{start_time_ms}'"
        )
    });
    let mut sized = text.replace(
        marker,
        &format!(
            "num_events = '{}', num_partitions = '{}', max_events_per_trigger = '{}'{paced}",
            options.events, options.partitions, options.batch_events
        ),
    );
    if options.rate.is_some() && name == "q2" {
        if !sized.contains(Q2_SELECT.0) {
            return Err(SluiceError::sql(format!("{}: no {} to time", path.display(), Q2_SELECT.0)));
        }
        sized = sized.replace(Q2_SELECT.0, Q2_SELECT.1);
    }
    let sink = format!("CREATE TABLE nexmark_{name} ");
    let mode = match ["complete", "update"].into_iter().find(|m| text.contains(&format!("output_mode = '{m}'"))) {
        Some(mode) => OutputMode::parse(mode)?,
        None => OutputMode::Append,
    };
    // The file's console sink is replaced by the discarding one.
    let sized: String = sized.lines().filter(|l| !l.starts_with(&sink)).map(|l| format!("{l}\n")).collect();
    let insert = format!("INSERT INTO nexmark_{name}\n");
    let select = text
        .split_once(&insert)
        .map(|(_, s)| s.trim().trim_end_matches(';').to_string())
        .ok_or_else(|| SluiceError::sql(format!("{}: no {}", path.display(), insert.trim())))?;
    Ok((sized, select, mode))
}

/// The figures of one query.
struct Figures {
    query: String,
    events: u64,
    wall_s: f64,
    cpu_s: f64,
    batches: usize,
    batch_p50_ms: u64,
    batch_p99_ms: u64,
    output_rows: u64,
    peak_rss_bytes: u64,
    batch_engine_events_per_s: Option<f64>,
    /// Under `--rate`: the rate, and the latency where the output shows generation instants.
    rate: Option<(u64, Option<Latency>)>,
    /// The generator alone: events per second of wall clock and of CPU time.
    generator: (f64, f64),
}

impl Figures {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall_s.max(1e-9)
    }

    fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "query": self.query,
            "events": self.events,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "events_per_s": self.events_per_s(),
            "events_per_cpu_s": self.events_per_cpu_s(),
            "batches": self.batches,
            "batch_p50_ms": self.batch_p50_ms,
            "batch_p99_ms": self.batch_p99_ms,
            "output_rows": self.output_rows,
            "peak_rss_bytes": self.peak_rss_bytes,
            "batch_engine_events_per_s": self.batch_engine_events_per_s,
            "generator_events_per_s": self.generator.0,
            "generator_events_per_cpu_s": self.generator.1,
        });
        if let (Some((rate, latency)), Some(object)) = (&self.rate, json.as_object_mut()) {
            object.insert("rate".into(), (*rate).into());
            object.insert("latency_p50_ms".into(), latency.as_ref().map(|l| l.p50_ms).into());
            object.insert("latency_p99_ms".into(), latency.as_ref().map(|l| l.p99_ms).into());
            object.insert("latency_rows".into(), latency.as_ref().map(|l| l.rows).into());
        }
        json
    }

    fn line(&self) -> String {
        let batch = self.batch_engine_events_per_s.map_or(String::new(), |b| {
            format!(", batch engine {:.0} events/s (streaming at {:.0}%)", b, 100.0 * self.events_per_s() / b)
        });
        let rate = match &self.rate {
            None => String::new(),
            Some((rate, None)) => format!("; at {rate} events/s: latency not measured (no time in the output)"),
            Some((rate, Some(l))) => format!(
                "; at {rate} events/s: latency p50 {:.1} ms, p99 {:.1} ms over {} rows",
                l.p50_ms, l.p99_ms, l.rows
            ),
        };
        format!(
            "{}: {} events in {:.2} s: {:.0} events/s, {:.0} events per CPU s; {} batches, p50 {} ms, p99 {} ms; \
             {} output rows; peak RSS {} MB{batch}; generator alone {:.0} events/s, {:.0} events per CPU s{rate}",
            self.query,
            self.events,
            self.wall_s,
            self.events_per_s(),
            self.events_per_cpu_s(),
            self.batches,
            self.batch_p50_ms,
            self.batch_p99_ms,
            self.output_rows,
            self.peak_rss_bytes / (1024 * 1024),
            self.generator.0,
            self.generator.1,
        )
    }
}

/// Runs query `name` into the discarding sink; `generator` is the generator-alone figure.
async fn stream(options: &BenchOptions, name: &str, generator: (f64, f64)) -> sluice::Result<Figures> {
    let start_time_ms = wall_clock_us() / 1_000 + RATE_LEAD_MS;
    let (script, select, mode) = script(options, name, start_time_ms)?;
    let checkpoint = tempfile::tempdir().map_err(|e| SluiceError::io(std::env::temp_dir(), e))?;
    let location =
        if options.checkpoint_in_memory { "memory://".to_string() } else { checkpoint.path().display().to_string() };
    let mut ctx = StreamContext::new();
    ctx.set("sluice.state_store", &options.state_store).await?;
    let rows = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&rows);
    let generated = options.rate.and(Generated::of(name));
    let latencies: Latencies = Arc::default();
    let timed = generated.map(|g| (g, Arc::clone(&latencies)));
    ctx.register_sink(&format!("nexmark_{name}"), mode, move || {
        Box::new(Discard { rows: Arc::clone(&counter), latencies: timed.clone() })
    });
    let definitions = ctx.execute(&script).await?;
    let definition = definitions.first().ok_or_else(|| SluiceError::sql(format!("{name}: no INSERT INTO")))?;
    let query = ctx.start(definition, &location).await?;
    let durations = Arc::new(Durations::default());
    query.add_listener(durations.clone());
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let wall_s = if options.rate.is_some() {
        query.spawn(Trigger::default())?;
        // Stop once every source has read all the events and the query went idle.
        while query.is_active() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let status = query.status();
            let read_all = durations.read.load(Ordering::Relaxed) >= options.events;
            if read_all && !status.is_data_available && !status.is_trigger_active {
                query.stop();
            }
        }
        query.await_termination().await?;
        // From the stream's start.
        (wall_clock_us() - start_time_ms * 1_000) as f64 / 1e6
    } else {
        query.run(Trigger::AvailableNow).await?;
        wall.elapsed().as_secs_f64()
    };
    let cpu_s = cpu_seconds() - cpu;
    let mut durations = durations.durations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    durations.sort_unstable();
    let batch_engine_events_per_s = if options.batch { Some(batch(options, name, &select).await?) } else { None };
    let output_rows = *rows.lock().unwrap_or_else(|e| e.into_inner());
    let latency = generated.map(|_| latency(std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()))));
    Ok(Figures {
        query: name.to_string(),
        events: options.events,
        wall_s,
        cpu_s,
        batches: durations.len(),
        batch_p50_ms: percentile(&durations, 50),
        batch_p99_ms: percentile(&durations, 99),
        output_rows,
        peak_rss_bytes: peak_rss_bytes(),
        batch_engine_events_per_s,
        rate: options.rate.map(|rate| (rate, latency)),
        generator,
    })
}

/// The streams `select` reads.
fn streams(select: &str) -> Vec<&'static str> {
    ["person", "auction", "bid"]
        .into_iter()
        .filter(|s| select.contains(&format!("FROM {s}")) || select.contains(&format!("JOIN {s}")))
        .collect()
}

/// The generator alone: the record batches of `streams` for the bench's events, batch size and
/// partitions, built and dropped; events per second of wall clock and of process CPU time.
fn generator(options: &BenchOptions, streams: &[&str]) -> sluice::Result<(f64, f64)> {
    let sources = streams
        .iter()
        .map(|stream| {
            let settings: BTreeMap<String, String> = [
                ("stream", stream.to_string()),
                ("num_events", options.events.to_string()),
                ("num_partitions", options.partitions.to_string()),
                ("max_events_per_trigger", options.batch_events.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let parsed = NexmarkOptions::parse(stream, &settings)?;
            Ok(NexmarkSource::new(stream, nexmark_schema(parsed.stream), parsed))
        })
        .collect::<sluice::Result<Vec<_>>>()?;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let mut rows = 0;
    for start in (0..options.events).step_by(usize::try_from(options.batch_events).unwrap_or(usize::MAX)) {
        let end = start.saturating_add(options.batch_events).min(options.events);
        for source in &sources {
            rows += source.rows(start, end)?.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
    }
    std::hint::black_box(rows);
    let (wall_s, cpu_s) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    Ok((options.events as f64 / wall_s.max(1e-9), options.events as f64 / cpu_s.max(1e-9)))
}

/// The batch baseline: the events of the tables `select` reads, generated into memory first
/// (not timed), then `select` once as a DataFusion batch query; events per second.
async fn batch(options: &BenchOptions, name: &str, select: &str) -> sluice::Result<f64> {
    let mut tables: BTreeMap<&str, Vec<RecordBatch>> = BTreeMap::new();
    for stream in streams(select) {
        let mut ctx = StreamContext::new();
        let sql = format!(
            "CREATE TABLE {stream}_src WITH (connector = 'nexmark', stream = '{stream}', num_events = '{}', \
               num_partitions = '{}', max_events_per_trigger = '{}');
             CREATE TABLE {stream}_rows WITH (connector = 'memory', output_mode = 'append');
             INSERT INTO {stream}_rows SELECT * FROM {stream}_src",
            options.events, options.partitions, options.batch_events
        );
        let definitions = ctx.execute(&sql).await?;
        let query = ctx.start(&definitions[0], "memory://").await?;
        query.run(Trigger::AvailableNow).await?;
        tables.insert(stream, ctx.sql(&format!("SELECT * FROM {stream}_rows")).await?.collect().await?);
    }
    let mut ctx = StreamContext::new();
    for (table, batches) in tables {
        let Some(schema) = batches.first().map(RecordBatch::schema) else { continue };
        ctx.register_table(table, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    }
    let wall = Instant::now();
    let frame = ctx.sql(select).await?;
    frame.collect().await.map_err(|e| SluiceError::sql(format!("{name} as a batch query: {e}")))?;
    Ok(options.events as f64 / wall.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the queries of `options` one after the other and prints their figures.
///
/// # Errors
/// The first query that cannot be read, planned or run.
pub async fn run(options: &BenchOptions) -> sluice::Result<()> {
    if !Path::new(&options.dir).is_dir() {
        return Err(SluiceError::sql(format!(
            "no query directory {}; run from the repository root or give --dir",
            options.dir.display()
        )));
    }
    let all: Vec<String>;
    let queries = if options.queries.is_empty() {
        all = QUERIES.iter().map(|q| q.to_string()).collect();
        &all
    } else {
        &options.queries
    };
    // The generator alone, once for each set of streams the queries read.
    let mut generators: BTreeMap<Vec<&str>, (f64, f64)> = BTreeMap::new();
    for name in queries {
        let (_, select, _) = script(options, name, 0)?;
        let read = streams(&select);
        let alone = match generators.get(&read) {
            Some(figures) => *figures,
            None => {
                let figures = generator(options, &read)?;
                generators.insert(read, figures);
                figures
            }
        };
        let figures = stream(options, name, alone).await?;
        if options.json {
            println!("{}", figures.json());
        } else {
            println!("{}", figures.line());
        }
    }
    Ok(())
}
