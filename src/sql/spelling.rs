//! Spark keeps the case of column names as written (`clickTime`), while DataFusion folds unquoted
//! identifiers to lower case (`clicktime`). Resolution stays DataFusion's; the names a query
//! outputs get back the spelling the script wrote them with, so sinks see Spark's column names.

use std::collections::BTreeMap;

use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast::{Ident, Query, SelectItem, SetExpr};

use crate::Result;

/// Lower-case name → spelling as written, for unquoted identifiers that have capitals.
#[derive(Debug, Clone, Default)]
pub struct Spellings(BTreeMap<String, String>);

impl Spellings {
    /// Records how `ident` was written.
    pub fn note(&mut self, ident: &Ident) {
        if ident.quote_style.is_none() && ident.value.chars().any(char::is_uppercase) {
            self.0.entry(ident.value.to_lowercase()).or_insert_with(|| ident.value.clone());
        }
    }

    /// Records the aliases of `query`'s select list, which take precedence over the spellings of
    /// the tables' columns (a plain column reference keeps its column's name, as in Spark).
    pub fn with_query(&self, query: &Query) -> Self {
        let mut own = Spellings::default();
        if let SetExpr::Select(select) = query.body.as_ref() {
            for item in &select.projection {
                if let SelectItem::ExprWithAlias { alias, .. } = item {
                    own.note(alias);
                }
            }
        }
        for (lower, written) in &self.0 {
            own.0.entry(lower.clone()).or_insert_with(|| written.clone());
        }
        own
    }

    /// `plan` with its output columns renamed to their written spelling (a projection on top);
    /// unchanged when no name needs it.
    ///
    /// # Errors
    /// A DataFusion error if the projection cannot be built.
    pub fn restore(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let schema = plan.schema().clone();
        let renamed: Vec<Option<&String>> = schema.fields().iter().map(|f| self.0.get(f.name().as_str())).collect();
        let mut names: Vec<&str> =
            schema.fields().iter().zip(&renamed).map(|(f, r)| r.map_or(f.name().as_str(), |r| r.as_str())).collect();
        names.sort_unstable();
        let duplicated = names.windows(2).any(|w| w[0] == w[1]);
        // Columns of the same name from two joined tables keep their qualifiers instead.
        if renamed.iter().all(Option::is_none) || duplicated {
            return Ok(plan);
        }
        let exprs: Vec<Expr> = schema
            .iter()
            .zip(renamed)
            .map(|((qualifier, field), spelled)| {
                let column = Expr::Column(Column::from((qualifier, field)));
                match spelled {
                    Some(name) => column.alias(name.as_str()),
                    None => column,
                }
            })
            .collect();
        Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
    }
}
