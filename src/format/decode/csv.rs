//! CSV: arrow_csv decodes the records; this file maps the file's columns to the declared schema
//! and finds record boundaries, so that a bad record can be reported with its line or skipped.

use std::sync::Arc;

use arrow::array::{new_null_array, Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::{decode_units, finish_batch, sql_type_name, Collector, Unit};
use crate::Result;

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
        if let Some(field) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
            // As Spark: "CSV data source does not support struct<...> data type".
            return Err(out.file_error(format!(
                "column '{}' is declared {}, which a CSV field cannot hold; declare it STRING, or \
                 read the file with format 'json' or 'parquet'",
                field.name(),
                field.data_type()
            )));
        }
        let (first, _) = arrow::csv::reader::Format::default()
            .with_header(header)
            .infer_schema(buf, Some(0))
            .map_err(|e| out.file_error(format!("cannot read the first CSV line: {e}")))?;
        let names: Vec<String> = first.fields().iter().map(|f| f.name().clone()).collect();

        // file column index -> declared field index
        let mut feeds: Vec<Option<usize>> = vec![None; names.len()];
        if header {
            // Exact spellings first, so that in `KEY,key` the declared `key` reads the column
            // spelled exactly; then the others ignoring ASCII case, as JSON keys are matched.
            let mut taken = vec![false; schema.fields().len()];
            for exact in [true, false] {
                for (name, feed) in names.iter().zip(feeds.iter_mut()) {
                    if feed.is_some() {
                        continue;
                    }
                    let matches =
                        |f: &Field| if exact { f.name() == name } else { f.name().eq_ignore_ascii_case(name) };
                    *feed = schema.fields().iter().enumerate().position(|(i, f)| !taken[i] && matches(f));
                    if let Some(i) = *feed {
                        taken[i] = true;
                    }
                }
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
                    file_fields.push(Field::new(name, out.reading_schema.field(*i).data_type().clone(), true));
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
                return format!(
                    "field '{}': cannot parse \"{text}\" as {}",
                    field.name(),
                    sql_type_name(field.data_type())
                );
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

/// Decodes the CSV text `buf` (a header first if `header`) into `out`, `batch_size` records at a
/// time.
pub(super) fn decode_csv(buf: &[u8], header: bool, batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
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
pub(super) fn split_csv_records(buf: &[u8]) -> Vec<Unit<'_>> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::split_csv_records;
    use crate::format::decode::tests::{decode, gzip, malformed, opts, rows, write, T0};
    use crate::format::decode::{decode_file, DecodeOptions};
    use crate::format::{BadData, Format};
    use crate::SluiceError;

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
        assert_eq!(message, "field 'value': cannot parse \"abc\" as BIGINT");
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
    fn csv_header_prefers_the_exact_spelling_then_matches_any_case() {
        let dir = tempfile::tempdir().unwrap();
        // `KEY` comes first but `key` is the declared spelling; `Ts` and `VALUE` match by case.
        let path = write(&dir, "a.csv", b"KEY,key,Ts,VALUE\nother,a,2013-01-01T10:15:00Z,1\n");
        let d = decode(&path, Format::Csv, DecodeOptions::default()).unwrap();
        assert_eq!(rows(&d), vec![(T0, Some("a".into()), Some(1))]);
    }

    #[test]
    fn csv_fraction_overflow_and_bare_numbers_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        for (record, message) in [
            ("2013-01-01T10:15:00Z,k,3.7", "field 'value': cannot parse \"3.7\" as BIGINT"),
            ("2013-01-01T10:15:00Z,k,1e3", "field 'value': cannot parse \"1e3\" as BIGINT"),
            (
                "2013-01-01T10:15:00Z,k,9223372036854775808",
                "field 'value': cannot parse \"9223372036854775808\" as BIGINT",
            ),
            // Spark parses CSV timestamps from text only: a bare number is malformed.
            ("1357035300,k,1", "field 'ts': cannot parse \"1357035300\" as TIMESTAMP"),
            ("1357035300.5,k,1", "field 'ts': cannot parse \"1357035300.5\" as TIMESTAMP"),
        ] {
            let path = write(&dir, "a.csv", format!("ts,key,value\n2013-01-01T10:15:00Z,k,1\n{record}\n").as_bytes());
            let (_, line, got) = malformed(decode(&path, Format::Csv, DecodeOptions::default()).unwrap_err());
            assert_eq!((line, got.as_str()), (3, message));
            let d = decode(&path, Format::Csv, opts(BadData::Drop, 8192)).unwrap();
            assert_eq!((d.dropped, rows(&d)), (1, vec![(T0, Some("k".into()), Some(1))]), "{record}");
        }

        let tiny = Arc::new(Schema::new(vec![Field::new("t", DataType::Int8, true)]));
        let path = write(&dir, "b.csv", b"t\n127\n300\n");
        let err = decode_file(&path, Format::Csv, &tiny, &DecodeOptions::default()).unwrap_err();
        assert_eq!(malformed(err).2, "field 't': cannot parse \"300\" as TINYINT");
    }

    #[test]
    fn csv_refuses_nested_columns_for_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("tags", DataType::new_list(DataType::Int64, true), true)]));
        let path = write(&dir, "a.csv", b"tags\n1\n");
        match decode_file(&path, Format::Csv, &schema, &DecodeOptions::default()).unwrap_err() {
            SluiceError::Source { message, .. } => {
                assert!(message.contains("'tags'") && message.contains("json"), "{message}")
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
}
