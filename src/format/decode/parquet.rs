//! Parquet: declared columns are selected by name and cast to the declared types; values that
//! cannot be cast, and nulls in NOT NULL fields, are reported with their row number or dropped.
//! Struct fields are matched by name too (exact, else ignoring ASCII case), at any depth.

use std::sync::Arc;

use arrow::array::StructArray;
use arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, ListArray, MapArray, RecordBatchOptions};
use arrow::compute::{can_cast_types, cast_with_options, filter_record_batch, CastOptions};
use arrow::datatypes::{DataType, Fields};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;

use super::{reading_schema, Collector};
use crate::Result;

/// Decodes the Parquet file read through `reader` into `out`, `batch_size` rows at a time.
pub(super) fn decode_parquet<T: ChunkReader + 'static>(
    reader: T,
    batch_size: usize,
    out: &mut Collector<'_>,
) -> Result<()> {
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
                if !can_adapt(from, field.data_type()) {
                    return Err(out.file_error(format!(
                        "column '{name}' is {from} in the Parquet file, which cannot be read as the declared \
                         type {} (a cast that would cut a number's fraction, or read a number as a time, is \
                         refused, as Spark refuses it); declare the file's type",
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
    let strict = CastOptions { safe: false, ..Default::default() };
    let relaxed = reading_schema(&schema, None);
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
            // A value inside a nested column that cannot be cast fails the file (its row is not
            // told apart from a null by the null counts).
            let options = if field.data_type().is_nested() { &strict } else { &cast_options };
            let to = adapt(from, field.data_type(), options)
                .map_err(|e| out.file_error(format!("column '{}': {e}", field.name())))?;
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

/// The field of `fields` named `name`: exactly, else ignoring ASCII case.
fn find_field(fields: &Fields, name: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| f.name() == name)
        .or_else(|| fields.iter().position(|f| f.name().eq_ignore_ascii_case(name)))
}

/// Whether a file column of type `from` can be read as the declared type `to`: structs field by
/// field by name (a declared field the file lacks must be nullable: it is null), lists and maps
/// element by element, anything else as arrow casts it.
fn can_adapt(from: &DataType, to: &DataType) -> bool {
    match (from, to) {
        (DataType::Struct(f), DataType::Struct(t)) => t.iter().all(|tf| match find_field(f, tf.name()) {
            Some(i) => can_adapt(f[i].data_type(), tf.data_type()),
            None => tf.is_nullable(),
        }),
        (DataType::List(f), DataType::List(t)) => can_adapt(f.data_type(), t.data_type()),
        (DataType::Map(f, _), DataType::Map(t, _)) => can_adapt(f.data_type(), t.data_type()),
        _ => can_cast_types(from, to) && !changes_values(from, to),
    }
}

/// Casts arrow performs that would silently change a value rather than fail: a floating-point
/// number, or a decimal with a fraction, read as an integer (the fraction is cut), and a number
/// read as a timestamp or date (a Parquet integer has no unit: arrow would take it in the
/// declared type's unit, the JSON reader in seconds).
fn changes_values(from: &DataType, to: &DataType) -> bool {
    let fractional = from.is_floating()
        || matches!(from, DataType::Decimal32(_, s) | DataType::Decimal64(_, s) if *s > 0)
        || matches!(from, DataType::Decimal128(_, s) | DataType::Decimal256(_, s) if *s > 0);
    let temporal = matches!(to, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64);
    (fractional && to.is_integer()) || (from.is_numeric() && temporal)
}

/// `array` read as `to` (see [`can_adapt`]).
fn adapt(array: &ArrayRef, to: &DataType, options: &CastOptions) -> std::result::Result<ArrayRef, ArrowError> {
    Ok(match (array.data_type(), to) {
        (DataType::Struct(_), DataType::Struct(t)) => {
            let s = array.as_struct();
            let columns = t
                .iter()
                .map(|tf| match find_field(s.fields(), tf.name()) {
                    Some(i) => adapt(s.column(i), tf.data_type(), options),
                    None => Ok(new_null_array(tf.data_type(), s.len())),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new_with_length(t.clone(), columns, s.nulls().cloned(), s.len())?)
        }
        (DataType::List(_), DataType::List(t)) => {
            let l = array.as_list::<i32>();
            let values = adapt(l.values(), t.data_type(), options)?;
            Arc::new(ListArray::try_new(t.clone(), l.offsets().clone(), values, l.nulls().cloned())?)
        }
        (DataType::Map(_, _), DataType::Map(t, sorted)) => {
            let m = array.as_map();
            let entries: ArrayRef = Arc::new(m.entries().clone());
            let entries = adapt(&entries, t.data_type(), options)?;
            let entries = entries.as_struct().clone();
            Arc::new(MapArray::try_new(t.clone(), m.offsets().clone(), entries, m.nulls().cloned(), *sorted)?)
        }
        _ => cast_with_options(array, to, options)?,
    })
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;

    use crate::format::decode::tests::{decode, gzip, malformed, opts, rows, write, T0};
    use crate::format::decode::DecodeOptions;
    use crate::format::{BadData, Format};
    use crate::SluiceError;

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

    /// arrow would cut `1.7` to `1` in a BIGINT column and read `3000000000` as nanoseconds in a
    /// TIMESTAMP one: both files are refused, naming the column, instead of changing values.
    #[test]
    fn parquet_columns_that_would_change_value_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let doubles = RecordBatch::try_from_iter(vec![
            ("ts", Arc::new(TimestampNanosecondArray::from(vec![T0])) as ArrayRef),
            ("value", Arc::new(arrow::array::Float64Array::from(vec![1.7])) as ArrayRef),
        ])
        .unwrap();
        let numbers = RecordBatch::try_from_iter(vec![
            ("ts", Arc::new(Int64Array::from(vec![3_000_000_000])) as ArrayRef),
            ("value", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ])
        .unwrap();
        for (name, batch, column) in
            [("a.parquet", doubles, "'value' is Float64"), ("b.parquet", numbers, "'ts' is Int64")]
        {
            let path = write_parquet(&dir, name, batch);
            match decode(&path, Format::Parquet, DecodeOptions::default()).unwrap_err() {
                SluiceError::Source { message, .. } => assert!(message.contains(column), "{message}"),
                other => panic!("expected Source, got {other:?}"),
            }
        }
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
        assert_eq!(rows(&d).len(), 2);
    }
}
