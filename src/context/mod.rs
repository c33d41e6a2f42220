//! `StreamContext`: the catalog of stream tables and the entry point that turns streaming SQL into
//! [`StreamingQuery`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{LogicalPlan, SetVariable};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self as sqlast, Insert, Statement, TableObject};

use crate::execution::StreamingQueryManager;
use crate::operator::watermark::{MultipleWatermarkPolicy, WatermarkSpec};
use crate::plan::stream_table::StreamTable;
use crate::plan::OutputMode;
use crate::sink::Sink;
use crate::source::memory::MemoryStream;
use crate::sql::functions;
use crate::sql::parse_script;
use crate::sql::parser::{normalize, CreateStreamTable, SluiceStatement};
use crate::sql::settings::Setting;
use crate::sql::spelling::Spellings;
use crate::state::store::MAX_STATE_PARTITIONS;
use crate::state::{RocksDbSettings, StateStoreKind};
use crate::{Result, SluiceError};
use datafusion::common::TableReference;

mod catalog;
mod connectors;
mod definition;
mod explain;
mod frames;
mod start;
mod tables;

pub(crate) use definition::QueryBody;
pub use definition::QueryDefinition;
use tables::mark_event_time;

/// A stream table: how to open it as a source and as a sink.
#[derive(Debug, Clone)]
enum StreamTableDef {
    /// Declared in SQL or by the DataFrame API with a connector. A stream's schema marks its
    /// watermark column ([`WatermarkSpec::of_schema`]).
    Connector { ddl: Box<CreateStreamTable>, schema: Option<SchemaRef> },
    /// Registered from Rust.
    Memory { stream: MemoryStream },
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

/// The catalog of stream tables and bounded DataFusion tables, and the factory of streaming
/// queries. Equivalent of Spark's `SparkSession` for streaming.
///
/// Clones share the bounded tables, the DataFusion session and the started queries; each keeps
/// its own stream tables and settings from the moment of the clone (a [`crate::StreamFrame`]
/// holds one).
#[derive(Clone)]
pub struct StreamContext {
    ctx: SessionContext,
    tables: BTreeMap<String, StreamTableDef>,
    state_partitions: usize,
    /// `sluice.state_store`, and the RocksDB store's settings.
    state_store: StateStoreKind,
    rocksdb: RocksDbSettings,
    watermark_policy: MultipleWatermarkPolicy,
    /// `spark.sql.session.timeZone`, for the console sink (functions read DataFusion's copy).
    time_zone: Option<String>,
    /// `sluice.sql.spark_functions` was set.
    spark_functions: bool,
    spellings: Spellings,
    streams: StreamingQueryManager,
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
/// next. NULL sorts as the smallest value, as in Spark (first in `ORDER BY x`, last in
/// `ORDER BY x DESC`, unless the query says `NULLS FIRST` / `NULLS LAST`); DataFusion's default
/// is the opposite.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_target_partitions(1).with_information_schema(true);
    config.options_mut().optimizer.enable_dynamic_filter_pushdown = false;
    config.options_mut().sql_parser.default_null_ordering = "nulls_min".to_string();
    config
}

impl StreamContext {
    /// An empty context. State partitions default to the number of cores (DESIGN §4).
    pub fn new() -> Self {
        Self {
            ctx: functions::new_session(session_config()),
            tables: BTreeMap::new(),
            state_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_STATE_PARTITIONS),
            state_store: StateStoreKind::default(),
            rocksdb: RocksDbSettings::default(),
            watermark_policy: MultipleWatermarkPolicy::Min,
            time_zone: None,
            spark_functions: false,
            spellings: Spellings::default(),
            streams: StreamingQueryManager::default(),
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
    /// (`sluice.sql.spark_functions`; `sluice.state_store`: `memory` or `rocksdb`, and
    /// `sluice.state_store.rocksdb.memory_bytes`, `sluice.state_store.rocksdb.local_dir`) or
    /// DataFusion key (`datafusion.*`), as `SET key = 'value'` does in a script. Applies to
    /// queries started afterwards; a query's checkpoint keeps the state partitions and the state
    /// store it was first started with.
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
            Setting::StateStore(kind) => self.state_store = kind,
            Setting::RocksDbMemoryBytes(bytes) => self.rocksdb.memory_bytes = bytes,
            Setting::RocksDbLocalDir(dir) => self.rocksdb.local_dir = Some(dir),
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
        self.tables.insert(name.to_string(), StreamTableDef::Memory { stream: stream.clone() });
        let table = TableReference::bare(name);
        self.ctx.deregister_table(table.clone())?;
        self.ctx.register_table(table, Arc::new(StreamTable::new(name, stream.schema(), 1)))?;
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
                    if let Some(q) = self.as_streaming_explain(&statement)? {
                        queries.push(q);
                        continue;
                    }
                    let plan = self.ctx.state().statement_to_plan(*statement).await?;
                    if !StreamTable::sources_of(&plan).is_empty() {
                        return Err(SluiceError::sql(
                            "a query over a stream must be written as INSERT INTO <stream table> SELECT ... (or EXPLAIN \
                             INSERT INTO ... to see its plan)",
                        ));
                    }
                    self.ctx.execute_logical_plan(plan).await?.collect().await?;
                }
            }
        }
        Ok(queries)
    }

    /// `EXPLAIN INSERT INTO <stream table> <query>` as a query definition to explain; `None` for
    /// other statements.
    fn as_streaming_explain(&self, statement: &DFStatement) -> Result<Option<QueryDefinition>> {
        let DFStatement::Explain(explain) = statement else { return Ok(None) };
        let Some(mut query) = self.as_streaming_insert(&explain.statement)? else { return Ok(None) };
        if explain.options.analyze {
            return Err(SluiceError::sql(
                "EXPLAIN ANALYZE of a continuous query: a continuous query never ends; write EXPLAIN INSERT INTO ... \
                 for its plan, and watch a running query with --progress, --metrics or --ui",
            ));
        }
        query.explain = true;
        Ok(Some(query))
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
        Ok(Some(QueryDefinition::new(sink, QueryBody::Sql(query.clone()))))
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
