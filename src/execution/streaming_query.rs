//! [`StreamingQuery`]: the handle to a started query (Spark's `StreamingQuery`), and
//! [`StreamingQueryManager`], the queries of one context (Spark's `spark.streams`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use futures::future::select_all;
use tokio::sync::Mutex as AsyncMutex;

use super::listener::{ProgressFn, StreamingQueryListener};
use super::progress::QueryProgress;
use super::query::{MicroBatchExecution, StopHandle};
use super::status::{Lifecycle, QueryShared, QueryState, QueryStatus};
use super::trigger::Trigger;
use crate::{Result, SluiceError};

/// A started continuous query. Clones are handles to the same query.
///
/// A query returned by [`crate::StreamContext::start`] has opened its checkpoint and runs no
/// trigger yet: [`Self::run`] runs it on the caller's task until its trigger ends, and
/// [`Self::spawn`] runs it on a tokio task of its own, to be watched with [`Self::status`],
/// [`Self::recent_progress`], [`Self::await_termination`] and stopped with [`Self::stop`]
/// (the DataFrame API's `start` does this). A query whose batch failed is marked failed: it runs
/// no other batch, and [`Self::exception`] gives the error; start it again from its checkpoint.
#[derive(Clone)]
pub struct StreamingQuery {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    name: String,
    output_schema: SchemaRef,
    explain: String,
    stop: StopHandle,
    shared: Arc<QueryShared>,
    execution: Arc<AsyncMutex<MicroBatchExecution>>,
}

impl std::fmt::Debug for StreamingQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingQuery")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("lifecycle", &self.inner.shared.lifecycle())
            .finish()
    }
}

impl StreamingQuery {
    pub(crate) fn new(execution: MicroBatchExecution) -> Self {
        let inner = Inner {
            id: execution.id().to_string(),
            name: execution.name().to_string(),
            output_schema: Arc::clone(execution.output_schema()),
            explain: execution.explain(),
            stop: execution.stop_handle(),
            shared: Arc::clone(execution.shared()),
            execution: Arc::new(AsyncMutex::new(execution)),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The query's id, kept across restarts in the checkpoint's `metadata` (Spark's `id`).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The id of the current run, new at each start (Spark's `runId`); `None` before the first
    /// trigger and after the run ends.
    pub fn run_id(&self) -> Option<String> {
        self.inner.shared.run_id()
    }

    /// The query's name: the `query_name` it was given, else its sink table.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The schema of the rows the sink receives.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.inner.output_schema
    }

    /// The incremental physical plan every batch executes, one node per line, indented by depth
    /// (DataFusion's `EXPLAIN` form). A stateful operator's line reads
    /// `StatefulExec: aggregate[0], state partitions=4`, its name as in
    /// [`crate::StateOperatorProgress::description`].
    pub fn explain(&self) -> String {
        self.inner.explain.clone()
    }

    /// A handle that stops the query gracefully from anywhere (e.g. a signal handler).
    pub fn stop_handle(&self) -> StopHandle {
        self.inner.stop.clone()
    }

    /// Asks the query to stop after the batch it is running (Spark's `stop`); returns at once.
    /// Wait for the end with [`Self::await_termination`].
    pub fn stop(&self) {
        self.inner.stop.stop();
    }

    /// Registers `listener` for the query's events from now on (Spark's
    /// `streams.addListener`, here per query).
    pub fn add_listener(&self, listener: Arc<dyn StreamingQueryListener>) {
        self.inner.shared.add_listener(listener);
    }

    /// Calls `f` with the progress of every batch as it completes.
    pub fn on_progress(&self, f: impl Fn(&QueryProgress) + Send + Sync + 'static) {
        self.add_listener(Arc::new(ProgressFn(f)));
    }

    /// Sets how long the query must have been idle (no new data, no batch due) since its last
    /// report before it reports idleness (Spark's `spark.sql.streaming.noDataProgressEventInterval`,
    /// by default 10 s).
    pub fn set_no_data_progress_event_interval(&self, interval: Duration) {
        self.inner.shared.set_no_data_interval(interval);
    }

    /// The most recent progress reports, oldest first, at most 100 (Spark's `recentProgress`);
    /// idle reports included.
    pub fn recent_progress(&self) -> Vec<QueryProgress> {
        self.inner.shared.recent()
    }

    /// The latest progress report (Spark's `lastProgress`).
    pub fn last_progress(&self) -> Option<QueryProgress> {
        self.inner.shared.last()
    }

    /// What the query is doing now (Spark's `status`).
    pub fn status(&self) -> QueryStatus {
        self.inner.shared.state.borrow().status.clone()
    }

    /// True while the query runs triggers, in the foreground or in the background (Spark's
    /// `isActive`).
    pub fn is_active(&self) -> bool {
        self.inner.shared.lifecycle() == Lifecycle::Active
    }

    /// The error that stopped the query, if a batch failed (Spark's `exception`).
    pub fn exception(&self) -> Option<String> {
        match self.inner.shared.lifecycle() {
            Lifecycle::Failed(message) => Some(message),
            _ => None,
        }
    }

    /// Runs micro-batches under `trigger` on the caller's task, until the trigger ends
    /// (available-now, once) or a stop is requested.
    ///
    /// # Errors
    /// The first error of any batch: the batch is not committed and runs again on restart, and
    /// the query is marked failed. [`SluiceError::Query`] if it is already running or failed
    /// before.
    pub async fn run(&self, trigger: Trigger) -> Result<()> {
        let mut execution = self.lock_idle()?;
        self.inner.shared.set_lifecycle(Lifecycle::Active);
        let result = execution.run(trigger).await;
        self.finish(&result);
        result
    }

    /// Runs the query under `trigger` on a tokio task of its own and returns at once (Spark's
    /// `start`). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`SluiceError::Query`] if it is already running or failed before.
    pub fn spawn(&self, trigger: Trigger) -> Result<()> {
        let mut execution = self.lock_idle_owned()?;
        self.inner.shared.set_lifecycle(Lifecycle::Active);
        let query = self.clone();
        tokio::spawn(async move {
            let result = execution.run(trigger).await;
            drop(execution);
            query.finish(&result);
        });
        Ok(())
    }

    /// Runs the uncommitted batch left by a crash, if any, else the next batch if there is new
    /// data or a due no-data batch; false when there was nothing to do. For tests and tools that
    /// step a query batch by batch.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub async fn run_next_batch(&self) -> Result<bool> {
        let mut execution = self.lock_idle()?;
        let result = execution.run_next_batch().await;
        if let Err(e) = &result {
            self.inner.shared.set_lifecycle(Lifecycle::Failed(e.to_string()));
        }
        result
    }

    /// Blocks until everything available in the sources when called has been processed and
    /// committed (Spark's `processAllAvailable`, meant for tests): for a query running in the
    /// background, until a trigger started after this call finds nothing to do, or the query
    /// ends; for a query not running, by running its batches here until none is left.
    ///
    /// Here a query started from SQL, not running, stepped after each push:
    ///
    /// ```
    /// # async fn demo() -> sluice::Result<()> {
    /// use std::sync::Arc;
    ///
    /// use arrow::array::{AsArray, Int64Array, RecordBatch};
    /// use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    /// use sluice::sink::MemorySink;
    /// use sluice::{OutputMode, StreamContext};
    ///
    /// let mut ctx = StreamContext::new();
    /// let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    /// let input = ctx.register_memory_stream("input", schema.clone(), None)?;
    /// let sink = MemorySink::new();
    /// let for_query = sink.clone();
    /// ctx.register_sink("out", OutputMode::Complete, move || Box::new(for_query.clone()));
    /// let definitions = ctx.execute("INSERT INTO out SELECT sum(v) AS total FROM input").await?;
    /// let query = ctx.start(&definitions[0], "memory://").await?;
    ///
    /// let push = |values: Vec<i64>| -> sluice::Result<()> {
    ///     input.push(RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])?)
    /// };
    /// push(vec![1, 2])?;
    /// push(vec![3])?;
    /// query.process_all_available().await?;
    /// push(vec![10])?;
    /// query.process_all_available().await?;
    ///
    /// // One batch per call, each reading every push since the last; complete mode writes the
    /// // whole result each time.
    /// let mut totals = Vec::new();
    /// for (batch_id, batches) in sink.batches() {
    ///     for batch in batches {
    ///         totals.extend(batch.column(0).as_primitive::<Int64Type>().iter().map(|t| (batch_id, t)));
    ///     }
    /// }
    /// assert_eq!(totals, [(0_u64, Some(6_i64)), (1, Some(16))]);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    ///
    /// # Errors
    /// The error of the batch that failed, as [`Self::await_termination`].
    pub async fn process_all_available(&self) -> Result<()> {
        if let Ok(mut execution) = self.lock_idle() {
            while self.step(&mut execution).await? {}
            return Ok(());
        }
        let since = self.inner.shared.state.borrow().triggers_started;
        let mut state = self.inner.shared.state.subscribe();
        let done = |s: &QueryState| s.lifecycle.is_terminated() || s.last_idle_trigger > since;
        let state = state.wait_for(done).await.map(|s| s.lifecycle.clone()).unwrap_or(Lifecycle::Stopped);
        self.result_of(state)
    }

    /// Waits until the query stops, by request, at the end of its trigger or on an error (Spark's
    /// `awaitTermination`). Returns at once for a query that already stopped.
    ///
    /// # Errors
    /// [`SluiceError::Query`] with the error that stopped the query.
    pub async fn await_termination(&self) -> Result<()> {
        let mut state = self.inner.shared.state.subscribe();
        let lifecycle = state
            .wait_for(|s| s.lifecycle.is_terminated())
            .await
            .map(|s| s.lifecycle.clone())
            .unwrap_or(Lifecycle::Stopped);
        self.result_of(lifecycle)
    }

    /// [`Self::await_termination`] for at most `timeout`: true if the query stopped in time.
    ///
    /// # Errors
    /// As [`Self::await_termination`].
    pub async fn await_termination_timeout(&self, timeout: Duration) -> Result<bool> {
        match tokio::time::timeout(timeout, self.await_termination()).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    async fn step(&self, execution: &mut MicroBatchExecution) -> Result<bool> {
        let result = execution.run_next_batch().await;
        if let Err(e) = &result {
            self.inner.shared.set_lifecycle(Lifecycle::Failed(e.to_string()));
        }
        result
    }

    fn result_of(&self, lifecycle: Lifecycle) -> Result<()> {
        match lifecycle {
            Lifecycle::Failed(message) => Err(self.error(format!("failed: {message}"))),
            _ => Ok(()),
        }
    }

    fn finish(&self, result: &Result<()>) {
        let lifecycle = match result {
            Ok(()) => Lifecycle::Stopped,
            Err(e) => Lifecycle::Failed(e.to_string()),
        };
        self.inner.shared.set_lifecycle(lifecycle);
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Query { query: self.inner.name.clone(), message }
    }

    /// Refuses a failed query; otherwise the state of one that is not running.
    fn check_runnable(&self) -> Result<()> {
        match self.inner.shared.lifecycle() {
            Lifecycle::Failed(message) => Err(self.error(format!(
                "failed earlier and runs no more batches ({message}); start it again from its checkpoint"
            ))),
            _ => Ok(()),
        }
    }

    fn lock_idle(&self) -> Result<tokio::sync::MutexGuard<'_, MicroBatchExecution>> {
        self.check_runnable()?;
        self.inner.execution.try_lock().map_err(|_| self.error("is already running".into()))
    }

    fn lock_idle_owned(&self) -> Result<tokio::sync::OwnedMutexGuard<MicroBatchExecution>> {
        self.check_runnable()?;
        Arc::clone(&self.inner.execution).try_lock_owned().map_err(|_| self.error("is already running".into()))
    }
}

/// The queries started in one [`crate::StreamContext`] (Spark's `StreamingQueryManager`,
/// `spark.streams`). Clones share the list and the listeners.
#[derive(Clone, Default)]
pub struct StreamingQueryManager {
    queries: Arc<Mutex<Vec<StreamingQuery>>>,
    listeners: Arc<Mutex<Vec<Arc<dyn StreamingQueryListener>>>>,
}

impl std::fmt::Debug for StreamingQueryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingQueryManager").field("queries", &self.lock().len()).finish()
    }
}

impl StreamingQueryManager {
    /// Tracks a query just started and registers the manager's listeners with it, before its
    /// first trigger.
    pub(crate) fn add(&self, query: StreamingQuery) {
        for listener in self.listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            query.add_listener(Arc::clone(listener));
        }
        self.lock().push(query);
    }

    /// Registers `listener` for the events of every query of the context: those running now,
    /// from now on, and every query started later, from its start (Spark's
    /// `streams.addListener`). Events of different queries may arrive on different threads.
    pub fn add_listener(&self, listener: Arc<dyn StreamingQueryListener>) {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&listener));
        for query in self.all() {
            query.add_listener(Arc::clone(&listener));
        }
    }

    /// Unregisters `listener` (the same `Arc` given to [`Self::add_listener`]) from the manager
    /// and every query (Spark's `streams.removeListener`).
    pub fn remove_listener(&self, listener: &Arc<dyn StreamingQueryListener>) {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).retain(|l| !Arc::ptr_eq(l, listener));
        for query in self.all() {
            query.inner.shared.remove_listener(listener);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StreamingQuery>> {
        self.queries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queries running now, in the order they were started (Spark's `active`).
    pub fn active(&self) -> Vec<StreamingQuery> {
        self.lock().iter().filter(|q| q.is_active()).cloned().collect()
    }

    /// Every query started and not forgotten by [`Self::reset_terminated`], running or not.
    pub fn all(&self) -> Vec<StreamingQuery> {
        self.lock().clone()
    }

    /// The query with id `id` (Spark's `get`); the latest started, if one id was started twice.
    pub fn get(&self, id: &str) -> Option<StreamingQuery> {
        self.lock().iter().rev().find(|q| q.id() == id).cloned()
    }

    /// Waits until any query stops (Spark's `awaitAnyTermination`): at once if one has stopped
    /// since the last [`Self::reset_terminated`]; forever if none was started.
    ///
    /// # Errors
    /// [`SluiceError::Query`] with the error of the query that stopped, if it failed.
    pub async fn await_any_termination(&self) -> Result<()> {
        let queries = self.all();
        if queries.is_empty() {
            return std::future::pending().await;
        }
        let waits = queries.into_iter().map(|q| Box::pin(async move { q.await_termination().await }));
        select_all(waits).await.0
    }

    /// Forgets the queries that have stopped, so that [`Self::await_any_termination`] waits for
    /// a new termination (Spark's `resetTerminated`).
    pub fn reset_terminated(&self) {
        self.lock().retain(|q| !q.inner.shared.lifecycle().is_terminated());
    }
}
