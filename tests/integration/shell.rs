//! `sluice shell` driven through a real terminal (a tmux pane) as a person would drive it: declare
//! the flights stream, watch a windowed SELECT redraw its table as files arrive, Ctrl-C, start an
//! INSERT in the background, SHOW QUERIES, EXPLAIN, query the memory table it fills, STOP QUERY,
//! a syntax error, a statement over two lines, tab completion, Ctrl-D. The screen is read back
//! with `tmux capture-pane`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// How long the screen may take to show what a step expects (a cold release binary, a busy CI).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A tmux server of its own running one pane of 200 × 50 characters.
struct Pane {
    socket: String,
}

impl Pane {
    fn start(command: &[&str], cwd: &Path) -> Pane {
        let socket = format!("sluice-shell-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-s", "shell", "-x", "200", "-y", "50", "-c"])
            .arg(cwd)
            .args(command)
            .status()
            .expect("tmux runs (scripts/test.sh installs it)");
        assert!(status.success(), "tmux could not start the shell");
        Pane { socket }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("tmux runs")
    }

    /// Types `text`.
    fn type_text(&self, text: &str) {
        // tmux reads a `;` ending an argument as its command separator: semicolons go as bytes.
        for chunk in text.split_inclusive(';') {
            let literal = chunk.strip_suffix(';').unwrap_or(chunk);
            if !literal.is_empty() {
                assert!(self.tmux(&["send-keys", "-t", "shell", "-l", literal]).status.success());
            }
            if chunk.ends_with(';') {
                assert!(self.tmux(&["send-keys", "-t", "shell", "-H", "3b"]).status.success());
            }
        }
    }

    /// Types `text` and presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    /// Presses a key named as tmux names it (`C-c`, `Tab`, `Enter`).
    fn key(&self, key: &str) {
        assert!(self.tmux(&["send-keys", "-t", "shell", key]).status.success());
    }

    /// The whole screen and its scrollback, wrapped lines joined.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "shell"]).stdout).into_owned()
    }

    /// Waits until the screen contains `text` `times` times in all, and returns it.
    fn wait_for_count(&self, text: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(start.elapsed() < TIMEOUT, "the screen never showed {text:?} {times} times:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_for_count(text, 1)
    }

    /// Waits until the live status line shows batch `batch` or a later one, and returns the screen.
    fn wait_for_batch(&self, batch: u64) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            let last = screen
                .split("batch ")
                .skip(1)
                .filter_map(|rest| rest.split_once(" |").and_then(|(n, _)| n.parse::<u64>().ok()))
                .max();
            if last.is_some_and(|last| last >= batch) {
                return screen;
            }
            assert!(start.elapsed() < TIMEOUT, "the status line never reached batch {batch}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_running(&self) -> bool {
        self.tmux(&["has-session", "-t", "shell"]).status.success()
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The bundled flights files, one per day of January 2013, in order.
fn flight_days() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/flights");
    let mut days: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    days.sort();
    days
}

/// Adds day file `day` to the stream's directory as a producer would (renamed into place), with
/// a modification time after the earlier days'.
fn add_day(input: &Path, day: &Path, seq: u64) {
    let name = day.file_name().unwrap().to_str().unwrap();
    let temporary = input.join(format!(".{name}.tmp"));
    std::fs::copy(day, &temporary).unwrap();
    let file = std::fs::File::options().write(true).open(&temporary).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600) + Duration::from_secs(seq)).unwrap();
    std::fs::rename(&temporary, input.join(name)).unwrap();
}

/// Flights in the first `days` files.
fn flights_in(days: &[PathBuf]) -> usize {
    days.iter()
        .map(|d| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(d).unwrap()).read_to_string(&mut text).unwrap();
            text.lines().filter(|l| !l.trim().is_empty()).count()
        })
        .sum()
}

const CREATE_FLIGHTS: &str = "CREATE TABLE flights (flight_id STRING, carrier STRING, flight BIGINT, tailnum STRING, \
     origin STRING, dest STRING, sched_dep_ts TIMESTAMP, dep_ts TIMESTAMP, dep_delay DOUBLE, arr_delay DOUBLE, \
     distance DOUBLE, status STRING, WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR) \
     WITH (connector = 'file', path = 'in', format = 'json', max_files_per_trigger = '1');";

const WEEKLY: &str = "SELECT window.start AS week, origin, count(*) AS n FROM flights \
     GROUP BY window(sched_dep_ts, '7 days'), origin";

#[test]
fn a_session_in_the_shell_as_a_person_types_it() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is missing: scripts/test.sh installs it (apt-get install tmux)");
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let days = flight_days();
    add_day(&input, &days[0], 0);
    add_day(&input, &days[1], 1);
    let history = dir.path().join("history");
    let checkpoints = dir.path().join("checkpoints");
    let pane = Pane::start(
        &[
            env!("CARGO_BIN_EXE_sluice"),
            "shell",
            "--history",
            history.to_str().unwrap(),
            "--checkpoint",
            checkpoints.to_str().unwrap(),
        ],
        dir.path(),
    );
    pane.wait_for("sluice> ");

    pane.line(CREATE_FLIGHTS);
    pane.wait_for("OK");
    pane.line("SHOW TABLES;");
    let screen = pane.wait_for("sched_dep_ts - 10800000 ms");
    assert!(screen.contains("flights") && screen.contains("stream") && screen.contains("file"), "{screen}");
    pane.line("DESCRIBE flights;");
    pane.wait_for("watermark: minus 10800000 ms");

    // A windowed SELECT runs live: the table is redrawn in place as each new day arrives.
    pane.line(&format!("{WEEKLY};"));
    pane.wait_for("output mode complete");
    pane.wait_for_batch(1);
    add_day(&input, &days[2], 2);
    add_day(&input, &days[3], 3);
    let screen = pane.wait_for_batch(3);
    for origin in ["EWR", "JFK", "LGA"] {
        assert!(screen.contains(origin), "{screen}");
    }
    assert_eq!(screen.matches("week|").count(), 1, "the table is redrawn in place, not printed again:\n{screen}");
    pane.key("C-c");
    pane.wait_for("query shell_1 stopped");
    pane.wait_for_count("sluice> ", 5);

    // INSERT INTO a memory table runs in the background; the table answers bounded SELECTs.
    pane.line("CREATE TABLE weekly WITH (connector = 'memory', output_mode = 'complete');");
    pane.wait_for_count("OK", 2);
    pane.line(&format!("INSERT INTO weekly {WEEKLY};"));
    pane.wait_for("started in the background: id");
    pane.line("SHOW QUERIES;");
    let screen = pane.wait_for("|weekly");
    assert!(screen.contains("shell_1") && screen.contains("stopped"), "{screen}");
    let total = flights_in(&days[..4]);
    let expected = format!("{total}|");
    let start = Instant::now();
    while !pane.screen().contains(&expected) {
        assert!(start.elapsed() < TIMEOUT, "weekly never held all {total} flights:\n{}", pane.screen());
        pane.line("SELECT sum(n) AS total FROM weekly;");
        std::thread::sleep(Duration::from_millis(500));
    }

    pane.line(&format!("EXPLAIN {WEEKLY};"));
    let screen = pane.wait_for("evicted: never: complete mode");
    assert!(screen.contains("Output mode: complete (the query aggregates"), "{screen}");
    assert!(screen.contains("StreamingAggregate") && screen.contains("Watermark: flights.sched_dep_ts minus 3 hours"));
    pane.line(&format!("EXPLAIN INSERT INTO weekly {WEEKLY};"));
    pane.wait_for("the output_mode option of table 'weekly'");

    pane.line("STOP QUERY weekly;");
    pane.wait_for(") stopped");

    // Errors show where they are, and the shell goes on.
    pane.line("SELECT origin FRM flights;");
    let screen = pane.wait_for("error:");
    assert!(screen.contains("  SELECT origin FRM flights") && screen.contains('^'), "{screen}");
    pane.line("SELECT 1 +");
    pane.line("1 AS two;");
    pane.wait_for("|two|");
    pane.line("SHOW CREATE TABLE flights;");
    pane.wait_for("WATERMARK FOR sched_dep_ts AS sched_dep_ts - INTERVAL '3' HOUR");
    // Tab completes the table name.
    pane.type_text("DESCRIBE weekl");
    pane.key("Tab");
    pane.line(";");
    pane.wait_for("DESCRIBE weekly;");

    pane.key("C-d");
    let start = Instant::now();
    while pane.is_running() {
        assert!(start.elapsed() < TIMEOUT, "Ctrl-D did not end the shell:\n{}", pane.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = std::fs::read_to_string(&history).unwrap();
    assert!(history.contains("SHOW QUERIES;") && history.contains("STOP QUERY weekly;"), "{history}");
}
