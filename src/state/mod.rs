//! Versioned keyed state for stateful operators, checkpointed per batch as a delta plus a periodic
//! snapshot (the layout of Spark's HDFS-backed state store provider).
//!
//! Two stores keep the rows between batches: hash tables in memory (the default), or, for state
//! larger than memory, one RocksDB instance per operator partition on the local disk
//! (`sluice.state_store = 'rocksdb'`, the `rocksdb_store` module of a build with the `rocksdb`
//! feature). Both write the same per-batch deltas
//! to the checkpoint; they differ in their snapshots.
//!
//! Keys and values are rows in arrow's row format (`arrow::row`): keys compare and hash as bytes,
//! and one encoding serves any Arrow type an operator keeps, including the list-typed states of
//! aggregates such as `sum(DISTINCT)`.

pub(crate) mod changes;
pub mod codec;
pub mod config;
pub(crate) mod files;
pub(crate) mod memory_rows;
pub(crate) mod memory_timers;
#[cfg(feature = "rocksdb")]
pub(crate) mod rocksdb_index;
#[cfg(feature = "rocksdb")]
pub(crate) mod rocksdb_store;
pub mod store;
pub mod timers;

pub(crate) use config::StateBackend;
pub use config::{RocksDbSettings, StateStoreKind};
pub use store::{StateEntry, StateMetrics, StateStore, StateValue};
pub use timers::TimerIndex;
