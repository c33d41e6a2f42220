//! Decoding one input file (JSON lines, CSV or Parquet, optionally gzipped) into record batches of
//! the user's declared schema.
//!
//! The parsing itself is arrow's (`arrow_json`, `arrow_csv`) and parquet's; this module adds what a
//! streaming source needs on top: the declared schema is enforced (missing columns become nulls,
//! extra columns are ignored), and a record that does not fit is either reported with its file and
//! line (`bad_data = 'fail'`) or skipped and counted (`bad_data = 'drop'`).
//!
//! Good files take the fast path (arrow decodes large chunks); only a chunk that fails is decoded
//! again record by record to find the bad record, so the cost of exact error positions is paid
//! only by files that have errors.
//!
//! This file holds the public API, file reading and the machinery the formats share; each format
//! has its own submodule.

mod csv;
mod json;
mod parquet;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatchOptions};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::{with_time_zone, BadData, Format};
use crate::{Result, SluiceError};

/// How to decode a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// What to do with a record that does not match the schema.
    pub bad_data: BadData,
    /// CSV only: whether the first line is a header. With a header, columns are matched to the
    /// schema by name (exact, else case-insensitive); without one, by position.
    pub csv_header: bool,
    /// Target number of rows per output batch (JSON: input lines per batch). Values below 1 are
    /// treated as 1.
    pub batch_size: usize,
    /// JSON and CSV: the time zone of timestamp text without an offset (Spark's
    /// `spark.sql.session.timeZone`: an IANA name or an offset such as `+02:00`); `None`: UTC.
    pub time_zone: Option<Arc<str>>,
}

impl Default for DecodeOptions {
    /// `bad_data = fail`, CSV with a header, 8192 rows per batch (DataFusion's default batch size),
    /// UTC.
    fn default() -> Self {
        DecodeOptions { bad_data: BadData::Fail, csv_header: true, batch_size: 8192, time_zone: None }
    }
}

/// The decoded content of one file.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The good rows, in file order; every batch has exactly the declared schema. Empty when the
    /// file has no rows.
    pub batches: Vec<RecordBatch>,
    /// Number of records skipped because they did not match the schema (always 0 with
    /// [`BadData::Fail`]).
    pub dropped: u64,
}

/// Decodes the file at `path` into batches of `schema`.
///
/// A name ending in `.gz` (e.g. `x.jsonl.gz`) is gunzipped first; line numbers then count lines of
/// the decompressed text. JSON lines: one object per line, blank lines skipped, unknown fields
/// ignored, timestamp strings such as `2013-01-01T10:15:00Z` parsed (no offset: local time in
/// [`DecodeOptions::time_zone`], UTC by default).
/// CSV: RFC 4180 quoting, empty fields are null. Parquet: declared columns are selected by name and
/// cast to the declared types.
///
/// # Errors
/// - [`SluiceError::Io`] when the file cannot be opened or read (also for corrupt gzip data).
/// - [`SluiceError::MalformedRecord`] (only with [`BadData::Fail`]) for the first record that does
///   not match the schema: invalid JSON, a value that cannot be parsed as its field's type, a null
///   or missing value in a NOT NULL field, a CSV line with the wrong number of fields. `line` is
///   the 1-based line (CSV: the header is line 1) or, for Parquet, the 1-based row number.
/// - [`SluiceError::Source`] (named after the file) when the file as a whole does not fit the
///   schema: a NOT NULL column missing from a CSV header or Parquet file, a Parquet column whose
///   type cannot be cast to the declared type, an unreadable Parquet file, or a schema the
///   JSON/CSV readers cannot decode into.
pub fn decode_file(path: &Path, format: Format, schema: &SchemaRef, options: &DecodeOptions) -> Result<Decoded> {
    let batch_size = options.batch_size.max(1);
    let mut out = Collector::new(path, schema, options.bad_data, options.time_zone.clone());
    match format {
        Format::Json => json::decode_json(&read_text(path)?, batch_size, &mut out)?,
        Format::Csv => csv::decode_csv(&read_text(path)?, options.csv_header, batch_size, &mut out)?,
        Format::Parquet if is_gzip(path) => {
            parquet::decode_parquet(bytes::Bytes::from(read_bytes(path)?), batch_size, &mut out)?
        }
        Format::Parquet => {
            let file = File::open(path).map_err(|e| SluiceError::io(path, e))?;
            parquet::decode_parquet(file, batch_size, &mut out)?
        }
    }
    Ok(out.finish())
}

/// Decodes in-memory records, such as the values of Kafka messages, into batches of `schema`:
/// each record is one complete JSON object (`format` JSON) or one CSV line read by position, with
/// no header (`format` CSV). Records are handled as the lines of a file are by [`decode_file`];
/// besides, an empty record, and for CSV a record holding a line break, is malformed.
///
/// Returns the decoded rows, in record order, and the 0-based indices of the records dropped
/// (always empty with [`BadData::Fail`]), so that a caller can pair the rows with what it knows
/// of each record.
///
/// # Errors
/// As [`decode_file`]; the [`SluiceError::MalformedRecord`] names `origin` as its path and the
/// 1-based index of the record in `records` as its line. [`SluiceError::Source`] for a format
/// other than JSON and CSV.
pub fn decode_records(
    records: &[&[u8]],
    format: Format,
    schema: &SchemaRef,
    options: &DecodeOptions,
    origin: &Path,
) -> Result<(Decoded, Vec<usize>)> {
    let batch_size = options.batch_size.max(1);
    let mut out = Collector::new(origin, schema, options.bad_data, options.time_zone.clone());
    // The records handed to the decoder, by their 0-based index in `records`.
    let mut kept = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let line = i as u64 + 1;
        if record.trim_ascii().is_empty() {
            out.bad(line, "the record is empty".into())?;
        } else if format == Format::Csv && record.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            out.bad(line, "a CSV record must be one line, but this one holds a line break".into())?;
        } else {
            kept.push(i);
        }
    }
    let decoded = match format {
        _ if kept.is_empty() => Ok(()),
        Format::Json => {
            let units: Vec<Unit<'_>> =
                kept.iter().map(|&i| Unit { line: i as u64 + 1, bytes: records[i].trim_ascii() }).collect();
            json::decode_json_units(&units, batch_size, &mut out)
        }
        Format::Csv => {
            // One line per kept record: line n of the text is record kept[n - 1].
            let text = kept.iter().map(|&i| records[i]).collect::<Vec<_>>().join(&b'\n');
            let before = out.dropped_lines.len();
            let decoded = csv::decode_csv(&text, false, batch_size, &mut out);
            for line in &mut out.dropped_lines[before..] {
                *line = kept[(*line - 1) as usize] as u64 + 1;
            }
            decoded.map_err(|e| match e {
                SluiceError::MalformedRecord { path, line, message } => {
                    SluiceError::MalformedRecord { path, line: kept[(line - 1) as usize] as u64 + 1, message }
                }
                other => other,
            })
        }
        Format::Parquet => Err(out.file_error("records cannot be decoded as Parquet; use 'json' or 'csv'")),
    };
    decoded?;
    let dropped = out.dropped_lines.iter().map(|line| (*line - 1) as usize).collect();
    Ok((out.finish(), dropped))
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The whole file, gunzipped if its name ends in `.gz`.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| SluiceError::io(path, e))?;
    let mut buf = Vec::new();
    let read = if is_gzip(path) {
        // MultiGzDecoder: `cat a.gz b.gz > c.gz` is a valid gzip file too.
        flate2::read::MultiGzDecoder::new(BufReader::new(file)).read_to_end(&mut buf)
    } else {
        BufReader::new(file).read_to_end(&mut buf)
    };
    read.map_err(|e| SluiceError::io(path, e))?;
    Ok(buf)
}

/// [`read_bytes`] without a leading UTF-8 byte order mark (some Windows tools write one).
fn read_text(path: &Path) -> Result<Vec<u8>> {
    let mut buf = read_bytes(path)?;
    if buf.starts_with(b"\xEF\xBB\xBF") {
        buf.drain(..3);
    }
    Ok(buf)
}

/// One input record: its bytes and the 1-based line it starts on.
#[derive(Debug, Clone, Copy)]
struct Unit<'b> {
    line: u64,
    bytes: &'b [u8],
}

/// Collects the good rows of one file and applies the bad-data policy to the bad ones.
struct Collector<'a> {
    path: &'a Path,
    schema: SchemaRef,
    /// `schema` nullable, with timestamps in the session time zone and decimals one digit
    /// finer ([`text_reading_schema`]): what the text readers decode into before
    /// [`finish_batch`] checks, rounds and relabels the columns.
    reading_schema: SchemaRef,
    bad_data: BadData,
    batches: Vec<RecordBatch>,
    dropped: u64,
    /// The lines of the records dropped, in the order they were dropped.
    dropped_lines: Vec<u64>,
}

impl<'a> Collector<'a> {
    fn new(path: &'a Path, schema: &SchemaRef, bad_data: BadData, time_zone: Option<Arc<str>>) -> Self {
        let reading_schema = text_reading_schema(&reading_schema(schema, time_zone.as_ref()));
        Collector {
            path,
            schema: schema.clone(),
            reading_schema,
            bad_data,
            batches: Vec::new(),
            dropped: 0,
            dropped_lines: Vec::new(),
        }
    }

    fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
    }

    /// A bad record at `line`: an error with [`BadData::Fail`], counted with [`BadData::Drop`].
    fn bad(&mut self, line: u64, message: String) -> Result<()> {
        match self.bad_data {
            BadData::Fail => Err(SluiceError::MalformedRecord { path: self.path.to_path_buf(), line, message }),
            BadData::Drop => {
                self.dropped += 1;
                self.dropped_lines.push(line);
                Ok(())
            }
        }
    }

    /// An error about the file as a whole (not one record).
    fn file_error(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { source_name: self.path.display().to_string(), message: message.into() }
    }

    fn finish(self) -> Decoded {
        Decoded { batches: self.batches, dropped: self.dropped }
    }
}

/// Decodes `units` `batch_size` at a time with `decode`; a chunk that fails is decoded again one
/// unit at a time, so the bad unit is the one reported (or the only one dropped).
///
/// `decode` returns the batch of its units or a message naming what is wrong (used when it was
/// given a single unit).
fn decode_units<'b>(
    units: &[Unit<'b>],
    batch_size: usize,
    out: &mut Collector<'_>,
    mut decode: impl FnMut(&[Unit<'b>]) -> std::result::Result<RecordBatch, String>,
) -> Result<()> {
    for chunk in units.chunks(batch_size) {
        match decode(chunk) {
            Ok(batch) => out.push(batch),
            Err(_) => {
                let mut good = Vec::with_capacity(chunk.len());
                for unit in chunk {
                    match decode(std::slice::from_ref(unit)) {
                        Ok(batch) => good.push(batch),
                        Err(message) => out.bad(unit.line, message)?,
                    }
                }
                let batch = concat_batches(&out.schema, &good)?;
                out.push(batch);
            }
        }
    }
    Ok(())
}

/// Builds a batch of `schema` from `columns`, refusing nulls in NOT NULL fields with a message
/// naming the field (arrow's own message does not say which record).
fn finish_batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    num_rows: usize,
) -> std::result::Result<RecordBatch, String> {
    for (field, column) in schema.fields().iter().zip(&columns) {
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!("field '{}' is missing or null, but the schema declares it NOT NULL", field.name()));
        }
    }
    // Timestamps read in a session time zone go back to the declared type (the same instants);
    // decimals read one digit finer are rounded half up to theirs, and one that no longer fits
    // its precision is an error, not a null.
    let strict = arrow::compute::CastOptions { safe: false, ..Default::default() };
    let columns = schema
        .fields()
        .iter()
        .zip(columns)
        .map(|(field, column)| match column.data_type() == field.data_type() {
            true => Ok(column),
            false => arrow::compute::cast_with_options(&column, field.data_type(), &strict)
                .map_err(|e| format!("field '{}': {e}", field.name())),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(num_rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

/// `schema` with every top-level field nullable, so that the readers leave NOT NULL checks to
/// [`finish_batch`], which names the field, and every timestamp in `time_zone`, so that the
/// readers take text without an offset as local time there (as Spark does in its session time
/// zone).
fn reading_schema(schema: &SchemaRef, time_zone: Option<&Arc<str>>) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = match time_zone {
                Some(_) => with_time_zone(f.data_type(), time_zone),
                None => f.data_type().clone(),
            };
            f.as_ref().clone().with_nullable(true).with_data_type(data_type)
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` with each top-level decimal column one digit finer (precision and scale + 1; a
/// `DECIMAL(38, s)` becomes a 256-bit decimal). arrow's JSON and CSV readers cut the digits past
/// a decimal's scale; Spark's round half up. Rounding half up depends only on the first digit
/// cut, so reading one more digit and casting to the declared type (which rounds half up)
/// gives Spark's value: `1.255` in a `DECIMAL(5, 2)` is `1.26`, and `999.995` does not fit.
fn text_reading_schema(schema: &SchemaRef) -> SchemaRef {
    let finer = |data_type: &DataType| match *data_type {
        DataType::Decimal128(p, s) if p < 38 && s < 38 => Some(DataType::Decimal128(p + 1, s + 1)),
        DataType::Decimal128(p, s) if s < 38 => Some(DataType::Decimal256(p + 1, s + 1)),
        DataType::Decimal256(p, s) if p < 76 && s < 76 => Some(DataType::Decimal256(p + 1, s + 1)),
        _ => None,
    };
    if !schema.fields().iter().any(|f| finer(f.data_type()).is_some()) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match finer(f.data_type()) {
            Some(data_type) => f.as_ref().clone().with_data_type(data_type),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The SQL name of a declared column type for messages (`BIGINT`, `TIMESTAMP`), arrow's name for
/// the others.
pub(crate) fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    //! Tests of [`decode_file`] as a whole, and the helpers the format modules' tests share.

    use std::io::Write;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampNanosecondType};

    use super::*;

    fn ts_ns() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    }

    /// ts TIMESTAMP NOT NULL, key STRING, value BIGINT
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", ts_ns(), false),
            Field::new("key", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ]))
    }

    /// Writes `content` to the file `name` in `dir` and returns its path.
    pub(super) fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `content` gzipped.
    pub(super) fn gzip(content: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        enc.finish().unwrap()
    }

    /// The default options with `bad_data` and `batch_size` set.
    pub(super) fn opts(bad_data: BadData, batch_size: usize) -> DecodeOptions {
        DecodeOptions { bad_data, batch_size, ..DecodeOptions::default() }
    }

    /// [`decode_file`] with the test [`schema`].
    pub(super) fn decode(path: &Path, format: Format, options: DecodeOptions) -> Result<Decoded> {
        decode_file(path, format, &schema(), &options)
    }

    /// All rows of `d` as (ts nanos, key, value).
    pub(super) fn rows(d: &Decoded) -> Vec<(i64, Option<String>, Option<i64>)> {
        let mut out = Vec::new();
        for b in &d.batches {
            assert_eq!(b.schema(), schema(), "every batch has exactly the declared schema");
            let ts = b.column(0).as_primitive::<TimestampNanosecondType>();
            let key = b.column(1).as_string::<i32>();
            let value = b.column(2).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                out.push((
                    ts.value(r),
                    key.is_valid(r).then(|| key.value(r).to_string()),
                    value.is_valid(r).then(|| value.value(r)),
                ));
            }
        }
        out
    }

    pub(super) const T0: i64 = 1_357_035_300_000_000_000; // 2013-01-01T10:15:00Z in ns

    /// The path, line and message of a [`SluiceError::MalformedRecord`]; panics on other errors.
    pub(super) fn malformed(err: SluiceError) -> (std::path::PathBuf, u64, String) {
        match err {
            SluiceError::MalformedRecord { path, line, message } => (path, line, message),
            other => panic!("expected MalformedRecord, got {other:?}"),
        }
    }

    /// Decimals round half up (away from zero) to the declared scale, as Spark's JSON and CSV
    /// readers round them; a value that no longer fits the precision is malformed, never cut.
    #[test]
    fn decimals_round_half_up_and_one_that_does_not_fit_is_malformed() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Decimal128(5, 2), true)]));
        let dir = tempfile::tempdir().unwrap();
        let json = write(&dir, "a.json", b"{\"d\": 1.255}\n{\"d\": \"-0.005\"}\n{\"d\": 999.995}\n{\"d\": 12.3449}\n");
        let csv = write(&dir, "a.csv", b"d\n1.255\n-0.005\n999.995\n12.3449\n");
        for (path, format) in [(json, Format::Json), (csv, Format::Csv)] {
            let decoded = decode_file(&path, format, &schema, &opts(BadData::Drop, 2)).unwrap();
            let values: Vec<String> = decoded
                .batches
                .iter()
                .flat_map(|b| {
                    assert_eq!(b.schema(), schema);
                    let d = b.column(0).as_primitive::<arrow::datatypes::Decimal128Type>();
                    (0..b.num_rows()).map(|r| d.value_as_string(r)).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(values, ["1.26", "-0.01", "12.34"], "{format:?}");
            assert_eq!(decoded.dropped, 1, "{format:?}: 999.995 rounds to 1000.00");
            let err = decode_file(&path, format, &schema, &opts(BadData::Fail, 2)).unwrap_err();
            let (_, line, message) = malformed(err);
            assert!(message.contains("field 'd'"), "{format:?}: {message}");
            assert_eq!(line, if format == Format::Json { 3 } else { 4 });
        }
    }

    /// Spark reads timestamp text without an offset in `spark.sql.session.timeZone`; text with
    /// an offset is the instant it says.
    #[test]
    fn timestamps_without_an_offset_are_read_in_the_session_time_zone() {
        let dir = tempfile::tempdir().unwrap();
        let json = write(
            &dir,
            "a.json",
            b"{\"ts\":\"2013-01-01T11:15:00\"}\n{\"ts\":\"2013-01-01T10:15:00Z\"}\n{\"ts\":\"2013-01-01T12:15:00+02:00\"}\n",
        );
        let csv = write(&dir, "a.csv", b"ts\n2013-01-01T11:15:00\n2013-01-01T10:15:00Z\n2013-01-01T12:15:00+02:00\n");
        let paris = DecodeOptions { time_zone: Some("Europe/Paris".into()), ..DecodeOptions::default() };
        let hour = 3_600_000_000_000;
        for (path, format) in [(json, Format::Json), (csv, Format::Csv)] {
            let ts = |d: Decoded| rows(&d).into_iter().map(|r| r.0).collect::<Vec<_>>();
            assert_eq!(ts(decode(&path, format, paris.clone()).unwrap()), vec![T0, T0, T0], "{format:?}");
            assert_eq!(ts(decode(&path, format, DecodeOptions::default()).unwrap()), vec![T0 + hour, T0, T0]);
        }
    }

    /// In-memory records (Kafka values) decode as lines do; bad ones are named by their index.
    #[test]
    fn records_decode_as_lines_and_bad_ones_are_named_by_index() {
        let ts = "2013-01-01T10:15:00Z";
        let csv = [format!("{ts},a,1"), String::new(), format!("{ts},b,x"), "x\ny".into(), format!("{ts},c,3")];
        let json = [
            format!(r#"{{"ts":"{ts}","key":"a","value":1}}"#),
            " ".into(),
            "{bad".into(),
            format!(r#"{{"ts":"{ts}","key":"c","value":3}}"#),
        ];
        for (records, format, good, bad) in
            [(&csv[..], Format::Csv, vec![0, 4], vec![1, 2, 3]), (&json[..], Format::Json, vec![0, 3], vec![1, 2])]
        {
            let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
            let (decoded, mut dropped) =
                decode_records(&bytes, format, &schema(), &opts(BadData::Drop, 2), Path::new("t")).unwrap();
            dropped.sort_unstable();
            assert_eq!(dropped, bad, "{format:?}");
            let keys: Vec<Option<String>> = rows(&decoded).into_iter().map(|r| r.1).collect();
            let expected: Vec<Option<String>> =
                good.iter().map(|&i| Some(if i == 0 { "a".to_string() } else { "c".to_string() })).collect();
            assert_eq!(keys, expected, "{format:?}");
            let err = decode_records(&bytes, format, &schema(), &opts(BadData::Fail, 2), Path::new("t")).unwrap_err();
            assert_eq!(malformed(err).1, 2, "{format:?}: the first bad record is the second");
        }
    }

    #[test]
    fn default_options() {
        let d = DecodeOptions::default();
        assert_eq!((d.bad_data, d.csv_header, d.batch_size), (BadData::Fail, true, 8192));
    }

    #[test]
    fn empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        for format in [Format::Json, Format::Csv] {
            let path = write(&dir, "empty", b"");
            let d = decode(&path, format, DecodeOptions::default()).unwrap();
            assert_eq!((d.batches.len(), d.dropped), (0, 0));
        }
        let missing = dir.path().join("nope.json");
        for format in [Format::Json, Format::Csv, Format::Parquet] {
            match decode(&missing, format, DecodeOptions::default()).unwrap_err() {
                SluiceError::Io { path, .. } => assert_eq!(path, missing),
                other => panic!("expected Io, got {other:?}"),
            }
        }
    }
}
