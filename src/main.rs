//! The `sluice` command line: `sluice run FILE.sql`, `sluice shell` (also `sluice` alone),
//! `sluice produce --topic T FILE...`, `sluice bench nexmark`.

mod bench_nexmark;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sluice::kafka::{produce_files, ProduceOptions};
use sluice::monitoring::{Endpoints, HttpServer, LiveUi, ProgressFile, PrometheusMetrics};
use sluice::{SluiceError, StopHandle, StreamContext, Trigger};

#[derive(Parser)]
#[command(name = "sluice", version, about = "Streaming SQL in the style of Spark Structured Streaming")]
struct Cli {
    /// Without a command, the shell starts.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the continuous queries (INSERT INTO ...) of a streaming SQL file.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Checkpoint directory, or `s3://BUCKET/PREFIX` (credentials, region and endpoint from
        /// the AWS_* environment variables); a fresh temporary directory when omitted. With
        /// several queries in the script, each gets the subdirectory named after its sink table.
        #[arg(long)]
        checkpoint: Option<String>,
        /// `available-now`, `once`, or a processing-time interval such as '10 seconds'. Default:
        /// the next batch as soon as the last one ends and new data is there.
        #[arg(long)]
        trigger: Option<String>,
        /// Appends every batch's progress report (Spark's `StreamingQueryProgress` JSON) to this
        /// file, one line per report.
        #[arg(long, value_name = "FILE")]
        progress: Option<PathBuf>,
        /// Serves Prometheus metrics of every query at http://ADDRESS/metrics while they run,
        /// e.g. `127.0.0.1:9090`.
        #[arg(long, value_name = "ADDRESS")]
        metrics: Option<String>,
        /// Serves a live web UI of every query at http://ADDRESS/ while they run (charts, plan,
        /// last error; updated as batches complete), e.g. `127.0.0.1:4040`. May be the address
        /// of `--metrics`: one server then serves both.
        #[arg(long, value_name = "ADDRESS")]
        ui: Option<String>,
        /// Where new queries keep their state: `memory` (the default) or `rocksdb` (on the local
        /// disk, for state larger than memory; a build with the `rocksdb` feature). As `SET
        /// sluice.state_store` at the top of the script; a checkpoint keeps the store it was
        /// first started with.
        #[arg(long, value_name = "STORE", value_parser = ["memory", "rocksdb"])]
        state_store: Option<String>,
    },
    /// The interactive query shell: DDL, live SELECTs over streams, INSERT INTO in the
    /// background, SHOW TABLES / QUERIES, DESCRIBE, EXPLAIN, STOP QUERY (HELP lists them).
    Shell {
        /// The history file. Default: ~/.sluice_history.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// The directory (or `s3://BUCKET/PREFIX`) under which each query started by INSERT INTO
        /// keeps its checkpoint (in the subdirectory named after its sink); a temporary directory,
        /// removed on exit, when omitted.
        #[arg(long, value_name = "DIR")]
        checkpoint: Option<String>,
    },
    /// Writes JSON lines files (.gz too) into a Kafka topic, one message per line: partitions
    /// round robin, or by the hash of the --key column.
    Produce {
        /// The brokers, `HOST:PORT[,HOST:PORT...]`.
        #[arg(long, value_name = "HOST:PORT")]
        bootstrap_servers: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Creates the topic with N partitions if it does not exist (otherwise it must).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// The JSON field whose value keys each message.
        #[arg(long, value_name = "COLUMN")]
        key: Option<String>,
        /// The files, in the order their lines are written.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Benchmarks: `sluice bench nexmark`.
    Bench {
        #[command(subcommand)]
        suite: BenchSuite,
    },
}

#[derive(Subcommand)]
enum BenchSuite {
    /// Runs the Nexmark queries of sql/nexmark/ on generated events into a discarding sink and
    /// prints, per query, events, wall seconds, events/s, events per CPU second, micro-batch
    /// p50/p99, peak memory and the generator's own events/s; with --rate, end-to-end latency.
    Nexmark(bench_nexmark::BenchOptions),
}

/// mimalloc instead of glibc malloc: the state partitions allocate on several threads at once,
/// where glibc's arenas serialized them (see `benches/parallel_events.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // `RUST_LOG` chooses what is logged; by default, from info up: a line per batch, and warnings
    // (a source that cannot replay, a failed clean-up) that an errors-only default would hide.
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Shell { history: None, checkpoint: None });
    // In the shell a log line per batch would scroll the live result away: warnings only.
    let level = match command {
        // A benchmark's log would cost time and hide its figures: warnings only.
        Command::Shell { .. } | Command::Bench { .. } => tracing_subscriber::filter::LevelFilter::WARN,
        _ => tracing_subscriber::filter::LevelFilter::INFO,
    };
    let filter = tracing_subscriber::EnvFilter::builder().with_default_directive(level.into()).from_env_lossy();
    // Colours only on a terminal: a log file or a test reading stderr gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match command {
        Command::Shell { history, checkpoint } => {
            let history =
                history.or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".sluice_history")));
            sluice::shell::run(sluice::shell::ShellOptions { history, checkpoint })
                .await
                .map_err(|e| (PathBuf::from("shell"), e))
        }
        Command::Run { file, checkpoint, trigger, progress, metrics, ui, state_store } => {
            let reports = Reports { progress, metrics, ui };
            run(&file, checkpoint, trigger, state_store, reports).await.map_err(|e| (file, e))
        }
        Command::Bench { suite: BenchSuite::Nexmark(options) } => {
            bench_nexmark::run(&options).await.map_err(|e| (options.dir.clone(), e))
        }
        Command::Produce { bootstrap_servers, topic, partitions, key, files } => {
            let options = ProduceOptions { bootstrap_servers, topic, partitions, key };
            match produce_files(&options, &files).await {
                Ok(count) => {
                    eprintln!("wrote {count} messages to topic '{}'", options.topic);
                    Ok(())
                }
                Err(e) => Err((files[0].clone(), e)),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((file, e)) => {
            eprintln!("error: {}", describe(&file, &e));
            ExitCode::FAILURE
        }
    }
}

/// The error as the user reads it: a syntax error as `FILE:LINE:COLUMN: ...`, as compilers write
/// it, so editors can jump to it.
fn describe(file: &Path, error: &SluiceError) -> String {
    match error {
        SluiceError::SqlSyntax { line, column, .. } => format!("{}:{line}:{column}: {error}", file.display()),
        other => other.to_string(),
    }
}

/// Where `sluice run` reports on its queries besides the log.
struct Reports {
    /// `--progress FILE`.
    progress: Option<PathBuf>,
    /// `--metrics ADDRESS`.
    metrics: Option<String>,
    /// `--ui ADDRESS`.
    ui: Option<String>,
}

impl Reports {
    /// The HTTP servers of `--metrics` and `--ui`: one when both name the same address. Started
    /// before the script is read, so that a bad address fails at once.
    fn serve(&self, metrics: &Arc<PrometheusMetrics>, ui: &Arc<LiveUi>) -> sluice::Result<Vec<HttpServer>> {
        let mut servers = Vec::new();
        let shared = self.metrics.is_some() && self.metrics == self.ui;
        if let Some(address) = &self.metrics {
            let ui = shared.then(|| ui.clone());
            servers.push(sluice::monitoring::serve(address, Endpoints { metrics: Some(metrics.clone()), ui })?);
        }
        if let Some(address) = self.ui.as_ref().filter(|_| !shared) {
            servers.push(sluice::monitoring::serve_ui(address, ui.clone())?);
        }
        Ok(servers)
    }
}

async fn run(
    file: &Path,
    checkpoint: Option<String>,
    trigger: Option<String>,
    state_store: Option<String>,
    reports: Reports,
) -> sluice::Result<()> {
    let trigger = trigger.as_deref().map(Trigger::parse).transpose()?.unwrap_or_default();
    let progress_file = reports.progress.as_ref().map(|p| ProgressFile::append(p).map(Arc::new)).transpose()?;
    let metrics = Arc::new(PrometheusMetrics::new());
    let ui = Arc::new(LiveUi::new());
    let _servers = reports.serve(&metrics, &ui)?;
    let sql = std::fs::read_to_string(file).map_err(|e| SluiceError::io(file, e))?;
    let mut ctx = StreamContext::new();
    if let Some(store) = &state_store {
        ctx.set("sluice.state_store", store).await?;
    }
    let (explained, definitions): (Vec<_>, Vec<_>) = ctx.execute(&sql).await?.into_iter().partition(|d| d.is_explain());
    for definition in &explained {
        println!("{}", ctx.explain(definition).await?);
    }
    if definitions.is_empty() && !explained.is_empty() {
        return Ok(());
    }
    if definitions.is_empty() {
        return Err(SluiceError::sql(format!(
            "{} defines no continuous query; add INSERT INTO <sink table> SELECT ...",
            file.display()
        )));
    }
    let temporary = match &checkpoint {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| SluiceError::io(std::env::temp_dir(), e))?),
    };
    let root = checkpoint.unwrap_or_else(|| temporary.as_ref().expect("created above").path().display().to_string());
    // Every query is planned and its sink checked before the first one runs a batch.
    let mut queries = Vec::new();
    let several = definitions.len() > 1;
    for definition in &definitions {
        let location = if several { format!("{root}/{}", definition.sink()) } else { root.clone() };
        let query = ctx.start(definition, &location).await?;
        if let Some(file) = &progress_file {
            query.add_listener(file.clone());
        }
        if reports.metrics.is_some() {
            query.add_listener(metrics.clone());
        }
        if reports.ui.is_some() {
            ui.watch(&query);
        }
        queries.push(query);
    }
    stop_on_signals(queries.iter().map(|q| q.stop_handle()).collect());
    futures::future::try_join_all(queries.iter().map(|q| q.run(trigger))).await?;
    Ok(())
}

/// Ctrl-C (SIGINT) and SIGTERM (sent by `kill`, systemd, Kubernetes, ...) both stop every query
/// after its current batch, so the last batch is committed and the process exits 0.
fn stop_on_signals(stops: Vec<StopHandle>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => signal.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("stopping after the current batch");
        stops.iter().for_each(|s| s.stop());
    });
}
