//! JSON lines as Spark's JSON writer prints them (Jackson under Spark's `JacksonGenerator`).

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray, PrimitiveArray};
use arrow::buffer::ScalarBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, FieldRef, Float32Type, Float64Type, Int64Type, TimeUnit,
};
use arrow::error::ArrowError;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::spark_text::{out_of_range, write_double, write_float, write_timestamp};
use super::DATE_FORMAT;
use crate::Result;

/// One JSON object per line; see [`super::encode`].
pub(super) fn encode_json(batches: &[RecordBatch], time_zone: &Tz) -> Result<Vec<u8>> {
    let mut writer = arrow::json::WriterBuilder::new()
        // Spark's JSON writer omits null fields (`ignoreNullFields` defaults to true).
        .with_explicit_nulls(false)
        .with_date_format(DATE_FORMAT.to_string())
        .with_encoder_factory(Arc::new(SparkEncoders { time_zone: *time_zone }))
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner())
}

/// arrow_json encoders for the values arrow_json prints differently from Spark: doubles and
/// floats (arrow_json writes `1e10` and NaN as `null`) and timestamps (in the session time zone),
/// at any depth of structs, lists and maps.
#[derive(Debug)]
struct SparkEncoders {
    time_zone: Tz,
}

impl EncoderFactory for SparkEncoders {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, ArrowError> {
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            DataType::Float64 => {
                Box::new(FloatEncoder { array: array.as_primitive::<Float64Type>(), text: String::new() })
            }
            DataType::Float32 => {
                Box::new(FloatEncoder { array: array.as_primitive::<Float32Type>(), text: String::new() })
            }
            DataType::Timestamp(unit, _) => {
                let values = cast(array, &DataType::Int64)?.as_primitive::<Int64Type>().values().clone();
                // Encoders cannot fail: refuse a value chrono cannot represent here.
                let mut text = String::new();
                for (i, value) in values.iter().enumerate() {
                    if array.is_valid(i) && write_timestamp(&mut text, *unit, *value, &self.time_zone).is_none() {
                        return Err(out_of_range(*value, *unit));
                    }
                    text.clear();
                }
                Box::new(TimestampEncoder { values, unit: *unit, time_zone: self.time_zone, text })
            }
            // arrow_json would print a date chrono cannot represent as the text of its error:
            // refuse it, as the CSV writer does, then let arrow_json write the dates.
            DataType::Date32 => return printable_dates(array.as_primitive::<Date32Type>()).map(|()| None),
            DataType::Date64 => return printable_dates(array.as_primitive::<Date64Type>()).map(|()| None),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, array.nulls().cloned())))
    }
}

/// An error unless every date of `dates` can be printed. Only the earliest and the latest are
/// printed to find out (the dates that cannot are those beyond chrono's range, at either end), so
/// the check costs a min and a max, not a formatting of every row.
fn printable_dates<T: ArrowPrimitiveType>(dates: &PrimitiveArray<T>) -> std::result::Result<(), ArrowError> {
    let (Some(earliest), Some(latest)) = (arrow::compute::min(dates), arrow::compute::max(dates)) else {
        return Ok(());
    };
    let extremes = PrimitiveArray::<T>::from_iter_values([earliest, latest]);
    let formatter = ArrayFormatter::try_new(&extremes, &FormatOptions::default().with_display_error(false))?;
    for i in 0..extremes.len() {
        formatter.value(i).try_to_string()?;
    }
    Ok(())
}

/// A double or float column as Java's `toString`; NaN and the infinities as JSON strings
/// (Jackson's `WRITE_NAN_AS_STRINGS`).
struct FloatEncoder<'a, T: arrow::datatypes::ArrowPrimitiveType> {
    array: &'a PrimitiveArray<T>,
    text: String,
}

impl Encoder for FloatEncoder<'_, Float64Type> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.array.value(idx);
        self.text.clear();
        write_double(&mut self.text, v);
        push(out, &self.text, !v.is_finite());
    }
}

impl Encoder for FloatEncoder<'_, Float32Type> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v = self.array.value(idx);
        self.text.clear();
        write_float(&mut self.text, v);
        push(out, &self.text, !v.is_finite());
    }
}

/// A timestamp column as a JSON string in Spark's default `timestampFormat`.
struct TimestampEncoder {
    values: ScalarBuffer<i64>,
    unit: TimeUnit,
    time_zone: Tz,
    text: String,
}

impl Encoder for TimestampEncoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        self.text.clear();
        // Checked in `make_default_encoder`.
        let _ = write_timestamp(&mut self.text, self.unit, self.values[idx], &self.time_zone);
        push(out, &self.text, true);
    }
}

/// Appends `text` to `out`, as a JSON string when `quoted` (the texts here need no escaping).
fn push(out: &mut Vec<u8>, text: &str, quoted: bool) {
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(text.as_bytes());
    if quoted {
        out.push(b'"');
    }
}
