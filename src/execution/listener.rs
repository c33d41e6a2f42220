//! Callbacks on a query's life cycle (Spark's `StreamingQueryListener` and its events).

use serde::{Deserialize, Serialize};

use super::progress::QueryProgress;

/// The query started running (Spark's `QueryStartedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStartedEvent {
    /// The query's id, kept across restarts.
    pub id: String,
    /// The id of this run.
    pub run_id: String,
    /// The query's name.
    pub name: String,
    /// When it started, `2024-01-01T00:00:00.000Z`.
    pub timestamp: String,
}

/// The query has had no new data and no batch due for a while (Spark's `QueryIdleEvent`):
/// posted when an idle trigger comes at least the idle interval (by default 10 s, see
/// [`crate::StreamingQuery::set_no_data_progress_event_interval`]) after the last progress or
/// idle event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryIdleEvent {
    /// The query's id.
    pub id: String,
    /// The id of this run.
    pub run_id: String,
    /// Start of the idle trigger, `2024-01-01T00:00:00.000Z`.
    pub timestamp: String,
}

/// The query stopped, by request or on an error (Spark's `QueryTerminatedEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryTerminatedEvent {
    /// The query's id.
    pub id: String,
    /// The id of this run.
    pub run_id: String,
    /// The error that stopped it; `None` for a requested stop or a trigger that ended.
    pub exception: Option<String>,
}

/// Receives the events of a query, in order, on the query's task: a slow listener slows the
/// query (Spark delivers them on a listener bus thread instead). Every method does nothing by
/// default.
pub trait StreamingQueryListener: Send + Sync {
    /// Before the first trigger of a run.
    fn on_query_started(&self, _event: &QueryStartedEvent) {}
    /// After each trigger that ran a batch.
    fn on_query_progress(&self, _progress: &QueryProgress) {}
    /// After an idle trigger, at most once per idle interval.
    fn on_query_idle(&self, _event: &QueryIdleEvent) {}
    /// When the run ends.
    fn on_query_terminated(&self, _event: &QueryTerminatedEvent) {}
}

/// A listener calling a closure with each batch's progress.
pub(crate) struct ProgressFn<F>(pub F);

impl<F: Fn(&QueryProgress) + Send + Sync> StreamingQueryListener for ProgressFn<F> {
    fn on_query_progress(&self, progress: &QueryProgress) {
        (self.0)(progress)
    }
}
