//! The file source: a directory of JSON-lines, CSV or Parquet files (optionally gzipped), read as
//! new files appear, as Spark's `FileStreamSource` reads them.
//!
//! New files are taken in order of modification time, then name; names starting with `.` or `_`
//! are ignored (temporary and metadata files). The files taken by batch `N` are recorded in
//! `sources/<name>/N` before `offsets/N` is written, so the offset is just the number of files
//! taken so far and a replayed batch reads exactly the same files.
//!
//! What the source keeps is bounded, as in Spark: it remembers only the files within the max file
//! age of the newest one it took ([`SeenFiles`]), every [`COMPACT_INTERVAL`] log entries it writes
//! what it remembers to `sources/<name>/N.compact` (Spark's `FileStreamSourceLog` compaction),
//! from which a restart resumes instead of reading every entry ever written, and the entries
//! before it are purged with the offset and commit logs. A poll lists the directory but looks at
//! (stats) only the names it does not remember.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::seen_files::{SeenFiles, SeenFilesSnapshot, TakenFile};
use super::{Source, SourceData};
use crate::checkpoint::log::COMPACT_SUFFIX;
use crate::checkpoint::{BatchLog, CheckpointLocation};
use crate::format::decode::{decode_file, DecodeOptions};
use crate::format::Format;
use crate::{Result, SluiceError};

/// Log entries written between two compacted entries (Spark's
/// `spark.sql.streaming.fileSource.log.compactInterval`, 10).
pub const COMPACT_INTERVAL: u64 = 10;

/// Options of a file source (`WITH (...)` keys in brackets).
#[derive(Debug, Clone)]
pub struct FileSourceOptions {
    /// The directory to watch (`path`).
    pub dir: PathBuf,
    /// File format (`format`).
    pub format: Format,
    /// At most this many new files per batch (`max_files_per_trigger`); `None`: all.
    pub max_files_per_trigger: Option<usize>,
    /// Files modified more than this long before the newest file taken are forgotten and, if not
    /// taken yet, skipped (`max_file_age`, Spark's `maxFileAge`), in ms; default
    /// [`super::seen_files::DEFAULT_MAX_FILE_AGE_MS`] (7 days).
    pub max_file_age_ms: i64,
    /// What to do with a file once a committed batch has read it (`clean_source`).
    pub clean_source: CleanSource,
    /// Decoding options (`bad_data`, `header`).
    pub decode: DecodeOptions,
}

/// What the source does with a file once a committed batch has read it (`clean_source`, Spark's
/// `cleanSource`), which keeps the directory, and so each poll's listing, small.
///
/// As in Spark, cleaning happens after the batch's commit, and a failure is logged, not fatal;
/// a file whose batch committed just before the query stopped may be left in place, and is
/// not read again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CleanSource {
    /// Leave the file (`off`, the default).
    #[default]
    Off,
    /// Delete the file (`delete`).
    Delete,
    /// Move the file into this directory, keeping its name (`archive`, with `source_archive_dir`);
    /// a file of the same name archived earlier is replaced.
    Archive(PathBuf),
}

/// The entry of `sources/<name>/N`: the files batch `N` took, after the first `start` files.
#[derive(Debug, Serialize, Deserialize)]
struct FileLogEntry {
    start: u64,
    files: Vec<TakenFile>,
}

/// The entry of `sources/<name>/N.compact`: what the entries through batch `N` add up to.
#[derive(Debug, Serialize, Deserialize)]
struct FileLogCompact {
    /// Number of files taken through batch `N` (the offset after it).
    end: u64,
    /// The files still remembered.
    #[serde(flatten)]
    seen: SeenFilesSnapshot,
}

/// A directory of files as a stream.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    schema: SchemaRef,
    options: FileSourceOptions,
    /// Number of files taken so far: the offset after the last planned batch.
    end: u64,
    /// The files of the batches not committed yet, by start offset: the ranges `read` may get.
    uncommitted: BTreeMap<u64, Vec<TakenFile>>,
    seen: SeenFiles,
    /// Log entries written since the last compacted one.
    since_compact: u64,
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
        Ok(Self {
            name: name.to_string(),
            schema,
            seen: SeenFiles::new(options.max_file_age_ms),
            options,
            end: 0,
            uncommitted: BTreeMap::new(),
            since_compact: 0,
            frozen: None,
        })
    }

    fn log(&self, location: &CheckpointLocation) -> BatchLog {
        BatchLog::new(location.clone(), &format!("sources/{}", self.name))
    }

    /// Records `files` as the batch starting at offset `start`.
    fn take(&mut self, start: u64, files: Vec<TakenFile>) {
        for file in &files {
            self.seen.add(file);
        }
        self.seen.purge();
        self.end = start + files.len() as u64;
        self.uncommitted.insert(start, files);
    }

    /// Deletes or archives the files of committed batches, as `clean_source` says.
    fn clean(&self, files: impl Iterator<Item = TakenFile>) {
        for file in files {
            let result = match &self.options.clean_source {
                CleanSource::Off => return,
                CleanSource::Delete => std::fs::remove_file(&file.path),
                CleanSource::Archive(dir) => std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::rename(&file.path, dir.join(file.path.file_name().unwrap_or_default()))),
            };
            if let Err(e) = result.or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
                tracing::warn!(source = %self.name, file = %file.path.display(), "clean_source failed: {e}");
            }
        }
    }

    /// New files, in modification time then name order: names not remembered, not hidden, of
    /// regular files no older than the max-age threshold. Only such names are stat'ed.
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
            let path = entry.path();
            if self.seen.contains(&path) || self.frozen.as_ref().is_some_and(|f| !f.contains(&path)) {
                continue;
            }
            // The type comes with the listing on most file systems; symbolic links are skipped.
            if !entry.file_type().map_err(err)?.is_file() {
                continue;
            }
            let meta = entry.metadata().map_err(err)?;
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if self.seen.is_new(&path, modified_ms) {
                files.push(TakenFile { path, modified_ms });
            }
        }
        files.sort_by(|a, b| (a.modified_ms, &a.path).cmp(&(b.modified_ms, &b.path)));
        Ok(files)
    }

    /// Restores what the latest compacted entry through batch `through` records; its id, `None`
    /// without one. A torn newest compacted entry is passed over for the one before it (see
    /// [`BatchLog::read_compact`]).
    async fn restore_compact(&mut self, log: &BatchLog, compacts: &[u64], through: u64) -> Result<Option<u64>> {
        let newest = compacts.last().copied();
        for id in compacts.iter().rev().copied().filter(|id| *id <= through) {
            if let Some(compact) = log.read_compact::<FileLogCompact>(id, Some(id) == newest).await? {
                self.end = compact.end;
                self.seen = SeenFiles::from_snapshot(self.options.max_file_age_ms, compact.seen);
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

fn as_index(offset: &Value) -> Result<u64> {
    offset.as_u64().ok_or_else(|| SluiceError::Checkpoint {
        location: "offsets".into(),
        message: format!("file source offset {offset} is not a file count"),
    })
}

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    /// `FileStreamSource[file:/dir]`, as Spark.
    fn description(&self) -> String {
        format!("FileStreamSource[file:{}]", self.options.dir.display())
    }

    fn initial_offset(&self) -> Value {
        Value::from(0u64)
    }

    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        self.end = 0;
        self.uncommitted.clear();
        self.seen = SeenFiles::new(self.options.max_file_age_ms);
        self.since_compact = 0;
        let Some(through) = through_batch else { return Ok(()) };
        let log = self.log(location);
        let entries = log.entries().await?;
        // Entries past `through` were written for a batch that crashed before its offsets were
        // logged; it will be planned again, perhaps with other files or none.
        for id in entries.deltas.iter().filter(|id| **id > through) {
            location.delete(&format!("sources/{}/{id}", self.name)).await?;
        }
        let base = self.restore_compact(&log, &entries.compacts, through).await?;
        // The entry (or compaction) read before the current one, to name where one is missing.
        let mut previous = base.map(|b| format!("{b}{COMPACT_SUFFIX}"));
        for id in entries.deltas.into_iter().filter(|id| base.is_none_or(|b| *id > b) && *id <= through) {
            let entry: FileLogEntry = log.read_listed(id).await?;
            if entry.start != self.end {
                let after =
                    previous.map_or_else(|| "the log's start".to_string(), |p| format!("sources/{}/{p}", self.name));
                return Err(location.error(
                    &format!("sources/{}/{id}", self.name),
                    format!(
                        "this entry of the file log follows {} files, but the entries before it record {}: an entry \
                         between {after} and this one is missing or damaged; restore the checkpoint's sources/{} \
                         directory, or start the query with a new checkpoint location",
                        entry.start, self.end, self.name
                    ),
                ));
            }
            self.take(entry.start, entry.files);
            self.since_compact += 1;
            previous = Some(id.to_string());
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
        if start != self.end {
            return Err(location.error(
                &format!("sources/{}", self.name),
                format!("offset {start} does not follow the {} files recorded", self.end),
            ));
        }
        let mut files = self.new_files()?;
        if let Some(max) = self.options.max_files_per_trigger {
            files.truncate(max);
        }
        if files.is_empty() {
            return Ok(Value::from(start));
        }
        let entry = FileLogEntry { start, files };
        self.log(location).write(batch_id, &entry).await?;
        self.take(start, entry.files);
        self.since_compact += 1;
        Ok(Value::from(self.end))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (as_index(start)?, as_index(end)?);
        let mut files = Vec::new();
        let mut at = start;
        while at < end {
            let Some(batch) = self.uncommitted.get(&at).filter(|b| !b.is_empty()) else { break };
            files.extend(batch.iter().cloned());
            at += batch.len() as u64;
        }
        if at != end {
            return Err(SluiceError::Source {
                source_name: self.name.clone(),
                message: format!("offsets {start}..{end} name files that were never recorded or already committed"),
            });
        }
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
        for (task, file) in tasks.into_iter().zip(&files) {
            let decoded = task.await.map_err(|e| SluiceError::Source {
                source_name: self.name.clone(),
                message: format!("decoding {} failed: {e}", file.path.display()),
            })??;
            data.batches.extend(decoded.batches);
            data.dropped_records += decoded.dropped;
        }
        Ok(data)
    }

    async fn commit(&mut self, location: &CheckpointLocation, batch_id: u64, end: &Value) -> Result<()> {
        let end = as_index(end)?;
        let (committed, uncommitted): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.uncommitted)
            .into_iter()
            .partition(|(start, files)| start + files.len() as u64 <= end);
        self.uncommitted = uncommitted;
        self.clean(committed.into_values().flatten());
        if self.since_compact >= COMPACT_INTERVAL {
            let compact = FileLogCompact { end: self.end, seen: self.seen.snapshot() };
            self.log(location).write_compact(batch_id, &compact).await?;
            self.since_compact = 0;
        }
        Ok(())
    }

    async fn stale_before(&mut self, location: &CheckpointLocation, keep_from: u64) -> Result<Vec<String>> {
        self.log(location).stale_compacted_before(keep_from).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn source(dir: &std::path::Path) -> FileSource {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let options = FileSourceOptions {
            dir: dir.to_path_buf(),
            format: Format::Json,
            max_files_per_trigger: Some(1),
            max_file_age_ms: super::super::seen_files::DEFAULT_MAX_FILE_AGE_MS,
            clean_source: CleanSource::Off,
            decode: DecodeOptions::default(),
        };
        FileSource::try_new("s", schema, options).unwrap()
    }

    fn write(dir: &std::path::Path, i: u64) {
        let path = dir.join(format!("{i:03}.json"));
        std::fs::write(&path, format!("{{\"v\": {i}}}\n")).unwrap();
        let modified = SystemTime::now() - Duration::from_secs(3600) + Duration::from_secs(i);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
    }

    /// Plans, reads and commits batches until the source has nothing new; the rows read.
    async fn drain(source: &mut FileSource, location: &CheckpointLocation, batch: &mut u64) -> usize {
        let mut rows = 0;
        loop {
            let start = Value::from(source.end);
            let end = source.plan_batch(location, *batch, &start).await.unwrap();
            if end == start {
                return rows;
            }
            let data = source.read(&start, &end).await.unwrap();
            rows += data.batches.iter().map(|b| b.num_rows()).sum::<usize>();
            source.commit(location, *batch, &end).await.unwrap();
            *batch += 1;
        }
    }

    #[tokio::test]
    async fn a_restart_resumes_from_the_compacted_entry_and_replays_an_uncommitted_batch() {
        let dir = tempfile::tempdir().unwrap();
        let location = CheckpointLocation::open("memory://").unwrap();
        for i in 0..13 {
            write(dir.path(), i);
        }
        let mut first = source(dir.path());
        let mut batch = 0;
        assert_eq!(drain(&mut first, &location, &mut batch).await, 13);
        let log = first.log(&location);
        assert_eq!(log.entries().await.unwrap().compacts, vec![9]);
        assert!(first.uncommitted.is_empty(), "committed batches are not kept");

        // Batch 13 is planned (its entry written) but not committed; its files are read again.
        write(dir.path(), 13);
        let end = first.plan_batch(&location, 13, &Value::from(13u64)).await.unwrap();
        let mut restarted = source(dir.path());
        restarted.restore(&location, Some(13)).await.unwrap();
        assert_eq!((restarted.end, restarted.since_compact, restarted.seen.snapshot().files.len()), (14, 4, 14));
        let data = restarted.read(&Value::from(13u64), &end).await.unwrap();
        assert_eq!(data.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let err = restarted.read(&Value::from(0u64), &Value::from(1u64)).await.unwrap_err().to_string();
        assert!(err.contains("already committed"), "{err}");
    }

    #[tokio::test]
    async fn a_torn_newest_compacted_entry_is_passed_over_for_the_one_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let location = CheckpointLocation::open("memory://").unwrap();
        for i in 0..23 {
            write(dir.path(), i);
        }
        let mut first = source(dir.path());
        let mut batch = 0;
        assert_eq!(drain(&mut first, &location, &mut batch).await, 23);
        location.delete_all(first.stale_before(&location, batch).await.unwrap()).await.unwrap();
        let log = first.log(&location);
        assert_eq!(log.entries().await.unwrap().compacts, vec![9, 19]);

        let mut whole = source(dir.path());
        whole.restore(&location, Some(22)).await.unwrap();
        location.put("sources/s/19.compact", "{\"end\": 2".into()).await.unwrap();
        let mut torn = source(dir.path());
        torn.restore(&location, Some(22)).await.unwrap();
        assert_eq!((torn.end, torn.seen.snapshot()), (whole.end, whole.seen.snapshot()));
        assert_eq!((whole.since_compact, torn.since_compact), (3, 13), "entries 10 to 22 read again");
        assert_eq!(log.entries().await.unwrap().compacts, vec![9], "the torn file is gone");

        // The next commit compacts again; nothing is read twice.
        write(dir.path(), 23);
        assert_eq!(drain(&mut torn, &location, &mut batch).await, 1);
        assert_eq!(log.entries().await.unwrap().compacts, vec![9, 23]);
    }

    #[tokio::test]
    async fn restore_deletes_an_entry_written_for_a_batch_whose_offsets_were_never_logged() {
        let dir = tempfile::tempdir().unwrap();
        let location = CheckpointLocation::open("memory://").unwrap();
        write(dir.path(), 0);
        write(dir.path(), 1);
        let mut first = source(dir.path());
        let mut batch = 0;
        first.plan_batch(&location, 0, &Value::from(0u64)).await.unwrap();
        first.commit(&location, 0, &Value::from(1u64)).await.unwrap();
        // Batch 1 takes file 1, then the process dies before `offsets/1`; file 1 is deleted.
        first.plan_batch(&location, 1, &Value::from(1u64)).await.unwrap();
        std::fs::remove_file(dir.path().join("001.json")).unwrap();

        let mut restarted = source(dir.path());
        restarted.restore(&location, Some(0)).await.unwrap();
        assert_eq!(restarted.log(&location).batch_ids().await.unwrap(), vec![0]);
        batch += 1;
        assert_eq!(drain(&mut restarted, &location, &mut batch).await, 0);
        // A later restart through batch 1 (run for another source's data) finds no stale entry.
        restarted.restore(&location, Some(1)).await.unwrap();
        assert_eq!(restarted.end, 1);
    }

    /// The cost of one poll (planning a batch) as the number of files already read grows: a
    /// poll lists the directory but stats only the names the source does not remember, so its
    /// cost is the listing plus the new files, not a stat of every file ever read. For
    /// comparison, each line also times listing and stat'ing every entry, which is what a poll
    /// did before. A measurement, not a test (it was `benches/file_source_poll.rs`):
    /// `cargo test --release --lib file_source_poll_cost -- --ignored --nocapture`.
    #[tokio::test]
    #[ignore = "a measurement: run it by name with --ignored --nocapture"]
    async fn file_source_poll_cost() {
        use std::time::Instant;

        const POLLS: usize = 50;
        fn write_at(dir: &std::path::Path, name: &str, modified: SystemTime) {
            let path = dir.join(name);
            std::fs::write(&path, "{\"v\": 1}\n").unwrap();
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(modified).unwrap();
        }
        fn median(mut times: Vec<Duration>) -> Duration {
            times.sort();
            times[times.len() / 2]
        }

        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        println!("files already read | poll, nothing new | poll, one new file | list + stat every entry");
        for read in [10usize, 1_000, 10_000] {
            let dir = tempfile::tempdir().unwrap();
            let base = SystemTime::now() - Duration::from_secs(3600);
            for i in 0..read {
                write_at(dir.path(), &format!("f{i:06}.json"), base + Duration::from_millis(i as u64));
            }
            let options = FileSourceOptions {
                dir: dir.path().to_path_buf(),
                format: Format::Json,
                max_files_per_trigger: None,
                max_file_age_ms: super::super::seen_files::DEFAULT_MAX_FILE_AGE_MS,
                clean_source: CleanSource::Off,
                decode: DecodeOptions::default(),
            };
            let mut source = FileSource::try_new("events", schema.clone(), options).unwrap();
            let location = CheckpointLocation::open("memory://").unwrap();
            let mut batch = 0u64;
            let mut end = Value::from(0u64);
            // Each poll: an optional new file, then the timed planning, then the commit.
            let mut times = [Vec::new(), Vec::new()];
            for (round, new_file) in std::iter::once(false).chain([false; POLLS]).chain([true; POLLS]).enumerate() {
                if new_file {
                    write_at(dir.path(), &format!("new{batch:06}.json"), SystemTime::now());
                }
                let started = Instant::now();
                let next = source.plan_batch(&location, batch, &end).await.unwrap();
                let took = started.elapsed();
                source.commit(&location, batch, &next).await.unwrap();
                batch += 1;
                end = next;
                // The first poll takes the `read` files and is not counted.
                if round > 0 {
                    times[usize::from(new_file)].push(took);
                }
            }
            let [idle, one_new] = times.map(median);
            let stat_all = median(
                (0..POLLS)
                    .map(|_| {
                        let started = Instant::now();
                        for entry in std::fs::read_dir(dir.path()).unwrap() {
                            std::hint::black_box(entry.unwrap().metadata().unwrap());
                        }
                        started.elapsed()
                    })
                    .collect(),
            );
            println!("{read:>18} | {idle:>17.1?} | {one_new:>19.1?} | {stat_all:>23.1?}");
        }
    }
}
