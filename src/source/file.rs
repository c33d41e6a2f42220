//! The file source: a directory of JSON-lines, CSV or Parquet files (optionally gzipped), read as
//! new files appear, as Spark's `FileStreamSource` reads them.
//!
//! New files are taken in order of modification time, then name; names starting with `.` or `_`
//! are ignored (temporary and metadata files). The files taken by batch `N` are recorded in
//! `sources/<name>/N` before `offsets/N` is written, so the offset is just the number of files
//! taken so far and a replayed batch reads exactly the same files.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Source, SourceData};
use crate::checkpoint::{BatchLog, CheckpointLocation};
use crate::format::decode::{decode_file, DecodeOptions};
use crate::format::Format;
use crate::{Result, SluiceError};

/// Options of a file source (`WITH (...)` keys in brackets).
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// The directory to watch (`path`).
    pub dir: PathBuf,
    /// File format (`format`).
    pub format: Format,
    /// At most this many new files per batch (`max_files_per_trigger`); `None`: all.
    pub max_files_per_trigger: Option<usize>,
    /// Decoding options (`bad_data`, `header`).
    pub decode: DecodeOptions,
}

/// One file taken by the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TakenFile {
    path: PathBuf,
    modified_ms: i64,
}

/// The entry of `sources/<name>/N`: the files batch `N` took, after the first `start` files.
#[derive(Debug, Serialize, Deserialize)]
struct FileLogEntry {
    start: u64,
    files: Vec<TakenFile>,
}

/// A directory of files as a stream.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    schema: SchemaRef,
    options: FileSourceOptions,
    /// Every file taken so far, in order; the offset of a file is its index.
    taken: Vec<TakenFile>,
    seen: HashSet<PathBuf>,
    /// Under `available-now`: the only files later batches may take.
    frozen: Option<HashSet<PathBuf>>,
}

impl FileSource {
    /// A source `name` of `schema` reading `options.dir`.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when the directory does not exist.
    pub fn try_new(name: &str, schema: SchemaRef, options: FileSourceOptions) -> Result<Self> {
        if !options.dir.is_dir() {
            return Err(SluiceError::Source {
                source_name: name.to_string(),
                message: format!(
                    "directory '{}' does not exist (relative paths are resolved from the working directory); create it or fix the path option",
                    options.dir.display()
                ),
            });
        }
        Ok(Self { name: name.to_string(), schema, options, taken: Vec::new(), seen: HashSet::new(), frozen: None })
    }

    fn log(&self, location: &CheckpointLocation) -> BatchLog {
        BatchLog::new(location.clone(), &format!("sources/{}", self.name))
    }

    /// Files not taken yet, in modification time then name order.
    fn new_files(&self) -> Result<Vec<TakenFile>> {
        let err = |e: std::io::Error| SluiceError::io(&self.options.dir, e);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.options.dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let meta = entry.metadata().map_err(err)?;
            let path = entry.path();
            if !meta.is_file() || self.seen.contains(&path) {
                continue;
            }
            if self.frozen.as_ref().is_some_and(|f| !f.contains(&path)) {
                continue;
            }
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            files.push(TakenFile { path, modified_ms });
        }
        files.sort_by(|a, b| (a.modified_ms, &a.path).cmp(&(b.modified_ms, &b.path)));
        Ok(files)
    }
}

fn as_index(offset: &Value) -> Result<usize> {
    offset.as_u64().map(|o| o as usize).ok_or_else(|| SluiceError::Checkpoint {
        location: "offsets".into(),
        message: format!("file source offset {offset} is not a file count"),
    })
}

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn initial_offset(&self) -> Value {
        Value::from(0u64)
    }

    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        self.taken.clear();
        self.seen.clear();
        let Some(through) = through_batch else { return Ok(()) };
        let log = self.log(location);
        for id in log.batch_ids().await?.into_iter().filter(|id| *id <= through) {
            let entry: FileLogEntry = log.read_listed(id).await?;
            if entry.start as usize != self.taken.len() {
                return Err(location.error(
                    &format!("sources/{}/{id}", self.name),
                    format!("file log expects {} earlier files but {} were recorded", entry.start, self.taken.len()),
                ));
            }
            for file in entry.files {
                self.seen.insert(file.path.clone());
                self.taken.push(file);
            }
        }
        Ok(())
    }

    fn read_all_available(&mut self) {
        self.options.max_files_per_trigger = None;
    }

    async fn freeze_available(&mut self) -> Result<()> {
        self.frozen = Some(self.new_files()?.into_iter().map(|f| f.path).collect());
        Ok(())
    }

    async fn plan_batch(&mut self, location: &CheckpointLocation, batch_id: u64, start: &Value) -> Result<Value> {
        let start = as_index(start)?;
        if start != self.taken.len() {
            return Err(location.error(
                &format!("sources/{}", self.name),
                format!("offset {start} does not follow the {} files recorded", self.taken.len()),
            ));
        }
        let mut files = self.new_files()?;
        if let Some(max) = self.options.max_files_per_trigger {
            files.truncate(max);
        }
        if files.is_empty() {
            return Ok(Value::from(start as u64));
        }
        let entry = FileLogEntry { start: start as u64, files: files.clone() };
        self.log(location).write(batch_id, &entry).await?;
        for file in files {
            self.seen.insert(file.path.clone());
            self.taken.push(file);
        }
        Ok(Value::from(self.taken.len() as u64))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (as_index(start)?, as_index(end)?);
        let files = self.taken.get(start..end).ok_or_else(|| SluiceError::Source {
            source_name: self.name.clone(),
            message: format!("offsets {start}..{end} name files that were never recorded"),
        })?;
        // Files decode in parallel; their rows keep the files' order.
        let tasks: Vec<_> = files
            .iter()
            .map(|file| {
                let (path, format, schema, options) =
                    (file.path.clone(), self.options.format, self.schema.clone(), self.options.decode.clone());
                tokio::task::spawn_blocking(move || decode_file(&path, format, &schema, &options))
            })
            .collect();
        let mut data = SourceData::default();
        for (task, file) in tasks.into_iter().zip(files) {
            let decoded = task.await.map_err(|e| SluiceError::Source {
                source_name: self.name.clone(),
                message: format!("decoding {} failed: {e}", file.path.display()),
            })??;
            data.batches.extend(decoded.batches);
            data.dropped_records += decoded.dropped;
        }
        Ok(data)
    }
}
