//! Stream tables: declared in SQL (`CREATE TABLE ... WITH (connector = ...)`) or from the
//! DataFrame API, checked and registered in the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, Operator};
use datafusion::sql::sqlparser::ast::{self as sqlast};

use crate::format::decode::sql_type_name;
use crate::operator::watermark::{WatermarkSpec, WATERMARK_DELAY_METADATA};
use crate::plan::stream_table::StreamTable;
use crate::plan::time_range::interval_literal_ms;
use crate::sink::kafka::KAFKA_SINK_OPTIONS;
use crate::source::kafka::{KafkaColumns, KafkaSourceOptions, CLIENT_OPTION_PREFIX, KAFKA_SOURCE_OPTIONS};
use crate::source::nexmark::{nexmark_schema, NexmarkOptions, NEXMARK_OPTIONS};
use crate::source::rate::{rate_schema, RateSourceOptions};
use crate::source::socket::{socket_schema, SocketSourceOptions};
use crate::sql::parser::{normalize, CreateStreamTable};
use crate::{Result, SluiceError};

use super::{StreamContext, StreamTableDef};
use datafusion::common::TableReference;

impl StreamContext {
    pub(super) fn create_stream_table(&mut self, ddl: CreateStreamTable) -> Result<()> {
        for column in &ddl.columns {
            self.spellings.note(&column.name);
        }
        if self.tables.contains_key(&ddl.name) && !ddl.or_replace {
            return Err(SluiceError::sql(format!("table '{}' already exists; use CREATE OR REPLACE TABLE", ddl.name)));
        }
        let connector = check_connector_options(&ddl.name, &ddl.options)?;
        if connector == "memory" && !ddl.columns.is_empty() {
            return Err(SluiceError::sql(format!(
                "table '{}': a memory table is a sink taking the columns of the query writing it; declare it without \
                 columns, then SELECT from it",
                ddl.name
            )));
        }
        let schema = match connector_schema(&ddl.name, &connector, &ddl.options)? {
            Some(schema) => Some(self.check_connector_columns(&ddl, &connector, schema)?),
            None if ddl.columns.is_empty() => None,
            None => Some(self.declared_schema(&ddl)?),
        };
        let schema = match schema {
            None if ddl.watermark.is_some() => {
                return Err(SluiceError::sql(format!("table '{}': a WATERMARK needs declared columns", ddl.name)));
            }
            None => None,
            Some(schema) => {
                let watermark =
                    ddl.watermark.as_ref().map(|w| self.watermark_spec(&ddl.name, &schema, w)).transpose()?;
                Some(mark_event_time(&ddl.name, schema, watermark.as_ref())?)
            }
        };
        self.register_connector_table(ddl, &connector, schema)
    }

    /// Registers a checked connector table with its schema (`None`: a sink taking the query's
    /// columns); a stream is also registered with DataFusion for planning.
    pub(crate) fn register_connector_table(
        &mut self,
        ddl: CreateStreamTable,
        connector: &str,
        schema: Option<SchemaRef>,
    ) -> Result<()> {
        if let (Some(schema), "kafka") = (&schema, connector) {
            let format = KafkaSourceOptions::parse(&ddl.name, &ddl.options)?.format;
            drop(KafkaColumns::new(&ddl.name, schema.clone(), format)?);
        }
        if let Some(schema) = &schema {
            // Registered for planning only; every query scans its own StreamTable.
            let name = TableReference::bare(ddl.name.as_str());
            self.ctx.deregister_table(name.clone())?;
            self.ctx.register_table(name, Arc::new(StreamTable::new(&ddl.name, schema.clone(), 1)))?;
        }
        self.tables.insert(ddl.name.clone(), StreamTableDef::Connector { ddl: Box::new(ddl), schema });
        Ok(())
    }

    /// The columns of a connector that fixes them (`rate`, `socket`): those declared, if any, must
    /// be exactly the connector's, so that a script states what it reads without changing it.
    pub(super) fn check_connector_columns(
        &self,
        ddl: &CreateStreamTable,
        connector: &str,
        schema: SchemaRef,
    ) -> Result<SchemaRef> {
        if ddl.columns.is_empty() {
            return Ok(schema);
        }
        let declared = self.declared_schema(ddl)?;
        let same = declared.fields().len() == schema.fields().len()
            && declared
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(d, f)| d.name() == f.name() && sql_type_name(d.data_type()) == sql_type_name(f.data_type()));
        if !same {
            let columns = |s: &Schema| {
                s.fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SluiceError::sql(format!(
                "table '{}': connector '{connector}' produces the columns ({}), but the table declares ({}); declare exactly \
                 those, or no columns",
                ddl.name,
                columns(&schema),
                columns(&declared)
            )));
        }
        Ok(schema)
    }

    /// Column types through DataFusion's own SQL type mapping, plus `MAP<K, V>`
    /// ([`crate::format::column_type`]).
    pub(super) fn declared_schema(&self, ddl: &CreateStreamTable) -> Result<SchemaRef> {
        let state = self.ctx.state();
        let fields = ddl
            .columns
            .iter()
            .map(|c| {
                let data_type = crate::format::column_type::arrow_type(&state, &c.data_type)?;
                let nullable = !c.options.iter().any(|o| o.option == sqlast::ColumnOption::NotNull);
                Ok(Field::new(normalize(&c.name), data_type, nullable))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    /// `WATERMARK FOR ts AS ts - INTERVAL ...` as a column and a delay, planned by DataFusion.
    pub(super) fn watermark_spec(
        &self,
        table: &str,
        schema: &SchemaRef,
        clause: &crate::sql::WatermarkClause,
    ) -> Result<WatermarkSpec> {
        let column = normalize(&clause.column);
        check_event_time_column(table, schema, &column)?;
        let bad = |why: &str| {
            SluiceError::sql(format!(
                "table '{table}': WATERMARK FOR {column} AS {}: {why}; write WATERMARK FOR {column} AS {column} - INTERVAL '10' SECOND",
                clause.expr
            ))
        };
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = self.ctx.state().create_logical_expr_from_sql_expr(
            sqlast::ExprWithAlias { expr: clause.expr.clone(), alias: None },
            &df_schema,
        )?;
        let is_column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
        let delay_ms = match &expr {
            e if is_column(e) => 0,
            Expr::BinaryExpr(b) if b.op == Operator::Minus && is_column(&b.left) => {
                interval_literal_ms(&b.right).ok_or_else(|| bad("the delay must be a constant day-time INTERVAL"))?
            }
            _ => return Err(bad("expected the column minus an interval")),
        };
        if delay_ms < 0 {
            return Err(bad("the delay must not be negative"));
        }
        Ok(WatermarkSpec { column, delay_ms })
    }
}

/// Checks the options of stream table `table`: a known connector, only its options (Kafka's
/// client settings pass through under `kafka.`), values that parse. Returns the connector,
/// lower-cased.
///
/// # Errors
/// [`SluiceError::Sql`] naming the table, the option and what is accepted.
pub(crate) fn check_connector_options(table: &str, options: &BTreeMap<String, String>) -> Result<String> {
    let connector = options.get("connector").map(|c| c.to_ascii_lowercase()).ok_or_else(|| {
        SluiceError::sql(format!("table '{}' needs a connector option, e.g. WITH (connector = 'file', ...)", table))
    })?;
    let kafka_options = [KAFKA_SOURCE_OPTIONS, KAFKA_SINK_OPTIONS].concat();
    let allowed: &[&str] = match connector.as_str() {
        "file" => &[
            "connector",
            "path",
            "format",
            "max_files_per_trigger",
            "max_file_age",
            "clean_source",
            "source_archive_dir",
            "bad_data",
            "header",
            "output_mode",
        ],
        "console" => &["connector", "num_rows", "truncate", "output_mode"],
        "memory" => &["connector", "output_mode"],
        "rate" => &["connector", "rows_per_second", "ramp_up_time", "num_partitions"],
        "nexmark" => NEXMARK_OPTIONS,
        "socket" => &["connector", "host", "port", "bad_data"],
        "kafka" => &kafka_options,
        other => {
            return Err(SluiceError::sql(format!(
            "table '{}': unknown connector '{other}'; built in: 'file', 'console', 'memory', 'rate', 'nexmark', 'socket', \
             'kafka'",
            table
        )))
        }
    };
    // Kafka's client settings pass through under `kafka.` (librdkafka checks them).
    let pass_through = |k: &str| connector == "kafka" && k.starts_with(CLIENT_OPTION_PREFIX);
    if let Some(unknown) = options.keys().find(|k| !allowed.contains(&k.as_str()) && !pass_through(k)) {
        return Err(SluiceError::sql(format!(
            "table '{}': unknown option '{unknown}' for connector '{connector}'; accepted: {}",
            table,
            allowed.join(", ")
        )));
    }
    // Options are checked now, so that a bad one fails the script before any query starts.
    match connector.as_str() {
        "rate" => drop(RateSourceOptions::parse(table, options)?),
        "nexmark" => drop(NexmarkOptions::parse(table, options)?),
        "socket" => drop(SocketSourceOptions::parse(table, options)?),
        "kafka" => drop(KafkaSourceOptions::parse(table, options)?),
        _ => {}
    }
    Ok(connector)
}

/// The columns of a connector that fixes them (for `nexmark`, by the `stream` option of table
/// `table`); `None` when the table declares its own.
///
/// # Errors
/// [`SluiceError::Sql`] for a `nexmark` table without a valid `stream` option.
pub(super) fn connector_schema(
    table: &str,
    connector: &str,
    options: &BTreeMap<String, String>,
) -> Result<Option<SchemaRef>> {
    Ok(match connector {
        "rate" => Some(rate_schema()),
        "socket" => Some(socket_schema()),
        "nexmark" => Some(nexmark_schema(NexmarkOptions::parse(table, options)?.stream)),
        _ => None,
    })
}

/// A watermark's column must exist and be a TIMESTAMP; the error says which columns could carry
/// it, or how to make this one a TIMESTAMP.
fn check_event_time_column(table: &str, schema: &Schema, column: &str) -> Result<()> {
    let timestamps: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        .map(|f| f.name().as_str())
        .collect();
    let Ok(field) = schema.field_with_name(column) else {
        let fix = match timestamps.first() {
            Some(first) => format!(
                "its TIMESTAMP columns are {}; e.g. WATERMARK FOR {first} AS {first} - INTERVAL '10' SECOND",
                timestamps.join(", ")
            ),
            None => format!(
                "it has no TIMESTAMP column; declare the event-time column, e.g. ({column} TIMESTAMP, ...), and the watermark on it"
            ),
        };
        return Err(SluiceError::sql(format!(
            "table '{table}': the watermark column '{column}' is not a column; {fix}"
        )));
    };
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        let other = match timestamps.first() {
            Some(_) => format!(", or put the watermark on a TIMESTAMP column ({})", timestamps.join(", ")),
            None => String::new(),
        };
        return Err(SluiceError::sql(format!(
            "table '{table}': the watermark column '{column}' is {}, not a TIMESTAMP; declare it as {column} TIMESTAMP \
             (the file source reads timestamp text such as 2024-01-01T00:00:00Z into it; in a query, \
             CAST({column} AS TIMESTAMP) converts text){other}",
            field.data_type()
        )));
    }
    Ok(())
}

/// Marks the event-time column of `schema` with its watermark delay (field metadata).
pub(super) fn mark_event_time(table: &str, schema: SchemaRef, watermark: Option<&WatermarkSpec>) -> Result<SchemaRef> {
    let Some(w) = watermark else { return Ok(schema) };
    check_event_time_column(table, &schema, &w.column)?;
    let index = schema.index_of(&w.column)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut metadata = fields[index].metadata().clone();
    metadata.insert(WATERMARK_DELAY_METADATA.to_string(), w.delay_ms.to_string());
    fields[index] = fields[index].clone().with_metadata(metadata);
    Ok(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}
