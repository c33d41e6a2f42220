//! Starting a query: planning it incrementally over tables of its own, opening its sources,
//! sink and state at its checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::Optimizer;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement};

use crate::checkpoint::CheckpointLocation;
use crate::execution::query::{MicroBatchExecution, QueryParts, QuerySource};
use crate::execution::recovery::{check_state_layout, check_stateful_operators, load_or_create_metadata};
use crate::execution::StreamingQuery;
use crate::operator::watermark::{MultipleWatermarkPolicy, WatermarkSpec, WatermarkTracker};
use crate::plan::batch_time::{with_batch_clock, BatchClock};
use crate::plan::checked_arithmetic::checked_arithmetic;
use crate::plan::ordered_merge::ordered_merges;
use crate::plan::physical::{OperatorRegistry, StreamingQueryPlanner};
use crate::plan::stream_table::StreamTable;
use crate::plan::{checks, fingerprint, incremental, join, row_number, stage, union_event_time, OutputMode};
use crate::source::memory::MemorySource;
use crate::sql::functions;
use crate::sql::generators::{explain_map_explode, rewrite_generators};
use crate::sql::rewrite::rewrite_windows;
use crate::sql::spelling::Spellings;
use crate::state::{StateBackend, StateStoreKind};
use crate::{Result, SluiceError};

use super::{QueryBody, QueryDefinition, StreamContext, StreamTableDef};
use datafusion::common::tree_node::Transformed;
use datafusion::common::TableReference;

impl StreamContext {
    /// Plans `definition` and opens it at checkpoint `checkpoint` (a directory, a `file://`,
    /// `s3://BUCKET/PREFIX` or `memory://` URL; S3 is reached with the settings and credentials
    /// of the `AWS_*` environment variables, e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), ready to [`StreamingQuery::run`].
    ///
    /// # Errors
    /// [`SluiceError::Unsupported`] for a query the output mode cannot run, [`SluiceError::Sql`]
    /// for planning errors or a definition written `EXPLAIN ...`, [`SluiceError::Checkpoint`] for an unusable checkpoint, and source
    /// or sink errors (e.g. a missing input directory).
    pub async fn start(&self, definition: &QueryDefinition, checkpoint: &str) -> Result<StreamingQuery> {
        if definition.explain {
            return Err(SluiceError::sql(format!(
                "the query into '{}' was written EXPLAIN INSERT INTO ...: show it with explain(), or drop EXPLAIN to \
                 run it",
                definition.sink
            )));
        }
        let mode = match definition.output_mode {
            Some(mode) => mode,
            None => self.sink_mode(&definition.sink)?.0,
        };
        let location = CheckpointLocation::open(checkpoint)?;
        // Before anything is read: the lock keeps a second query off a checkpoint in use.
        let lock = location.lock().await?;
        let metadata =
            load_or_create_metadata(&location, self.state_partitions, self.state_store, self.watermark_policy).await?;
        let state_store = StateStoreKind::parse(&metadata.state_store).unwrap_or_default();
        let backend = StateBackend::for_query(state_store, &self.rocksdb)?;
        let registry = Arc::new(OperatorRegistry::new(location.clone(), metadata.state_partitions, mode, backend));

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
        let tables = self.query_tables(&definition.body, metadata.state_partitions)?;
        for table in &tables {
            query_ctx.register_table(TableReference::bare(table.name()), Arc::clone(table) as _)?;
        }
        let state = streaming_state(&query_ctx, &registry);
        let plan = plan_query(&state, definition, &tables, &self.spellings, mode).await?;
        let (sink, declared) = self.open_sink(&definition.sink, &plan, mode)?;
        check_sink_columns(&definition.sink, declared.as_ref(), &plan)?;
        sink.check_schema(&Arc::new(plan.schema().as_arrow().clone()))?;
        // Planned once, executed by every batch: errors surface before the first batch, and
        // operators exist to restore.
        let clock = BatchClock::default();
        let physical = state.query_planner().create_physical_plan(&with_batch_clock(&plan, &clock)?, &state).await?;
        let physical = checked_arithmetic(ordered_merges(physical)?)?;
        let stateful = fingerprint::stateful_operators(&plan);
        check_state_layout(&location, &metadata, !stateful.is_empty())?;
        check_stateful_operators(&location, &stateful).await?;
        // Only the streams the query reads are opened as sources.
        let read = StreamTable::sources_of(&plan);
        let mut sources = Vec::new();
        let mut watermark_specs = BTreeMap::new();
        for table in tables.into_iter().filter(|t| read.iter().any(|r| Arc::ptr_eq(r, t))) {
            let name = table.name().to_string();
            let source = match self.tables.get(&name) {
                Some(StreamTableDef::Connector { ddl, schema: Some(schema) }) => {
                    self.open_source(ddl, schema.clone())?
                }
                Some(StreamTableDef::Memory { stream }) => Box::new(MemorySource::new(&name, stream.clone())),
                _ => {
                    return Err(SluiceError::sql(format!(
                        "the query reads '{name}', which is not a stream of this context"
                    )))
                }
            };
            if let Some(w) = WatermarkSpec::of_schema(&table.schema()) {
                watermark_specs.insert(name, w);
            }
            sources.push(QuerySource { source, table });
        }
        let parts = QueryParts {
            id: metadata.id.clone(),
            name: definition.name().to_string(),
            output_schema: Arc::new(plan.schema().as_arrow().clone()),
            physical,
            task_context: Arc::new(TaskContext::from(&state)),
            clock,
            sources,
            sink,
            operators: registry.operators(),
            location,
            lock,
            watermarks: WatermarkTracker::new(
                watermark_specs,
                MultipleWatermarkPolicy::parse(&metadata.watermark_policy).unwrap_or(self.watermark_policy),
            ),
        };
        let query = StreamingQuery::new(MicroBatchExecution::open(parts).await?);
        self.streams.add(query.clone());
        Ok(query)
    }

    /// The stream tables of one query, scanned in `partitions` input partitions: for SQL, every
    /// stream table of the context (the planner picks those it reads); for a DataFrame plan, the
    /// ones it reads, with the schemas it was built on (a `with_watermark` marks a column there).
    pub(super) fn query_tables(&self, body: &QueryBody, partitions: usize) -> Result<Vec<Arc<StreamTable>>> {
        let schemas: Vec<(String, SchemaRef)> = match body {
            QueryBody::Sql(_) => self
                .tables
                .iter()
                .filter_map(|(name, def)| match def {
                    StreamTableDef::Connector { schema: Some(schema), .. } => Some((name.clone(), schema.clone())),
                    StreamTableDef::Memory { stream } => Some((name.clone(), stream.schema())),
                    _ => None,
                })
                .collect(),
            QueryBody::Plan(plan) => {
                let mut schemas: Vec<(String, SchemaRef)> = Vec::new();
                for table in StreamTable::sources_of(plan) {
                    let (name, schema) = (table.name().to_string(), table.schema());
                    match schemas.iter().find(|(n, _)| *n == name) {
                        Some((_, other)) if *other != schema => {
                            return Err(SluiceError::sql(format!(
                                "stream '{name}' is read twice with different watermarks; call with_watermark once, \
                                 on the frame read from it, before using it twice"
                            )))
                        }
                        Some(_) => {}
                        None => schemas.push((name, schema)),
                    }
                }
                schemas
            }
        };
        Ok(schemas.into_iter().map(|(name, schema)| Arc::new(StreamTable::new(&name, schema, partitions))).collect())
    }
}

/// A session state whose physical planner knows the streaming nodes, and whose optimizer leaves
/// aggregations whole (`single_distinct_aggregation_to_group_by` would split a
/// `count(DISTINCT x)` into two aggregations, which is not incremental).
pub(super) fn streaming_state(ctx: &SessionContext, registry: &Arc<OperatorRegistry>) -> SessionState {
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
/// deduplication and top-N, stream-stream joins, the definition's stages, output-mode checks, streaming
/// aggregations.
pub(super) async fn plan_query(
    state: &SessionState,
    definition: &QueryDefinition,
    tables: &[Arc<StreamTable>],
    spellings: &Spellings,
    mode: OutputMode,
) -> Result<LogicalPlan> {
    let plan = match &definition.body {
        QueryBody::Sql(query) => plan_sql(state, query).await?,
        QueryBody::Plan(plan) => rebind_stream_tables(plan.clone(), tables)?,
    };
    checks::check_subqueries(&plan)?;
    checks::check_set_operations(&plan)?;
    let optimized = union_event_time::first_input_event_time(state.optimize(&plan)?)?;
    if StreamTable::sources_of(&optimized).is_empty() {
        return Err(SluiceError::sql("the query reads no stream table; run it as a batch query instead"));
    }
    let mut next_id = 0;
    let plan = row_number::plan_row_number_filters(optimized, &mut next_id)?;
    let plan = join::plan_stream_joins(plan, &mut next_id)?;
    let plan = stage::apply_stages(plan, &definition.stages, &mut next_id)?;
    checks::check(&plan, mode)?;
    let plan = incremental::plan_aggregations(plan, mode, &mut next_id)?;
    match &definition.body {
        QueryBody::Sql(query) => spellings.with_query(query).restore(plan),
        QueryBody::Plan(_) => Ok(plan),
    }
}

/// The SQL query planned by DataFusion, after sluice's rewrites of generators and windows.
pub(super) async fn plan_sql(state: &SessionState, query: &Query) -> Result<LogicalPlan> {
    let mut query = query.clone();
    let generators = rewrite_generators(&mut query)?;
    rewrite_windows(&mut query)?;
    let statement = DFStatement::Statement(Box::new(Statement::Query(Box::new(query))));
    match state.statement_to_plan(statement).await {
        Err(e) if generators => Err(explain_map_explode(e.into())),
        plan => Ok(plan?),
    }
}

/// `plan` (built with the DataFrame API over the context's planning tables) scanning the
/// query's own `tables` instead, matched by name.
fn rebind_stream_tables(plan: LogicalPlan, tables: &[Arc<StreamTable>]) -> Result<LogicalPlan> {
    let rebound = plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
        let Some(planned) = StreamTable::of_scan(scan) else { return Ok(Transformed::no(node)) };
        let table = tables.iter().find(|t| t.name() == planned.name()).expect("query tables come from the plan");
        Ok(Transformed::yes(StreamTable::rescan(scan, Arc::clone(table))?))
    })?;
    Ok(rebound.data)
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
