//! Gives `window(ts, ...)` in `GROUP BY` its Spark meaning, on the parsed AST.
//!
//! Spark resolves `GROUP BY window(ts, '10 seconds')` to a grouping column named `window`, a struct
//! `{start, end}`, that the select list reads as `window.start`. DataFusion's planner has no such
//! column, so the select that groups by a window is rewritten (on the AST, not the text) to read
//! from a derived table that adds it:
//!
//! ```sql
//! SELECT window.start, key, count(*) FROM events GROUP BY window(ts, '10 seconds'), key
//! -- becomes
//! SELECT window.start, key, count(*)
//! FROM (SELECT *, tumble_window(ts, '10 seconds') AS window FROM events WHERE ts IS NOT NULL) AS events
//! GROUP BY window, key
//! ```
//!
//! A sliding window (`window(ts, size, slide)` with `slide < size`) uses
//! `unnest(sliding_windows(ts, size, slide))`, one row per window the row belongs to, as Spark's
//! `Expand` does. Rows with a null event time belong to no window (Spark filters them too).
//! `tumble(ts, size)` and `hop(ts, size, slide)` are accepted as aliases, with `window`'s argument
//! order (size before slide).
//!
//! `session_window(ts, gap)` (alias `session`) adds a column `session_window` holding each row's
//! own session `[ts, ts + gap)`; the streaming aggregation merges the sessions of a key.

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart,
    Query, SelectItem, SetExpr, Statement, TableAlias, TableFactor,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::dialect::SluiceDialect;
use crate::plan::session_window::SESSION_ROW_WINDOW;
use crate::plan::window::{SLIDING_WINDOWS, TUMBLE_WINDOW};
use crate::{Result, SluiceError};

/// Rewrites every select in `query` that groups by an event-time window.
///
/// # Errors
/// [`SluiceError::Unsupported`] for windows the rewrite cannot place (over a join, twice in one
/// `GROUP BY`) and [`SluiceError::Sql`] for malformed window calls.
pub fn rewrite_windows(query: &mut Query) -> Result<()> {
    rewrite_set_expr(&mut query.body)
}

fn rewrite_set_expr(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for from in &mut select.from {
                rewrite_factor(&mut from.relation)?;
                for join in &mut from.joins {
                    rewrite_factor(&mut join.relation)?;
                }
            }
            rewrite_projected_windows(select)?;
            let GroupByExpr::Expressions(exprs, _) = &mut select.group_by else { return Ok(()) };
            let windows: Vec<usize> =
                exprs.iter().enumerate().filter(|(_, e)| window_call(e).is_some()).map(|(i, _)| i).collect();
            let Some(&at) = windows.first() else { return Ok(()) };
            if windows.len() > 1 {
                return Err(SluiceError::unsupported(
                    "GROUP BY with several windows",
                    "an aggregation groups by at most one event-time window",
                    "group by a single window(...)",
                ));
            }
            let call = exprs[at].clone();
            let window = window_column_expr(&call)?;
            exprs[at] = Expr::Identifier(Ident::new(window.name));
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                    if *e == call {
                        *e = Expr::Identifier(Ident::new(window.name));
                    }
                }
            }
            if select.from.len() != 1 || !select.from[0].joins.is_empty() {
                return Err(SluiceError::unsupported(
                    "window(...) over a join",
                    "the window column is added to the single relation in FROM",
                    "compute the join in a subquery (FROM (SELECT ... JOIN ...) AS j) and window over it",
                ));
            }
            let relation = std::mem::replace(&mut select.from[0].relation, placeholder());
            select.from[0].relation = derived_with_window(relation, window)?;
            Ok(())
        }
        SetExpr::Query(q) => rewrite_windows(q),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left)?;
            rewrite_set_expr(right)
        }
        _ => Ok(()),
    }
}

/// A tumbling `window(ts, size)` in a select list that does not group by it becomes the row's
/// window (`tumble_window`), named `window` unless aliased: a stream whose rows carry windows,
/// e.g. to join two streams on equal windows.
fn rewrite_projected_windows(select: &mut datafusion::sql::sqlparser::ast::Select) -> Result<()> {
    let grouped: Vec<Expr> = match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => exprs.clone(),
        GroupByExpr::All(_) => vec![],
    };
    for item in &mut select.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        if window_call(expr).is_none() || grouped.contains(expr) {
            continue;
        }
        let column = window_column_expr(expr)?;
        if column.name != "window" || matches!(&column.expr, Expr::Function(f) if f.name.to_string() == "unnest") {
            return Err(SluiceError::unsupported(
                format!("{expr} outside GROUP BY"),
                "only a tumbling window is one window per row; sliding and session windows exist only as grouping keys",
                "use window(ts, size) in the select list, or group by the sliding or session window",
            ));
        }
        *item = SelectItem::ExprWithAlias { expr: column.expr, alias: alias.unwrap_or_else(|| Ident::new("window")) };
    }
    Ok(())
}

fn rewrite_factor(factor: &mut TableFactor) -> Result<()> {
    match factor {
        TableFactor::Derived { subquery, .. } => rewrite_windows(subquery),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            rewrite_factor(&mut table_with_joins.relation)?;
            for join in &mut table_with_joins.joins {
                rewrite_factor(&mut join.relation)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The window function's name when `expr` is a call to `window`/`tumble`/`hop`.
fn window_call(expr: &Expr) -> Option<&Function> {
    let Expr::Function(f) = expr else { return None };
    let name = f.name.0.last().and_then(ObjectNamePart::as_ident)?.value.to_lowercase();
    match name.as_str() {
        "window" | "tumble" | "hop" | "session_window" | "session" => Some(f),
        _ => None,
    }
}

/// The column a `GROUP BY` window call adds to its relation.
struct WindowColumn {
    /// `window`, or `session_window` for a session window (Spark's column names).
    name: &'static str,
    /// The expression computing it per row.
    expr: Expr,
    /// The row belongs to a window only where this holds.
    valid: Expr,
}

fn call_arguments(f: &Function, name: &str) -> Result<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return Err(SluiceError::sql(format!("{name}() needs arguments")));
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
            other => Err(SluiceError::sql(format!("unexpected argument {other} to {name}()"))),
        })
        .collect()
}

/// The column that a window call in `GROUP BY` stands for.
fn window_column_expr(call: &Expr) -> Result<WindowColumn> {
    let f = window_call(call).expect("caller checked");
    let name = f.name.to_string().to_lowercase();
    let args = call_arguments(f, &name)?;
    if name.ends_with("session_window") || name.ends_with("session") {
        if args.len() != 2 {
            return Err(SluiceError::sql(format!(
                "{name}() takes (event_time, gap), got {} arguments; the gap is a duration such as '5 minutes' or an expression giving one per row",
                args.len()
            )));
        }
        let expr = call_named(SESSION_ROW_WINDOW, args);
        return Ok(WindowColumn { name: "session_window", valid: Expr::IsNotNull(Box::new(expr.clone())), expr });
    }
    if !(2..=4).contains(&args.len()) {
        return Err(SluiceError::sql(format!(
            "{name}() takes (event_time, size[, slide[, start]]), got {} arguments",
            args.len()
        )));
    }
    let valid = Expr::IsNotNull(Box::new(args[0].clone()));
    let sliding = args.len() >= 3 && args[2] != args[1];
    let expr = if sliding {
        unnest(call_named(SLIDING_WINDOWS, args))
    } else {
        let mut tumble = vec![args[0].clone(), args[1].clone()];
        tumble.extend(args.get(3).cloned());
        call_named(TUMBLE_WINDOW, tumble)
    };
    Ok(WindowColumn { name: "window", expr, valid })
}

fn parse_template(sql: &str) -> Query {
    match Parser::parse_sql(&SluiceDialect::default(), sql).expect("template parses").remove(0) {
        Statement::Query(q) => *q,
        _ => unreachable!("template is a query"),
    }
}

fn call_named(name: &str, args: Vec<Expr>) -> Expr {
    let Expr::Function(mut f) =
        parse_template("SELECT f(1)").body.as_select().expect("select").projection[0].clone().expr_or_panic()
    else {
        unreachable!("template is a call")
    };
    f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]);
    let FunctionArguments::List(list) = &mut f.args else { unreachable!("template has arguments") };
    list.args = args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect();
    Expr::Function(f)
}

fn unnest(arg: Expr) -> Expr {
    call_named("unnest", vec![arg])
}

fn placeholder() -> TableFactor {
    parse_template("SELECT 1 FROM placeholder").body.as_select().expect("select").from[0].relation.clone()
}

/// `(SELECT *, <window> AS <name> FROM <relation> WHERE <valid>) AS <relation's name>`.
fn derived_with_window(relation: TableFactor, window: WindowColumn) -> Result<TableFactor> {
    let alias = match &relation {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => a.name.clone(),
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .cloned()
            .ok_or_else(|| SluiceError::sql(format!("cannot window over {name}")))?,
        other => {
            return Err(SluiceError::unsupported(
                format!("window(...) over {other}"),
                "the window column is added to a table or an aliased subquery",
                "give the subquery an alias",
            ))
        }
    };
    let mut inner = parse_template("SELECT *, w AS window FROM placeholder WHERE t IS NOT NULL");
    let select = match inner.body.as_mut() {
        SetExpr::Select(s) => s,
        _ => unreachable!("template is a select"),
    };
    if let SelectItem::ExprWithAlias { expr, alias } = &mut select.projection[1] {
        *expr = window.expr;
        *alias = Ident::new(window.name);
    }
    select.from[0].relation = relation;
    select.selection = Some(window.valid);
    Ok(TableFactor::Derived {
        lateral: false,
        subquery: Box::new(inner),
        alias: Some(TableAlias { explicit: true, name: alias, columns: vec![], at: None }),
        sample: None,
    })
}

trait SelectItemExt {
    fn expr_or_panic(self) -> Expr;
}

impl SelectItemExt for SelectItem {
    fn expr_or_panic(self) -> Expr {
        match self {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => unreachable!("template item is an expression"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let Statement::Query(mut q) = Parser::parse_sql(&SluiceDialect::default(), sql).unwrap().remove(0) else {
            panic!("not a query")
        };
        rewrite_windows(&mut q).unwrap();
        q.to_string()
    }

    #[test]
    fn tumbling_window_becomes_a_derived_column() {
        let sql = rewritten("SELECT window.start, key, count(*) FROM events GROUP BY window(ts, '10 seconds'), key");
        assert_eq!(
            sql,
            "SELECT window.start, key, count(*) FROM (SELECT *, tumble_window(ts, '10 seconds') AS window \
             FROM events WHERE ts IS NOT NULL) AS events GROUP BY window, key"
        );
    }

    #[test]
    fn sliding_window_unnests_every_window() {
        let sql = rewritten("SELECT count(*) FROM e AS x GROUP BY window(ts, '10 seconds', '5 seconds')");
        assert!(sql.contains("unnest(sliding_windows(ts, '10 seconds', '5 seconds')) AS window"), "{sql}");
        assert!(sql.ends_with(") AS x GROUP BY window"), "{sql}");
    }

    #[test]
    fn session_window_becomes_a_per_row_session_column() {
        let sql = rewritten("SELECT session_window.end, count(*) FROM e GROUP BY session_window(ts, '5 seconds'), k");
        assert_eq!(
            sql,
            "SELECT session_window.end, count(*) FROM (SELECT *, session_row_window(ts, '5 seconds') AS session_window \
             FROM e WHERE session_row_window(ts, '5 seconds') IS NOT NULL) AS e GROUP BY session_window, k"
        );
    }
}
