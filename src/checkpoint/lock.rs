//! One writer per checkpoint: the `lock` file of a local checkpoint directory.
//!
//! A query takes the lock when it starts and releases it when it stops (or its last handle is
//! dropped). The file is created exclusively (written whole under a temporary name, then
//! hard-linked to `lock`, which fails if it exists), so of two processes starting at once only
//! one gets it; it names its holder (process id, host, and on Linux the boot and the start
//! time of the process, which tell a reused process id from the holder). A lock whose holder is
//! gone — same host, and no such process is running (or it is a zombie, or another process now
//! has its id, or the machine rebooted since) — is stale and taken over with a warning. A lock
//! held from another host cannot be checked and is respected; the error says to delete the file
//! if that host no longer runs the query.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::location::sync_dir;
use crate::{Result, SluiceError};

/// Name of the lock file in a checkpoint directory.
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

/// The lock of a local checkpoint directory, held by this process while a query may write to
/// it; the file is deleted when this is dropped.
#[derive(Debug)]
pub struct CheckpointLock {
    path: PathBuf,
    contents: Vec<u8>,
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
                Ok(true) => return Ok(Self { path: path.clone(), contents: contents.clone() }),
                Ok(false) => {}
                Err(e) => return Err(error(format!("cannot create the lock file: {e}"))),
            }
            let existing = match std::fs::read(&path) {
                Ok(existing) => existing,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(format!("cannot read the lock file: {e}"))),
            };
            match serde_json::from_slice::<LockHolder>(&existing) {
                Ok(other) if other.is_alive() => {
                    let this = if other.pid == holder.pid && other.host == holder.host {
                        " (this process: another query of it runs on this checkpoint)"
                    } else {
                        ""
                    };
                    return Err(error(format!(
                        "the checkpoint is in use by {}{this}; two queries writing one checkpoint would corrupt it. Stop \
                         that query first, or give this one another checkpoint location; if no query runs on it any more \
                         (e.g. its host was renamed), delete this lock file",
                        other.describe()
                    )));
                }
                Ok(other) => {
                    tracing::warn!(lock = %path.display(), "taking over the checkpoint's lock from {}, which no longer runs", other.describe());
                }
                Err(_) => {
                    let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
                    if age.is_none_or(|age| age < UNREADABLE_GRACE) {
                        return Err(error(
                            "another process is taking the checkpoint's lock (the lock file is not readable yet); \
                             try again, or delete this lock file if no query runs on the checkpoint"
                                .to_string(),
                        ));
                    }
                    tracing::warn!(lock = %path.display(), "taking over an unreadable checkpoint lock file");
                }
            }
            take_over(dir, &path, &existing)
                .map_err(|e| error(format!("cannot take over the stale lock file: {e}")))?;
        }
        Err(error("could not take the checkpoint's lock: other processes keep taking it; try again".to_string()))
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
    fn drop(&mut self) {
        // Only this holder's file: a lock taken over while this process was thought gone is not
        // this one's to delete.
        if std::fs::read(&self.path).is_ok_and(|c| c == self.contents) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(lock = %self.path.display(), "cannot release the checkpoint's lock: {e}");
            }
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
