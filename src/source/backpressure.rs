//! Backpressure: an adaptive rate limit that keeps a batch's duration near the trigger interval,
//! Spark Streaming's `PIDRateEstimator` (`spark.streaming.backpressure.enabled`).
//!
//! After every batch the estimator takes the rows the source read, how long the batch took and
//! how late it started (its scheduling delay), and computes a new rate in rows per second:
//!
//! ```text
//! processing_rate   = rows / processing_seconds
//! error             = latest_rate - processing_rate
//! historical_error  = scheduling_delay_seconds * processing_rate / interval_seconds
//! d_error           = (error - latest_error) / seconds_since_the_last_update
//! rate              = max(latest_rate - 1.0 * error - 0.2 * historical_error - 0.0 * d_error, 100)
//! ```
//!
//! (Spark's default proportional, integral and derivative gains and minimum rate.) The first
//! batch only measures (no limit yet); the next batches take at most `rate * interval` rows.

use std::time::{Duration, Instant};

/// Spark's `spark.streaming.backpressure.pid.proportional` default.
const PROPORTIONAL: f64 = 1.0;
/// Spark's `spark.streaming.backpressure.pid.integral` default.
const INTEGRAL: f64 = 0.2;
/// Spark's `spark.streaming.backpressure.pid.derived` default.
const DERIVATIVE: f64 = 0.0;
/// Spark's `spark.streaming.backpressure.pid.minRate` default, rows per second.
const MIN_RATE: f64 = 100.0;

/// What the micro-batch loop tells a source about a batch it read.
#[derive(Debug, Clone, Copy)]
pub struct BatchFeedback {
    /// When the batch ended.
    pub finished: Instant,
    /// Rows the source read for the batch.
    pub rows: u64,
    /// How long the batch took, from planning to commit.
    pub processing: Duration,
    /// How late the batch started after its trigger was due (zero when on time).
    pub scheduling_delay: Duration,
    /// The processing-time trigger's interval; `None` under other triggers (no target duration,
    /// so backpressure does nothing).
    pub interval: Option<Duration>,
}

/// Spark's `PIDRateEstimator`. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct RateEstimator {
    latest: Option<(Instant, f64, f64)>,
    rate: Option<f64>,
}

impl RateEstimator {
    /// An estimator with no measurement yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current rate, rows per second; `None` before two batches with rows were measured.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The most rows the next batch may take: `rate * interval`, at least 1; `None` when there is
    /// no rate yet or no interval.
    pub fn limit(&self, interval: Option<Duration>) -> Option<u64> {
        let (rate, interval) = (self.rate?, interval.filter(|i| !i.is_zero())?);
        Some(((rate * interval.as_secs_f64()).floor() as u64).max(1))
    }

    /// Updates the rate from `feedback`; batches without rows, time or interval are ignored.
    pub fn update(&mut self, feedback: &BatchFeedback) {
        let Some(interval) = feedback.interval.filter(|i| !i.is_zero()) else { return };
        if feedback.rows == 0 || feedback.processing.is_zero() {
            return;
        }
        let processing_rate = feedback.rows as f64 / feedback.processing.as_secs_f64();
        match self.latest {
            None => self.latest = Some((feedback.finished, processing_rate, 0.0)),
            Some((time, latest_rate, latest_error)) => {
                let since = feedback.finished.saturating_duration_since(time).as_secs_f64();
                if since <= 0.0 {
                    return;
                }
                let error = latest_rate - processing_rate;
                let historical_error =
                    feedback.scheduling_delay.as_secs_f64() * processing_rate / interval.as_secs_f64();
                let d_error = (error - latest_error) / since;
                let rate = (latest_rate - PROPORTIONAL * error - INTEGRAL * historical_error - DERIVATIVE * d_error)
                    .max(MIN_RATE);
                self.latest = Some((feedback.finished, rate, error));
                self.rate = Some(rate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feedback(start: Instant, at_ms: u64, rows: u64, processing_ms: u64, delay_ms: u64) -> BatchFeedback {
        BatchFeedback {
            finished: start + Duration::from_millis(at_ms),
            rows,
            processing: Duration::from_millis(processing_ms),
            scheduling_delay: Duration::from_millis(delay_ms),
            interval: Some(Duration::from_secs(1)),
        }
    }

    #[test]
    fn the_first_batch_measures_and_the_rate_follows_the_processing_rate() {
        let start = Instant::now();
        let mut estimator = RateEstimator::new();
        // 10 000 rows in 2 s: 5000 rows/s, no limit yet.
        estimator.update(&feedback(start, 2000, 10_000, 2000, 0));
        assert_eq!(estimator.rate(), None);
        assert_eq!(estimator.limit(Some(Duration::from_secs(1))), None);
        // 1000 rows in 0.5 s: 2000 rows/s; error 5000 - 2000; rate 5000 - 3000 = 2000.
        estimator.update(&feedback(start, 3000, 1000, 500, 0));
        assert_eq!(estimator.rate(), Some(2000.0));
        assert_eq!(estimator.limit(Some(Duration::from_millis(500))), Some(1000));
        // A batch that started 1 s late lowers the rate by 0.2 * 1 s * 2000 / 1 s = 400.
        estimator.update(&feedback(start, 4000, 1000, 500, 1000));
        assert_eq!(estimator.rate(), Some(1600.0));
        // Never below Spark's minimum of 100 rows per second.
        estimator.update(&feedback(start, 9000, 1, 5000, 0));
        assert_eq!(estimator.rate(), Some(100.0));
        // No interval: no limit, and the feedback is ignored.
        assert_eq!(estimator.limit(None), None);
        let mut none = feedback(start, 10_000, 5, 1, 0);
        none.interval = None;
        estimator.update(&none);
        assert_eq!(estimator.rate(), Some(100.0));
    }
}
