//! The incremental planner: a continuous query, planned once by DataFusion, becomes a plan whose
//! stateless parts are DataFusion operators and whose stateful parts are sluice's.
//!
//! - [`stream_table`]: the unbounded input table, whose scan ([`stream_scan`]) yields the current
//!   micro-batch in input partitions;
//! - [`window`] and [`session_window`]: event-time window functions; [`window_key`]: a window
//!   grouped by its bounds in the partial aggregation;
//! - [`checks`]: the output-mode analysis that refuses what cannot run (Spark's
//!   `UnsupportedOperationChecker`);
//! - [`row_number`], [`join`] and [`incremental`]: the logical rewrites into streaming nodes
//!   ([`nodes`]); [`time_range`] reads a join's time-range condition; [`retraction`]: an
//!   aggregation over an updating aggregation, in update and complete mode;
//! - [`physical`]: the DataFusion extension planner that turns them into stateful operators, each
//!   behind a hash exchange by its keys ([`crate::operator::exchange`]); [`ordered_merge`] keeps
//!   DataFusion's merges of partitions deterministic;
//! - [`union_event_time`]: a union's event-time columns are its first input's, as in Spark;
//! - [`fingerprint`]: what the state of each stateful operator depends on, checked on restart;
//! - [`batch_time`]: `now()` and `current_date()` evaluated once per micro-batch, as in Spark;
//! - [`checked_arithmetic`]: integer `+`, `-`, `*` that overflow are errors, as in Spark's ANSI mode.
//!
//! The physical plan is built once, when the query starts, and executed once per micro-batch.

pub mod batch_time;
pub(crate) mod checked_arithmetic;
pub mod checks;
pub(crate) mod explain;
pub mod fingerprint;
pub mod incremental;
pub mod join;
pub mod nodes;
pub mod ordered_merge;
pub mod physical;
pub(crate) mod retraction;
pub mod row_number;
pub mod session_window;
pub mod stage;
pub mod stream_scan;
pub mod stream_table;
pub mod time_range;
pub(crate) mod union_event_time;
pub mod window;
pub(crate) mod window_key;

use crate::{Result, SluiceError};

/// What a sink receives each batch (DESIGN §3, Spark's `OutputMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputMode {
    /// Only rows that will never change: an aggregation emits a group once the watermark passes
    /// its event time.
    #[default]
    Append,
    /// The rows changed by the batch.
    Update,
    /// The whole result table, every batch.
    Complete,
}

impl OutputMode {
    /// Parses `append`, `update` or `complete`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the accepted values.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "append" => Ok(Self::Append),
            "update" => Ok(Self::Update),
            "complete" => Ok(Self::Complete),
            other => {
                Err(SluiceError::sql(format!("output_mode must be 'append', 'update' or 'complete', got '{other}'")))
            }
        }
    }
}

impl std::fmt::Display for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Append => "append",
            Self::Update => "update",
            Self::Complete => "complete",
        })
    }
}
