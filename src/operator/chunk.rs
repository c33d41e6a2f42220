//! A list of byte strings stored as one state-store value, read in place: a stream-stream join
//! stores each batch's rows of a side as such chunks, a top-N each key's ranked rows. A row may be
//! dropped from a chunk (written `None`), keeping the positions of the others.

use crate::Result;

/// Set in a dropped row's end offset in a stored chunk: its bytes are not stored.
const DEAD: u64 = 1 << 63;

/// Encodes rows as a stored chunk: the row count (u32 LE), each row's end offset in the bytes
/// that follow (u64 LE; [`DEAD`] set for a dropped row, `None` here, whose bytes are not stored),
/// then the rows' bytes.
pub(crate) fn encode_chunk(rows: &[Option<&[u8]>]) -> Result<Vec<u8>> {
    let count = u32::try_from(rows.len()).map_err(|_| {
        datafusion::error::DataFusionError::Execution(format!(
            "cannot store more than {} rows in one state value",
            u32::MAX
        ))
    })?;
    let data: usize = rows.iter().flatten().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(4 + 8 * rows.len() + data);
    out.extend_from_slice(&count.to_le_bytes());
    let mut end = 0u64;
    for row in rows {
        match row {
            Some(r) => {
                end += r.len() as u64;
                out.extend_from_slice(&end.to_le_bytes());
            }
            None => out.extend_from_slice(&(end | DEAD).to_le_bytes()),
        }
    }
    for row in rows.iter().flatten() {
        out.extend_from_slice(row);
    }
    Ok(out)
}

/// A stored chunk of rows (see [`encode_chunk`]), read in place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'a> {
    pub(crate) ends: &'a [u8],
    pub(crate) data: &'a [u8],
    pub(crate) len: usize,
}

impl<'a> Chunk<'a> {
    /// `None` when `value` is not a chunk.
    pub(crate) fn parse(value: &'a [u8]) -> Option<Self> {
        let len = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
        let header = len.checked_mul(8)?.checked_add(4)?;
        Some(Self { ends: value.get(4..header)?, data: value.get(header..)?, len })
    }

    pub(crate) fn end(&self, i: usize) -> u64 {
        let bytes: [u8; 8] = self.ends[8 * i..8 * i + 8].try_into().unwrap_or_default();
        u64::from_le_bytes(bytes)
    }

    /// The bytes of row `i`; `None` when it was dropped (or lies outside the chunk).
    pub(crate) fn row(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.len {
            return None;
        }
        let end = self.end(i);
        if end & DEAD != 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1) & !DEAD };
        self.data.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }
}
