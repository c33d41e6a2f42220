//! A checkpoint location: a local directory written durably, an S3 bucket (or S3-compatible
//! store), or an in-memory object store.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload};

use super::lock::CheckpointLock;
use crate::{Result, SluiceError};

/// Where a checkpoint's files live.
#[derive(Debug, Clone)]
enum Backend {
    /// A local directory (absolute), written through `std::fs` with fsync.
    Local(Arc<PathBuf>),
    /// A fresh in-memory object store (`memory://`), which no other process can reach.
    Memory(Arc<dyn ObjectStore>),
    /// An object store other processes may write too (`s3://`), its root the checkpoint's.
    Remote(Arc<dyn ObjectStore>),
}

/// The forms [`CheckpointLocation::open`] accepts, for error messages.
const ACCEPTED: &str =
    "a checkpoint location is a local directory, file:///PATH, s3://BUCKET/PREFIX or memory:// (for tests)";

/// A checkpoint location: a local directory, an S3 bucket and prefix, or an in-memory object store.
///
/// A file in a local directory is written durably: to a temporary name in its directory, flushed
/// to the disk (`fsync`), renamed over its final name, and the directory flushed too, so that
/// after a crash or a power loss a file holds either its old contents or its new ones, and a file
/// written before another is on the disk before it. (`object_store`'s local file system renames
/// without flushing, so a power loss could leave an empty or torn file under the final name.)
/// Each file also carries a checksum (see [`super::framing`]), which recovery checks.
///
/// In S3 each file is one `PUT`, which S3 makes visible whole or not at all, and read back
/// strongly consistent; the one-writer lock is a conditional put (see [`CheckpointLock`]).
#[derive(Debug, Clone)]
pub struct CheckpointLocation {
    backend: Backend,
    display: String,
}

impl CheckpointLocation {
    /// Opens `location`: a local directory (created if missing), a `file://` URL, an
    /// `s3://BUCKET/PREFIX` URL, or `memory://` (a fresh in-memory store, for tests).
    ///
    /// An S3 location is reached through `object_store`'s S3 client configured from the
    /// environment ([`AmazonS3Builder::from_env`]), which reads every `AWS_*` variable it knows,
    /// among them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (the
    /// credentials; without them, those of the container or the instance metadata service, or a
    /// web identity through `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`), `AWS_REGION` or
    /// `AWS_DEFAULT_REGION` (default `us-east-1`), `AWS_ENDPOINT_URL` / `AWS_ENDPOINT` /
    /// `AWS_ENDPOINT_URL_S3` (an S3-compatible server instead of AWS, e.g.
    /// `http://127.0.0.1:5000`), `AWS_ALLOW_HTTP=true` (needed for an `http://` endpoint),
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true` (`bucket.host` requests; default: path-style).
    /// `~/.aws/config` and `~/.aws/credentials` are not read. The bucket must exist; nothing is
    /// sent before the query takes the checkpoint's lock.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming `location` when the directory cannot be created, the URL
    /// scheme is not one of the accepted forms, an S3 URL names no bucket, or the S3 settings of
    /// the environment are unusable (e.g. an `http://` endpoint without `AWS_ALLOW_HTTP=true`).
    pub fn open(location: &str) -> Result<Self> {
        let err = |message: String| SluiceError::Checkpoint { location: location.to_string(), message };
        if location == "memory://" {
            return Ok(Self { backend: Backend::Memory(Arc::new(InMemory::new())), display: location.into() });
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::open_s3(rest).map_err(err);
        }
        let local = location.strip_prefix("file://").unwrap_or(location);
        if let Some((scheme, _)) = local.split_once("://") {
            return Err(err(format!("the scheme '{scheme}://' is not built in: {ACCEPTED}")));
        }
        let existed = FsPath::new(local).is_dir();
        std::fs::create_dir_all(local).map_err(|e| err(format!("cannot create the directory: {e}")))?;
        let dir = std::fs::canonicalize(local).map_err(|e| err(e.to_string()))?;
        if !existed {
            if let Some(parent) = dir.parent() {
                sync_dir(parent).map_err(|e| err(format!("cannot flush the directory's parent to disk: {e}")))?;
            }
        }
        Ok(Self { display: dir.display().to_string(), backend: Backend::Local(Arc::new(dir)) })
    }

    /// Opens `s3://` + `rest` (`BUCKET[/PREFIX]`); the error message when it cannot.
    fn open_s3(rest: &str) -> std::result::Result<Self, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("the S3 URL names no bucket: {ACCEPTED}"));
        }
        if let Some(bad) = bucket.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
            return Err(format!(
                "'{bucket}' cannot be a bucket name ('{bad}': a bucket name holds letters, digits, '.' and '-'): \
                 {ACCEPTED}"
            ));
        }
        let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        let builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoints = [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint]
            .iter()
            .filter_map(|key| builder.get_config_value(key))
            .collect::<Vec<_>>();
        let allow_http = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"));
        if let Some(http) = endpoints.iter().find(|e| e.starts_with("http://")).filter(|_| !allow_http) {
            return Err(format!("the S3 endpoint {http} is plain HTTP: set AWS_ALLOW_HTTP=true to use it"));
        }
        let s3 = builder.build().map_err(|e| format!("cannot set up the S3 client from the environment: {e}"))?;
        let store = PrefixStore::new(s3, Self::path(&parts.join("/")));
        let display = std::iter::once(format!("s3://{bucket}")).chain(parts.iter().map(|p| p.to_string()));
        Ok(Self { backend: Backend::Remote(Arc::new(store)), display: display.collect::<Vec<_>>().join("/") })
    }

    /// The location as given, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// `relative` in this location, for messages.
    pub fn describe(&self, relative: &str) -> String {
        format!("{}/{relative}", self.display)
    }

    fn path(relative: &str) -> Path {
        relative.split('/').filter(|p| !p.is_empty()).fold(Path::default(), |p, part| p.join(part))
    }

    fn local_path(dir: &FsPath, relative: &str) -> PathBuf {
        relative.split('/').filter(|p| !p.is_empty()).fold(dir.to_path_buf(), |p, part| p.join(part))
    }

    /// Error for `relative` in this location.
    pub fn error(&self, relative: &str, message: impl Into<String>) -> SluiceError {
        SluiceError::Checkpoint { location: self.describe(relative), message: message.into() }
    }

    /// Runs blocking file-system work for `relative` off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        relative: &str,
        what: &str,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(|e| self.error(relative, format!("cannot {what}: {e}"))),
            Err(e) => Err(self.error(relative, format!("cannot {what}: the task failed: {e}"))),
        }
    }

    /// Takes the checkpoint's lock for the query about to write to it (see [`CheckpointLock`]);
    /// `None` for an in-memory checkpoint, which no other process can reach.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the lock and its holder when another live process (or
    /// another query of this one) holds it, or when it cannot be written (in an object store also
    /// when the store offers no conditional put).
    ///
    /// Holding the lock of a local directory, it deletes the temporary files of writes a crash
    /// cut short (see [`remove_temporary_files`]): nothing else writes to the checkpoint
    /// meanwhile. An object store has none: each file is written by one put.
    pub async fn lock(&self) -> Result<Option<CheckpointLock>> {
        match &self.backend {
            Backend::Local(dir) => {
                let lock = CheckpointLock::acquire(dir)?;
                match remove_temporary_files(dir) {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(
                        checkpoint = %self.display(), "removed {removed} temporary file(s) of writes cut short by a crash"
                    ),
                    Err(e) => tracing::warn!(checkpoint = %self.display(), "cannot remove temporary files: {e}"),
                }
                Ok(Some(lock))
            }
            Backend::Remote(store) => {
                Ok(Some(CheckpointLock::acquire_object(store, &self.describe(super::lock::LOCK_FILE)).await?))
            }
            Backend::Memory(_) => Ok(None),
        }
    }

    /// Writes `bytes` to `relative`, replacing any earlier file: durably in a local directory
    /// (see the type's documentation), with one atomic put in an object store.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the file.
    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        match &self.backend {
            Backend::Local(dir) => {
                let target = Self::local_path(dir, relative);
                let dir = Arc::clone(dir);
                self.blocking(relative, "write", move || write_durably(&dir, &target, &bytes)).await
            }
            Backend::Memory(store) | Backend::Remote(store) => store
                .put(&Self::path(relative), PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.error(relative, format!("cannot write: {e}"))),
        }
    }

    /// Reads `relative`; `None` when it does not exist.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when it exists but cannot be read.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>> {
        match &self.backend {
            Backend::Local(dir) => {
                let path = Self::local_path(dir, relative);
                self.blocking(relative, "read", move || match std::fs::read(path) {
                    Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                })
                .await
            }
            Backend::Memory(store) | Backend::Remote(store) => match store.get(&Self::path(relative)).await {
                Ok(result) => {
                    Ok(Some(result.bytes().await.map_err(|e| self.error(relative, format!("cannot read: {e}")))?))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error(relative, format!("cannot read: {e}"))),
            },
        }
    }

    /// Names (last path part) of the files directly or indirectly under `relative`, sorted;
    /// hidden names (temporary files of writes cut short, the lock) are left out.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when the listing fails.
    pub async fn list(&self, relative: &str) -> Result<Vec<String>> {
        let mut names: Vec<String> = match &self.backend {
            Backend::Local(dir) => {
                let path = Self::local_path(dir, relative);
                self.blocking(relative, "list", move || {
                    let mut names = Vec::new();
                    list_files(&path, &mut names)?;
                    Ok(names)
                })
                .await?
            }
            Backend::Memory(store) | Backend::Remote(store) => store
                .list(Some(&Self::path(relative)))
                .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
                .try_collect()
                .await
                .map_err(|e| self.error(relative, format!("cannot list: {e}")))?,
        };
        names.retain(|n| !n.starts_with('.'));
        names.sort();
        Ok(names)
    }

    /// Deletes `relative` if it exists.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] when the delete fails for another reason than absence.
    pub async fn delete(&self, relative: &str) -> Result<()> {
        match &self.backend {
            Backend::Local(dir) => {
                let path = Self::local_path(dir, relative);
                self.blocking(relative, "delete", move || remove_if_present(&path)).await
            }
            Backend::Memory(store) | Backend::Remote(store) => match store.delete(&Self::path(relative)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.error(relative, format!("cannot delete: {e}"))),
            },
        }
    }

    /// Deletes each of `relatives` that exists: in a local directory in one blocking task (one
    /// thread hand-off for all of them), in an object store one request each.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the first file whose delete fails for another reason
    /// than absence; the files before it are deleted.
    pub async fn delete_all(&self, relatives: Vec<String>) -> Result<()> {
        match &self.backend {
            Backend::Local(dir) => {
                let (dir, location) = (Arc::clone(dir), self.clone());
                let joined = tokio::task::spawn_blocking(move || {
                    for relative in relatives {
                        remove_if_present(&Self::local_path(&dir, &relative))
                            .map_err(|e| location.error(&relative, format!("cannot delete: {e}")))?;
                    }
                    Ok(())
                })
                .await;
                joined.map_err(|e| self.error("", format!("cannot delete: the task failed: {e}")))?
            }
            Backend::Memory(_) | Backend::Remote(_) => {
                for relative in &relatives {
                    self.delete(relative).await?;
                }
                Ok(())
            }
        }
    }
}

/// Deletes the file at `path`; nothing when it is absent.
fn remove_if_present(path: &FsPath) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `bytes` as `target` under the checkpoint directory `root`: to a hidden temporary file
/// in the same directory, flushed, renamed over `target`, then the directory flushed (and the
/// directories created on the way, each in its parent).
fn write_durably(root: &FsPath, target: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(root);
    create_dirs_durably(root, dir)?;
    let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}{TEMPORARY_SUFFIX}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::File::options().write(true).create_new(true).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// The end of a temporary file's name: `.<name>.<32 hex digits>.tmp`.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Whether `name` is that of a temporary file [`write_durably`] makes.
fn is_temporary(name: &str) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(TEMPORARY_SUFFIX)) else {
        return false;
    };
    stem.rsplit_once('.')
        .is_some_and(|(target, id)| !target.is_empty() && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Deletes, under `dir` recursively, the temporary files of writes a crash cut short (a write
/// renames its temporary file once complete, or deletes it on an error); the number deleted.
fn remove_temporary_files(dir: &FsPath) -> std::io::Result<usize> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            removed += remove_temporary_files(&entry.path())?;
        } else if is_temporary(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Creates `dir` and its missing parents up to `root`, flushing each parent that got a new entry.
fn create_dirs_durably(root: &FsPath, dir: &FsPath) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| p.starts_with(root));
    if let Some(parent) = parent {
        create_dirs_durably(root, parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match parent {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Flushes a directory's entries (new, renamed or removed names) to the disk.
pub(crate) fn sync_dir(dir: &FsPath) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Adds the names of the files under `dir`, recursively, to `names`; nothing when `dir` is absent.
fn list_files(dir: &FsPath, names: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            list_files(&entry.path(), names)?;
        } else {
            names.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_directory_is_written_read_listed_and_deleted_leaving_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let location = CheckpointLocation::open(dir.path().join("cp").to_str().unwrap()).unwrap();
        location.put("state/0/1/3.delta", "three".into()).await.unwrap();
        location.put("state/0/1/3.delta", "three again".into()).await.unwrap();
        location.put("offsets/0", "zero".into()).await.unwrap();
        assert_eq!(location.get("state/0/1/3.delta").await.unwrap().unwrap(), "three again");
        assert_eq!(location.get("offsets/1").await.unwrap(), None);
        assert_eq!(location.list("state").await.unwrap(), ["3.delta"]);
        assert_eq!(location.list("nowhere").await.unwrap(), Vec::<String>::new());
        let in_dir: Vec<_> =
            std::fs::read_dir(dir.path().join("cp/state/0/1")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(in_dir, ["3.delta"], "no temporary file is left behind");
        assert!(is_temporary(".3.delta.0123456789abcdef0123456789abcdef.tmp"));
        for other in [".lock", "3.delta", ".3.delta.tmp", ".x.0123.tmp", "..0123456789abcdef0123456789abcdef.tmp"] {
            assert!(!is_temporary(other), "{other}");
        }
        location.delete("offsets/0").await.unwrap();
        location.delete("offsets/0").await.unwrap();
        assert_eq!(location.get("offsets/0").await.unwrap(), None);
        // Deleting several at once passes over those already gone; a directory is not a file.
        location.put("offsets/1", "one".into()).await.unwrap();
        location.put("offsets/2", "two".into()).await.unwrap();
        location.delete_all(vec!["offsets/0".into(), "offsets/1".into()]).await.unwrap();
        assert_eq!(location.list("offsets").await.unwrap(), ["2"]);
        let err = location.delete_all(vec!["offsets/2".into(), "state".into()]).await.unwrap_err().to_string();
        assert!(err.contains("cp/state: cannot delete"), "{err}");
        assert_eq!(location.list("offsets").await.unwrap(), Vec::<String>::new(), "the files before it are deleted");
        // A write a crash cut short left its temporary file: the next lock holder removes it.
        let left = dir.path().join("cp/state/0/1/.4.delta.0123456789abcdef0123456789abcdef.tmp");
        std::fs::write(&left, "four, cut sh").unwrap();
        std::fs::write(dir.path().join("cp/state/0/1/.kept"), "not a temporary file").unwrap();
        let lock = location.lock().await.unwrap();
        assert!(lock.is_some());
        assert!(!left.exists(), "the temporary file of a cut write is removed");
        assert!(dir.path().join("cp/state/0/1/.kept").exists() && dir.path().join("cp/state/0/1/3.delta").exists());
        assert!(CheckpointLocation::open("memory://").unwrap().lock().await.unwrap().is_none());
    }

    #[test]
    fn an_s3_url_names_bucket_and_prefix_and_a_bad_location_names_the_accepted_forms() {
        // Nothing is sent to S3 before the lock is taken: no server is needed here.
        let location = CheckpointLocation::open("s3://bucket/runs//q1/").unwrap();
        assert_eq!(location.display(), "s3://bucket/runs/q1");
        assert_eq!(location.describe("offsets/0"), "s3://bucket/runs/q1/offsets/0");
        assert_eq!(CheckpointLocation::open("s3://bucket").unwrap().display(), "s3://bucket");
        for (bad, why) in [
            ("s3://", "names no bucket"),
            ("s3:///runs", "names no bucket"),
            ("s3://my bucket/x", "'my bucket' cannot be a bucket name"),
            ("gs://bucket/x", "the scheme 'gs://' is not built in"),
            ("file://s3://bucket", "the scheme 's3://' is not built in"),
        ] {
            let err = CheckpointLocation::open(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why) && err.contains("s3://BUCKET/PREFIX"), "{bad}: {err}");
        }
    }
}
