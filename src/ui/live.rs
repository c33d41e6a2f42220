//! What the web UI knows of each query: a [`StreamingQueryListener`] keeping the recent progress
//! reports, the plan, the status and the last error, and the numbered events the pages stream.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::execution::listener::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent, StreamingQueryListener};
use crate::execution::{QueryProgress, StreamingQuery};

/// Progress reports kept per query for the charts (Spark's UI keeps
/// `spark.sql.streaming.numRecentProgressUpdates`, 100, but charts a longer history).
pub(crate) const RECENT_PROGRESS: usize = 300;

/// Events kept for event streams that reconnect (over all queries).
const RECENT_EVENTS: usize = 1000;

/// The live state of the queries a web UI shows; register it on each query with
/// [`LiveUi::watch`] (or as a plain listener: the page then shows no plan) and serve it with
/// [`super::serve`]. One instance serves any number of queries.
pub struct LiveUi {
    state: Mutex<State>,
    /// Notified at each new event.
    changed: Condvar,
}

impl std::fmt::Debug for LiveUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveUi").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// In the order they were first seen.
    queries: Vec<QueryView>,
    events: VecDeque<Event>,
    next_event_id: u64,
}

/// A query as its page shows it; serialized as the page's initial data and `/api/query/<id>`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryView {
    pub id: String,
    pub name: String,
    /// The current (or last) run's id; empty before the first run.
    pub run_id: String,
    /// `waiting` (watched, not started), `active`, `idle` or `terminated`.
    pub status: &'static str,
    /// The error that terminated the last run.
    pub exception: Option<String>,
    /// The incremental plan, [`StreamingQuery::explain`]; `None` for a query not watched.
    pub plan: Option<String>,
    /// The stateful operators' names (`aggregate[0]`, as in the plan), in `stateOperators` order.
    pub operators: Vec<String>,
    /// The id of the last event of this query, where its event stream starts.
    pub last_event_id: u64,
    /// The recent progress reports, oldest first, Spark's JSON.
    pub progress: VecDeque<QueryProgress>,
}

/// One event of a query's event stream (Server-Sent Events).
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Increasing over all queries: the stream's `id:`, where a reconnection resumes.
    pub id: u64,
    pub query: String,
    /// `progress`, `idle`, `started` or `terminated`.
    pub kind: &'static str,
    /// The JSON payload.
    pub data: String,
}

/// The payload of a `progress` event: the report (Spark's JSON) and the operators' names.
#[derive(Serialize)]
struct ProgressEvent<'a> {
    progress: &'a QueryProgress,
    operators: &'a [String],
}

impl Default for LiveUi {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveUi {
    /// No query yet.
    pub fn new() -> Self {
        Self { state: Mutex::new(State::default()), changed: Condvar::new() }
    }

    /// Shows `query` (with its plan) from now on: registers the UI as its listener.
    pub fn watch(self: &Arc<Self>, query: &StreamingQuery) {
        {
            let mut state = self.lock();
            let view = state.view(query.id(), query.name());
            view.plan = Some(query.explain());
        }
        query.add_listener(self.clone());
    }

    /// The queries, in the order they were first seen.
    pub(crate) fn queries(&self) -> Vec<QueryView> {
        self.lock().queries.clone()
    }

    /// The query with id `id`.
    pub(crate) fn query(&self, id: &str) -> Option<QueryView> {
        self.lock().queries.iter().find(|q| q.id == id).cloned()
    }

    /// Whether query `id` is shown.
    pub(crate) fn knows(&self, id: &str) -> bool {
        self.lock().queries.iter().any(|q| q.id == id)
    }

    /// The events of query `id` after event `after`, waiting until there is one or `deadline`.
    pub(crate) fn events_after(&self, id: &str, after: u64, deadline: Instant) -> Vec<Event> {
        let mut state = self.lock();
        loop {
            let events: Vec<Event> = state.events.iter().filter(|e| e.id > after && e.query == id).cloned().collect();
            let now = Instant::now();
            if !events.is_empty() || now >= deadline {
                return events;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates query `id` (named `name`) with `update`, then posts the event of `kind` whose
    /// payload `data` makes from the updated view.
    fn post(
        &self,
        id: &str,
        name: &str,
        kind: &'static str,
        update: impl FnOnce(&mut QueryView),
        data: impl FnOnce(&QueryView) -> String,
    ) {
        let mut state = self.lock();
        let event_id = state.next_event_id + 1;
        state.next_event_id = event_id;
        let view = state.view(id, name);
        update(view);
        view.last_event_id = event_id;
        let data = data(view);
        if state.events.len() == RECENT_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(Event { id: event_id, query: id.to_string(), kind, data });
        drop(state);
        self.changed.notify_all();
    }
}

impl State {
    /// The view of query `id`, created if new.
    fn view(&mut self, id: &str, name: &str) -> &mut QueryView {
        let index = match self.queries.iter().position(|q| q.id == id) {
            Some(i) => i,
            None => {
                self.queries.push(QueryView {
                    id: id.to_string(),
                    name: name.to_string(),
                    run_id: String::new(),
                    status: "waiting",
                    exception: None,
                    plan: None,
                    operators: Vec::new(),
                    last_event_id: 0,
                    progress: VecDeque::new(),
                });
                self.queries.len() - 1
            }
        };
        &mut self.queries[index]
    }
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("UI events serialize")
}

impl StreamingQueryListener for LiveUi {
    fn on_query_started(&self, event: &QueryStartedEvent) {
        let update = |v: &mut QueryView| {
            v.run_id = event.run_id.clone();
            v.status = "active";
            v.exception = None;
        };
        self.post(&event.id, &event.name, "started", update, |_| json(event));
    }

    fn on_query_progress(&self, progress: &QueryProgress) {
        let update = |v: &mut QueryView| {
            v.status = "active";
            v.operators = progress.state_operators.iter().map(|o| o.description.clone()).collect();
            if v.progress.len() == RECENT_PROGRESS {
                v.progress.pop_front();
            }
            v.progress.push_back(progress.clone());
        };
        let data = |v: &QueryView| json(&ProgressEvent { progress, operators: &v.operators });
        self.post(&progress.id, &progress.name, "progress", update, data);
    }

    fn on_query_idle(&self, event: &QueryIdleEvent) {
        self.post(&event.id, "", "idle", |v| v.status = "idle", |_| json(event));
    }

    fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
        let update = |v: &mut QueryView| {
            v.status = "terminated";
            v.exception = event.exception.clone();
        };
        self.post(&event.id, "", "terminated", update, |_| json(event));
    }
}

/// How long an event stream waits for events before it ends and the browser reconnects.
pub(crate) const STREAM_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::progress::StateOperatorProgress;

    fn progress(batch_id: i64) -> QueryProgress {
        QueryProgress {
            id: "q".into(),
            name: "out".into(),
            batch_id,
            state_operators: vec![StateOperatorProgress { description: "aggregate[0]".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_recent_progress_and_numbers_the_events_of_each_query() {
        let ui = LiveUi::new();
        for batch in 0..(RECENT_PROGRESS as i64 + 5) {
            ui.on_query_progress(&progress(batch));
        }
        let view = ui.query("q").unwrap();
        assert_eq!(view.progress.len(), RECENT_PROGRESS);
        assert_eq!(view.progress.front().unwrap().batch_id, 5, "the oldest reports are dropped first");
        assert_eq!(view.operators, ["aggregate[0]"]);
        assert_eq!(view.last_event_id, RECENT_PROGRESS as u64 + 5);

        let terminated = QueryTerminatedEvent { id: "q".into(), run_id: "r".into(), exception: Some("boom".into()) };
        ui.on_query_terminated(&terminated);
        let view = ui.query("q").unwrap();
        assert_eq!((view.status, view.exception.as_deref()), ("terminated", Some("boom")));
        assert_eq!(view.name, "out", "a terminated event keeps the name");

        let after = view.last_event_id - 2;
        let events = ui.events_after("q", after, Instant::now());
        let kinds: Vec<_> = events.iter().map(|e| (e.id - after, e.kind)).collect();
        assert_eq!(kinds, [(1, "progress"), (2, "terminated")]);
        let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(data["progress"]["batchId"], RECENT_PROGRESS as i64 + 4);
        assert_eq!(data["operators"][0], "aggregate[0]");
        assert!(ui.events_after("other", 0, Instant::now()).is_empty());
    }

    #[test]
    fn a_waiting_stream_wakes_up_at_the_next_event() {
        let ui = Arc::new(LiveUi::new());
        let posting = ui.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            posting.on_query_progress(&progress(0));
        });
        let started = Instant::now();
        let events = ui.events_after("q", 0, started + Duration::from_secs(30));
        assert_eq!(events.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
        thread.join().unwrap();
    }
}
