//! State larger than the memory budget on the RocksDB state store: a join that buffers every bid
//! and every auction for ever (`benches/state_store/qjoin.sql`), run by `sluice bench nexmark` in
//! its own process on each store, so each process's peak resident memory is its own.

/// Runs qjoin over `events` Nexmark events on `store`, the RocksDB store with a budget of
/// `memory_bytes` (set in the script); returns the bench's JSON line.
fn run_join(events: u64, store: &str, memory_bytes: u64) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let script = std::fs::read_to_string("benches/state_store/qjoin.sql").unwrap();
    let budget = format!("SET sluice.state_store.rocksdb.memory_bytes = {memory_bytes};\n");
    std::fs::write(dir.path().join("qjoin.sql"), budget + &script).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "nexmark", "--query", "qjoin", "--json", "--state-store", store])
        .args(["--events", &events.to_string(), "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{store}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A join holding about 1.5M rows (some 300 MB of row bytes, about twenty times its 16 MiB
/// budget) completes on RocksDB with the output of the in-memory store, and its process's peak
/// resident memory grows by far less than the state does: from 400K to 1.6M events the state
/// quadruples, the in-memory process grows with it, the RocksDB one by under a quarter of that.
#[test]
fn a_join_larger_than_its_memory_budget_completes_on_rocksdb_in_bounded_memory() {
    const BUDGET: u64 = 16 << 20;
    let rss = |line: &serde_json::Value| line["peak_rss_bytes"].as_u64().unwrap();
    let small = run_join(400_000, "rocksdb", BUDGET);
    let large = run_join(1_600_000, "rocksdb", BUDGET);
    let memory = run_join(1_600_000, "memory", BUDGET);
    assert_eq!(large["output_rows"], memory["output_rows"]);
    assert!(large["output_rows"].as_u64().unwrap() > 1_400_000, "{large}");
    let (grown_rocksdb, grown_memory) =
        (rss(&large).saturating_sub(rss(&small)), rss(&memory).saturating_sub(rss(&small)));
    eprintln!(
        "peak RSS: rocksdb {} MiB at 400K events, {} MiB at 1.6M; memory {} MiB at 1.6M",
        rss(&small) >> 20,
        rss(&large) >> 20,
        rss(&memory) >> 20
    );
    assert!(grown_memory > 200 << 20, "the in-memory store holds the state: {memory}");
    assert!(grown_rocksdb * 4 < grown_memory, "RocksDB grew by {grown_rocksdb} bytes, memory by {grown_memory}");
}
