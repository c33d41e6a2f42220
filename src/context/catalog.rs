//! What the context knows, as the shell shows it: `SHOW TABLES`, `DESCRIBE t`,
//! `SHOW CREATE TABLE t`.

use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;

use super::{StreamContext, StreamTableDef};
use crate::operator::watermark::WatermarkSpec;
use crate::plan::stream_table::StreamTable;
use crate::{Result, SluiceError};

/// One table of the context.
#[derive(Debug, Clone)]
pub(crate) struct TableEntry {
    pub(crate) name: String,
    /// `stream`, `sink` or `table` (bounded, including the tables memory sinks write).
    pub(crate) kind: &'static str,
    /// The connector (`file`, `kafka`, `memory`, ...); empty for a bounded table.
    pub(crate) connector: String,
    /// Its columns; `None` for a sink taking the columns of the query writing to it (for a
    /// memory sink, until a query created its table).
    pub(crate) schema: Option<SchemaRef>,
}

impl TableEntry {
    /// `column minus delay` for a stream declaring a watermark.
    pub(crate) fn watermark(&self) -> Option<WatermarkSpec> {
        self.schema.as_ref().and_then(|s| WatermarkSpec::of_schema(s))
    }
}

impl StreamContext {
    /// Every table: streams and sinks, then bounded tables, each group by name.
    pub(crate) async fn catalog(&self) -> Result<Vec<TableEntry>> {
        let mut entries = Vec::new();
        for (name, def) in &self.tables {
            let (kind, connector, schema) = match def {
                StreamTableDef::Connector { ddl, schema: Some(schema) } => {
                    ("stream", ddl.options.get("connector").cloned().unwrap_or_default(), Some(schema.clone()))
                }
                StreamTableDef::Connector { ddl, schema: None } => {
                    let connector = ddl.options.get("connector").cloned().unwrap_or_default().to_ascii_lowercase();
                    // A memory sink's columns are those of the table its query last created.
                    let created = match connector.as_str() {
                        "memory" => self.ctx.table_provider(TableReference::bare(name.as_str())).await.ok(),
                        _ => None,
                    };
                    ("sink", connector, created.map(|t| t.schema()))
                }
                StreamTableDef::Memory { stream } => ("stream", "memory".to_string(), Some(stream.schema())),
                StreamTableDef::Sink { .. } => ("sink", "rust".to_string(), None),
            };
            entries.push(TableEntry { name: name.clone(), kind, connector, schema });
        }
        let mut bounded = Vec::new();
        for name in
            self.ctx.catalog("datafusion").and_then(|c| c.schema("public")).map(|s| s.table_names()).unwrap_or_default()
        {
            if self.tables.contains_key(&name) {
                continue;
            }
            let provider = self.ctx.table_provider(TableReference::bare(name.as_str())).await?;
            let any: &dyn std::any::Any = provider.as_ref();
            if any.downcast_ref::<StreamTable>().is_none() {
                bounded.push(TableEntry {
                    name,
                    kind: "table",
                    connector: String::new(),
                    schema: Some(provider.schema()),
                });
            }
        }
        bounded.sort_by(|a, b| a.name.cmp(&b.name));
        entries.extend(bounded);
        Ok(entries)
    }

    /// The table `name`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the tables there are when there is none of that name.
    pub(crate) async fn catalog_entry(&self, name: &str) -> Result<TableEntry> {
        let entries = self.catalog().await?;
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        entries
            .into_iter()
            .find(|e| e.name == name || e.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| SluiceError::sql(format!("no table '{name}'; the tables are: {}", names.join(", "))))
    }

    /// The statement that declared stream or sink table `name`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for an unknown table, or one not declared by SQL (a memory stream or
    /// sink registered from Rust, a bounded table).
    pub(crate) async fn show_create_table(&self, name: &str) -> Result<String> {
        let entry = self.catalog_entry(name).await?;
        match self.tables.get(&entry.name) {
            Some(StreamTableDef::Connector { ddl, schema }) if !ddl.columns.is_empty() || schema.is_none() => {
                Ok(format!("{ddl};"))
            }
            Some(StreamTableDef::Connector { ddl, .. }) => {
                Ok(format!("-- declared by read_stream(), its columns given by schema(...)\n{ddl};"))
            }
            _ => Err(SluiceError::sql(format!(
                "'{}' is a {} registered from Rust or by a query, not declared by CREATE TABLE; DESCRIBE {} shows \
                 its columns",
                entry.name, entry.kind, entry.name
            ))),
        }
    }
}
