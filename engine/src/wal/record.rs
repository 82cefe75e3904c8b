//! Encoding of WAL records and segment headers, and segment file names. Pure functions, no I/O.
//!
//! A record is a 32-byte header and an opaque payload (layout in docs/format.md, "WAL record").
//! Its CRC32C is seeded with the segment's sequence number, so a record left in a recycled file
//! by an earlier life of that file never validates: sequence numbers are never reused.
//!
//! Invariants: a decoded record has a non-zero type, zero reserved bytes, a length within the
//! configured maximum, a CRC over everything after the CRC field, and lies wholly in the buffer.

use super::constants::{
    RECORD_HEADER_BYTES, SEGMENT_HEADER_USED_BYTES, SEGMENT_MAGIC, WAL_FORMAT_VERSION,
};
use super::Lsn;

/// The type byte 0 is reserved: zeroed padding therefore never decodes as a record.
pub const RECORD_TYPE_INVALID: u8 = 0;

/// File name prefix of a live segment; the rest is the sequence number in 16 hex digits.
pub const SEGMENT_PREFIX: &str = "wal-";
/// File name prefix of a released segment kept for reuse.
pub const FREE_PREFIX: &str = "walfree-";

/// A record read from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub lsn: Lsn,
    /// Every LSN up to this one was durable when the record was appended (a hint recovery uses
    /// to tell a torn tail from lost durable records).
    pub synced_lsn: Lsn,
    pub record_type: u8,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Appends one encoded record to `out`.
pub fn encode_record(
    out: &mut Vec<u8>,
    segment_seq: u64,
    lsn: Lsn,
    synced_lsn: Lsn,
    record_type: u8,
    payload: &[u8],
) {
    let start = out.len();
    out.resize(start + RECORD_HEADER_BYTES + payload.len(), 0);
    encode_record_into(
        &mut out[start..],
        segment_crc_seed(segment_seq),
        lsn,
        synced_lsn,
        record_type,
        payload,
    );
}

/// The CRC32C of a segment's sequence number: every record's checksum starts from it, so that a
/// record of an earlier life of a recycled segment file never validates. Computed once per batch.
pub fn segment_crc_seed(segment_seq: u64) -> u32 {
    crc32c::crc32c(&segment_seq.to_le_bytes())
}

/// Encodes one record of the segment whose [`segment_crc_seed`] is `crc_seed` into the front of
/// `out` (which must hold at least `RECORD_HEADER_BYTES + payload.len()` bytes) and returns the
/// bytes it took. The writer builds each flush in place this way, in a reused aligned buffer.
pub fn encode_record_into(
    out: &mut [u8],
    crc_seed: u32,
    lsn: Lsn,
    synced_lsn: Lsn,
    record_type: u8,
    payload: &[u8],
) -> usize {
    assert_ne!(
        record_type, RECORD_TYPE_INVALID,
        "record type 0 is reserved for padding"
    );
    assert!(
        synced_lsn < lsn,
        "synced hint {synced_lsn} must be below the record's LSN {lsn}"
    );
    let len = u32::try_from(payload.len()).expect("payload length is bounded by the config");
    let size = RECORD_HEADER_BYTES + payload.len();
    let record = &mut out[..size];
    let (header, body) = record.split_at_mut(RECORD_HEADER_BYTES);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16..24].copy_from_slice(&synced_lsn.to_le_bytes());
    header[24] = record_type;
    header[25..32].fill(0);
    body.copy_from_slice(payload);
    let crc = crc32c::crc32c_append(crc_seed, &record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    size
}

fn record_crc(segment_seq: u64, after_crc: &[u8]) -> u32 {
    crc32c::crc32c_append(segment_crc_seed(segment_seq), after_crc)
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes the record starting at `offset` of `data`, or `None` if there is no valid record
/// there (zeroes, a torn or garbled record, a record of another segment life, or one that runs
/// past the end of `data`).
pub fn decode_record(
    data: &[u8],
    offset: usize,
    segment_seq: u64,
    payload_max: usize,
) -> Option<RecordRef<'_>> {
    let header = data.get(offset..offset.checked_add(RECORD_HEADER_BYTES)?)?;
    let len = usize::try_from(u32_at(header, 4)?).ok()?;
    let record_type = *header.get(24)?;
    if record_type == RECORD_TYPE_INVALID || len > payload_max {
        return None;
    }
    if header.get(25..32)?.iter().any(|&b| b != 0) {
        return None;
    }
    let lsn = u64_at(header, 8)?;
    let synced_lsn = u64_at(header, 16)?;
    if lsn == 0 || synced_lsn >= lsn {
        return None;
    }
    let end = offset + RECORD_HEADER_BYTES + len;
    let whole = data.get(offset..end)?;
    let stored = u32_at(header, 0)?;
    if record_crc(segment_seq, whole.get(4..)?) != stored {
        return None;
    }
    let payload = whole.get(RECORD_HEADER_BYTES..)?;
    Some(RecordRef {
        lsn,
        synced_lsn,
        record_type,
        payload,
    })
}

/// The header block at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard_id: u32,
    pub seq: u64,
    /// LSN of the first record in the segment.
    pub first_lsn: Lsn,
    /// Size of the segment file when it was started.
    pub segment_size_bytes: u64,
}

impl SegmentHeader {
    /// Writes the header into the start of `block` (which the caller zeroed).
    pub fn encode_into(&self, block: &mut [u8]) {
        assert!(
            block.len() >= SEGMENT_HEADER_USED_BYTES,
            "segment header block too small"
        );
        block[0..8].copy_from_slice(&SEGMENT_MAGIC);
        block[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
        block[12..16].copy_from_slice(&self.shard_id.to_le_bytes());
        block[16..24].copy_from_slice(&self.seq.to_le_bytes());
        block[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        block[32..40].copy_from_slice(&self.segment_size_bytes.to_le_bytes());
        block[40..44].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&block[0..44]);
        block[44..48].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a header block; `Err` says why it is not a valid header.
    pub fn decode(block: &[u8]) -> Result<SegmentHeader, &'static str> {
        let used = block
            .get(..SEGMENT_HEADER_USED_BYTES)
            .ok_or("header block truncated")?;
        if used[0..8] != SEGMENT_MAGIC {
            return Err("bad magic");
        }
        let stored = u32_at(used, 44).ok_or("header block truncated")?;
        if crc32c::crc32c(&used[0..44]) != stored {
            return Err("header CRC mismatch");
        }
        if u32_at(used, 8) != Some(WAL_FORMAT_VERSION) {
            return Err("unsupported WAL format version");
        }
        let header = SegmentHeader {
            shard_id: u32_at(used, 12).ok_or("header block truncated")?,
            seq: u64_at(used, 16).ok_or("header block truncated")?,
            first_lsn: u64_at(used, 24).ok_or("header block truncated")?,
            segment_size_bytes: u64_at(used, 32).ok_or("header block truncated")?,
        };
        if header.first_lsn == 0 {
            return Err("first LSN is zero");
        }
        Ok(header)
    }
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:016x}")
}

/// The file name of a free (released, reusable) segment that was segment `seq`.
pub fn free_name(seq: u64) -> String {
    format!("{FREE_PREFIX}{seq:016x}")
}

/// What a file name in a WAL directory denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment(u64),
    Free(u64),
}

/// Parses a WAL file name; other names (the directory may hold other files) give `None`.
pub fn parse_name(name: &str) -> Option<FileKind> {
    let parse = |hex: &str| {
        if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            u64::from_str_radix(hex, 16).ok()
        } else {
            None
        }
    };
    // FREE_PREFIX also starts with "wal", so test it first.
    if let Some(hex) = name.strip_prefix(FREE_PREFIX) {
        return parse(hex).map(FileKind::Free);
    }
    name.strip_prefix(SEGMENT_PREFIX)
        .and_then(parse)
        .map(FileKind::Segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::IO_ALIGN;

    const MAX: usize = 1 << 20;

    #[test]
    fn record_round_trips() {
        let mut out = vec![0xAA; 3];
        encode_record(&mut out, 7, 42, 40, 3, b"payload");
        encode_record(&mut out, 7, 43, 40, 9, b"");
        let first = decode_record(&out, 3, 7, MAX).expect("first record decodes");
        assert_eq!(
            (first.lsn, first.synced_lsn, first.record_type),
            (42, 40, 3)
        );
        assert_eq!(first.payload, b"payload");
        let second = decode_record(&out, 3 + first.encoded_len(), 7, MAX).expect("second");
        assert_eq!(
            (second.lsn, second.record_type, second.payload.len()),
            (43, 9, 0)
        );
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut out = Vec::new();
        encode_record(&mut out, 11, 5, 4, 2, b"hello, write-ahead log");
        for index in 0..out.len() {
            for bit in 0..8 {
                let mut copy = out.clone();
                copy[index] ^= 1 << bit;
                assert!(
                    decode_record(&copy, 0, 11, MAX).is_none(),
                    "flipping bit {bit} of byte {index} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn records_of_another_segment_life_do_not_validate() {
        let mut out = Vec::new();
        encode_record(&mut out, 11, 5, 0, 2, b"stale");
        assert!(decode_record(&out, 0, 11, MAX).is_some());
        assert!(decode_record(&out, 0, 12, MAX).is_none());
    }

    #[test]
    fn zeroes_and_truncations_do_not_decode() {
        assert!(decode_record(&[0u8; 64], 0, 0, MAX).is_none());
        let mut out = Vec::new();
        encode_record(&mut out, 1, 1, 0, 1, &[7u8; 100]);
        for cut in 0..out.len() {
            assert!(
                decode_record(&out[..cut], 0, 1, MAX).is_none(),
                "cut at {cut}"
            );
        }
        assert!(
            decode_record(&out, 0, 1, 99).is_none(),
            "over-long payload accepted"
        );
    }

    #[test]
    fn segment_header_round_trips_and_detects_flips() {
        let header = SegmentHeader {
            shard_id: 3,
            seq: 9,
            first_lsn: 100,
            segment_size_bytes: 1 << 16,
        };
        let mut block = vec![0u8; IO_ALIGN];
        header.encode_into(&mut block);
        assert_eq!(SegmentHeader::decode(&block), Ok(header));
        for index in 0..SEGMENT_HEADER_USED_BYTES {
            let mut copy = block.clone();
            copy[index] ^= 0x10;
            assert!(
                SegmentHeader::decode(&copy).is_err(),
                "flip at {index} went unnoticed"
            );
        }
        assert!(SegmentHeader::decode(&vec![0u8; IO_ALIGN]).is_err());
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_name(&segment_name(0x1f)),
            Some(FileKind::Segment(0x1f))
        );
        assert_eq!(parse_name(&free_name(7)), Some(FileKind::Free(7)));
        assert_eq!(parse_name("wal-xyz"), None);
        assert_eq!(parse_name("MANIFEST"), None);
    }
}
