//! File formats shared by the file source (decoding) and the file sink (encoding).
//!
//! Sources and sinks name a format with the same option values Spark's `format(...)` accepts, so a
//! query moved from Spark keeps its options.

use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef, Fields};

use crate::{Result, SluiceError};

pub mod column_type;
pub mod decode;
pub mod encode;

/// A file format sluice can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON lines: one JSON object per line (Spark's `json` format without `multiLine`).
    Json,
    /// Comma-separated values (RFC 4180 quoting), optionally with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// Parses a `format` option value, case-insensitively.
    ///
    /// `jsonl` is accepted as an alias of `json` because that is the usual file extension of
    /// JSON lines.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the accepted values when `s` is none of them.
    pub fn parse(s: &str) -> Result<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "jsonl" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            _ => Err(SluiceError::sql(format!(
                "unknown format '{s}': expected one of 'json', 'jsonl', 'csv', 'parquet'"
            ))),
        }
    }

    /// The file extension (without the dot) of files the sink writes in this format.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// What a source does with a record that does not match the declared schema.
///
/// Mirrors Spark's `mode` option: `Fail` is `FAILFAST`, `Drop` is `DROPMALFORMED`. (Spark's
/// default `PERMISSIVE` is not offered: it silently turns bad values into nulls.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BadData {
    /// Stop the query with [`SluiceError::MalformedRecord`] naming the file, line and field.
    #[default]
    Fail,
    /// Skip the record and count it (see [`decode::Decoded::dropped`]).
    Drop,
}

impl BadData {
    /// Parses a `bad_data` option value (`fail` or `drop`), case-insensitively.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the accepted values when `s` is neither.
    pub fn parse(s: &str) -> Result<BadData> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(BadData::Fail),
            "drop" => Ok(BadData::Drop),
            _ => Err(SluiceError::sql(format!("unknown bad_data value '{s}': expected 'fail' or 'drop'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_aliases() {
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(Format::parse("jsonl").unwrap(), Format::Json);
        assert_eq!(Format::parse("CSV").unwrap(), Format::Csv);
        assert_eq!(Format::parse("parquet").unwrap(), Format::Parquet);
    }

    #[test]
    fn unknown_format_names_accepted_values() {
        let err = Format::parse("avro").unwrap_err();
        assert!(matches!(err, SluiceError::Sql(_)));
        let msg = err.to_string();
        for name in ["avro", "json", "jsonl", "csv", "parquet"] {
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(Format::Json.extension(), "json");
        assert_eq!(Format::Csv.extension(), "csv");
        assert_eq!(Format::Parquet.extension(), "parquet");
    }

    #[test]
    fn parses_bad_data() {
        assert_eq!(BadData::parse("fail").unwrap(), BadData::Fail);
        assert_eq!(BadData::parse("DROP").unwrap(), BadData::Drop);
        assert_eq!(BadData::default(), BadData::Fail);
        let err = BadData::parse("permissive").unwrap_err();
        assert!(matches!(err, SluiceError::Sql(_)));
        assert!(err.to_string().contains("'fail' or 'drop'"));
    }
}

/// `data_type` with every timestamp (at any depth of structs, lists and maps) labelled with
/// `time_zone` (`None`: timezone-less). Arrow keeps timestamps as UTC instants, so only how text
/// without an offset is read, and how values are printed, changes.
pub(crate) fn with_time_zone(data_type: &DataType, time_zone: Option<&Arc<str>>) -> DataType {
    let field = |f: &FieldRef| Arc::new(f.as_ref().clone().with_data_type(with_time_zone(f.data_type(), time_zone)));
    match data_type {
        DataType::Timestamp(unit, _) => DataType::Timestamp(*unit, time_zone.cloned()),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect::<Fields>()),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}
