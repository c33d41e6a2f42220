//! `StreamContext`: the catalog of stream tables and the entry point that turns streaming SQL into
//! [`StreamingQuery`]s.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan, Operator, SetVariable};
use datafusion::optimizer::Optimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self as sqlast, Insert, Query, Statement, TableObject};

use crate::checkpoint::CheckpointLocation;
use crate::execution::query::{QueryParts, QuerySource};
use crate::execution::recovery::{check_state_layout, check_stateful_operators, load_or_create_metadata};
use crate::execution::StreamingQuery;
use crate::format::decode::{sql_type_name, DecodeOptions};
use crate::format::{BadData, Format};
use crate::operator::group_state::{erase, GroupState, GroupStateTimeout};
use crate::operator::watermark::{MultipleWatermarkPolicy, WatermarkSpec, WatermarkTracker, WATERMARK_DELAY_METADATA};
use crate::plan::batch_time::{with_batch_clock, BatchClock};
use crate::plan::ordered_merge::ordered_merges;
use crate::plan::physical::{OperatorRegistry, StreamingQueryPlanner};
use crate::plan::stage::Stage;
use crate::plan::stream_table::StreamTable;
use crate::plan::time_range::interval_literal_ms;
use crate::plan::window::parse_duration_ns;
use crate::plan::{checks, dedup, fingerprint, incremental, join, stage, OutputMode};
use crate::sink::console::ConsoleSink;
use crate::sink::file::FileSink;
use crate::sink::kafka::{KafkaSink, KAFKA_SINK_OPTIONS};
use crate::sink::Sink;
use crate::source::file::{CleanSource, FileSource, FileSourceOptions};
use crate::source::kafka::{KafkaColumns, KafkaSource, KafkaSourceOptions, CLIENT_OPTION_PREFIX, KAFKA_SOURCE_OPTIONS};
use crate::source::memory::{MemorySource, MemoryStream};
use crate::source::rate::{rate_schema, RateSource, RateSourceOptions};
use crate::source::seen_files::DEFAULT_MAX_FILE_AGE_MS;
use crate::source::socket::{socket_schema, SocketSource, SocketSourceOptions};
use crate::source::Source;
use crate::sql::functions;
use crate::sql::generators::{explain_map_explode, rewrite_generators};
use crate::sql::parse_script;
use crate::sql::parser::{normalize, CreateStreamTable, SluiceStatement};
use crate::sql::rewrite::rewrite_windows;
use crate::sql::settings::Setting;
use crate::sql::spelling::Spellings;
use crate::state::store::MAX_STATE_PARTITIONS;
use crate::{Result, SluiceError};

/// A stream table: how to open it as a source and as a sink.
#[derive(Debug, Clone)]
enum StreamTableDef {
    /// Declared in SQL with a connector.
    Connector { ddl: Box<CreateStreamTable>, schema: Option<SchemaRef>, watermark: Option<WatermarkSpec> },
    /// Registered from Rust.
    Memory { stream: MemoryStream, watermark: Option<WatermarkSpec> },
    /// A sink registered from Rust.
    Sink { sink: SinkFactory, mode: OutputMode },
}

/// Makes a fresh sink for each query that writes to a Rust-registered sink table.
#[derive(Clone)]
struct SinkFactory(Arc<dyn Fn() -> Box<dyn Sink> + Send + Sync>);

impl std::fmt::Debug for SinkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkFactory")
    }
}

/// A continuous query defined by a script (`INSERT INTO sink SELECT ...`), not yet started.
/// Stateful operators that SQL cannot express are added from Rust, applied in order to the
/// query's rows before they reach the sink.
#[derive(Debug, Clone)]
pub struct QueryDefinition {
    /// The sink table.
    pub sink: String,
    /// The query.
    pub query: Query,
    /// Operators applied to the query's rows, in order.
    pub stages: Vec<Stage>,
}

impl QueryDefinition {
    /// Spark's `dropDuplicates(keys)` on the query's rows (SEMANTICS §3): a key's first row is
    /// emitted; with the event-time column among `keys` a key leaves the state once the
    /// watermark passes it, otherwise it stays forever.
    pub fn drop_duplicates(mut self, keys: &[&str]) -> Self {
        self.stages.push(Stage::DropDuplicates { keys: keys.iter().map(|k| k.to_string()).collect() });
        self
    }

    /// Spark's `dropDuplicatesWithinWatermark(keys)` (SEMANTICS §3): a key's first row is
    /// emitted and the key expires at its first event time plus the watermark delay. Starting the
    /// query fails with [`SluiceError::Sql`] when its rows carry no watermark.
    pub fn drop_duplicates_within_watermark(mut self, keys: &[&str]) -> Self {
        self.stages.push(Stage::DropDuplicatesWithinWatermark { keys: keys.iter().map(|k| k.to_string()).collect() });
        self
    }

    /// Spark's `flatMapGroupsWithState`: `function(key values, the key's rows of the batch,
    /// state)` returns rows of `output` (one `Vec<ScalarValue>` per row, in column order). State
    /// `S` is serialized with serde into the checkpoint. See [`crate::operator::group_state`] for
    /// the call order and the timeouts. The sink's output mode must be append or update.
    pub fn flat_map_groups_with_state<S, F>(
        mut self,
        keys: &[&str],
        output: SchemaRef,
        timeout: GroupStateTimeout,
        function: F,
    ) -> Self
    where
        S: serde::Serialize + serde::de::DeserializeOwned + 'static,
        F: Fn(&[ScalarValue], &RecordBatch, &mut GroupState<S>) -> Result<Vec<Vec<ScalarValue>>>
            + Send
            + Sync
            + 'static,
    {
        self.stages.push(Stage::GroupsWithState {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            function: erase(function),
            timeout,
            output,
        });
        self
    }
}

/// The catalog of stream tables and bounded DataFusion tables, and the factory of streaming
/// queries. Equivalent of Spark's `SparkSession` for streaming.
pub struct StreamContext {
    ctx: SessionContext,
    tables: BTreeMap<String, StreamTableDef>,
    state_partitions: usize,
    watermark_policy: MultipleWatermarkPolicy,
    /// `spark.sql.session.timeZone`, for the console sink (functions read DataFusion's copy).
    time_zone: Option<String>,
    /// `sluice.sql.spark_functions` was set.
    spark_functions: bool,
    spellings: Spellings,
}

impl Default for StreamContext {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StreamContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamContext").field("tables", &self.tables.keys().collect::<Vec<_>>()).finish()
    }
}

/// DataFusion session settings for streaming. Parallelism comes from the input partitions of the
/// stream scans and the state partitions of the stateful operators, routed in a defined order; a
/// target of one partition keeps DataFusion from adding repartitions of its own, whose order
/// would vary from run to run (a replayed batch writes identical files). Dynamic filters are off:
/// the plan is executed once per batch, and a filter derived from one batch must not prune the
/// next.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_target_partitions(1).with_information_schema(true);
    config.options_mut().optimizer.enable_dynamic_filter_pushdown = false;
    config
}

impl StreamContext {
    /// An empty context. State partitions default to the number of cores (DESIGN §4).
    pub fn new() -> Self {
        Self {
            ctx: functions::new_session(session_config()),
            tables: BTreeMap::new(),
            state_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_STATE_PARTITIONS),
            watermark_policy: MultipleWatermarkPolicy::Min,
            time_zone: None,
            spark_functions: false,
            spellings: Spellings::default(),
        }
    }

    /// The DataFusion context holding the bounded tables.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Sets how the watermarks of several inputs combine (default `Min`).
    pub fn set_watermark_policy(&mut self, policy: MultipleWatermarkPolicy) {
        self.watermark_policy = policy;
    }

    /// Sets an option by its Spark key (`spark.sql.streaming.multipleWatermarkPolicy`,
    /// `spark.sql.session.timeZone`, `spark.sql.shuffle.partitions`), sluice key
    /// (`sluice.sql.spark_functions`) or DataFusion key (`datafusion.*`), as `SET key = 'value'`
    /// does in a script. See [`crate::sql::settings`]. Applies to queries started afterwards.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for an unknown key (naming the accepted ones) or a bad value.
    pub async fn set(&mut self, key: &str, value: &str) -> Result<()> {
        // Through DataFusion's own SET, which also updates the functions that read the config.
        let ctx = self.ctx.clone();
        let set_datafusion = |variable: &str, value: &str| {
            let set = SetVariable { variable: variable.to_string(), value: value.to_string() };
            let plan = LogicalPlan::Statement(datafusion::logical_expr::Statement::SetVariable(set));
            let ctx = ctx.clone();
            async move { ctx.execute_logical_plan(plan).await.map(|_| ()) }
        };
        match Setting::parse(key, value)? {
            Setting::WatermarkPolicy(policy) => self.watermark_policy = policy,
            Setting::StatePartitions(n) => self.state_partitions = n,
            Setting::TimeZone(tz) => {
                set_datafusion("datafusion.execution.time_zone", &tz).await?;
                self.time_zone = Some(tz);
            }
            Setting::SparkFunctions(true) if !self.spark_functions => {
                functions::prefer_spark_functions(&self.ctx)?;
                self.spark_functions = true;
            }
            Setting::SparkFunctions(on) if on != self.spark_functions => {
                return Err(SluiceError::sql(format!(
                    "SET {key} = 'false': Spark's functions replaced DataFusion's in this session; start a new one"
                )))
            }
            Setting::SparkFunctions(_) => {}
            Setting::DataFusion { key, value } => set_datafusion(&key, &value).await?,
        }
        Ok(())
    }

    /// Registers a stream fed from Rust, with an optional watermark `(column, delay ms)`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] when the watermark column is missing or not a timestamp.
    pub fn register_memory_stream(
        &mut self,
        name: &str,
        schema: SchemaRef,
        watermark: Option<(&str, i64)>,
    ) -> Result<MemoryStream> {
        let watermark = watermark.map(|(c, d)| WatermarkSpec { column: c.to_string(), delay_ms: d });
        let schema = mark_event_time(name, schema, watermark.as_ref())?;
        let stream = MemoryStream::new(schema);
        self.tables.insert(name.to_string(), StreamTableDef::Memory { stream: stream.clone(), watermark });
        Ok(stream)
    }

    /// Registers a sink table written by Rust code; `make` builds the sink of each query.
    pub fn register_sink(
        &mut self,
        name: &str,
        mode: OutputMode,
        make: impl Fn() -> Box<dyn Sink> + Send + Sync + 'static,
    ) {
        self.tables.insert(name.to_string(), StreamTableDef::Sink { sink: SinkFactory(Arc::new(make)), mode });
    }

    /// Runs a script: DDL takes effect at once; each `INSERT INTO <stream table>` is returned as a
    /// query to start with [`Self::start`]. Other statements run as DataFusion runs them.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the statement's line and column for invalid SQL, unknown
    /// tables or options.
    pub async fn execute(&mut self, sql: &str) -> Result<Vec<QueryDefinition>> {
        let mut queries = Vec::new();
        for statement in parse_script(sql)? {
            match statement {
                SluiceStatement::CreateStreamTable(ddl) => self.create_stream_table(*ddl)?,
                SluiceStatement::DataFusion(statement) => {
                    if let Some((key, value)) = as_set(&statement) {
                        self.set(&key, &value).await?;
                        continue;
                    }
                    if let Some(q) = self.as_streaming_insert(&statement)? {
                        queries.push(q);
                        continue;
                    }
                    let plan = self.ctx.state().statement_to_plan(*statement).await?;
                    if !StreamTable::sources_of(&plan).is_empty() {
                        return Err(SluiceError::sql(
                            "a query over a stream must be written as INSERT INTO <stream table> SELECT ...",
                        ));
                    }
                    self.ctx.execute_logical_plan(plan).await?.collect().await?;
                }
            }
        }
        Ok(queries)
    }

    fn create_stream_table(&mut self, ddl: CreateStreamTable) -> Result<()> {
        for column in &ddl.columns {
            self.spellings.note(&column.name);
        }
        if self.tables.contains_key(&ddl.name) && !ddl.or_replace {
            return Err(SluiceError::sql(format!("table '{}' already exists; use CREATE OR REPLACE TABLE", ddl.name)));
        }
        let connector = ddl.options.get("connector").map(|c| c.to_ascii_lowercase()).ok_or_else(|| {
            SluiceError::sql(format!(
                "table '{}' needs a connector option, e.g. WITH (connector = 'file', ...)",
                ddl.name
            ))
        })?;
        let kafka_options = [KAFKA_SOURCE_OPTIONS, KAFKA_SINK_OPTIONS].concat();
        let allowed: &[&str] = match connector.as_str() {
            "file" => &[
                "connector",
                "path",
                "format",
                "max_files_per_trigger",
                "max_file_age",
                "clean_source",
                "source_archive_dir",
                "bad_data",
                "header",
                "output_mode",
            ],
            "console" => &["connector", "num_rows", "truncate", "output_mode"],
            "rate" => &["connector", "rows_per_second", "ramp_up_time", "num_partitions"],
            "socket" => &["connector", "host", "port", "bad_data"],
            "kafka" => &kafka_options,
            other => {
                return Err(SluiceError::sql(format!(
                    "table '{}': unknown connector '{other}'; built in: 'file', 'console', 'rate', 'socket', 'kafka'",
                    ddl.name
                )))
            }
        };
        // Kafka's client settings pass through under `kafka.` (librdkafka checks them).
        let pass_through = |k: &str| connector == "kafka" && k.starts_with(CLIENT_OPTION_PREFIX);
        if let Some(unknown) = ddl.options.keys().find(|k| !allowed.contains(&k.as_str()) && !pass_through(k)) {
            return Err(SluiceError::sql(format!(
                "table '{}': unknown option '{unknown}' for connector '{connector}'; accepted: {}",
                ddl.name,
                allowed.join(", ")
            )));
        }
        // Options are checked now, so that a bad one fails the script before any query starts.
        match connector.as_str() {
            "rate" => drop(RateSourceOptions::parse(&ddl.name, &ddl.options)?),
            "socket" => drop(SocketSourceOptions::parse(&ddl.name, &ddl.options)?),
            "kafka" => drop(KafkaSourceOptions::parse(&ddl.name, &ddl.options)?),
            _ => {}
        }
        let schema = match connector_schema(&connector) {
            Some(schema) => Some(self.check_connector_columns(&ddl, &connector, schema)?),
            None if ddl.columns.is_empty() => None,
            None => Some(self.declared_schema(&ddl)?),
        };
        let (schema, watermark) = match schema {
            None if ddl.watermark.is_some() => {
                return Err(SluiceError::sql(format!("table '{}': a WATERMARK needs declared columns", ddl.name)));
            }
            None => (None, None),
            Some(schema) => {
                let watermark =
                    ddl.watermark.as_ref().map(|w| self.watermark_spec(&ddl.name, &schema, w)).transpose()?;
                (Some(mark_event_time(&ddl.name, schema, watermark.as_ref())?), watermark)
            }
        };
        if let (Some(schema), "kafka") = (&schema, connector.as_str()) {
            let format = KafkaSourceOptions::parse(&ddl.name, &ddl.options)?.format;
            drop(KafkaColumns::new(&ddl.name, schema.clone(), format)?);
        }
        if let Some(schema) = &schema {
            // Registered for planning only; every query scans its own StreamTable.
            self.ctx.deregister_table(ddl.name.as_str())?;
            self.ctx.register_table(ddl.name.as_str(), Arc::new(StreamTable::new(&ddl.name, schema.clone(), 1)))?;
        }
        self.tables.insert(ddl.name.clone(), StreamTableDef::Connector { ddl: Box::new(ddl), schema, watermark });
        Ok(())
    }

    /// The columns of a connector that fixes them (`rate`, `socket`): those declared, if any, must
    /// be exactly the connector's, so that a script states what it reads without changing it.
    fn check_connector_columns(
        &self,
        ddl: &CreateStreamTable,
        connector: &str,
        schema: SchemaRef,
    ) -> Result<SchemaRef> {
        if ddl.columns.is_empty() {
            return Ok(schema);
        }
        let declared = self.declared_schema(ddl)?;
        let same = declared.fields().len() == schema.fields().len()
            && declared
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(d, f)| d.name() == f.name() && sql_type_name(d.data_type()) == sql_type_name(f.data_type()));
        if !same {
            let columns = |s: &Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SluiceError::sql(format!(
                "table '{}': connector '{connector}' produces the columns ({}), but the table declares ({}); declare exactly \
                 those, or no columns",
                ddl.name,
                columns(&schema),
                columns(&declared)
            )));
        }
        Ok(schema)
    }

    /// Column types through DataFusion's own SQL type mapping, plus `MAP<K, V>`
    /// ([`crate::format::column_type`]).
    fn declared_schema(&self, ddl: &CreateStreamTable) -> Result<SchemaRef> {
        let state = self.ctx.state();
        let fields = ddl
            .columns
            .iter()
            .map(|c| {
                let data_type = crate::format::column_type::arrow_type(&state, &c.data_type)?;
                let nullable = !c.options.iter().any(|o| o.option == sqlast::ColumnOption::NotNull);
                Ok(Field::new(normalize(&c.name), data_type, nullable))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    /// `WATERMARK FOR ts AS ts - INTERVAL ...` as a column and a delay, planned by DataFusion.
    fn watermark_spec(
        &self,
        table: &str,
        schema: &SchemaRef,
        clause: &crate::sql::WatermarkClause,
    ) -> Result<WatermarkSpec> {
        let column = normalize(&clause.column);
        check_event_time_column(table, schema, &column)?;
        let bad = |why: &str| {
            SluiceError::sql(format!(
                "table '{table}': WATERMARK FOR {column} AS {}: {why}; write WATERMARK FOR {column} AS {column} - INTERVAL '10' SECOND",
                clause.expr
            ))
        };
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = self.ctx.state().create_logical_expr_from_sql_expr(
            sqlast::ExprWithAlias { expr: clause.expr.clone(), alias: None },
            &df_schema,
        )?;
        let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
        let delay_ms = match &expr {
            e if is_column(e) => 0,
            Expr::BinaryExpr(b) if b.op == Operator::Minus && is_column(&b.left) => {
                interval_literal_ms(&b.right).ok_or_else(|| bad("the delay must be a constant day-time INTERVAL"))?
            }
            _ => return Err(bad("expected the column minus an interval")),
        };
        if delay_ms < 0 {
            return Err(bad("the delay must not be negative"));
        }
        Ok(WatermarkSpec { column, delay_ms })
    }

    /// `INSERT INTO <stream table> <query>` as a query definition; `None` for other statements.
    fn as_streaming_insert(&self, statement: &DFStatement) -> Result<Option<QueryDefinition>> {
        let DFStatement::Statement(s) = statement else { return Ok(None) };
        let Statement::Insert(Insert { table: TableObject::TableName(name), source: Some(query), .. }) = s.as_ref()
        else {
            return Ok(None);
        };
        let sink = name.0.last().and_then(|p| p.as_ident()).map(normalize).unwrap_or_default();
        if !self.tables.contains_key(&sink) {
            return Ok(None);
        }
        Ok(Some(QueryDefinition { sink, query: query.as_ref().clone(), stages: vec![] }))
    }

    /// Plans `definition` and opens it at checkpoint `checkpoint` (a directory, `file://` or
    /// `memory://` URL), ready to [`StreamingQuery::run`].
    ///
    /// # Errors
    /// [`SluiceError::Unsupported`] for a query the output mode cannot run, [`SluiceError::Sql`]
    /// for planning errors, [`SluiceError::Checkpoint`] for an unusable checkpoint, and source
    /// or sink errors (e.g. a missing input directory).
    pub async fn start(&self, definition: &QueryDefinition, checkpoint: &str) -> Result<StreamingQuery> {
        let (sink, mode, declared) = self.open_sink(&definition.sink)?;
        let location = CheckpointLocation::open(checkpoint)?;
        let metadata = load_or_create_metadata(&location, self.state_partitions).await?;
        let registry = Arc::new(OperatorRegistry::new(location.clone(), metadata.state_partitions, mode));

        // Each query scans private stream tables; bounded tables, settings and functions are shared.
        let query_ctx = SessionContext::new_with_state(functions::session_without_tables(&self.ctx));
        let catalog = self.ctx.catalog("datafusion").and_then(|c| c.schema("public")).expect("default schema");
        for name in catalog.table_names() {
            let provider = catalog.table(&name).await?.expect("listed table exists");
            let any: Arc<dyn std::any::Any + Send + Sync> = provider.clone();
            if any.downcast::<StreamTable>().is_err() {
                query_ctx.register_table(name.as_str(), provider)?;
            }
        }
        let mut tables = Vec::new();
        for (name, def) in &self.tables {
            let schema = match def {
                StreamTableDef::Connector { schema: Some(schema), .. } => schema.clone(),
                StreamTableDef::Memory { stream, .. } => stream.schema(),
                _ => continue,
            };
            let table = Arc::new(StreamTable::new(name, schema, metadata.state_partitions));
            query_ctx.register_table(name.as_str(), table.clone())?;
            tables.push(table);
        }
        let state = streaming_state(&query_ctx, &registry);
        let plan = plan_query(&state, definition, mode).await?;
        let plan = self.spellings.with_query(&definition.query).restore(plan)?;
        check_sink_columns(&definition.sink, declared.as_ref(), &plan)?;
        sink.check_schema(&Arc::new(plan.schema().as_arrow().clone()))?;
        // Planned once, executed by every batch: errors surface before the first batch, and
        // operators exist to restore.
        let clock = BatchClock::default();
        let physical = state.query_planner().create_physical_plan(&with_batch_clock(&plan, &clock)?, &state).await?;
        let physical = ordered_merges(physical)?;
        let stateful = fingerprint::stateful_operators(&plan);
        check_state_layout(&location, &metadata, !stateful.is_empty())?;
        check_stateful_operators(&location, &stateful).await?;
        // Only the streams the query reads are opened as sources.
        let read = StreamTable::sources_of(&plan);
        let mut sources = Vec::new();
        let mut watermark_specs = BTreeMap::new();
        for table in tables.into_iter().filter(|t| read.iter().any(|r| Arc::ptr_eq(r, t))) {
            let name = table.name().to_string();
            let (source, watermark) = match &self.tables[&name] {
                StreamTableDef::Connector { ddl, schema: Some(schema), watermark } => {
                    (self.open_source(ddl, schema.clone())?, watermark)
                }
                StreamTableDef::Memory { stream, watermark } => {
                    (Box::new(MemorySource::new(&name, stream.clone())) as Box<dyn Source>, watermark)
                }
                _ => unreachable!("only stream tables were registered"),
            };
            if let Some(w) = watermark {
                watermark_specs.insert(name, w.clone());
            }
            sources.push(QuerySource { source, table });
        }
        let parts = QueryParts {
            id: metadata.id.clone(),
            name: definition.sink.clone(),
            output_schema: Arc::new(plan.schema().as_arrow().clone()),
            physical,
            task_context: Arc::new(TaskContext::from(&state)),
            clock,
            sources,
            sink,
            operators: registry.operators(),
            location,
            watermarks: WatermarkTracker::new(watermark_specs, self.watermark_policy),
        };
        StreamingQuery::open(parts).await
    }

    /// The source reading table `ddl`, of `schema` (declared, or fixed by the connector).
    fn open_source(&self, ddl: &CreateStreamTable, schema: SchemaRef) -> Result<Box<dyn Source>> {
        let connector = ddl.options.get("connector").map(|c| c.to_ascii_lowercase()).unwrap_or_default();
        match connector.as_str() {
            "file" => self.open_file_source(ddl, schema),
            "rate" => {
                Ok(Box::new(RateSource::new(&ddl.name, schema, RateSourceOptions::parse(&ddl.name, &ddl.options)?)))
            }
            "socket" => {
                Ok(Box::new(SocketSource::new(&ddl.name, schema, SocketSourceOptions::parse(&ddl.name, &ddl.options)?)))
            }
            "kafka" => {
                let options = KafkaSourceOptions::parse(&ddl.name, &ddl.options)?;
                let decode =
                    DecodeOptions { time_zone: self.time_zone.as_deref().map(Arc::from), ..DecodeOptions::default() };
                Ok(Box::new(KafkaSource::try_new(&ddl.name, schema, options, decode)?))
            }
            other => Err(SluiceError::sql(format!(
                "table '{}' uses connector '{other}', which cannot be read as a stream",
                ddl.name
            ))),
        }
    }

    fn open_file_source(&self, ddl: &CreateStreamTable, schema: SchemaRef) -> Result<Box<dyn Source>> {
        let option = |k: &str| ddl.options.get(k).map(String::as_str);
        let path =
            option("path").ok_or_else(|| SluiceError::sql(format!("file table '{}' needs a path option", ddl.name)))?;
        let max_files_per_trigger = option("max_files_per_trigger")
            .map(|v| {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    SluiceError::sql(format!(
                        "table '{}': max_files_per_trigger must be a positive integer, got '{v}'",
                        ddl.name
                    ))
                })
            })
            .transpose()?;
        let max_file_age_ms = option("max_file_age")
            .map(|v| parse_max_file_age(v).map_err(|e| SluiceError::sql(format!("table '{}': {e}", ddl.name))))
            .transpose()?
            .unwrap_or(DEFAULT_MAX_FILE_AGE_MS);
        let clean_source =
            match (option("clean_source").map(str::to_ascii_lowercase).as_deref(), option("source_archive_dir")) {
                (None | Some("off"), None) => CleanSource::Off,
                (Some("delete"), None) => CleanSource::Delete,
                (Some("archive"), Some(dir)) if Path::new(dir) != Path::new(path) => CleanSource::Archive(dir.into()),
                (Some("archive"), Some(_)) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': source_archive_dir must not be the source directory itself",
                        ddl.name
                    )))
                }
                (Some("archive"), None) => {
                    return Err(SluiceError::sql(format!(
                "table '{}': clean_source = 'archive' needs source_archive_dir, the directory to move read files to",
                ddl.name
            )))
                }
                (None | Some("off" | "delete"), Some(_)) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': source_archive_dir is only used with clean_source = 'archive'",
                        ddl.name
                    )))
                }
                (Some(other), _) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': clean_source must be 'off', 'delete' or 'archive', got '{other}'",
                        ddl.name
                    )))
                }
            };
        let decode = DecodeOptions {
            bad_data: option("bad_data").map(BadData::parse).transpose()?.unwrap_or(BadData::Fail),
            csv_header: option("header").map(parse_bool).transpose()?.unwrap_or(true),
            time_zone: self.time_zone.as_deref().map(Arc::from),
            ..DecodeOptions::default()
        };
        let options = FileSourceOptions {
            dir: path.into(),
            format: option("format").map(Format::parse).transpose()?.unwrap_or(Format::Json),
            max_files_per_trigger,
            max_file_age_ms,
            clean_source,
            decode,
        };
        Ok(Box::new(FileSource::try_new(&ddl.name, schema, options)?))
    }

    /// The sink of table `name`, its output mode and its declared schema.
    fn open_sink(&self, name: &str) -> Result<(Box<dyn Sink>, OutputMode, Option<SchemaRef>)> {
        let def = self.tables.get(name).ok_or_else(|| SluiceError::sql(format!("unknown sink table '{name}'")))?;
        match def {
            StreamTableDef::Sink { sink, mode } => Ok(((sink.0)(), *mode, None)),
            StreamTableDef::Memory { .. } => Err(SluiceError::sql(format!(
                "'{name}' is a memory stream, not a sink; register a sink with register_sink"
            ))),
            StreamTableDef::Connector { ddl, schema, .. } => {
                let option = |k: &str| ddl.options.get(k).map(String::as_str);
                let mode = option("output_mode").map(OutputMode::parse).transpose()?.unwrap_or_default();
                let sink: Box<dyn Sink> = match option("connector").unwrap_or_default().to_ascii_lowercase().as_str() {
                    "kafka" => Box::new(KafkaSink::new(name, &ddl.options)?.with_time_zone(self.time_zone.as_deref())?),
                    connector @ ("rate" | "socket") => {
                        return Err(SluiceError::sql(format!(
                            "table '{name}' uses connector '{connector}', which is a source only; write to a 'file' or \
                             'console' table"
                        )))
                    }
                    "console" => {
                        let num_rows = option("num_rows")
                            .map(|v| {
                                v.parse::<usize>().map_err(|_| {
                                    SluiceError::sql(format!("table '{name}': num_rows must be a count, got '{v}'"))
                                })
                            })
                            .transpose()?
                            .unwrap_or(20);
                        let truncate = option("truncate").map(parse_bool).transpose()?.unwrap_or(true);
                        Box::new(ConsoleSink::stdout(num_rows, truncate).with_time_zone(self.time_zone.as_deref())?)
                    }
                    _ => {
                        let path = option("path")
                            .ok_or_else(|| SluiceError::sql(format!("file table '{name}' needs a path option")))?;
                        let format = option("format").map(Format::parse).transpose()?.unwrap_or(Format::Json);
                        Box::new(FileSink::new(name, path.into(), format)?.with_time_zone(self.time_zone.as_deref())?)
                    }
                };
                Ok((sink, mode, schema.clone()))
            }
        }
    }
}

/// The columns of a connector that fixes them; `None` when the table declares its own.
fn connector_schema(connector: &str) -> Option<SchemaRef> {
    match connector {
        "rate" => Some(rate_schema()),
        "socket" => Some(socket_schema()),
        _ => None,
    }
}

/// `SET key = value` as its key and value (quotes removed); `None` for other statements.
fn as_set(statement: &DFStatement) -> Option<(String, String)> {
    let DFStatement::Statement(s) = statement else { return None };
    let Statement::Set(sqlast::Set::SingleAssignment { variable, values, .. }) = s.as_ref() else { return None };
    let value = match values.as_slice() {
        [sqlast::Expr::Value(v)] => match &v.value {
            sqlast::Value::SingleQuotedString(s) | sqlast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        [sqlast::Expr::Identifier(i)] => i.value.clone(),
        other => other.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
    };
    let key = variable.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), |i| i.value.clone()));
    Some((key.collect::<Vec<_>>().join("."), value))
}

/// `max_file_age` in ms: a duration with a unit, in Spark's form (`7d`, `12h`, `30m`, `10s`,
/// `500ms`) or sluice's (`7 days`, `1 hour`). A bare number is refused: Spark reads it as ms,
/// a reader might mean seconds.
fn parse_max_file_age(text: &str) -> std::result::Result<i64, String> {
    let wrong =
        |why: &str| format!("max_file_age must be a positive duration such as '7d' or '12 hours', got '{text}'{why}");
    if text.trim().parse::<f64>().is_ok() {
        return Err(wrong(" (give a unit)"));
    }
    let ns = parse_duration_ns(text.trim()).map_err(|_| wrong(""))?;
    Some(ns / 1_000_000).filter(|ms| *ms > 0).ok_or_else(|| wrong(" (at least 1 ms)"))
}

fn parse_bool(text: &str) -> Result<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(SluiceError::sql(format!("expected 'true' or 'false', got '{other}'"))),
    }
}

/// A watermark's column must exist and be a TIMESTAMP; the error says which columns could carry
/// it, or how to make this one a TIMESTAMP.
fn check_event_time_column(table: &str, schema: &Schema, column: &str) -> Result<()> {
    let timestamps: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        .map(|f| f.name().as_str())
        .collect();
    let Ok(field) = schema.field_with_name(column) else {
        let fix = match timestamps.first() {
            Some(first) => format!(
                "its TIMESTAMP columns are {}; e.g. WATERMARK FOR {first} AS {first} - INTERVAL '10' SECOND",
                timestamps.join(", ")
            ),
            None => format!(
                "it has no TIMESTAMP column; declare the event-time column, e.g. ({column} TIMESTAMP, ...), and the watermark on it"
            ),
        };
        return Err(SluiceError::sql(format!(
            "table '{table}': the watermark column '{column}' is not a column; {fix}"
        )));
    };
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        let other = match timestamps.first() {
            Some(_) => format!(", or put the watermark on a TIMESTAMP column ({})", timestamps.join(", ")),
            None => String::new(),
        };
        return Err(SluiceError::sql(format!(
            "table '{table}': the watermark column '{column}' is {}, not a TIMESTAMP; declare it as {column} TIMESTAMP \
             (the file source reads timestamp text such as 2024-01-01T00:00:00Z into it; in a query, \
             CAST({column} AS TIMESTAMP) converts text){other}",
            field.data_type()
        )));
    }
    Ok(())
}

/// Marks the event-time column of `schema` with its watermark delay (field metadata).
fn mark_event_time(table: &str, schema: SchemaRef, watermark: Option<&WatermarkSpec>) -> Result<SchemaRef> {
    let Some(w) = watermark else { return Ok(schema) };
    check_event_time_column(table, &schema, &w.column)?;
    let index = schema.index_of(&w.column)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut metadata = fields[index].metadata().clone();
    metadata.insert(WATERMARK_DELAY_METADATA.to_string(), w.delay_ms.to_string());
    fields[index] = fields[index].clone().with_metadata(metadata);
    Ok(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// A session state whose physical planner knows the streaming nodes, and whose optimizer leaves
/// aggregations whole (`single_distinct_aggregation_to_group_by` would split a
/// `count(DISTINCT x)` into two aggregations, which is not incremental).
fn streaming_state(ctx: &SessionContext, registry: &Arc<OperatorRegistry>) -> SessionState {
    let rules =
        Optimizer::new().rules.into_iter().filter(|r| r.name() != "single_distinct_aggregation_to_group_by").collect();
    let mut state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(StreamingQueryPlanner::new(Arc::clone(registry))))
        .build();
    // No start time: `now()` stays in the plan, and each batch folds it at its own timestamp.
    state.execution_props_mut().query_execution_start_time = None;
    state
}

/// SQL to an incremental logical plan: generator and window rewrites, DataFusion planning and optimization,
/// deduplication, stream-stream joins, the definition's stages, output-mode checks, streaming
/// aggregations.
async fn plan_query(state: &SessionState, definition: &QueryDefinition, mode: OutputMode) -> Result<LogicalPlan> {
    let mut query = definition.query.clone();
    let generators = rewrite_generators(&mut query)?;
    rewrite_windows(&mut query)?;
    let statement = DFStatement::Statement(Box::new(Statement::Query(Box::new(query))));
    let plan = match state.statement_to_plan(statement).await {
        Err(e) if generators => return Err(explain_map_explode(e.into())),
        plan => plan?,
    };
    checks::check_subqueries(&plan)?;
    checks::check_set_operations(&plan)?;
    let optimized = state.optimize(&plan)?;
    if StreamTable::sources_of(&optimized).is_empty() {
        return Err(SluiceError::sql("the query reads no stream table; run it as a batch query instead"));
    }
    let mut next_id = 0;
    let plan = dedup::plan_deduplication(optimized, &mut next_id)?;
    let plan = join::plan_stream_joins(plan, &mut next_id)?;
    let plan = stage::apply_stages(plan, &definition.stages, &mut next_id)?;
    checks::check(&plan, mode)?;
    incremental::plan_aggregations(plan, &mut next_id)
}

/// A sink that declares columns must receive exactly those column names.
fn check_sink_columns(sink: &str, declared: Option<&SchemaRef>, plan: &LogicalPlan) -> Result<()> {
    let Some(declared) = declared else { return Ok(()) };
    let produced: Vec<&str> = plan.schema().fields().iter().map(|f| f.name().as_str()).collect();
    let expected: Vec<&str> = declared.fields().iter().map(|f| f.name().as_str()).collect();
    let same =
        produced.len() == expected.len() && produced.iter().zip(&expected).all(|(p, e)| p.eq_ignore_ascii_case(e));
    if !same {
        return Err(SluiceError::sql(format!(
            "sink '{sink}' declares columns ({}) but the query produces ({}); alias the query's columns or drop the sink's column list",
            expected.join(", "),
            produced.join(", ")
        )));
    }
    Ok(())
}
