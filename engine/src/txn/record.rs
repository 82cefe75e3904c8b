//! The WAL records of transactions and their exact bytes.
//!
//! The shard's record module ([`crate::shard::record`]) owns types 1 to 4; transactions use
//! types 16 to 20 (5 to 15 stay free for other record kinds). All integers little-endian.
//!
//! | type | name | payload |
//! |---|---|---|
//! | 16 | TxnApply | writes (below): a single-shard txn's resolved writes |
//! | 17 | Prepare | coordinator u32, number u64, writes: a participant's resolved writes |
//! | 18 | Decision | coordinator u32, number u64, participant count u16, participant shard ids u32 each |
//! | 19 | Commit | coordinator u32, number u64 |
//! | 20 | Abort | coordinator u32, number u64 |
//!
//! `writes` is a count u32 followed by that many entries, ascending by key with no key twice:
//!
//! | field | bytes | meaning |
//! |---|---|---|
//! | kind | 1 | 1 = put, 2 = delete, 3 = put pointer |
//! | key length | 2 | |
//! | expiry ms | 8 | put and put pointer only: absolute wall-clock ms, 0 = none |
//! | value length | 4 | put and put pointer only (a put pointer: always 24) |
//! | key | key length | |
//! | value | value length | put: the value; put pointer: the value-log pointer |
//!
//! Kind 3 (put pointer) is a put whose value the shard wrote to its value log before logging the
//! record (values above the inline threshold): the entry carries the 24-byte pointer
//! (docs/format.md, "Value-log pointer") as its value, and the WAL holds the record back until
//! the value is durable. Records written before kind 3 existed hold kinds 1 and 2 only and decode
//! unchanged; a build that does not know kind 3 refuses the record by name.
//!
//! A Prepare's (coordinator, number) is its TxnId; at the coordinator, number is the Prepare
//! record's own LSN. Writes are *resolved*: an Add is logged as the Put of its result, so redo
//! repeats exactly what happened, and key versions come out identical (they are reassigned
//! from the shard-wide counter in the same order, as for plain puts).

use super::{ResolvedWrite, TxnId};
use crate::constants::VLOG_POINTER_SIZE;
use crate::shard::record::RecordError;
use crate::shard::Pointer;

/// A single-shard transaction's writes, applied atomically.
pub const RECORD_TXN_APPLY: u8 = 16;
/// A participant's prepared part of a cross-shard transaction (locks its keys).
pub const RECORD_TXN_PREPARE: u8 = 17;
/// The coordinator's commit decision (the commit point); also applies the coordinator's part.
pub const RECORD_TXN_DECISION: u8 = 18;
/// A participant applies its prepared part.
pub const RECORD_TXN_COMMIT: u8 = 19;
/// A participant discards its prepared part.
pub const RECORD_TXN_ABORT: u8 = 20;

/// Bytes of a TxnId in a payload: coordinator u32, number u64.
pub const TXN_ID_BYTES: usize = 4 + 8;
/// Bytes of the count that opens a writes list.
pub const WRITES_COUNT_BYTES: usize = 4;
/// Fixed bytes of a put entry: kind, key length, expiry, value length.
pub const WRITE_PUT_HEADER_BYTES: usize = 1 + 2 + 8 + 4;
/// Fixed bytes of a delete entry: kind, key length.
pub const WRITE_DELETE_HEADER_BYTES: usize = 1 + 2;

const WRITE_KIND_PUT: u8 = 1;
const WRITE_KIND_DELETE: u8 = 2;
const WRITE_KIND_PUT_POINTER: u8 = 3;

/// Whether `record_type` is a transaction record (decoded by [`TxnRecord::decode`]).
pub fn is_txn_record(record_type: u8) -> bool {
    (RECORD_TXN_APPLY..=RECORD_TXN_ABORT).contains(&record_type)
}

/// One decoded transaction record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRecord {
    Apply {
        writes: Vec<ResolvedWrite>,
    },
    Prepare {
        id: TxnId,
        writes: Vec<ResolvedWrite>,
    },
    Decision {
        id: TxnId,
        participants: Vec<u32>,
    },
    Commit {
        id: TxnId,
    },
    Abort {
        id: TxnId,
    },
}

/// Payload bytes of a writes list.
pub fn writes_bytes(writes: &[ResolvedWrite]) -> usize {
    WRITES_COUNT_BYTES
        + writes
            .iter()
            .map(|write| match write {
                ResolvedWrite::Put { key, value, .. } => {
                    WRITE_PUT_HEADER_BYTES + key.len() + value.len()
                }
                ResolvedWrite::Delete { key } => WRITE_DELETE_HEADER_BYTES + key.len(),
                ResolvedWrite::PutPointer { key, .. } => {
                    WRITE_PUT_HEADER_BYTES + key.len() + VLOG_POINTER_SIZE
                }
            })
            .sum::<usize>()
}

impl TxnRecord {
    pub fn record_type(&self) -> u8 {
        match self {
            TxnRecord::Apply { .. } => RECORD_TXN_APPLY,
            TxnRecord::Prepare { .. } => RECORD_TXN_PREPARE,
            TxnRecord::Decision { .. } => RECORD_TXN_DECISION,
            TxnRecord::Commit { .. } => RECORD_TXN_COMMIT,
            TxnRecord::Abort { .. } => RECORD_TXN_ABORT,
        }
    }

    /// Whether the record carries value-log pointers (put pointer writes).
    pub fn has_pointers(&self) -> bool {
        match self {
            TxnRecord::Apply { writes } | TxnRecord::Prepare { writes, .. } => {
                writes.iter().any(|write| write.pointer().is_some())
            }
            _ => false,
        }
    }

    /// Payload bytes of this record, without encoding it.
    pub fn payload_bytes(&self) -> usize {
        match self {
            TxnRecord::Apply { writes } => writes_bytes(writes),
            TxnRecord::Prepare { writes, .. } => TXN_ID_BYTES + writes_bytes(writes),
            TxnRecord::Decision { participants, .. } => TXN_ID_BYTES + 2 + 4 * participants.len(),
            TxnRecord::Commit { .. } | TxnRecord::Abort { .. } => TXN_ID_BYTES,
        }
    }

    /// Writes the payload into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            TxnRecord::Apply { writes } => encode_writes(writes, out),
            TxnRecord::Prepare { id, writes } => {
                encode_id(*id, out);
                encode_writes(writes, out);
            }
            TxnRecord::Decision { id, participants } => {
                encode_id(*id, out);
                let count = u16::try_from(participants.len()).expect("participants fit u16");
                out.extend_from_slice(&count.to_le_bytes());
                for shard in participants {
                    out.extend_from_slice(&shard.to_le_bytes());
                }
            }
            TxnRecord::Commit { id } | TxnRecord::Abort { id } => encode_id(*id, out),
        }
        debug_assert_eq!(out.len(), self.payload_bytes());
    }

    /// Decodes the payload of a record of type `record_type` (one of 16..=20).
    pub fn decode(record_type: u8, payload: &[u8]) -> Result<TxnRecord, RecordError> {
        let err = |detail| RecordError {
            record_type,
            detail,
        };
        let mut reader = Reader {
            bytes: payload,
            record_type,
        };
        let record = match record_type {
            RECORD_TXN_APPLY => TxnRecord::Apply {
                writes: reader.writes()?,
            },
            RECORD_TXN_PREPARE => TxnRecord::Prepare {
                id: reader.id()?,
                writes: reader.writes()?,
            },
            RECORD_TXN_DECISION => {
                let id = reader.id()?;
                let count = usize::from(u16::from_le_bytes(reader.array()?));
                let mut participants = Vec::with_capacity(count.min(payload.len() / 4));
                for _ in 0..count {
                    participants.push(u32::from_le_bytes(reader.array()?));
                }
                TxnRecord::Decision { id, participants }
            }
            RECORD_TXN_COMMIT => TxnRecord::Commit { id: reader.id()? },
            RECORD_TXN_ABORT => TxnRecord::Abort { id: reader.id()? },
            _ => return Err(err("not a transaction record type")),
        };
        if !reader.bytes.is_empty() {
            return Err(err("bytes left over after the payload"));
        }
        Ok(record)
    }
}

fn encode_id(id: TxnId, out: &mut Vec<u8>) {
    out.extend_from_slice(&id.coordinator.to_le_bytes());
    out.extend_from_slice(&id.number.to_le_bytes());
}

fn encode_writes(writes: &[ResolvedWrite], out: &mut Vec<u8>) {
    let count = u32::try_from(writes.len()).expect("writes fit u32");
    out.extend_from_slice(&count.to_le_bytes());
    for write in writes {
        match write {
            ResolvedWrite::Put {
                key,
                value,
                expiry_ms,
            } => {
                out.push(WRITE_KIND_PUT);
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&expiry_ms.to_le_bytes());
                let value_len = u32::try_from(value.len()).expect("value length fits u32");
                out.extend_from_slice(&value_len.to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            ResolvedWrite::Delete { key } => {
                out.push(WRITE_KIND_DELETE);
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(key);
            }
            ResolvedWrite::PutPointer {
                key,
                pointer,
                expiry_ms,
            } => {
                out.push(WRITE_KIND_PUT_POINTER);
                let key_len = u16::try_from(key.len()).expect("key length fits u16");
                out.extend_from_slice(&key_len.to_le_bytes());
                out.extend_from_slice(&expiry_ms.to_le_bytes());
                let value_len = VLOG_POINTER_SIZE as u32;
                out.extend_from_slice(&value_len.to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&pointer.encode());
            }
        }
    }
}

/// A cursor over a payload that fails instead of panicking on short input.
struct Reader<'a> {
    bytes: &'a [u8],
    record_type: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < count {
            return Err(RecordError {
                record_type: self.record_type,
                detail: "payload ends early",
            });
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn id(&mut self) -> Result<TxnId, RecordError> {
        Ok(TxnId {
            coordinator: u32::from_le_bytes(self.array()?),
            number: u64::from_le_bytes(self.array()?),
        })
    }

    fn writes(&mut self) -> Result<Vec<ResolvedWrite>, RecordError> {
        let count = u32::from_le_bytes(self.array()?) as usize;
        // Each entry takes at least 3 bytes: a count beyond that is garbage, not an allocation.
        let mut writes =
            Vec::with_capacity(count.min(self.bytes.len() / WRITE_DELETE_HEADER_BYTES));
        for _ in 0..count {
            let [kind] = self.array()?;
            let key_len = usize::from(u16::from_le_bytes(self.array()?));
            let write = match kind {
                WRITE_KIND_PUT => {
                    let expiry_ms = u64::from_le_bytes(self.array()?);
                    let value_len = u32::from_le_bytes(self.array()?) as usize;
                    let key = self.take(key_len)?.to_vec();
                    let value = self.take(value_len)?.to_vec();
                    ResolvedWrite::Put {
                        key,
                        value,
                        expiry_ms,
                    }
                }
                WRITE_KIND_DELETE => ResolvedWrite::Delete {
                    key: self.take(key_len)?.to_vec(),
                },
                WRITE_KIND_PUT_POINTER => {
                    let expiry_ms = u64::from_le_bytes(self.array()?);
                    let value_len = u32::from_le_bytes(self.array()?) as usize;
                    let key = self.take(key_len)?.to_vec();
                    let bytes = self.take(value_len)?;
                    let pointer = Pointer::decode(bytes).ok_or(RecordError {
                        record_type: self.record_type,
                        detail: "a put pointer's value is not a 24-byte value-log pointer",
                    })?;
                    ResolvedWrite::PutPointer {
                        key,
                        pointer,
                        expiry_ms,
                    }
                }
                _ => {
                    return Err(RecordError {
                        record_type: self.record_type,
                        detail: "unknown write kind (written by a newer jube?)",
                    })
                }
            };
            if let Some(previous) = writes.last() {
                if ResolvedWrite::key(previous) >= write.key() {
                    return Err(RecordError {
                        record_type: self.record_type,
                        detail: "writes are not in ascending key order",
                    });
                }
            }
            writes.push(write);
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_writes() -> Vec<ResolvedWrite> {
        vec![
            ResolvedWrite::Put {
                key: b"a".to_vec(),
                value: b"12".to_vec(),
                expiry_ms: 0,
            },
            ResolvedWrite::Delete { key: b"b".to_vec() },
            ResolvedWrite::Put {
                key: b"c".to_vec(),
                value: Vec::new(),
                expiry_ms: 1_700_000_000_000,
            },
            ResolvedWrite::PutPointer {
                key: b"d".to_vec(),
                pointer: Pointer {
                    segment: 3,
                    offset: 4096,
                    value_size: 70_000,
                    checksum: 0xdead_beef,
                },
                expiry_ms: 9,
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let id = TxnId {
            coordinator: 3,
            number: 77,
        };
        let records = [
            TxnRecord::Apply {
                writes: sample_writes(),
            },
            TxnRecord::Apply { writes: Vec::new() },
            TxnRecord::Prepare {
                id,
                writes: sample_writes(),
            },
            TxnRecord::Decision {
                id,
                participants: vec![3, 5, 9],
            },
            TxnRecord::Commit { id },
            TxnRecord::Abort { id },
        ];
        let mut buf = Vec::new();
        for record in records {
            record.encode(&mut buf);
            assert_eq!(buf.len(), record.payload_bytes());
            assert!(is_txn_record(record.record_type()));
            assert_eq!(TxnRecord::decode(record.record_type(), &buf), Ok(record));
        }
    }

    #[test]
    fn exact_bytes_of_a_prepare() {
        let record = TxnRecord::Prepare {
            id: TxnId {
                coordinator: 1,
                number: 2,
            },
            writes: vec![ResolvedWrite::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                expiry_ms: 5,
            }],
        };
        let mut buf = Vec::new();
        record.encode(&mut buf);
        let expected: Vec<u8> = [
            &[1, 0, 0, 0][..],
            &[2, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0],
            &[WRITE_KIND_PUT, 1, 0],
            &[5, 0, 0, 0, 0, 0, 0, 0],
            &[1, 0, 0, 0],
            b"k",
            b"v",
        ]
        .concat();
        assert_eq!(buf, expected);
    }

    #[test]
    fn exact_bytes_of_a_put_pointer() {
        let pointer = Pointer {
            segment: 2,
            offset: 8192,
            value_size: 5_000,
            checksum: 7,
        };
        let record = TxnRecord::Apply {
            writes: vec![ResolvedWrite::PutPointer {
                key: b"k".to_vec(),
                pointer,
                expiry_ms: 5,
            }],
        };
        let mut buf = Vec::new();
        record.encode(&mut buf);
        let expected: Vec<u8> = [
            &[1, 0, 0, 0][..],
            &[WRITE_KIND_PUT_POINTER, 1, 0],
            &[5, 0, 0, 0, 0, 0, 0, 0],
            &[24, 0, 0, 0],
            b"k",
            &pointer.encode(),
        ]
        .concat();
        assert_eq!(buf, expected);
        assert_eq!(TxnRecord::decode(RECORD_TXN_APPLY, &buf), Ok(record));
        // A put pointer whose value is not 24 bytes is refused.
        let mut wrong = expected.clone();
        wrong[15] = 23;
        wrong.pop();
        assert!(TxnRecord::decode(RECORD_TXN_APPLY, &wrong).is_err());
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let mut buf = Vec::new();
        TxnRecord::Prepare {
            id: TxnId {
                coordinator: 0,
                number: 1,
            },
            writes: sample_writes(),
        }
        .encode(&mut buf);
        for record_type in RECORD_TXN_APPLY..=RECORD_TXN_ABORT {
            for len in 0..buf.len() {
                let _ = TxnRecord::decode(record_type, &buf[..len]);
            }
            let _ = TxnRecord::decode(record_type, &[0xff; 40]);
        }
        // Truncated: an error. Trailing garbage: an error. Unsorted writes: an error.
        assert!(TxnRecord::decode(RECORD_TXN_PREPARE, &buf[..buf.len() - 1]).is_err());
        let mut longer = buf.clone();
        longer.push(0);
        assert!(TxnRecord::decode(RECORD_TXN_PREPARE, &longer).is_err());
        let mut unsorted = sample_writes();
        unsorted.swap(0, 2);
        TxnRecord::Apply { writes: unsorted }.encode(&mut buf);
        assert!(TxnRecord::decode(RECORD_TXN_APPLY, &buf).is_err());
        assert!(TxnRecord::decode(1, &[]).is_err());
    }
}
