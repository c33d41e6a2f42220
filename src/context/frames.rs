//! The DataFrame API's ways into a context: reading streams and tables as [`StreamFrame`]s,
//! SQL returning frames, and the tables and sinks the API's readers and writers register.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::sql::sqlparser::ast::Statement;

use super::start::plan_sql;
use super::tables::{check_connector_options, connector_schema};
use super::{as_set, StreamContext, StreamTableDef};
use crate::dataframe::{aggregation_keys, DataStreamReader, StreamFrame};
use crate::execution::StreamingQueryManager;
use crate::plan::stream_table::StreamTable;
use crate::sql::parse_script;
use crate::sql::parser::{CreateStreamTable, SluiceStatement};
use crate::{Result, SluiceError};

impl StreamContext {
    /// Starts declaring a stream from code (Spark's `readStream`): its format, options and
    /// schema, then [`DataStreamReader::load`] returns it as a [`StreamFrame`].
    ///
    /// Here a directory of JSON lines files, read to its end and kept in a memory table:
    ///
    /// ```
    /// # async fn demo() -> sluice::Result<()> {
    /// use std::sync::Arc;
    ///
    /// use arrow::array::{AsArray, RecordBatch};
    /// use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    /// use sluice::{StreamContext, Trigger};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("words-1.json"), "{\"word\": \"stream\"}\n{\"word\": \"sql\"}\n").unwrap();
    ///
    /// let mut ctx = StreamContext::new();
    /// let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::Utf8, true)]));
    /// let words = ctx.read_stream().format("json").schema(schema).load(dir.path().to_str())?;
    /// assert!(words.is_streaming());
    ///
    /// // Every file there now, then the query stops (Spark's `Trigger.AvailableNow`).
    /// let query = words.write_stream().trigger(Trigger::AvailableNow).to_table("words").start().await?;
    /// query.await_termination().await?;
    ///
    /// let rows: Vec<RecordBatch> = ctx.sql("SELECT count(*) FROM words").await?.collect().await?;
    /// assert_eq!(rows[0].column(0).as_primitive::<Int64Type>().value(0), 2);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn read_stream(&mut self) -> DataStreamReader<'_> {
        DataStreamReader::new(self)
    }

    /// Table `name` as a frame: a stream declared in SQL or by [`Self::read_stream`], a memory
    /// stream, a bounded DataFusion table, or a table a query's memory sink writes (Spark's
    /// `table`).
    ///
    /// # Errors
    /// [`SluiceError::DataFusion`] for an unknown table.
    pub async fn table(&self, name: &str) -> Result<StreamFrame> {
        let plan = self.ctx.table(TableReference::bare(name)).await?.into_unoptimized_plan();
        Ok(StreamFrame::new(self.clone(), plan))
    }

    /// Runs SQL and returns the frame of its last `SELECT` (Spark's `sql`): `CREATE TABLE`
    /// (streams and sinks, as in scripts) and `SET` take effect, statements over bounded tables
    /// run, and a `SELECT` becomes a frame — streaming when it reads a stream, to start with
    /// [`StreamFrame::write_stream`]; bounded otherwise, to [`StreamFrame::collect`]. Without a
    /// `SELECT` the frame is empty.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] / [`SluiceError::SqlSyntax`] with the statement's position;
    /// [`SluiceError::Sql`] for `INSERT INTO` a stream table (run scripts with
    /// [`Self::execute`]).
    pub async fn sql(&mut self, sql: &str) -> Result<StreamFrame> {
        let mut last = LogicalPlanBuilder::empty(false).build()?;
        for statement in parse_script(sql)? {
            let statement = match statement {
                SluiceStatement::CreateStreamTable(ddl) => {
                    self.create_stream_table(*ddl)?;
                    continue;
                }
                SluiceStatement::DataFusion(statement) => statement,
            };
            if let Some((key, value)) = as_set(&statement) {
                self.set(&key, &value).await?;
                continue;
            }
            if self.as_streaming_insert(&statement)?.is_some() {
                return Err(SluiceError::sql(
                    "sql(): INSERT INTO a stream table starts a query; run the script with execute() and start(), or \
                     write the SELECT's frame with write_stream()",
                ));
            }
            match *statement {
                datafusion::sql::parser::Statement::Statement(s) if matches!(*s, Statement::Query(_)) => {
                    let Statement::Query(query) = *s else { unreachable!("matched above") };
                    let plan = plan_sql(&self.ctx.state(), &query).await?;
                    last = self.spellings.with_query(&query).restore(plan)?;
                }
                other => {
                    let plan = self.ctx.state().statement_to_plan(other).await?;
                    self.ctx.execute_logical_plan(plan).await?.collect().await?;
                }
            }
        }
        let mut frame = StreamFrame::new(self.clone(), last);
        // Update mode into a memory table replaces a group's row by these columns.
        frame.keys = aggregation_keys(&frame.plan);
        Ok(frame)
    }

    /// The queries started in this context (Spark's `streams`).
    pub fn streams(&self) -> &StreamingQueryManager {
        &self.streams
    }

    /// Registers the stream `name` read by a connector with `options`, of `schema` (required
    /// unless the connector fixes the columns), and returns it as a frame.
    pub(crate) fn register_stream(
        &mut self,
        name: &str,
        options: BTreeMap<String, String>,
        schema: Option<SchemaRef>,
    ) -> Result<StreamFrame> {
        let connector = check_connector_options(name, &options)?;
        let schema = match (connector_schema(name, &connector, &options)?, schema) {
            (Some(fixed), Some(given)) if fixed.fields() != given.fields() => {
                return Err(SluiceError::sql(format!(
                    "stream '{name}': connector '{connector}' produces the columns {:?}; leave schema(...) out",
                    fixed.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
                )))
            }
            (Some(fixed), _) => fixed,
            (None, Some(given)) => given,
            (None, None) => {
                return Err(SluiceError::sql(format!(
                    "stream '{name}': give the schema of its rows with schema(...); sluice does not infer it"
                )))
            }
        };
        let ddl =
            CreateStreamTable { name: name.to_string(), columns: vec![], watermark: None, options, or_replace: true };
        self.register_connector_table(ddl, &connector, Some(Arc::clone(&schema)))?;
        self.stream_frame(name, schema)
    }

    /// The registered memory stream `name` as a frame.
    pub(crate) fn memory_stream_frame(&self, name: &str) -> Result<StreamFrame> {
        match self.tables.get(name) {
            Some(StreamTableDef::Memory { stream }) => self.stream_frame(name, stream.schema()),
            _ => Err(SluiceError::sql(format!(
                "read_stream().format(\"memory\"): no memory stream '{name}'; register it with register_memory_stream"
            ))),
        }
    }

    fn stream_frame(&self, name: &str, schema: SchemaRef) -> Result<StreamFrame> {
        let table = Arc::new(StreamTable::new(name, schema, 1));
        let plan = LogicalPlanBuilder::scan(TableReference::bare(name), provider_as_source(table), None)?.build()?;
        Ok(StreamFrame::new(self.clone(), plan))
    }

    /// Adds the streams `other` knows and this context does not: a frame joining or uniting frames
    /// read at different moments needs all their streams.
    pub(crate) fn adopt_streams(&mut self, other: &StreamContext) {
        for (name, def) in &other.tables {
            self.tables.entry(name.clone()).or_insert_with(|| def.clone());
        }
    }

    /// Registers (or replaces) the bounded table `name`: any DataFusion `TableProvider`, e.g. a
    /// `datafusion::datasource::MemTable` of record batches. SQL and frames read it; a stream
    /// joined with it reads it whole in every micro-batch (a stream-static join, as Spark's).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] when `name` is a stream or sink table of the context.
    pub fn register_table(&mut self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        if self.tables.contains_key(name) {
            return Err(SluiceError::sql(format!(
                "register_table: '{name}' is a stream or sink table of this context; choose another name"
            )));
        }
        self.replace_table(name, table)
    }

    /// Registers bounded table `name` with DataFusion, replacing any table of that name there.
    pub(crate) fn replace_table(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<()> {
        let name = TableReference::bare(name);
        self.ctx.deregister_table(name.clone())?;
        self.ctx.register_table(name, table)?;
        Ok(())
    }

    /// Registers sink table `name` of a connector with `options`, its columns taken from the
    /// query.
    pub(crate) fn register_sink_table(&mut self, name: &str, options: BTreeMap<String, String>) -> Result<()> {
        let connector = check_connector_options(name, &options)?;
        let ddl =
            CreateStreamTable { name: name.to_string(), columns: vec![], watermark: None, options, or_replace: true };
        self.register_connector_table(ddl, &connector, None)
    }
}
