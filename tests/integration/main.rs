//! The integration tests, one binary: every test module links sluice and DataFusion once instead
//! of once per file, which keeps a release build of the suite short.

mod common;
/// The property tests' case counts, shared with the unit tests.
#[path = "../../src/proptest_cases.rs"]
mod proptest_cases;

mod aggregates;
mod bad_input;
mod batch_time;
mod bookkeeping;
mod chained;
mod checkpoint_faults;
mod cli;
mod dataframe;
mod dedup;
mod examples;
mod file_stream;
mod group_state;
mod kafka_exactly_once;
mod kafka_faults;
mod kafka_kill;
mod kafka_source;
mod kafka_source_options;
mod nested_data;
mod nexmark;
mod output_modes;
mod partitioning;
mod progress;
mod rate_source;
mod recovery;
mod s3_checkpoint;
mod session_windows;
mod shell;
mod socket_source;
mod spark_functions;
mod spark_sql;
mod sql_fuzz;
#[cfg(feature = "rocksdb")]
mod state_memory;
mod state_work;
mod stream_join;
mod top_n;
mod ui;
mod unsupported_operations;
mod watermarks;
mod worked_example;
