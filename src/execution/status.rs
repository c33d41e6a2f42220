//! What a query shares between the task running its micro-batches and the
//! [`super::StreamingQuery`] handles watching it: listeners, recent progress, its status and
//! where it is in its life.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::listener::StreamingQueryListener;
use super::progress::QueryProgress;
use super::reporter::NO_DATA_PROGRESS_EVENT_INTERVAL;

/// Progress reports kept for `recent_progress` (Spark's `spark.sql.streaming.numRecentProgressUpdates`).
const RECENT_PROGRESS: usize = 100;

/// What a query is doing at this moment (Spark's `StreamingQueryStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStatus {
    /// What it does, in Spark's words: `Initializing`, `Getting offsets from sources`,
    /// `Waiting for next trigger`, `Waiting for data to arrive`, `Stopped`.
    pub message: String,
    /// The last trigger found new data (or a batch due).
    pub is_data_available: bool,
    /// A trigger is running now.
    pub is_trigger_active: bool,
}

impl QueryStatus {
    fn new(message: &str, is_data_available: bool, is_trigger_active: bool) -> Self {
        Self { message: message.to_string(), is_data_available, is_trigger_active }
    }
}

/// Where a query is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Planned and opened at its checkpoint, no trigger run yet.
    Created,
    /// Running triggers.
    Active,
    /// Its trigger ended or a stop was requested; it may run again.
    Stopped,
    /// A batch failed with this error; it runs no more batches.
    Failed(String),
}

impl Lifecycle {
    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self, Lifecycle::Stopped | Lifecycle::Failed(_))
    }
}

/// The watched part of a query's state.
#[derive(Debug, Clone)]
pub(crate) struct QueryState {
    pub lifecycle: Lifecycle,
    pub status: QueryStatus,
    /// Triggers started so far, this one included.
    pub triggers_started: u64,
    /// The number of the last trigger that found no new data and no batch due.
    pub last_idle_trigger: u64,
}

/// Shared by a query's reporter (writing) and its handles (reading).
pub(crate) struct QueryShared {
    pub listeners: RwLock<Vec<Arc<dyn StreamingQueryListener>>>,
    recent: Mutex<VecDeque<QueryProgress>>,
    pub run_id: Mutex<Option<String>>,
    pub no_data_interval: Mutex<Duration>,
    pub state: watch::Sender<QueryState>,
}

impl Default for QueryShared {
    fn default() -> Self {
        let state = QueryState {
            lifecycle: Lifecycle::Created,
            status: QueryStatus::new("Initializing", false, false),
            triggers_started: 0,
            last_idle_trigger: 0,
        };
        Self {
            listeners: RwLock::default(),
            recent: Mutex::default(),
            run_id: Mutex::default(),
            no_data_interval: Mutex::new(NO_DATA_PROGRESS_EVENT_INTERVAL),
            state: watch::Sender::new(state),
        }
    }
}

impl QueryShared {
    /// The listeners at this moment (a listener added during an event sees the next one).
    pub fn listeners(&self) -> Vec<Arc<dyn StreamingQueryListener>> {
        self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn add_listener(&self, listener: Arc<dyn StreamingQueryListener>) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(listener);
    }

    /// Unregisters `listener` (the same `Arc`).
    pub fn remove_listener(&self, listener: &Arc<dyn StreamingQueryListener>) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).retain(|l| !Arc::ptr_eq(l, listener));
    }

    pub fn run_id(&self) -> Option<String> {
        self.run_id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_run_id(&self, run_id: Option<String>) {
        *self.run_id.lock().unwrap_or_else(|e| e.into_inner()) = run_id;
    }

    pub fn no_data_interval(&self) -> Duration {
        *self.no_data_interval.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_no_data_interval(&self, interval: Duration) {
        *self.no_data_interval.lock().unwrap_or_else(|e| e.into_inner()) = interval;
    }

    /// The kept reports, oldest first.
    pub fn recent(&self) -> Vec<QueryProgress> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    pub fn last(&self) -> Option<QueryProgress> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).back().cloned()
    }

    pub fn keep(&self, progress: QueryProgress) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_PROGRESS {
            recent.pop_front();
        }
        recent.push_back(progress);
    }

    /// A trigger starts.
    pub fn trigger_started(&self) {
        self.state.send_modify(|s| {
            s.triggers_started += 1;
            s.status = QueryStatus::new("Getting offsets from sources", s.status.is_data_available, true);
        });
    }

    /// A trigger ran a batch.
    pub fn batch_finished(&self) {
        self.state.send_modify(|s| s.status = QueryStatus::new("Waiting for next trigger", true, false));
    }

    /// A trigger found nothing to do.
    pub fn idle_trigger_finished(&self) {
        self.state.send_modify(|s| {
            s.last_idle_trigger = s.triggers_started;
            s.status = QueryStatus::new("Waiting for data to arrive", false, false);
        });
    }

    pub fn set_lifecycle(&self, lifecycle: Lifecycle) {
        self.state.send_modify(|s| {
            if lifecycle.is_terminated() {
                s.status = QueryStatus::new("Stopped", s.status.is_data_available, false);
            }
            s.lifecycle = lifecycle;
        });
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.state.borrow().lifecycle.clone()
    }
}
