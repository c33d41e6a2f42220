//! The configuration of sluice's property tests: a bounded number of cases in `cargo test`, as
//! many as `PROPTEST_CASES` says for a long run (`PROPTEST_CASES=100000 cargo test --release
//! ...`, see the README's "Fuzzing" section).
//!
//! proptest reads `PROPTEST_CASES` only into a configuration whose `cases` is left at its
//! default, so a test that sets its own count would ignore it; this sets the count only when the
//! variable is not set. One file for the unit tests and the integration tests
//! (`tests/integration/main.rs` includes it with `#[path]`), so it is written without `crate::`.

use proptest::test_runner::Config;

/// A property-test configuration with `default_cases` cases, or `PROPTEST_CASES` cases when
/// that variable is set (proptest parses it and the other `PROPTEST_*` variables), and no
/// failure persistence files.
pub fn config(default_cases: u32) -> Config {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default_cases;
    }
    config
}
