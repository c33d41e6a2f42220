//! `sluice run --progress FILE`: every progress report as one line of JSON.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::listener::StreamingQueryListener;
use super::progress::QueryProgress;
use crate::{Result, SluiceError};

/// A listener appending each batch's [`QueryProgress`] to a file as a line of Spark's JSON
/// (`StreamingQueryProgress.json`); one instance may serve several queries.
#[derive(Debug)]
pub struct ProgressFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ProgressFile {
    /// Opens `path` for appending, creating it if needed.
    ///
    /// # Errors
    /// [`SluiceError::Io`] naming the file when it cannot be opened.
    pub fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| SluiceError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file) })
    }
}

impl StreamingQueryListener for ProgressFile {
    /// Writes the line in one call, so lines of queries sharing the file never interleave. A
    /// failed write is logged, not fatal: the query's results matter more than its reports.
    fn on_query_progress(&self, progress: &QueryProgress) {
        let mut line = serde_json::to_vec(progress).expect("progress serializes");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(file = %self.path.display(), "cannot write the progress report: {e}");
        }
    }
}
