//! Spark's generators in a select list, on the parsed AST: `explode`, `explode_outer`,
//! `posexplode`, `posexplode_outer` become DataFusion's `unnest` / `unnest_outer`, which drop (or,
//! outer, keep as one NULL row) NULL and empty collections as Spark's do:
//!
//! ```sql
//! SELECT key, explode(tags) FROM events           -- unnest(tags) AS col
//! SELECT posexplode(tags) AS (i, tag) FROM events  -- CAST(unnest(range(0, cardinality(tags))) AS INT) AS i,
//!                                                  -- unnest(tags) AS tag
//! SELECT explode(m) AS (k, v) FROM events         -- unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v
//! ```
//!
//! Several `unnest` calls in one select are zipped by DataFusion, which is how the position and the
//! map's keys and values stay together. The AST has no types, so a MAP is recognised by its
//! aliases: `explode(m) AS (key, value)` (two names; three for `posexplode`). Column names default
//! to Spark's: `col`, `pos`. As in Spark, a select has at most one generator, and a generator is a
//! whole select item (a second one would be zipped instead of multiplied, a silent difference).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectNamePart, Query, Select, SelectItem,
    Statement, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::dialect::SluiceDialect;
use crate::{Result, SluiceError};

/// Rewrites every generator in the select lists of `query`; whether there was one.
///
/// # Errors
/// [`SluiceError::Unsupported`] for two generators in one select or a generator inside an
/// expression; [`SluiceError::Sql`] for a generator without exactly one argument or with aliases
/// that fit neither an array nor a map.
pub fn rewrite_generators(query: &mut Query) -> Result<bool> {
    let mut rewriter = Rewriter { rewrote: false };
    match query.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(rewriter.rewrote),
    }
}

/// DataFusion's planning error for `unnest` of a MAP, which the rewrite makes of `explode(m)`
/// without the map's two column names, said in terms of `explode`.
pub fn explain_map_explode(error: SluiceError) -> SluiceError {
    if error.to_string().contains("unnest() can only be applied to array") {
        return SluiceError::sql(format!(
            "explode(...) of a MAP gives two columns: name them, explode(m) AS (key, value) \
             (posexplode(m) AS (pos, key, value)); an array or map is needed ({error})"
        ));
    }
    error
}

struct Rewriter {
    rewrote: bool,
}

impl VisitorMut for Rewriter {
    type Break = SluiceError;

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<SluiceError> {
        match rewrite_select(select) {
            Ok(rewrote) => {
                self.rewrote |= rewrote;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    }

    // Runs on the select's expressions after `pre_visit_select` rewrote its items: a generator
    // still there is nested in an expression.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<SluiceError> {
        match generator(expr) {
            Some((name, _)) => ControlFlow::Break(SluiceError::unsupported(
                format!("{name}(...) inside an expression ({expr})"),
                "a generator makes rows, so it must be a whole select item, as in Spark",
                format!("select {name}(...) AS x in a subquery and use x in the outer select"),
            )),
            None => ControlFlow::Continue(()),
        }
    }
}

/// A call to a generator: its lower-case name and its argument.
fn generator(expr: &Expr) -> Option<(String, Result<Expr>)> {
    let Expr::Function(f) = expr else { return None };
    let [ObjectNamePart::Identifier(ident)] = f.name.0.as_slice() else { return None };
    let name = ident.value.to_lowercase();
    if !["explode", "explode_outer", "posexplode", "posexplode_outer"].contains(&name.as_str()) {
        return None;
    }
    let argument = single_argument(f).ok_or_else(|| SluiceError::sql(format!("{name}() takes exactly one argument")));
    Some((name, argument))
}

fn single_argument(f: &Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else { return None };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e.clone()),
        _ => None,
    }
}

/// Rewrites the generator of `select`'s items; whether it had one.
fn rewrite_select(select: &mut Select) -> Result<bool> {
    let mut items = Vec::with_capacity(select.projection.len());
    let mut seen: Option<String> = None;
    for item in std::mem::take(&mut select.projection) {
        let (expr, aliases) = match &item {
            SelectItem::UnnamedExpr(e) => (e, vec![]),
            SelectItem::ExprWithAlias { expr, alias } => (expr, vec![alias.clone()]),
            SelectItem::ExprWithAliases { expr, aliases } => (expr, aliases.clone()),
            _ => {
                items.push(item);
                continue;
            }
        };
        let Some((name, argument)) = generator(expr) else {
            items.push(item);
            continue;
        };
        if let Some(first) = seen.replace(name.clone()) {
            return Err(SluiceError::unsupported(
                format!("{first}(...) and {name}(...) in one select"),
                "Spark allows one generator per select clause (several unnests would be zipped, not multiplied)",
                "explode in a subquery and again in the outer select",
            ));
        }
        items.extend(expand(&name, argument?, aliases)?);
    }
    select.projection = items;
    Ok(seen.is_some())
}

/// The select items `name(argument) AS (aliases)` stands for.
fn expand(name: &str, argument: Expr, aliases: Vec<Ident>) -> Result<Vec<SelectItem>> {
    let unnest = if name.ends_with("_outer") { "unnest_outer" } else { "unnest" };
    let positions = name.starts_with("pos");
    let column = |template: &str, alias: &Ident| -> SelectItem {
        let sql = template.replace("UNNEST", unnest);
        let mut expr = parse_expr(&sql);
        replace_placeholder(&mut expr, &argument);
        SelectItem::ExprWithAlias { expr, alias: alias.clone() }
    };
    let pos = "CAST(UNNEST(range(0, cardinality(x))) AS INT)";
    let names = |defaults: &[&str]| -> Vec<Ident> {
        if aliases.is_empty() {
            defaults.iter().map(|d| Ident::new(*d)).collect()
        } else {
            aliases.clone()
        }
    };
    let (array, map) = if positions { (2, 3) } else { (1, 2) };
    if !aliases.is_empty() && aliases.len() != array && aliases.len() != map {
        return Err(SluiceError::sql(format!(
            "{name}(...) AS ({}): {name} of an array gives {array} column(s), of a map {map}",
            aliases.iter().map(|a| a.value.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let names = names(if positions { &["pos", "col"] } else { &["col"] });
    let mut items = Vec::new();
    let mut names = names.iter();
    if positions {
        items.push(column(pos, names.next().expect("counted")));
    }
    if aliases.len() == map {
        items.push(column("UNNEST(map_keys(x))", names.next().expect("counted")));
        items.push(column("UNNEST(map_values(x))", names.next().expect("counted")));
    } else {
        items.push(column("UNNEST(x)", names.next().expect("counted")));
    }
    Ok(items)
}

/// A template expression (constant SQL, so it parses).
fn parse_expr(sql: &str) -> Expr {
    let statement = Parser::parse_sql(&SluiceDialect::default(), &format!("SELECT {sql}")).expect("template parses");
    let Statement::Query(query) = &statement[0] else { unreachable!("template is a query") };
    match &query.body.as_select().expect("template is a select").projection[0] {
        SelectItem::UnnamedExpr(e) => e.clone(),
        _ => unreachable!("template is an expression"),
    }
}

/// Replaces the identifier `x` in a template by `argument`.
fn replace_placeholder(template: &mut Expr, argument: &Expr) {
    struct Placeholder<'a>(&'a Expr);
    impl VisitorMut for Placeholder<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if matches!(expr, Expr::Identifier(i) if i.value == "x") {
                *expr = self.0.clone();
            }
            ControlFlow::Continue(())
        }
    }
    let _ = template.visit(&mut Placeholder(argument));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> Result<String> {
        let Statement::Query(mut q) = Parser::parse_sql(&SluiceDialect::default(), sql).unwrap().remove(0) else {
            panic!("not a query")
        };
        assert_eq!(rewrite_generators(&mut q)?, sql.contains("explode"));
        Ok(q.to_string())
    }

    #[test]
    fn generators_become_unnest() {
        assert_eq!(rewritten("SELECT k, explode(a) FROM t").unwrap(), "SELECT k, unnest(a) AS col FROM t");
        assert_eq!(
            rewritten("SELECT n FROM (SELECT explode_outer(a) AS n FROM t) AS s").unwrap(),
            "SELECT n FROM (SELECT unnest_outer(a) AS n FROM t) AS s"
        );
        assert_eq!(
            rewritten("SELECT posexplode(a) FROM t").unwrap(),
            "SELECT CAST(unnest(range(0, cardinality(a))) AS INT) AS pos, unnest(a) AS col FROM t"
        );
        assert_eq!(
            rewritten("SELECT explode(m) AS (k, v) FROM t").unwrap(),
            "SELECT unnest(map_keys(m)) AS k, unnest(map_values(m)) AS v FROM t"
        );
    }

    #[test]
    fn generators_spark_refuses_are_refused() {
        let err = rewritten("SELECT explode(a), explode(b) FROM t").unwrap_err().to_string();
        assert!(err.contains("one generator"), "{err}");
        let err = rewritten("SELECT explode(a) + 1 FROM t").unwrap_err().to_string();
        assert!(err.contains("whole select item"), "{err}");
        let err = rewritten("SELECT explode(a) AS (x, y, z) FROM t").unwrap_err().to_string();
        assert!(err.contains("gives 1 column(s)"), "{err}");
        let err = rewritten("SELECT explode(a, b) FROM t").unwrap_err().to_string();
        assert!(err.contains("exactly one argument"), "{err}");
    }
}
