//! Nested columns (`STRUCT<...>`, `ARRAY<...>`, `MAP<...>`) through whole streaming queries: read
//! from JSON lines and Parquet, queried by field, index and key, and written back to JSON and
//! Parquet sinks.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, ListArray, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Int64Type};
use arrow::record_batch::RecordBatch;
use serde_json::json;

use crate::common::*;

const COLUMNS: &str = "id BIGINT, address STRUCT<city STRING, geo STRUCT<lat DOUBLE, lon DOUBLE>>, \
                       tags ARRAY<BIGINT>, m MAP<STRING, BIGINT>, ts TIMESTAMP";

/// Keys spelled differently from record to record, a number of seconds as a timestamp, an
/// object in a string column.
const RECORDS: &str = "\
{\"id\":1,\"address\":{\"city\":\"Oslo\",\"geo\":{\"lat\":59.9,\"lon\":10.7}},\"tags\":[10,20],\"m\":{\"k\":1},\"ts\":1704067200}
{\"ID\":2,\"Address\":{\"City\":\"Oslo\",\"geo\":{\"LAT\":59.8}},\"tags\":[30],\"m\":{\"k\":2,\"j\":3},\"ts\":\"2024-01-01T00:00:05Z\"}
{\"id\":3,\"ADDRESS\":{\"CITY\":\"Bergen\"},\"Tags\":[],\"m\":{},\"ts\":1704067210.5}
";

fn script(input: &std::path::Path, output: &std::path::Path, sink_format: &str, mode: &str, select: &str) -> String {
    format!(
        "CREATE TABLE events ({COLUMNS}) WITH (connector = 'file', path = '{}', format = 'json');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = '{sink_format}', output_mode = '{mode}');
         INSERT INTO out {select};",
        input.display(),
        output.display()
    )
}

#[tokio::test]
async fn nested_json_grouped_by_a_struct_field() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    write_file(&input, "a.json", RECORDS, 0);
    let select = "SELECT address.city AS city, count(*) AS n, sum(id) AS ids FROM events GROUP BY address.city";
    run_script(&script(&input, &output, "json", "complete", select), &dir.path().join("cp")).await.unwrap();
    let mut rows = sink_rows_by_batch(&output).remove(&0).unwrap();
    rows.sort_by_key(|r| r["city"].as_str().unwrap().to_string());
    assert_eq!(rows, vec![json!({"city": "Bergen", "n": 1, "ids": 3}), json!({"city": "Oslo", "n": 2, "ids": 3})]);
}

#[tokio::test]
async fn nested_json_fields_indexes_and_keys_are_selected() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    write_file(&input, "a.json", RECORDS, 0);
    // DataFusion's array index is 1-based (Spark's `tags[0]` is `tags[1]` here).
    let select = "SELECT id, address.geo.lat AS lat, tags[1] AS first_tag, m['k'] AS k, ts FROM events";
    run_script(&script(&input, &output, "json", "append", select), &dir.path().join("cp")).await.unwrap();
    assert_eq!(
        sink_rows_by_batch(&output).remove(&0).unwrap(),
        vec![
            json!({"id": 1, "lat": 59.9, "first_tag": 10, "k": 1, "ts": "2024-01-01T00:00:00.000Z"}),
            json!({"id": 2, "lat": 59.8, "first_tag": 30, "k": 2, "ts": "2024-01-01T00:00:05.000Z"}),
            json!({"id": 3, "ts": "2024-01-01T00:00:10.500Z"}),
        ]
    );
}

#[tokio::test]
async fn nested_columns_are_written_to_json_and_parquet_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_file(&input, "a.json", RECORDS, 0);
    let select = "SELECT id, address, tags, m FROM events";

    let json_out = dir.path().join("json");
    run_script(&script(&input, &json_out, "json", "append", select), &dir.path().join("cp1")).await.unwrap();
    assert_eq!(
        sink_rows_by_batch(&json_out).remove(&0).unwrap(),
        vec![
            json!({"id": 1, "address": {"city": "Oslo", "geo": {"lat": 59.9, "lon": 10.7}}, "tags": [10, 20], "m": {"k": 1}}),
            json!({"id": 2, "address": {"city": "Oslo", "geo": {"lat": 59.8}}, "tags": [30], "m": {"k": 2, "j": 3}}),
            json!({"id": 3, "address": {"city": "Bergen"}, "tags": [], "m": {}}),
        ]
    );

    let parquet_out = dir.path().join("parquet");
    run_script(&script(&input, &parquet_out, "parquet", "append", select), &dir.path().join("cp2")).await.unwrap();
    let part = std::fs::read_dir(&parquet_out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(part).unwrap())
            .unwrap()
            .build()
            .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(
        rows(&batches),
        vec![
            "1,{city: Oslo, geo: {lat: 59.9, lon: 10.7}},[10, 20],{k: 1}",
            "2,{city: Oslo, geo: {lat: 59.8, lon: null}},[30],{k: 2, j: 3}",
            "3,{city: Bergen, geo: null},[],{}",
        ]
    );
}

#[tokio::test]
async fn a_csv_sink_refuses_a_nested_column_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_file(&input, "a.json", RECORDS, 0);
    let sql = script(&input, &dir.path().join("out"), "csv", "append", "SELECT id, tags FROM events");
    let err = run_script(&sql, &dir.path().join("cp")).await.unwrap_err().to_string();
    assert!(err.contains("'tags'") && err.contains("CSV"), "{err}");
}

/// A Parquet file whose struct spells its fields differently from the declaration
/// (`address STRUCT<City, Zip>`, declared `STRUCT<zip BIGINT, city STRING, street STRING>`).
fn nested_parquet(path: &std::path::Path) {
    let address = StructArray::from(vec![
        (
            Arc::new(Field::new("City", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["Oslo", "Bergen", "Oslo"])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("Zip", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![150, 5003, 151])) as ArrayRef,
        ),
    ]);
    let scores =
        ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1), Some(2)]), None, Some(vec![])]);
    let batch = RecordBatch::try_from_iter(vec![
        ("address", Arc::new(address) as ArrayRef),
        ("scores", Arc::new(scores) as ArrayRef),
        ("w", Arc::new(Float64Array::from(vec![1.0, 2.0, 4.0])) as ArrayRef),
    ])
    .unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn nested_parquet_columns_match_struct_fields_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    nested_parquet(&input.join("a.parquet"));
    let sql = format!(
        "CREATE TABLE people (address STRUCT<zip BIGINT, city STRING, street STRING>, scores ARRAY<BIGINT>, w DOUBLE)
           WITH (connector = 'file', path = '{}', format = 'parquet');
         CREATE TABLE out WITH (connector = 'file', path = '{}', format = 'json', output_mode = 'complete');
         INSERT INTO out SELECT address.city AS city, sum(w) AS w, max(address.zip) AS zip,
                                max(array_length(scores)) AS longest, count(address.street) AS streets
                         FROM people GROUP BY address.city;",
        input.display(),
        output.display()
    );
    run_script(&sql, &dir.path().join("cp")).await.unwrap();
    let mut rows = sink_rows_by_batch(&output).remove(&0).unwrap();
    rows.sort_by_key(|r| r["city"].as_str().unwrap().to_string());
    assert_eq!(
        rows,
        vec![
            json!({"city": "Bergen", "w": 2.0, "zip": 5003, "streets": 0}),
            json!({"city": "Oslo", "w": 5.0, "zip": 151, "longest": 2, "streets": 0}),
        ]
    );
}
