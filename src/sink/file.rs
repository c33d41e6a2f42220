//! The file sink: each micro-batch's rows become one file in a directory, exactly once per batch
//! id.
//!
//! Modelled on Spark's file sink and its `_spark_metadata` log: a batch's output counts only once
//! its manifest `_sluice_manifest/<batch id>` (listing the batch's files) exists, and files are
//! only ever made visible by renaming a finished hidden file into place. Unlike Spark, which
//! skips a batch id it has already logged, sluice deletes and rewrites a replayed batch's output:
//! the replay is the engine's decision (DESIGN §1 step 4), and the sink obeys it.
//!
//! A batch's cost does not grow with the output directory: the sink removes an earlier attempt's
//! files by name (the manifest's list and the names it gives files) and lists the directory only
//! for a batch that may be such a re-attempt under other names, i.e. the first batch it writes
//! after it is created (the replay after a restart) or a batch id it wrote before.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::timezone::Tz;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::Sink;
use crate::format::encode::encode;
use crate::format::Format;
use crate::{Result, SluiceError};

/// Name of the manifest directory inside the output directory. It starts with `_` so that Spark
/// and sluice's file source, which skip `_` and `.` names, do not read it as data.
pub const MANIFEST_DIR: &str = "_sluice_manifest";

/// Writes each batch to `dir/part-<batch id, 8 digits>-<n>.<ext>`, atomically and exactly once
/// per batch id.
#[derive(Debug)]
pub struct FileSink {
    name: String,
    dir: PathBuf,
    format: Format,
    time_zone: Option<Tz>,
    /// The highest batch id this sink has written since it was created.
    last_written: Option<u64>,
}

impl FileSink {
    /// A sink named `name` (used in error messages) writing `format` files into `dir`.
    ///
    /// # Errors
    /// [`SluiceError::Io`] when `dir` or its manifest directory cannot be created.
    pub fn new(name: &str, dir: PathBuf, format: Format) -> Result<FileSink> {
        let manifests = dir.join(MANIFEST_DIR);
        fs::create_dir_all(&manifests).map_err(|e| SluiceError::io(&manifests, e))?;
        Ok(FileSink { name: name.to_string(), dir, format, time_zone: None, last_written: None })
    }

    /// Writes timestamps in `time_zone` (Spark's `spark.sql.session.timeZone`: an IANA name such
    /// as `Europe/Paris`, or an offset such as `+02:00`) instead of UTC, as Spark's JSON and CSV
    /// writers do.
    ///
    /// # Errors
    /// [`SluiceError::Arrow`] when `time_zone` is not a known time zone.
    pub fn with_time_zone(mut self, time_zone: Option<&str>) -> Result<FileSink> {
        self.time_zone = time_zone.map(str::parse::<Tz>).transpose()?;
        Ok(self)
    }

    /// Path of the manifest of `batch_id`.
    pub fn manifest_path(&self, batch_id: u64) -> PathBuf {
        self.dir.join(MANIFEST_DIR).join(batch_id.to_string())
    }

    /// Name of the `n`-th data file of `batch_id`, e.g. `part-00000003-0.json`.
    pub fn part_file_name(&self, batch_id: u64, n: usize) -> String {
        format!("{}{n}.{}", part_prefix(batch_id), self.format.extension())
    }

    /// Removes whatever an earlier attempt at `batch_id` wrote: the manifest first (so no
    /// manifest ever lists a deleted file), then the files it lists, then the data and hidden
    /// temporary file this sink names for the id (an attempt that crashed before its manifest).
    /// When the batch may re-attempt one of an earlier run or of this sink (see the module
    /// documentation), it also lists the directory for any `part-<id>-*` file and hidden
    /// temporary file of this id, written under another format or naming.
    fn remove_earlier_attempt(&self, batch_id: u64) -> Result<()> {
        let manifest = self.manifest_path(batch_id);
        let listed = match fs::read(&manifest) {
            Ok(bytes) => {
                let listed = parse_manifest(&bytes).map_err(|message| SluiceError::Sink {
                    sink: self.name.clone(),
                    message: format!("unreadable manifest {}: {message}", manifest.display()),
                })?;
                remove_if_exists(&manifest)?;
                sync_dir(&self.dir.join(MANIFEST_DIR))?;
                listed
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(SluiceError::io(&manifest, e)),
        };
        for file in &listed {
            // Only plain names this sink writes; never follow a path out of the directory.
            if Path::new(file).file_name() == Some(file.as_ref()) {
                remove_if_exists(&self.dir.join(file))?;
            }
        }
        let own = self.part_file_name(batch_id, 0);
        remove_if_exists(&self.dir.join(&own))?;
        remove_if_exists(&self.dir.join(format!(".{own}.tmp")))?;
        if self.last_written.is_some_and(|last| batch_id > last) {
            return Ok(());
        }
        let prefix = part_prefix(batch_id);
        let hidden = format!(".{prefix}");
        let entries = fs::read_dir(&self.dir).map_err(|e| SluiceError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| SluiceError::io(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) || name.starts_with(&hidden) {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }
}

impl Sink for FileSink {
    /// `FileSink[/dir]`, as Spark.
    fn description(&self) -> String {
        format!("FileSink[{}]", self.dir.display())
    }

    /// Writes the batch's rows (if any) as one data file, then its manifest.
    ///
    /// A batch with no rows writes no data file, only a manifest with an empty file list.
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        self.remove_earlier_attempt(batch_id)?;

        let mut files = Vec::new();
        if batches.iter().any(|b| b.num_rows() > 0) {
            let bytes = encode(schema, batches, self.format, self.time_zone.as_ref()).map_err(|e| {
                SluiceError::Sink { sink: self.name.clone(), message: format!("cannot encode batch {batch_id}: {e}") }
            })?;
            let name = self.part_file_name(batch_id, 0);
            write_atomically(&self.dir, &name, &bytes)?;
            files.push(name);
        }

        let manifest = serde_json::json!({ "batch_id": batch_id, "files": files });
        write_atomically(&self.dir.join(MANIFEST_DIR), &batch_id.to_string(), manifest.to_string().as_bytes())?;
        self.last_written = Some(self.last_written.map_or(batch_id, |last| last.max(batch_id)));
        Ok(())
    }

    /// Encodes a null row of each column in the sink's format (see [`super::check_columns`]).
    fn check_schema(&self, schema: &SchemaRef) -> Result<()> {
        super::check_columns(&self.name, self.format.extension(), schema, |schema, batch| {
            encode(schema, std::slice::from_ref(batch), self.format, self.time_zone.as_ref()).map(|_| ())
        })
    }
}

/// `part-<batch id, 8 digits>-`: the start of every data file name of `batch_id`. The trailing
/// `-` keeps batch 1's prefix from matching batch 10's files.
fn part_prefix(batch_id: u64) -> String {
    format!("part-{batch_id:08}-")
}

/// The `files` of a manifest.
fn parse_manifest(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let files = value.get("files").and_then(|f| f.as_array()).ok_or("no \"files\" array")?;
    files
        .iter()
        .map(|f| f.as_str().map(str::to_string).ok_or_else(|| "a file name is not a string".to_string()))
        .collect()
}

/// Writes `dir/name` so that it appears complete or not at all: the bytes go to the hidden file
/// `dir/.name.tmp` (skipped by readers of `dir`), which is fsynced and renamed into place, and
/// the rename is made durable by fsyncing `dir`.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| SluiceError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| SluiceError::io(&tmp, e))?;
    file.sync_all().map_err(|e| SluiceError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &target).map_err(|e| SluiceError::io(&target, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SluiceError::io(dir, e))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SluiceError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true), Field::new("cnt", DataType::Int64, false)]))
    }

    fn batch(keys: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from_iter_values(0..keys.len() as i64)),
            ],
        )
        .unwrap()
    }

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn manifest(sink: &FileSink, id: u64) -> serde_json::Value {
        serde_json::from_slice(&fs::read(sink.manifest_path(id)).unwrap()).unwrap()
    }

    #[test]
    fn writes_one_part_file_and_a_manifest_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut sink = FileSink::new("out", out.clone(), Format::Json).unwrap();
        sink.add_batch(3, &schema(), &[batch(&["a"]), batch(&["b"])]).unwrap();

        assert_eq!(names(&out), vec!["_sluice_manifest", "part-00000003-0.json"]);
        assert_eq!(
            fs::read_to_string(out.join("part-00000003-0.json")).unwrap(),
            "{\"key\":\"a\",\"cnt\":0}\n{\"key\":\"b\",\"cnt\":0}\n"
        );
        assert_eq!(names(&out.join(MANIFEST_DIR)), vec!["3"]);
        assert_eq!(manifest(&sink, 3), serde_json::json!({"batch_id": 3, "files": ["part-00000003-0.json"]}));
    }

    #[test]
    fn empty_batch_writes_only_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("out", dir.path().to_path_buf(), Format::Csv).unwrap();
        sink.add_batch(0, &schema(), &[]).unwrap();
        sink.add_batch(1, &schema(), &[batch(&[])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest"]);
        assert_eq!(manifest(&sink, 1), serde_json::json!({"batch_id": 1, "files": []}));
    }

    #[test]
    fn replayed_batch_replaces_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("out", dir.path().to_path_buf(), Format::Csv).unwrap();
        sink.add_batch(1, &schema(), &[batch(&["first"])]).unwrap();
        sink.add_batch(10, &schema(), &[batch(&["ten"])]).unwrap();
        // a crash after the data file of a replay of batch 1 was renamed, before its manifest:
        fs::write(dir.path().join("part-00000001-7.csv"), "stale").unwrap();
        fs::write(dir.path().join(".part-00000001-0.csv.tmp"), "partial").unwrap();

        sink.add_batch(1, &schema(), &[batch(&["second"])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-00000001-0.csv", "part-00000010-0.csv"]);
        assert_eq!(fs::read_to_string(dir.path().join("part-00000001-0.csv")).unwrap(), "key,cnt\nsecond,0\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("part-00000010-0.csv")).unwrap(),
            "key,cnt\nten,0\n",
            "other batches are untouched"
        );

        // a replay that now has no rows removes the earlier file
        sink.add_batch(1, &schema(), &[]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-00000010-0.csv"]);
        assert_eq!(manifest(&sink, 1), serde_json::json!({"batch_id": 1, "files": []}));
    }

    #[test]
    fn a_new_batch_does_not_list_the_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("out", dir.path().to_path_buf(), Format::Json).unwrap();
        sink.add_batch(0, &schema(), &[batch(&["a"])]).unwrap();
        // Only a listing finds these: a file of batch 1 under a name this sink does not give.
        fs::write(dir.path().join("part-00000001-9.json"), "foreign").unwrap();
        // Found by name: what an attempt at batch 1 that crashed before its manifest left.
        fs::write(dir.path().join("part-00000001-0.json"), "stale").unwrap();
        fs::write(dir.path().join(".part-00000001-0.json.tmp"), "partial").unwrap();

        sink.add_batch(1, &schema(), &[]).unwrap();
        assert_eq!(
            names(dir.path()),
            vec!["_sluice_manifest", "part-00000000-0.json", "part-00000001-9.json"],
            "batch 1 is new for this sink: its files are removed by name, the directory is not listed"
        );

        // A restarted sink's first batch may replay a crashed one: it lists the directory once.
        let mut restarted = FileSink::new("out", dir.path().to_path_buf(), Format::Json).unwrap();
        restarted.add_batch(1, &schema(), &[batch(&["b"])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-00000000-0.json", "part-00000001-0.json"]);
        // ...and so does a batch id this sink wrote before.
        fs::write(dir.path().join("part-00000001-9.json"), "foreign").unwrap();
        restarted.add_batch(1, &schema(), &[batch(&["c"])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-00000000-0.json", "part-00000001-0.json"]);
    }

    #[test]
    fn replay_deletes_files_listed_in_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("out", dir.path().to_path_buf(), Format::Json).unwrap();
        // an earlier version that named its files differently
        fs::write(dir.path().join("old-name.json"), "x").unwrap();
        fs::write(sink.manifest_path(2), r#"{"batch_id":2,"files":["old-name.json","../escape"]}"#).unwrap();
        sink.add_batch(2, &schema(), &[batch(&["a"])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-00000002-0.json"]);
    }

    #[test]
    fn large_batch_ids_and_parquet_extension() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("out", dir.path().to_path_buf(), Format::Parquet).unwrap();
        sink.add_batch(123_456_789, &schema(), &[batch(&["a"])]).unwrap();
        assert_eq!(names(dir.path()), vec!["_sluice_manifest", "part-123456789-0.parquet"]);
        assert_eq!(sink.part_file_name(5, 2), "part-00000005-2.parquet");
    }

    #[test]
    fn encode_errors_are_sink_errors_naming_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new("my_out", dir.path().to_path_buf(), Format::Json).unwrap();
        let wrong = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let err = sink.add_batch(0, &wrong, &[batch(&["a"])]).unwrap_err();
        assert!(matches!(&err, SluiceError::Sink { sink, .. } if sink == "my_out"), "{err}");
        assert_eq!(names(dir.path()), vec!["_sluice_manifest"], "nothing half-written");
    }
}
