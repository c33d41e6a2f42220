//! Opening a stream table as the source or the sink of a query, by its connector.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

use crate::dataframe::aggregation_keys;
use crate::format::decode::DecodeOptions;
use crate::format::{BadData, Format};
use crate::plan::window::parse_duration_ns;
use crate::plan::OutputMode;
use crate::sink::console::ConsoleSink;
use crate::sink::file::FileSink;
use crate::sink::kafka::KafkaSink;
use crate::sink::memory_table::MemoryTable;
use crate::sink::Sink;
use crate::source::file::{CleanSource, FileSource, FileSourceOptions};
use crate::source::kafka::{KafkaSource, KafkaSourceOptions};
use crate::source::nexmark::{NexmarkOptions, NexmarkSource};
use crate::source::rate::{RateSource, RateSourceOptions};
use crate::source::seen_files::DEFAULT_MAX_FILE_AGE_MS;
use crate::source::socket::{SocketSource, SocketSourceOptions};
use crate::source::Source;
use crate::sql::parser::CreateStreamTable;
use crate::{Result, SluiceError};

use super::{StreamContext, StreamTableDef};

impl StreamContext {
    /// The source reading table `ddl`, of `schema` (declared, or fixed by the connector).
    pub(super) fn open_source(&self, ddl: &CreateStreamTable, schema: SchemaRef) -> Result<Box<dyn Source>> {
        let connector = ddl.options.get("connector").map(|c| c.to_ascii_lowercase()).unwrap_or_default();
        match connector.as_str() {
            "file" => self.open_file_source(ddl, schema),
            "rate" => {
                Ok(Box::new(RateSource::new(&ddl.name, schema, RateSourceOptions::parse(&ddl.name, &ddl.options)?)))
            }
            "nexmark" => {
                Ok(Box::new(NexmarkSource::new(&ddl.name, schema, NexmarkOptions::parse(&ddl.name, &ddl.options)?)))
            }
            "socket" => {
                Ok(Box::new(SocketSource::new(&ddl.name, schema, SocketSourceOptions::parse(&ddl.name, &ddl.options)?)))
            }
            "kafka" => {
                let options = KafkaSourceOptions::parse(&ddl.name, &ddl.options)?;
                let decode =
                    DecodeOptions { time_zone: self.time_zone.as_deref().map(Arc::from), ..DecodeOptions::default() };
                Ok(Box::new(KafkaSource::try_new(&ddl.name, schema, options, decode)?))
            }
            other => Err(SluiceError::sql(format!(
                "table '{}' uses connector '{other}', which cannot be read as a stream",
                ddl.name
            ))),
        }
    }

    pub(super) fn open_file_source(&self, ddl: &CreateStreamTable, schema: SchemaRef) -> Result<Box<dyn Source>> {
        let option = |k: &str| ddl.options.get(k).map(String::as_str);
        let path =
            option("path").ok_or_else(|| SluiceError::sql(format!("file table '{}' needs a path option", ddl.name)))?;
        let max_files_per_trigger = option("max_files_per_trigger")
            .map(|v| {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    SluiceError::sql(format!(
                        "table '{}': max_files_per_trigger must be a positive integer, got '{v}'",
                        ddl.name
                    ))
                })
            })
            .transpose()?;
        let max_file_age_ms = option("max_file_age")
            .map(|v| parse_max_file_age(v).map_err(|e| SluiceError::sql(format!("table '{}': {e}", ddl.name))))
            .transpose()?
            .unwrap_or(DEFAULT_MAX_FILE_AGE_MS);
        let clean_source =
            match (option("clean_source").map(str::to_ascii_lowercase).as_deref(), option("source_archive_dir")) {
                (None | Some("off"), None) => CleanSource::Off,
                (Some("delete"), None) => CleanSource::Delete,
                (Some("archive"), Some(dir)) if Path::new(dir) != Path::new(path) => CleanSource::Archive(dir.into()),
                (Some("archive"), Some(_)) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': source_archive_dir must not be the source directory itself",
                        ddl.name
                    )))
                }
                (Some("archive"), None) => {
                    return Err(SluiceError::sql(format!(
                "table '{}': clean_source = 'archive' needs source_archive_dir, the directory to move read files to",
                ddl.name
            )))
                }
                (None | Some("off" | "delete"), Some(_)) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': source_archive_dir is only used with clean_source = 'archive'",
                        ddl.name
                    )))
                }
                (Some(other), _) => {
                    return Err(SluiceError::sql(format!(
                        "table '{}': clean_source must be 'off', 'delete' or 'archive', got '{other}'",
                        ddl.name
                    )))
                }
            };
        let decode = DecodeOptions {
            bad_data: option("bad_data").map(BadData::parse).transpose()?.unwrap_or(BadData::Fail),
            csv_header: option("header").map(parse_bool).transpose()?.unwrap_or(true),
            time_zone: self.time_zone.as_deref().map(Arc::from),
            ..DecodeOptions::default()
        };
        let options = FileSourceOptions {
            dir: path.into(),
            format: option("format").map(Format::parse).transpose()?.unwrap_or(Format::Json),
            max_files_per_trigger,
            max_file_age_ms,
            clean_source,
            decode,
        };
        Ok(Box::new(FileSource::try_new(&ddl.name, schema, options)?))
    }

    /// The sink of table `name` for a query of incremental plan `plan` in `mode`, and the
    /// table's declared schema. A `memory` table is (re)created here, with the query's columns.
    pub(super) fn open_sink(
        &self,
        name: &str,
        plan: &LogicalPlan,
        mode: OutputMode,
    ) -> Result<(Box<dyn Sink>, Option<SchemaRef>)> {
        let def = self.tables.get(name).ok_or_else(|| SluiceError::sql(format!("unknown sink table '{name}'")))?;
        match def {
            StreamTableDef::Sink { sink, .. } => Ok(((sink.0)(), None)),
            StreamTableDef::Memory { .. } => Err(SluiceError::sql(format!(
                "'{name}' is a memory stream, not a sink; register a sink with register_sink"
            ))),
            StreamTableDef::Connector { ddl, schema, .. } => {
                let option = |k: &str| ddl.options.get(k).map(String::as_str);
                let sink: Box<dyn Sink> = match option("connector").unwrap_or_default().to_ascii_lowercase().as_str() {
                    "memory" => {
                        let table = Arc::new(MemoryTable::new(Arc::new(plan.schema().as_arrow().clone())));
                        self.replace_table(name, Arc::clone(&table) as _)?;
                        Box::new(table.sink(mode, aggregation_keys(plan)))
                    }
                    "kafka" => Box::new(KafkaSink::new(name, &ddl.options)?.with_time_zone(self.time_zone.as_deref())?),
                    connector @ ("rate" | "nexmark" | "socket") => {
                        return Err(SluiceError::sql(format!(
                            "table '{name}' uses connector '{connector}', which is a source only; write to a 'file' or \
                             'console' table"
                        )))
                    }
                    "console" => {
                        let num_rows = option("num_rows")
                            .map(|v| {
                                v.parse::<usize>().map_err(|_| {
                                    SluiceError::sql(format!("table '{name}': num_rows must be a count, got '{v}'"))
                                })
                            })
                            .transpose()?
                            .unwrap_or(20);
                        let truncate = option("truncate").map(parse_bool).transpose()?.unwrap_or(true);
                        Box::new(ConsoleSink::stdout(num_rows, truncate).with_time_zone(self.time_zone.as_deref())?)
                    }
                    _ => {
                        let path = option("path")
                            .ok_or_else(|| SluiceError::sql(format!("file table '{name}' needs a path option")))?;
                        let format = option("format").map(Format::parse).transpose()?.unwrap_or(Format::Json);
                        Box::new(FileSink::new(name, path.into(), format)?.with_time_zone(self.time_zone.as_deref())?)
                    }
                };
                Ok((sink, schema.clone()))
            }
        }
    }
}

/// `max_file_age` in ms: a duration with a unit, in Spark's form (`7d`, `12h`, `30m`, `10s`,
/// `500ms`) or sluice's (`7 days`, `1 hour`). A bare number is refused: Spark reads it as ms,
/// a reader might mean seconds.
fn parse_max_file_age(text: &str) -> std::result::Result<i64, String> {
    let wrong =
        |why: &str| format!("max_file_age must be a positive duration such as '7d' or '12 hours', got '{text}'{why}");
    if text.trim().parse::<f64>().is_ok() {
        return Err(wrong(" (give a unit)"));
    }
    let ns = parse_duration_ns(text.trim()).map_err(|_| wrong(""))?;
    Some(ns / 1_000_000).filter(|ms| *ms > 0).ok_or_else(|| wrong(" (at least 1 ms)"))
}

fn parse_bool(text: &str) -> Result<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(SluiceError::sql(format!("expected 'true' or 'false', got '{other}'"))),
    }
}
