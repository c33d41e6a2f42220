//! Encoding result rows into the bytes of one output file, in the text layout Spark's writers
//! produce, so that sluice's output can be compared with (and read by) Spark's.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{ArrayRef, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::{with_time_zone, Format};
use crate::row_ranges::split_rows;
use crate::{Result, SluiceError};

mod csv;
mod json;
pub(crate) mod spark_text;

/// chrono format of dates in JSON and CSV output (Spark's default `dateFormat`).
pub const DATE_FORMAT: &str = "%Y-%m-%d";

/// Encodes `batches` (rows of `schema`) as the content of one file in `format`, timestamps shown
/// in `time_zone` (Spark's `spark.sql.session.timeZone`; UTC when `None`).
///
/// - JSON: one object per line (each line ends in `\n`), fields in schema order, null fields
///   omitted (Spark's `ignoreNullFields`), structs as nested objects, maps as objects, lists as
///   arrays.
/// - CSV: a header line, then one line per row; RFC 4180 quoting, nulls as empty fields.
/// - Both: timestamps of any unit in Spark's default `timestampFormat`
///   (`yyyy-MM-dd'T'HH:mm:ss.SSSXXX`: `2024-01-01T00:00:00.000Z`, or `...+01:00` off UTC;
///   timestamps without a timezone are instants in UTC), dates as [`DATE_FORMAT`], doubles and
///   floats as Java's `toString` (`1.0`, `1.0E10`, `NaN`, `Infinity`, `-Infinity`; JSON quotes
///   the last three, as Jackson does).
/// - Parquet: one file with the types as they are.
///
/// With no batches, JSON is empty, CSV is the header alone and Parquet a file with no rows.
///
/// # Errors
/// [`SluiceError::Arrow`] when a batch does not match `schema`, a type cannot be written in JSON
/// or a timestamp is outside the range of dates; [`SluiceError::Sink`] for a nested column in CSV
/// (CSV has no nested values, as in Spark) or when the Parquet writer fails.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch], format: Format, time_zone: Option<&Tz>) -> Result<Vec<u8>> {
    let batches = batches.iter().map(|b| conform(schema, b)).collect::<Result<Vec<_>>>()?;
    let utc: Tz = "UTC".parse()?;
    let time_zone = time_zone.unwrap_or(&utc);
    match format {
        Format::Json => encode_in_parallel(&batches, |piece| json::encode_json(piece, time_zone)),
        Format::Csv => csv::encode_csv(schema, &batches, time_zone),
        Format::Parquet => encode_parquet(schema, &batches),
    }
}

/// Rows below which a file is encoded on one thread.
const PARALLEL_ENCODE_ROWS: usize = 65_536;

/// `encode` of `batches`, run on contiguous pieces of the rows in parallel (one per core, each of
/// at least [`PARALLEL_ENCODE_ROWS`] rows) and joined in order: for formats where the encoding of
/// consecutive rows is the concatenation of their encodings (JSON lines).
fn encode_in_parallel(
    batches: &[RecordBatch],
    encode: impl Fn(&[RecordBatch]) -> Result<Vec<u8>> + Sync,
) -> Result<Vec<u8>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pieces = cores.min(rows / PARALLEL_ENCODE_ROWS);
    if pieces <= 1 {
        return encode(batches);
    }
    let runs = split_rows(batches, pieces);
    let encoded = std::thread::scope(|scope| {
        let threads: Vec<_> = runs.iter().map(|run| scope.spawn(|| encode(run))).collect();
        threads.into_iter().map(|t| t.join()).collect::<Vec<_>>()
    });
    let mut out = Vec::new();
    for piece in encoded {
        let piece = piece.map_err(|_| SluiceError::Sink {
            sink: "encoder".to_string(),
            message: "a thread encoding part of the file failed".to_string(),
        })??;
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// `batch` relabelled with `schema` (names, nullability, metadata), so every file of a sink has
/// the same schema whatever the operators named their columns.
fn conform(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema.clone(), batch.columns().to_vec(), &options)?)
}

/// `batch` with each column replaced by `f` of it, the fields retyped to match.
pub(crate) fn map_columns(batch: &RecordBatch, f: impl Fn(&ArrayRef) -> Result<ArrayRef>) -> Result<RecordBatch> {
    let columns = batch.columns().iter().map(f).collect::<Result<Vec<_>>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, batch.schema().metadata().clone()));
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema, columns, &options)?)
}

fn encode_parquet(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let parquet_error = |e: parquet::errors::ParquetError| SluiceError::Sink {
        sink: "parquet".to_string(),
        message: format!("cannot encode Parquet: {e}"),
    };
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), schema.clone(), None).map_err(parquet_error)?;
    for batch in batches {
        writer.write(batch).map_err(parquet_error)?;
    }
    writer.into_inner().map_err(parquet_error)
}

/// `array` with every timestamp (at any depth of structs, lists and maps) relabelled as
/// timezone-less.
///
/// Arrow stores timestamps with a timezone as UTC instants, and casting them to no timezone
/// keeps the instant, so text formatters then print UTC.
pub(crate) fn strip_timezone(array: &ArrayRef) -> Result<ArrayRef> {
    let target = with_time_zone(array.data_type(), None);
    if &target == array.data_type() {
        return Ok(array.clone());
    }
    // arrow casts structs, lists and maps child by child; a timestamp keeps its instant.
    Ok(cast(array, &target)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;
    use arrow::array::{
        Date32Array, Float64Array, Int64Array, StringArray, StructArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::{DataType, Fields, TimeUnit};

    use super::*;

    const T0_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    fn window_type(tz: Option<&str>) -> DataType {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, tz.map(Into::into));
        DataType::Struct(Fields::from(vec![Field::new("start", ts.clone(), true), Field::new("end", ts, true)]))
    }

    fn window(tz: Option<&str>) -> ArrayRef {
        let start =
            TimestampMicrosecondArray::from(vec![T0_MS * 1000, T0_MS * 1000 + 3_600_000_000]).with_timezone_opt(tz);
        let end = TimestampMicrosecondArray::from(vec![T0_MS * 1000 + 3_600_000_000, T0_MS * 1000 + 7_200_000_000])
            .with_timezone_opt(tz);
        let DataType::Struct(fields) = window_type(tz) else { unreachable!() };
        Arc::new(StructArray::new(fields, vec![Arc::new(start) as ArrayRef, Arc::new(end)], None))
    }

    /// window STRUCT<start, end>, key STRING, cnt BIGINT, avg DOUBLE, day DATE
    fn batch(tz: Option<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("window", window_type(tz), true),
            Field::new("key", DataType::Utf8, true),
            Field::new("cnt", DataType::Int64, false),
            Field::new("avg", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                window(tz),
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![4, 1])),
                Arc::new(Float64Array::from(vec![Some(2.5), Some(1.0)])),
                Arc::new(Date32Array::from(vec![Some(19723), None])),
            ],
        )
        .unwrap()
    }

    const SPARK_JSON: &str = "\
{\"window\":{\"start\":\"2024-01-01T00:00:00.000Z\",\"end\":\"2024-01-01T01:00:00.000Z\"},\"key\":\"a\",\"cnt\":4,\"avg\":2.5,\"day\":\"2024-01-01\"}
{\"window\":{\"start\":\"2024-01-01T01:00:00.000Z\",\"end\":\"2024-01-01T02:00:00.000Z\"},\"cnt\":1,\"avg\":1.0}
";

    #[test]
    fn json_matches_spark_layout() {
        let b = batch(None);
        let out = encode(&b.schema(), std::slice::from_ref(&b), Format::Json, None).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), SPARK_JSON);
    }

    /// A date outside chrono's range (e.g. `date_add` past year 262143) fails the write in
    /// both formats, instead of the JSON file holding arrow's error text as the value.
    #[test]
    fn dates_that_cannot_be_printed_are_an_error_not_text() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let dates = arrow::array::Date32Array::from(vec![Some(19_723), None, Some(i32::MAX)]);
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(dates)]).unwrap();
        for format in [Format::Json, Format::Csv] {
            let err = encode(&schema, std::slice::from_ref(&b), format, None).unwrap_err().to_string();
            assert!(err.contains("2147483647"), "{format:?}: {err}");
        }
    }

    #[test]
    fn json_timestamps_with_timezone_are_written_in_utc() {
        let b = batch(Some("+05:00"));
        let out = encode(&b.schema(), std::slice::from_ref(&b), Format::Json, None).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), SPARK_JSON);
    }

    #[test]
    fn json_timestamps_of_every_unit_have_millisecond_precision() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("n", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![T0_MS + 5])),
                Arc::new(TimestampNanosecondArray::from(vec![T0_MS * 1_000_000 + 123_456_789]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let out = encode(&schema, &[b], Format::Json, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"s\":\"2024-01-01T00:00:00.005Z\",\"n\":\"2024-01-01T00:00:00.123Z\"}\n"
        );
    }

    #[test]
    fn csv_has_header_and_spark_timestamps() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("wstart", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("key", DataType::Utf8, true),
            Field::new("cnt", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![T0_MS * 1000, T0_MS * 1000]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
                Arc::new(Int64Array::from(vec![4, 1])),
            ],
        )
        .unwrap();
        let out = encode(&schema, &[b], Format::Csv, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "wstart,key,cnt\n2024-01-01T00:00:00.000Z,\"a,b\",4\n2024-01-01T00:00:00.000Z,,1\n"
        );
        assert_eq!(encode(&schema, &[], Format::Csv, None).unwrap(), b"wstart,key,cnt\n");
    }

    #[test]
    fn csv_refuses_nested_columns() {
        let b = batch(None);
        let err = encode(&b.schema(), std::slice::from_ref(&b), Format::Csv, None).unwrap_err();
        assert!(matches!(&err, SluiceError::Sink { message, .. } if message.contains("'window'")), "{err}");
    }

    #[test]
    fn parquet_round_trips_types() {
        let b = batch(Some("UTC"));
        let bytes = encode(&b.schema(), &[b.clone(), b.clone()], Format::Parquet, None).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let read: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().unwrap();
        let all = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(all.num_rows(), 4);
        assert_eq!(all.schema().fields(), b.schema().fields());
        assert_eq!(all.slice(0, 2).columns(), b.columns());
    }

    /// `tags ARRAY<TIMESTAMP WITH TIME ZONE>, m MAP<STRING, BIGINT>` with one row each.
    fn lists_and_maps() -> RecordBatch {
        let at = TimestampMillisecondArray::from(vec![T0_MS, T0_MS + 1]).with_timezone("+02:00");
        let tags = arrow::array::ListArray::new(
            Arc::new(Field::new_list_field(at.data_type().clone(), true)),
            arrow::buffer::OffsetBuffer::from_lengths([2, 0]),
            Arc::new(at),
            None,
        );
        let mut m =
            arrow::array::MapBuilder::new(None, arrow::array::StringBuilder::new(), arrow::array::Int64Builder::new());
        m.keys().append_value("k");
        m.values().append_value(5);
        m.append(true).unwrap();
        m.append(false).unwrap();
        RecordBatch::try_from_iter(vec![("tags", Arc::new(tags) as ArrayRef), ("m", Arc::new(m.finish()) as ArrayRef)])
            .unwrap()
    }

    #[test]
    fn json_writes_lists_and_maps_nested() {
        let b = lists_and_maps();
        let out = encode(&b.schema(), std::slice::from_ref(&b), Format::Json, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"tags\":[\"2024-01-01T00:00:00.000Z\",\"2024-01-01T00:00:00.001Z\"],\"m\":{\"k\":5}}\n{\"tags\":[]}\n"
        );
    }

    #[test]
    fn parquet_round_trips_lists_and_maps_and_csv_refuses_them() {
        let b = lists_and_maps();
        let bytes = encode(&b.schema(), std::slice::from_ref(&b), Format::Parquet, None).unwrap();
        let read: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        assert_eq!(read[0].columns(), b.columns());
        for column in ["tags", "m"] {
            let one = b.project(&[b.schema().index_of(column).unwrap()]).unwrap();
            let err = encode(&one.schema(), &[one], Format::Csv, None).unwrap_err();
            assert!(
                matches!(&err, SluiceError::Sink { message, .. } if message.contains(&format!("'{column}'"))),
                "{err}"
            );
        }
    }

    /// `d DOUBLE, f FLOAT` with values Java prints differently from Rust, non-finite ones, a null.
    fn floats() -> RecordBatch {
        let d = Float64Array::from(vec![Some(1.0), Some(1e10), Some(0.1), Some(f64::NAN), Some(f64::INFINITY), None]);
        let f = arrow::array::Float32Array::from(vec![
            Some(2.5f32),
            Some(1e-4),
            Some(16_777_216.0),
            Some(f32::NEG_INFINITY),
            None,
            Some(-0.0),
        ]);
        RecordBatch::try_from_iter(vec![("d", Arc::new(d) as ArrayRef), ("f", Arc::new(f) as ArrayRef)]).unwrap()
    }

    #[test]
    fn json_doubles_as_spark_writes_them() {
        let b = floats();
        let out = encode(&b.schema(), std::slice::from_ref(&b), Format::Json, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"d\":1.0,\"f\":2.5}\n{\"d\":1.0E10,\"f\":1.0E-4}\n{\"d\":0.1,\"f\":1.6777216E7}\n\
             {\"d\":\"NaN\",\"f\":\"-Infinity\"}\n{\"d\":\"Infinity\"}\n{\"f\":-0.0}\n"
        );
    }

    #[test]
    fn csv_doubles_as_spark_writes_them() {
        let b = floats();
        let out = encode(&b.schema(), std::slice::from_ref(&b), Format::Csv, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "d,f\n1.0,2.5\n1.0E10,1.0E-4\n0.1,1.6777216E7\nNaN,-Infinity\nInfinity,\n,-0.0\n"
        );
    }

    #[test]
    fn timestamps_in_the_session_time_zone() {
        let b = batch(Some("UTC"));
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let json = encode(&b.schema(), std::slice::from_ref(&b), Format::Json, Some(&paris)).unwrap();
        let first = String::from_utf8(json).unwrap().lines().next().unwrap().to_string();
        assert_eq!(
            first,
            "{\"window\":{\"start\":\"2024-01-01T01:00:00.000+01:00\",\"end\":\"2024-01-01T02:00:00.000+01:00\"},\
             \"key\":\"a\",\"cnt\":4,\"avg\":2.5,\"day\":\"2024-01-01\"}"
        );
        let at = RecordBatch::try_from_iter(vec![(
            "at",
            Arc::new(TimestampMillisecondArray::from(vec![T0_MS]).with_timezone("UTC")) as ArrayRef,
        )])
        .unwrap();
        let csv = encode(&at.schema(), &[at], Format::Csv, Some(&paris)).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "at\n2024-01-01T01:00:00.000+01:00\n");
    }

    #[test]
    fn batches_must_match_the_schema() {
        let b = batch(None);
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        assert!(encode(&other, &[b], Format::Json, None).is_err());
    }

    /// A file large enough to be encoded in pieces on several threads is byte for byte the file
    /// one thread writes.
    #[test]
    fn json_encoded_in_parallel_pieces_equals_one_piece() {
        let rows = 3 * PARALLEL_ENCODE_ROWS + 17;
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let batches: Vec<RecordBatch> = (0..rows as i64)
            .collect::<Vec<_>>()
            .chunks(50_000)
            .map(|c| {
                let x = Float64Array::from_iter(c.iter().map(|v| (v % 7 != 0).then_some(*v as f64 / 8.0)));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(c.to_vec())), Arc::new(x)]).unwrap()
            })
            .collect();
        let utc: Tz = "UTC".parse().unwrap();
        let whole = json::encode_json(&batches, &utc).unwrap();
        assert_eq!(encode(&schema, &batches, Format::Json, None).unwrap(), whole);
        assert_eq!(String::from_utf8(whole).unwrap().lines().count(), rows);
    }
}
