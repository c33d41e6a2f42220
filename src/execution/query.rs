//! A running streaming query and its micro-batch loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{collect_partitioned, ExecutionPlan};
use serde_json::Value;
use tokio::sync::Notify;

use super::progress::{SinkProgress, SourceProgress, StateOperatorProgress};
use super::recovery::{resume_point, source_mismatch, ResumePoint};
use super::reporter::{BatchOutcome, Phase, ProgressReporter, TriggerTimer};
use super::status::QueryShared;
use super::trigger::{Trigger, IDLE_POLL};
use crate::checkpoint::log::SourceRange;
use crate::checkpoint::{BatchLog, CheckpointLocation, CheckpointLock, CommitEntry, OffsetEntry};
use crate::operator::watermark::WatermarkTracker;
use crate::operator::{BatchWatermarks, StatefulOperator};
use crate::plan::batch_time::BatchClock;
use crate::plan::stream_table::StreamTable;
use crate::sink::Sink;
use crate::source::backpressure::BatchFeedback;
use crate::source::Source;
use crate::Result;

/// Batches of log and state history kept for recovery (Spark's `minBatchesToRetain`).
pub const MIN_BATCHES_TO_RETAIN: u64 = 100;

/// Asks a running query to stop after its current batch; clones share the request.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stopped: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl StopHandle {
    /// Requests a graceful stop: the query finishes the batch it is running and returns.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    async fn sleep(&self, duration: Duration) {
        let notified = self.wake.notified();
        if !self.is_stopped() {
            let _ = tokio::time::timeout(duration, notified).await;
        }
    }
}

/// A source of the query and the table its rows are published through.
#[derive(Debug)]
pub(crate) struct QuerySource {
    pub source: Box<dyn Source>,
    pub table: Arc<StreamTable>,
}

/// The micro-batch loop of a continuous query (Spark's `MicroBatchExecution`): sources, an
/// incremental plan, stateful operators, a sink and a checkpoint. Run through the query's
/// [`super::StreamingQuery`] handles.
pub(crate) struct MicroBatchExecution {
    name: String,
    output_schema: SchemaRef,
    /// The physical plan, built once when the query starts and executed by every batch.
    physical: Arc<dyn ExecutionPlan>,
    task_context: Arc<TaskContext>,
    /// The time `now()` returns, set to each batch's timestamp.
    clock: BatchClock,
    sources: Vec<QuerySource>,
    /// Shared with the blocking task that writes each batch's output (while the state commits);
    /// the loop waits for that task, so it never contends for the lock.
    sink: Arc<Mutex<Box<dyn Sink>>>,
    operators: Vec<Arc<dyn StatefulOperator>>,
    location: CheckpointLocation,
    /// The checkpoint's lock while the query may write to it: from its start until it stops.
    lock: Option<CheckpointLock>,
    /// Set when the query stopped and released the lock: the newest offset log entry then (a
    /// query run again checks that no other query wrote to the checkpoint meanwhile).
    released_at: Option<Option<u64>>,
    offsets: BatchLog,
    commits: BatchLog,
    /// The purge of old log entries and state files running in the background (see
    /// [`Self::purge`]).
    purging: Option<tokio::task::JoinHandle<Result<()>>>,
    watermarks: WatermarkTracker,
    next_batch_id: u64,
    replay: Option<OffsetEntry>,
    source_starts: BTreeMap<String, Value>,
    /// `W` of the last batch run (the next batch's late-row watermark).
    last_watermark_ms: i64,
    stop: StopHandle,
    reporter: ProgressReporter,
    /// The processing-time trigger's interval while one runs (what backpressure aims at).
    trigger_interval: Option<Duration>,
    /// How late the current trigger started after it was due.
    scheduling_delay: Duration,
}

impl std::fmt::Debug for MicroBatchExecution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroBatchExecution").field("name", &self.name).field("checkpoint", &self.location).finish()
    }
}

/// Everything a [`MicroBatchExecution`] is built from; see [`crate::StreamContext`].
pub(crate) struct QueryParts {
    /// The query's id from the checkpoint's `metadata`.
    pub id: String,
    pub name: String,
    pub output_schema: SchemaRef,
    pub physical: Arc<dyn ExecutionPlan>,
    pub task_context: Arc<TaskContext>,
    pub clock: BatchClock,
    pub sources: Vec<QuerySource>,
    pub sink: Box<dyn Sink>,
    pub operators: Vec<Arc<dyn StatefulOperator>>,
    pub location: CheckpointLocation,
    /// The checkpoint's lock, taken before anything was read from it (`None` in memory).
    pub lock: Option<CheckpointLock>,
    pub watermarks: WatermarkTracker,
}

impl MicroBatchExecution {
    /// Opens the query at its checkpoint: restores source logs, watermarks and operator state,
    /// and schedules the replay of an uncommitted batch.
    pub(crate) async fn open(parts: QueryParts) -> Result<Self> {
        let QueryParts {
            id,
            name,
            output_schema,
            physical,
            task_context,
            clock,
            mut sources,
            mut sink,
            operators,
            location,
            lock,
            mut watermarks,
        } = parts;
        sink.open(&id).await?;
        let offsets = BatchLog::new(location.clone(), "offsets");
        let commits = BatchLog::new(location.clone(), "commits");
        let mut resume = resume_point(&offsets, &commits).await?;
        // A torn state file of the last committed batch (the newest version): that batch runs
        // again from its logged offsets, on the version before, as if it had not been committed.
        if resume.replay.is_none() {
            if let Some(version) = resume.state_version {
                for op in &operators {
                    if let Some((file, why)) = op.damaged_state(version).await? {
                        tracing::warn!(
                            %file,
                            "the newest state file is torn ({why}): a crash while it was written; batch {version} runs again"
                        );
                        resume = ResumePoint::replaying(offsets.read_listed(version).await?);
                        break;
                    }
                }
            }
        }
        let mut source_starts = BTreeMap::new();
        for s in &mut sources {
            if let Some(read) = s.table.columns_read_by(&physical) {
                s.source.prune_columns(&read);
            }
            s.source.restore(&location, resume.sources_through).await?;
            let start = match resume.sources_through {
                None => s.source.initial_offset(),
                Some(_) => resume
                    .source_starts
                    .get(s.source.name())
                    .cloned()
                    .ok_or_else(|| source_mismatch(&location, s.source.name()))?,
            };
            source_starts.insert(s.source.name().to_string(), start);
        }
        watermarks.restore(&resume.input_watermarks_ms);
        for op in &operators {
            op.restore(resume.state_version).await?;
        }
        // After a committed batch, operators compare the next watermark with that batch's, so a
        // no-data batch due before the stop still runs.
        if resume.replay.is_none() && resume.state_version.is_some() {
            let entry: OffsetEntry = offsets.read_listed(resume.next_batch_id - 1).await?;
            for op in &operators {
                op.begin_batch(batch_watermarks(&entry)).await;
            }
        }
        Ok(Self {
            reporter: ProgressReporter::new(id, name.clone()),
            name,
            output_schema,
            physical,
            task_context,
            clock,
            sources,
            sink: Arc::new(Mutex::new(sink)),
            operators,
            location,
            lock,
            released_at: None,
            offsets,
            commits,
            purging: None,
            watermarks,
            next_batch_id: resume.next_batch_id,
            replay: resume.replay,
            source_starts,
            last_watermark_ms: resume.last_watermark_ms,
            stop: StopHandle::default(),
            trigger_interval: None,
            scheduling_delay: Duration::ZERO,
        })
    }

    /// The query's name (its sink table).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The schema of the rows the sink receives.
    pub(crate) fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The incremental physical plan every batch executes, one node per line, indented by depth.
    pub(crate) fn explain(&self) -> String {
        datafusion::physical_plan::displayable(self.physical.as_ref()).indent(false).to_string()
    }

    /// The request to stop this query, shared with its handles.
    pub(crate) fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The query's id, kept across restarts in the checkpoint's `metadata`.
    pub(crate) fn id(&self) -> &str {
        self.reporter.id()
    }

    /// The listeners, recent progress and status shared with the query's handles.
    pub(crate) fn shared(&self) -> &Arc<QueryShared> {
        self.reporter.shared()
    }

    /// Runs micro-batches under `trigger` until the trigger ends (available-now) or a stop is
    /// requested.
    ///
    /// # Errors
    /// The first error of any batch: the batch is not committed and runs again on restart.
    /// The checkpoint's lock is released when the trigger ends (taken again if the query is run
    /// again).
    pub(crate) async fn run(&mut self, trigger: Trigger) -> Result<()> {
        let result = match self.relock().await {
            Ok(()) => self.run_triggers(trigger).await,
            Err(e) => Err(e),
        };
        self.release_lock().await;
        self.reporter.terminate(result.as_ref().err().map(ToString::to_string));
        result
    }

    /// Releases the checkpoint's lock: the query stopped or failed. A background purge ends
    /// first (its failure is logged: the files are deleted at a later purge).
    async fn release_lock(&mut self) {
        if let Err(e) = self.finish_purge().await {
            tracing::warn!(checkpoint = %self.location.display(), "cannot purge old checkpoint files: {e}");
        }
        if let Some(lock) = self.lock.take() {
            lock.release().await;
            self.released_at = Some(self.offsets.latest().await.ok().flatten());
        }
    }

    /// Takes the checkpoint's lock again for a query that stopped and is run again, provided no
    /// other query wrote to the checkpoint meanwhile.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when another query holds the lock or wrote batches since.
    async fn relock(&mut self) -> Result<()> {
        let Some(released_at) = self.released_at else { return Ok(()) };
        let lock = self.location.lock().await?;
        if self.offsets.latest().await? != released_at {
            return Err(self.location.error(
                "offsets",
                "another query wrote to the checkpoint since this one stopped; start the query again from its checkpoint",
            ));
        }
        self.lock = lock;
        self.released_at = None;
        Ok(())
    }

    async fn run_triggers(&mut self, trigger: Trigger) -> Result<()> {
        self.trigger_interval = None;
        match trigger {
            Trigger::AvailableNow => {
                for s in &mut self.sources {
                    s.source.freeze_available().await?;
                }
                while !self.stop.is_stopped() && self.next_batch().await? {}
            }
            Trigger::Once => {
                for s in &mut self.sources {
                    s.source.read_all_available();
                    s.source.freeze_available().await?;
                }
                self.next_batch().await?;
            }
            Trigger::ProcessingTime(interval) => {
                self.trigger_interval = Some(interval).filter(|i| !i.is_zero());
                let mut late = Duration::ZERO;
                while !self.stop.is_stopped() {
                    let started = Instant::now();
                    self.scheduling_delay = late;
                    let ran = self.next_batch().await;
                    late = started.elapsed().saturating_sub(interval);
                    let ran = ran?;
                    let wait = if interval.is_zero() {
                        if ran {
                            Duration::ZERO
                        } else {
                            // A source that knows when its next data comes (a rate-limited
                            // generator) shortens the wait, so its rows are not held back.
                            self.sources.iter().filter_map(|s| s.source.next_data_in()).fold(IDLE_POLL, Duration::min)
                        }
                    } else {
                        interval.saturating_sub(started.elapsed())
                    };
                    self.stop.sleep(wait).await;
                }
            }
        }
        Ok(())
    }

    /// Runs the batch left uncommitted by a crash, if any; otherwise plans and runs the next batch
    /// if there is new data or a due no-data batch. False when idle. A failed batch releases the
    /// checkpoint's lock: a failed query runs no more batches.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub(crate) async fn run_next_batch(&mut self) -> Result<bool> {
        let result = match self.relock().await {
            Ok(()) => self.next_batch().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.release_lock().await;
        }
        result
    }

    /// [`Self::run_next_batch`] with the lock held.
    async fn next_batch(&mut self) -> Result<bool> {
        let mut timer = self.reporter.start_trigger();
        if let Some(entry) = self.replay.take() {
            self.run_batch(entry, timer).await?;
            return Ok(true);
        }
        let batch_id = self.next_batch_id;
        let mut ranges = BTreeMap::new();
        let mut has_data = false;
        for s in &mut self.sources {
            let name = s.source.name().to_string();
            let start = self.source_starts[&name].clone();
            let end = s.source.plan_batch(&self.location, batch_id, &start).await?;
            has_data |= end != start;
            ranges.insert(name, SourceRange { start, end });
        }
        let watermark_ms = self.watermarks.next_watermark(self.last_watermark_ms);
        timer.lap(Phase::LatestOffset);
        if !has_data {
            let mut due = false;
            for op in &self.operators {
                due |= op.needs_no_data_batch(watermark_ms).await;
            }
            if !due {
                let last_batch_id = self.next_batch_id.checked_sub(1);
                let watermark = self.watermarks.is_active().then_some(self.last_watermark_ms);
                self.reporter.finish_idle_trigger(timer, last_batch_id, watermark);
                return Ok(false);
            }
        }
        let entry = OffsetEntry {
            batch_id,
            timestamp_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            watermark_ms,
            late_watermark_ms: self.last_watermark_ms,
            sources: ranges,
            input_watermarks_ms: self.watermarks.inputs().clone(),
        };
        self.offsets.write(batch_id, &entry).await?;
        timer.lap(Phase::WalCommit);
        self.run_batch(entry, timer).await?;
        Ok(true)
    }

    /// Runs the batch `entry` describes: read, execute, sink, commit.
    async fn run_batch(&mut self, entry: OffsetEntry, mut timer: TriggerTimer) -> Result<()> {
        let batch_id = entry.batch_id;
        let watermarks = batch_watermarks(&entry);
        for op in &self.operators {
            op.begin_batch(watermarks).await;
        }
        let mut outcome = BatchOutcome {
            batch_id,
            watermark_ms: self.watermarks.is_active().then_some(entry.watermark_ms),
            ..Default::default()
        };
        for s in &mut self.sources {
            let name = s.source.name().to_string();
            let range = entry.sources.get(&name).ok_or_else(|| source_mismatch(&self.location, &name))?;
            let data = s.source.read(&range.start, &range.end).await?;
            if let Some(stats) = self.watermarks.observe(&name, &data.batches)? {
                outcome.event_time = Some(outcome.event_time.map_or(stats, |e| e.merge(stats)));
            }
            let rows: u64 = data.batches.iter().map(|b| b.num_rows() as u64).sum();
            let mut progress = SourceProgress::read(s.source.description(), range, rows, data.dropped_records);
            progress.metrics.extend(s.source.progress_metrics());
            outcome.sources.push(progress);
            s.table.set_batch(data.batches);
            self.source_starts.insert(name, range.end.clone());
        }
        timer.lap(Phase::GetBatch);
        self.clock.set(entry.timestamp_ms);
        let plan = reset_plan_states(Arc::clone(&self.physical))?;
        timer.lap(Phase::QueryPlanning);
        // Partitions in order: the sink receives the same rows in the same order on a replay.
        let output: Vec<_> =
            collect_partitioned(plan, Arc::clone(&self.task_context)).await?.into_iter().flatten().collect();
        for s in &self.sources {
            s.table.set_batch(Vec::new());
        }
        timer.lap(Phase::AddBatch);
        // Progress first: a commit resets the operators' per-batch counts.
        for op in &self.operators {
            outcome.state_operators.push(StateOperatorProgress::from(op.progress().await));
        }
        // The sink writes (on a blocking thread: sinks do synchronous I/O) while the state
        // commits: neither needs the other on the disk first. A crash before both are there
        // leaves the batch without `commits/N`, so it runs again, from the state before it, and
        // its output replaces this attempt's.
        let (sink, schema) = (Arc::clone(&self.sink), Arc::clone(&self.output_schema));
        let sinking = tokio::task::spawn_blocking(move || {
            let mut sink = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sink.add_batch(batch_id, &schema, &output)?;
            let num_output_rows = output.iter().map(|b| b.num_rows() as u64).sum();
            Ok::<_, crate::SluiceError>(SinkProgress { description: sink.description(), num_output_rows })
        });
        let mut committed = Ok(());
        for op in &self.operators {
            committed = op.commit(batch_id).await;
            if committed.is_err() {
                break;
            }
        }
        timer.lap(Phase::StateCommit);
        // Waits for the sink even when the state failed, so nothing of this attempt is written
        // after the batch has failed.
        let sunk = sinking.await.map_err(|e| datafusion::error::DataFusionError::ExecutionJoin(Box::new(e)));
        committed?;
        outcome.sink = sunk??;
        timer.lap(Phase::AddBatch);
        let next_watermark_ms = self.watermarks.next_watermark(entry.watermark_ms);
        let commit = CommitEntry { batch_id, input_watermarks_ms: self.watermarks.inputs().clone(), next_watermark_ms };
        self.commits.write(batch_id, &commit).await?;
        for s in &mut self.sources {
            let name = s.source.name();
            let range = entry.sources.get(name).ok_or_else(|| source_mismatch(&self.location, name))?;
            s.source.commit(&self.location, batch_id, &range.end).await?;
        }
        timer.lap(Phase::CommitOffsets);
        for (s, progress) in self.sources.iter_mut().zip(&outcome.sources) {
            s.source.batch_finished(&BatchFeedback {
                finished: Instant::now(),
                rows: progress.num_input_rows,
                processing: timer.elapsed(),
                scheduling_delay: self.scheduling_delay,
                interval: self.trigger_interval,
            });
        }
        self.last_watermark_ms = entry.watermark_ms;
        self.next_batch_id = batch_id + 1;
        self.purge(batch_id).await?;
        self.reporter.finish_trigger(timer, outcome);
        Ok(())
    }

    /// Every [`MIN_BATCHES_TO_RETAIN`] batches, lists the log entries and state files older than
    /// that, and the source log entries a restart no longer reads (a source keeps its latest
    /// compacted entry and those after it), and deletes them in the background: hundreds of
    /// deletes (about 0.2 ms each on a local disk) would otherwise hold the next batch, and none
    /// of those files is read or written again. The previous purge is waited for first, and
    /// when the query stops (see [`Self::finish_purge`]).
    async fn purge(&mut self, batch_id: u64) -> Result<()> {
        if !batch_id.is_multiple_of(MIN_BATCHES_TO_RETAIN) || batch_id < MIN_BATCHES_TO_RETAIN {
            return Ok(());
        }
        self.finish_purge().await?;
        let keep_from = batch_id + 1 - MIN_BATCHES_TO_RETAIN;
        let mut stale = self.offsets.stale_before(keep_from).await?;
        stale.extend(self.commits.stale_before(keep_from).await?);
        for op in &self.operators {
            stale.extend(op.stale_before(keep_from).await?);
        }
        for s in &mut self.sources {
            stale.extend(s.source.stale_before(&self.location, keep_from).await?);
        }
        let location = self.location.clone();
        self.purging = Some(tokio::spawn(async move { location.delete_all(stale).await }));
        Ok(())
    }

    /// Waits for the background purge, if one runs.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] naming a file it could not delete.
    async fn finish_purge(&mut self) -> Result<()> {
        match self.purging.take() {
            Some(task) => task.await.map_err(|e| self.location.error("", format!("the purge task failed: {e}")))?,
            None => Ok(()),
        }
    }
}

/// The watermarks and processing time the offset log gives a batch.
fn batch_watermarks(entry: &OffsetEntry) -> BatchWatermarks {
    BatchWatermarks {
        current_ms: entry.watermark_ms,
        late_ms: entry.late_watermark_ms,
        processing_time_ms: entry.timestamp_ms,
    }
}
