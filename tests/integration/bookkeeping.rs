//! Bounded bookkeeping: a file source remembers only the files within `max_file_age` of the newest
//! one, its log is compacted and purged with the offset and commit logs, a restart resumes from
//! the compacted log without reading a file twice or losing one, and a memory stream frees what
//! committed batches read.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};

use crate::common::*;
use sluice::OutputMode;

fn script(input: &Path, output: &Path, options: &str) -> String {
    format!(
        "CREATE TABLE events (key STRING, ts TIMESTAMP, value BIGINT)
           WITH (connector = 'file', path = '{}', format = 'json'{options});
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json');
         INSERT INTO out SELECT key, value FROM events;",
        input.display(),
        output.display()
    )
}

fn row(key: &str, value: i64) -> String {
    format!("{{\"key\": \"{key}\", \"ts\": \"2024-01-01T00:00:00Z\", \"value\": {value}}}\n")
}

/// Writes file `name` holding one row `key` with the given modification time.
fn write_at(dir: &Path, name: &str, key: &str, modified: SystemTime) {
    std::fs::create_dir_all(dir).unwrap();
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, row(key, 0)).unwrap();
    std::fs::File::options().write(true).open(&temporary).unwrap().set_modified(modified).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

/// Every key the sink wrote, failing on a key written twice.
fn sink_keys(output: &Path) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for row in sink_rows_by_batch(output).into_values().flatten() {
        let key = row["key"].as_str().unwrap().to_string();
        assert!(keys.insert(key.clone()), "{key} was written twice");
    }
    keys
}

/// The names in `dir`, split into delta ids and compacted-entry ids.
fn log_entries(dir: &Path) -> (Vec<u64>, Vec<u64>) {
    let (mut deltas, mut compacts) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        match name.strip_suffix(".compact") {
            Some(id) => compacts.push(id.parse().unwrap()),
            None => deltas.extend(name.parse::<u64>().ok()),
        }
    }
    deltas.sort_unstable();
    compacts.sort_unstable();
    (deltas, compacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_log_and_memory_stay_bounded_and_a_restart_after_purge_reads_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, checkpoint) = (dir.path().join("in"), dir.path().join("out"), dir.path().join("cp"));
    let base = SystemTime::now() - Duration::from_secs(3600);
    let at = |i: u64| base + Duration::from_secs(i);
    for i in 0..235 {
        write_at(&input, &format!("f{i:04}.json"), &format!("k{i}"), at(i));
    }
    let sql = script(&input, &output, ", max_files_per_trigger = '1', max_file_age = '10s'");
    run_script(&sql, &checkpoint).await.unwrap();
    assert_eq!(sink_keys(&output).len(), 235);

    // 235 batches, one log entry each: compacted every 10 entries (9.compact, ..., 229.compact)
    // and purged at batch 200 below batch 101, as the offset log is.
    let sources = checkpoint.join("sources/events");
    let (deltas, compacts) = log_entries(&sources);
    assert_eq!(deltas.first(), Some(&101), "entries below the retained batches are purged");
    assert_eq!(compacts, (10..=22).map(|n| n * 10 + 9).collect::<Vec<u64>>());
    let (offsets, _) = log_entries(&checkpoint.join("offsets"));
    assert_eq!(offsets.first(), Some(&101), "the source log is purged with the offset log");
    // The compacted entry holds only the files within 10 s of the newest (f0219..=f0229), not
    // all 230 files taken through batch 229.
    let compact: serde_json::Value =
        sluice::checkpoint::decode_entry(&std::fs::read(sources.join("229.compact")).unwrap()).unwrap();
    assert_eq!(compact["end"], 230);
    let remembered: Vec<&str> =
        compact["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(remembered.len(), 11, "{remembered:?}");
    assert!(remembered.iter().all(|p| p.ends_with(".json") && p.contains("f02")), "{remembered:?}");

    // A restart resumes from 229.compact and the five entries after it: the files it forgot are
    // still in the directory, yet none is read again; new files are read, once each. A file
    // that arrives late, modified more than max_file_age before the newest file taken, is skipped
    // as Spark skips it.
    for i in 235..240 {
        write_at(&input, &format!("f{i:04}.json"), &format!("k{i}"), at(i));
    }
    write_at(&input, "late.json", "late", at(200));
    write_at(&input, "recent.json", "recent", at(232));
    let progress = run_script(&sql, &checkpoint).await.unwrap();
    assert_eq!(progress.len(), 6, "five new files and one recent enough, one per batch");
    let keys = sink_keys(&output);
    assert_eq!(keys.len(), 241);
    assert!(keys.contains("recent") && !keys.contains("late"));

    // Nothing new: nothing runs, nothing is read twice. The run's one report is Spark's idle
    // report: the last batch's id, no input.
    let last_batch = progress.last().unwrap().batch_id;
    let idle = run_script(&sql, &checkpoint).await.unwrap();
    assert!(idle.iter().all(|p| p.batch_id == last_batch && p.num_input_rows == 0), "{idle:?}");
    assert_eq!(sink_keys(&output).len(), 241);
}

#[tokio::test]
async fn every_file_of_the_first_batch_is_read_and_max_file_age_defaults_to_seven_days() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, checkpoint) = (dir.path().join("in"), dir.path().join("out"), dir.path().join("cp"));
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    write_at(&input, "old.json", "old", now - 8 * day);
    write_at(&input, "new.json", "new", now - Duration::from_secs(60));
    let sql = script(&input, &output, "");
    run_script(&sql, &checkpoint).await.unwrap();
    assert_eq!(sink_keys(&output), BTreeSet::from(["old".to_string(), "new".to_string()]));

    write_at(&input, "late.json", "late", now - 8 * day);
    write_at(&input, "week.json", "week", now - 6 * day);
    run_script(&sql, &checkpoint).await.unwrap();
    let keys = sink_keys(&output);
    assert!(keys.contains("week") && !keys.contains("late"), "{keys:?}");
}

#[tokio::test]
async fn max_file_age_must_be_a_duration_with_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    for (value, expected) in [("100", "give a unit"), ("soon", "max_file_age must be a positive duration"), ("0s", "")]
    {
        let sql = script(&dir.path().join("in"), &dir.path().join("out"), &format!(", max_file_age = '{value}'"));
        let err = run_script(&sql, &dir.path().join("cp")).await.unwrap_err().to_string();
        assert!(err.contains("max_file_age") && err.contains(expected) && err.contains("events"), "{value}: {err}");
    }
}

#[tokio::test]
async fn a_memory_stream_frees_a_push_once_a_committed_batch_read_it() {
    let mut h =
        Harness::new(OutputMode::Update, None, "SELECT key, count(*) AS cnt FROM events GROUP BY key").await.unwrap();
    let keys: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
    let freed = Arc::downgrade(&keys);
    let batch = RecordBatch::try_new(
        events_schema(),
        vec![
            keys,
            Arc::new(TimestampNanosecondArray::from(vec![BASE_NS; 3])),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ],
    )
    .unwrap();
    h.stream.push(batch).unwrap();
    assert!(h.query.run_next_batch().await.unwrap());
    let mut counts = h.last_output();
    counts.sort();
    assert_eq!(counts, vec!["a,2", "b,1"]);
    assert_eq!((h.stream.len(), h.stream.retained()), (1, 0));
    assert!(freed.upgrade().is_none(), "the pushed rows are freed once their batch committed");
    assert_eq!(h.batch(&[("b", 1, 1)]).await, vec!["b,2"], "offsets still count every push");
}

#[tokio::test]
async fn clean_source_deletes_or_archives_the_files_of_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, archive) = (dir.path().join("in"), dir.path().join("out"), dir.path().join("archive"));
    let base = SystemTime::now() - Duration::from_secs(60);
    for i in 0..3 {
        write_at(&input, &format!("f{i}.json"), &format!("k{i}"), base + Duration::from_secs(i));
    }
    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        v.sort();
        v
    };
    let archiving = script(
        &input,
        &output,
        &format!(
            ", max_files_per_trigger = '1', clean_source = 'archive', source_archive_dir = '{}'",
            archive.display()
        ),
    );
    run_script(&archiving, &dir.path().join("cp")).await.unwrap();
    assert_eq!(sink_keys(&output).len(), 3);
    assert!(names(&input).is_empty(), "{:?}", names(&input));
    assert_eq!(names(&archive), vec!["f0.json", "f1.json", "f2.json"]);

    write_at(&input, "f3.json", "k3", base + Duration::from_secs(3));
    let deleting = script(&input, &output, ", clean_source = 'delete'");
    run_script(&deleting, &dir.path().join("cp")).await.unwrap();
    assert_eq!(sink_keys(&output).len(), 4);
    assert!(names(&input).is_empty());

    for (options, expected) in [
        (", clean_source = 'archive'", "needs source_archive_dir"),
        (", clean_source = 'move'", "must be 'off', 'delete' or 'archive'"),
        (", source_archive_dir = 'x'", "only used with clean_source = 'archive'"),
    ] {
        let err = run_script(&script(&input, &output, options), &dir.path().join("cp2")).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{options}: {err}");
    }
}
