//! A `SELECT` over streams run live at the prompt: the query starts in the background with a
//! sink that hands each batch to the shell, which shows the result as it changes (append: each
//! batch's new rows; update / complete: the whole result table, redrawn in place) under a status
//! line, until Ctrl-C stops the query.

use std::io::Write;
use std::sync::Arc;

use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::LogicalPlan;
use tokio::sync::mpsc;

use crate::execution::progress::format_ms;
use crate::plan::stage::Stage;
use crate::plan::OutputMode;
use crate::sink::console::show_string;
use crate::sink::memory_table::MemoryTable;
use crate::sink::Sink;
use crate::{QueryProgress, Result, StreamFrame, StreamingQueryListener};

/// Rows of the result table shown at most; the status line says how many there are.
const MAX_ROWS: usize = 30;

/// What the running query tells the view.
enum Event {
    /// A batch's output rows.
    Rows(u64, Vec<RecordBatch>),
    /// A batch's progress report, after its commit.
    Progress(Box<QueryProgress>),
}

/// The output mode the shell runs `frame` in, and why: complete for an aggregation (the whole
/// result table, redrawn each batch), append otherwise (each row once); the next mode that
/// starting it would accept when that one is refused.
///
/// # Errors
/// The refusal of the first mode tried when no mode can run the query.
pub(crate) async fn choose_output_mode(frame: &StreamFrame) -> Result<(OutputMode, &'static str)> {
    let aggregates = frame.plan.exists(|node| Ok(matches!(node, LogicalPlan::Aggregate(_))))?
        || frame.stages.iter().any(|s| matches!(s, Stage::GroupsWithState { .. }));
    let candidates: [(OutputMode, &'static str); 2] = if aggregates {
        [
            (OutputMode::Complete, "the query aggregates: the shell redraws the whole result table each batch"),
            (
                OutputMode::Update,
                "the query aggregates and complete mode cannot run it: the shell shows each batch's changes",
            ),
        ]
    } else {
        [
            (OutputMode::Append, "no aggregation: each row is final when it arrives and is shown once"),
            (OutputMode::Update, "append mode cannot run the query: the shell shows each batch's changes"),
        ]
    };
    let mut refusal = None;
    for (mode, why) in candidates {
        match frame.ctx.explain_in_mode(&frame.definition(), mode, why).await {
            Ok(_) => return Ok((mode, why)),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    Err(refusal.expect("two modes were tried"))
}

/// Runs `frame` in `mode` under query name `name` and shows its result until Ctrl-C or the
/// query's end, then stops it.
///
/// # Errors
/// What starting the query returns; a failure of the query is shown, not returned.
pub(crate) async fn run_live(frame: StreamFrame, mode: OutputMode, name: &str) -> Result<()> {
    let schema: SchemaRef = Arc::new(frame.plan.schema().as_arrow().clone());
    let keys = frame.keys.clone();
    let (events, mut received) = mpsc::unbounded_channel();
    let rows = events.clone();
    // Registered with the manager before the query starts, so that no batch's report is missed.
    let streams = frame.ctx.streams().clone();
    let listener: Arc<dyn StreamingQueryListener> = Arc::new(Reports { name: name.to_string(), events });
    streams.add_listener(Arc::clone(&listener));
    let query = frame
        .write_stream()
        .output_mode(mode)
        .query_name(name)
        .foreach_batch(move |id, batches| {
            // The shell may have stopped listening; the batch is then simply not shown.
            let _ = rows.send(Event::Rows(id, batches.to_vec()));
            Ok(())
        })
        .start()
        .await;
    let query = match query {
        Ok(query) => query,
        Err(e) => {
            streams.remove_listener(&listener);
            return Err(e);
        }
    };
    println!("query {name} ({}) started in {mode} mode; Ctrl-C stops it", query.id());
    let mut view = View::new(mode, schema, keys);
    // Listening from here on: a Ctrl-C between two events is not missed.
    let interrupted = tokio::signal::ctrl_c();
    let ended = query.await_termination();
    tokio::pin!(interrupted, ended);
    loop {
        tokio::select! {
            _ = &mut interrupted => break,
            event = received.recv() => match event {
                Some(Event::Rows(id, batches)) => view.rows(id, &batches)?,
                Some(Event::Progress(progress)) => view.progress(&progress)?,
                None => break,
            },
            _ = &mut ended => break,
        }
    }
    query.stop();
    let ended = query.await_termination().await;
    streams.remove_listener(&listener);
    if let Err(e) = ended {
        println!("\n{e}");
    }
    println!("\nquery {name} stopped");
    Ok(())
}

/// Hands the progress reports of the live query `name` to the view.
struct Reports {
    name: String,
    events: mpsc::UnboundedSender<Event>,
}

impl StreamingQueryListener for Reports {
    fn on_query_progress(&self, progress: &QueryProgress) {
        if progress.name == self.name {
            // The shell may have stopped listening; the report is then simply not shown.
            let _ = self.events.send(Event::Progress(Box::new(progress.clone())));
        }
    }
}

/// The result as shown: in append mode the rows printed so far scroll away; otherwise the table
/// (kept as a memory sink keeps it) is redrawn in place with the status line under it.
struct View {
    mode: OutputMode,
    schema: SchemaRef,
    table: MemoryTable,
    sink: Box<dyn Sink>,
    /// Lines drawn since the last prompt output that a redraw replaces.
    drawn: usize,
}

impl View {
    fn new(mode: OutputMode, schema: SchemaRef, keys: Vec<String>) -> Self {
        let table = MemoryTable::new(schema.clone());
        let sink = Box::new(table.sink(mode, keys));
        Self { mode, schema, table, sink, drawn: 0 }
    }

    fn rows(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        if self.mode != OutputMode::Append {
            return self.sink.add_batch(batch_id, &self.schema, batches);
        }
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        self.erase();
        print!("{}", show_string(&self.schema, batches, MAX_ROWS, true, None)?);
        Ok(())
    }

    fn progress(&mut self, progress: &QueryProgress) -> Result<()> {
        let mut text = String::new();
        if self.mode != OutputMode::Append {
            let rows = sorted(&self.schema, &self.table.rows())?;
            text.push_str(&show_string(&self.schema, std::slice::from_ref(&rows), MAX_ROWS, true, None)?);
        }
        text.push_str(&status_line(progress));
        self.erase();
        print!("{text}");
        let _ = std::io::stdout().flush();
        self.drawn = text.lines().count();
        Ok(())
    }

    /// Moves the cursor back to the first line the last redraw drew and clears from there.
    fn erase(&mut self) {
        if self.drawn > 1 {
            print!("\x1b[{}A", self.drawn - 1);
        }
        if self.drawn > 0 {
            print!("\r\x1b[J");
        }
        self.drawn = 0;
    }
}

/// `batch 3 | 120 rows in, 2400 rows/s | watermark 2013-01-01T05:00:00.000Z | state 88 rows`.
fn status_line(p: &QueryProgress) -> String {
    let watermark = p.watermark_ms.map_or_else(|| "none".to_string(), format_ms);
    let state: u64 = p.state_operators.iter().map(|s| s.num_rows_total).sum();
    format!(
        "batch {} | {} rows in, {:.0} rows/s | watermark {watermark} | state {state} rows",
        p.batch_id, p.num_input_rows, p.input_rows_per_second
    )
}

/// `batches` as one batch with its rows in ascending order of all columns, so that a redrawn
/// table keeps its rows in place; in arrival order when a column has no order (e.g. a map).
fn sorted(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    let all = concat_batches(schema, batches)?;
    let fields = all.columns().iter().map(|c| SortField::new(c.data_type().clone())).collect();
    let Ok(converter) = RowConverter::new(fields) else { return Ok(all) };
    let rows = converter.convert_columns(all.columns())?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by(|a, b| rows.row(*a as usize).cmp(&rows.row(*b as usize)));
    Ok(take_record_batch(&all, &arrow::array::UInt32Array::from(order))?)
}
