//! The `sluice` command line: `sluice run FILE.sql`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::{StreamContext, Trigger};

#[derive(Parser)]
#[command(name = "sluice", version, about = "Streaming SQL in the style of Spark Structured Streaming")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the continuous queries (INSERT INTO ...) of a streaming SQL file.
    Run {
        /// The SQL script.
        file: PathBuf,
        /// Checkpoint directory; a fresh temporary one when omitted. With several queries in the
        /// script, each gets the subdirectory named after its sink table.
        #[arg(long)]
        checkpoint: Option<String>,
        /// `available-now`, or a processing-time interval such as '10 seconds'. Default: the next
        /// batch as soon as the last one ends and new data is there.
        #[arg(long)]
        trigger: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { file, checkpoint, trigger } => run(file, checkpoint, trigger).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(file: PathBuf, checkpoint: Option<String>, trigger: Option<String>) -> sluice::Result<()> {
    let trigger = trigger.as_deref().map(Trigger::parse).transpose()?.unwrap_or_default();
    let sql = std::fs::read_to_string(&file).map_err(|e| sluice::SluiceError::io(&file, e))?;
    let mut ctx = StreamContext::new();
    let definitions = ctx.execute(&sql).await?;
    if definitions.is_empty() {
        return Err(sluice::SluiceError::sql(format!(
            "{} defines no continuous query; add INSERT INTO <sink table> SELECT ...",
            file.display()
        )));
    }
    let temporary = match &checkpoint {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| sluice::SluiceError::io(std::env::temp_dir(), e))?),
    };
    let root = checkpoint.unwrap_or_else(|| temporary.as_ref().expect("created above").path().display().to_string());
    let mut queries = Vec::new();
    for definition in &definitions {
        let location = if definitions.len() == 1 { root.clone() } else { format!("{root}/{}", definition.sink) };
        let mut query = ctx.start(definition, &location).await?;
        query.on_progress(|p| eprintln!("{}", p.line()));
        queries.push(query);
    }
    let stops: Vec<_> = queries.iter().map(|q| q.stop_handle()).collect();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the current batch");
            stops.iter().for_each(|s| s.stop());
        }
    });
    futures::future::try_join_all(queries.iter_mut().map(|q| q.run(trigger))).await?;
    Ok(())
}
