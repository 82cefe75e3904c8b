//! The shard's WAL records: what one logged change says, and its exact bytes.
//!
//! The WAL frames, checksums and numbers records; this module gives the payload meaning. A
//! record carries everything redo needs to repeat the change on the tree and nothing derived:
//! a key's version is not logged, because redo reassigns versions from the same shard-wide
//! counter in the same order, so they come out identical.
//!
//! | type | name | payload (little-endian) |
//! |---|---|---|
//! | 1 | Put | key length u16, expiry ms u64 (0 = none), key, value (the rest) |
//! | 2 | Delete | key length u16, key |
//! | 3 | PutPointer | key length u16, expiry ms u64 (0 = none), pointer (24 bytes), key |
//! | 4 | Move | key length u16, from pointer (24 bytes), to pointer (24 bytes), key |
//!
//! A PutPointer is a put of a value stored in the value log: the record carries the pointer
//! (segment, offset, length, checksum; docs/format.md), not the value, and is written only once
//! the value is durable in the log. A Move is garbage collection relocating a value: redo
//! applies it only if the key still holds exactly the `from` pointer, and keeps the key's
//! version and expiry. Type 0 is reserved by the WAL; types 5 and up are reserved for
//! transactions.

use std::fmt;

/// Record type of a put.
pub const RECORD_PUT: u8 = 1;
/// Record type of a delete.
pub const RECORD_DELETE: u8 = 2;
/// Record type of a put whose value is in the value log.
pub const RECORD_PUT_POINTER: u8 = 3;
/// Record type of a value-log move (garbage collection).
pub const RECORD_MOVE: u8 = 4;

const PUT_HEADER_BYTES: usize = 2 + 8;
const DELETE_HEADER_BYTES: usize = 2;
const POINTER_BYTES: usize = VLOG_POINTER_SIZE;
const PUT_POINTER_HEADER_BYTES: usize = 2 + 8 + POINTER_BYTES;
const MOVE_HEADER_BYTES: usize = 2 + 2 * POINTER_BYTES;

use crate::constants::VLOG_POINTER_SIZE;

/// One logged change, borrowed from the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
        expiry_ms: u64,
    },
    Delete {
        key: &'a [u8],
    },
    PutPointer {
        key: &'a [u8],
        pointer: [u8; VLOG_POINTER_SIZE],
        expiry_ms: u64,
    },
    Move {
        key: &'a [u8],
        from: [u8; VLOG_POINTER_SIZE],
        to: [u8; VLOG_POINTER_SIZE],
    },
}

/// Why a record's payload could not be understood. The WAL's CRC passed, so this is a bug or a
/// record written by a newer version of jube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub record_type: u8,
    pub detail: &'static str,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAL record of type {}: {}",
            self.record_type, self.detail
        )
    }
}

impl Change<'_> {
    /// The record type this change is logged under.
    pub fn record_type(&self) -> u8 {
        match self {
            Change::Put { .. } => RECORD_PUT,
            Change::Delete { .. } => RECORD_DELETE,
            Change::PutPointer { .. } => RECORD_PUT_POINTER,
            Change::Move { .. } => RECORD_MOVE,
        }
    }

    /// Appends the payload to `out` (cleared first). Keys are at most a few hundred bytes, so
    /// the u16 length never truncates; the assertion guards the invariant.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Change::Put {
                key,
                value,
                expiry_ms,
            } => {
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&expiry_ms.to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            Change::Delete { key } => {
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(key);
            }
            Change::PutPointer {
                key,
                pointer,
                expiry_ms,
            } => {
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&expiry_ms.to_le_bytes());
                out.extend_from_slice(pointer);
                out.extend_from_slice(key);
            }
            Change::Move { key, from, to } => {
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(from);
                out.extend_from_slice(to);
                out.extend_from_slice(key);
            }
        }
    }

    /// Decodes the payload of a record of type `record_type`.
    pub fn decode(record_type: u8, payload: &[u8]) -> Result<Change<'_>, RecordError> {
        let err = |detail| RecordError {
            record_type,
            detail,
        };
        let key_len = |payload: &[u8]| -> Result<usize, RecordError> {
            let bytes = payload.get(..2).ok_or(err("shorter than its key length"))?;
            Ok(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
        };
        match record_type {
            RECORD_PUT => {
                let key_len = key_len(payload)?;
                let expiry = payload
                    .get(2..PUT_HEADER_BYTES)
                    .ok_or(err("shorter than its header"))?;
                let expiry_ms = u64::from_le_bytes(expiry.try_into().expect("8 bytes"));
                let rest = &payload[PUT_HEADER_BYTES..];
                if rest.len() < key_len {
                    return Err(err("key runs past the end"));
                }
                let (key, value) = rest.split_at(key_len);
                Ok(Change::Put {
                    key,
                    value,
                    expiry_ms,
                })
            }
            RECORD_DELETE => {
                let key_len = key_len(payload)?;
                let key = &payload[DELETE_HEADER_BYTES..];
                if key.len() != key_len {
                    return Err(err("key length disagrees with the payload"));
                }
                Ok(Change::Delete { key })
            }
            RECORD_PUT_POINTER => {
                let key_len = key_len(payload)?;
                let header = payload
                    .get(..PUT_POINTER_HEADER_BYTES)
                    .ok_or(err("shorter than its header"))?;
                let key = &payload[PUT_POINTER_HEADER_BYTES..];
                if key.len() != key_len {
                    return Err(err("key length disagrees with the payload"));
                }
                Ok(Change::PutPointer {
                    key,
                    expiry_ms: u64::from_le_bytes(header[2..10].try_into().expect("8 bytes")),
                    pointer: header[10..].try_into().expect("pointer bytes"),
                })
            }
            RECORD_MOVE => {
                let key_len = key_len(payload)?;
                let header = payload
                    .get(..MOVE_HEADER_BYTES)
                    .ok_or(err("shorter than its header"))?;
                let key = &payload[MOVE_HEADER_BYTES..];
                if key.len() != key_len {
                    return Err(err("key length disagrees with the payload"));
                }
                Ok(Change::Move {
                    key,
                    from: header[2..2 + POINTER_BYTES]
                        .try_into()
                        .expect("pointer bytes"),
                    to: header[2 + POINTER_BYTES..]
                        .try_into()
                        .expect("pointer bytes"),
                })
            }
            _ => Err(err("unknown record type (written by a newer jube?)")),
        }
    }

    /// Payload bytes of a put of this key and value: lets callers check the WAL's record limit
    /// before changing anything.
    pub fn put_payload_bytes(key_len: usize, value_len: usize) -> usize {
        PUT_HEADER_BYTES + key_len + value_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_round_trip() {
        let mut buf = Vec::new();
        let changes = [
            Change::Put {
                key: b"k",
                value: b"value",
                expiry_ms: 42,
            },
            Change::Put {
                key: b"",
                value: b"",
                expiry_ms: 0,
            },
            Change::Delete { key: b"gone" },
            Change::Delete { key: b"" },
            Change::PutPointer {
                key: b"big",
                pointer: [7; VLOG_POINTER_SIZE],
                expiry_ms: 9,
            },
            Change::Move {
                key: b"moved",
                from: [1; VLOG_POINTER_SIZE],
                to: [2; VLOG_POINTER_SIZE],
            },
        ];
        for change in changes {
            change.encode(&mut buf);
            assert_eq!(Change::decode(change.record_type(), &buf), Ok(change));
        }
        let put = Change::Put {
            key: b"abc",
            value: b"de",
            expiry_ms: 0,
        };
        put.encode(&mut buf);
        assert_eq!(buf.len(), Change::put_payload_bytes(3, 2));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for len in 0..12 {
            let payload = vec![0xffu8; len];
            for record_type in 0..5 {
                let _ = Change::decode(record_type, &payload);
            }
        }
        assert!(Change::decode(RECORD_PUT, &[5, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'a']).is_err());
        assert!(Change::decode(RECORD_DELETE, &[2, 0, b'a']).is_err());
        assert!(Change::decode(9, &[]).is_err());
        for len in 0..80 {
            let payload = vec![3u8; len];
            let _ = Change::decode(RECORD_PUT_POINTER, &payload);
            let _ = Change::decode(RECORD_MOVE, &payload);
        }
    }
}
