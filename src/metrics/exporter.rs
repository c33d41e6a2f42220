//! The Prometheus metrics of running queries, kept up to date by a [`StreamingQueryListener`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::execution::listener::{QueryStartedEvent, QueryTerminatedEvent, StreamingQueryListener};
use crate::execution::progress::finite_or_zero;
use crate::execution::QueryProgress;

/// Upper bounds of the batch-duration buckets, seconds: 1 ms to 5 min.
const DURATION_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The metrics, labelled by `query` (the query's name), as one Prometheus registry; register
/// the value (in an `Arc`) as a listener on every query to watch and serve it with
/// [`super::serve`].
///
/// | metric | type | labels |
/// | --- | --- | --- |
/// | `sluice_query_active` (1 while running, 0 once terminated) | gauge | query |
/// | `sluice_batches_total` | counter | query |
/// | `sluice_input_rows_total` | counter | query, source |
/// | `sluice_output_rows_total` | counter | query |
/// | `sluice_input_rows_per_second` (last batch, Spark's `inputRowsPerSecond`) | gauge | query |
/// | `sluice_processed_rows_per_second` (last batch) | gauge | query |
/// | `sluice_batch_duration_seconds` (per `durationMs` phase, `triggerExecution` the whole batch) | histogram | query, phase |
/// | `sluice_watermark_timestamp_seconds` (since the epoch) | gauge | query |
/// | `sluice_watermark_lag_seconds` (wall clock at scrape time minus watermark) | gauge | query |
/// | `sluice_state_rows` | gauge | query, operator_id, operator |
/// | `sluice_state_memory_bytes` | gauge | query, operator_id, operator |
/// | `sluice_late_rows_dropped_total` | counter | query, operator_id, operator |
/// | `sluice_state_rows_scanned_total` (state rows read by batches, `numRowsScanned`) | counter | query, operator_id, operator |
/// | `sluice_bad_records_dropped_total` | counter | query, source |
pub struct PrometheusMetrics {
    registry: Registry,
    active: GaugeVec,
    batches: IntCounterVec,
    input_rows: IntCounterVec,
    output_rows: IntCounterVec,
    input_rate: GaugeVec,
    processed_rate: GaugeVec,
    duration: HistogramVec,
    watermark: GaugeVec,
    watermark_lag: GaugeVec,
    state_rows: GaugeVec,
    state_bytes: GaugeVec,
    late_rows: IntCounterVec,
    rows_scanned: IntCounterVec,
    bad_records: IntCounterVec,
    /// Query names by query id (terminated events carry only the id), and watermarks by query
    /// name, ms, for the lag at scrape time.
    queries: Mutex<(BTreeMap<String, String>, BTreeMap<String, i64>)>,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl Default for PrometheusMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusMetrics {
    /// Every metric at no value yet, in a registry of its own.
    pub fn new() -> Self {
        let registry = Registry::new();
        let query = &["query"];
        let operator = &["query", "operator_id", "operator"];
        let source = &["query", "source"];
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric names are unique");
            metric
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(metric.clone())).expect("metric names are unique");
            metric
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_batch_duration_seconds",
                "Time a micro-batch spent per phase (durationMs of the progress report); triggerExecution is the whole batch",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["query", "phase"],
        )
        .expect("valid metric");
        registry.register(Box::new(duration.clone())).expect("metric names are unique");
        Self {
            active: gauge("sluice_query_active", "1 while the query runs, 0 once it terminated", query),
            batches: counter("sluice_batches_total", "Micro-batches run", query),
            input_rows: counter("sluice_input_rows_total", "Rows read", source),
            output_rows: counter("sluice_output_rows_total", "Rows written to the sink", query),
            input_rate: gauge(
                "sluice_input_rows_per_second",
                "Rows read by the last batch per second since the trigger before it started",
                query,
            ),
            processed_rate: gauge(
                "sluice_processed_rows_per_second",
                "Rows read by the last batch per second of its duration",
                query,
            ),
            duration,
            watermark: gauge(
                "sluice_watermark_timestamp_seconds",
                "The event-time watermark of the last batch, seconds since the epoch",
                query,
            ),
            watermark_lag: gauge(
                "sluice_watermark_lag_seconds",
                "How far the event-time watermark is behind the wall clock, seconds",
                query,
            ),
            state_rows: gauge("sluice_state_rows", "Rows in a stateful operator's state", operator),
            state_bytes: gauge(
                "sluice_state_memory_bytes",
                "Bytes of a stateful operator's state keys and values in memory",
                operator,
            ),
            late_rows: counter(
                "sluice_late_rows_dropped_total",
                "Rows dropped as later than the watermark, counted after partial aggregation as Spark",
                operator,
            ),
            rows_scanned: counter(
                "sluice_state_rows_scanned_total",
                "State rows read by batches (looked up or visited by a scan): the state work done",
                operator,
            ),
            bad_records: counter(
                "sluice_bad_records_dropped_total",
                "Malformed records skipped by a source with bad_data = 'drop'",
                source,
            ),
            registry,
            queries: Mutex::new((BTreeMap::new(), BTreeMap::new())),
        }
    }

    /// The metrics in the Prometheus text format (version 0.0.4), the watermark lags computed
    /// against the wall clock now.
    pub fn render(&self) -> String {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        for (query, watermark_ms) in &self.lock().1 {
            self.watermark_lag.with_label_values(&[query]).set((now_ms - watermark_ms) as f64 / 1000.0);
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("the text format encodes every metric");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (BTreeMap<String, String>, BTreeMap<String, i64>)> {
        self.queries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StreamingQueryListener for PrometheusMetrics {
    fn on_query_started(&self, event: &QueryStartedEvent) {
        self.lock().0.insert(event.id.clone(), event.name.clone());
        self.active.with_label_values(&[&event.name]).set(1.0);
    }

    fn on_query_progress(&self, p: &QueryProgress) {
        let query = p.name.as_str();
        self.batches.with_label_values(&[query]).inc();
        self.output_rows.with_label_values(&[query]).inc_by(p.sink.num_output_rows);
        self.input_rate.with_label_values(&[query]).set(finite_or_zero(p.input_rows_per_second));
        self.processed_rate.with_label_values(&[query]).set(finite_or_zero(p.processed_rows_per_second));
        for (phase, ms) in &p.duration_ms {
            self.duration.with_label_values(&[query, phase]).observe(*ms as f64 / 1000.0);
        }
        for s in &p.sources {
            self.input_rows.with_label_values(&[query, &s.description]).inc_by(s.num_input_rows);
            self.bad_records.with_label_values(&[query, &s.description]).inc_by(s.bad_records_dropped());
        }
        for (i, op) in p.state_operators.iter().enumerate() {
            let labels = [query, &i.to_string(), &op.operator_name];
            self.state_rows.with_label_values(&labels).set(op.num_rows_total as f64);
            self.state_bytes.with_label_values(&labels).set(op.memory_used_bytes as f64);
            self.late_rows.with_label_values(&labels).inc_by(op.num_rows_dropped_by_watermark);
            self.rows_scanned.with_label_values(&labels).inc_by(op.rows_scanned());
        }
        if let Some(w) = p.watermark_ms {
            self.watermark.with_label_values(&[query]).set(w as f64 / 1000.0);
            self.lock().1.insert(query.to_string(), w);
        }
    }

    fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
        if let Some(name) = self.lock().0.get(&event.id) {
            self.active.with_label_values(&[name]).set(0.0);
        }
    }
}
