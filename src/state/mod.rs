//! Versioned keyed state for stateful operators, checkpointed per batch as a delta plus a periodic
//! snapshot (the layout of Spark's HDFS-backed state store provider).
//!
//! Keys and values are rows in arrow's row format (`arrow::row`): keys compare and hash as bytes,
//! and one encoding serves any Arrow type an operator keeps, including the list-typed states of
//! aggregates such as `count(DISTINCT)`.

pub mod codec;
pub mod store;
pub mod timers;

pub use store::{StateMetrics, StateStore};
pub use timers::TimerIndex;
