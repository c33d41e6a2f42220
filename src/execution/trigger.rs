//! When micro-batches run (Spark's `Trigger`).

use std::time::Duration;

use crate::plan::window::parse_duration_ns;
use crate::{Result, SluiceError};

/// When the next micro-batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Process everything available when the query starts, in as many batches as the sources'
    /// rate limits need, run the final no-data batch if one is due, then stop
    /// (Spark's `Trigger.AvailableNow`).
    AvailableNow,
    /// One micro-batch with everything available at start, whatever the sources' rate limits,
    /// then stop (Spark's deprecated `Trigger.Once`). When nothing new is available the batch is
    /// the no-data batch a watermark advance made due, if any. Unlike available-now it runs no
    /// further no-data batch, so windows that batch's watermark closes are emitted by the next run.
    Once,
    /// Start a batch every interval; a batch that overruns delays the next one. A zero interval is
    /// the default trigger: the next batch starts as soon as the last one ends and there is new
    /// data or a due no-data batch (polling every [`IDLE_POLL`] while idle, sooner when a source
    /// knows its next data comes sooner).
    ProcessingTime(Duration),
}

/// How often an idle query with the default trigger looks for new data.
pub const IDLE_POLL: Duration = Duration::from_millis(100);

impl Default for Trigger {
    fn default() -> Self {
        Trigger::ProcessingTime(Duration::ZERO)
    }
}

impl Trigger {
    /// Parses `available-now` (also `availablenow`, `available_now`), `once` or an interval such
    /// as `10 seconds`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the accepted forms.
    pub fn parse(text: &str) -> Result<Self> {
        let normalized = text.trim().to_ascii_lowercase().replace(['-', '_'], "");
        match normalized.as_str() {
            "availablenow" => return Ok(Trigger::AvailableNow),
            "once" => return Ok(Trigger::Once),
            _ => {}
        }
        let ns = parse_duration_ns(text.trim()).map_err(|_| {
            SluiceError::sql(format!(
                "trigger must be 'available-now', 'once' or an interval such as '10 seconds', got '{text}'"
            ))
        })?;
        Ok(Trigger::ProcessingTime(Duration::from_nanos(ns as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Trigger::parse("available-now").unwrap(), Trigger::AvailableNow);
        assert_eq!(Trigger::parse("Once").unwrap(), Trigger::Once);
        assert_eq!(Trigger::parse("10 seconds").unwrap(), Trigger::ProcessingTime(Duration::from_secs(10)));
        assert!(Trigger::parse("sometimes").unwrap_err().to_string().contains("available-now"));
    }
}
