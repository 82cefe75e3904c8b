//! Evaluation of a transaction part against a private overlay over the shard's state.
//!
//! Assertions all read the state before the transaction; ops read through an overlay holding
//! the writes of the ops before them. The result is the ops' results plus the *resolved*
//! writes: the final state of every key the part changed, ascending by key, which is what the
//! WAL record holds and what applying the part does to the tree.
//!
//! Invariants: evaluation has no side effects (a failed assertion or op leaves nothing
//! behind); the resolved writes hold each key at most once; a key whose final state is absent
//! gets a Delete only if the tree holds it (possibly expired), so a txn that changes nothing
//! writes nothing.

use super::{Assertion, AssertionKind, OpKind, OpOutput, OpResult, TxnFailure, TxnPart};
use crate::shard::{is_expired, Pointer};
use crate::tree::Value;
use std::collections::BTreeMap;

/// The final state of one key a transaction changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedWrite {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expiry_ms: u64,
    },
    Delete {
        key: Vec<u8>,
    },
    /// A put whose value the shard wrote to its value log (values above the inline threshold):
    /// what the txn's record holds and its prepared state keeps instead of the bytes. Never
    /// produced by [`evaluate`]; the shard turns large `Put`s into these before logging.
    PutPointer {
        key: Vec<u8>,
        pointer: Pointer,
        expiry_ms: u64,
    },
}

impl ResolvedWrite {
    pub fn key(&self) -> &[u8] {
        match self {
            ResolvedWrite::Put { key, .. }
            | ResolvedWrite::Delete { key }
            | ResolvedWrite::PutPointer { key, .. } => key,
        }
    }

    /// The value-log pointer this write stores, if it is a [`ResolvedWrite::PutPointer`].
    pub fn pointer(&self) -> Option<&Pointer> {
        match self {
            ResolvedWrite::PutPointer { pointer, .. } => Some(pointer),
            _ => None,
        }
    }
}

/// What a part did, if every assertion held and every op ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Ascending by index.
    pub results: Vec<OpResult>,
    /// Ascending by key, each key once.
    pub writes: Vec<ResolvedWrite>,
}

/// Parses a decimal-ASCII i64: an optional '-' and one or more digits (leading zeros allowed;
/// no '+', no spaces), in the i64 range.
pub fn parse_int(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Evaluates `part` at time `now_ms`. `read` returns the tree's raw value of a key (expired or
/// not); its error (an I/O failure) aborts the evaluation.
pub fn evaluate<E>(
    part: &TxnPart,
    now_ms: u64,
    mut read: impl FnMut(&[u8]) -> Result<Option<Value>, E>,
) -> Result<Result<Evaluation, TxnFailure>, E> {
    for assertion in &part.assertions {
        let raw = read(&assertion.key)?;
        let visible = raw.filter(|v| !is_expired(v, now_ms));
        if let Err(detail) = check(assertion, visible.as_ref()) {
            return Ok(Err(TxnFailure::AssertionFailed {
                index: assertion.index,
                detail,
            }));
        }
    }
    // The overlay: each written key's current state (None: deleted) with its expiry.
    let mut overlay: BTreeMap<Vec<u8>, Option<(Vec<u8>, u64)>> = BTreeMap::new();
    let mut results = Vec::with_capacity(part.ops.len());
    for op in &part.ops {
        let current: Option<Value> = match overlay.get(&op.key) {
            Some(state) => state.clone().map(|(bytes, expiry_ms)| Value {
                bytes,
                expiry_ms,
                version: 0,
            }),
            None => read(&op.key)?.filter(|v| !is_expired(v, now_ms)),
        };
        let output = match &op.kind {
            OpKind::Read { .. } => OpOutput::Read(current),
            OpKind::Put { value, expiry_ms } => {
                overlay.insert(op.key.clone(), Some((value.clone(), *expiry_ms)));
                OpOutput::Put
            }
            OpKind::Delete => {
                overlay.insert(op.key.clone(), None);
                OpOutput::Deleted {
                    existed: current.is_some(),
                }
            }
            OpKind::Add { delta } => {
                let (old, expiry_ms) = match &current {
                    None => (0, 0),
                    Some(value) => match parse_int(&value.bytes) {
                        Some(old) => (old, value.expiry_ms),
                        None => {
                            return Ok(Err(TxnFailure::OpFailed {
                                index: op.index,
                                detail: "value is not an integer".to_string(),
                            }))
                        }
                    },
                };
                let Some(new) = old.checked_add(*delta) else {
                    return Ok(Err(TxnFailure::OpFailed {
                        index: op.index,
                        detail: format!("{old} + {delta} overflows an i64"),
                    }));
                };
                let bytes = new.to_string().into_bytes();
                overlay.insert(op.key.clone(), Some((bytes, expiry_ms)));
                OpOutput::Added { value: new }
            }
        };
        results.push(OpResult {
            index: op.index,
            output,
        });
    }
    results.sort_by_key(|result| result.index);
    let mut writes = Vec::with_capacity(overlay.len());
    for (key, state) in overlay {
        match state {
            Some((value, expiry_ms)) => writes.push(ResolvedWrite::Put {
                key,
                value,
                expiry_ms,
            }),
            None => {
                if read(&key)?.is_some() {
                    writes.push(ResolvedWrite::Delete { key });
                }
            }
        }
    }
    Ok(Ok(Evaluation { results, writes }))
}

/// Checks one assertion against the key's visible value; Err says why it failed.
fn check(assertion: &Assertion, visible: Option<&Value>) -> Result<(), String> {
    let fail = |detail: &str| Err(detail.to_string());
    match (&assertion.kind, visible) {
        (AssertionKind::Exists, Some(_)) | (AssertionKind::Absent, None) => Ok(()),
        (AssertionKind::Exists, None) => fail("key is absent"),
        (AssertionKind::Absent, Some(_)) => fail("key exists"),
        (AssertionKind::ValueEquals(_) | AssertionKind::HashEquals(_), None) => {
            fail("key is absent")
        }
        (AssertionKind::IntCompare { .. }, None) => fail("key is absent"),
        (AssertionKind::ValueEquals(expected), Some(value)) => {
            if value.bytes == *expected {
                Ok(())
            } else {
                fail("value differs")
            }
        }
        (AssertionKind::HashEquals(expected), Some(value)) => {
            let hash = super::value_hash(&value.bytes);
            if hash == *expected {
                Ok(())
            } else {
                Err(format!("value hash is {hash:#018x}"))
            }
        }
        (AssertionKind::IntCompare { op, operand }, Some(value)) => match parse_int(&value.bytes) {
            None => fail("value is not an integer"),
            Some(int) if op.holds(int, *operand) => Ok(()),
            Some(int) => Err(format!("value is {int}")),
        },
        (AssertionKind::VersionEquals(expected), value) => {
            let version = value.map_or(0, |v| v.version);
            if version == *expected {
                Ok(())
            } else {
                Err(format!("version is {version}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Compare, TxnOp};
    use super::*;
    use std::convert::Infallible;

    fn state() -> BTreeMap<Vec<u8>, Value> {
        let value = |bytes: &[u8], expiry_ms, version| Value {
            bytes: bytes.to_vec(),
            expiry_ms,
            version,
        };
        BTreeMap::from([
            (b"int".to_vec(), value(b"41", 0, 7)),
            (b"text".to_vec(), value(b"hello", 0, 8)),
            (b"expired".to_vec(), value(b"5", 100, 9)),
            (b"ttl".to_vec(), value(b"-3", 5_000, 10)),
        ])
    }

    fn run(part: &TxnPart) -> Result<Evaluation, TxnFailure> {
        let state = state();
        let read =
            |key: &[u8]| -> Result<Option<Value>, Infallible> { Ok(state.get(key).cloned()) };
        match evaluate(part, 1_000, read) {
            Ok(result) => result,
            Err(never) => match never {},
        }
    }

    fn assertion(index: u32, key: &[u8], kind: AssertionKind) -> Assertion {
        Assertion {
            index,
            key: key.to_vec(),
            kind,
        }
    }

    fn op(index: u32, key: &[u8], kind: OpKind) -> TxnOp {
        TxnOp {
            index,
            key: key.to_vec(),
            kind,
        }
    }

    fn asserting(assertions: Vec<Assertion>) -> Result<Evaluation, TxnFailure> {
        run(&TxnPart {
            assertions,
            ops: Vec::new(),
        })
    }

    #[test]
    fn assertions_hold_or_name_their_index() {
        let holds = [
            AssertionKind::Exists,
            AssertionKind::ValueEquals(b"41".to_vec()),
            AssertionKind::HashEquals(super::super::value_hash(b"41")),
            AssertionKind::IntCompare {
                op: Compare::Eq,
                operand: 41,
            },
            AssertionKind::IntCompare {
                op: Compare::Gt,
                operand: 40,
            },
            AssertionKind::IntCompare {
                op: Compare::Le,
                operand: 41,
            },
            AssertionKind::VersionEquals(7),
        ];
        for kind in holds {
            assert!(
                asserting(vec![assertion(3, b"int", kind.clone())]).is_ok(),
                "{kind:?}"
            );
        }
        let fails = [
            (b"int".as_slice(), AssertionKind::Absent),
            (b"int", AssertionKind::ValueEquals(b"42".to_vec())),
            (b"int", AssertionKind::HashEquals(0)),
            (
                b"int",
                AssertionKind::IntCompare {
                    op: Compare::Lt,
                    operand: 41,
                },
            ),
            (
                b"int",
                AssertionKind::IntCompare {
                    op: Compare::Ne,
                    operand: 41,
                },
            ),
            (b"int", AssertionKind::VersionEquals(6)),
            (
                b"text",
                AssertionKind::IntCompare {
                    op: Compare::Ne,
                    operand: 0,
                },
            ),
            (b"missing", AssertionKind::Exists),
            (b"missing", AssertionKind::VersionEquals(7)),
            (b"expired", AssertionKind::Exists),
        ];
        for (key, kind) in fails {
            let failure = asserting(vec![
                assertion(0, b"int", AssertionKind::Exists),
                assertion(5, key, kind.clone()),
            ]);
            assert!(
                matches!(failure, Err(TxnFailure::AssertionFailed { index: 5, .. })),
                "{kind:?} on {key:?}: {failure:?}"
            );
        }
        // Absent keys (and expired ones) have version 0.
        assert!(asserting(vec![assertion(
            0,
            b"missing",
            AssertionKind::VersionEquals(0)
        )])
        .is_ok());
        assert!(asserting(vec![assertion(
            0,
            b"expired",
            AssertionKind::VersionEquals(0)
        )])
        .is_ok());
        assert!(asserting(vec![assertion(0, b"expired", AssertionKind::Absent)]).is_ok());
    }

    #[test]
    fn ops_see_earlier_writes_and_assertions_do_not() {
        let part = TxnPart {
            // Checked against the state before the txn, although op 1 deletes the key.
            assertions: vec![assertion(0, b"text", AssertionKind::Exists)],
            ops: vec![
                op(1, b"text", OpKind::Delete),
                op(2, b"text", OpKind::Read { with_version: true }),
                op(
                    3,
                    b"new",
                    OpKind::Put {
                        value: b"9".to_vec(),
                        expiry_ms: 0,
                    },
                ),
                op(4, b"new", OpKind::Add { delta: 1 }),
                op(
                    5,
                    b"new",
                    OpKind::Read {
                        with_version: false,
                    },
                ),
                op(6, b"int", OpKind::Add { delta: -50 }),
                op(7, b"ttl", OpKind::Add { delta: 3 }),
                op(8, b"expired", OpKind::Add { delta: 1 }),
                op(9, b"gone", OpKind::Delete),
            ],
        };
        let evaluation = run(&part).expect("commits");
        let outputs: Vec<OpOutput> = evaluation
            .results
            .iter()
            .map(|r| r.output.clone())
            .collect();
        assert_eq!(
            outputs,
            vec![
                OpOutput::Deleted { existed: true },
                OpOutput::Read(None),
                OpOutput::Put,
                OpOutput::Added { value: 10 },
                OpOutput::Read(Some(Value {
                    bytes: b"10".to_vec(),
                    expiry_ms: 0,
                    version: 0
                })),
                OpOutput::Added { value: -9 },
                OpOutput::Added { value: 0 },
                OpOutput::Added { value: 1 },
                OpOutput::Deleted { existed: false },
            ]
        );
        let put = |key: &[u8], value: &[u8], expiry_ms| ResolvedWrite::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            expiry_ms,
        };
        // Sorted by key; Add keeps the expiry; the expired key is re-created without one;
        // deleting an absent key writes nothing.
        assert_eq!(
            evaluation.writes,
            vec![
                put(b"expired", b"1", 0),
                put(b"int", b"-9", 0),
                put(b"new", b"10", 0),
                ResolvedWrite::Delete {
                    key: b"text".to_vec()
                },
                put(b"ttl", b"0", 5_000),
            ]
        );
    }

    #[test]
    fn op_failures_name_their_index_and_write_nothing() {
        let not_int = TxnPart {
            assertions: Vec::new(),
            ops: vec![
                op(0, b"int", OpKind::Add { delta: 1 }),
                op(1, b"text", OpKind::Add { delta: 1 }),
            ],
        };
        assert!(matches!(
            run(&not_int),
            Err(TxnFailure::OpFailed { index: 1, .. })
        ));
        let overflow = TxnPart {
            assertions: Vec::new(),
            ops: vec![op(4, b"int", OpKind::Add { delta: i64::MAX })],
        };
        assert!(matches!(
            run(&overflow),
            Err(TxnFailure::OpFailed { index: 4, .. })
        ));
        // An assertion failure wins over an op failure: assertions are checked first.
        let both = TxnPart {
            assertions: vec![assertion(9, b"int", AssertionKind::Absent)],
            ops: vec![op(0, b"text", OpKind::Add { delta: 1 })],
        };
        assert!(matches!(
            run(&both),
            Err(TxnFailure::AssertionFailed { index: 9, .. })
        ));
        // Delete then put of an absent key, and put then delete: no write at all.
        let churn = TxnPart {
            assertions: Vec::new(),
            ops: vec![
                op(
                    0,
                    b"fresh",
                    OpKind::Put {
                        value: b"x".to_vec(),
                        expiry_ms: 0,
                    },
                ),
                op(1, b"fresh", OpKind::Delete),
            ],
        };
        assert_eq!(run(&churn).expect("commits").writes, Vec::new());
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-17"), Some(-17));
        assert_eq!(parse_int(b"007"), Some(7));
        assert_eq!(parse_int(&[b'0'; 40]), Some(0));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"1.0",
            b"9223372036854775808",
            b"0x1",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn value_hash_is_xxh3_64_seed_0() {
        // Reference values of XXH3-64 with seed 0, computed with the C libxxhash 0.8.1
        // (XXH3_64bits): they must never change for existing data.
        assert_eq!(super::super::value_hash(b""), 0x2d06800538d394c2);
        assert_eq!(super::super::value_hash(b"a"), 0xe6c632b61e964e1f);
        assert_eq!(super::super::value_hash(b"hello world"), 0xd447b1ea40e6988b);
        assert_eq!(super::super::value_hash(&[b'x'; 300]), 0xa5d1b4607dc83554);
    }
}
