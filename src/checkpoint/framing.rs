//! The framing every checkpoint file shares: its contents, then a trailer of six magic bytes
//! (`SLCRC1`, whose last byte is the framing's version) and the CRC-32 of the contents,
//! little-endian. A file is accepted only whole: an empty, torn (cut short) or bit-flipped file
//! fails the check, so a crash or a damaged disk is told apart from a valid file before anything
//! decodes its contents.

use std::fmt;

use bytes::Bytes;

/// Marks the 4-byte little-endian CRC-32 that ends a checkpoint file.
pub const TRAILER_MAGIC: &[u8; 6] = b"SLCRC1";

/// Bytes the trailer adds to a file: the magic and the checksum.
pub const TRAILER_LEN: usize = TRAILER_MAGIC.len() + 4;

/// Why a file fails the framing check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file has no bytes (created, but its data never reached the disk).
    Empty,
    /// The file does not end with the trailer: cut short, or not written with this framing.
    NoTrailer,
    /// The trailer is there but the checksum does not match the contents.
    ChecksumMismatch,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Damage::Empty => "the file is empty",
            Damage::NoTrailer => "the file is truncated or was not written by sluice (no checksum trailer)",
            Damage::ChecksumMismatch => "checksum mismatch: the file was damaged after it was written",
        })
    }
}

/// `contents` followed by the trailer.
pub fn seal(mut contents: Vec<u8>) -> Bytes {
    let checksum = crc32fast::hash(&contents);
    contents.extend_from_slice(TRAILER_MAGIC);
    contents.extend_from_slice(&checksum.to_le_bytes());
    Bytes::from(contents)
}

/// The contents of a file written by [`seal`], if its trailer and checksum are intact.
///
/// # Errors
/// The [`Damage`] found.
pub fn open(bytes: &[u8]) -> Result<&[u8], Damage> {
    if bytes.is_empty() {
        return Err(Damage::Empty);
    }
    let Some(body_len) = bytes.len().checked_sub(TRAILER_LEN) else { return Err(Damage::NoTrailer) };
    let (body, trailer) = bytes.split_at(body_len);
    let (magic, checksum) = trailer.split_at(TRAILER_MAGIC.len());
    if magic != TRAILER_MAGIC {
        return Err(Damage::NoTrailer);
    }
    let stored = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
    if crc32fast::hash(body) != stored {
        return Err(Damage::ChecksumMismatch);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_contents_open_whole_and_nothing_else_does() {
        let sealed = seal(b"some contents".to_vec());
        assert_eq!(open(&sealed), Ok(&b"some contents"[..]));
        assert_eq!(open(&seal(Vec::new())), Ok(&b""[..]), "empty contents are not an empty file");
        assert_eq!(open(b""), Err(Damage::Empty));
        assert_eq!(open(b"{\"plain\": \"json\"}"), Err(Damage::NoTrailer));
        for cut in 1..sealed.len() {
            assert!(open(&sealed[..cut]).is_err(), "cut to {cut} bytes");
        }
        for at in 0..sealed.len() {
            for bit in 0..8 {
                let mut flipped = sealed.to_vec();
                flipped[at] ^= 1 << bit;
                assert!(open(&flipped).is_err(), "bit {bit} of byte {at} flipped");
            }
        }
    }
}
