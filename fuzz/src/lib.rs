//! What the fuzz targets share: the runtime, the scratch directory, and one function per target
//! that runs an input through sluice's public API and checks the property "an error or a result,
//! never a panic or a hang". A panic anywhere (also in a task DataFusion spawned) aborts through
//! libfuzzer-sys's panic hook and is a crash; an input that runs longer than libFuzzer's
//! `-timeout` is a hang. Each target file in `fuzz_targets/` is one call into this module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use sluice::format::decode::{decode_file, DecodeOptions, Decoded};
use sluice::format::{BadData, Format};
use sluice::{SluiceError, StreamContext};

/// The runtime every target runs its async work on: one worker thread, as in the tests.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime")
    })
}

/// A scratch directory of this process, `sluice-fuzz-*` in the system temporary directory. It
/// outlives the process (libFuzzer exits without dropping statics); it holds a few small files.
fn scratch() -> &'static Path {
    static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();
    SCRATCH.get_or_init(|| tempfile::Builder::new().prefix("sluice-fuzz-").tempdir().expect("scratch directory")).path()
}

/// The working directory made `dir` until this is dropped, so that the relative paths of a
/// fuzzed script land in the scratch directory while libFuzzer's own relative paths (corpus
/// directories) keep their meaning between runs.
struct InDir(PathBuf);

impl InDir {
    fn enter(dir: &Path) -> InDir {
        let previous = std::env::current_dir().expect("the working directory");
        std::env::set_current_dir(dir).expect("enter the scratch directory");
        InDir(previous)
    }
}

impl Drop for InDir {
    fn drop(&mut self) {
        std::env::set_current_dir(&self.0).expect("leave the scratch directory");
    }
}

/// `dir` emptied (created when missing).
fn fresh(dir: &Path) -> &Path {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("clear a scratch directory");
    }
    std::fs::create_dir_all(dir).expect("create a scratch directory");
    dir
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

/// The flat columns: every scalar type a declared column can have.
fn flat_fields() -> Vec<Field> {
    vec![
        Field::new("ts", ts(), false),
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Int64, true),
        Field::new("t", DataType::Int8, true),
        Field::new("i", DataType::Int32, true),
        Field::new("d", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
    ]
}

/// The flat columns plus nested ones: `address STRUCT<city STRING, geo STRUCT<lat DOUBLE, lon
/// DOUBLE>>, tags ARRAY<BIGINT>, m MAP<STRING, BIGINT>, at ARRAY<TIMESTAMP>`.
fn nested_schema() -> SchemaRef {
    let geo =
        Fields::from(vec![Field::new("lat", DataType::Float64, true), Field::new("lon", DataType::Float64, true)]);
    let address =
        Fields::from(vec![Field::new("city", DataType::Utf8, true), Field::new("geo", DataType::Struct(geo), true)]);
    let entries =
        Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Int64, true)]);
    let mut fields = flat_fields();
    fields.extend([
        Field::new("address", DataType::Struct(address), true),
        Field::new("tags", DataType::new_list(DataType::Int64, true), true),
        Field::new("m", DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false), true),
        Field::new("at", DataType::new_list(ts(), true), true),
    ]);
    Arc::new(Schema::new(fields))
}

/// Decodes `data` as a file of `format`. The first byte chooses the case: bit 0 the flat schema
/// (else the nested one; CSV refuses it as a whole), bit 1 no CSV header, bit 2 a `.gz` file
/// name (so the rest must be gzip), bits 3-5 the batch size (1-8 rows). The rest is the file.
///
/// Checked, besides "no panic": the file decodes under `bad_data = 'drop'` exactly when every
/// error under `'fail'` is a malformed record; a file that decodes under `'fail'` gives the same
/// rows under `'drop'` with none dropped; every batch has exactly the declared schema and the row
/// counts add up.
pub fn decode_case(format: Format, data: &[u8]) {
    let Some((&flags, file)) = data.split_first() else { return };
    let schema = if flags & 1 == 1 { Arc::new(Schema::new(flat_fields())) } else { nested_schema() };
    let extension = match format {
        Format::Json => "json",
        Format::Csv => "csv",
        Format::Parquet => "parquet",
    };
    let name = if flags & 4 == 4 { format!("input.{extension}.gz") } else { format!("input.{extension}") };
    let path = fresh(&scratch().join("decode")).join(name);
    std::fs::write(&path, file).expect("write the input file");
    // Bit 6 reads timestamp text without an offset in a session time zone with daylight saving.
    let options = |bad_data| DecodeOptions {
        bad_data,
        csv_header: flags & 2 == 0,
        batch_size: 1 + (flags as usize >> 3 & 7),
        time_zone: (flags & 64 != 0).then(|| "Europe/Paris".into()),
    };
    let fail = decode_file(&path, format, &schema, &options(BadData::Fail));
    let drop = decode_file(&path, format, &schema, &options(BadData::Drop));
    for decoded in [&fail, &drop].into_iter().flatten() {
        check_decoded(&schema, decoded);
    }
    match (&fail, &drop) {
        (Ok(fail), Ok(drop)) => {
            assert_eq!(fail.dropped, 0, "bad_data = 'fail' drops nothing");
            assert_eq!(fail.batches, drop.batches, "a file that decodes under 'fail' decodes alike under 'drop'");
            assert_eq!(drop.dropped, 0, "a file that decodes under 'fail' has nothing to drop");
        }
        (Err(SluiceError::MalformedRecord { .. }), Ok(drop)) => {
            assert!(drop.dropped > 0, "a malformed record is dropped")
        }
        (Err(SluiceError::MalformedRecord { line, message, .. }), Err(e)) => {
            panic!("'fail' found a malformed record (line {line}: {message}) but 'drop' failed: {e}")
        }
        (Ok(_), Err(e)) => panic!("decodes under 'fail' but not under 'drop': {e}"),
        (Err(_), Err(SluiceError::MalformedRecord { .. })) => panic!("'drop' reported a malformed record"),
        (Err(_), _) => {}
    }
}

fn check_decoded(schema: &SchemaRef, decoded: &Decoded) {
    let mut rows = 0;
    for batch in &decoded.batches {
        assert_eq!(batch.schema(), *schema, "every batch has exactly the declared schema");
        rows += batch.num_rows() as u64;
    }
    assert_eq!(rows, decoded.rows, "`rows` counts the rows of the batches");
}

// ---------------------------------------------------------------------------------------------
// SQL scripts

/// The input of the stream tables `events` and `other` that scripts may declare (relative paths
/// `events` and `other`, JSON lines).
const ROWS: &str = "{\"k\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\", \"v\": 1}\n\
                    {\"k\": \"b\", \"ts\": \"2024-01-01T00:00:12Z\", \"v\": 2}\n\
                    {\"k\": \"a\", \"ts\": \"2024-01-01T00:00:40Z\", \"v\": 3}\n";

/// Whether `script` may name a path outside the scratch directory (an absolute path, `..`, a
/// URL): such scripts are skipped, so that a fuzzed sink or `COPY` never writes elsewhere on the
/// machine.
fn escapes_scratch(script: &str) -> bool {
    ["'/", "\"/", "..", ":/"].iter().any(|p| script.contains(p))
}

/// Runs `data` as a SQL script (UTF-8; other bytes are skipped) through the whole front end —
/// parse, plan, checks — and starts at most three of its queries, each for at most two
/// micro-batches, over the three-row JSON files `events/0.json` and `other/0.json` in the
/// working directory, each query at its own file checkpoint.
pub fn sql_script(data: &[u8]) {
    let Ok(script) = std::str::from_utf8(data) else { return };
    if escapes_scratch(script) {
        return;
    }
    let dir = fresh(&scratch().join("sql")).to_path_buf();
    let _in_dir = InDir::enter(&dir);
    for table in ["events", "other"] {
        std::fs::create_dir(dir.join(table)).expect("input directory");
        std::fs::write(dir.join(table).join("0.json"), ROWS).expect("input file");
    }
    let _ = runtime().block_on(async {
        let mut ctx = StreamContext::new();
        let definitions = ctx.execute(script).await?;
        for (i, definition) in definitions.iter().take(3).enumerate() {
            let checkpoint = dir.join("_checkpoint").join(i.to_string());
            let mut query = ctx.start(definition, &checkpoint.display().to_string()).await?;
            query.run_next_batch().await?;
            query.run_next_batch().await?;
        }
        Ok::<_, SluiceError>(())
    });
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// A windowed aggregation and a deduplication over a JSON file source, each writing a JSON file
/// sink: between them they write every kind of checkpoint file (offsets, commits, metadata, the
/// file source's log, state deltas and snapshots, `state/operators.json`).
const CHECKPOINTED: &str = "
CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = '1');
CREATE TABLE windows WITH (connector = 'file', path = 'out/windows', format = 'json', output_mode = 'append');
CREATE TABLE unique_events WITH (connector = 'file', path = 'out/unique', format = 'json', output_mode = 'append');
INSERT INTO windows
SELECT window.start AS wstart, window.end AS wend, key, count(*) AS cnt, sum(value) AS total
FROM events GROUP BY window(ts, '10 seconds'), key;
INSERT INTO unique_events
SELECT key, ts, value FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY key, ts ORDER BY ts) AS rn FROM events) WHERE rn = 1;
";

/// Input files of [`CHECKPOINTED`], one per micro-batch (seconds after 2024-01-01T00:00:00Z).
const INPUT: [&[(&str, i64, i64)]; 5] = [
    &[("a", 1, 1), ("a", 5, 2), ("b", 12, 3)],
    &[("a", 8, 4), ("a", 25, 5), ("a", 1, 1)],
    &[("a", 3, 6), ("b", 14, 7), ("a", 30, 8)],
    &[("a", 4, 9), ("a", 6, 14), ("b", 19, 10), ("c", 15, 11), ("a", 31, 12)],
    &[("a", 45, 13)],
];

/// Batches a template run processes before it stops; a restart then has the rest to do.
const TEMPLATE_BATCHES: usize = 3;

/// Most micro-batches a restart may run (the remaining files plus no-data batches).
const RESTART_BATCHES: usize = 4;

/// Names a fuzzed file may have besides the files the template run wrote: files of batches that
/// never ran, and the operator list (in case the template did not write one).
const EXTRA_FILES: &[&str] = &[
    "checkpoint/0/offsets/3",
    "checkpoint/0/commits/3",
    "checkpoint/0/sources/events/3",
    "checkpoint/0/state/operators.json",
    "checkpoint/1/offsets/9",
    "checkpoint/0/state/0/0/9.snapshot",
];

/// A stopped query's whole working directory (input, output, checkpoints) and the names of its
/// checkpoint files, relative to it.
struct Template {
    dir: tempfile::TempDir,
    files: Vec<String>,
}

/// Starts every query of [`CHECKPOINTED`] in the working directory `dir` at `checkpoint/<i>` and
/// runs each for at most `batches` micro-batches.
async fn run_checkpointed(dir: &Path, batches: usize) -> sluice::Result<()> {
    let mut ctx = StreamContext::new();
    for (i, definition) in ctx.execute(CHECKPOINTED).await?.iter().enumerate() {
        let checkpoint = dir.join("checkpoint").join(i.to_string());
        let mut query = ctx.start(definition, &checkpoint.display().to_string()).await?;
        for _ in 0..batches {
            if !query.run_next_batch().await? {
                break;
            }
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a copy");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("read a directory");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read a directory") {
        let path = entry.expect("read a directory").path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).expect("under root").display().to_string());
        }
    }
}

/// The template, made on first use: the input files and [`TEMPLATE_BATCHES`] batches run in the
/// working directory `scratch/checkpoint`, then copied aside.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let work = work_dir();
        fresh(&work);
        let in_dir = InDir::enter(&work);
        std::fs::create_dir(work.join("in")).expect("input directory");
        for (i, rows) in INPUT.iter().enumerate() {
            let lines: String = rows
                .iter()
                .map(|(k, s, v)| format!("{{\"key\": \"{k}\", \"ts\": {}, \"value\": {v}}}\n", 1_704_067_200 + s))
                .collect();
            let path = work.join("in").join(format!("{i}.json"));
            std::fs::write(&path, lines).expect("input file");
            // Files are read in modification-time order: make it the name order.
            let time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i as u64);
            std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(time)).expect("file time");
        }
        runtime().block_on(run_checkpointed(&work, TEMPLATE_BATCHES)).expect("the template query runs");
        drop(in_dir);
        let dir = tempfile::Builder::new().prefix("sluice-fuzz-template-").tempdir().expect("template directory");
        copy_dir(&work, dir.path());
        let mut files = Vec::new();
        list_files(dir.path(), &dir.path().join("checkpoint"), &mut files);
        files.sort();
        Template { dir, files }
    })
}

fn work_dir() -> PathBuf {
    scratch().join("checkpoint")
}

/// The checkpoint files of the template run, each as a seed input of [`checkpoint_files`]:
/// `(file name, input bytes)`.
pub fn checkpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let template = template();
    template
        .files
        .iter()
        .map(|name| {
            let mut input = format!("{name}\n").into_bytes();
            input.extend(std::fs::read(template.dir.path().join(name)).expect("read a template file"));
            (name.clone(), input)
        })
        .collect()
}

/// Whether `name` is a file inside the checkpoint directory of one of the queries (so that a
/// fuzzed name, e.g. a batch id past `u64::MAX`, never reaches out of the scratch directory).
fn is_checkpoint_file(name: &str) -> bool {
    (name.starts_with("checkpoint/0/") || name.starts_with("checkpoint/1/"))
        && !name.ends_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
}

/// `data` is `<file name>\n<content>`: the checkpoint file of that name (relative to the
/// working directory, e.g. `checkpoint/0/offsets/2`, new or existing; a name that is not a file in
/// `checkpoint/0/` or `checkpoint/1/` picks one of the template's files or [`EXTRA_FILES`] by its
/// bytes) is written with `content` in a copy of the template, and the queries are restarted for
/// at most [`RESTART_BATCHES`] batches. A first line `-<name>` deletes the file instead.
pub fn checkpoint_files(data: &[u8]) {
    let template = template();
    let (name, content) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let (delete, name) = match name.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let known = || template.files.iter().map(String::as_str).chain(EXTRA_FILES.iter().copied());
    let name = match std::str::from_utf8(name) {
        Ok(name) if is_checkpoint_file(name) => name,
        _ => {
            let n = template.files.len() + EXTRA_FILES.len();
            let pick = name.iter().map(|b| *b as usize).sum::<usize>() % n;
            known().nth(pick).expect("pick < n")
        }
    };
    let work = work_dir();
    fresh(&work);
    copy_dir(template.dir.path(), &work);
    let _in_dir = InDir::enter(&work);
    let path = work.join(name);
    if delete {
        let _ = std::fs::remove_file(&path);
    } else {
        // A name that is a directory of the template, or below one of its files, is no input.
        let parent = path.parent().expect("a file in a directory");
        if std::fs::create_dir_all(parent).and_then(|()| std::fs::write(&path, content)).is_err() {
            return;
        }
    }
    let _ = runtime().block_on(run_checkpointed(&work, RESTART_BATCHES));
}
