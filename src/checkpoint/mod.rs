//! The checkpoint location: offset log, commit log, query metadata, source logs and state files,
//! written durably to a local directory, or to S3 through `object_store` (or kept in memory),
//! each file with a checksum, and a lock that keeps a second query off a checkpoint in use.
//!
//! Layout (Spark's, file names are batch ids):
//! ```text
//! lock                     the process of the query writing the checkpoint (see lock)
//! metadata                 query settings fixed by the first run (state partitions)
//! offsets/N                written before batch N reads data: offsets, watermarks
//! commits/N                written after the sink has batch N's output
//! sources/<name>/N         what a source took in batch N (e.g. the file source's file list)
//! sources/<name>/N.compact what a source took through batch N, compacted (entries before it are purged)
//! state/<op>/<part>/N.delta|N.snapshot   operator state, see crate::state
//! ```
//!
//! Every file but the lock ends with the trailer of `framing`; log entries and `metadata` also
//! begin with their format version (see `log`). Recovery (`crate::execution::recovery`) treats
//! a torn newest entry of a log, or a torn newest state file, as never written.

pub(crate) mod framing;
pub(crate) mod location;
pub(crate) mod lock;
pub(crate) mod log;

pub(crate) use location::CheckpointLocation;
pub(crate) use lock::CheckpointLock;
/// For tools and tests reading a checkpoint: a log entry's JSON, the lock file and its holder.
pub use lock::{LockHolder, LOCK_FILE};
pub use log::{decode_entry, EntryError};
pub(crate) use log::{BatchLog, CommitEntry, OffsetEntry, QueryMetadata, ReadEntry};
