//! `sluice shell`: the interactive query shell, in the manner of datafusion-cli and Flink's SQL
//! client. Statements typed at the prompt run in one [`StreamContext`]:
//!
//! - DDL and `SET` as in `sluice run` scripts;
//! - a `SELECT` over streams runs live until Ctrl-C ([`live`]); over bounded tables and the
//!   tables memory sinks write, it answers at once;
//! - `INSERT INTO <sink> SELECT ...` starts a query in the background;
//! - the shell's own statements ([`command`]): `SHOW TABLES`, `DESCRIBE`, `SHOW CREATE TABLE`,
//!   `SHOW QUERIES`, `STOP QUERY`, `EXPLAIN`, `HELP`, `QUIT`.
//!
//! The line editor ([`editor`]) keeps a history file, reads statements over several lines up to
//! their `;` and completes keywords, table and column names. Ctrl-C clears the line being typed
//! (or stops the live query), Ctrl-D on an empty line leaves, stopping every query.

mod command;
mod editor;
mod live;

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

use self::command::{split_statements, Command, HELP};
use self::editor::{Names, ShellHelper};
use crate::execution::progress::format_ms;
use crate::sink::console::show_string;
use crate::{Result, SluiceError, StreamContext, StreamingQuery, Trigger};

/// Rows a bounded `SELECT` prints at most.
const MAX_BOUNDED_ROWS: usize = 1000;

/// How long leaving the shell waits for each query to finish its batch.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of [`run`].
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    /// The history file, read at start and appended after each statement; `None` keeps no
    /// history across sessions.
    pub history: Option<PathBuf>,
    /// The directory (or `s3://BUCKET/PREFIX` URL) under which each query started by `INSERT
    /// INTO` keeps its checkpoint, in the subdirectory named after its sink table (a query started
    /// again into the same sink resumes from it). `None`: a temporary directory, removed when the
    /// shell exits.
    pub checkpoint: Option<String>,
}

/// Runs the shell on the terminal until `QUIT` or Ctrl-D, then stops every query it started.
///
/// # Errors
/// [`SluiceError::Io`] when the terminal cannot be read or the temporary checkpoint directory
/// cannot be created. Errors of statements are printed and the shell goes on.
pub async fn run(options: ShellOptions) -> Result<()> {
    let mut shell = Shell::new(options.checkpoint)?;
    let config = Config::builder().auto_add_history(false).build();
    let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::with_config(config).map_err(terminal_error)?;
    editor.set_helper(Some(ShellHelper::new(shell.names.clone())));
    if let Some(history) = &options.history {
        // A first session has no history file yet.
        let _ = editor.load_history(history);
    }
    println!(
        "sluice {}: streaming SQL. Statements end with ';'. HELP lists the commands; Ctrl-D leaves.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        let line = tokio::task::block_in_place(|| editor.readline("sluice> "));
        let text = match line {
            Ok(text) => text,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(terminal_error(e)),
        };
        if text.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text.trim());
        if let Some(history) = &options.history {
            if let Err(e) = editor.save_history(history) {
                eprintln!("warning: cannot write the history file {}: {e}", history.display());
            }
        }
        if !shell.input(&text).await {
            break;
        }
    }
    shell.stop_all().await;
    Ok(())
}

fn terminal_error(error: ReadlineError) -> SluiceError {
    SluiceError::io("the terminal", std::io::Error::other(error))
}

/// The shell's context and the queries it started.
struct Shell {
    ctx: StreamContext,
    checkpoint_root: String,
    /// The temporary checkpoint root, removed on drop.
    _temporary: Option<tempfile::TempDir>,
    names: Names,
    /// Live queries started so far, naming the next one.
    live_queries: usize,
}

impl Shell {
    fn new(checkpoint: Option<String>) -> Result<Self> {
        let (checkpoint_root, temporary) = match checkpoint {
            Some(root) => (root, None),
            None => {
                let dir = tempfile::tempdir().map_err(|e| SluiceError::io(std::env::temp_dir(), e))?;
                (dir.path().display().to_string(), Some(dir))
            }
        };
        Ok(Self {
            ctx: StreamContext::new(),
            checkpoint_root,
            _temporary: temporary,
            names: Names::default(),
            live_queries: 0,
        })
    }

    /// Runs the statements of `text`; false when one is `QUIT`. The first failing statement
    /// prints its error and skips the rest.
    async fn input(&mut self, text: &str) -> bool {
        let statements = match split_statements(text) {
            Ok(statements) => statements,
            Err(e) => {
                print_error(text, &e);
                return true;
            }
        };
        for statement in statements {
            let command = Command::parse(&statement);
            if command == Command::Quit {
                return false;
            }
            let result = self.execute(command).await;
            self.refresh_names().await;
            if let Err(e) = result {
                print_error(&statement, &e);
                break;
            }
        }
        true
    }

    async fn execute(&mut self, command: Command) -> Result<()> {
        match command {
            Command::ShowTables => self.show_tables().await,
            Command::ShowQueries => print_table(&queries_table(&self.ctx.streams().all())?),
            Command::ShowCreateTable(name) => {
                println!("{}", self.ctx.show_create_table(&name).await?);
                Ok(())
            }
            Command::Describe(name) => self.describe(&name).await,
            Command::StopQuery(id) => self.stop_query(&id).await,
            Command::Explain(statement) => self.explain(&statement).await,
            Command::Help => {
                println!("{HELP}");
                Ok(())
            }
            Command::Quit => Ok(()),
            Command::Sql(statement) => self.sql(&statement).await,
        }
    }

    async fn sql(&mut self, statement: &str) -> Result<()> {
        if !is_query(statement) {
            let definitions = self.ctx.execute(statement).await?;
            if definitions.is_empty() {
                println!("OK");
            }
            for definition in definitions {
                if definition.is_explain() {
                    println!("{}", self.ctx.explain(&definition).await?);
                } else {
                    self.start_background(&definition).await?;
                }
            }
            return Ok(());
        }
        let frame = self.ctx.sql(statement).await?;
        if !frame.is_streaming() {
            let schema: SchemaRef = std::sync::Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            print!("{}", show_string(&schema, &batches, MAX_BOUNDED_ROWS, true, None)?);
            println!("{rows} row{}", if rows == 1 { "" } else { "s" });
            return Ok(());
        }
        let (mode, why) = live::choose_output_mode(&frame).await?;
        println!("output mode {mode}: {why}");
        self.live_queries += 1;
        live::run_live(frame, mode, &format!("shell_{}", self.live_queries)).await?;
        Ok(())
    }

    /// Starts `INSERT INTO sink ...` in the background, checkpointed under the sink's name.
    async fn start_background(&self, definition: &crate::QueryDefinition) -> Result<()> {
        if let Some(running) = self.ctx.streams().active().into_iter().find(|q| q.name() == definition.name()) {
            return Err(SluiceError::sql(format!(
                "a query into '{}' is running (id {}); STOP QUERY {} first",
                definition.sink(),
                running.id(),
                running.id()
            )));
        }
        let location = format!("{}/{}", self.checkpoint_root, definition.sink());
        let query = self.ctx.start(definition, &location).await?;
        query.spawn(Trigger::default())?;
        println!("query {} started in the background: id {}", query.name(), query.id());
        Ok(())
    }

    async fn show_tables(&self) -> Result<()> {
        let rows = self
            .ctx
            .catalog()
            .await?
            .into_iter()
            .map(|t| {
                let watermark = t.watermark().map(|w| format!("{} - {} ms", w.column, w.delay_ms)).unwrap_or_default();
                vec![t.name.clone(), t.kind.to_string(), t.connector.clone(), watermark]
            })
            .collect();
        print_table(&text_table(&["name", "kind", "connector", "watermark"], rows)?)
    }

    async fn describe(&self, name: &str) -> Result<()> {
        let entry = self.ctx.catalog_entry(name).await?;
        let Some(schema) = &entry.schema else {
            println!("'{}' is a sink: it takes the columns of the query writing to it", entry.name);
            return Ok(());
        };
        let watermark = entry.watermark();
        let rows = schema
            .fields()
            .iter()
            .map(|f| {
                let marked = watermark.as_ref().filter(|w| &w.column == f.name());
                let note = marked.map(|w| format!("watermark: minus {} ms", w.delay_ms)).unwrap_or_default();
                vec![
                    f.name().clone(),
                    f.data_type().to_string(),
                    if f.is_nullable() { "YES" } else { "NO" }.into(),
                    note,
                ]
            })
            .collect();
        print_table(&text_table(&["column", "type", "nullable", "event time"], rows)?)
    }

    async fn stop_query(&self, id: &str) -> Result<()> {
        let all = self.ctx.streams().all();
        let query = all
            .iter()
            .find(|q| q.id() == id || q.name() == id)
            .or_else(|| all.iter().find(|q| id.len() >= 4 && q.id().starts_with(id)))
            .ok_or_else(|| SluiceError::sql(format!("no query '{id}'; SHOW QUERIES lists them")))?;
        if !query.is_active() {
            println!("query {} ({}) is not running", query.name(), query.id());
            return Ok(());
        }
        query.stop();
        query.await_termination_timeout(STOP_TIMEOUT).await?;
        println!("query {} ({}) stopped", query.name(), query.id());
        Ok(())
    }

    async fn explain(&self, statement: &str) -> Result<()> {
        if !is_query(statement) {
            // EXPLAIN INSERT INTO <sink> ...: the sink's output mode.
            let definitions = self.ctx.clone().execute(&format!("EXPLAIN {statement}")).await?;
            for definition in definitions.iter().filter(|d| d.is_explain()) {
                println!("{}", self.ctx.explain(definition).await?);
            }
            return Ok(());
        }
        let frame = self.ctx.clone().sql(statement).await?;
        if frame.is_streaming() {
            let (mode, why) = live::choose_output_mode(&frame).await?;
            println!("{}", frame.ctx.explain_in_mode(&frame.definition(), mode, why).await?);
        } else {
            let batches = self.ctx.session().sql(&format!("EXPLAIN {statement}")).await?.collect().await?;
            let schema =
                batches.first().map(RecordBatch::schema).unwrap_or_else(|| std::sync::Arc::new(Schema::empty()));
            print!("{}", show_string(&schema, &batches, MAX_BOUNDED_ROWS, false, None)?);
        }
        Ok(())
    }

    /// Completion's names: every table and every column.
    async fn refresh_names(&self) {
        let Ok(tables) = self.ctx.catalog().await else { return };
        let mut names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        for schema in tables.iter().filter_map(|t| t.schema.as_ref()) {
            names.extend(schema.fields().iter().map(|f| f.name().clone()));
        }
        names.sort();
        names.dedup();
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
    }

    /// Stops every running query and waits for each to finish its batch.
    async fn stop_all(&self) {
        let active = self.ctx.streams().active();
        for query in &active {
            query.stop();
        }
        for query in &active {
            match query.await_termination_timeout(STOP_TIMEOUT).await {
                Ok(true) => {}
                Ok(false) => eprintln!("query {} did not stop within {STOP_TIMEOUT:?}", query.name()),
                Err(e) => eprintln!("{e}"),
            }
        }
    }
}

/// `statement` is a query (`SELECT`, `WITH`, `VALUES`), not DDL or `INSERT`.
fn is_query(statement: &str) -> bool {
    let first = statement.trim_start().split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or_default();
    statement.trim_start().starts_with('(')
        || ["SELECT", "WITH", "VALUES"].iter().any(|k| first.eq_ignore_ascii_case(k))
}

/// SHOW QUERIES: each query's id, name, status, last batch, input rate, watermark, last error.
fn queries_table(queries: &[StreamingQuery]) -> Result<RecordBatch> {
    let rows = queries
        .iter()
        .map(|q| {
            let progress = q.last_progress();
            let error = q.exception();
            let status = match (&error, q.is_active()) {
                (Some(_), _) => "failed".to_string(),
                (None, true) => q.status().message,
                (None, false) => "stopped".to_string(),
            };
            vec![
                q.id().to_string(),
                q.name().to_string(),
                status,
                progress.as_ref().map(|p| p.batch_id.to_string()).unwrap_or_default(),
                progress.as_ref().map(|p| format!("{:.1}", p.input_rows_per_second)).unwrap_or_default(),
                progress.as_ref().and_then(|p| p.watermark_ms).map(format_ms).unwrap_or_default(),
                error.unwrap_or_default(),
            ]
        })
        .collect();
    text_table(&["id", "name", "status", "batch", "input rows/s", "watermark", "last error"], rows)
}

/// A table of text columns named `header`.
fn text_table(header: &[&str], rows: Vec<Vec<String>>) -> Result<RecordBatch> {
    let schema = Schema::new(header.iter().map(|h| Field::new(*h, DataType::Utf8, false)).collect::<Vec<_>>());
    let columns: Vec<ArrayRef> = (0..header.len())
        .map(|i| std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()))) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(std::sync::Arc::new(schema), columns)?)
}

fn print_table(table: &RecordBatch) -> Result<()> {
    if table.num_rows() == 0 {
        println!("(none)");
        return Ok(());
    }
    print!("{}", show_string(&table.schema(), std::slice::from_ref(table), usize::MAX, false, None)?);
    Ok(())
}

/// The error, and for a syntax error the statement's line with a caret under the column.
fn print_error(statement: &str, error: &SluiceError) {
    println!("error: {error}");
    if let SluiceError::SqlSyntax { line, column, .. } = error {
        if let Some(text) = statement.lines().nth((*line as usize).saturating_sub(1)) {
            println!("  {text}");
            println!("  {}^", " ".repeat((*column as usize).saturating_sub(1)));
        }
    }
}
