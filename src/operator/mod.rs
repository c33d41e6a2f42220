//! Stateful physical operators. Each keeps state across micro-batches in a
//! [`crate::state::StateStore`], drops late rows by the previous batch's watermark and emits or
//! evicts by the current one (SEMANTICS §2); a top-N, whose rankings are never final, neither
//! drops nor evicts.

pub mod aggregate;
pub(crate) mod chunk;
pub mod dedup;
pub(crate) mod distinct_count;
pub mod exchange;
pub mod exec;
pub mod group_state;
pub mod join;
pub mod session;
pub mod top_n;
pub mod watermark;

use async_trait::async_trait;

use crate::state::StateMetrics;
use crate::Result;

/// The two watermarks a batch runs under (SEMANTICS §2), and its processing time; ms since the
/// epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWatermarks {
    /// `W_k`: emission and eviction.
    pub current_ms: i64,
    /// `W_{k-1}`: rows at or below it are late.
    pub late_ms: i64,
    /// The batch's processing time (its offset log timestamp), for processing-time timeouts; a
    /// replayed batch keeps it (Spark's `batchTimestampMs`).
    pub processing_time_ms: i64,
}

/// What an operator reports for the progress line of a batch (Spark's `stateOperators`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorProgress {
    /// Operator name, e.g. `aggregate[window, key]`.
    pub name: String,
    /// Spark's short name of the operator kind, e.g. `stateStoreSave` (`StateStoreWriter.shortName`).
    pub operator_name: &'static str,
    /// State row counts.
    pub state: StateMetrics,
    /// Rows dropped as late by this batch. Counted after partial aggregation, as Spark counts
    /// (`numRowsDroppedByWatermark`): late rows of one window and key count once.
    pub rows_dropped_by_watermark: u64,
}

impl OperatorProgress {
    /// Adds the counts of `partition`, one state partition of the same operator.
    pub fn absorb(&mut self, partition: OperatorProgress) {
        self.name = partition.name;
        self.operator_name = partition.operator_name;
        self.state.rows_total += partition.state.rows_total;
        self.state.rows_updated += partition.state.rows_updated;
        self.state.rows_removed += partition.state.rows_removed;
        self.state.memory_bytes += partition.state.memory_bytes;
        self.state.rows_scanned += partition.state.rows_scanned;
        self.rows_dropped_by_watermark += partition.rows_dropped_by_watermark;
    }
}

/// The batch-level life cycle of a stateful operator, driven by the micro-batch loop.
#[async_trait]
pub trait StatefulOperator: Send + Sync + std::fmt::Debug {
    /// Loads committed state version `version` (`None`: empty) before the first batch runs.
    async fn restore(&self, version: Option<u64>) -> Result<()>;
    /// The first partition's state file of `version` that is missing or torn (see
    /// [`crate::state::StateStore::damaged_delta`]): the file and why; `None` when all are whole.
    ///
    /// # Errors
    /// [`crate::SluiceError::Checkpoint`] when a file cannot be read at all.
    async fn damaged_state(&self, version: u64) -> Result<Option<(String, String)>>;
    /// Sets the watermarks for the batch about to run.
    async fn begin_batch(&self, watermarks: BatchWatermarks);
    /// Persists the batch's state changes as version `version`.
    async fn commit(&self, version: u64) -> Result<()>;
    /// The state files not needed to restore versions `>= keep_from`, as paths in the
    /// checkpoint, for the query to delete.
    async fn stale_before(&self, keep_from: u64) -> Result<Vec<String>>;
    /// Whether a batch without new data must run because watermark `next_ms` lets this operator
    /// emit or evict (Spark's `shouldRunAnotherBatch`).
    async fn needs_no_data_batch(&self, next_ms: i64) -> bool;
    /// Progress of the last batch.
    async fn progress(&self) -> OperatorProgress;
}
