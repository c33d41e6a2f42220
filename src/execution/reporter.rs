//! Times a query's triggers and turns them into [`QueryProgress`] reports for its listeners, its
//! log and `recent_progress` (Spark's `ProgressReporter` and `ProgressContext`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::listener::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent};
use super::progress::{format_ms, QueryProgress, SinkProgress, SourceProgress, StateOperatorProgress};
use super::status::QueryShared;
use crate::operator::watermark::EventTimeStats;

/// How long an idle query waits between idle reports by default (Spark's
/// `spark.sql.streaming.noDataProgressEventInterval`, 10 s).
pub const NO_DATA_PROGRESS_EVENT_INTERVAL: Duration = Duration::from_secs(10);

/// The phases of a trigger timed in `durationMs`, with Spark's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Asking the sources for the batch's end offsets.
    LatestOffset,
    /// Writing the offset log entry.
    WalCommit,
    /// Reading the batch's input from the sources.
    GetBatch,
    /// Preparing the batch's physical plan: it is planned once when the query starts, so this is
    /// the fresh execution state of its nodes (Spark plans incrementally here).
    QueryPlanning,
    /// Running the plan and writing the sink (of the sink's write, what outlasts the state commit).
    AddBatch,
    /// Writing the stateful operators' state (sluice's own phase), while the sink writes.
    StateCommit,
    /// Writing the commit log entry and committing the sources.
    CommitOffsets,
}

impl Phase {
    /// The `durationMs` key.
    pub fn name(self) -> &'static str {
        match self {
            Phase::LatestOffset => "latestOffset",
            Phase::WalCommit => "walCommit",
            Phase::GetBatch => "getBatch",
            Phase::QueryPlanning => "queryPlanning",
            Phase::AddBatch => "addBatch",
            Phase::StateCommit => "stateCommit",
            Phase::CommitOffsets => "commitOffsets",
        }
    }
}

/// The `durationMs` key of the whole trigger.
pub const TRIGGER_EXECUTION: &str = "triggerExecution";

/// The clock of one trigger: [`Self::lap`] charges the time since the previous lap to a phase.
#[derive(Debug)]
pub struct TriggerTimer {
    start_ms: i64,
    start: Instant,
    lap: Instant,
    phases: BTreeMap<Phase, Duration>,
}

impl TriggerTimer {
    fn start() -> Self {
        let now = Instant::now();
        Self { start_ms: now_ms(), start: now, lap: now, phases: BTreeMap::new() }
    }

    /// The time since the trigger started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds the time since the previous lap (or the trigger's start) to `phase`.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        *self.phases.entry(phase).or_default() += now - self.lap;
        self.lap = now;
    }
}

/// What a batch did, gathered by the micro-batch loop; the reporter adds ids, times and rates.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// The batch id.
    pub batch_id: u64,
    /// The watermark the batch ran under, ms; `None` for a query without watermark.
    pub watermark_ms: Option<i64>,
    /// Event-time statistics of the batch's rows over the watermarked sources.
    pub event_time: Option<EventTimeStats>,
    /// Per source, rates left at zero.
    pub sources: Vec<SourceProgress>,
    /// Per stateful operator.
    pub state_operators: Vec<StateOperatorProgress>,
    /// The sink and its rows.
    pub sink: SinkProgress,
}

/// Reports a query's triggers: keeps the recent ones and tells the listeners and the log.
pub struct ProgressReporter {
    id: String,
    name: String,
    /// The current run's id, listeners, recent reports and status, shared with the query's
    /// handles.
    shared: Arc<QueryShared>,
    /// The current run's id, `None` between runs.
    run_id: Option<String>,
    /// Start of the current trigger and of the one before it, ms since the epoch; `None` before
    /// the run's first (rates are per run, as in Spark).
    trigger_start_ms: Option<i64>,
    previous_trigger_start_ms: Option<i64>,
    /// When the last progress or idle report was made; `None` before any.
    last_report: Option<Instant>,
    /// The last batch's report, the base of idle reports.
    last_executed: Option<QueryProgress>,
}

impl std::fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressReporter").field("id", &self.id).field("run_id", &self.run_id).finish()
    }
}

impl ProgressReporter {
    /// A reporter for query `id` named `name`.
    pub fn new(id: String, name: String) -> Self {
        Self {
            id,
            name,
            shared: Arc::default(),
            run_id: None,
            trigger_start_ms: None,
            previous_trigger_start_ms: None,
            last_report: None,
            last_executed: None,
        }
    }

    /// What the reporter shares with the query's handles.
    pub(crate) fn shared(&self) -> &Arc<QueryShared> {
        &self.shared
    }

    /// The query's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Starts a trigger, and a run (with its started event) if none is on.
    pub fn start_trigger(&mut self) -> TriggerTimer {
        if self.run_id.is_none() {
            let run_id = uuid::Uuid::new_v4().to_string();
            let event = QueryStartedEvent {
                id: self.id.clone(),
                run_id: run_id.clone(),
                name: self.name.clone(),
                timestamp: format_ms(now_ms()),
            };
            tracing::info!(query = %self.name, id = %self.id, run_id = %run_id, "query started");
            self.shared.listeners().iter().for_each(|l| l.on_query_started(&event));
            self.shared.set_run_id(Some(run_id.clone()));
            self.run_id = Some(run_id);
            self.trigger_start_ms = None;
        }
        self.shared.trigger_started();
        let timer = TriggerTimer::start();
        self.previous_trigger_start_ms = self.trigger_start_ms.replace(timer.start_ms);
        timer
    }

    /// Ends a trigger that ran a batch: reports its progress.
    pub fn finish_trigger(&mut self, timer: TriggerTimer, outcome: BatchOutcome) {
        let mut progress = self.progress(&timer, outcome.batch_id as i64);
        let (input_secs, processing_secs) = self.rate_windows(&timer, &progress);
        progress.sources = outcome.sources;
        for s in &mut progress.sources {
            s.input_rows_per_second = s.num_input_rows as f64 / input_secs;
            s.processed_rows_per_second = s.num_input_rows as f64 / processing_secs;
        }
        progress.num_input_rows = progress.sources.iter().map(|s| s.num_input_rows).sum();
        progress.input_rows_per_second = progress.sources.iter().map(|s| s.input_rows_per_second).sum();
        progress.processed_rows_per_second = progress.sources.iter().map(|s| s.processed_rows_per_second).sum();
        progress.watermark_ms = outcome.watermark_ms;
        if let Some(stats) = outcome.event_time {
            progress.event_time.insert("min".into(), format_ms(stats.min_ms));
            progress.event_time.insert("max".into(), format_ms(stats.max_ms));
            progress.event_time.insert("avg".into(), format_ms(stats.avg_ms()));
        }
        if let Some(w) = outcome.watermark_ms {
            progress.event_time.insert("watermark".into(), format_ms(w));
        }
        progress.state_operators = outcome.state_operators;
        progress.sink = outcome.sink;

        tracing::info!(target: "sluice::progress", query = %self.name, "{}", progress.line());
        tracing::debug!(target: "sluice::progress", query = %self.name, json = %serde_json::json!(progress), "progress");
        self.shared.listeners().iter().for_each(|l| l.on_query_progress(&progress));
        self.shared.keep(progress.clone());
        self.shared.batch_finished();
        self.last_executed = Some(progress);
        self.last_report = Some(Instant::now());
    }

    /// Ends a trigger that ran no batch. At most every idle interval (by default
    /// [`NO_DATA_PROGRESS_EVENT_INTERVAL`]), keeps
    /// a report of the idle query (the last batch's state, no input) and, unless it is the
    /// run's first report, posts an idle event (as Spark's `updateIdleness`). `watermark_ms` is
    /// the watermark of the last batch, if the query has one.
    pub fn finish_idle_trigger(&mut self, timer: TriggerTimer, last_batch_id: Option<u64>, watermark_ms: Option<i64>) {
        self.shared.idle_trigger_finished();
        let no_data_interval = self.shared.no_data_interval();
        if self.last_report.is_some_and(|t| t.elapsed() < no_data_interval) {
            return;
        }
        let mut progress = self.progress(&timer, last_batch_id.map_or(-1, |id| id as i64));
        if let Some(last) = &self.last_executed {
            progress.sources = last.sources.iter().map(SourceProgress::idle).collect();
            progress.state_operators = last.state_operators.iter().map(StateOperatorProgress::idle).collect();
            progress.sink = SinkProgress { num_output_rows: 0, ..last.sink.clone() };
        }
        (progress.input_rows_per_second, progress.processed_rows_per_second) = (0.0, 0.0);
        progress.watermark_ms = watermark_ms;
        if let Some(w) = watermark_ms {
            progress.event_time.insert("watermark".into(), format_ms(w));
        }
        self.shared.keep(progress);
        if self.last_report.is_some() {
            let event = QueryIdleEvent {
                id: self.id.clone(),
                run_id: self.run_id.clone().unwrap_or_default(),
                timestamp: format_ms(timer.start_ms),
            };
            tracing::info!(query = %self.name, "query idle: no new data for {no_data_interval:?}");
            self.shared.listeners().iter().for_each(|l| l.on_query_idle(&event));
        }
        self.last_report = Some(Instant::now());
    }

    /// Ends the run: posts the terminated event with `error`, if any.
    pub fn terminate(&mut self, error: Option<String>) {
        let Some(run_id) = self.run_id.take() else { return };
        self.shared.set_run_id(None);
        match &error {
            None => tracing::info!(query = %self.name, "query stopped"),
            Some(e) => tracing::error!(query = %self.name, "query failed: {e}"),
        }
        let event = QueryTerminatedEvent { id: self.id.clone(), run_id, exception: error };
        self.shared.listeners().iter().for_each(|l| l.on_query_terminated(&event));
    }

    /// The report's frame: ids, trigger time and durations.
    fn progress(&self, timer: &TriggerTimer, batch_id: i64) -> QueryProgress {
        let elapsed = timer.start.elapsed();
        let mut duration_ms: BTreeMap<String, u64> =
            timer.phases.iter().map(|(p, d)| (p.name().to_string(), d.as_millis() as u64)).collect();
        duration_ms.insert(TRIGGER_EXECUTION.to_string(), elapsed.as_millis() as u64);
        QueryProgress {
            id: self.id.clone(),
            run_id: self.run_id.clone().unwrap_or_default(),
            name: self.name.clone(),
            timestamp: format_ms(timer.start_ms),
            batch_id,
            batch_duration: elapsed.as_millis() as u64,
            duration_ms,
            input_rows_per_second: f64::NAN,
            processed_rows_per_second: f64::NAN,
            ..Default::default()
        }
    }

    /// Seconds since the previous trigger's start (infinite for a run's first trigger) and of
    /// this trigger (at least 1 ms), the denominators of Spark's two rates.
    fn rate_windows(&self, timer: &TriggerTimer, progress: &QueryProgress) -> (f64, f64) {
        let input =
            self.previous_trigger_start_ms.map_or(f64::INFINITY, |last| (timer.start_ms - last) as f64 / 1000.0);
        (input, progress.batch_duration.max(1) as f64 / 1000.0)
    }
}

impl SourceProgress {
    /// The source as an idle report shows it: no rows, offsets where the last batch ended.
    fn idle(&self) -> SourceProgress {
        SourceProgress {
            description: self.description.clone(),
            start_offset: self.end_offset.clone(),
            end_offset: self.end_offset.clone(),
            latest_offset: self.latest_offset.clone(),
            ..Default::default()
        }
    }
}

impl StateOperatorProgress {
    /// The operator as an idle report shows it: state size kept, per-batch counts zeroed (Spark's
    /// `resetExecStatsForNoExecution`).
    fn idle(&self) -> StateOperatorProgress {
        StateOperatorProgress { num_rows_updated: 0, num_rows_dropped_by_watermark: 0, ..self.clone() }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
