//! A crash between the offsets log and the commit log, and a stop/restart, produce the output of
//! an uninterrupted run (DESIGN §1 "Recovery", SEMANTICS §4).

use std::collections::BTreeMap;

use crate::common::*;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice::sink::MemorySink;
use sluice::sink::Sink;
use sluice::source::MemoryStream;
use sluice::{OutputMode, StreamingQuery};

/// A sink that fails on one batch id, as a process would die after the state commit but before
/// `commits/N`.
struct FailingSink {
    inner: MemorySink,
    fail_on: u64,
}

impl Sink for FailingSink {
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> sluice::Result<()> {
        if batch_id == self.fail_on {
            return Err(sluice::SluiceError::Sink { sink: "failing".into(), message: "injected crash".into() });
        }
        self.inner.add_batch(batch_id, schema, batches)
    }
}

async fn query_with_sink(
    checkpoint: &str,
    mode: OutputMode,
    sink: impl Fn() -> Box<dyn Sink> + Send + Sync + 'static,
) -> (StreamingQuery, MemoryStream) {
    let mut ctx = crate::common::context().await;
    let stream = ctx.register_memory_stream("events", events_schema(), Some(("ts", 10_000))).unwrap();
    ctx.register_sink("out", mode, sink);
    let definitions = ctx.execute(&format!("INSERT INTO out {TUMBLE}")).await.unwrap();
    (ctx.start(&definitions[0], checkpoint).await.unwrap(), stream)
}

/// Pushes slices `from..` one per batch, then runs the final no-data batch; stops at the first
/// error.
async fn drive(query: &mut StreamingQuery, stream: &MemoryStream, from: usize) -> sluice::Result<()> {
    for input in &TUMBLE_INPUT[from..] {
        stream.push(events(input)).unwrap();
        query.run_next_batch().await?;
    }
    while query.run_next_batch().await? {}
    Ok(())
}

fn output(sink: &MemorySink) -> BTreeMap<u64, Vec<String>> {
    sink.batches().into_iter().map(|(k, v)| (k, rows(&v))).collect()
}

#[tokio::test]
async fn a_crash_before_the_commit_log_replays_the_batch_identically() {
    for mode in [OutputMode::Append, OutputMode::Update, OutputMode::Complete] {
        let reference = MemorySink::new();
        let r = reference.clone();
        let (mut q, stream) = query_with_sink("memory://", mode, move || Box::new(r.clone())).await;
        drive(&mut q, &stream, 0).await.unwrap();
        let batches = reference.batches().len() as u64;
        assert!(batches >= 5, "{mode}: one batch per slice");

        for fail_on in 0..batches {
            let dir = tempfile::tempdir().unwrap();
            let checkpoint = dir.path().to_str().unwrap().to_string();
            let survived = MemorySink::new();
            let s = survived.clone();
            let (mut crashing, stream) =
                query_with_sink(&checkpoint, mode, move || Box::new(FailingSink { inner: s.clone(), fail_on })).await;
            let err = drive(&mut crashing, &stream, 0).await.unwrap_err();
            assert!(err.to_string().contains("injected crash"), "{err}");
            drop(crashing);

            // A new process: the memory stream is refilled with what the logged offsets cover.
            let s = survived.clone();
            let (mut restarted, stream) = query_with_sink(&checkpoint, mode, move || Box::new(s.clone())).await;
            let pushed = (fail_on as usize + 1).min(TUMBLE_INPUT.len());
            for input in &TUMBLE_INPUT[..pushed] {
                stream.push(events(input)).unwrap();
            }
            assert!(restarted.run_next_batch().await.unwrap(), "the uncommitted batch runs again");
            drive(&mut restarted, &stream, pushed).await.unwrap();
            assert_eq!(output(&survived), output(&reference), "{mode}: crash at batch {fail_on}");
        }
    }
}

/// Pushes `input` as one batch, runs it, then every no-data batch that is due, as an idle query
/// with the default trigger would.
async fn step(h: &mut Harness, input: &[(&str, i64, i64)]) {
    h.batch(input).await;
    while h.no_data_batch().await.is_some() {}
}

#[tokio::test]
async fn stop_and_restart_between_batches_is_transparent() {
    let mut reference = Harness::new(OutputMode::Append, Some(10), TUMBLE).await.unwrap();
    for input in TUMBLE_INPUT {
        step(&mut reference, input).await;
    }

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut first = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.unwrap();
    step(&mut first, TUMBLE_INPUT[0]).await;
    step(&mut first, TUMBLE_INPUT[1]).await;
    // Stopped right after a data batch whose watermark advance makes a no-data batch due.
    first.batch(TUMBLE_INPUT[2]).await;
    let before = first.sink.batches();
    drop(first);

    // A new process: the memory stream is refilled with what was pushed before.
    let mut second = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.unwrap();
    for input in &TUMBLE_INPUT[..3] {
        second.stream.push(events(input)).unwrap();
    }
    // Nothing is read twice: the restart runs only the no-data batch the stopped run owed.
    assert_eq!(second.no_data_batch().await, Some(vec!["00:00:10,00:00:20,b,2,10".to_string()]));
    assert_eq!(second.query.recent_progress()[0].num_input_rows, 0);
    assert_eq!(second.no_data_batch().await, None);
    for input in &TUMBLE_INPUT[3..] {
        step(&mut second, input).await;
    }
    let mut combined = before;
    combined.extend(second.sink.batches());
    let combined: BTreeMap<u64, Vec<String>> = combined.into_iter().map(|(k, v)| (k, rows(&v))).collect();
    assert_eq!(combined, output(&reference.sink));
    // Watermarks and late drops are restored too: batch by batch as in the uninterrupted run.
    let summary = |p: &sluice::QueryProgress| (p.batch_id, p.watermark_ms, p.late_rows_dropped(), p.state_rows());
    let restarted: Vec<_> = second.query.recent_progress().iter().map(summary).collect();
    let uninterrupted: Vec<_> = reference.query.recent_progress().iter().map(summary).collect();
    assert_eq!(restarted[..], uninterrupted[uninterrupted.len() - restarted.len()..]);
    assert!(restarted.iter().map(|r| r.2).sum::<u64>() > 0, "the restored watermark drops late rows");
}

/// A torn newest offset log entry of a batch never committed counts as never written (see
/// `checkpoint_faults`); the entry below it is then needed, and a damaged one is named.
#[tokio::test]
async fn a_corrupted_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.unwrap();
    h.batch(TUMBLE_INPUT[0]).await;
    h.batch(TUMBLE_INPUT[1]).await;
    drop(h);
    std::fs::remove_file(dir.path().join("commits/1")).unwrap();
    std::fs::write(dir.path().join("offsets/1"), b"{ not json").unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.unwrap();
    h.stream.push(events(TUMBLE_INPUT[0])).unwrap();
    h.batch(TUMBLE_INPUT[1]).await;
    assert_eq!(h.query.last_progress().unwrap().batch_id, 1, "batch 1 is planned afresh");
    drop(h);

    std::fs::remove_file(dir.path().join("commits/1")).unwrap();
    std::fs::write(dir.path().join("offsets/1"), b"").unwrap();
    std::fs::write(dir.path().join("offsets/0"), b"{ not json").unwrap();
    let err = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.err().unwrap().to_string();
    assert!(err.contains("offsets/0") && err.contains("corrupted"), "{err}");
}

/// Found running the `checkpoint_files` fuzz target on boundary values: an offsets entry named
/// `u64::MAX` made the next batch id overflow (a panic with overflow checks, batch 0 over again
/// without), and a metadata file with 10^11 state partitions aborted the process allocating them.
#[tokio::test]
async fn checkpoint_numbers_past_their_bounds_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint).await.unwrap();
    h.batch(TUMBLE_INPUT[0]).await;
    drop(h);
    let restart = || Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, checkpoint);

    let past = dir.path().join("offsets/18446744073709551615");
    std::fs::copy(dir.path().join("offsets/0"), &past).unwrap();
    let err = restart().await.err().unwrap().to_string();
    assert!(err.contains("offsets/18446744073709551615") && err.contains("batch id past the largest"), "{err}");
    std::fs::remove_file(&past).unwrap();

    let metadata_path = dir.path().join("metadata");
    let original = std::fs::read(&metadata_path).unwrap();
    let mut metadata: serde_json::Value = sluice::checkpoint::decode_entry(&original).unwrap();
    for (partitions, shown) in [(100_000_000_000u64, "100000000000"), (0, "0")] {
        metadata["state_partitions"] = partitions.into();
        std::fs::write(&metadata_path, metadata.to_string()).unwrap();
        let err = restart().await.err().unwrap().to_string();
        assert!(
            err.contains("metadata") && err.contains(&format!("state_partitions is {shown}, not from 1 to 1000")),
            "{err}"
        );
    }

    // Restored, the checkpoint resumes where it was.
    std::fs::write(&metadata_path, original).unwrap();
    let mut h = restart().await.unwrap();
    h.stream.push(events(TUMBLE_INPUT[0])).unwrap();
    h.batch(TUMBLE_INPUT[1]).await;
    let progress = h.query.last_progress().unwrap();
    assert_eq!((progress.batch_id, progress.num_input_rows), (1, 2));
}

#[tokio::test]
async fn a_restart_with_changed_stateful_operators_is_refused_naming_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let mut h = Harness::at_checkpoint(OutputMode::Update, Some(10), TUMBLE, checkpoint).await.unwrap();
    h.batch(TUMBLE_INPUT[0]).await;
    drop(h);
    let changed = [
        // Another window size would merge 10-second windows into 1-minute results.
        TUMBLE.replace("'10 seconds'", "'1 minute'"),
        // Another aggregate changes the layout of the stored accumulator states.
        TUMBLE.replace("sum(value) AS total", "sum(value) AS total, max(value) AS top"),
        // Another grouping: the stored keys have another layout.
        "SELECT window.start AS wstart, count(*) AS cnt FROM events GROUP BY window(ts, '10 seconds')".to_string(),
    ];
    for select in &changed {
        let err = Harness::at_checkpoint(OutputMode::Update, Some(10), select, checkpoint).await.err().unwrap();
        let err = err.to_string();
        assert!(err.contains("stateful operators changed") && err.contains("new checkpoint location"), "{err}");
    }
    let err = Harness::at_checkpoint(OutputMode::Update, Some(10), &changed[0], checkpoint).await.err().unwrap();
    assert!(err.to_string().contains("1 minute") && err.to_string().contains("10 seconds"), "{err}");
    // The same query, or one that changes only its stateless part, resumes.
    let mut h = Harness::at_checkpoint(OutputMode::Update, Some(10), TUMBLE, checkpoint).await.unwrap();
    h.stream.push(events(TUMBLE_INPUT[0])).unwrap();
    assert_eq!(sorted(&h.batch(TUMBLE_INPUT[1]).await), ["00:00:00,00:00:10,a,3,7", "00:00:20,00:00:30,a,1,5"]);
}

#[tokio::test]
async fn a_checkpoint_of_count_distinct_value_lists_is_refused() {
    // Releases before count(DISTINCT) was kept value by value stored DataFusion's list of values
    // per group, and their operator lines had no layout: such a checkpoint must not be misread.
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let select = "SELECT key, count(DISTINCT value) AS d FROM events GROUP BY key";
    let mut h = Harness::at_checkpoint(OutputMode::Complete, None, select, checkpoint).await.unwrap();
    h.batch(&[("a", 1, 1), ("a", 2, 2)]).await;
    drop(h);
    let path = dir.path().join("state/operators.json");
    let lines: Vec<String> = sluice::checkpoint::decode_entry(&std::fs::read(&path).unwrap()).unwrap();
    let suffix = "; count(DISTINCT) state: an entry per group and distinct value";
    assert!(lines[0].ends_with(suffix), "{lines:?}");
    let former: Vec<&str> = lines.iter().map(|l| l.trim_end_matches(suffix)).collect();
    std::fs::write(&path, serde_json::to_string(&former).unwrap()).unwrap();
    let err = Harness::at_checkpoint(OutputMode::Complete, None, select, checkpoint).await.err().unwrap().to_string();
    assert!(err.contains("stateful operators changed") && err.contains("count(DISTINCT) state"), "{err}");
}

mod checkpoint_damage {
    use proptest::prelude::*;

    use super::*;

    /// Runs the tumbling query on a fresh checkpoint in `dir` through the first `batches` slices.
    async fn write_checkpoint(dir: &std::path::Path, batches: usize) {
        let mut h = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, dir.to_str().unwrap()).await.unwrap();
        for input in &TUMBLE_INPUT[..batches] {
            h.batch(input).await;
        }
    }

    fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files(&path));
            } else {
                out.push(path);
            }
        }
        out.sort();
        out
    }

    /// How a file is damaged.
    #[derive(Debug, Clone)]
    enum Damage {
        Truncate(usize),
        FlipBit(usize, u8),
        Replace(Vec<u8>),
        Delete,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            any::<usize>().prop_map(Damage::Truncate),
            (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(Damage::Replace),
            Just(Damage::Delete),
        ]
    }

    proptest! {
        #![proptest_config(crate::proptest_cases::config(48))]

        /// Any damage to any checkpoint file (log entries, metadata, source logs, state files)
        /// gives a restart that either runs or stops with an error, never a panic or a hang.
        #[test]
        fn a_damaged_checkpoint_file_is_an_error_or_a_result_never_a_panic(
            which in any::<prop::sample::Index>(),
            damage in damage(),
        ) {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                write_checkpoint(dir.path(), 3).await;
                let all = files(dir.path());
                let file = which.get(&all);
                let bytes = std::fs::read(file).unwrap();
                match &damage {
                    Damage::Truncate(n) => std::fs::write(file, &bytes[..n % (bytes.len() + 1)]).unwrap(),
                    Damage::FlipBit(at, bit) if !bytes.is_empty() => {
                        let mut flipped = bytes.clone();
                        flipped[at % bytes.len()] ^= 1 << bit;
                        std::fs::write(file, flipped).unwrap();
                    }
                    Damage::FlipBit(..) => {}
                    Damage::Replace(junk) => std::fs::write(file, junk).unwrap(),
                    Damage::Delete => std::fs::remove_file(file).unwrap(),
                }
                let run = async {
                    let h = Harness::at_checkpoint(OutputMode::Append, Some(10), TUMBLE, dir.path().to_str().unwrap()).await?;
                    for input in &TUMBLE_INPUT[..3] {
                        h.stream.push(events(input)).unwrap();
                    }
                    for input in &TUMBLE_INPUT[3..] {
                        h.stream.push(events(input)).unwrap();
                        h.query.run_next_batch().await?;
                    }
                    Ok::<_, sluice::SluiceError>(())
                };
                let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), run).await;
                prop_assert!(outcome.is_ok(), "{}: {damage:?} hangs", file.display());
                Ok(())
            })?;
        }
    }
}
