//! One writer per checkpoint: the `lock` file of a checkpoint directory, or the `lock` object of a
//! checkpoint in an object store (S3).
//!
//! A query takes the lock when it starts and releases it when it stops (or its last handle is
//! dropped). In a local directory the file is created exclusively (written whole under a
//! temporary name, then hard-linked to `lock`, which fails if it exists); in an object store the
//! object is created by a conditional put (`If-None-Match: *` on S3), which fails if it exists. So
//! of two processes starting at once only one gets it. It names its holder (process id, host,
//! and on Linux the boot and the start time of the process, which tell a reused process id from
//! the holder). A lock whose holder is gone — same host, and no such process is running (or it
//! is a zombie, or another process now has its id, or the machine rebooted since) — is stale and
//! taken over with a warning (in an object store by a put conditional on the stale version, so
//! of two processes taking it over only one succeeds). A lock held from another host cannot be
//! checked and is respected; the error says to delete the lock if that host no longer runs the
//! query.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::location::sync_dir;
use crate::{Result, SluiceError};

/// Name of the lock file in a checkpoint directory (and of the lock object in an object store).
pub const LOCK_FILE: &str = "lock";

/// How long an unreadable lock file (a holder on a file system without hard links, between
/// creating and writing it) is respected.
const UNREADABLE_GRACE: Duration = Duration::from_secs(5);

/// Who holds a lock: the contents of the lock file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// Linux's boot id of the holder's host (`/proc/sys/kernel/random/boot_id`), if known.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The holder's start time in clock ticks after boot (`/proc/<pid>/stat`), if known.
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// When the lock was taken, ms since the epoch.
    #[serde(default)]
    pub since_ms: i64,
}

impl LockHolder {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            host: host_name(),
            boot_id: boot_id(),
            start_ticks: process_start_ticks(pid).ok().flatten(),
            since_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
        }
    }

    /// False when the holder is known to be gone: on this host, and no process with its id and
    /// start time runs in this boot. True when that cannot be checked (another host, no `/proc`).
    pub fn is_alive(&self) -> bool {
        if self.host != host_name() {
            return true;
        }
        if let (Some(theirs), Some(ours)) = (&self.boot_id, boot_id()) {
            if *theirs != ours {
                return false;
            }
        }
        match process_start_ticks(self.pid) {
            Ok(Some(ticks)) => self.start_ticks.is_none_or(|t| t == ticks),
            Ok(None) => false,
            Err(()) => true,
        }
    }

    fn describe(&self) -> String {
        let since = chrono::DateTime::from_timestamp_millis(self.since_ms)
            .map(|t| format!(" since {}", t.format("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_default();
        format!("process {} on host '{}'{since}", self.pid, self.host)
    }
}

/// The host name (Linux: `/proc/sys/kernel/hostname`; else `$HOSTNAME`), `unknown` if neither.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|b| b.trim().to_string())
}

/// The start time of process `pid` in clock ticks after boot: `Ok(None)` when no such process
/// runs (or it is a zombie), `Err(())` when this system has no `/proc` to tell.
fn process_start_ticks(pid: u32) -> std::result::Result<Option<u64>, ()> {
    if !Path::new("/proc/self/stat").exists() {
        return Err(());
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Ok(None) };
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, the fields after the
    // last `)` do not. The state is field 3, the start time field 22.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    match fields.first() {
        None | Some(&"Z") | Some(&"X") | Some(&"x") => Ok(None),
        Some(_) => Ok(Some(fields.get(19).and_then(|t| t.parse().ok()).unwrap_or(0))),
    }
}

/// The lock of a checkpoint, held by this process while a query may write to it: released by
/// [`Self::release`], or when dropped.
#[derive(Debug)]
pub struct CheckpointLock {
    /// `None` once released.
    held: Option<Held>,
}

/// A lock this process holds.
enum Held {
    /// A local directory's lock file, holding `contents`.
    File { path: PathBuf, contents: Vec<u8> },
    /// An object store's lock object at `path` (`name` in messages), holding `contents`.
    Object { store: Arc<dyn ObjectStore>, path: ObjectPath, name: String, contents: Vec<u8> },
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path, .. } => f.debug_struct("File").field("path", path).finish(),
            Self::Object { name, .. } => f.debug_struct("Object").field("lock", name).finish(),
        }
    }
}

/// Whether a lock held by someone else (its contents `existing`, `age` since it was written when
/// known) may be taken over: `Err` with the reason to refuse, `Ok` after a warning naming the
/// stale holder. `lock` names the lock in messages; `holder` is this process.
fn judge(lock: &str, existing: &[u8], age: Option<Duration>, holder: &LockHolder) -> std::result::Result<(), String> {
    match serde_json::from_slice::<LockHolder>(existing) {
        Ok(other) if other.is_alive() => {
            let this = if other.pid == holder.pid && other.host == holder.host {
                " (this process: another query of it runs on this checkpoint)"
            } else {
                ""
            };
            Err(format!(
                "the checkpoint is in use by {}{this}; two queries writing one checkpoint would corrupt it. Stop that \
                 query first, or give this one another checkpoint location; if no query runs on it any more (e.g. its \
                 host was renamed), delete this lock file",
                other.describe()
            ))
        }
        Ok(other) => {
            tracing::warn!(lock = %lock, "taking over the checkpoint's lock from {}, which no longer runs", other.describe());
            Ok(())
        }
        Err(_) => {
            if age.is_none_or(|age| age < UNREADABLE_GRACE) {
                return Err("another process is taking the checkpoint's lock (the lock file is not readable yet); \
                            try again, or delete this lock file if no query runs on the checkpoint"
                    .to_string());
            }
            tracing::warn!(lock = %lock, "taking over an unreadable checkpoint lock file");
            Ok(())
        }
    }
}

impl CheckpointLock {
    /// Takes the lock of checkpoint directory `dir`, taking over a stale one (with a warning).
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the lock file when a live process (this one included:
    /// another query) holds it, with the holder and the remedy; or when it cannot be written.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let error = |message: String| SluiceError::Checkpoint { location: path.display().to_string(), message };
        let holder = LockHolder::current();
        let contents = serde_json::to_vec_pretty(&holder).expect("a lock holder serializes");
        for _ in 0..4 {
            match create_exclusively(dir, &path, &contents) {
                Ok(true) => {
                    return Ok(Self { held: Some(Held::File { path: path.clone(), contents: contents.clone() }) })
                }
                Ok(false) => {}
                Err(e) => return Err(error(format!("cannot create the lock file: {e}"))),
            }
            let existing = match std::fs::read(&path) {
                Ok(existing) => existing,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(format!("cannot read the lock file: {e}"))),
            };
            let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
            judge(&path.display().to_string(), &existing, age, &holder).map_err(error)?;
            take_over(dir, &path, &existing)
                .map_err(|e| error(format!("cannot take over the stale lock file: {e}")))?;
        }
        Err(error("could not take the checkpoint's lock: other processes keep taking it; try again".to_string()))
    }

    /// Takes the lock of a checkpoint in an object store (the object `lock` of `store`, named
    /// `name` in messages): created with a conditional put ([`PutMode::Create`], S3's
    /// `If-None-Match: *`), so of two processes starting at once only one gets it; a stale one is
    /// taken over (with a warning) by a put conditional on the version read
    /// ([`PutMode::Update`], `If-Match`), so of two processes taking it over only one succeeds.
    ///
    /// # Errors
    /// [`SluiceError::Checkpoint`] naming the lock when a live process (this one included: another
    /// query) holds it, with the holder and the remedy; when the store offers no conditional put;
    /// or when the store cannot be reached.
    pub async fn acquire_object(store: &Arc<dyn ObjectStore>, name: &str) -> Result<Self> {
        let path = ObjectPath::from(LOCK_FILE);
        let error = |message: String| SluiceError::Checkpoint { location: name.to_string(), message };
        let unsupported = |e: object_store::Error| {
            error(format!(
                "this object store offers no conditional put, which keeps a second query off the checkpoint: {e}"
            ))
        };
        let holder = LockHolder::current();
        let contents = serde_json::to_vec_pretty(&holder).expect("a lock holder serializes");
        let held = || Self {
            held: Some(Held::Object {
                store: Arc::clone(store),
                path: path.clone(),
                name: name.to_string(),
                contents: contents.clone(),
            }),
        };
        for _ in 0..4 {
            let payload = PutPayload::from(contents.clone());
            match store.put_opts(&path, payload, PutMode::Create.into()).await {
                Ok(_) => return Ok(held()),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e @ object_store::Error::NotImplemented { .. }) => return Err(unsupported(e)),
                Err(e) => return Err(error(format!("cannot create the lock: {e}"))),
            }
            let existing = match store.get(&path).await {
                Ok(existing) => existing,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(error(format!("cannot read the lock: {e}"))),
            };
            let version = UpdateVersion { e_tag: existing.meta.e_tag.clone(), version: existing.meta.version.clone() };
            let age = (chrono::Utc::now() - existing.meta.last_modified).to_std().ok();
            let bytes = existing.bytes().await.map_err(|e| error(format!("cannot read the lock: {e}")))?;
            judge(name, &bytes, age, &holder).map_err(error)?;
            let payload = PutPayload::from(contents.clone());
            match store.put_opts(&path, payload, PutMode::Update(version).into()).await {
                Ok(_) => return Ok(held()),
                // Another process took it over, or released it, meanwhile: look again.
                Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {}
                Err(e @ object_store::Error::NotImplemented { .. }) => return Err(unsupported(e)),
                Err(e) => return Err(error(format!("cannot take over the stale lock: {e}"))),
            }
        }
        Err(error("could not take the checkpoint's lock: other processes keep taking it; try again".to_string()))
    }

    /// Releases the lock: deletes the lock file or object, if it still holds what this process
    /// wrote (a lock taken over while this process was thought gone is not this one's to delete).
    /// A failure is logged as a warning: the next query takes a lock whose holder is gone over.
    pub async fn release(mut self) {
        match self.held.take() {
            Some(Held::File { path, contents }) => release_file(&path, &contents),
            Some(Held::Object { store, path, name, contents }) => {
                release_object(store.as_ref(), &path, &name, &contents).await
            }
            None => {}
        }
    }
}

/// Deletes the lock file at `path` if it holds `contents`.
fn release_file(path: &Path, contents: &[u8]) {
    if std::fs::read(path).is_ok_and(|c| c == contents) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(lock = %path.display(), "cannot release the checkpoint's lock: {e}");
        }
    }
}

/// Deletes the lock object at `path` of `store` (`name` in messages) if it holds `contents`.
async fn release_object(store: &dyn ObjectStore, path: &ObjectPath, name: &str, contents: &[u8]) {
    let ours = match store.get(path).await {
        Ok(existing) => existing.bytes().await.is_ok_and(|c| c == contents),
        Err(_) => false,
    };
    if ours {
        match store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(lock = %name, "cannot release the checkpoint's lock: {e}"),
        }
    }
}

/// Creates `path` holding `contents`, unless it exists (false): written whole to a temporary
/// file first and hard-linked to `path`, so no process ever sees a partly written lock (where the
/// file system has no hard links, created with `O_EXCL` and written).
fn create_exclusively(dir: &Path, path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let temporary = dir.join(format!(".{LOCK_FILE}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let linked = (|| {
        let mut file = std::fs::File::options().write(true).create_new(true).open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(_) => match std::fs::File::options().write(true).create_new(true).open(path) {
            Ok(mut file) => {
                file.write_all(contents)?;
                file.sync_all()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        },
    }
    sync_dir(dir)?;
    Ok(true)
}

/// Removes the stale lock file at `path` whose contents were `stale`, unless another process has
/// replaced it meanwhile: it is moved aside first, and moved back if it is not the stale one.
fn take_over(dir: &Path, path: &Path, stale: &[u8]) -> std::io::Result<()> {
    let aside = dir.join(format!(".{LOCK_FILE}.stale.{}", uuid::Uuid::new_v4().simple()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if std::fs::read(&aside).is_ok_and(|moved| moved != stale) {
        // Another process took the lock in between: give it back (a hard link fails rather than
        // replace a lock taken since).
        let _ = std::fs::hard_link(&aside, path);
    }
    std::fs::remove_file(&aside)
}

impl Drop for CheckpointLock {
    /// Releases a lock [`CheckpointLock::release`] did not: a lock file at once, an object store's
    /// lock in a task of the current Tokio runtime (without one, it stays until the next query
    /// takes it over, its holder being gone).
    fn drop(&mut self) {
        match self.held.take() {
            Some(Held::File { path, contents }) => release_file(&path, &contents),
            Some(Held::Object { store, path, name, contents }) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { release_object(store.as_ref(), &path, &name, &contents).await });
                }
                Err(_) => {
                    tracing::warn!(lock = %name, "the checkpoint's lock is left for the next query to take over")
                }
            },
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_released_on_drop_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = CheckpointLock::acquire(dir.path()).unwrap();
        let err = CheckpointLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("lock") && err.contains(&format!("process {}", std::process::id())), "{err}");
        assert!(err.contains("this process"), "{err}");
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists(), "released");

        // A process id past Linux's largest (2^22) runs nowhere.
        let dead = LockHolder { pid: 99_999_999, ..LockHolder::current() };
        assert!(!dead.is_alive());
        std::fs::write(dir.path().join(LOCK_FILE), serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = CheckpointLock::acquire(dir.path()).unwrap();
        let holder: LockHolder = serde_json::from_slice(&std::fs::read(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(holder.pid, std::process::id(), "taken over");
        drop(lock);

        // Another host's lock cannot be checked, and is respected.
        let remote = LockHolder { host: "elsewhere.example".into(), ..dead };
        std::fs::write(dir.path().join(LOCK_FILE), serde_json::to_vec(&remote).unwrap()).unwrap();
        let err = CheckpointLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("elsewhere.example") && err.contains("delete this lock file"), "{err}");
    }

    #[tokio::test]
    async fn an_object_store_lock_is_refused_while_held_released_and_a_stale_one_taken_over() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let path = ObjectPath::from(LOCK_FILE);
        let holder_in = |store: Arc<dyn ObjectStore>| async move {
            let bytes = store.get(&ObjectPath::from(LOCK_FILE)).await.ok()?.bytes().await.ok()?;
            serde_json::from_slice::<LockHolder>(&bytes).ok()
        };
        let lock = CheckpointLock::acquire_object(&store, "s3://b/cp/lock").await.unwrap();
        let err = CheckpointLock::acquire_object(&store, "s3://b/cp/lock").await.unwrap_err().to_string();
        assert!(err.contains("s3://b/cp/lock") && err.contains("this process"), "{err}");
        lock.release().await;
        assert!(store.head(&path).await.is_err(), "released");

        let dead = LockHolder { pid: 99_999_999, ..LockHolder::current() };
        store.put(&path, serde_json::to_vec(&dead).unwrap().into()).await.unwrap();
        let lock = CheckpointLock::acquire_object(&store, "s3://b/cp/lock").await.unwrap();
        assert_eq!(holder_in(Arc::clone(&store)).await.unwrap().pid, std::process::id(), "taken over");
        // Dropped unreleased: released by a task.
        drop(lock);
        for _ in 0..100 {
            if store.head(&path).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.head(&path).await.is_err(), "released on drop");

        // A lock taken over meanwhile (this process was thought gone) is not released by it.
        let lock = CheckpointLock::acquire_object(&store, "s3://b/cp/lock").await.unwrap();
        let remote = LockHolder { host: "elsewhere.example".into(), ..dead };
        store.put(&path, serde_json::to_vec(&remote).unwrap().into()).await.unwrap();
        lock.release().await;
        assert_eq!(holder_in(Arc::clone(&store)).await, Some(remote.clone()), "not this holder's to delete");
        // Another host's lock cannot be checked, and is respected.
        let err = CheckpointLock::acquire_object(&store, "s3://b/cp/lock").await.unwrap_err().to_string();
        assert!(err.contains("elsewhere.example") && err.contains("delete this lock file"), "{err}");
    }

    #[test]
    fn a_reused_process_id_or_a_zombie_is_not_the_holder() {
        let me = LockHolder::current();
        assert!(me.is_alive());
        if me.start_ticks.is_some() {
            let reused = LockHolder { start_ticks: me.start_ticks.map(|t| t + 1), ..me.clone() };
            assert!(!reused.is_alive(), "another process with the holder's id");
            let rebooted = LockHolder { boot_id: Some("another boot".into()), ..me.clone() };
            assert!(!rebooted.is_alive());
        }
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let holder = LockHolder { pid: child.id(), start_ticks: None, ..me };
        assert!(holder.is_alive(), "a running process");
        child.kill().unwrap();
        // Killed but not yet reaped: a zombie, gone all the same.
        std::thread::sleep(Duration::from_millis(200));
        assert!(!holder.is_alive(), "a killed process");
        child.wait().unwrap();
        assert!(!holder.is_alive(), "a reaped process");
    }
}
