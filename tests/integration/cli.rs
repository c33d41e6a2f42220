//! `sluice run` as a user runs it: errors without panics, and SIGKILL at random moments while it
//! aggregates the flights data, restarted until it finishes, giving the uninterrupted output.

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

fn flights_script(input: &Path, output: &Path) -> String {
    let example = std::fs::read_to_string("sql/examples/flight_delays.sql").unwrap();
    example.replace("path = 'data/flights'", &format!("path = '{}'", input.display())).replace(
        "CREATE TABLE hourly_delays WITH (connector = 'console', output_mode = 'append', num_rows = '10');",
        &format!(
            "CREATE TABLE hourly_delays WITH (connector = 'file', path = '{}', format = 'json');",
            output.display()
        ),
    )
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

#[test]
fn sigkill_at_random_moments_then_restart_gives_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("flights");
    copy_in_order(Path::new("data/flights"), &input);

    let run = |name: &str| {
        let output = dir.path().join(format!("{name}-out"));
        let sql = dir.path().join(format!("{name}.sql"));
        std::fs::write(&sql, flights_script(&input, &output)).unwrap();
        let mut cmd = sluice();
        cmd.args(["run", sql.to_str().unwrap(), "--trigger", "available-now", "--checkpoint"])
            .arg(dir.path().join(format!("{name}-checkpoint")))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        (cmd, output)
    };

    let (mut reference, reference_out) = run("reference");
    let started = Instant::now();
    assert!(reference.status().unwrap().success());
    let full_run = started.elapsed();

    let (mut killed, killed_out) = run("killed");
    // A fixed pseudo-random sequence of kill delays, spread over a whole run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut kills = 0;
    loop {
        let mut child = killed.spawn().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + seed % (full_run.as_millis() as u64 / 3 + 1));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            assert!(child.wait().unwrap().success());
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        assert!(kills < 200, "the query keeps being killed before it finishes");
    }
    assert!(kills > 0, "at least one run was killed");
    assert_eq!(files(&killed_out), files(&reference_out), "after {kills} kills");
}
