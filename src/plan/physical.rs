//! Physical planning of streaming nodes through DataFusion's extension points.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ExprSchema;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::join::watermark_offset_ms;
use super::nodes::{
    StreamingAggregateNode, StreamingDedupNode, StreamingGroupStateNode, StreamingJoinNode, StreamingTopNNode,
};
use super::stream_table::StreamTable;
use super::time_range::watermarked_column;
use super::window_key::{join_windows, split_windows};
use super::OutputMode;
use crate::checkpoint::CheckpointLocation;
use crate::operator::aggregate::{AggregateState, AggregateStateSpec};
use crate::operator::dedup::{DedupSpec, DedupState};
use crate::operator::exec::{BatchOperator, OperatorHandle, StatefulExec};
use crate::operator::group_state::{GroupStateOperator, GroupStateSpec};
use crate::operator::join::{JoinSideSpec, JoinSpec, JoinState};
use crate::operator::top_n::{TopNSpec, TopNState};
use crate::operator::watermark::{event_time_delay_ms, TimeColumn};
use crate::operator::StatefulOperator;
use crate::state::{StateBackend, StateStore};

/// The stateful operators of one query, each with one instance per state partition, created when
/// the query is planned.
#[derive(Debug)]
pub struct OperatorRegistry {
    location: CheckpointLocation,
    partitions: usize,
    mode: OutputMode,
    /// What the operators' state stores keep their rows in.
    backend: StateBackend,
    operators: Mutex<BTreeMap<usize, OperatorHandle>>,
}

impl OperatorRegistry {
    /// Operators of a query in `mode`, checkpointed under `location` with `partitions` state
    /// partitions, whose stores keep their rows in `backend`.
    pub fn new(location: CheckpointLocation, partitions: usize, mode: OutputMode, backend: StateBackend) -> Self {
        Self { location, partitions, mode, backend, operators: Mutex::new(BTreeMap::new()) }
    }

    /// Every stateful operator planned so far, by operator id.
    pub fn operators(&self) -> Vec<Arc<dyn StatefulOperator>> {
        let operators = self.operators.lock().expect("registry lock");
        operators.values().map(|a| Arc::new(a.clone()) as Arc<dyn StatefulOperator>).collect()
    }

    /// The operator `id`, whose input watermark is the query's plus `watermark_offset_ms`,
    /// created on first use by calling `create` with each state partition's store.
    fn get_or_create(
        &self,
        id: usize,
        watermark_offset_ms: i64,
        create: impl Fn(StateStore) -> crate::Result<Box<dyn BatchOperator>>,
    ) -> DFResult<OperatorHandle> {
        let mut operators = self.operators.lock().expect("registry lock");
        if let Some(op) = operators.get(&id) {
            return Ok(op.clone());
        }
        let partitions = (0..self.partitions)
            .map(|p| create(StateStore::open(self.location.clone(), &id.to_string(), p, &self.backend)?))
            .collect::<crate::Result<Vec<_>>>()
            .map_err(DataFusionError::from)?;
        let op = OperatorHandle::new(partitions, watermark_offset_ms);
        operators.insert(id, op.clone());
        Ok(op)
    }
}

/// DataFusion's default planner plus the streaming extension planner.
#[derive(Debug)]
pub struct StreamingQueryPlanner {
    registry: Arc<OperatorRegistry>,
}

impl StreamingQueryPlanner {
    /// A planner whose stateful operators live in `registry`.
    pub fn new(registry: Arc<OperatorRegistry>) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl QueryPlanner for StreamingQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let extension = StreamingExtensionPlanner { registry: Arc::clone(&self.registry) };
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(extension)])
            .create_physical_plan(plan, session)
            .await
    }
}

struct StreamingExtensionPlanner {
    registry: Arc<OperatorRegistry>,
}

#[async_trait]
impl ExtensionPlanner for StreamingExtensionPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(node) = node.as_any().downcast_ref::<StreamingDedupNode>() {
            return self
                .plan_dedup(planner, node, logical_inputs[0], &physical_inputs[0], session, planning_ctx)
                .map(Some);
        }
        if let Some(node) = node.as_any().downcast_ref::<StreamingTopNNode>() {
            return self
                .plan_top_n(planner, node, logical_inputs[0], &physical_inputs[0], session, planning_ctx)
                .map(Some);
        }
        if let Some(node) = node.as_any().downcast_ref::<StreamingGroupStateNode>() {
            return self.plan_group_state(node, logical_inputs[0], &physical_inputs[0]).map(Some);
        }
        if let Some(node) = node.as_any().downcast_ref::<StreamingJoinNode>() {
            return self.plan_join(planner, node, logical_inputs, physical_inputs, session, planning_ctx).map(Some);
        }
        let Some(node) = node.as_any().downcast_ref::<StreamingAggregateNode>() else { return Ok(None) };
        let input = Arc::clone(&physical_inputs[0]);
        let logical_schema = logical_inputs[0].schema();
        let group_by = node
            .group_expr
            .iter()
            .map(|e| {
                Ok((
                    planner.create_physical_expr(e, logical_schema, session, planning_ctx)?,
                    e.schema_name().to_string(),
                ))
            })
            .collect::<DFResult<Vec<_>>>()?;
        let mut aggregates = Vec::with_capacity(node.aggr_expr.len());
        let mut filters = Vec::with_capacity(node.aggr_expr.len());
        for e in &node.aggr_expr {
            let lowered = LoweredAggregateBuilder::new(
                e,
                logical_schema,
                &input.schema(),
                session.execution_props(),
                planning_ctx,
            )
            .build()?;
            aggregates.push(lowered.aggregate);
            filters.push(lowered.filter);
        }
        let names: Vec<String> = group_by.iter().map(|(_, name)| name.clone()).collect();
        let (group_by, slots) = split_windows(group_by, &input.schema())?;
        let partial = Arc::new(AggregateExec::try_new(
            AggregateMode::Partial,
            PhysicalGroupBy::new_single(group_by),
            aggregates.clone(),
            filters,
            Arc::clone(&input),
            input.schema(),
        )?);
        let partial = join_windows(partial, &slots, &names)?;
        let output_schema = Arc::new(node.schema.as_arrow().clone());
        let offset = watermark_offset_ms(logical_inputs[0]);
        let operator = self.registry.get_or_create(node.operator_id, offset, |store| {
            let spec = AggregateStateSpec {
                name: format!("aggregate[{}]", node.operator_id),
                mode: self.registry.mode,
                emits_changes: node.emits_changes,
                event_time: node.event_time,
                watermark_upstream: StreamTable::has_watermark_upstream(logical_inputs[0]),
                aggregates: aggregates.clone(),
                input_schema: input.schema(),
                partial_schema: partial.schema(),
                group_count: node.group_expr.len(),
                output_schema: Arc::clone(&output_schema),
            };
            Ok(Box::new(AggregateState::try_new(spec, store)?))
        })?;
        // Sessions of a key merge across windows, so a session aggregation is partitioned by its
        // other grouping keys only (Spark's `SessionWindowStateStoreRestoreExec` clusters so).
        let session = node.event_time.filter(|e| e.is_session).map(|e| e.index);
        let keys = partial.schema().fields()[..node.group_expr.len()]
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != session)
            .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        Ok(Some(Arc::new(StatefulExec::new(
            &format!("aggregate[{}]", node.operator_id),
            vec![partial],
            vec![keys],
            operator,
            output_schema,
        ))))
    }
}

impl StreamingExtensionPlanner {
    /// The stateful operator `<kind>[<id>]` over one input (`(logical, physical)`), behind a
    /// hash exchange by `keys`, its state partitions created on first use by `create(name,
    /// store)`.
    fn keyed_operator(
        &self,
        (kind, id): (&str, usize),
        (logical_input, input): (&LogicalPlan, &Arc<dyn ExecutionPlan>),
        keys: Vec<Arc<dyn PhysicalExpr>>,
        output_schema: &SchemaRef,
        create: impl Fn(String, StateStore) -> crate::Result<Box<dyn BatchOperator>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let name = format!("{kind}[{id}]");
        let operator =
            self.registry.get_or_create(id, watermark_offset_ms(logical_input), |store| create(name.clone(), store))?;
        Ok(Arc::new(StatefulExec::new(&name, vec![Arc::clone(input)], vec![keys], operator, Arc::clone(output_schema))))
    }

    fn plan_dedup(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &StreamingDedupNode,
        logical_input: &LogicalPlan,
        input: &Arc<dyn ExecutionPlan>,
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let logical_schema = logical_input.schema();
        let physical = |e: &Expr| planner.create_physical_expr(e, logical_schema, session, planning_ctx);
        let keys = node.keys.iter().map(physical).collect::<DFResult<Vec<_>>>()?;
        let order_by = node.order_by.first().map(|s| physical(&s.expr)).transpose()?;
        let is_event_time = |f: &arrow::datatypes::Field| {
            matches!(f.data_type(), DataType::Timestamp(_, _)) && event_time_delay_ms(f).is_some()
        };
        let event_time = logical_schema.fields().iter().position(|f| is_event_time(f));
        let event_time_key = node.keys.iter().position(|k| match k {
            Expr::Column(c) => logical_schema.field_from_column(c).is_ok_and(|f| is_event_time(f)),
            _ => false,
        });
        let output_schema = Arc::new(node.schema.as_arrow().clone());
        let input_schema = input.schema();
        self.keyed_operator(
            ("dedup", node.operator_id),
            (logical_input, input),
            keys.clone(),
            &output_schema,
            |name, store| {
                let spec = DedupSpec {
                    name,
                    keys: keys.clone(),
                    order_by: order_by.clone(),
                    event_time,
                    watermark_upstream: StreamTable::has_watermark_upstream(logical_input),
                    event_time_key,
                    output_schema: Arc::clone(&output_schema),
                    within_watermark_delay_ms: node
                        .within_watermark
                        .then(|| event_time.and_then(|i| event_time_delay_ms(logical_schema.field(i))))
                        .flatten(),
                };
                Ok(Box::new(DedupState::try_new(spec, &input_schema, store)?))
            },
        )
    }
}

impl StreamingExtensionPlanner {
    fn plan_top_n(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &StreamingTopNNode,
        logical_input: &LogicalPlan,
        input: &Arc<dyn ExecutionPlan>,
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let logical_schema = logical_input.schema();
        let physical = |e: &Expr| planner.create_physical_expr(e, logical_schema, session, planning_ctx);
        let keys = node.keys.iter().map(physical).collect::<DFResult<Vec<_>>>()?;
        let order_by = node
            .order_by
            .iter()
            .map(|s| Ok((physical(&s.expr)?, SortOptions { descending: !s.asc, nulls_first: s.nulls_first })))
            .collect::<DFResult<Vec<_>>>()?;
        let output_schema = Arc::new(node.schema.as_arrow().clone());
        let input_schema = input.schema();
        self.keyed_operator(
            ("topN", node.operator_id),
            (logical_input, input),
            keys.clone(),
            &output_schema,
            |name, store| {
                let spec = TopNSpec {
                    name,
                    keys: keys.clone(),
                    order_by: order_by.clone(),
                    limit: node.limit,
                    mode: self.registry.mode,
                    output_schema: Arc::clone(&output_schema),
                };
                Ok(Box::new(TopNState::try_new(spec, &input_schema, store)?))
            },
        )
    }

    fn plan_join(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &StreamingJoinNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let side = |index: usize| -> DFResult<JoinSideSpec> {
            let schema = logical_inputs[index].schema();
            let keys = node
                .on
                .iter()
                .map(|pair| {
                    let e = if index == 0 { &pair.0 } else { &pair.1 };
                    planner.create_physical_expr(e, schema, session, planning_ctx)
                })
                .collect::<DFResult<Vec<_>>>()?;
            Ok(JoinSideSpec {
                schema: physical_inputs[index].schema(),
                keys,
                late: watermarked_column(schema).map(|(index, is_window)| TimeColumn { index, is_window }),
                eviction: node.eviction[index],
            })
        };
        let sides = [side(0)?, side(1)?];
        let keys = sides.iter().map(|s| s.keys.clone()).collect();
        let combined = logical_inputs[0].schema().join(logical_inputs[1].schema())?;
        let filter = node
            .filter
            .as_ref()
            .map(|f| planner.create_physical_expr(f, &combined, session, planning_ctx))
            .transpose()?;
        let output_schema = Arc::new(node.schema.as_arrow().clone());
        let offset = logical_inputs.iter().map(|p| watermark_offset_ms(p)).min().unwrap_or(0);
        let operator = self.registry.get_or_create(node.operator_id, offset, |store| {
            let spec = JoinSpec {
                name: format!("join[{}]", node.operator_id),
                join_type: node.join_type,
                sides: sides.clone(),
                filter: filter.clone(),
                output_schema: Arc::clone(&output_schema),
            };
            Ok(Box::new(JoinState::try_new(spec, store)?))
        })?;
        Ok(Arc::new(StatefulExec::new(
            &format!("join[{}]", node.operator_id),
            physical_inputs.to_vec(),
            keys,
            operator,
            output_schema,
        )))
    }
}

impl StreamingExtensionPlanner {
    fn plan_group_state(
        &self,
        node: &StreamingGroupStateNode,
        logical_input: &LogicalPlan,
        input: &Arc<dyn ExecutionPlan>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = logical_input.schema();
        let keys = node
            .keys
            .iter()
            .map(|k| match k {
                Expr::Column(c) => schema.index_of_column(c),
                other => Err(DataFusionError::Plan(format!("group state keys are columns, got {other}"))),
            })
            .collect::<DFResult<Vec<_>>>()?;
        let output_schema = Arc::new(node.schema.as_arrow().clone());
        let input_schema = input.schema();
        let partition_keys = keys
            .iter()
            .map(|i| Arc::new(Column::new(input_schema.field(*i).name(), *i)) as Arc<dyn PhysicalExpr>)
            .collect();
        let kind = ("groups_with_state", node.operator_id);
        self.keyed_operator(kind, (logical_input, input), partition_keys, &output_schema, |name, store| {
            let spec = GroupStateSpec {
                name,
                keys: keys.clone(),
                function: Arc::clone(&node.function),
                timeout: node.timeout,
                event_time: watermarked_column(schema).map(|(i, _)| i),
                output_schema: Arc::clone(&output_schema),
            };
            Ok(Box::new(GroupStateOperator::try_new(spec, &input_schema, store)?))
        })
    }
}
