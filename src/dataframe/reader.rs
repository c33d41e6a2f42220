//! [`DataStreamReader`]: declares a stream from code (Spark's `spark.readStream`), the API form
//! of `CREATE TABLE ... WITH (connector = ...)`.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;

use super::frame::StreamFrame;
use super::options::option_key;
use crate::context::StreamContext;
use crate::{Result, SluiceError};

/// The formats `format` accepts.
const FORMATS: &str = "'json', 'csv', 'parquet' (files), 'kafka', 'rate', 'nexmark', 'socket', 'memory'";

/// Builds a stream: `format`, `option`s, the `schema` of its rows, then [`Self::load`].
#[derive(Debug)]
pub struct DataStreamReader<'a> {
    ctx: &'a mut StreamContext,
    format: Option<String>,
    options: BTreeMap<String, String>,
    schema: Option<SchemaRef>,
}

impl<'a> DataStreamReader<'a> {
    pub(crate) fn new(ctx: &'a mut StreamContext) -> Self {
        Self { ctx, format: None, options: BTreeMap::new(), schema: None }
    }

    /// The source format: `json`, `csv`, `parquet` (a directory of files), `kafka`, `rate`,
    /// `socket`, or `memory` (a stream registered with
    /// [`StreamContext::register_memory_stream`], named by `load`).
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_ascii_lowercase());
        self
    }

    /// A source option, by the name of the SQL connector option (`max_files_per_trigger`,
    /// `bootstrap_servers`, `rows_per_second`, ...; see the README) or its Spark spelling
    /// (`maxFilesPerTrigger`, `kafka.bootstrap.servers`, `subscribe`, `rowsPerSecond`).
    /// Checked by [`Self::load`].
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.insert(option_key(key), value.to_string());
        self
    }

    /// The schema of the stream's rows. Required for files and Kafka (sluice does not infer
    /// schemas from a stream); `rate` and `socket` have fixed columns, which a given schema must
    /// equal.
    pub fn schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The stream, read from directory `path` for file formats, or the memory stream named
    /// `path`; `None` for Kafka, rate and socket, which take their options. The stream is
    /// registered in the context under a name made of the format and the path or topic (e.g.
    /// `json_data_flights`): its offsets are checkpointed under that name, so a restarted program
    /// must read the same stream the same way.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for an unknown format or option, a bad option value, a missing path
    /// or schema, or a schema that does not fit the format.
    pub fn load<'p>(self, path: impl Into<Option<&'p str>>) -> Result<StreamFrame> {
        let path = path.into();
        let format = self.format.ok_or_else(|| {
            SluiceError::sql(format!("read_stream(): call format(...) before load(); one of {FORMATS}"))
        })?;
        let mut options = self.options;
        let needs_path = |what: &str| {
            path.ok_or_else(|| {
                SluiceError::sql(format!("read_stream().format(\"{format}\"): load(path) needs the {what}"))
            })
        };
        let label = match format.as_str() {
            "json" | "csv" | "parquet" => {
                let path = needs_path("directory to read")?;
                options.insert("connector".into(), "file".into());
                options.insert("format".into(), format.clone());
                options.insert("path".into(), path.to_string());
                path.to_string()
            }
            "memory" => return self.ctx.memory_stream_frame(needs_path("name of a registered memory stream")?),
            "kafka" | "rate" | "nexmark" | "socket" => {
                if let Some(path) = path {
                    return Err(SluiceError::sql(format!(
                        "read_stream().format(\"{format}\"): takes no path ('{path}'); give its options and call load(None)"
                    )));
                }
                options.insert("connector".into(), format.clone());
                ["topic", "topic_pattern", "host", "port", "stream"]
                    .iter()
                    .filter_map(|k| options.get(*k).cloned())
                    .collect::<Vec<_>>()
                    .join("_")
            }
            other => {
                return Err(SluiceError::sql(format!("read_stream(): unknown format '{other}'; one of {FORMATS}")))
            }
        };
        let name = table_name(&format, &label);
        self.ctx.register_stream(&name, options, self.schema)
    }
}

/// `format_label`, lower case, with every other character than a letter or a digit an
/// underscore, and runs of them collapsed.
fn table_name(format: &str, label: &str) -> String {
    let mut name = String::with_capacity(format.len() + label.len() + 1);
    for c in format!("{format}_{label}").chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' };
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    name.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_named_after_its_format_and_path() {
        assert_eq!(table_name("json", "data/flights/"), "json_data_flights");
        assert_eq!(table_name("kafka", "Flights.Delays"), "kafka_flights_delays");
        assert_eq!(table_name("rate", ""), "rate");
    }
}
