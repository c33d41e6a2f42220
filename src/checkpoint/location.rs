//! A checkpoint directory as an object store prefix.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{Result, SluiceError};

/// A checkpoint location: an object store and a prefix in it.
///
/// Writes are whole-object puts, which `object_store` makes atomic on every backend (a local file
/// is written to a temporary name and renamed), so a crash never leaves a half-written log entry.
#[derive(Debug, Clone)]
pub struct CheckpointLocation {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
}

impl CheckpointLocation {
    /// Opens `location`: a local directory (created if missing), a `file://` URL, or `memory://`
    /// (a fresh in-memory store, for tests).
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when the directory cannot be created or the URL scheme is not
    /// built in.
    pub fn open(location: &str) -> Result<Self> {
        let err = |message: String| SluiceError::Checkpoint { location: location.to_string(), message };
        if location == "memory://" {
            return Ok(Self { store: Arc::new(InMemory::new()), root: Path::default(), display: location.into() });
        }
        let local = location.strip_prefix("file://").unwrap_or(location);
        if local.contains("://") {
            return Err(err("only local directories, file:// and memory:// checkpoint locations are built in".into()));
        }
        std::fs::create_dir_all(local).map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let dir = std::fs::canonicalize(local).map_err(|e| err(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| err(e.to_string()))?;
        Ok(Self { store: Arc::new(store), root: Path::default(), display: dir.display().to_string() })
    }

    /// The location as given, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    fn path(&self, relative: &str) -> Path {
        relative.split('/').filter(|p| !p.is_empty()).fold(self.root.clone(), |p, part| p.join(part))
    }

    /// Error for `relative` in this location.
    pub fn error(&self, relative: &str, message: impl Into<String>) -> SluiceError {
        SluiceError::Checkpoint { location: format!("{}/{relative}", self.display), message: message.into() }
    }

    /// Writes `bytes` to `relative`, replacing any earlier object.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the object.
    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(relative), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(relative, format!("cannot write: {e}")))
    }

    /// Reads `relative`; `None` when it does not exist.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when it exists but cannot be read.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(relative)).await {
            Ok(result) => {
                Ok(Some(result.bytes().await.map_err(|e| self.error(relative, format!("cannot read: {e}")))?))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, format!("cannot read: {e}"))),
        }
    }

    /// Names (last path part) of the objects directly or indirectly under `relative`, sorted.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when the listing fails.
    pub async fn list(&self, relative: &str) -> Result<Vec<String>> {
        let prefix = self.path(relative);
        let mut names: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .map_err(|e| self.error(relative, format!("cannot list: {e}")))?;
        names.sort();
        Ok(names)
    }

    /// Deletes `relative` if it exists.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when the delete fails for another reason than absence.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(relative, format!("cannot delete: {e}"))),
        }
    }
}
