//! Which state store a query keeps its state in (`sluice.state_store`), and the RocksDB store's
//! settings.

use std::path::PathBuf;

#[cfg(feature = "rocksdb")]
use std::sync::Arc;

#[cfg(feature = "rocksdb")]
use crate::state::rocksdb_store::RocksDbShared;
use crate::Result;

/// The kinds of state store (`sluice.state_store`), fixed in a checkpoint's `metadata` at its
/// first start, as Spark fixes its state store provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateStoreKind {
    /// Hash tables in memory (the default; Spark's HDFS-backed provider).
    #[default]
    Memory,
    /// One RocksDB instance per operator partition on the local disk, for state larger than
    /// memory (Spark's `RocksDBStateStoreProvider`); needs a build with the `rocksdb` feature.
    RocksDb,
}

impl StateStoreKind {
    /// Every kind, by name.
    pub const ALL: [StateStoreKind; 2] = [StateStoreKind::Memory, StateStoreKind::RocksDb];

    /// The name in settings and in a checkpoint's `metadata`: `memory` or `rocksdb`.
    pub fn name(self) -> &'static str {
        match self {
            StateStoreKind::Memory => "memory",
            StateStoreKind::RocksDb => "rocksdb",
        }
    }

    /// The kind named `name` (case-insensitive), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// The RocksDB store's settings (`sluice.state_store.rocksdb.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RocksDbSettings {
    /// The memory all the instances of one query may use, bytes: the block cache, to which the
    /// write buffers (at most half of it) are charged (Spark's `maxMemoryUsageMB` with
    /// `boundedMemoryUsage`). Default 256 MiB.
    pub memory_bytes: usize,
    /// Where the instances live while the query runs (each query in its own temporary
    /// subdirectory, removed when it stops); the system's temporary directory when `None`.
    pub local_dir: Option<PathBuf>,
}

/// Default of [`RocksDbSettings::memory_bytes`].
pub const DEFAULT_ROCKSDB_MEMORY_BYTES: usize = 256 << 20;

/// The least [`RocksDbSettings::memory_bytes`] accepted: RocksDB needs a few blocks and one
/// memtable per instance.
pub const MIN_ROCKSDB_MEMORY_BYTES: usize = 4 << 20;

impl Default for RocksDbSettings {
    fn default() -> Self {
        Self { memory_bytes: DEFAULT_ROCKSDB_MEMORY_BYTES, local_dir: None }
    }
}

/// What the state stores of one query keep their rows in.
#[derive(Debug, Clone, Default)]
pub(crate) enum StateBackend {
    /// Hash tables in memory.
    #[default]
    Memory,
    /// RocksDB instances sharing a cache and a working directory.
    #[cfg(feature = "rocksdb")]
    RocksDb(Arc<RocksDbShared>),
}

impl StateBackend {
    /// The backend of one query whose checkpoint uses `kind`.
    ///
    /// # Errors
    /// [`crate::SluiceError::Unsupported`] for RocksDB in a build without the `rocksdb` feature;
    /// [`crate::SluiceError::Io`] when the RocksDB working directory cannot be created.
    pub(crate) fn for_query(kind: StateStoreKind, settings: &RocksDbSettings) -> Result<Self> {
        match kind {
            StateStoreKind::Memory => Ok(StateBackend::Memory),
            #[cfg(feature = "rocksdb")]
            StateStoreKind::RocksDb => Ok(StateBackend::RocksDb(RocksDbShared::new(settings)?)),
            #[cfg(not(feature = "rocksdb"))]
            StateStoreKind::RocksDb => {
                let _ = settings;
                Err(crate::SluiceError::unsupported(
                    "sluice.state_store = 'rocksdb'",
                    "this sluice was built without the RocksDB state store",
                    "build it with `cargo build --release --features rocksdb` (needs libclang: Debian's libclang-dev), or use the in-memory store",
                ))
            }
        }
    }
}
