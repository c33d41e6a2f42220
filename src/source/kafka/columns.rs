//! The columns of a Kafka table: Spark's Kafka columns (`key`, `topic`, `partition`, `offset`,
//! `timestamp`) when declared, and the others decoded from each message's value.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::compute::{can_cast_types, cast, concat_batches};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};

use super::client::KafkaRecord;
use super::options::ValueFormat;
use crate::format::decode::{decode_records, sql_type_name, DecodeOptions};
use crate::format::{BadData, Format};
use crate::{Result, SluiceError};

/// Where a declared column's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Key,
    Topic,
    Partition,
    Offset,
    Timestamp,
    /// The `i`-th column of the value schema.
    Value(usize),
}

impl Column {
    /// The Kafka column of this name, if it is one, with the type Kafka gives it.
    fn kafka(name: &str) -> Option<(Column, DataType)> {
        match name {
            "key" => Some((Column::Key, DataType::Binary)),
            "topic" => Some((Column::Topic, DataType::Utf8)),
            "partition" => Some((Column::Partition, DataType::Int32)),
            "offset" => Some((Column::Offset, DataType::Int64)),
            "timestamp" => Some((Column::Timestamp, DataType::Timestamp(TimeUnit::Millisecond, None))),
            _ => None,
        }
    }
}

/// How the records of a partition become rows of the table's schema.
#[derive(Debug, Clone)]
pub struct KafkaColumns {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// The declared columns that are not Kafka's, in declaration order: what a value decodes to.
    value_schema: SchemaRef,
    format: ValueFormat,
}

/// The rows of one partition's records, and which records were dropped as malformed.
#[derive(Debug)]
pub struct PartitionRows {
    /// The rows, in offset order; `None` when no record gave a row.
    pub batch: Option<RecordBatch>,
    /// The offsets of the records dropped under [`BadData::Drop`], in offset order.
    pub dropped: Vec<i64>,
}

impl KafkaColumns {
    /// The columns of table `table` of `schema` read with `format`.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the column when a Kafka column is declared with a type its
    /// values do not convert to (`key` must be STRING or BINARY), or with format `raw` when the
    /// columns besides Kafka's are not exactly one `value STRING` or `value BINARY`.
    pub fn new(table: &str, schema: SchemaRef, format: ValueFormat) -> Result<Self> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut value_fields = Vec::new();
        for field in schema.fields() {
            match Column::kafka(field.name()) {
                Some((column, kafka_type)) => {
                    let fits = match column {
                        Column::Key => is_text(field.data_type()) || is_bytes(field.data_type()),
                        _ => can_cast_types(&kafka_type, field.data_type()),
                    };
                    if !fits {
                        return Err(SluiceError::sql(format!(
                            "table '{table}': column '{}' is the Kafka {} column, which cannot be {}; declare it {}",
                            field.name(),
                            field.name(),
                            sql_type_name(field.data_type()),
                            if column == Column::Key { "STRING or BINARY".into() } else { sql_type_name(&kafka_type) }
                        )));
                    }
                    columns.push(column);
                }
                None => {
                    columns.push(Column::Value(value_fields.len()));
                    value_fields.push(field.clone());
                }
            }
        }
        if format == ValueFormat::Raw {
            let one_value = matches!(value_fields.as_slice(), [f] if f.name() == "value"
                && (is_text(f.data_type()) || is_bytes(f.data_type())));
            if !one_value {
                return Err(SluiceError::sql(format!(
                    "table '{table}': with format = 'raw' the message value is one column, value STRING or value BINARY, \
                     beside the Kafka columns key, topic, partition, offset, timestamp"
                )));
            }
        }
        let value_schema = Arc::new(Schema::new(value_fields));
        Ok(Self { schema, columns, value_schema, format })
    }

    /// The rows of `records`, read from `topic` partition `partition`, in offset order.
    ///
    /// # Errors
    /// [`SluiceError::Source`] (of source `source`) naming the topic, partition and offset of
    /// the first malformed record under [`BadData::Fail`]: a value that does not decode into the
    /// declared columns, an empty or missing value (JSON, CSV), a key or raw STRING value that is
    /// not UTF-8. Arrow errors for values that do not convert (not expected: types are checked in
    /// [`Self::new`]).
    pub fn rows(
        &self,
        source: &str,
        topic: &str,
        partition: i32,
        records: &[KafkaRecord],
        decode: &DecodeOptions,
    ) -> Result<PartitionRows> {
        let malformed = |record: &KafkaRecord, message: &str| {
            SluiceError::Source {
            source_name: source.to_string(),
            message: format!(
                "malformed record in topic '{topic}' partition {partition} at offset {}: {message}. Fix the producer, or set \
                 the source option bad_data = 'drop' to skip such records",
                record.offset
            ),
        }
        };
        // Records whose key (or raw value) does not fit are bad before their value is decoded.
        let mut candidates: Vec<&KafkaRecord> = Vec::with_capacity(records.len());
        let mut dropped = Vec::new();
        let utf8_key =
            self.columns.iter().zip(self.schema.fields()).any(|(c, f)| *c == Column::Key && is_text(f.data_type()));
        let raw_utf8 = self.format == ValueFormat::Raw && is_text(self.value_schema.field(0).data_type());
        for record in records {
            let problem = if utf8_key && record.key.as_deref().is_some_and(|k| std::str::from_utf8(k).is_err()) {
                Some("the key is not valid UTF-8 text, but column key is STRING (declare it BINARY)")
            } else if raw_utf8 && record.value.as_deref().is_some_and(|v| std::str::from_utf8(v).is_err()) {
                Some("the value is not valid UTF-8 text, but column value is STRING (declare it BINARY)")
            } else {
                None
            };
            match (problem, decode.bad_data) {
                (None, _) => candidates.push(record),
                (Some(problem), BadData::Fail) => return Err(malformed(record, problem)),
                (Some(_), BadData::Drop) => dropped.push(record.offset),
            }
        }
        let (kept, values): (Vec<&KafkaRecord>, RecordBatch) = match self.format {
            ValueFormat::Raw => {
                let values: Vec<Option<&[u8]>> = candidates.iter().map(|r| r.value.as_deref()).collect();
                let column = bytes_as(Arc::new(BinaryArray::from(values)), self.value_schema.field(0).data_type())?;
                (candidates, RecordBatch::try_new(self.value_schema.clone(), vec![column])?)
            }
            ValueFormat::Json | ValueFormat::Csv => {
                let format = if self.format == ValueFormat::Json { Format::Json } else { Format::Csv };
                let values: Vec<&[u8]> = candidates.iter().map(|r| r.value.as_deref().unwrap_or_default()).collect();
                let origin = Path::new(topic);
                let (decoded, bad) =
                    decode_records(&values, format, &self.value_schema, decode, origin).map_err(|e| match e {
                        SluiceError::MalformedRecord { line, message, .. } => {
                            candidates.get((line as usize).saturating_sub(1)).map_or_else(
                                || SluiceError::Source { source_name: source.to_string(), message: message.clone() },
                                |r| malformed(r, &message),
                            )
                        }
                        other => other,
                    })?;
                dropped.extend(bad.iter().map(|&i| candidates[i].offset));
                dropped.sort_unstable();
                let mut is_bad = vec![false; candidates.len()];
                bad.iter().for_each(|&i| is_bad[i] = true);
                let kept = candidates.into_iter().zip(is_bad).filter(|(_, b)| !b).map(|(r, _)| r).collect();
                (kept, concat_batches(&self.value_schema, &decoded.batches)?)
            }
        };
        if kept.is_empty() {
            return Ok(PartitionRows { batch: None, dropped });
        }
        let columns = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                let array: ArrayRef = match column {
                    Column::Value(i) => return Ok(values.column(*i).clone()),
                    Column::Key => {
                        Arc::new(BinaryArray::from(kept.iter().map(|r| r.key.as_deref()).collect::<Vec<_>>()))
                    }
                    Column::Topic => Arc::new(StringArray::from(vec![topic; kept.len()])),
                    Column::Partition => Arc::new(Int32Array::from(vec![partition; kept.len()])),
                    Column::Offset => Arc::new(Int64Array::from(kept.iter().map(|r| r.offset).collect::<Vec<_>>())),
                    Column::Timestamp => Arc::new(TimestampMillisecondArray::from(
                        kept.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
                    )),
                };
                bytes_as(array, field.data_type())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PartitionRows { batch: Some(RecordBatch::try_new(self.schema.clone(), columns)?), dropped })
    }
}

/// STRING in any of arrow's layouts.
fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// BINARY in any of arrow's layouts.
fn is_bytes(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

/// `array` as `data_type`; bytes become text through `Utf8` (checked UTF-8), which every text
/// layout casts from.
fn bytes_as(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    let array = match (array.data_type(), is_text(data_type)) {
        (DataType::Binary, true) => cast(&array, &DataType::Utf8)?,
        _ => array,
    };
    Ok(cast(&array, data_type)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int64Type};

    use super::*;

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    fn record(offset: i64, key: Option<&[u8]>, value: &[u8]) -> KafkaRecord {
        KafkaRecord {
            offset,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            timestamp_ms: Some(1000 + offset),
        }
    }

    #[test]
    fn kafka_columns_sit_beside_the_decoded_value() {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let s = schema(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("key", DataType::Utf8, true),
            Field::new("partition", DataType::Int32, true),
            Field::new("offset", DataType::Int64, true),
            Field::new("timestamp", ts, true),
            Field::new("topic", DataType::Utf8, true),
        ]);
        let columns = KafkaColumns::new("k", s.clone(), ValueFormat::Json).unwrap();
        let records =
            vec![record(7, Some(b"a"), br#"{"n":1}"#), record(8, None, b"{bad"), record(9, Some(b"c"), br#"{"n":3}"#)];
        let drop = DecodeOptions { bad_data: BadData::Drop, ..DecodeOptions::default() };
        let rows = columns.rows("k", "t", 2, &records, &drop).unwrap();
        assert_eq!(rows.dropped, vec![8]);
        let batch = rows.batch.unwrap();
        assert_eq!(batch.schema(), s);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 3]);
        assert_eq!(batch.column(1).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), Some("c")]);
        assert_eq!(batch.column(3).as_primitive::<Int64Type>().values().to_vec(), vec![7, 9]);
        let err = columns.rows("k", "t", 2, &records, &DecodeOptions::default()).unwrap_err().to_string();
        assert!(err.contains("topic 't' partition 2 at offset 8"), "{err}");
        let bad_key = vec![record(4, Some(b"\xff"), br#"{"n":1}"#)];
        let err = columns.rows("k", "t", 0, &bad_key, &DecodeOptions::default()).unwrap_err().to_string();
        assert!(err.contains("offset 4") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn raw_values_and_declaration_errors() {
        let s = schema(vec![Field::new("value", DataType::Utf8, true), Field::new("offset", DataType::Int64, true)]);
        let columns = KafkaColumns::new("k", s, ValueFormat::Raw).unwrap();
        let rows = columns.rows("k", "t", 0, &[record(0, None, b"hello")], &DecodeOptions::default()).unwrap();
        assert_eq!(rows.batch.unwrap().column(0).as_string::<i32>().value(0), "hello");
        let two = schema(vec![Field::new("value", DataType::Utf8, true), Field::new("x", DataType::Utf8, true)]);
        assert!(KafkaColumns::new("k", two, ValueFormat::Raw).unwrap_err().to_string().contains("format = 'raw'"));
        let bad_key = schema(vec![Field::new("key", DataType::Int64, true)]);
        let err = KafkaColumns::new("k", bad_key, ValueFormat::Json).unwrap_err().to_string();
        assert!(err.contains("column 'key'") && err.contains("STRING or BINARY"), "{err}");
    }
}
