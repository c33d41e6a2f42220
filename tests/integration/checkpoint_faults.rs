//! Fault injection on the checkpoint of file→file queries, one per stateful operator (window
//! aggregation, deduplication, session windows, stream-stream join; issue 9): the newest entry of
//! the offset log, of the commit log or of the state, emptied, cut to half or with a byte
//! flipped — what a crash or a power loss while it was written leaves — counts as never written,
//! and the restarted query's output equals an uninterrupted run's; a damaged entry below the
//! newest is an error naming the file. One query per checkpoint: a second one is refused while
//! the first holds the checkpoint's lock, and a stale lock is taken over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use sluice::checkpoint::{LockHolder, LOCK_FILE};
use sluice::{StreamContext, Trigger};

/// A query over the `events` stream (and `others`, a second stream over the same files), with its
/// output mode.
#[derive(Debug, Clone, Copy)]
struct Query {
    operator: &'static str,
    mode: &'static str,
    insert: &'static str,
}

const AGGREGATION: Query = Query {
    operator: "window aggregation",
    mode: "update",
    insert: "SELECT window.start AS wstart, key, count(*) AS cnt, sum(value) AS total
             FROM events GROUP BY window(ts, '10 seconds'), key",
};

/// One query per stateful operator.
const QUERIES: [Query; 4] = [
    AGGREGATION,
    Query {
        operator: "deduplication",
        mode: "append",
        insert: "SELECT key, ts, value
                 FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY key, ts ORDER BY ts) AS rn
                       FROM events) AS firsts
                 WHERE rn = 1",
    },
    Query {
        operator: "session windows",
        mode: "append",
        insert:
            "SELECT key, session_window.start AS first, session_window.end AS last, count(*) AS cnt, sum(value) AS total
                 FROM events GROUP BY key, session_window(ts, '5 seconds')",
    },
    Query {
        operator: "stream-stream join",
        mode: "append",
        insert: "SELECT e.key, e.ts AS ets, o.ts AS ots, e.value AS evalue, o.value AS ovalue
                 FROM events e JOIN others o
                 ON e.key = o.key AND o.ts BETWEEN e.ts - INTERVAL '5' SECOND AND e.ts + INTERVAL '5' SECOND",
    },
];

fn script(query: Query, input: &Path, output: &Path) -> String {
    let stream = |name: &str| {
        format!(
            "CREATE TABLE {name} (key STRING, ts TIMESTAMP, value BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
               WITH (connector = 'file', path = '{}', format = 'json', max_files_per_trigger = '1');",
            input.display()
        )
    };
    format!(
        "{}\n{}\nCREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json', output_mode = '{}');
         INSERT INTO out {};",
        stream("events"),
        stream("others"),
        output.display(),
        query.mode,
        query.insert
    )
}

/// A query's directories: input, output and checkpoint, and the state store it runs on.
struct Dirs {
    query: Query,
    state_store: &'static str,
    _root: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    checkpoint: PathBuf,
}

impl Dirs {
    fn new(query: Query) -> Self {
        Self::on_store(query, "memory")
    }

    /// Directories of `query` run on the state store `state_store` (`memory`, `rocksdb`).
    fn on_store(query: Query, state_store: &'static str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let (input, output, checkpoint) = (root.path().join("in"), root.path().join("out"), root.path().join("cp"));
        std::fs::create_dir_all(&input).unwrap();
        Self { query, state_store, _root: root, input, output, checkpoint }
    }

    /// Adds input files `range`, slice `i` of the tumbling-window input as file `i`.
    fn add_input(&self, range: std::ops::Range<usize>) {
        for i in range {
            let lines: String = TUMBLE_INPUT[i]
                .iter()
                .map(|(k, s, v)| {
                    format!("{{\"key\": \"{k}\", \"ts\": \"2024-01-01T00:00:{s:02}Z\", \"value\": {v}}}\n")
                })
                .collect();
            write_file(&self.input, &format!("{i}.json"), &lines, i as u64);
        }
    }

    /// Runs the query over what the input holds (available-now): the ids of the batches it ran.
    async fn run(&self) -> sluice::Result<Vec<u64>> {
        let set = format!("SET sluice.state_store = '{}';\n", self.state_store);
        let progress = run_script(&(set + &script(self.query, &self.input, &self.output)), &self.checkpoint).await?;
        Ok(progress.iter().map(|p| u64::try_from(p.batch_id).unwrap()).collect())
    }

    /// The sink's rows by batch id, each batch's rows sorted.
    fn output(&self) -> BTreeMap<u64, Vec<String>> {
        sink_rows_by_batch(&self.output)
            .into_iter()
            .map(|(batch, rows)| (batch, sorted(&rows.iter().map(|r| r.to_string()).collect::<Vec<_>>())))
            .collect()
    }

    /// The newest entry of the offset log.
    fn newest_batch(&self) -> u64 {
        std::fs::read_dir(self.checkpoint.join("offsets"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap()
    }

    /// `state/<op>/0/<version>.delta` of the query's one stateful operator.
    fn state_file(&self, version: u64) -> PathBuf {
        let state = self.checkpoint.join("state");
        let op = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
        op.join("0").join(format!("{version}.delta"))
    }
}

/// How a file is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Empty,
    Half,
    FlipByte,
}

fn damage(file: &Path, how: Damage) {
    let mut bytes = std::fs::read(file).unwrap();
    assert!(!bytes.is_empty(), "{}", file.display());
    match how {
        Damage::Empty => bytes.clear(),
        Damage::Half => bytes.truncate(bytes.len() / 2),
        Damage::FlipByte => {
            let at = bytes.len() / 2;
            bytes[at] ^= 0xff;
        }
    }
    std::fs::write(file, bytes).unwrap();
}

/// The first three files in one run, the last two in another.
async fn uninterrupted(query: Query) -> BTreeMap<u64, Vec<String>> {
    let dirs = Dirs::new(query);
    dirs.add_input(0..3);
    dirs.run().await.unwrap();
    dirs.add_input(3..5);
    dirs.run().await.unwrap();
    dirs.output()
}

/// Which newest entry is damaged.
#[derive(Debug, Clone, Copy)]
enum Newest {
    /// `offsets/N` of a batch that never committed (`commits/N` is deleted too).
    Offsets,
    Commits,
    State,
}

#[tokio::test]
async fn a_torn_newest_entry_counts_as_never_written_and_the_output_is_unchanged() {
    torn_newest_entry_trials("memory").await;
}

/// The same trials on the RocksDB state store, whose output must equal the in-memory store's
/// uninterrupted run.
#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn on_the_rocksdb_store_a_torn_newest_entry_counts_as_never_written_too() {
    torn_newest_entry_trials("rocksdb").await;
}

/// Each query on `state_store`, its newest offset, commit or state entry torn each way, then
/// restarted: the output equals the uninterrupted run's (on the in-memory store).
async fn torn_newest_entry_trials(state_store: &'static str) {
    for query in QUERIES {
        let reference = uninterrupted(query).await;
        assert!(reference.values().map(Vec::len).sum::<usize>() >= 3, "{}: {reference:?}", query.operator);
        for newest in [Newest::Offsets, Newest::Commits, Newest::State] {
            for how in [Damage::Empty, Damage::Half, Damage::FlipByte] {
                let dirs = Dirs::on_store(query, state_store);
                dirs.add_input(0..3);
                dirs.run().await.unwrap();
                let n = dirs.newest_batch();
                let file = match newest {
                    Newest::Offsets => {
                        std::fs::remove_file(dirs.checkpoint.join(format!("commits/{n}"))).unwrap();
                        dirs.checkpoint.join(format!("offsets/{n}"))
                    }
                    Newest::Commits => dirs.checkpoint.join(format!("commits/{n}")),
                    Newest::State => dirs.state_file(n),
                };
                damage(&file, how);
                let case = format!("{} on {state_store} {newest:?} {how:?}: {}", query.operator, file.display());
                // The restart runs batch N again (replayed, or planned afresh), then goes on.
                let ran = dirs.run().await.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(ran.first(), Some(&n), "{case}");
                dirs.add_input(3..5);
                dirs.run().await.unwrap();
                assert_eq!(dirs.output(), reference, "{case}");
                assert!(!dirs.checkpoint.join(LOCK_FILE).exists(), "{case}: the lock is released");
            }
        }
    }
}

#[tokio::test]
async fn a_damaged_entry_below_the_newest_is_an_error_naming_it() {
    let checkpoint_of = |query: Query| async move {
        let dirs = Dirs::new(query);
        dirs.add_input(0..3);
        dirs.run().await.unwrap();
        let n = dirs.newest_batch();
        assert!(n >= 2);
        (dirs, n)
    };
    let refused = |dirs: Dirs, file: PathBuf| async move {
        let err = dirs.run().await.unwrap_err().to_string();
        let relative = file.strip_prefix(&dirs.checkpoint).unwrap().display().to_string();
        assert!(err.contains(&relative) && err.contains("corrupted"), "{relative}: {err}");
    };

    // Below a torn newest offset log entry, the one before it is needed, and damaged.
    let (dirs, n) = checkpoint_of(AGGREGATION).await;
    std::fs::remove_file(dirs.checkpoint.join(format!("commits/{n}"))).unwrap();
    damage(&dirs.checkpoint.join(format!("offsets/{n}")), Damage::Half);
    let file = dirs.checkpoint.join(format!("offsets/{}", n - 1));
    damage(&file, Damage::FlipByte);
    refused(dirs, file).await;

    // A state delta the newest version is built on, of each operator.
    for query in QUERIES {
        let (dirs, n) = checkpoint_of(query).await;
        let file = dirs.state_file(n - 1);
        damage(&file, Damage::FlipByte);
        refused(dirs, file).await;
    }

    // The file source's log of the files batch 1 took.
    let (dirs, _) = checkpoint_of(AGGREGATION).await;
    let file = dirs.checkpoint.join("sources/events/1");
    damage(&file, Damage::Empty);
    refused(dirs, file).await;

    // The newest offsets of a committed batch: planning it afresh could give the sink another
    // batch under an id it has written.
    let (dirs, n) = checkpoint_of(AGGREGATION).await;
    let file = dirs.checkpoint.join(format!("offsets/{n}"));
    damage(&file, Damage::Empty);
    let err = dirs.run().await.unwrap_err().to_string();
    assert!(err.contains(&format!("offsets/{n}")) && err.contains("committed"), "{err}");
}

/// Starts the query in a context of its own.
async fn start(dirs: &Dirs) -> sluice::Result<sluice::StreamingQuery> {
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&script(dirs.query, &dirs.input, &dirs.output)).await?;
    ctx.start(&definitions[0], dirs.checkpoint.to_str().unwrap()).await
}

#[tokio::test]
async fn a_second_query_on_a_checkpoint_in_use_is_refused_until_the_first_stops() {
    let dirs = Dirs::new(AGGREGATION);
    dirs.add_input(0..2);
    let first = start(&dirs).await.unwrap();
    let lock = std::fs::canonicalize(&dirs.checkpoint).unwrap().join(LOCK_FILE);
    let err = start(&dirs).await.unwrap_err().to_string();
    let pid = format!("process {}", std::process::id());
    assert!(err.contains(&lock.display().to_string()) && err.contains("in use") && err.contains(&pid), "{err}");

    // Stopped at the end of its trigger, the first releases the lock, though its handle lives on.
    first.run(Trigger::AvailableNow).await.unwrap();
    let second = start(&dirs).await.unwrap();
    // Run again while the second holds it, the first is refused.
    let err = first.run(Trigger::AvailableNow).await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    dirs.add_input(2..3);
    second.run(Trigger::AvailableNow).await.unwrap();
    drop(second);
    assert!(!lock.exists());
    assert!(dirs.output().contains_key(&0) && dirs.output().len() >= 3, "{:?}", dirs.output());
}

#[tokio::test]
async fn a_lock_of_another_live_process_is_respected_and_a_stale_one_taken_over() {
    let dirs = Dirs::new(AGGREGATION);
    dirs.add_input(0..2);
    std::fs::create_dir_all(&dirs.checkpoint).unwrap();
    let lock = dirs.checkpoint.join(LOCK_FILE);
    let holder =
        |pid: u32| serde_json::to_vec(&LockHolder { pid, start_ticks: None, ..LockHolder::current() }).unwrap();

    // Another process on this host holds it.
    let mut other = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(&lock, holder(other.id())).unwrap();
    let err = dirs.run().await.unwrap_err().to_string();
    assert!(err.contains(&format!("process {}", other.id())) && err.contains("in use"), "{err}");
    assert!(!dirs.output.exists() || dirs.output().is_empty(), "nothing ran");

    // Killed, it left the lock behind: taken over.
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(dirs.run().await.unwrap().first(), Some(&0));
    assert!(!lock.exists(), "released at the end");

    // A process id that runs nowhere (past Linux's largest, 2^22).
    std::fs::write(&lock, holder(99_999_999)).unwrap();
    dirs.add_input(2..3);
    assert!(!dirs.run().await.unwrap().is_empty());
    assert!(!lock.exists());
}

#[tokio::test]
async fn a_join_checkpoint_of_the_earlier_state_format_is_refused_naming_it() {
    let dirs = Dirs::new(QUERIES[3]);
    dirs.add_input(0..3);
    dirs.run().await.unwrap();
    // The checkpoint as the release that stored a row per entry left it: the same operator line
    // without the state format (written as bare JSON, the log format before version lines).
    let file = dirs.checkpoint.join("state/operators.json");
    let lines: Vec<String> = sluice::checkpoint::decode_entry(&std::fs::read(&file).unwrap()).unwrap();
    let (old, format) = lines[0].rsplit_once("; ").unwrap();
    assert!(format.starts_with("join state v2"), "{}", lines[0]);
    std::fs::write(&file, serde_json::to_vec(&[old]).unwrap()).unwrap();
    let err = dirs.run().await.unwrap_err().to_string();
    assert!(
        err.contains("stateful operators changed") && err.contains(format) && err.contains("sluice release"),
        "{err}"
    );
}
