//! Property tests of [`decode_file`]: random valid records (keys in random case, edge values,
//! odd unicode, nesting), some then mutated (byte flips, truncations, random bytes, values of the
//! wrong type, huge numbers), decoded as JSON lines and CSV under both `bad_data` policies.
//!
//! Properties: decoding returns a result or a malformed-record error and never panics; with
//! `bad_data = 'drop'` the output is exactly the rows of the records that decode on their own
//! (so every output row came from a well-formed record, in order, and every other record is
//! counted as dropped); with `bad_data = 'fail'` the error names the first bad record's line;
//! and valid records round-trip exactly.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::csv::split_csv_records;
use super::{decode_file, BadData, DecodeOptions, Decoded, Format};
use crate::format::encode::encode;
use crate::SluiceError;

/// Cases per property in `cargo test` (see [`crate::proptest_cases`]); each case decodes a file of up to 12 records about 15 times.
const CASES: u32 = 96;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

/// The declared schemas the records are decoded into.
fn schemas() -> Vec<SchemaRef> {
    let geo =
        Fields::from(vec![Field::new("lat", DataType::Float64, true), Field::new("lon", DataType::Float64, true)]);
    let address =
        Fields::from(vec![Field::new("city", DataType::Utf8, true), Field::new("geo", DataType::Struct(geo), true)]);
    let entries =
        Fields::from(vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Int64, true)]);
    vec![
        Arc::new(Schema::new(vec![
            Field::new("ts", ts(), false),
            Field::new("key", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ])),
        Arc::new(Schema::new(vec![
            Field::new("t", DataType::Int8, true),
            Field::new("i", DataType::Int32, true),
            Field::new("d", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
        ])),
        Arc::new(Schema::new(vec![
            Field::new("address", DataType::Struct(address), true),
            Field::new("tags", DataType::new_list(DataType::Int64, true), true),
            Field::new(
                "m",
                DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false),
                true,
            ),
            Field::new("at", DataType::new_list(ts(), true), true),
            Field::new("raw", DataType::Utf8, true),
        ])),
    ]
}

/// A random valid value of `data_type`: `(JSON as written, JSON as the JSON sink writes it back)`;
/// `None` for null (omitted by the sink).
fn value(data_type: &DataType, depth: u32) -> BoxedStrategy<Option<(Value, Value)>> {
    let some = |s: BoxedStrategy<(Value, Value)>| prop_oneof![1 => Just(None), 5 => s.prop_map(Some)].boxed();
    match data_type {
        DataType::Int8 => some(any::<i8>().prop_map(|v| (json!(v), json!(v))).boxed()),
        DataType::Int32 => some(any::<i32>().prop_map(|v| (json!(v), json!(v))).boxed()),
        DataType::Int64 => some(
            prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -1000i64..1000]
                .prop_map(|v| (json!(v), json!(v)))
                .boxed(),
        ),
        // Any finite double, also the longest decimals: read, written and read back exactly
        // (serde_json's float_roundtrip on the re-write path, Java's shortest form in the sink).
        DataType::Float64 => some(
            prop_oneof![any::<f64>().prop_filter("JSON has no NaN or infinity", |v| v.is_finite()), -1e6f64..1e6]
                .prop_map(|v| (json!(v), json!(v)))
                .boxed(),
        ),
        DataType::Boolean => some(any::<bool>().prop_map(|v| (json!(v), json!(v))).boxed()),
        DataType::Utf8 => some(any::<String>().prop_map(|v| (json!(v), json!(v))).boxed()),
        DataType::Date32 => some(
            (-100_000i32..100_000)
                .prop_map(|days| {
                    let text =
                        arrow::temporal_conversions::date32_to_datetime(days).unwrap().format("%Y-%m-%d").to_string();
                    (json!(text), json!(text))
                })
                .boxed(),
        ),
        // Milliseconds between 1900 and 2200, as a string or as a number of seconds.
        DataType::Timestamp(..) => some(
            (-2_208_988_800_000i64..7_258_118_400_000, any::<bool>())
                .prop_map(|(ms, as_number)| {
                    let shown = arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
                        .unwrap()
                        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                        .to_string();
                    let written = if as_number && ms % 1000 == 0 {
                        json!(ms / 1000)
                    } else if as_number {
                        // Exact in a double and in decimal: a multiple of 1/8 s.
                        json!((ms - ms.rem_euclid(125)) as f64 / 1000.0)
                    } else {
                        json!(shown)
                    };
                    let back = if as_number && ms % 1000 != 0 {
                        let ms = ms - ms.rem_euclid(125);
                        arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
                            .unwrap()
                            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                            .to_string()
                    } else {
                        shown
                    };
                    (written, json!(back))
                })
                .boxed(),
        ),
        DataType::Struct(fields) if depth < 3 => {
            let fields = fields.clone();
            some(object(&fields, depth + 1).prop_map(|(w, b)| (Value::Object(w), Value::Object(b))).boxed())
        }
        DataType::List(element) => some(
            prop::collection::vec(value(element.data_type(), depth + 1).prop_filter_map("no nulls", |v| v), 0..4)
                .prop_map(|items| {
                    let (w, b): (Vec<Value>, Vec<Value>) = items.into_iter().unzip();
                    (Value::Array(w), Value::Array(b))
                })
                .boxed(),
        ),
        DataType::Map(..) => some(
            prop::collection::btree_map("[a-zA-Z]{1,3}", any::<i64>(), 0..4)
                .prop_map(|m| {
                    let m: Map<String, Value> = m.into_iter().map(|(k, v)| (k, json!(v))).collect();
                    (Value::Object(m.clone()), Value::Object(m))
                })
                .boxed(),
        ),
        _ => Just(None).boxed(),
    }
}

/// A random valid object of `fields` with keys in random case: `(as written, as written back)`.
fn object(fields: &Fields, depth: u32) -> BoxedStrategy<(Map<String, Value>, Map<String, Value>)> {
    let parts: Vec<_> = fields
        .iter()
        .map(|f| {
            let name = f.name().clone();
            let nullable = f.is_nullable();
            (value(f.data_type(), depth), prop::collection::vec(any::<bool>(), name.len()))
                .prop_filter("NOT NULL fields have a value", move |(v, _)| nullable || v.is_some())
                .prop_map(move |(v, upper)| {
                    let key: String =
                        name.chars().zip(upper).map(|(c, u)| if u { c.to_ascii_uppercase() } else { c }).collect();
                    (name.clone(), key, v)
                })
        })
        .collect();
    parts
        .prop_map(|parts| {
            let (mut written, mut back) = (Map::new(), Map::new());
            for (name, key, v) in parts {
                if let Some((w, b)) = v {
                    written.insert(key, w);
                    back.insert(name, b);
                }
            }
            (written, back)
        })
        .boxed()
}

/// How one record is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    Keep,
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Replace(Vec<u8>),
    /// A top-level value replaced by this JSON text (a wrong type, a huge number, ...).
    WrongValue(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let wrong = prop::sample::select(vec![
        "3.7",
        "-0.5",
        "1e400",
        "123456789012345678901234567890",
        "9223372036854775808",
        "-9223372036854775809",
        "300",
        "{}",
        "[]",
        "[1,{\"a\":[]}]",
        "{\"k\":{\"x\":1}}",
        "true",
        "\"abc\"",
        "\"\"",
        "null",
        "\"\\u0000\\ud83d\"",
        "\"1704067203\"",
        "1e12",
        "-1e300",
        "\"2024-13-45T99:99:99Z\"",
        "[[[[[[[[[[1]]]]]]]]]]",
        "\"\u{1F600}\u{202E}\"",
    ]);
    prop_oneof![
        6 => Just(Mutation::Keep),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Mutation::Replace),
        2 => (any::<usize>(), wrong).prop_map(|(i, w)| Mutation::WrongValue(i, w)),
    ]
}

impl Mutation {
    /// `record` damaged; `None` when it is kept as it is.
    fn apply(&self, record: &Map<String, Value>, text: &[u8]) -> Option<Vec<u8>> {
        let at = |i: usize| if text.is_empty() { 0 } else { i % text.len() };
        match self {
            Mutation::Keep => None,
            Mutation::Flip(i, b) => {
                let mut t = text.to_vec();
                if !t.is_empty() {
                    let i = at(*i);
                    t[i] ^= b | 1;
                }
                Some(t)
            }
            Mutation::Truncate(i) => Some(text[..at(*i)].to_vec()),
            Mutation::Insert(i, bytes) => {
                let mut t = text.to_vec();
                let i = at(*i);
                t.splice(i..i, bytes.iter().copied());
                Some(t)
            }
            Mutation::Replace(bytes) => Some(bytes.clone()),
            Mutation::WrongValue(i, wrong) => {
                let keys: Vec<&String> = record.keys().collect();
                let key = keys.get(if keys.is_empty() { 0 } else { i % keys.len() })?;
                let mut text = String::from("{");
                for (k, v) in record {
                    if text.len() > 1 {
                        text.push(',');
                    }
                    let v = if k == *key { (*wrong).to_string() } else { v.to_string() };
                    text.push_str(&format!("{}:{v}", Value::String(k.clone())));
                }
                text.push('}');
                Some(text.into_bytes())
            }
        }
    }
}

/// The rows of `d` as the JSON sink writes them.
fn written(schema: &SchemaRef, d: &Decoded) -> Vec<Value> {
    let bytes = encode(schema, &d.batches, Format::Json, None).expect("decoded rows encode");
    String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn decode_bytes(
    dir: &tempfile::TempDir,
    name: &str,
    bytes: &[u8],
    format: Format,
    schema: &SchemaRef,
    options: DecodeOptions,
) -> crate::Result<Decoded> {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    decode_file(&path, format, schema, &options)
}

/// The checks shared by JSON and CSV. `records` are `(line, bytes decoded alone, expected rows
/// when the record was not damaged)`; `file` is the whole file.
fn check(
    format: Format,
    schema: &SchemaRef,
    file: &[u8],
    records: &[(u64, Vec<u8>, Option<Value>)],
    batch_size: usize,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let fail = DecodeOptions { batch_size, ..DecodeOptions::default() };
    let drop = DecodeOptions { bad_data: BadData::Drop, ..fail.clone() };
    let (mut expected_rows, mut bad_lines) = (Vec::new(), Vec::new());
    for (line, alone, expected) in records {
        match decode_bytes(&dir, "one", alone, format, schema, DecodeOptions::default()) {
            Ok(d) => {
                let rows = written(schema, &d);
                if let Some(expected) = expected {
                    prop_assert_eq!(&rows, &vec![expected.clone()], "a valid record round-trips (line {})", line);
                }
                expected_rows.extend(rows);
            }
            Err(SluiceError::MalformedRecord { .. }) => {
                prop_assert!(
                    expected.is_none(),
                    "a valid record decodes (line {}): {:?}",
                    line,
                    String::from_utf8_lossy(alone)
                );
                bad_lines.push(*line);
            }
            Err(other) => prop_assert!(false, "a record is decoded or malformed, got {other:?}"),
        }
    }
    let d = decode_bytes(&dir, "all", file, format, schema, drop).expect("bad_data = 'drop' always decodes");
    prop_assert_eq!(written(schema, &d), expected_rows.clone());
    prop_assert_eq!(d.dropped, bad_lines.len() as u64);
    match (decode_bytes(&dir, "all", file, format, schema, fail), bad_lines.first()) {
        (Ok(d), None) => prop_assert_eq!(written(schema, &d), expected_rows),
        (Err(SluiceError::MalformedRecord { line, .. }), Some(first)) => prop_assert_eq!(line, *first),
        (other, first) => prop_assert!(false, "first bad line {first:?}, got {other:?}"),
    }
    Ok(())
}

/// Records of schema `which`, each with a mutation.
fn json_case() -> impl Strategy<Value = (usize, Vec<((Map<String, Value>, Map<String, Value>), Mutation)>, usize)> {
    (0..3usize).prop_flat_map(|which| {
        let schema = schemas()[which].clone();
        (Just(which), prop::collection::vec((object(schema.fields(), 0), mutation()), 0..12), 1..5usize)
    })
}

proptest! {
    #![proptest_config(crate::proptest_cases::config(CASES))]

    #[test]
    fn json_lines_decode_or_name_the_bad_record((which, records, batch_size) in json_case()) {
        let schema = schemas()[which].clone();
        // The file, and its non-blank physical lines (as the decoder splits them) with the rows
        // of the undamaged ones.
        let (mut file, mut lines, mut line) = (Vec::new(), Vec::new(), 1u64);
        for ((written, back), mutation) in &records {
            let text = serde_json::to_vec(&Value::Object(written.clone())).unwrap();
            let (bytes, expected) = match mutation.apply(written, &text) {
                None => (text, Some(Value::Object(back.clone()))),
                Some(damaged) => (damaged, None),
            };
            for part in bytes.split(|b| *b == b'\n') {
                if !part.trim_ascii().is_empty() {
                    lines.push((line, part.to_vec(), expected.clone()));
                }
                line += 1;
            }
            file.extend(bytes);
            file.push(b'\n');
        }
        check(Format::Json, &schema, &file, &lines, batch_size)?;
    }
}

/// A CSV field holding `v` (quoted when it must be).
fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `ts TIMESTAMP, key STRING, value BIGINT, d DOUBLE`.
fn csv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", ts(), true),
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Int64, true),
        Field::new("d", DataType::Float64, true),
    ]))
}

/// A valid CSV record of [`csv_schema`] (timestamps as text; strings not empty, as an empty field
/// is null): `(values in column order, as written back)`.
fn csv_record() -> impl Strategy<Value = (Vec<Option<Value>>, Map<String, Value>)> {
    let schema = csv_schema();
    let columns: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            let name = f.name().clone();
            value(f.data_type(), 0)
                .prop_filter("CSV timestamps are text, strings not empty", |v| match v {
                    Some((Value::String(s), _)) => !s.is_empty(),
                    Some((Value::Number(_), Value::String(_))) => false,
                    _ => true,
                })
                .prop_map(move |v| (name.clone(), v))
        })
        .collect();
    columns.prop_map(|columns| {
        let mut back = Map::new();
        let mut written = Vec::new();
        for (name, v) in columns {
            match v {
                Some((w, b)) => {
                    back.insert(name, b);
                    written.push(Some(w));
                }
                None => written.push(None),
            }
        }
        (written, back)
    })
}

proptest! {
    #![proptest_config(crate::proptest_cases::config(CASES))]

    #[test]
    fn csv_decodes_or_names_the_bad_record(
        records in prop::collection::vec((csv_record(), mutation()), 0..12),
        header_upper in prop::collection::vec(any::<bool>(), 4),
        batch_size in 1..5usize,
    ) {
        let schema = csv_schema();
        let header: Vec<String> = schema
            .fields()
            .iter()
            .zip(header_upper)
            .map(|(f, u)| if u { f.name().to_uppercase() } else { f.name().clone() })
            .collect();
        let mut file = format!("{}\n", header.join(",")).into_bytes();
        let mut kept = Vec::new();
        for ((values, back), mutation) in &records {
            let text: Vec<String> = values.iter().map(|v| v.as_ref().map(csv_field).unwrap_or_default()).collect();
            let text = text.join(",").into_bytes();
            let as_map: Map<String, Value> = back.clone();
            let damaged = match mutation {
                // A wrong value in CSV: in place of the first field.
                Mutation::WrongValue(_, wrong) => Some(format!("{},{}", csv_field(&Value::String((*wrong).to_string())), String::from_utf8_lossy(&text).split_once(',').map(|x| x.1).unwrap_or_default()).into_bytes()),
                other => other.apply(&as_map, &text),
            };
            if damaged.is_none() {
                kept.push((file.len(), back.clone()));
            }
            file.extend(damaged.unwrap_or(text));
            file.push(b'\n');
        }
        let records: Vec<(u64, Vec<u8>, Option<Value>)> = split_csv_records(&file)
            .into_iter()
            .skip(1)
            .map(|unit| {
                let offset = unit.bytes.as_ptr() as usize - file.as_ptr() as usize;
                // (A damaged record with an open quote may have swallowed the next ones: only a
                // record that starts where an undamaged one was written is that record.)
                let expected = kept.iter().find(|(start, _)| *start == offset);
                let mut alone = format!("{}\n", header.join(",")).into_bytes();
                alone.extend(unit.bytes);
                (unit.line, alone, expected.map(|(_, b)| Value::Object(b.clone())))
            })
            .collect();
        check(Format::Csv, &schema, &file, &records, batch_size)?;
    }
}
