//! CSV as Spark's CSV writer prints it: a header line, RFC 4180 quoting, nulls as empty fields,
//! doubles, floats and timestamps as Spark's text (see [`super::spark_text`]).

use arrow::array::timezone::Tz;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::spark_text::as_spark_text;
use super::{map_columns, DATE_FORMAT};
use crate::{Result, SluiceError};

/// The header and rows of `batches`; see [`super::encode`].
pub(super) fn encode_csv(schema: &SchemaRef, batches: &[RecordBatch], time_zone: &Tz) -> Result<Vec<u8>> {
    if let Some(field) = schema.fields().iter().find(|f| f.data_type().is_nested()) {
        return Err(SluiceError::Sink {
            sink: "csv".to_string(),
            message: format!(
                "column '{}' has the nested type {}, which CSV cannot hold; select its fields \
                 as separate columns (e.g. {}.start) or use the json or parquet format",
                field.name(),
                field.data_type(),
                field.name()
            ),
        });
    }
    let mut writer =
        arrow::csv::WriterBuilder::new().with_header(true).with_date_format(DATE_FORMAT.to_string()).build(Vec::new());
    if batches.is_empty() {
        writer.write(&as_text(&RecordBatch::new_empty(schema.clone()), time_zone)?)?;
    }
    for batch in batches {
        writer.write(&as_text(batch, time_zone)?)?;
    }
    Ok(writer.into_inner())
}

/// `batch` with its float and timestamp columns as strings of Spark's text; the header keeps the
/// column names.
fn as_text(batch: &RecordBatch, time_zone: &Tz) -> Result<RecordBatch> {
    map_columns(batch, |c| Ok(as_spark_text(c, time_zone)?))
}
