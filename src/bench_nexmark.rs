//! `sluice bench nexmark` (part of the `sluice` binary, not of the library): runs the Nexmark
//! queries of `sql/nexmark/` on the `nexmark` connector into a sink that discards the rows, and
//! reports per query the events, wall seconds, events per second, events per second of process
//! CPU time (user + system, all threads, generator included, from `/proc/self/stat`), the
//! micro-batch duration p50 / p99 and the process's peak resident memory (`VmHWM` of
//! `/proc/self/status`, the peak of the whole run so far). With `--batch` it also runs the same
//! SELECT once as a DataFusion batch query over the same events, pre-generated into memory, and
//! reports its events per second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use sluice::sink::Sink;
use sluice::{OutputMode, QueryProgress, SluiceError, StreamContext, StreamingQueryListener, Trigger};

/// The queries run when none is named: those of `sql/nexmark/`.
pub const QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11", "q14", "q16", "q17", "q22"];

/// What to run.
pub struct BenchOptions {
    /// The directory of the query files (`sql/nexmark`).
    pub dir: PathBuf,
    /// The queries, e.g. `q5`.
    pub queries: Vec<String>,
    /// Events generated (all kinds).
    pub events: u64,
    /// Partitions of the source (generator threads).
    pub partitions: usize,
    /// Events per micro-batch.
    pub batch_events: u64,
    /// Also run the batch baseline.
    pub batch: bool,
    /// One JSON object per query instead of a text line.
    pub json: bool,
}

/// A sink that only counts the rows it is given.
struct Discard(Arc<Mutex<u64>>);

impl Sink for Discard {
    fn add_batch(&mut self, _batch_id: u64, _schema: &SchemaRef, batches: &[RecordBatch]) -> sluice::Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += rows as u64;
        Ok(())
    }
}

/// Collects every batch's duration, ms.
#[derive(Default)]
struct Durations(Mutex<Vec<u64>>);

impl StreamingQueryListener for Durations {
    fn on_query_progress(&self, progress: &QueryProgress) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(progress.batch_duration);
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

/// The script of query `name` with the bench's sizes, its SELECT, and the output mode of its sink.
fn script(options: &BenchOptions, name: &str) -> sluice::Result<(String, String, OutputMode)> {
    let path = options.dir.join(format!("{name}.sql"));
    let text = std::fs::read_to_string(&path).map_err(|e| SluiceError::io(&path, e))?;
    let marker = "num_events = '10000000'";
    if !text.contains(marker) {
        return Err(SluiceError::sql(format!("{}: no {marker} option to replace", path.display())));
    }
    let sized = text.replace(
        marker,
        &format!(
            "num_events = '{}', num_partitions = '{}', max_events_per_trigger = '{}'",
            options.events, options.partitions, options.batch_events
        ),
    );
    let sink = format!("CREATE TABLE nexmark_{name} ");
    let mode = if text.contains("output_mode = 'complete'") { OutputMode::Complete } else { OutputMode::Append };
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
}

impl Figures {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall_s.max(1e-9)
    }

    fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s.max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
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
        })
    }

    fn line(&self) -> String {
        let batch = self.batch_engine_events_per_s.map_or(String::new(), |b| {
            format!(", batch engine {:.0} events/s (streaming at {:.0}%)", b, 100.0 * self.events_per_s() / b)
        });
        format!(
            "{}: {} events in {:.2} s: {:.0} events/s, {:.0} events per CPU s; {} batches, p50 {} ms, p99 {} ms; \
             {} output rows; peak RSS {} MB{batch}",
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
        )
    }
}

/// Runs query `name` into the discarding sink.
async fn stream(options: &BenchOptions, name: &str) -> sluice::Result<Figures> {
    let (script, select, mode) = script(options, name)?;
    let checkpoint = tempfile::tempdir().map_err(|e| SluiceError::io(std::env::temp_dir(), e))?;
    let mut ctx = StreamContext::new();
    let rows = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&rows);
    ctx.register_sink(&format!("nexmark_{name}"), mode, move || Box::new(Discard(Arc::clone(&counter))));
    let definitions = ctx.execute(&script).await?;
    let definition = definitions.first().ok_or_else(|| SluiceError::sql(format!("{name}: no INSERT INTO")))?;
    let query = ctx.start(definition, &checkpoint.path().display().to_string()).await?;
    let durations = Arc::new(Durations::default());
    query.add_listener(durations.clone());
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    query.run(Trigger::AvailableNow).await?;
    let (wall_s, cpu_s) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let mut durations = durations.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    durations.sort_unstable();
    let batch_engine_events_per_s = if options.batch { Some(batch(options, name, &select).await?) } else { None };
    let output_rows = *rows.lock().unwrap_or_else(|e| e.into_inner());
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
    })
}

/// The batch baseline: the events of the tables `select` reads, generated into memory first
/// (not timed), then `select` once as a DataFusion batch query; events per second.
async fn batch(options: &BenchOptions, name: &str, select: &str) -> sluice::Result<f64> {
    let mut tables: BTreeMap<&str, Vec<RecordBatch>> = BTreeMap::new();
    for stream in ["person", "auction", "bid"] {
        if !(select.contains(&format!("FROM {stream}")) || select.contains(&format!("JOIN {stream}"))) {
            continue;
        }
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
    for name in &options.queries {
        let figures = stream(options, name).await?;
        if options.json {
            println!("{}", figures.json());
        } else {
            println!("{}", figures.line());
        }
    }
    Ok(())
}
