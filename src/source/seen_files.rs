//! The files a file source remembers having taken (Spark's `FileStreamSource.SeenFilesMap`).
//!
//! Remembering every file ever taken would make a long-running source's memory and checkpoint
//! grow without bound. As Spark does, the source remembers only files whose modification time is
//! at least the newest taken file's minus the max file age (`max_file_age`, Spark's
//! `maxFileAge`), and treats any file older than that threshold as not new, taken or not: a file
//! that arrives late with an old modification time is skipped.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Spark's default `maxFileAge`: 7 days, in ms.
pub const DEFAULT_MAX_FILE_AGE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// One file taken by the source: its path and modification time (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenFile {
    /// The file's path.
    pub path: PathBuf,
    /// Its modification time when it was listed, ms since the epoch.
    pub modified_ms: i64,
}

/// The files a source remembers, as written to its compacted log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFilesSnapshot {
    /// The newest modification time taken, ms (`i64::MIN` before the first file).
    pub latest_ms: i64,
    /// Files modified before this time (ms) are forgotten and never taken (`i64::MIN`: none yet).
    pub last_purge_ms: i64,
    /// The remembered files, by path.
    pub files: Vec<TakenFile>,
}

/// The remembered files and the age threshold below which files are neither remembered nor new.
///
/// Files are indexed by path and by modification time, so a purge costs the files it forgets,
/// not a scan of all that are remembered.
#[derive(Debug, Clone)]
pub struct SeenFiles {
    max_age_ms: i64,
    files: HashMap<Arc<Path>, i64>,
    by_time: BTreeSet<(i64, Arc<Path>)>,
    latest_ms: i64,
    last_purge_ms: i64,
}

impl SeenFiles {
    /// Nothing seen; files older than the newest taken minus `max_age_ms` will be forgotten.
    pub fn new(max_age_ms: i64) -> Self {
        Self {
            max_age_ms,
            files: HashMap::new(),
            by_time: BTreeSet::new(),
            latest_ms: i64::MIN,
            last_purge_ms: i64::MIN,
        }
    }

    /// The state `snapshot` recorded. The threshold never moves back, even when the max age is
    /// now longer: files forgotten under the old age are not remembered, so taking them again
    /// would read them twice.
    pub fn from_snapshot(max_age_ms: i64, snapshot: SeenFilesSnapshot) -> Self {
        let mut seen = Self::new(max_age_ms);
        for file in &snapshot.files {
            seen.add(file);
        }
        seen.latest_ms = seen.latest_ms.max(snapshot.latest_ms);
        seen.last_purge_ms = snapshot.last_purge_ms;
        seen.purge();
        seen
    }

    /// The state to write to a compacted log entry, files in path order.
    pub fn snapshot(&self) -> SeenFilesSnapshot {
        let mut files: Vec<TakenFile> =
            self.files.iter().map(|(path, ms)| TakenFile { path: path.to_path_buf(), modified_ms: *ms }).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        SeenFilesSnapshot { latest_ms: self.latest_ms, last_purge_ms: self.last_purge_ms, files }
    }

    /// Whether `path` is remembered, which needs no look at the file itself.
    pub fn contains(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// Whether a file modified at `modified_ms` may be taken: not remembered and not older than
    /// the threshold of the last purge (Spark's `isNewFile`).
    pub fn is_new(&self, path: &Path, modified_ms: i64) -> bool {
        modified_ms >= self.last_purge_ms && !self.contains(path)
    }

    /// Remembers a taken file.
    pub fn add(&mut self, file: &TakenFile) {
        let path: Arc<Path> = Arc::from(file.path.as_path());
        if let Some(earlier) = self.files.insert(path.clone(), file.modified_ms) {
            self.by_time.remove(&(earlier, path.clone()));
        }
        self.by_time.insert((file.modified_ms, path));
        self.latest_ms = self.latest_ms.max(file.modified_ms);
    }

    /// Moves the threshold to the newest modification time minus the max age (never back) and
    /// forgets the files older than it; returns how many were forgotten.
    pub fn purge(&mut self) -> usize {
        self.last_purge_ms = self.last_purge_ms.max(self.latest_ms.saturating_sub(self.max_age_ms));
        let mut forgotten = 0;
        while let Some((ms, path)) = self.by_time.pop_first() {
            if ms >= self.last_purge_ms {
                self.by_time.insert((ms, path));
                break;
            }
            self.files.remove(&path);
            forgotten += 1;
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, ms: i64) -> TakenFile {
        TakenFile { path: PathBuf::from(name), modified_ms: ms }
    }

    #[test]
    fn forgets_files_older_than_the_newest_minus_the_max_age_and_skips_late_ones() {
        let mut seen = SeenFiles::new(1_000);
        assert!(seen.is_new(Path::new("old"), i64::MIN + 1), "before the first purge every file is new");
        for f in [file("a", 0), file("b", 500), file("c", 1_200)] {
            seen.add(&f);
        }
        assert_eq!(seen.purge(), 1, "a (0) < 1200 - 1000");
        assert!(!seen.contains(Path::new("a")) && seen.contains(Path::new("b")));
        assert!(!seen.is_new(Path::new("a"), 0), "a forgotten file is still not new: it is too old");
        assert!(!seen.is_new(Path::new("late"), 199), "a file older than the threshold is skipped");
        assert!(seen.is_new(Path::new("late"), 200));
        assert!(!seen.is_new(Path::new("b"), 500), "remembered");
    }

    #[test]
    fn a_snapshot_restores_the_same_state_and_the_threshold_never_moves_back() {
        let mut seen = SeenFiles::new(1_000);
        for f in [file("a", 0), file("b", 5_000)] {
            seen.add(&f);
        }
        seen.purge();
        let snapshot = seen.snapshot();
        assert_eq!(
            snapshot,
            SeenFilesSnapshot { latest_ms: 5_000, last_purge_ms: 4_000, files: vec![file("b", 5_000)] }
        );
        let wider = SeenFiles::from_snapshot(10_000, snapshot.clone());
        assert!(!wider.is_new(Path::new("a"), 0), "a forgotten file stays forgotten under a longer max age");
        let restored = SeenFiles::from_snapshot(1_000, snapshot.clone());
        assert_eq!(restored.snapshot(), snapshot);
    }
}
