//! The value log's bytes: segment headers, records and the pointer a leaf keeps
//! (docs/format.md, "Value-log segment").
//!
//! Invariants: a record's CRC32C is seeded with the CRC32C of its segment id, so a record can
//! only validate in the segment it was written to; it covers the record header after the CRC,
//! the key and the value, and the leaf's pointer repeats it, so a read checks that the bytes at
//! the pointer are the very record the pointer was made for. A value in the log is never empty
//! (empty values are always inline), so an all-zero record header is padding, never a record.

use crate::constants::{
    KEY_SIZE_MAX, VALUE_SIZE_MAX, VLOG_POINTER_SIZE, VLOG_RECORD_HEADER_SIZE,
    VLOG_SEGMENT_HEADER_SIZE,
};

/// Opens every value-log segment file ("JUBEVLOG").
pub const SEGMENT_MAGIC: [u8; 8] = *b"JUBEVLOG";

/// Format version of value-log segments and records.
pub const VLOG_FORMAT_VERSION: u32 = 1;

/// Bytes of the segment header that carry fields (the rest of the block is zero).
pub const SEGMENT_HEADER_USED_BYTES: usize = 32;

/// Segment header field offsets (docs/format.md; the format-table test compares).
pub const SEGMENT_HEADER_FIELDS: [(&str, usize); 6] = [
    ("magic", 0),
    ("format_version", 8),
    ("shard_id", 12),
    ("segment_id", 16),
    ("reserved", 24),
    ("crc32c", 28),
];

/// Record header field offsets (docs/format.md; the format-table test compares).
pub const RECORD_HEADER_FIELDS: [(&str, usize); 4] = [
    ("crc32c", 0),
    ("value_size", 4),
    ("key_size", 8),
    ("reserved", 10),
];

/// Pointer field offsets (docs/format.md; the format-table test compares).
pub const POINTER_FIELDS: [(&str, usize); 4] = [
    ("segment_id", 0),
    ("offset", 8),
    ("value_size", 16),
    ("checksum", 20),
];

const _: () = assert!(SEGMENT_HEADER_USED_BYTES <= VLOG_SEGMENT_HEADER_SIZE);

/// The name of segment `id`: `vlog-` and 16 lowercase hex digits.
pub fn segment_name(id: u64) -> String {
    format!("vlog-{id:016x}")
}

/// The id in a segment file's name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("vlog-")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Where a value lives in the value log: what a leaf stores instead of a large value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pointer {
    pub segment: u64,
    /// Byte offset of the record (its header) in the segment file.
    pub offset: u64,
    /// Bytes of the value.
    pub value_size: u32,
    /// The record's CRC32C.
    pub checksum: u32,
}

impl Pointer {
    pub fn encode(&self) -> [u8; VLOG_POINTER_SIZE] {
        let mut out = [0u8; VLOG_POINTER_SIZE];
        out[0..8].copy_from_slice(&self.segment.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.value_size.to_le_bytes());
        out[20..24].copy_from_slice(&self.checksum.to_le_bytes());
        out
    }

    /// Decodes a pointer; None if `bytes` is not one (the page validator checks the size, so
    /// this is a bug or damage the page CRC missed).
    pub fn decode(bytes: &[u8]) -> Option<Pointer> {
        if bytes.len() != VLOG_POINTER_SIZE {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        Some(Pointer {
            segment: u64_at(0),
            offset: u64_at(8),
            value_size: u32_at(16),
            checksum: u32_at(20),
        })
    }

    /// Bytes of the record this pointer names, for a key of `key_len` bytes.
    pub fn record_size(&self, key_len: usize) -> u64 {
        record_size(key_len, self.value_size as usize) as u64
    }
}

/// Bytes of a record holding a key of `key_len` and a value of `value_len` bytes.
pub fn record_size(key_len: usize, value_len: usize) -> usize {
    VLOG_RECORD_HEADER_SIZE + key_len + value_len
}

fn seed(segment: u64) -> u32 {
    crc32c::crc32c(&segment.to_le_bytes())
}

/// Appends a record of `key` and `value` for segment `segment` to `out`; returns its CRC.
pub fn encode_record(out: &mut Vec<u8>, segment: u64, key: &[u8], value: &[u8]) -> u32 {
    assert!(key.len() <= KEY_SIZE_MAX && !value.is_empty() && value.len() <= VALUE_SIZE_MAX);
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(
        &u32::try_from(value.len())
            .expect("value fits u32")
            .to_le_bytes(),
    );
    out.extend_from_slice(
        &u16::try_from(key.len())
            .expect("key fits u16")
            .to_le_bytes(),
    );
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c_append(seed(segment), &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// A record decoded from a segment, borrowed from the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub checksum: u32,
}

/// What is at a position of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record of this many bytes.
    Record(RecordRef<'a>, usize),
    /// Zero bytes: the padding after a flush, up to the next block.
    Padding,
    /// A header saying the record needs this many bytes, more than `bytes` holds.
    Truncated(usize),
    /// Not a record (damage, or the torn tail of the last flush before a crash).
    Invalid(&'static str),
}

/// Decodes the record at the start of `bytes`, which were read from segment `segment`.
pub fn decode_record(bytes: &[u8], segment: u64) -> Decoded<'_> {
    let Some(header) = bytes.get(..VLOG_RECORD_HEADER_SIZE) else {
        return if bytes.iter().all(|&b| b == 0) {
            Decoded::Padding
        } else {
            Decoded::Truncated(VLOG_RECORD_HEADER_SIZE)
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Decoded::Padding;
    }
    let stored = u32::from_le_bytes(header[0..4].try_into().expect("4"));
    let value_size = u32::from_le_bytes(header[4..8].try_into().expect("4")) as usize;
    let key_size = usize::from(u16::from_le_bytes([header[8], header[9]]));
    if header[10..16].iter().any(|&b| b != 0) {
        return Decoded::Invalid("reserved bytes are not zero");
    }
    if key_size > KEY_SIZE_MAX || value_size == 0 || value_size > VALUE_SIZE_MAX {
        return Decoded::Invalid("key or value size out of range");
    }
    let size = record_size(key_size, value_size);
    let Some(record) = bytes.get(..size) else {
        return Decoded::Truncated(size);
    };
    let computed = crc32c::crc32c_append(seed(segment), &record[4..]);
    if computed != stored {
        return Decoded::Invalid("checksum mismatch");
    }
    let key_end = VLOG_RECORD_HEADER_SIZE + key_size;
    Decoded::Record(
        RecordRef {
            key: &record[VLOG_RECORD_HEADER_SIZE..key_end],
            value: &record[key_end..],
            checksum: stored,
        },
        size,
    )
}

/// The header block of segment `segment` of shard `shard_id`.
pub fn encode_segment_header(out: &mut [u8], shard_id: u32, segment: u64) {
    assert!(out.len() >= SEGMENT_HEADER_USED_BYTES);
    let used = VLOG_SEGMENT_HEADER_SIZE.min(out.len());
    out[..used].fill(0);
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&VLOG_FORMAT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&shard_id.to_le_bytes());
    out[16..24].copy_from_slice(&segment.to_le_bytes());
    let crc = crc32c::crc32c(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a segment's header block; the error says what is wrong.
pub fn check_segment_header(block: &[u8], shard_id: u32, segment: u64) -> Result<(), String> {
    if block.len() < VLOG_SEGMENT_HEADER_SIZE {
        return Err("shorter than its header block".to_string());
    }
    if block[0..8] != SEGMENT_MAGIC {
        return Err("bad magic (never written, or not a value-log segment)".to_string());
    }
    let u32_at = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().expect("4"));
    let (stored, computed) = (u32_at(28), crc32c::crc32c(&block[..28]));
    if stored != computed {
        return Err(format!(
            "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let version = u32_at(8);
    if version != VLOG_FORMAT_VERSION {
        return Err(format!(
            "value-log format version {version}; this build reads {VLOG_FORMAT_VERSION}"
        ));
    }
    let id = u64::from_le_bytes(block[16..24].try_into().expect("8"));
    if u32_at(12) != shard_id || id != segment {
        return Err(format!(
            "header names shard {} segment {id}, expected shard {shard_id} segment {segment}",
            u32_at(12)
        ));
    }
    if u32_at(24) != 0
        || block[SEGMENT_HEADER_USED_BYTES..VLOG_SEGMENT_HEADER_SIZE]
            .iter()
            .any(|&b| b != 0)
    {
        return Err("reserved header bytes are not zero".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_only_in_their_segment() {
        let mut bytes = Vec::new();
        let crc = encode_record(&mut bytes, 7, b"key", b"a large value");
        let Decoded::Record(record, size) = decode_record(&bytes, 7) else {
            panic!("the record decodes");
        };
        assert_eq!(size, bytes.len());
        assert_eq!(
            (record.key, record.value, record.checksum),
            (&b"key"[..], &b"a large value"[..], crc)
        );
        assert!(matches!(decode_record(&bytes, 8), Decoded::Invalid(_)));
        assert!(matches!(
            decode_record(&bytes[..bytes.len() - 1], 7),
            Decoded::Truncated(n) if n == bytes.len()
        ));
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            assert!(
                !matches!(decode_record(&damaged, 7), Decoded::Record(..)),
                "flip at {at} went unnoticed"
            );
        }
        assert_eq!(decode_record(&[0u8; 40], 7), Decoded::Padding);
    }

    #[test]
    fn pointers_and_headers_round_trip() {
        let pointer = Pointer {
            segment: 3,
            offset: 4096 + 17,
            value_size: 70_000,
            checksum: 0xdead_beef,
        };
        assert_eq!(Pointer::decode(&pointer.encode()), Some(pointer));
        let mut block = vec![0u8; VLOG_SEGMENT_HEADER_SIZE];
        encode_segment_header(&mut block, 2, 9);
        assert_eq!(check_segment_header(&block, 2, 9), Ok(()));
        assert!(check_segment_header(&block, 2, 10).is_err());
        block[40] = 1;
        assert!(check_segment_header(&block, 2, 9).is_err());
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        assert_eq!(parse_segment_name("vlog-12"), None);
    }
}
