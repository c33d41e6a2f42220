//! JSON lines: one JSON object per line, decoded with arrow_json.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::{decode_units, finish_batch, relax_nullability, Collector, Unit};
use crate::Result;

/// Decodes the JSON lines text `buf` into `out`, `batch_size` lines at a time.
pub(super) fn decode_json(buf: &[u8], batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    let schema = out.schema.clone();
    let lines: Vec<Unit<'_>> = buf
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let bytes = line.trim_ascii();
            (!bytes.is_empty()).then_some(Unit { line: i as u64 + 1, bytes })
        })
        .collect();
    let decode_schema = match_key_case(&relax_nullability(&schema), lines.first().map(|l| l.bytes));
    // Validate the schema once, so an unsupported type is a file-level error rather than every
    // record being "malformed".
    json_decoder(&decode_schema, 1)
        .map_err(|e| out.file_error(format!("cannot decode JSON into the declared schema: {e}")))?;
    decode_units(&lines, batch_size, out, |chunk| json_chunk(&decode_schema, &schema, chunk))
}

/// Column names resolve case-insensitively, as in Spark: SQL folds unquoted identifiers to lower
/// case, so a declared `clickTime` is `clicktime` and must still read the key `clickTime`. The
/// first record's keys decide the spelling for the file.
fn match_key_case(schema: &SchemaRef, first: Option<&[u8]>) -> SchemaRef {
    let Some(Ok(record)) = first.map(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>) else {
        return schema.clone();
    };
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match record.keys().find(|k| !record.contains_key(f.name()) && k.eq_ignore_ascii_case(f.name())) {
            Some(key) => Arc::new(f.as_ref().clone().with_name(key)),
            None => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
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

#[cfg(test)]
mod tests {
    use crate::format::decode::tests::{decode, gzip, malformed, opts, rows, write, T0};
    use crate::format::decode::DecodeOptions;
    use crate::format::{BadData, Format};

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
}
