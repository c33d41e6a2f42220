//! SIGKILL trials over Kafka: a real `sluice run` process reads a topic of the broker and is
//! killed with SIGKILL at random moments, then restarted on the same checkpoint until it has
//! consumed everything; its output must then equal an uninterrupted run's, nothing lost and
//! nothing written twice.
//!
//! The broker is librdkafka's mock cluster, which lives in this test process (it stays up across
//! the child's kills) and listens on real TCP, so the child connects to it as to any broker; or
//! the real broker `SLUICE_KAFKA_BOOTSTRAP` names (Kafka → file only, see below).
//!
//! The kill moments come from a seeded generator: each run is let commit a random number of
//! batches (the commit log is watched), then killed after a further random delay of up to two
//! batches' time (measured on the uninterrupted run), so kills fall at random phases of a batch:
//! planning, reading, writing, committing. The schedule is reproducible (`SLUICE_KILL_SEED=N`
//! replaces the seed); the exact moment of each kill depends on the machine's speed. A failure
//! names the first differing row and every kill.
//!
//! Kafka → Kafka uses the exactly-once sink, and there the mock cluster falls short of a real
//! broker (librdkafka 2.12, `rdkafka_mock_handlers.c`): `InitProducerId` without a current
//! producer id always allocates a new producer id (`rd_kafka_mock_pid_new`) instead of bumping
//! the epoch of the one registered for the transactional id, so nothing is fenced and a killed
//! run's open transaction is never aborted; `EndTxn` only checks the producer id and writes no
//! commit or abort markers into the partitions; `Fetch` answers `LastStableOffset` = the high
//! watermark and no aborted transactions, whatever the isolation level. So a `read_committed`
//! consumer of the mock sees the rows of a transaction the kill left open, which a real broker
//! hides once the restarted run's `init_transactions` aborts it. The test reads the topics with
//! a `read_committed` consumer and then leaves out exactly those records, as a real broker
//! would: the records a run wrote for a batch for which that run wrote no commit marker (the
//! topics' ends are read after each run, so every record is known by the run that wrote it). It
//! says how many it left out. (tansu 0.6, the suite's real broker, cannot replace the mock here:
//! it advertises no `EndTxn`, so the sink's first commit fails with librdkafka's "EndTxnRequest
//! (KIP-98) not supported by broker".)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::kafka_source::Broker;

/// Partitions of the input topic.
const PARTITIONS: i32 = 4;
/// Records produced into each partition.
const RECORDS_PER_PARTITION: i64 = 300;
/// `max_offsets_per_trigger`: 1200 records make 24 batches.
const MAX_OFFSETS_PER_TRIGGER: i64 = 50;
/// SIGKILLs a trial aims at (fewer when the query finishes first).
const KILLS: usize = 4;
/// The longest a run may take to commit what it is waited for, or to finish.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// The seed of a trial: `SLUICE_KILL_SEED` when set (to replay or vary a schedule), else `default`.
fn seed(default: u64) -> u64 {
    std::env::var("SLUICE_KILL_SEED").ok().and_then(|s| s.parse().ok()).filter(|s| *s != 0).unwrap_or(default)
}

/// xorshift64: a small, seeded source of kill moments.
struct Rng(u64);

impl Rng {
    /// A number in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (max + 1)
    }
}

/// One SIGKILL of a trial.
#[derive(Debug, Clone)]
struct Kill {
    /// The run killed (0 is the first).
    run: usize,
    /// The schedule: batches the run was let commit, then the delay before the kill.
    batches: u64,
    delay: Duration,
    /// When the kill came, after the run's start.
    at: Duration,
    /// Commit log entries when the run started and when it was killed.
    committed: (usize, usize),
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} killed {} ms after its start, commits {} -> {} (schedule: {} batches, then {} ms)",
            self.run,
            self.at.as_millis(),
            self.committed.0,
            self.committed.1,
            self.batches,
            self.delay.as_millis()
        )
    }
}

/// The kills of a trial, one a line, with the seed, for failure messages.
struct Kills<'a>(u64, &'a [Kill]);

impl fmt::Display for Kills<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {} (SLUICE_KILL_SEED), {} kills:", self.0, self.1.len())?;
        self.1.iter().try_for_each(|k| write!(f, "\n  {k}"))
    }
}

/// The number of entries of a checkpoint's commit log.
fn commits(checkpoint: &Path) -> usize {
    std::fs::read_dir(checkpoint.join("commits"))
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok()).count())
        .unwrap_or(0)
}

/// The last lines of a run's stderr log.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A SQL script run by `sluice run --trigger available-now` in a directory of its own.
struct Job {
    dir: PathBuf,
    script: PathBuf,
    checkpoint: PathBuf,
}

impl Job {
    fn new(root: &Path, name: &str, sql: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("query.sql");
        std::fs::write(&script, sql).unwrap();
        Job { checkpoint: dir.join("checkpoint"), script, dir }
    }

    fn log(&self, run: usize) -> PathBuf {
        self.dir.join(format!("run-{run}.log"))
    }

    /// Starts run `run`, its stderr into [`Job::log`].
    fn spawn(&self, run: usize) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", self.script.to_str().unwrap(), "--trigger", "available-now", "--checkpoint"])
            .arg(&self.checkpoint)
            .stdout(Stdio::null())
            .stderr(File::create(self.log(run)).unwrap())
            .spawn()
            .unwrap()
    }

    /// Waits for `child` (run `run`) to exit by itself, within [`RUN_DEADLINE`]; fails naming
    /// `context` unless it exits 0.
    fn finish(&self, mut child: Child, run: usize, started: Instant, context: &dyn fmt::Display) {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "run {run} failed ({status}); {context}\nits stderr:\n{}",
                    tail(&self.log(run))
                );
                return;
            }
            if started.elapsed() > RUN_DEADLINE {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!(
                    "run {run} did not finish within {RUN_DEADLINE:?}; {context}\nits stderr:\n{}",
                    tail(&self.log(run))
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// One uninterrupted run: its duration and the batches it committed.
    fn run_uninterrupted(&self) -> (Duration, usize) {
        let started = Instant::now();
        self.finish(self.spawn(0), 0, started, &"the uninterrupted run");
        (started.elapsed(), commits(&self.checkpoint))
    }

    /// Runs the job, killing [`KILLS`] runs at moments drawn from `seed` (fewer when the query
    /// finishes first), until a run finishes; a batch takes about `per_batch`, and the
    /// uninterrupted run had `batches`. `after_run(run)` is called once each run has ended.
    /// Returns the kills.
    fn run_with_kills(
        &self,
        seed: u64,
        batches: usize,
        per_batch: Duration,
        mut after_run: impl FnMut(usize),
    ) -> Vec<Kill> {
        let mut rng = Rng(seed);
        let mut kills: Vec<Kill> = Vec::new();
        let mut run = 0;
        loop {
            let mut child = self.spawn(run);
            let started = Instant::now();
            let before = commits(&self.checkpoint);
            if kills.len() == KILLS {
                self.finish(child, run, started, &Kills(seed, &kills));
                after_run(run);
                return kills;
            }
            // Up to a sixth of the batches each, so that four kills leave the query unfinished.
            let wait_for = rng.up_to((batches / (KILLS + 2)) as u64);
            let delay = Duration::from_micros(rng.up_to(2 * per_batch.as_micros() as u64));
            let mut exited = None;
            while exited.is_none() && (commits(&self.checkpoint) as u64) < before as u64 + wait_for {
                exited = child.try_wait().unwrap();
                assert!(
                    started.elapsed() < RUN_DEADLINE,
                    "run {run} did not commit {wait_for} batches within {RUN_DEADLINE:?}; {}\nits stderr:\n{}",
                    Kills(seed, &kills),
                    tail(&self.log(run))
                );
                std::thread::sleep(Duration::from_millis(2));
            }
            if exited.is_none() {
                std::thread::sleep(delay);
                exited = child.try_wait().unwrap();
            }
            if let Some(status) = exited {
                // It finished before its kill: the trial is over.
                let context = Kills(seed, &kills);
                assert!(
                    status.success(),
                    "run {run} failed ({status}); {context}\nits stderr:\n{}",
                    tail(&self.log(run))
                );
                after_run(run);
                return kills;
            }
            child.kill().unwrap(); // SIGKILL
            let at = started.elapsed();
            child.wait().unwrap();
            kills.push(Kill { run, batches: wait_for, delay, at, committed: (before, commits(&self.checkpoint)) });
            after_run(run);
            run += 1;
        }
    }
}

/// `expected` and `got` (sorted rows) compared: `None` when equal, else the first differing
/// row and the rows missing and repeated.
fn difference(expected: &[String], got: &[String]) -> Option<String> {
    if expected == got {
        return None;
    }
    let at = expected.iter().zip(got).position(|(e, g)| e != g).unwrap_or(expected.len().min(got.len()));
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    expected.iter().for_each(|r| *counts.entry(r).or_default() += 1);
    got.iter().for_each(|r| *counts.entry(r).or_default() -= 1);
    let missing: Vec<&str> = counts.iter().filter(|(_, n)| **n > 0).map(|(r, _)| *r).collect();
    let extra: Vec<&str> = counts.iter().filter(|(_, n)| **n < 0).map(|(r, _)| *r).collect();
    Some(format!(
        "{} rows expected, {} got; first difference at sorted row {at}: expected {:?}, got {:?}; \
         {} rows missing (first: {:?}), {} rows extra or repeated (first: {:?})",
        expected.len(),
        got.len(),
        expected.get(at),
        got.get(at),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    ))
}

/// The input: [`RECORDS_PER_PARTITION`] events `{"id":.., "v":"p<partition>"}` in each of
/// [`PARTITIONS`] partitions of topic `in` (ids `partition * 1000 + offset`). Returns every row
/// the projection [`SELECT`] makes of them, as [`normalized`] JSON, sorted.
fn produce_input(broker: &Broker) -> Vec<String> {
    tokio::runtime::Runtime::new().unwrap().block_on(broker.create_topic("in", PARTITIONS));
    let mut rows = Vec::new();
    for p in 0..PARTITIONS {
        let first = i64::from(p) * 1000;
        broker.produce_ids("in", p, first, RECORDS_PER_PARTITION);
        rows.extend((0..RECORDS_PER_PARTITION).map(|o| {
            serde_json::json!({"partition": p, "offset": o, "id": first + o, "v": format!("p{p}")}).to_string()
        }));
    }
    rows.sort();
    rows
}

/// The query of both trials: every input record, with its partition and offset.
const SELECT: &str = "SELECT partition, offset, id, v FROM events";

/// The source table over topic `in`, with the source's 10 ms fetch wait: at librdkafka's 500 ms,
/// every batch waited that long on a fetch past the end of its range (see `benches/RESULTS.md`),
/// and most kills would land in that wait instead of in the batch's work.
fn source_table(broker: &Broker) -> String {
    broker.events_table(
        "id BIGINT, v STRING, partition INT, offset BIGINT",
        "in",
        &format!(", starting_offsets = 'earliest', max_offsets_per_trigger = '{MAX_OFFSETS_PER_TRIGGER}'"),
    )
}

/// A JSON row as text with its fields in name order, so that rows compare whatever order a
/// writer put the fields in.
fn normalized(row: &str) -> String {
    serde_json::from_str::<serde_json::Value>(row).unwrap_or_else(|e| panic!("{row:?} is not JSON: {e}")).to_string()
}

/// The rows of a JSON file sink directory by batch, each batch's rows sorted (as JSON text).
fn file_rows(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    crate::common::sink_rows_by_batch(dir)
        .into_iter()
        .map(|(batch, rows)| (batch, crate::common::sorted(&rows.iter().map(|r| r.to_string()).collect::<Vec<_>>())))
        .collect()
}

/// The names in a file sink's directory and in its manifest directory `_sluice_manifest`,
/// hidden ones left out.
fn file_names(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["", "_sluice_manifest/"] {
        for entry in std::fs::read_dir(dir.join(prefix)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && name != "_sluice_manifest" {
                names.insert(format!("{prefix}{name}"));
            }
        }
    }
    names
}

/// Kafka → file sink: SIGKILLed runs, restarted until done, write the files of an uninterrupted
/// run, batch by batch.
#[test]
fn kafka_to_files_sigkilled_at_random_moments_gives_the_uninterrupted_output() {
    let broker = Broker::new();
    let input = produce_input(&broker);
    let root = tempfile::tempdir().unwrap();
    let job = |name: &str| {
        let out = root.path().join(name).join("out");
        let sql = format!(
            "{}\nCREATE TABLE sink WITH (connector = 'file', path = '{}', format = 'json');\nINSERT INTO sink {SELECT};",
            source_table(&broker),
            out.display()
        );
        (Job::new(root.path(), name, &sql), out)
    };

    let (reference, reference_out) = job("reference");
    let (duration, batches) = reference.run_uninterrupted();
    let expected = file_rows(&reference_out);
    let all: Vec<String> = crate::common::sorted(&expected.values().flatten().collect::<Vec<_>>());
    if let Some(diff) = difference(&input, &all) {
        panic!("the uninterrupted run did not write every input record once: {diff}");
    }

    let seed = seed(0x9e37_79b9_7f4a_7c15);
    let (killed, killed_out) = job("killed");
    let kills = killed.run_with_kills(seed, batches, duration / batches as u32, |_| {});
    let context = Kills(seed, &kills);
    assert!(!kills.is_empty(), "no run was killed: the query finished first; {context}");
    let got = file_rows(&killed_out);
    let batch_ids = |rows: &BTreeMap<u64, Vec<String>>| rows.keys().copied().collect::<Vec<_>>();
    assert_eq!(batch_ids(&got), batch_ids(&expected), "batches with output; {context}");
    for (batch, rows) in &expected {
        if let Some(diff) = difference(rows, &got[batch]) {
            panic!("batch {batch}: {diff}; {context}");
        }
    }
    assert_eq!(file_names(&killed_out), file_names(&reference_out), "files; {context}");
    eprintln!("Kafka -> files: {batches} batches, uninterrupted {} ms; {context}", duration.as_millis());
}

/// Every record of partition 0 of `topic`, read with `read_committed`: (offset, key, value).
fn read_topic(servers: &str, topic: &str) -> Vec<(i64, Option<String>, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "sigkill-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out: Vec<(i64, Option<String>, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.last().map_or(high > 0, |(o, _, _)| o + 1 < high) {
        assert!(Instant::now() < deadline, "topic {topic}: read {} records of {high} in 60 s", out.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let m = message.unwrap();
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            out.push((m.offset(), text(m.key()), text(m.payload()).unwrap_or_default()));
        }
    }
    out
}

/// The end offset of partition 0 of `topic` once it no longer moves: two answers in a row agree.
/// (Called after a run's process is gone: what it sent is in the broker's socket buffers, and
/// the mock cluster's one thread serves every readable connection before it answers the second
/// request.)
fn settled_end(servers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", servers).create().unwrap();
    let end = || consumer.fetch_watermarks(topic, 0, Duration::from_secs(30)).unwrap().1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = end();
    loop {
        let now = end();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the end of topic {topic} kept moving for 30 s");
        last = now;
    }
}

/// For each batch of `checkpoint`'s offset log: its `[start, end)` per input partition.
fn batch_ranges(checkpoint: &Path) -> BTreeMap<u64, BTreeMap<i64, (i64, i64)>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(checkpoint.join("offsets")).unwrap() {
        let entry = entry.unwrap();
        let Some(batch) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
        let value: serde_json::Value = sluice::checkpoint::decode_entry(&std::fs::read(entry.path()).unwrap())
            .unwrap_or_else(|e| panic!("offsets/{batch}: {e}"));
        let (_, range) = value["sources"].as_object().unwrap().iter().next().unwrap();
        let offsets = |side: &str| -> BTreeMap<i64, i64> {
            let (_, partitions) = range[side].as_object().unwrap().iter().next().unwrap();
            partitions.as_object().unwrap().iter().map(|(p, o)| (p.parse().unwrap(), o.as_i64().unwrap())).collect()
        };
        let (start, end) = (offsets("start"), offsets("end"));
        out.insert(batch, end.iter().map(|(p, e)| (*p, (start.get(p).copied().unwrap_or(0), *e))).collect());
    }
    out
}

/// The ends of the output topic and of its marker topic after each run.
#[derive(Debug, Clone, Copy)]
struct Ends {
    rows: i64,
    markers: i64,
}

/// Kafka → Kafka with the exactly-once sink: SIGKILLed runs, restarted until done, leave every
/// row once for a `read_committed` reader, as an uninterrupted run does (with the mock
/// cluster's missing transaction filtering made up for as the module says).
#[test]
fn kafka_to_kafka_exactly_once_sigkilled_at_random_moments_gives_every_row_once() {
    let broker = Broker::mock();
    let input = produce_input(&broker);
    let root = tempfile::tempdir().unwrap();
    let job = |name: &str| {
        // The mock cluster has no CreateTopics: the marker topic is made here.
        broker.mock.as_ref().unwrap().create_topic(name, 1, 1).unwrap();
        broker.mock.as_ref().unwrap().create_topic(&format!("{name}.sluice-commits"), 1, 1).unwrap();
        let sql = format!(
            "{}\nCREATE TABLE results WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{name}', \
             delivery = 'exactly_once');\nINSERT INTO results {SELECT};",
            source_table(&broker),
            broker.servers
        );
        Job::new(root.path(), name, &sql)
    };
    let values = |records: &[(i64, Option<String>, String)]| -> Vec<String> {
        crate::common::sorted(&records.iter().map(|(_, _, v)| normalized(v)).collect::<Vec<_>>())
    };

    let reference = job("reference");
    let (duration, batches) = reference.run_uninterrupted();
    let expected = values(&read_topic(&broker.servers, "reference"));
    if let Some(diff) = difference(&input, &expected) {
        panic!("the uninterrupted run did not write every input record once: {diff}");
    }

    let seed = seed(0x2545_f491_4f6c_dd1d);
    let killed = job("killed");
    let mut ends: Vec<Ends> = Vec::new();
    let kills = killed.run_with_kills(seed, batches, duration / batches as u32, |_| {
        ends.push(Ends {
            rows: settled_end(&broker.servers, "killed"),
            markers: settled_end(&broker.servers, "killed.sluice-commits"),
        });
    });
    let context = Kills(seed, &kills);
    assert!(!kills.is_empty(), "no run was killed: the query finished first; {context}");

    let records = read_topic(&broker.servers, "killed");
    let markers = read_topic(&broker.servers, "killed.sluice-commits");
    let marker_batch = |value: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(value).unwrap()["batch_id"].as_u64().unwrap()
    };
    let marked: Vec<u64> = markers.iter().map(|(_, _, v)| marker_batch(v)).collect();
    let ranges = batch_ranges(&killed.checkpoint);
    assert_eq!(marked, ranges.keys().copied().collect::<Vec<_>>(), "one commit marker per batch, in order; {context}");
    let batch_of = |value: &str| -> u64 {
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let (p, o) = (row["partition"].as_i64().unwrap(), row["offset"].as_i64().unwrap());
        let batch = ranges.iter().find(|(_, r)| r.get(&p).is_some_and(|(s, e)| (*s..*e).contains(&o)));
        *batch.unwrap_or_else(|| panic!("row {value} is in no batch of the offset log; {context}")).0
    };

    // What a read_committed reader of a real broker sees: each run's records of the batches
    // whose marker that run wrote (committed), not those of the batch it was killed in.
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    let (mut rows_from, mut markers_from) = (0, 0);
    for (run, end) in ends.iter().enumerate() {
        let committed: BTreeSet<u64> = markers
            .iter()
            .filter(|(o, _, _)| (markers_from..end.markers).contains(o))
            .map(|(_, _, v)| marker_batch(v))
            .collect();
        for (offset, _, value) in records.iter().filter(|(o, _, _)| (rows_from..end.rows).contains(o)) {
            let batch = batch_of(value);
            if committed.contains(&batch) {
                visible.push(normalized(value));
            } else {
                assert!(run < kills.len(), "the last run, which finished, left batch {batch} uncommitted; {context}");
                hidden.push((run, *offset, batch));
            }
        }
        (rows_from, markers_from) = (end.rows, end.markers);
    }
    assert_eq!(rows_from, records.len() as i64, "records after the last run's end; {context}");
    let got = crate::common::sorted(&visible);
    if let Some(diff) = difference(&expected, &got) {
        panic!("{diff}; {} records of killed transactions left out: {hidden:?}; {context}", hidden.len());
    }
    eprintln!(
        "Kafka -> Kafka exactly-once: {batches} batches, uninterrupted {} ms; {} records of transactions left open \
         by a kill (shown by the mock cluster) left out; {context}",
        duration.as_millis(),
        hidden.len()
    );
}
