//! The SQL functions of a sluice session: DataFusion's (with a `sum` that fails on overflow,
//! [`super::checked_sum`]), sluice's window functions, Spark's from the
//! `datafusion-spark` crate, and the Spark functions sluice adds: `date_format` with Spark's
//! patterns (replacing DataFusion's alias of `to_char`), `get_json_object`, and
//! `approx_count_distinct` (DataFusion's `approx_distinct` under Spark's name).
//!
//! By default Spark's functions are added only under names DataFusion lacks (`if`, `size`,
//! `date_add`, `collect_list`, `from_utc_timestamp`, ...), so DataFusion's behaviour of every
//! name it has is kept. With `SET sluice.sql.spark_functions = 'true'` every datafusion-spark
//! function replaces DataFusion's of the same name (`concat` returns NULL when an argument is
//! NULL, as in Spark) and Spark's expression planners are added (`EXTRACT`, `SUBSTRING`, and `/`
//! giving a DOUBLE). The datafusion-spark functions declared with exact argument types take
//! Spark's implicit casts ([`super::spark_coercion`]): `date_add(d, 1)` plans.

use std::sync::Arc;

use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::functions_aggregate::approx_distinct::approx_distinct_udaf;
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::checked_sum::checked_sum_udaf;
use super::date_format::{DateFormat, ToChar};
use super::divide::SparkDivisionPlanner;
use super::get_json_object::GetJsonObject;
use super::spark_coercion::with_spark_coercion;
use crate::plan::window;
use crate::Result;

/// A session with sluice's window functions, sluice's Spark functions, and datafusion-spark's
/// functions that DataFusion has no function of the same name for.
pub fn new_session(config: SessionConfig) -> SessionContext {
    let ctx = SessionContext::new_with_config(config);
    for udf in window::window_udfs() {
        ctx.register_udf(udf);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ToChar::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(DateFormat::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(GetJsonObject::new()));
    ctx.register_udaf(approx_distinct_udaf().as_ref().clone().with_aliases(["approx_count_distinct"]));
    ctx.register_udaf(checked_sum_udaf());
    let state = ctx.state();
    let taken = |name: &str, aliases: &[String]| {
        std::iter::once(name).chain(aliases.iter().map(String::as_str)).any(|n| {
            state.scalar_functions().contains_key(n)
                || state.aggregate_functions().contains_key(n)
                || state.window_functions().contains_key(n)
        })
    };
    for udf in datafusion_spark::all_default_scalar_functions() {
        if !taken(udf.name(), udf.aliases()) {
            ctx.register_udf(with_spark_coercion(udf.as_ref().clone()));
        }
    }
    for udaf in datafusion_spark::all_default_aggregate_functions() {
        if !taken(udaf.name(), udaf.aliases()) {
            ctx.register_udaf(udaf.as_ref().clone());
        }
    }
    ctx
}

/// Makes every datafusion-spark function replace DataFusion's of the same name in `ctx`, and
/// plans `EXTRACT`, `SUBSTRING` and `/` as Spark does (`SET sluice.sql.spark_functions = 'true'`).
///
/// # Errors
/// A DataFusion error if a function cannot be registered.
pub fn prefer_spark_functions(ctx: &SessionContext) -> Result<()> {
    let mut registry = ctx.clone();
    datafusion_spark::register_all(&mut registry)?;
    for udf in datafusion_spark::all_default_scalar_functions() {
        registry.register_udf(with_spark_coercion(udf.as_ref().clone()));
    }
    registry.register_expr_planner(Arc::new(datafusion_spark::planner::SparkFunctionPlanner))?;
    registry.register_expr_planner(Arc::new(SparkDivisionPlanner))?;
    Ok(())
}

/// A session state with `ctx`'s configuration, functions and planners but an empty catalog, for
/// a query to register its own stream tables in.
pub fn session_without_tables(ctx: &SessionContext) -> SessionState {
    SessionStateBuilder::new_from_existing(ctx.state())
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .with_config(ctx.copied_config())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_only_names_are_added() {
        let state = new_session(SessionConfig::new()).state();
        for name in ["if", "size", "date_add", "from_utc_timestamp", "json_tuple", "tumble_window"] {
            assert!(state.scalar_functions().contains_key(name), "{name}");
        }
        for name in ["collect_list", "collect_set", "try_sum", "approx_count_distinct", "approx_distinct"] {
            assert!(state.aggregate_functions().contains_key(name), "{name}");
        }
        // Spark's date_format, not DataFusion's alias of to_char, which stays under its own name,
        // also in a state rebuilt from the session's functions (in hash order).
        for _ in 0..8 {
            let rebuilt = session_without_tables(&new_session(SessionConfig::new()));
            assert_eq!(rebuilt.scalar_functions()["date_format"].name(), "date_format");
            assert_eq!(rebuilt.scalar_functions()["to_char"].name(), "to_char");
        }
    }
}
