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

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, RecordBatchOptions};
use arrow::compute::{can_cast_types, cast_with_options, concat_batches, filter_record_batch, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;

use super::{BadData, Format};
use crate::{Result, SluiceError};

/// How to decode a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// What to do with a record that does not match the schema.
    pub bad_data: BadData,
    /// CSV only: whether the first line is a header. With a header, columns are matched to the
    /// schema by name (exact, else case-insensitive); without one, by position.
    pub csv_header: bool,
    /// Target number of rows per output batch (JSON: input lines per batch). Values below 1 are
    /// treated as 1.
    pub batch_size: usize,
}

impl Default for DecodeOptions {
    /// `bad_data = fail`, CSV with a header, 8192 rows per batch (DataFusion's default batch size).
    fn default() -> Self {
        DecodeOptions { bad_data: BadData::Fail, csv_header: true, batch_size: 8192 }
    }
}

/// The decoded content of one file.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The good rows, in file order; every batch has exactly the declared schema. Empty when the
    /// file has no rows.
    pub batches: Vec<RecordBatch>,
    /// Number of rows in `batches`.
    pub rows: u64,
    /// Number of records skipped because they did not match the schema (always 0 with
    /// [`BadData::Fail`]).
    pub dropped: u64,
}

/// Decodes the file at `path` into batches of `schema`.
///
/// A name ending in `.gz` (e.g. `x.jsonl.gz`) is gunzipped first; line numbers then count lines of
/// the decompressed text. JSON lines: one object per line, blank lines skipped, unknown fields
/// ignored, timestamp strings such as `2013-01-01T10:15:00Z` parsed (no offset means UTC).
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
    let mut out = Collector::new(path, schema, options.bad_data);
    match format {
        Format::Json => decode_json(&read_text(path)?, batch_size, &mut out)?,
        Format::Csv => decode_csv(&read_text(path)?, options.csv_header, batch_size, &mut out)?,
        Format::Parquet if is_gzip(path) => {
            decode_parquet(bytes::Bytes::from(read_bytes(path)?), batch_size, &mut out)?
        }
        Format::Parquet => {
            let file = File::open(path).map_err(|e| SluiceError::io(path, e))?;
            decode_parquet(file, batch_size, &mut out)?
        }
    }
    Ok(out.finish())
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
    bad_data: BadData,
    batches: Vec<RecordBatch>,
    rows: u64,
    dropped: u64,
}

impl<'a> Collector<'a> {
    fn new(path: &'a Path, schema: &SchemaRef, bad_data: BadData) -> Self {
        Collector { path, schema: schema.clone(), bad_data, batches: Vec::new(), rows: 0, dropped: 0 }
    }

    fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.rows += batch.num_rows() as u64;
            self.batches.push(batch);
        }
    }

    /// A bad record at `line`: an error with [`BadData::Fail`], counted with [`BadData::Drop`].
    fn bad(&mut self, line: u64, message: String) -> Result<()> {
        match self.bad_data {
            BadData::Fail => Err(SluiceError::MalformedRecord { path: self.path.to_path_buf(), line, message }),
            BadData::Drop => {
                self.dropped += 1;
                Ok(())
            }
        }
    }

    /// An error about the file as a whole (not one record).
    fn file_error(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::Source { source_name: self.path.display().to_string(), message: message.into() }
    }

    fn finish(self) -> Decoded {
        Decoded { batches: self.batches, rows: self.rows, dropped: self.dropped }
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
    let options = RecordBatchOptions::new().with_row_count(Some(num_rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| e.to_string())
}

/// `schema` with every top-level field nullable, so that the readers leave NOT NULL checks to
/// [`finish_batch`], which names the field.
fn relax_nullability(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

// ---------------------------------------------------------------------------------------------
// JSON lines

fn decode_json(buf: &[u8], batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    let schema = out.schema.clone();
    let decode_schema = relax_nullability(&schema);
    // Validate the schema once, so an unsupported type is a file-level error rather than every
    // record being "malformed".
    json_decoder(&decode_schema, 1)
        .map_err(|e| out.file_error(format!("cannot decode JSON into the declared schema: {e}")))?;
    let lines: Vec<Unit<'_>> = buf
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let bytes = line.trim_ascii();
            (!bytes.is_empty()).then_some(Unit { line: i as u64 + 1, bytes })
        })
        .collect();
    decode_units(&lines, batch_size, out, |chunk| json_chunk(&decode_schema, &schema, chunk))
}

fn json_decoder(
    decode_schema: &SchemaRef,
    batch_size: usize,
) -> std::result::Result<arrow::json::reader::Decoder, ArrowError> {
    arrow::json::ReaderBuilder::new(decode_schema.clone())
        .with_batch_size(batch_size)
        // Like Spark, a number or boolean in a string field is kept as its JSON text.
        .with_coerce_primitive(true)
        .with_strict_mode(false)
        .build_decoder()
}

/// Decodes `lines` (each one JSON object) into one batch of `schema`.
fn json_chunk(
    decode_schema: &SchemaRef,
    schema: &SchemaRef,
    lines: &[Unit<'_>],
) -> std::result::Result<RecordBatch, String> {
    let mut decoder = json_decoder(decode_schema, lines.len()).map_err(|e| e.to_string())?;
    for (i, line) in lines.iter().enumerate() {
        // Fed line by line so that a record may not continue on the next line (JSON lines), and
        // a line may not hold two records.
        let consumed = decoder.decode(line.bytes).map_err(|e| format!("invalid JSON: {}", json_message(e)))?;
        if decoder.has_partial_record() {
            return Err("invalid JSON: the line ends inside a JSON value (each record must be \
                        one complete JSON object on one line)"
                .to_string());
        }
        if consumed != line.bytes.len() || decoder.len() != i + 1 {
            return Err("invalid JSON: more than one JSON value on one line".to_string());
        }
    }
    let batch = decoder.flush().map_err(json_message)?.unwrap_or_else(|| RecordBatch::new_empty(decode_schema.clone()));
    let num_rows = batch.num_rows();
    finish_batch(schema, batch.columns().to_vec(), num_rows)
}

/// arrow_json's message without its `Json error: ` prefix, in sluice's wording
/// (`field 'value': failed to parse "abc" as Int64`).
fn json_message(e: ArrowError) -> String {
    let message = match e {
        ArrowError::JsonError(m) => m,
        other => other.to_string(),
    };
    message.replace("whilst decoding field ", "field ")
}

// ---------------------------------------------------------------------------------------------
// CSV

/// How the columns of a CSV file map to the declared schema.
struct CsvLayout {
    /// One field per column of the file (all nullable): the declared type for columns that feed
    /// the schema, Utf8 for the others.
    file_schema: SchemaRef,
    /// The file columns that feed the schema, ascending (arrow_csv's projection).
    projection: Vec<usize>,
    /// For each declared field, its position in the projected batch, or `None` when the file has
    /// no such column (the field is then null).
    sources: Vec<Option<usize>>,
}

impl CsvLayout {
    fn new(buf: &[u8], header: bool, out: &Collector<'_>) -> Result<CsvLayout> {
        let schema = &out.schema;
        let (first, _) = arrow::csv::reader::Format::default()
            .with_header(header)
            .infer_schema(buf, Some(0))
            .map_err(|e| out.file_error(format!("cannot read the first CSV line: {e}")))?;
        let names: Vec<String> = first.fields().iter().map(|f| f.name().clone()).collect();

        // file column index -> declared field index
        let mut feeds: Vec<Option<usize>> = Vec::new();
        if header {
            let mut taken = vec![false; schema.fields().len()];
            for name in &names {
                let found =
                    schema.fields().iter().enumerate().position(|(i, f)| !taken[i] && f.name() == name).or_else(|| {
                        schema
                            .fields()
                            .iter()
                            .enumerate()
                            .position(|(i, f)| !taken[i] && f.name().eq_ignore_ascii_case(name))
                    });
                if let Some(i) = found {
                    taken[i] = true;
                }
                feeds.push(found);
            }
        } else {
            // By position; wider first lines keep their extra columns (ignored), narrower ones
            // are reported record by record.
            let width = names.len().max(schema.fields().len());
            feeds = (0..width).map(|j| (j < schema.fields().len()).then_some(j)).collect();
        }

        let mut sources = vec![None; schema.fields().len()];
        let mut projection = Vec::new();
        let mut file_fields = Vec::with_capacity(feeds.len());
        for (j, feed) in feeds.iter().enumerate() {
            let name = names.get(j).cloned().unwrap_or_else(|| format!("column_{}", j + 1));
            match feed {
                Some(i) => {
                    sources[*i] = Some(projection.len());
                    projection.push(j);
                    file_fields.push(Field::new(name, schema.field(*i).data_type().clone(), true));
                }
                None => file_fields.push(Field::new(name, DataType::Utf8, true)),
            }
        }
        for (field, source) in schema.fields().iter().zip(&sources) {
            if source.is_none() && !field.is_nullable() {
                let found = if header {
                    format!("the header has columns: {}", names.join(", "))
                } else {
                    format!("the first line has {} fields", names.len())
                };
                return Err(out.file_error(format!(
                    "the CSV file has no column '{}', which the schema declares NOT NULL ({found}); \
                     add the column to the file or declare it nullable",
                    field.name()
                )));
            }
        }
        Ok(CsvLayout { file_schema: Arc::new(Schema::new(file_fields)), projection, sources })
    }

    /// Decodes `buf` (CSV text, a header first if `header`) with arrow_csv.
    fn read(
        &self,
        buf: &[u8],
        header: bool,
        projection: &[usize],
        batch_size: usize,
    ) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
        arrow::csv::ReaderBuilder::new(self.file_schema.clone())
            .with_header(header)
            .with_batch_size(batch_size)
            .with_projection(projection.to_vec())
            .build_buffered(buf)?
            .collect()
    }

    /// A projected batch rearranged into the declared schema (absent columns null).
    fn assemble(&self, schema: &SchemaRef, batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
        let n = batch.num_rows();
        let columns = schema
            .fields()
            .iter()
            .zip(&self.sources)
            .map(|(field, source)| match source {
                Some(p) => batch.column(*p).clone(),
                None => new_null_array(field.data_type(), n),
            })
            .collect();
        finish_batch(schema, columns, n)
    }

    /// Decodes one record (no header); on failure says which field is wrong.
    fn record(&self, schema: &SchemaRef, record: &[u8], header: bool) -> std::result::Result<RecordBatch, String> {
        let batch = match self.read(record, false, &self.projection, 1) {
            Ok(batches) => batches.into_iter().next(),
            Err(e) => return Err(self.explain(schema, record, header, e)),
        };
        match batch {
            Some(batch) => self.assemble(schema, &batch),
            None => Ok(RecordBatch::new_empty(schema.clone())),
        }
    }

    /// Why `record` failed to decode with `error`, naming the field when one is at fault.
    fn explain(&self, schema: &SchemaRef, record: &[u8], header: bool, error: ArrowError) -> String {
        let expected = self.file_schema.fields().len();
        let width = arrow::csv::reader::Format::default()
            .infer_schema(record, Some(0))
            .map(|(s, _)| s.fields().len())
            .unwrap_or(expected);
        if width != expected {
            let what = if header { "the header has" } else { "expected" };
            return format!("the line has {width} fields, {what} {expected}");
        }
        // Find the first declared column whose value alone fails to parse.
        for (i, source) in self.sources.iter().enumerate() {
            let Some(p) = source else { continue };
            let j = self.projection[*p];
            if self.read(record, false, &[j], 1).is_err() {
                let field = schema.field(i);
                let text = self.utf8_value(record, j).unwrap_or_default();
                return format!("field '{}': cannot parse \"{text}\" as {}", field.name(), field.data_type());
            }
        }
        error.to_string()
    }

    /// The raw text of column `j` of `record`.
    fn utf8_value(&self, record: &[u8], j: usize) -> Option<String> {
        let fields: Vec<Field> =
            self.file_schema.fields().iter().map(|f| Field::new(f.name(), DataType::Utf8, true)).collect();
        let batch = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
            .with_projection(vec![j])
            .build_buffered(record)
            .ok()?
            .next()?
            .ok()?;
        let column = batch.column(0);
        let column = column.as_any().downcast_ref::<arrow::array::StringArray>()?;
        Some(if column.is_null(0) { String::new() } else { column.value(0).to_string() })
    }
}

fn decode_csv(buf: &[u8], header: bool, batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    if buf.trim_ascii().is_empty() {
        return Ok(());
    }
    let schema = out.schema.clone();
    let layout = CsvLayout::new(buf, header, out)?;

    // Fast path: the whole file through arrow_csv; any failure discards it and goes record by
    // record (arrow_csv's own line numbers count records, not lines, and stop at the first error).
    let fast =
        layout.read(buf, header, &layout.projection, batch_size).map_err(|e| e.to_string()).and_then(|batches| {
            batches.iter().map(|b| layout.assemble(&schema, b)).collect::<std::result::Result<Vec<_>, _>>()
        });
    if let Ok(batches) = fast {
        batches.into_iter().for_each(|b| out.push(b));
        return Ok(());
    }

    let records = split_csv_records(buf);
    let records = if header { records.get(1..).unwrap_or_default() } else { &records[..] };
    decode_units(records, batch_size, out, |chunk| {
        if let [one] = chunk {
            return layout.record(&schema, one.bytes, header);
        }
        // Chunk attempt: the records of the chunk are contiguous in `buf`.
        let (first, last) = (chunk[0].bytes.as_ptr(), chunk[chunk.len() - 1]);
        let start = first as usize - buf.as_ptr() as usize;
        let end = last.bytes.as_ptr() as usize - buf.as_ptr() as usize + last.bytes.len();
        let batches =
            layout.read(&buf[start..end], false, &layout.projection, chunk.len()).map_err(|e| e.to_string())?;
        let batches =
            batches.iter().map(|b| layout.assemble(&schema, b)).collect::<std::result::Result<Vec<_>, _>>()?;
        concat_batches(&schema, &batches).map_err(|e| e.to_string())
    })
}

/// Splits CSV text into records, each with the 1-based line it starts on.
///
/// Written by hand because arrow_csv does not expose record boundaries, which are needed to name
/// the line of a bad record and to skip it alone. It only finds boundaries — the records are
/// parsed by arrow_csv — and follows csv_core's default dialect that arrow_csv uses: `"` opens a
/// quoted field only at the start of a field, `""` inside quotes is a quote, any of `\r`, `\n`,
/// `\r\n` ends a record outside quotes, and empty lines are skipped.
fn split_csv_records(buf: &[u8]) -> Vec<Unit<'_>> {
    #[derive(PartialEq)]
    enum State {
        StartRecord,
        StartField,
        InField,
        Quoted,
        QuoteInQuoted,
    }
    let mut records = Vec::new();
    let mut state = State::StartRecord;
    let (mut line, mut start, mut start_line) = (1u64, 0usize, 1u64);
    for (i, &b) in buf.iter().enumerate() {
        let terminator = b == b'\n' || b == b'\r';
        if state == State::StartRecord && !terminator {
            state = State::StartField;
            start = i;
            start_line = line;
        }
        state = match state {
            State::StartRecord => State::StartRecord,
            State::StartField | State::InField | State::QuoteInQuoted if terminator => {
                records.push(Unit { line: start_line, bytes: &buf[start..i] });
                State::StartRecord
            }
            State::StartField if b == b'"' => State::Quoted,
            State::StartField | State::InField | State::QuoteInQuoted if b == b',' => State::StartField,
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            State::StartField | State::InField | State::QuoteInQuoted => State::InField,
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
        };
        if b == b'\n' {
            line += 1;
        }
    }
    if state != State::StartRecord {
        records.push(Unit { line: start_line, bytes: &buf[start..] });
    }
    records
}

// ---------------------------------------------------------------------------------------------
// Parquet

fn decode_parquet<T: ChunkReader + 'static>(reader: T, batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    let schema = out.schema.clone();
    let builder = ParquetRecordBatchReaderBuilder::try_new(reader)
        .map_err(|e| out.file_error(format!("cannot read the Parquet file: {e}")))?;
    let file_schema = builder.schema().clone();

    // declared field -> file root column
    let mut sources: Vec<Option<usize>> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let found = file_schema
            .fields()
            .iter()
            .position(|f| f.name() == name)
            .or_else(|| file_schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(name)));
        match found {
            Some(j) => {
                let from = file_schema.field(j).data_type();
                if !can_cast_types(from, field.data_type()) {
                    return Err(out.file_error(format!(
                        "column '{name}' is {from} in the Parquet file, which cannot be cast to \
                         the declared type {}",
                        field.data_type()
                    )));
                }
            }
            None if field.is_nullable() => {}
            None => {
                return Err(out.file_error(format!(
                    "the Parquet file has no column '{name}', which the schema declares NOT NULL; \
                     declare it nullable or fix the file"
                )))
            }
        }
        sources.push(found);
    }
    let mut roots: Vec<usize> = sources.iter().flatten().copied().collect();
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .build()
        .map_err(|e| out.file_error(format!("cannot read the Parquet file: {e}")))?;

    // Casting is "safe" (failures become nulls) so that bad values can be told apart from nulls
    // and reported or dropped row by row.
    let cast_options = CastOptions { safe: true, ..Default::default() };
    let relaxed = relax_nullability(&schema);
    let mut row_base = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| out.file_error(format!("cannot read the Parquet file: {e}")))?;
        let n = batch.num_rows();
        let mut columns = Vec::with_capacity(schema.fields().len());
        // First problem of each bad row, allocated only when there is one.
        let mut problems: Vec<Option<String>> = Vec::new();
        for (field, source) in schema.fields().iter().zip(&sources) {
            let Some(j) = source else {
                columns.push(new_null_array(field.data_type(), n));
                continue;
            };
            // Projected columns come in file order.
            let from = batch.column(roots.binary_search(j).expect("projected column"));
            let to = cast_with_options(from, field.data_type(), &cast_options)?;
            let unparsable = to.null_count() > from.null_count();
            if unparsable || (!field.is_nullable() && to.null_count() > 0) {
                let formatter = ArrayFormatter::try_new(from.as_ref(), &FormatOptions::default())?;
                problems.resize(n, None);
                for (r, problem) in problems.iter_mut().enumerate() {
                    if problem.is_some() || to.is_valid(r) {
                        continue;
                    }
                    if from.is_valid(r) {
                        *problem = Some(format!(
                            "field '{}': cannot cast {} value {} to {}",
                            field.name(),
                            from.data_type(),
                            formatter.value(r),
                            field.data_type()
                        ));
                    } else if !field.is_nullable() {
                        *problem =
                            Some(format!("field '{}' is null, but the schema declares it NOT NULL", field.name()));
                    }
                }
            }
            columns.push(to);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let mut decoded = RecordBatch::try_new_with_options(relaxed.clone(), columns, &options)?;
        if !problems.is_empty() {
            for (r, problem) in problems.iter().enumerate() {
                if let Some(message) = problem {
                    out.bad(row_base + r as u64 + 1, message.clone())?;
                }
            }
            let keep: BooleanArray = problems.iter().map(|p| Some(p.is_none())).collect();
            decoded = filter_record_batch(&decoded, &keep)?;
        }
        row_base += n as u64;
        let options = RecordBatchOptions::new().with_row_count(Some(decoded.num_rows()));
        out.push(RecordBatch::try_new_with_options(schema.clone(), decoded.columns().to_vec(), &options)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use arrow::array::{AsArray, Int32Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{Int64Type, TimeUnit, TimestampNanosecondType};
    use parquet::arrow::ArrowWriter;

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

    fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn gzip(content: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(content).unwrap();
        enc.finish().unwrap()
    }

    fn opts(bad_data: BadData, batch_size: usize) -> DecodeOptions {
        DecodeOptions { bad_data, batch_size, ..DecodeOptions::default() }
    }

    fn decode(path: &Path, format: Format, options: DecodeOptions) -> Result<Decoded> {
        decode_file(path, format, &schema(), &options)
    }

    /// All rows of `d` as (ts nanos, key, value).
    fn rows(d: &Decoded) -> Vec<(i64, Option<String>, Option<i64>)> {
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
        assert_eq!(out.len() as u64, d.rows);
        out
    }

    const T0: i64 = 1_357_035_300_000_000_000; // 2013-01-01T10:15:00Z in ns

    fn malformed(err: SluiceError) -> (std::path::PathBuf, u64, String) {
        match err {
            SluiceError::MalformedRecord { path, line, message } => (path, line, message),
            other => panic!("expected MalformedRecord, got {other:?}"),
        }
    }

    #[test]
    fn default_options() {
        let d = DecodeOptions::default();
        assert_eq!((d.bad_data, d.csv_header, d.batch_size), (BadData::Fail, true, 8192));
    }

    #[test]
    fn json_lines_with_timestamps_unknown_and_missing_fields_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "a.jsonl",
            b"{\"ts\":\"2013-01-01T10:15:00Z\",\"key\":\"a\",\"value\":1,\"extra\":[1,2]}\n\
              \n   \n\
              {\"ts\":\"2013-01-01T12:15:00+02:00\",\"value\":2}\r\n\
              {\"ts\":\"2013-01-01 10:15:01\",\"key\":7}",
        );
        let d = decode(&path, Format::Json, DecodeOptions::default()).unwrap();
        assert_eq!(d.dropped, 0);
        assert_eq!(
            rows(&d),
            vec![(T0, Some("a".into()), Some(1)), (T0, None, Some(2)), (T0 + 1_000_000_000, Some("7".into()), None),]
        );
    }

    #[test]
    fn gzipped_json_and_line_numbers_count_decompressed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            b"{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":1}\n\n{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":\"abc\"}\n";
        let path = write(&dir, "a.jsonl.gz", &gzip(text));
        let (p, line, message) = malformed(decode(&path, Format::Json, DecodeOptions::default()).unwrap_err());
        assert_eq!(p, path);
        assert_eq!(line, 3);
        assert!(message.contains("field 'value'") && message.contains("abc"), "{message}");

        let ok = write(&dir, "b.json.gz", &gzip(b"{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":1}"));
        let d = decode(&ok, Format::Json, DecodeOptions::default()).unwrap();
        assert_eq!(rows(&d), vec![(T0, None, Some(1))]);
    }

    #[test]
    fn json_bad_value_fails_with_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..10 {
            text.push_str(&format!("{{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":{i}}}\n"));
        }
        text.push_str("{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":\"abc\"}\n");
        let path = write(&dir, "a.json", text.as_bytes());
        let err = decode(&path, Format::Json, opts(BadData::Fail, 4)).unwrap_err();
        let shown = err.to_string();
        let (_, line, message) = malformed(err);
        assert_eq!(line, 11);
        assert_eq!(message, "field 'value': failed to parse \"abc\" as Int64");
        assert!(shown.contains("a.json") && shown.contains("line 11"), "{shown}");
    }

    #[test]
    fn json_syntax_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line) in [
            ("{\"ts\":\"2013-01-01T10:15:00Z\"}\n{\"ts\": oops}\n", 2),
            ("{\"ts\":\"2013-01-01T10:15:00Z\"}\n\n{\"ts\":\"2013-01-01T10:15:00Z\",\n\"value\":1}\n", 3),
            ("{\"ts\":\"2013-01-01T10:15:00Z\"} {\"ts\":\"2013-01-01T10:15:00Z\"}\n", 1),
            ("[1,2]\n", 1),
        ] {
            let path = write(&dir, "a.json", text.as_bytes());
            let (_, got, message) = malformed(decode(&path, Format::Json, DecodeOptions::default()).unwrap_err());
            assert_eq!(got, line, "{text:?}: {message}");
        }
    }

    #[test]
    fn json_missing_not_null_field_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.json", b"{\"ts\":\"2013-01-01T10:15:00Z\"}\n{\"key\":\"x\"}\n");
        let (_, line, message) = malformed(decode(&path, Format::Json, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("field 'ts'") && message.contains("NOT NULL"), "{message}");
    }

    #[test]
    fn json_drop_skips_bad_lines_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..7 {
            match i {
                2 => text.push_str("{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":\"abc\"}\n"),
                5 => text.push_str("not json\n"),
                _ => text.push_str(&format!("{{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":{i}}}\n")),
            }
        }
        let path = write(&dir, "a.json", text.as_bytes());
        let d = decode(&path, Format::Json, opts(BadData::Drop, 3)).unwrap();
        assert_eq!(d.dropped, 2);
        let values: Vec<_> = rows(&d).into_iter().map(|r| r.2.unwrap()).collect();
        assert_eq!(values, vec![0, 1, 3, 4, 6]);
    }

    #[test]
    fn empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        for format in [Format::Json, Format::Csv] {
            let path = write(&dir, "empty", b"");
            let d = decode(&path, format, DecodeOptions::default()).unwrap();
            assert_eq!((d.batches.len(), d.rows, d.dropped), (0, 0, 0));
        }
        let missing = dir.path().join("nope.json");
        for format in [Format::Json, Format::Csv, Format::Parquet] {
            match decode(&missing, format, DecodeOptions::default()).unwrap_err() {
                SluiceError::Io { path, .. } => assert_eq!(path, missing),
                other => panic!("expected Io, got {other:?}"),
            }
        }
    }

    #[test]
    fn csv_header_matches_columns_by_name() {
        let dir = tempfile::tempdir().unwrap();
        // reordered, an extra column, `key` missing (nullable), case-insensitive `VALUE`
        let path = write(&dir, "a.csv", b"VALUE,extra,ts\n1,x,2013-01-01T10:15:00Z\n,y,2013-01-01 10:15:01\n");
        let d = decode(&path, Format::Csv, DecodeOptions::default()).unwrap();
        assert_eq!(rows(&d), vec![(T0, None, Some(1)), (T0 + 1_000_000_000, None, None)]);
    }

    #[test]
    fn csv_without_header_is_positional_and_ignores_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path =
            write(&dir, "a.csv.gz", &gzip(b"2013-01-01T10:15:00Z,a,1,zzz\n2013-01-01T10:15:00Z,\"b,c\",2,zzz\n"));
        let options = DecodeOptions { csv_header: false, ..DecodeOptions::default() };
        let d = decode(&path, Format::Csv, options).unwrap();
        assert_eq!(rows(&d), vec![(T0, Some("a".into()), Some(1)), (T0, Some("b,c".into()), Some(2))]);
    }

    #[test]
    fn csv_bad_value_names_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        // line 3 is a quoted value spanning two lines, so the bad record is on line 5
        let path = write(
            &dir,
            "a.csv",
            b"ts,key,value\n2013-01-01T10:15:00Z,a,1\n2013-01-01T10:15:00Z,\"multi\nline\",2\n2013-01-01T10:15:00Z,c,abc\n",
        );
        let (_, line, message) = malformed(decode(&path, Format::Csv, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 5);
        assert_eq!(message, "field 'value': cannot parse \"abc\" as Int64");
    }

    #[test]
    fn csv_field_count_and_not_null_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.csv", b"ts,key,value\n2013-01-01T10:15:00Z,a\n");
        let (_, line, message) = malformed(decode(&path, Format::Csv, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("2 fields") && message.contains("3"), "{message}");

        let path = write(&dir, "b.csv", b"ts,key,value\n2013-01-01T10:15:00Z,a,1\n,b,2\n");
        let (_, line, message) = malformed(decode(&path, Format::Csv, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 3);
        assert!(message.contains("field 'ts'") && message.contains("NOT NULL"), "{message}");
    }

    #[test]
    fn csv_drop_keeps_good_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("ts,key,value\n");
        for i in 0..9 {
            match i {
                1 => text.push_str("2013-01-01T10:15:00Z,k,abc\n"),
                4 => text.push_str("2013-01-01T10:15:00Z,k\n"),
                7 => text.push_str("notatime,k,7\n"),
                _ => text.push_str(&format!("2013-01-01T10:15:00Z,k,{i}\n")),
            }
        }
        let path = write(&dir, "a.csv", text.as_bytes());
        let d = decode(&path, Format::Csv, opts(BadData::Drop, 2)).unwrap();
        assert_eq!(d.dropped, 3);
        let values: Vec<_> = rows(&d).into_iter().map(|r| r.2.unwrap()).collect();
        assert_eq!(values, vec![0, 2, 3, 5, 6, 8]);
    }

    #[test]
    fn csv_missing_not_null_column_is_a_source_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.csv", b"key,value\na,1\n");
        match decode(&path, Format::Csv, DecodeOptions::default()).unwrap_err() {
            SluiceError::Source { source_name, message } => {
                assert!(source_name.contains("a.csv"));
                assert!(message.contains("'ts'") && message.contains("key, value"), "{message}");
            }
            other => panic!("expected Source, got {other:?}"),
        }
    }

    #[test]
    fn split_csv_records_follows_csv_quoting() {
        let text = b"a,\"b\"\"\nc\",d\r\n\r\ne\"f,g\nh\n\"unterminated";
        let records: Vec<(u64, &[u8])> = split_csv_records(text).iter().map(|u| (u.line, u.bytes)).collect();
        assert_eq!(
            records,
            vec![(1, &b"a,\"b\"\"\nc\",d"[..]), (4, &b"e\"f,g"[..]), (5, &b"h"[..]), (6, &b"\"unterminated"[..]),]
        );
    }

    fn write_parquet(dir: &tempfile::TempDir, name: &str, batch: RecordBatch) -> std::path::PathBuf {
        let path = dir.path().join(name);
        let file = File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    }

    #[test]
    fn parquet_selects_by_name_and_casts() {
        let dir = tempfile::tempdir().unwrap();
        // value is Int32 in the file (cast to Int64), columns reordered, key missing, extra column
        let batch = RecordBatch::try_from_iter(vec![
            ("value", Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef),
            ("extra", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![T0, T0 + 1])) as ArrayRef),
        ])
        .unwrap();
        let path = write_parquet(&dir, "a.parquet", batch);
        let d = decode(&path, Format::Parquet, DecodeOptions::default()).unwrap();
        assert_eq!(rows(&d), vec![(T0, None, Some(1)), (T0 + 1, None, None)]);
    }

    #[test]
    fn parquet_schema_mismatch_is_a_source_error() {
        let dir = tempfile::tempdir().unwrap();
        let no_ts =
            RecordBatch::try_from_iter(vec![("value", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
        let path = write_parquet(&dir, "a.parquet", no_ts);
        match decode(&path, Format::Parquet, DecodeOptions::default()).unwrap_err() {
            SluiceError::Source { source_name, message } => {
                assert!(source_name.contains("a.parquet"));
                assert!(message.contains("'ts'") && message.contains("NOT NULL"), "{message}");
            }
            other => panic!("expected Source, got {other:?}"),
        }

        let list =
            arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(vec![Some(vec![Some(
                1,
            )])]);
        let bad_type = RecordBatch::try_from_iter(vec![
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![T0])) as ArrayRef),
            ("value", Arc::new(list) as ArrayRef),
        ])
        .unwrap();
        let path = write_parquet(&dir, "b.parquet", bad_type);
        match decode(&path, Format::Parquet, DecodeOptions::default()).unwrap_err() {
            SluiceError::Source { message, .. } => {
                assert!(message.contains("'value'") && message.contains("Int64"), "{message}")
            }
            other => panic!("expected Source, got {other:?}"),
        }

        let path = write(&dir, "c.parquet", b"not parquet at all");
        assert!(matches!(
            decode(&path, Format::Parquet, DecodeOptions::default()).unwrap_err(),
            SluiceError::Source { .. }
        ));
    }

    #[test]
    fn parquet_bad_values_fail_with_row_number_or_drop() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_from_iter(vec![
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![Some(T0), Some(T0), None, Some(T0)])) as ArrayRef),
            ("value", Arc::new(StringArray::from(vec![Some("1"), Some("abc"), Some("3"), None])) as ArrayRef),
        ])
        .unwrap();
        let path = write_parquet(&dir, "a.parquet", batch);
        let (_, line, message) = malformed(decode(&path, Format::Parquet, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 2);
        assert!(message.contains("field 'value'") && message.contains("abc"), "{message}");

        let d = decode(&path, Format::Parquet, opts(BadData::Drop, 8192)).unwrap();
        assert_eq!(d.dropped, 2, "row 2 (abc) and row 3 (null ts)");
        assert_eq!(rows(&d), vec![(T0, None, Some(1)), (T0, None, None)]);

        let gz = write(&dir, "b.parquet.gz", &gzip(&std::fs::read(&path).unwrap()));
        let d = decode(&gz, Format::Parquet, opts(BadData::Drop, 8192)).unwrap();
        assert_eq!(d.rows, 2);
    }
}
