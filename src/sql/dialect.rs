//! sluice's SQL dialect: DataFusion's generic dialect with the switches streaming SQL needs.

use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};

/// The lexical dialect of sluice scripts: the generic dialect, with aggregate `FILTER (WHERE ...)`
/// and Spark's nested column types `STRUCT<name type, ...>` and `MAP<key type, value type>`
/// (`ARRAY<type>` the generic dialect already has).
///
/// The stream-table grammar (`CREATE TABLE ... WATERMARK FOR ... WITH (...)`) is parsed by
/// [`super::parser`] on the same sqlparser `Parser`, not through `Dialect::parse_statement`:
/// DataFusion's `DFParser` sends every `CREATE` straight to `Parser::parse_create`, which never
/// consults that hook, and a hook would have to squeeze the watermark into sqlparser's
/// `CreateTable`, which has no field for it.
#[derive(Debug, Default)]
pub struct SluiceDialect {
    generic: GenericDialect,
}

impl Dialect for SluiceDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        self.generic.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.generic.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.generic.is_delimited_identifier_start(ch)
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_struct_literal(&self) -> bool {
        // As the generic dialect: `STRUCT<...>` types (and `STRUCT(...)` values).
        true
    }

    fn supports_map_literal_with_angle_brackets(&self) -> bool {
        // Spark's `MAP<K, V>` type.
        true
    }

    fn supports_select_item_multi_column_alias(&self) -> bool {
        // Spark's `posexplode(a) AS (i, x)`, `explode(m) AS (k, v)`.
        true
    }
}
