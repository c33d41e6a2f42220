//! State files: Arrow IPC with two binary columns, `key` and `value` (null `value` = deleted),
//! sealed with the checkpoint's framing (a trailer holding a CRC-32 of the IPC bytes, see
//! [`crate::checkpoint::framing`]), so that a torn or bit-flipped file is refused as corrupted
//! before any of its rows reaches an operator (arrow's row format does not validate what it
//! decodes).

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, BinaryBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;

use crate::checkpoint::framing;
use crate::Result;

fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::Binary, false), Field::new("value", DataType::Binary, true)]))
}

/// Encodes `(key, Some(value))` upserts and `(key, None)` deletes as one Arrow IPC file.
///
/// # Errors
/// An arrow error if IPC encoding fails.
pub fn encode<'a>(entries: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>) -> Result<Bytes> {
    let mut keys = BinaryBuilder::new();
    let mut values = BinaryBuilder::new();
    for (k, v) in entries {
        keys.append_value(k);
        values.append_option(v);
    }
    let batch = RecordBatch::try_new(file_schema(), vec![Arc::new(keys.finish()), Arc::new(values.finish())])?;
    let mut writer = FileWriter::try_new(Vec::new(), &file_schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    Ok(framing::seal(writer.into_inner()?))
}

/// The IPC bytes of a state file whose checksum matches.
fn verified(bytes: Bytes) -> Result<Bytes> {
    match framing::open(&bytes) {
        Ok(body) => Ok(bytes.slice(..body.len())),
        Err(damage) => Err(arrow::error::ArrowError::ParseError(damage.to_string()).into()),
    }
}

/// The `(key, value)` columns of each record batch of a file written by [`encode`], in order;
/// the file is checked whole (checksum, schema, every batch) before any column is returned.
///
/// # Errors
/// An arrow error when the bytes are not such a file or its checksum does not match (the caller
/// names the file).
pub(crate) fn decode_columns(bytes: Bytes) -> Result<Vec<(BinaryArray, BinaryArray)>> {
    let reader = FileReader::try_new(std::io::Cursor::new(verified(bytes)?), None)?;
    if reader.schema() != file_schema() {
        return Err(arrow::error::ArrowError::SchemaError(format!(
            "unexpected state file schema {:?}",
            reader.schema()
        ))
        .into());
    }
    reader
        .map(|batch| {
            let batch = batch?;
            Ok((batch.column(0).as_binary().clone(), batch.column(1).as_binary().clone()))
        })
        .collect()
}

/// Decodes a file written by [`encode`], calling `apply(key, value)` per entry in order.
///
/// # Errors
/// As [`decode_columns`]; nothing of a damaged file is applied.
pub fn decode(bytes: Bytes, mut apply: impl FnMut(&[u8], Option<&[u8]>)) -> Result<()> {
    for (keys, values) in decode_columns(bytes)? {
        for i in 0..keys.len() {
            apply(keys.value(i), values.is_valid(i).then(|| values.value(i)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_upserts_and_deletes() {
        let entries: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(b"1")), (b"b", None)];
        let bytes = encode(entries.iter().copied()).unwrap();
        let mut seen = Vec::new();
        decode(bytes, |k, v| seen.push((k.to_vec(), v.map(<[u8]>::to_vec)))).unwrap();
        assert_eq!(seen, vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)]);
    }

    #[test]
    fn garbage_truncation_and_bit_flips_are_errors() {
        assert!(decode(Bytes::from_static(b"not arrow"), |_, _| {}).is_err());
        let entries: Vec<(&[u8], Option<&[u8]>)> = vec![(b"key", Some(b"value")), (b"gone", None)];
        let bytes = encode(entries.iter().copied()).unwrap();
        for cut in [1, 5, 11, bytes.len() / 2] {
            assert!(decode(bytes.slice(..bytes.len() - cut), |_, _| {}).is_err(), "truncated by {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[at] ^= 0x10;
            let mut applied = 0;
            assert!(decode(Bytes::from(flipped), |_, _| applied += 1).is_err(), "bit flip at {at}");
            assert_eq!(applied, 0, "nothing from a damaged file is applied");
        }
    }
}
