//! Checkpoints on S3: `sluice run --checkpoint s3://BUCKET/PREFIX` against moto's S3 server, a
//! local S3-compatible server (PyPI's `moto[server]`) that each test starts on a free port and
//! stops when it ends, even on failure. The `sluice` child is pointed at it through the
//! environment, as a user points it at S3 (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, the
//! credentials); the test itself reads the bucket through the same server with boto3 (moto's
//! dependency).
//!
//! `scripts/test.sh` installs moto into a virtual environment and names its Python in
//! `SLUICE_MOTO_PYTHON`; without it the tests use `python3`. When that Python has no moto, the
//! tests fail saying so, unless `SLUICE_SKIP_S3=1` is set (as the browser test does with
//! `SLUICE_SKIP_BROWSER`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::example_script;
use crate::common::sink_rows_by_batch;

/// The bucket each test's server holds.
const BUCKET: &str = "sluice-checkpoints";

/// The Python that runs moto: `SLUICE_MOTO_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("SLUICE_MOTO_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A moto S3 server on 127.0.0.1, with [`BUCKET`] created; killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
    /// Holds the server's log (each request on a line).
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts the server; `None` when moto is missing and `SLUICE_SKIP_S3=1` says to skip.
    ///
    /// # Panics
    /// When moto is missing (and not skipped) or the server does not start.
    fn start() -> Option<Self> {
        let python = python();
        let has_moto = Command::new(&python)
            .args(["-c", "import moto.server, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_moto {
            if std::env::var("SLUICE_SKIP_S3").is_ok_and(|v| v == "1") {
                eprintln!("skipped: {python} has no moto and SLUICE_SKIP_S3=1");
                return None;
            }
            panic!(
                "the S3 checkpoint tests need moto's S3 server: scripts/test.sh installs it (`pip install \
                 'moto[server]'` into a virtual environment, named by SLUICE_MOTO_PYTHON; {python} has none), or set \
                 SLUICE_SKIP_S3=1 to skip them"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut moto = Self { child, endpoint: format!("http://127.0.0.1:{port}"), dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto's server exited ({status}) before it listened:\n{}", moto.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto's server did not listen in 60 s:\n{}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.boto3(&format!("s3.create_bucket(Bucket='{BUCKET}')"));
        Some(moto)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Runs the Python `statements` with `s3`, a boto3 client of this server; their stdout.
    fn boto3(&self, statements: &str) -> String {
        let program = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n{statements}\n",
            self.endpoint
        );
        let out = Command::new(python()).args(["-c", &program]).output().unwrap();
        assert!(out.status.success(), "{program}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The keys of the bucket under `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self.boto3(&format!(
            "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='{BUCKET}', Prefix='{prefix}'):\n    \
             for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        let mut keys: Vec<String> = listed.lines().map(str::to_string).collect();
        keys.sort();
        keys
    }

    /// `sluice run` of `script` on checkpoint `checkpoint` with this server as its S3.
    fn sluice(&self, script: &Path, checkpoint: &str, trigger: Option<&str>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.args(["run", script.to_str().unwrap(), "--checkpoint", checkpoint]);
        if let Some(trigger) = trigger {
            cmd.args(["--trigger", trigger]);
        }
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the flight days `days` (indices into the sorted `data/flights`) into `input`, each
/// with a modification time `i` seconds after `base`, so the file source takes them in order.
fn add_days(input: &Path, days: std::ops::Range<usize>, base: SystemTime) {
    std::fs::create_dir_all(input).unwrap();
    let mut names: Vec<_> = std::fs::read_dir("data/flights").unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for i in days {
        let target = input.join(&names[i]);
        std::fs::copy(Path::new("data/flights").join(&names[i]), &target).unwrap();
        let file = std::fs::File::options().write(true).open(&target).unwrap();
        file.set_modified(base + Duration::from_secs(i as u64)).unwrap();
    }
}

/// Every row a JSON file sink wrote, as JSON text, sorted (a row written twice appears twice).
fn output_rows(dir: &Path) -> Vec<String> {
    let mut rows: Vec<String> = sink_rows_by_batch(dir).into_values().flatten().map(|v| v.to_string()).collect();
    rows.sort();
    rows
}

/// The flight-delays example reading `input`, writing JSON files into `output`, as a script file.
fn flights_script(dir: &Path, input: &Path, output: &Path) -> PathBuf {
    let script = dir.join(format!("{}.sql", output.file_name().unwrap().to_string_lossy()));
    std::fs::write(&script, example_script("flight_delays", &[("flights", input)], output)).unwrap();
    script
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_query_stopped_and_restarted_on_an_s3_checkpoint_with_more_input_gives_the_uninterrupted_output() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = SystemTime::now() - Duration::from_secs(3600);

    // The uninterrupted run, on a local checkpoint: twelve days at once.
    let all = dir.path().join("all");
    add_days(&all, 0..12, base);
    let reference_out = dir.path().join("reference-out");
    let reference = flights_script(dir.path(), &all, &reference_out);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", reference.to_str().unwrap(), "--trigger", "available-now", "--checkpoint"])
        .arg(dir.path().join("reference-checkpoint"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let expected = output_rows(&reference_out);
    assert!(expected.len() > 100, "the reference run wrote {} rows", expected.len());

    // On S3: six days, stopped; then six more, restarted on the same checkpoint.
    let input = dir.path().join("in");
    let output = dir.path().join("s3-out");
    let script = flights_script(dir.path(), &input, &output);
    let checkpoint = format!("s3://{BUCKET}/run1");
    add_days(&input, 0..6, base);
    let first = moto.sluice(&script, &checkpoint, Some("available-now")).output().unwrap();
    assert!(first.status.success(), "{}", stderr_of(&first));
    let after_first = output_rows(&output).len();
    assert!(after_first > 0 && after_first < expected.len(), "{after_first} rows after the first run");
    let keys = moto.keys("run1/");
    for written in ["run1/metadata", "run1/offsets/0", "run1/commits/0", "run1/state/operators.json"] {
        assert!(keys.iter().any(|k| k == written), "no {written} in {keys:?}");
    }
    assert!(keys.iter().any(|k| k.starts_with("run1/state/0/") && k.ends_with(".delta")), "no state in {keys:?}");
    assert!(!keys.iter().any(|k| k == "run1/lock"), "the lock is released when the query stops: {keys:?}");

    add_days(&input, 6..12, base);
    let second = moto.sluice(&script, &checkpoint, Some("available-now")).output().unwrap();
    assert!(second.status.success(), "{}", stderr_of(&second));
    assert_eq!(output_rows(&output), expected, "nothing lost, nothing repeated");
    assert!(!moto.keys("run1/").iter().any(|k| k == "run1/lock"));
}

#[test]
fn a_second_query_on_an_s3_checkpoint_in_use_is_refused_and_a_killed_holders_lock_is_taken_over() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    add_days(&input, 0..3, SystemTime::now() - Duration::from_secs(3600));
    let checkpoint = format!("s3://{BUCKET}/locked");

    // The first query runs until stopped (default trigger): it holds the lock.
    let script = flights_script(dir.path(), &input, &dir.path().join("first-out"));
    let mut first =
        moto.sluice(&script, &checkpoint, None).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !moto.keys("locked/").iter().any(|k| k == "locked/commits/0") {
        assert!(first.try_wait().unwrap().is_none(), "the first query ended");
        assert!(started.elapsed() < Duration::from_secs(60), "the first query committed no batch in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let holder = first.id();

    let second_script = flights_script(dir.path(), &input, &dir.path().join("second-out"));
    let second = moto.sluice(&second_script, &checkpoint, Some("available-now")).output().unwrap();
    let err = stderr_of(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("checkpoint s3://{BUCKET}/locked/lock"))
            && err.contains(&format!("in use by process {holder}"))
            && err.contains("Stop that query first"),
        "{err}"
    );
    assert!(!dir.path().join("second-out").exists(), "the refused query wrote output");

    // Killed, the holder leaves its lock behind; the next query on this host takes it over.
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(moto.keys("locked/").iter().any(|k| k == "locked/lock"), "the killed query's lock is left");
    let third = moto.sluice(&second_script, &checkpoint, Some("available-now")).output().unwrap();
    let err = stderr_of(&third);
    assert!(third.status.success(), "{err}");
    assert!(err.contains(&format!("taking over the checkpoint's lock from process {holder}")), "{err}");
    assert!(!moto.keys("locked/").iter().any(|k| k == "locked/lock"), "released");
}

#[test]
fn a_bad_s3_location_is_an_error_naming_it_and_the_accepted_forms() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    add_days(&input, 0..1, SystemTime::now() - Duration::from_secs(3600));
    let script = flights_script(dir.path(), &input, &dir.path().join("out"));
    for (location, expected) in [
        (
            "s3://",
            "checkpoint s3://: the S3 URL names no bucket: a checkpoint location is a local directory, \
                   file:///PATH, s3://BUCKET/PREFIX or memory://",
        ),
        ("s3:///cp", "checkpoint s3:///cp: the S3 URL names no bucket"),
        ("gs://bucket/cp", "checkpoint gs://bucket/cp: the scheme 'gs://' is not built in"),
        ("s3://no-such-bucket/cp", "checkpoint s3://no-such-bucket/cp/lock: cannot create the lock"),
    ] {
        let out = moto.sluice(&script, location, Some("available-now")).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{location}: {err}");
        assert!(err.contains(expected), "{location}: {err}");
        assert!(!err.contains("panicked"), "{location}: {err}");
    }
    // A plain-HTTP endpoint needs AWS_ALLOW_HTTP (object_store refuses it otherwise).
    let out = moto
        .sluice(&script, &format!("s3://{BUCKET}/cp"), Some("available-now"))
        .env_remove("AWS_ALLOW_HTTP")
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is plain HTTP: set AWS_ALLOW_HTTP=true"), "{err}");
}
