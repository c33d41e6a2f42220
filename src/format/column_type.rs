//! The arrow type of a column declared in a stream table's DDL.
//!
//! DataFusion's SQL type mapping does the work (`CAST(NULL AS <type>)` planned by DataFusion, so
//! every type it knows keeps its meaning, e.g. `TIMESTAMP` is nanoseconds without a timezone);
//! this module adds Spark's `MAP<K, V>`, which DataFusion 55 does not map, at any depth inside
//! `STRUCT<...>` and `ARRAY<...>`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::sql::sqlparser::ast::{self as sqlast, ArrayElemTypeDef};

use crate::sql::parser::normalize;
use crate::Result;

/// The arrow type of the SQL type `ty` as DataFusion maps it, with `MAP<K, V>` as an arrow map
/// of `key` (not null; a `STRING` key is Utf8) and `value` (nullable) entries.
///
/// Struct field names are normalized as column names are (lower case unless quoted).
///
/// # Errors
/// DataFusion's planning error for a type it does not support.
pub fn arrow_type(state: &SessionState, ty: &sqlast::DataType) -> Result<DataType> {
    if !contains_map(ty) {
        return datafusion_type(state, ty);
    }
    Ok(match ty {
        sqlast::DataType::Map(key, value) => {
            // A STRING key is Utf8, not DataFusion's Utf8View: DataFusion 55 compares the key of
            // `m['k']` with a Utf8 literal and refuses Utf8View keys.
            let key = match arrow_type(state, key)? {
                DataType::Utf8View => DataType::Utf8,
                other => other,
            };
            let entries =
                Fields::from(vec![Field::new("key", key, false), Field::new("value", arrow_type(state, value)?, true)]);
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
        }
        sqlast::DataType::Struct(fields, _) => DataType::Struct(
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let name = f.field_name.as_ref().map_or_else(|| format!("c{i}"), normalize);
                    Ok(Field::new(name, arrow_type(state, &f.field_type)?, true))
                })
                .collect::<Result<Fields>>()?,
        ),
        sqlast::DataType::Array(
            ArrayElemTypeDef::AngleBracket(element) | ArrayElemTypeDef::SquareBracket(element, None),
        ) => DataType::new_list(arrow_type(state, element)?, true),
        other => datafusion_type(state, other)?,
    })
}

/// Whether `ty` is or contains a `MAP`.
fn contains_map(ty: &sqlast::DataType) -> bool {
    match ty {
        sqlast::DataType::Map(..) => true,
        sqlast::DataType::Struct(fields, _) => fields.iter().any(|f| contains_map(&f.field_type)),
        sqlast::DataType::Array(
            ArrayElemTypeDef::AngleBracket(element)
            | ArrayElemTypeDef::SquareBracket(element, _)
            | ArrayElemTypeDef::Parenthesis(element),
        ) => contains_map(element),
        _ => false,
    }
}

/// `ty` through DataFusion's own mapping: the type of `CAST(NULL AS ty)`.
fn datafusion_type(state: &SessionState, ty: &sqlast::DataType) -> Result<DataType> {
    let empty = DFSchema::empty();
    let cast = sqlast::Expr::Cast {
        kind: sqlast::CastKind::Cast,
        expr: Box::new(sqlast::Expr::value(sqlast::Value::Null)),
        data_type: ty.clone(),
        array: false,
        format: None,
    };
    let expr = state.create_logical_expr_from_sql_expr(sqlast::ExprWithAlias { expr: cast, alias: None }, &empty)?;
    Ok(expr.get_type(&empty)?)
}
