//! JSON lines: one JSON object per line, decoded with arrow_json; records that arrow_json would
//! read differently from Spark are first re-written by [`normalize`].

mod normalize;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::{decode_units, finish_batch, Collector, Unit};
use crate::Result;

/// Decodes the JSON lines text `buf` into `out`, `batch_size` lines at a time.
///
/// Keys match declared columns (and struct fields) case-insensitively, per record: an exactly
/// spelled key wins over a differently spelled one in the same object, as Spark resolves column
/// names case-insensitively.
pub(super) fn decode_json(buf: &[u8], batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    let lines: Vec<Unit<'_>> = buf
        .split(|b| *b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let bytes = line.trim_ascii();
            (!bytes.is_empty()).then_some(Unit { line: i as u64 + 1, bytes })
        })
        .collect();
    decode_json_units(&lines, batch_size, out)
}

/// Decodes `lines`, each one JSON object, into `out`, `batch_size` lines at a time.
pub(super) fn decode_json_units(lines: &[Unit<'_>], batch_size: usize, out: &mut Collector<'_>) -> Result<()> {
    let schema = out.schema.clone();
    let decode_schema = out.reading_schema.clone();
    // Validate the schema once, so an unsupported type is a file-level error rather than every
    // record being "malformed".
    json_decoder(&decode_schema, 1)
        .map_err(|e| out.file_error(format!("cannot decode JSON into the declared schema: {e}")))?;
    decode_units(lines, batch_size, out, |chunk| json_chunk(&decode_schema, &schema, chunk))
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
    let fields = decode_schema.fields();
    let mut decoder = json_decoder(decode_schema, lines.len()).map_err(|e| e.to_string())?;
    for (i, line) in lines.iter().enumerate() {
        let rewritten;
        let bytes = if normalize::is_clean(line.bytes, fields) {
            line.bytes
        } else {
            rewritten = normalize::rewrite(line.bytes, fields)?;
            rewritten.as_bytes()
        };
        // Fed line by line so that a record may not continue on the next line (JSON lines), and
        // a line may not hold two records. (Both are caught by `normalize` first; these checks
        // keep arrow_json from ever reading across records.)
        let consumed = decoder.decode(bytes).map_err(|e| format!("invalid JSON: {}", json_message(e)))?;
        if decoder.has_partial_record() {
            return Err("invalid JSON: the line ends inside a JSON value (each record must be \
                        one complete JSON object on one line)"
                .to_string());
        }
        if consumed != bytes.len() || decoder.len() != i + 1 {
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
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Fields, Int64Type, Int8Type, Schema, SchemaRef, TimeUnit};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    use crate::format::decode::tests::{decode, gzip, malformed, opts, rows, write, T0};
    use crate::format::decode::{decode_file, DecodeOptions, Decoded};
    use crate::format::{BadData, Format};

    /// `content` as a JSON file decoded into `schema`.
    fn decode_json_text(content: &str, schema: &SchemaRef, options: DecodeOptions) -> crate::Result<Decoded> {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.json", content.as_bytes());
        decode_file(&path, Format::Json, schema, &options)
    }

    /// Every row of `d` as its cells' display text joined by `|`.
    fn shown(d: &Decoded) -> Vec<String> {
        let options = FormatOptions::default().with_null("null");
        let mut out = Vec::new();
        for b in &d.batches {
            let cells: Vec<ArrayFormatter> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                out.push(cells.iter().map(|c| c.value(r).to_string()).collect::<Vec<_>>().join("|"));
            }
        }
        out
    }

    #[test]
    fn json_keys_match_declared_columns_case_insensitively_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"ts\":\"2013-01-01T10:15:00Z\",\"key\":\"a\",\"value\":1}\n\
                    {\"TS\":\"2013-01-01T10:15:00Z\",\"KEY\":\"b\",\"Value\":2}\n\
                    {\"ts\":\"2013-01-01T10:15:00Z\",\"Key\":\"other\",\"key\":\"c\",\"value\":3}\n\
                    {\"ts\":\"2013-01-01T10:15:00Z\",\"key\":\"d\",\"KEY\":\"other\",\"vAlUe\":4}\n";
        let path = write(&dir, "a.json", text.as_bytes());
        for batch_size in [1, 2, 8192] {
            let d = decode(&path, Format::Json, opts(BadData::Fail, batch_size)).unwrap();
            let got: Vec<_> = rows(&d).into_iter().map(|(ts, k, v)| (ts, k.unwrap(), v.unwrap())).collect();
            let want: Vec<_> = [("a", 1), ("b", 2), ("c", 3), ("d", 4)].map(|(k, v)| (T0, k.to_string(), v)).to_vec();
            assert_eq!(got, want, "batch size {batch_size}");
        }
    }

    #[test]
    fn json_number_in_timestamp_field_is_seconds_since_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let t0_s = T0 / 1_000_000_000;
        let text = format!(
            "{{\"ts\":{t0_s},\"value\":1}}\n{{\"ts\":{t0_s}.5,\"value\":2}}\n\
             {{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":3}}\n{{\"ts\":-1.000001,\"value\":4}}\n"
        );
        let path = write(&dir, "a.json", text.as_bytes());
        let d = decode(&path, Format::Json, DecodeOptions::default()).unwrap();
        let ts: Vec<i64> = rows(&d).into_iter().map(|r| r.0).collect();
        assert_eq!(ts, vec![T0, T0 + 500_000_000, T0, -1_000_001_000]);

        // Beyond the range of a nanosecond timestamp: malformed, not wrapped around.
        let path = write(&dir, "b.json", b"{\"ts\":1e12}\n");
        let (_, line, message) = malformed(decode(&path, Format::Json, DecodeOptions::default()).unwrap_err());
        assert_eq!(line, 1);
        assert_eq!(message, "field 'ts': 1000000000000 seconds since the epoch is out of range for TIMESTAMP");
    }

    #[test]
    fn json_fraction_or_overflow_in_integer_field_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        for (value, message) in [
            ("3.7", "field 'value': 3.7 is not an integer, but the column is BIGINT"),
            ("-0.5", "field 'value': -0.5 is not an integer, but the column is BIGINT"),
            ("9223372036854775808", "field 'value': 9223372036854775808 is out of range for BIGINT"),
            ("1e300", "field 'value': 1e300 is out of range for BIGINT"),
        ] {
            let text = format!(
                "{{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":1}}\n{{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":{value}}}\n"
            );
            let path = write(&dir, "a.json", text.as_bytes());
            let (p, line, got) = malformed(decode(&path, Format::Json, DecodeOptions::default()).unwrap_err());
            assert_eq!((p, line, got.as_str()), (path.clone(), 2, message));
            let d = decode(&path, Format::Json, opts(BadData::Drop, 8192)).unwrap();
            assert_eq!((d.dropped, rows(&d)), (1, vec![(T0, None, Some(1))]), "{value}");
        }
        // Integral doubles are exact integers.
        let path = write(
            &dir,
            "b.json",
            b"{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":3.0}\n{\"ts\":\"2013-01-01T10:15:00Z\",\"value\":1e3}\n",
        );
        let d = decode(&path, Format::Json, DecodeOptions::default()).unwrap();
        assert_eq!(rows(&d).into_iter().map(|r| r.2.unwrap()).collect::<Vec<_>>(), vec![3, 1000]);

        let tiny: SchemaRef = Arc::new(Schema::new(vec![Field::new("t", DataType::Int8, true)]));
        let err = decode_json_text("{\"t\":127}\n{\"t\":300}\n", &tiny, DecodeOptions::default()).unwrap_err();
        assert_eq!(malformed(err).2, "field 't': 300 is out of range for TINYINT");
        let d = decode_json_text("{\"t\":-128}\n{\"t\":\"12\"}\n", &tiny, DecodeOptions::default()).unwrap();
        assert_eq!(d.batches[0].column(0).as_primitive::<Int8Type>().values().to_vec(), vec![-128, 12]);
    }

    /// `address STRUCT<city STRING, geo STRUCT<lat DOUBLE, lon DOUBLE>>, tags ARRAY<BIGINT>,
    /// m MAP<STRING, BIGINT>, raw STRING, at ARRAY<TIMESTAMP>`
    fn nested_schema() -> SchemaRef {
        let geo =
            Fields::from(vec![Field::new("lat", DataType::Float64, true), Field::new("lon", DataType::Float64, true)]);
        let address = Fields::from(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("geo", DataType::Struct(geo), true),
        ]);
        let entries =
            Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Int64, true)]);
        Arc::new(Schema::new(vec![
            Field::new("address", DataType::Struct(address), true),
            Field::new("tags", DataType::new_list(DataType::Int64, true), true),
            Field::new(
                "m",
                DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false),
                true,
            ),
            Field::new("raw", DataType::Utf8, true),
            Field::new("at", DataType::new_list(DataType::Timestamp(TimeUnit::Nanosecond, None), true), true),
        ]))
    }

    #[test]
    fn json_nested_values_decode_with_case_insensitive_struct_fields() {
        let text = "{\"address\":{\"city\":\"Oslo\",\"geo\":{\"lat\":59.9,\"lon\":10.7}},\"tags\":[1,2],\"m\":{\"k\":5},\"raw\":\"s\",\"at\":[\"2024-01-01T00:00:00Z\"]}\n\
                    {\"Address\":{\"CITY\":\"Bergen\",\"Geo\":{\"LAT\":60.4}},\"TAGS\":[],\"m\":{\"K\":1,\"k\":2},\"raw\":{\"b\": 1, \"a\": [1, 2.50, \"x\"]},\"at\":[1704067203, null]}\n\
                    {\"address\":null,\"tags\":null,\"raw\":[true,null],\"m\":{}}\n";
        let d = decode_json_text(text, &nested_schema(), DecodeOptions::default()).unwrap();
        assert_eq!(
            shown(&d),
            vec![
                "{city: Oslo, geo: {lat: 59.9, lon: 10.7}}|[1, 2]|{k: 5}|s|[2024-01-01T00:00:00]",
                "{city: Bergen, geo: {lat: 60.4, lon: null}}|[]|{K: 1, k: 2}|{\"b\":1,\"a\":[1,2.5,\"x\"]}|[2024-01-01T00:00:03, null]",
                "null|null|{}|[true,null]|null",
            ]
        );
    }

    #[test]
    fn json_bad_nested_values_name_their_path() {
        for (record, message) in [
            ("{\"tags\":[1,2.5]}", "field 'tags[1]': 2.5 is not an integer, but the column is BIGINT"),
            ("{\"m\":{\"a\":1,\"b\":1.5}}", "field 'm['b']': 1.5 is not an integer, but the column is BIGINT"),
            (
                "{\"Address\":{\"geo\":{\"lat\":\"north\"}}}",
                "field 'address': field 'geo': field 'lat': failed to parse \"north\" as Float64",
            ),
            ("{\"at\":[2e20]}", "field 'at[0]': 2e20 seconds since the epoch is out of range for TIMESTAMP"),
            ("[1]", "a record must be a JSON object, found an array"),
        ] {
            let err = decode_json_text(&format!("{record}\n"), &nested_schema(), DecodeOptions::default()).unwrap_err();
            assert_eq!(malformed(err).2, message, "{record}");
        }
    }

    #[test]
    fn json_int_values_fit_per_type() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let d = decode_json_text(
            "{\"v\":-9223372036854775808}\n{\"v\":9223372036854775807}\n",
            &schema,
            DecodeOptions::default(),
        )
        .unwrap();
        assert_eq!(d.batches[0].column(0).as_primitive::<Int64Type>().values().to_vec(), vec![i64::MIN, i64::MAX]);
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
}
