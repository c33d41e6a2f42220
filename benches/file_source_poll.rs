//! The cost of one file source poll (planning a batch) as the number of files already read grows:
//! a poll lists the directory but stats only the names the source does not remember, so its cost
//! is the listing plus the new files, not a stat of every file ever read. For comparison, each
//! line also times listing and stat'ing every entry, which is what a poll did before.
//!
//! ```sh
//! cargo bench --bench file_source_poll
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;
use sluice::checkpoint::CheckpointLocation;
use sluice::format::decode::DecodeOptions;
use sluice::format::Format;
use sluice::source::file::{CleanSource, FileSource, FileSourceOptions};
use sluice::source::seen_files::DEFAULT_MAX_FILE_AGE_MS;
use sluice::source::Source;

const POLLS: u32 = 50;

fn write(dir: &Path, name: &str, modified: SystemTime) {
    let path = dir.join(name);
    std::fs::write(&path, "{\"v\": 1}\n").expect("write");
    std::fs::File::options().write(true).open(&path).expect("open").set_modified(modified).expect("mtime");
}

/// The median of `POLLS` runs of `f`.
fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..POLLS).map(|_| f()).collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
    println!("files already read | poll, nothing new | poll, one new file | list + stat every entry");
    for read in [10usize, 1_000, 10_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..read {
            write(dir.path(), &format!("f{i:06}.json"), base + Duration::from_millis(i as u64));
        }
        let options = FileSourceOptions {
            dir: dir.path().to_path_buf(),
            format: Format::Json,
            max_files_per_trigger: None,
            max_file_age_ms: DEFAULT_MAX_FILE_AGE_MS,
            clean_source: CleanSource::Off,
            decode: DecodeOptions::default(),
        };
        let mut source = FileSource::try_new("events", schema.clone(), options).expect("source");
        let location = CheckpointLocation::open("memory://").expect("checkpoint");
        let mut batch = 0u64;
        let mut end = Value::from(0u64);
        let mut poll = |new_file: bool| {
            if new_file {
                write(dir.path(), &format!("new{batch:06}.json"), SystemTime::now());
            }
            let started = Instant::now();
            let next = runtime.block_on(source.plan_batch(&location, batch, &end)).expect("poll");
            let took = started.elapsed();
            runtime.block_on(source.commit(&location, batch, &next)).expect("commit");
            batch += 1;
            end = next;
            took
        };
        poll(false); // takes the `read` files
        let idle = median(|| poll(false));
        let one_new = median(|| poll(true));
        let stat_all = median(|| {
            let started = Instant::now();
            for entry in std::fs::read_dir(dir.path()).expect("list") {
                std::hint::black_box(entry.expect("entry").metadata().expect("stat"));
            }
            started.elapsed()
        });
        println!("{read:>18} | {idle:>17.1?} | {one_new:>19.1?} | {stat_all:>23.1?}");
    }
}
