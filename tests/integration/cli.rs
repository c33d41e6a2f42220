//! `sluice run` as a user runs it: errors without panics, and SIGKILL at random moments while it
//! runs each stateful example (window aggregation, deduplication, top-N, session windows,
//! stream-stream join) on the bundled data, restarted until it finishes, giving the uninterrupted
//! output.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::copy_in_order;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[test]
fn a_missing_script_is_an_error_not_a_panic() {
    let out = sluice().args(["run", "no/such/file.sql"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: no/such/file.sql"), "{stderr}");
}

#[test]
fn an_unsupported_query_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("q.sql");
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        &sql,
        format!(
            "CREATE TABLE e (k STRING, ts TIMESTAMP) WITH (connector = 'file', path = '{}');
             CREATE TABLE o WITH (connector = 'console', output_mode = 'append');
             INSERT INTO o SELECT k, count(*) FROM e GROUP BY k;",
            dir.path().join("in").display()
        ),
    )
    .unwrap();
    let out = sluice().args(["run", sql.to_str().unwrap(), "--trigger", "available-now"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("append mode without a watermark"), "{stderr}");
}

#[test]
fn explain_in_a_script_prints_the_incremental_plan_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out");
    // Without the sink's output_mode, so EXPLAIN says where the default comes from.
    let script = flights_script(Path::new("data/flights"), &output)
        .replace(", output_mode = 'append'", "")
        .replace("INSERT INTO", "EXPLAIN INSERT INTO");
    let sql = dir.path().join("explain.sql");
    std::fs::write(&sql, script).unwrap();
    let out = sluice().args(["run", sql.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "Output mode: append (table 'hourly_delays' sets no output_mode option; append is the default, as in Spark)",
        "Watermark: flights.sched_dep_ts minus 3 hours",
        "StreamingAggregate  keys: ",
        "window (event-time window)",
        "evicted: when the watermark passes its window's end",
        "emits: each group once, when the watermark passes its window's end",
        "Incremental plan:",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!output.exists(), "EXPLAIN started the query");
}

fn flights_script(input: &Path, output: &Path) -> String {
    example_script("flight_delays", &[("flights", input)], output)
}

/// `sql/examples/<name>.sql` reading its inputs from `inputs` (`data/<dir>` → the given path) and
/// writing its console sink's rows as JSON files into `output` instead, in the same output mode.
pub(crate) fn example_script(name: &str, inputs: &[(&str, impl AsRef<Path>)], output: &Path) -> String {
    let mut script = std::fs::read_to_string(format!("sql/examples/{name}.sql")).unwrap();
    for (dir, path) in inputs {
        let from = format!("path = 'data/{dir}'");
        assert!(script.contains(&from), "{name}.sql reads no {from}");
        script = script.replace(&from, &format!("path = '{}'", path.as_ref().display()));
    }
    let sink = script.lines().find(|l| l.contains("connector = 'console'")).expect("a console sink").to_string();
    let table = sink.split_whitespace().nth(2).unwrap();
    let mode = sink.split("output_mode = '").nth(1).and_then(|m| m.split('\'').next()).unwrap();
    let file_sink = format!(
        "CREATE TABLE {table} WITH (connector = 'file', path = '{}', format = 'json', output_mode = '{mode}');",
        output.display()
    );
    script.replace(&sink, &file_sink)
}

/// `data/<name>` of each of `inputs` copied in name order under `dir` (a clone gives no mtime
/// order): `(name, copy)`.
pub(crate) fn copied_inputs<'a>(dir: &Path, inputs: &[&'a str]) -> Vec<(&'a str, std::path::PathBuf)> {
    inputs
        .iter()
        .map(|name| {
            let copy = dir.join(name);
            copy_in_order(&Path::new("data").join(name), &copy);
            (*name, copy)
        })
        .collect()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let name = entry.strip_prefix(dir).unwrap().display().to_string();
        out.insert(name, std::fs::read(&entry).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        } else {
            paths.push(path);
        }
    }
    paths
}

/// Runs `example` (reading the bundled `data/<dir>` of each of `inputs`, copied in order) once
/// uninterrupted with the in-memory state store, then again with `state_store`, killed with
/// SIGKILL after pseudo-random delays and restarted on its checkpoint until it finishes: both runs
/// must write the same files, byte for byte.
fn sigkill_trial(example: &str, inputs: &[&str], mut seed: u64, state_store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let inputs = copied_inputs(dir.path(), inputs);

    let run = |name: &str, state_store: &str| {
        let output = dir.path().join(format!("{name}-out"));
        let sql = dir.path().join(format!("{name}.sql"));
        std::fs::write(&sql, example_script(example, &inputs, &output)).unwrap();
        let mut cmd = sluice();
        cmd.args(["run", sql.to_str().unwrap(), "--trigger", "available-now", "--state-store", state_store])
            .arg("--checkpoint")
            .arg(dir.path().join(format!("{name}-checkpoint")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        (cmd, output)
    };

    let (mut reference, reference_out) = run("reference", "memory");
    let started = Instant::now();
    assert!(reference.status().unwrap().success(), "{example}");
    let full_run = started.elapsed();
    assert!(!files(&reference_out).is_empty(), "{example} wrote nothing");

    let (mut killed, killed_out) = run("killed", state_store);
    // A fixed pseudo-random sequence of kill delays (xorshift), spread over a whole run. A run
    // that finishes before its first kill (the machine was busier during the reference run)
    // starts again from nothing with delays spread over half the time; a run that keeps being
    // killed before it finishes (a busier machine than during the reference run, or a store
    // slower to restore) gets delays spread over twice the time every 25 kills.
    let mut span_ms = full_run.as_millis() as u64;
    let mut kills = 0;
    while kills == 0 {
        assert!(span_ms > 0, "{example}: no run could be killed before it finished");
        loop {
            let mut child = killed.spawn().unwrap();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let window_ms = (span_ms / 3 + 1) << (kills / 25);
            let delay = Duration::from_millis(20 + seed % window_ms);
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_some() {
                assert!(child.wait().unwrap().success(), "{example}");
                break;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            assert!(kills < 200, "{example}: the query keeps being killed before it finishes");
        }
        if kills == 0 {
            let _ = std::fs::remove_dir_all(&killed_out);
            let _ = std::fs::remove_dir_all(dir.path().join("killed-checkpoint"));
            span_ms /= 2;
        }
    }
    assert_eq!(files(&killed_out), files(&reference_out), "{example} after {kills} kills ({state_store} store)");
    let metadata = std::fs::read(dir.path().join("killed-checkpoint/metadata")).unwrap();
    let recorded = format!("\"state_store\": \"{state_store}\"");
    assert!(String::from_utf8_lossy(&metadata).contains(&recorded), "{example}: the checkpoint records {recorded}");
}

#[test]
fn sigkill_during_a_window_aggregation_then_restart_gives_the_uninterrupted_output() {
    sigkill_trial("flight_delays", &["flights"], 0x9e37_79b9_7f4a_7c15, "memory");
}

#[test]
fn sigkill_during_a_deduplication_then_restart_gives_the_uninterrupted_output() {
    sigkill_trial("earthquakes_dedup", &["earthquakes"], 0x2545_f491_4f6c_dd1d, "memory");
}

#[test]
fn sigkill_during_a_top_n_then_restart_gives_the_uninterrupted_output() {
    sigkill_trial("earthquakes_strongest", &["earthquakes"], 0x3c6e_f372_fe94_f82b, "memory");
}

#[test]
fn sigkill_during_session_windows_then_restart_gives_the_uninterrupted_output() {
    sigkill_trial("tailnum_sessions", &["flights"], 0x5851_f42d_4c95_7f2d, "memory");
}

#[test]
fn sigkill_during_a_stream_stream_join_then_restart_gives_the_uninterrupted_output() {
    sigkill_trial("flights_weather", &["flights", "weather"], 0x1405_7b7e_f767_814f, "memory");
}

/// The same trials on the RocksDB state store: killed and restarted on its checkpoint (a fresh
/// local instance rebuilt from the checkpoint each time), each operator's output equals the
/// in-memory store's uninterrupted run.
#[cfg(feature = "rocksdb")]
#[test]
fn sigkill_trials_on_the_rocksdb_state_store_give_the_in_memory_stores_output() {
    sigkill_trial("flight_delays", &["flights"], 0x2f69_3d4c_1b0a_9e87, "rocksdb");
    sigkill_trial("earthquakes_dedup", &["earthquakes"], 0x7a3c_51d2_e940_b6f1, "rocksdb");
    sigkill_trial("tailnum_sessions", &["flights"], 0x4b1d_9a6e_03c7_f258, "rocksdb");
    sigkill_trial("flights_weather", &["flights", "weather"], 0x63e8_0f4a_b217_d95c, "rocksdb");
    sigkill_trial("earthquakes_strongest", &["earthquakes"], 0x1f83_d9ab_5be0_cd19, "rocksdb");
}

/// The numbered entries of a checkpoint log directory (`offsets`, `commits`).
fn log_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn sigterm_stops_after_the_current_batch_like_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flights");
    copy_in_order(Path::new("data/flights"), &input);
    let script = |name: &str| {
        let sql = dir.path().join(format!("{name}.sql"));
        std::fs::write(&sql, flights_script(&input, &dir.path().join(format!("{name}-out")))).unwrap();
        sql
    };
    let reference = script("reference");
    let status = sluice()
        .args(["run", reference.to_str().unwrap(), "--trigger", "available-now"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    // The default trigger: batches back to back, one file each; SIGTERM once a few committed.
    let checkpoint = dir.path().join("checkpoint");
    let child = sluice()
        .args(["run", script("terminated").to_str().unwrap(), "--checkpoint"])
        .arg(&checkpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while log_ids(&checkpoint.join("commits")).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no batches committed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopping after the current batch"), "{stderr}");

    // No half batch: the last batch planned was committed, and its output is all there.
    let offsets = log_ids(&checkpoint.join("offsets"));
    let commits = log_ids(&checkpoint.join("commits"));
    assert_eq!(offsets.last(), commits.last(), "offsets {offsets:?} commits {commits:?}");
    let last = *commits.last().unwrap();
    assert!(last < 30, "stopped before the end of the input (batch {last})");
    let expected = crate::common::sink_rows_by_batch(&dir.path().join("reference-out"));
    let got = crate::common::sink_rows_by_batch(&dir.path().join("terminated-out"));
    let expected: BTreeMap<_, _> = expected.into_iter().filter(|(b, _)| *b <= last).collect();
    assert_eq!(got, expected);
}

/// The progress lines `sluice run` logs on stderr (`<time>  INFO batch N | ...`), from `batch`.
fn progress_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter_map(|l| l.find(" INFO batch ").map(|i| &l[i + " INFO ".len()..])).collect()
}

/// Writes `sql` as `q.sql` in `dir` (with `{dir}` replaced by the directory) and runs it with
/// `args`; returns the exit code and stderr.
fn run_sql(dir: &Path, name: &str, sql: &str, args: &[&str]) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, sql.replace("{dir}", &dir.display().to_string())).unwrap();
    let args = args.iter().map(|a| a.replace("{dir}", &dir.display().to_string()));
    let out = sluice().arg("run").arg(&path).args(args).stdout(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn a_syntax_error_names_file_line_and_column_once() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "CREATE TABLE e (k STRING, ts TIMESTAMP) WITH (connector = 'file', path = '{dir}');\n\
               CREATE TABLE o WITH (connector = 'console');\n\
               INSERT INTO o\n\
               SELECT k, count(*) FROM e GROUP BY k;\n";
    let broken = sql.replace("GROUP BY k;", "GROUP BY k +;");
    let (code, stderr) = run_sql(dir.path(), "flight_delays.sql", &broken, &[]);
    assert_eq!(code, Some(1));
    let expected = format!("error: {}:4:39: SQL syntax error: ", dir.path().join("flight_delays.sql").display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.matches("SQL").count(), 1, "{stderr}");
    assert!(!stderr.contains("Line:"), "{stderr}");
}

#[test]
fn progress_lines_name_their_query_when_a_script_has_several() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_file(
        &dir.path().join("in"),
        "0.json",
        "{\"k\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\"}\n",
        0,
    );
    let sql = "CREATE TABLE e (k STRING, ts TIMESTAMP) WITH (connector = 'file', path = '{dir}/in');
               CREATE TABLE q1 WITH (connector = 'file', path = '{dir}/q1', output_mode = 'update');
               CREATE TABLE q2 WITH (connector = 'file', path = '{dir}/q2', output_mode = 'update');
               INSERT INTO q1 SELECT k, count(*) AS n FROM e GROUP BY k;
               INSERT INTO q2 SELECT k FROM e;";
    let (code, stderr) = run_sql(dir.path(), "two.sql", sql, &["--trigger", "available-now"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = progress_lines(&stderr);
    assert!(lines.iter().any(|l| l.starts_with("batch 0 | input 1 rows") && l.ends_with("query=q1")), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("batch 0 | input 1 rows") && l.ends_with("query=q2")), "{stderr}");
}

#[test]
fn a_column_a_sink_cannot_encode_is_refused_before_any_query_runs() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::write_file(
        &dir.path().join("in"),
        "0.json",
        "{\"k\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\"}\n",
        0,
    );
    let sql =
        "CREATE TABLE e (k STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts) WITH (connector = 'file', path = '{dir}/in');
               CREATE TABLE fine WITH (connector = 'file', path = '{dir}/fine', format = 'json');
               CREATE TABLE flat WITH (connector = 'file', path = '{dir}/flat', format = 'csv');
               INSERT INTO fine SELECT k, ts FROM e;
               INSERT INTO flat SELECT window, k, count(*) AS n FROM e GROUP BY window(ts, '10 seconds'), k;";
    let (code, stderr) = run_sql(dir.path(), "q.sql", sql, &["--trigger", "available-now"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sink 'flat'") && stderr.contains("column 'window'"), "{stderr}");
    assert!(stderr.contains("window.start"), "says what to do: {stderr}");
    let written: Vec<_> = std::fs::read_dir(dir.path().join("fine"))
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("part-")).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "the first query ran: {written:?}");
}

#[test]
fn trigger_once_runs_one_batch_with_everything_available() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let row = format!("{{\"k\": \"a\", \"ts\": \"2024-01-01T00:00:0{i}Z\"}}\n");
        crate::common::write_file(&dir.path().join("in"), &format!("{i}.json"), &row, i);
    }
    let sql = "CREATE TABLE e (k STRING, ts TIMESTAMP, WATERMARK FOR ts AS ts)
                 WITH (connector = 'file', path = '{dir}/in', max_files_per_trigger = '1');
               CREATE TABLE o WITH (connector = 'file', path = '{dir}/out');
               INSERT INTO o SELECT k, ts FROM e;";
    let (code, stderr) = run_sql(dir.path(), "q.sql", sql, &["--trigger", "once", "--checkpoint", "{dir}/cp"]);
    assert_eq!(code, Some(0), "{stderr}");
    let batches = progress_lines(&stderr);
    assert_eq!(batches.len(), 1, "{stderr}");
    assert!(batches[0].starts_with("batch 0 | input 3 rows"), "{stderr}");
}

#[test]
fn progress_file_has_a_line_of_spark_json_per_batch_and_the_query_id_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    copy_in_order(Path::new("tests/data/tumble_append/input/events"), &input);
    let sql = crate::worked_example::SCRIPT.replace("{in}", "{dir}/in").replace("{out}", "{dir}/out");
    let args = ["--trigger", "available-now", "--checkpoint", "{dir}/cp", "--progress", "{dir}/progress.jsonl"];
    let (code, stderr) = run_sql(dir.path(), "q.sql", &sql, &args);
    assert_eq!(code, Some(0), "{stderr}");
    let read = || -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.path().join("progress.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let lines = read();
    assert_eq!(lines.iter().map(|l| l["batchId"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    let first = &lines[0];
    for key in [
        "id",
        "runId",
        "name",
        "timestamp",
        "batchId",
        "batchDuration",
        "numInputRows",
        "inputRowsPerSecond",
        "processedRowsPerSecond",
        "durationMs",
        "eventTime",
        "stateOperators",
        "sources",
        "sink",
    ] {
        assert!(first.get(key).is_some(), "{key} missing from {first}");
    }
    assert_eq!(first["name"], "out");
    assert_eq!(first["numInputRows"], 3);
    assert_eq!(first["inputRowsPerSecond"], 0.0, "Spark's rate for a run's first trigger");
    for phase in [
        "latestOffset",
        "walCommit",
        "getBatch",
        "queryPlanning",
        "addBatch",
        "stateCommit",
        "commitOffsets",
        "triggerExecution",
    ] {
        assert!(first["durationMs"][phase].is_u64(), "{phase} missing from {first}");
    }
    assert_eq!(first["eventTime"]["watermark"], "1970-01-01T00:00:00.000Z");
    assert_eq!(first["stateOperators"][0]["operatorName"], "stateStoreSave");
    let source = &first["sources"][0];
    assert_eq!(source["description"], format!("FileStreamSource[file:{}]", input.display()));
    assert_eq!(
        (&source["startOffset"], &source["endOffset"], &source["numInputRows"]),
        (&0.into(), &1.into(), &3.into())
    );
    assert_eq!(first["sink"]["description"], format!("FileSink[{}]", dir.path().join("out").display()));
    assert_eq!(lines[2]["sink"]["numOutputRows"], 1);
    let timestamp = first["timestamp"].as_str().unwrap();
    assert!(timestamp.len() == 24 && timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T', "{timestamp}");

    // A restart: the same query id, a new run id; lines are appended.
    crate::common::write_file(
        &input,
        "0005.jsonl",
        "{\"key\": \"a\", \"ts\": \"2024-01-01T00:01:00Z\", \"value\": 1}\n",
        3600,
    );
    let (code, stderr) = run_sql(dir.path(), "q.sql", &sql, &args);
    assert_eq!(code, Some(0), "{stderr}");
    let lines = read();
    let restarted = &lines[6];
    assert_eq!((restarted["batchId"].as_i64(), restarted["numInputRows"].as_u64()), (Some(6), Some(1)));
    assert_eq!(restarted["id"], first["id"]);
    assert_ne!(restarted["runId"], first["runId"]);
}

#[test]
fn a_metrics_address_that_cannot_be_listened_on_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sql = "CREATE TABLE e (k STRING) WITH (connector = 'file', path = '{dir}/in');
               CREATE TABLE o WITH (connector = 'file', path = '{dir}/out');
               INSERT INTO o SELECT k FROM e;";
    let (code, stderr) = run_sql(dir.path(), "q.sql", sql, &["--metrics", "localhost"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("metrics endpoint localhost: ") && stderr.contains("127.0.0.1:9090"), "{stderr}");
}
