//! Txn codec tests: every assertion kind, op kind and outcome round-trips
//! through encode/decode (examples and proptest); validation enforces the
//! transaction limits and names the failing item's index; kinds this build
//! does not know are `UnknownOperation`; required fields missing per kind are
//! `InvalidRequest`; the value hash is XXH3-64 with seed 0.

use flatbuffers::FlatBufferBuilder;
use jube_protocol::constants::{
    KEY_SIZE_MAX, PROTOCOL_VERSION, TXN_ITEMS_MAX, TXN_SIZE_MAX, VALUE_SIZE_MAX,
};
use jube_protocol::generated::jube::wire as fb;
use jube_protocol::message::value_hash;
use jube_protocol::{
    decode_request, decode_response, encode_request, encode_response, Assertion, Check, CompareOp,
    Decoded, Entry, Get, GetReply, Operation, Reply, Request, Response, Status, Txn, TxnOp,
    TxnOpResult, TxnOutcome,
};
use proptest::prelude::*;

fn every_check() -> Vec<Check> {
    let mut checks = vec![
        Check::Exists,
        Check::Absent,
        Check::ValueEquals(b"v".to_vec()),
        Check::ValueEquals(Vec::new()),
        Check::HashEquals(u64::MAX),
        Check::VersionEquals(0),
        Check::VersionEquals(42),
    ];
    for op in [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ] {
        checks.push(Check::IntCompare {
            op,
            operand: i64::MIN,
        });
    }
    checks
}

fn every_op() -> Vec<TxnOp> {
    vec![
        TxnOp::Read(Get::new(*b"r")),
        TxnOp::Read(Get {
            key: b"r".to_vec(),
            with_version: true,
            with_ttl: true,
        }),
        TxnOp::Put(Entry::new(*b"p", *b"value")),
        TxnOp::Put(Entry {
            key: b"p".to_vec(),
            value: Vec::new(),
            ttl_ms: Some(5000),
        }),
        TxnOp::Delete { key: b"d".to_vec() },
        TxnOp::Add {
            key: b"n".to_vec(),
            delta: -7,
        },
    ]
}

fn round_trip_request(op: Operation) -> Operation {
    let request = Request { id: 9, op };
    let frame = encode_request(&request).expect("encodes");
    match decode_request(&frame) {
        Decoded::Frame { len, message } => {
            assert_eq!(len, frame.len());
            assert_eq!(message.id, 9);
            message.op
        }
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn round_trip_reply(reply: Reply) -> Reply {
    let frame = encode_response(&Response::ok(3, reply)).expect("encodes");
    match decode_response(&frame) {
        Decoded::Frame { message, .. } => message.outcome.expect("an Ok response"),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn rejection(op: Operation) -> (Status, String) {
    let request = Request { id: 4, op };
    let failure = request.validate().expect_err("validation refuses it");
    // The decoder refuses it the same way (the encoder does not validate).
    let frame = encode_request(&request).expect("encodes");
    match decode_request(&frame) {
        Decoded::Error(error) => assert_eq!(error.status(), failure.status),
        other => panic!("expected a decode error, got {other:?}"),
    }
    (failure.status, failure.message)
}

#[test]
fn every_assertion_and_op_round_trips() {
    let txn = Txn {
        assertions: every_check()
            .into_iter()
            .enumerate()
            .map(|(i, check)| Assertion::new(format!("a{i}"), check))
            .collect(),
        ops: every_op(),
    };
    let op = Operation::Txn(txn);
    assert_eq!(round_trip_request(op.clone()), op);
    // Assertions only, and ops only, are both valid transactions.
    let only_assertions = Operation::Txn(Txn::new().assert_exists("k"));
    assert_eq!(round_trip_request(only_assertions.clone()), only_assertions);
    let only_ops = Operation::Txn(Txn::new().put("k", "v").add("n", 1));
    assert_eq!(round_trip_request(only_ops.clone()), only_ops);
}

#[test]
fn builder_appends_in_order() {
    let txn = Txn::new()
        .assert_absent("a")
        .assert_version("b", 3)
        .assert_int("c", CompareOp::Ge, 10)
        .assert_hash("d", value_hash(b"x"))
        .assert_value("e", "y")
        .read("r")
        .put_ttl("p", "v", 100)
        .delete("d")
        .add("n", 2);
    assert_eq!(txn.assertions.len(), 5);
    assert_eq!(txn.assertions[1].check, Check::VersionEquals(3));
    assert_eq!(txn.ops.len(), 4);
    assert!(matches!(
        &txn.ops[1],
        TxnOp::Put(Entry {
            ttl_ms: Some(100),
            ..
        })
    ));
    assert!(txn.has_writes());
    assert!(!Txn::new().read("k").has_writes());
    let keys: Vec<&[u8]> = txn.keys().collect();
    assert_eq!(keys.first(), Some(&&b"a"[..]));
    assert_eq!(keys.last(), Some(&&b"n"[..]));
}

#[test]
fn every_outcome_round_trips() {
    let outcomes = [
        TxnOutcome::Committed(vec![
            TxnOpResult::Read(None),
            TxnOpResult::Read(Some(GetReply {
                value: b"v".to_vec(),
                version: Some(7),
                ttl_remaining_ms: Some(99),
            })),
            TxnOpResult::Read(Some(GetReply {
                value: Vec::new(),
                version: None,
                ttl_remaining_ms: None,
            })),
            TxnOpResult::Put,
            TxnOpResult::Delete { existed: true },
            TxnOpResult::Delete { existed: false },
            TxnOpResult::Add { value: -3 },
            TxnOpResult::Add { value: i64::MAX },
        ]),
        TxnOutcome::Committed(Vec::new()),
        TxnOutcome::AssertionFailed {
            index: 3,
            detail: "version is 4, not 3".to_owned(),
        },
        TxnOutcome::OpFailed {
            index: 1,
            detail: "value is not an integer".to_owned(),
        },
    ];
    for outcome in outcomes {
        let reply = Reply::Txn(outcome);
        assert_eq!(round_trip_reply(reply.clone()), reply);
    }
}

#[test]
fn limits_are_enforced_and_name_the_index() {
    let status = |txn: Txn| rejection(Operation::Txn(txn));
    assert_eq!(status(Txn::new()).0, Status::InvalidRequest, "empty txn");
    let mut many_ops = Txn::new();
    for i in 0..=TXN_ITEMS_MAX {
        many_ops = many_ops.put(format!("k{i}"), "v");
    }
    assert_eq!(status(many_ops).0, Status::TooManyItems);
    let mut many_assertions = Txn::new();
    for i in 0..=TXN_ITEMS_MAX {
        many_assertions = many_assertions.assert_exists(format!("k{i}"));
    }
    assert_eq!(status(many_assertions).0, Status::TooManyItems);
    // Assertions and ops count together.
    let mut mixed = Txn::new();
    for i in 0..TXN_ITEMS_MAX / 2 + 1 {
        mixed = mixed
            .assert_exists(format!("k{i}"))
            .put(format!("k{i}"), "v");
    }
    assert_eq!(status(mixed).0, Status::TooManyItems);
    // Exactly at the limit is fine.
    let mut full = Txn::new();
    for i in 0..TXN_ITEMS_MAX {
        full = full.put(format!("k{i}"), "v");
    }
    assert!(Request {
        id: 1,
        op: Operation::Txn(full)
    }
    .validate()
    .is_ok());

    let (code, message) = status(
        Txn::new()
            .put("a", "b")
            .delete(vec![b'k'; KEY_SIZE_MAX + 1]),
    );
    assert_eq!(code, Status::KeyTooLarge);
    assert!(message.starts_with("op 1:"), "{message}");
    let (code, message) = status(Txn::new().assert_exists("ok").assert_absent(""));
    assert_eq!(code, Status::InvalidRequest);
    assert!(message.starts_with("assertion 1:"), "{message}");
    let (code, message) = status(Txn::new().put_ttl("k", "v", 0));
    assert_eq!(code, Status::InvalidRequest);
    assert!(message.starts_with("op 0:"), "{message}");
    let (code, _) = status(Txn::new().assert_value("k", vec![0u8; VALUE_SIZE_MAX + 1]));
    assert_eq!(code, Status::ValueTooLarge);
    // Three values, each well within a value's limit, are together more bytes than a
    // transaction may carry (and still fit a frame, so the decoder sees them).
    let big = vec![0u8; TXN_SIZE_MAX / 2];
    assert!(big.len() < VALUE_SIZE_MAX);
    let heavy = Txn::new()
        .put("a", big.clone())
        .put("b", big.clone())
        .put("c", big);
    assert!(heavy.size_bytes() > TXN_SIZE_MAX);
    let (code, message) = status(heavy);
    assert_eq!(code, Status::TooManyItems);
    assert!(message.contains("bytes"), "{message}");
}

/// A Txn frame with one raw assertion and one raw op, for kinds and fields
/// the typed encoder cannot produce.
fn raw_txn_frame(
    assertion_kind: fb::AssertionKind,
    assertion_value: bool,
    compare: fb::CompareOp,
    op_kind: fb::TxnOpKind,
    op_value: bool,
) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let key = fbb.create_vector(b"k".as_slice());
    let value = assertion_value.then(|| fbb.create_vector(b"v".as_slice()));
    let assertion = fb::Assertion::create(
        &mut fbb,
        &fb::AssertionArgs {
            key: Some(key),
            kind: assertion_kind,
            value,
            compare,
            ..Default::default()
        },
    );
    let op_key = fbb.create_vector(b"k".as_slice());
    let op_value = op_value.then(|| fbb.create_vector(b"v".as_slice()));
    let op = fb::TxnOp::create(
        &mut fbb,
        &fb::TxnOpArgs {
            kind: op_kind,
            key: Some(op_key),
            value: op_value,
            ..Default::default()
        },
    );
    let assertions = fbb.create_vector(&[assertion]);
    let ops = fbb.create_vector(&[op]);
    let txn = fb::Txn::create(
        &mut fbb,
        &fb::TxnArgs {
            assertions: Some(assertions),
            ops: Some(ops),
        },
    );
    let root = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs {
            version: PROTOCOL_VERSION,
            request_id: 12,
            op_type: fb::Operation::Txn,
            op: Some(txn.as_union_value()),
        },
    );
    fbb.finish_size_prefixed(root, Some("JUBE"));
    fbb.finished_data().to_vec()
}

fn raw_status(frame: &[u8]) -> Result<Operation, (Status, String)> {
    match decode_request(frame) {
        Decoded::Frame { message, .. } => Ok(message.op),
        Decoded::Error(error) => {
            assert_eq!(error.request_id(), Some(12));
            assert_eq!(error.frame_len(), Some(frame.len()), "the stream goes on");
            let response = error.to_response();
            let message = match response.outcome {
                Err(failure) => failure.message,
                Ok(_) => String::new(),
            };
            Err((error.status(), message))
        }
        Decoded::NeedMore(_) => panic!("a whole frame"),
    }
}

#[test]
fn unknown_kinds_and_missing_fields_are_refused() {
    use fb::{AssertionKind as A, CompareOp as C, TxnOpKind as O};
    let valid = raw_txn_frame(A::Exists, false, C::Eq, O::Put, true);
    assert!(raw_status(&valid).is_ok());
    let (status, message) = raw_status(&raw_txn_frame(
        A(A::ENUM_MAX + 1),
        false,
        C::Eq,
        O::Read,
        false,
    ))
    .unwrap_err();
    assert_eq!(status, Status::UnknownOperation);
    assert!(message.contains("assertion 0"), "{message}");
    let (status, _) = raw_status(&raw_txn_frame(
        A::IntCompare,
        false,
        C(C::ENUM_MAX + 1),
        O::Read,
        false,
    ))
    .unwrap_err();
    assert_eq!(status, Status::UnknownOperation);
    let (status, message) = raw_status(&raw_txn_frame(
        A::Exists,
        false,
        C::Eq,
        O(O::ENUM_MAX + 1),
        false,
    ))
    .unwrap_err();
    assert_eq!(status, Status::UnknownOperation);
    assert!(message.contains("op 0"), "{message}");
    let (status, message) =
        raw_status(&raw_txn_frame(A::ValueEquals, false, C::Eq, O::Read, false)).unwrap_err();
    assert_eq!(status, Status::InvalidRequest);
    assert!(message.contains("ValueEquals has no value"), "{message}");
    let (status, message) =
        raw_status(&raw_txn_frame(A::Exists, false, C::Eq, O::Put, false)).unwrap_err();
    assert_eq!(status, Status::InvalidRequest);
    assert!(message.contains("Put has no value"), "{message}");
}

#[test]
fn value_hash_is_xxh3_64_seed_0() {
    // Reference vectors of XXH3_64bits (xxHash's own test suite: empty input).
    assert_eq!(value_hash(b""), 0x2D06_8005_38D3_94C2);
    assert_ne!(value_hash(b"a"), value_hash(b"b"));
    assert_eq!(value_hash(b"task-1"), value_hash(b"task-1"));
}

#[test]
fn compare_ops_hold_as_named() {
    assert!(CompareOp::Eq.holds(3, 3) && !CompareOp::Eq.holds(3, 4));
    assert!(CompareOp::Ne.holds(3, 4) && !CompareOp::Ne.holds(3, 3));
    assert!(CompareOp::Lt.holds(3, 4) && !CompareOp::Lt.holds(4, 4));
    assert!(CompareOp::Le.holds(4, 4) && !CompareOp::Le.holds(5, 4));
    assert!(CompareOp::Gt.holds(5, 4) && !CompareOp::Gt.holds(4, 4));
    assert!(CompareOp::Ge.holds(4, 4) && !CompareOp::Ge.holds(3, 4));
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..16)
}

fn check() -> impl Strategy<Value = Check> {
    let compare = prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
    ];
    prop_oneof![
        Just(Check::Exists),
        Just(Check::Absent),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Check::ValueEquals),
        any::<u64>().prop_map(Check::HashEquals),
        (compare, any::<i64>()).prop_map(|(op, operand)| Check::IntCompare { op, operand }),
        any::<u64>().prop_map(Check::VersionEquals),
    ]
}

fn op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (key(), any::<bool>(), any::<bool>()).prop_map(|(key, with_version, with_ttl)| {
            TxnOp::Read(Get {
                key,
                with_version,
                with_ttl,
            })
        }),
        (key(), prop::collection::vec(any::<u8>(), 0..16), 0u64..5).prop_map(
            |(key, value, ttl)| TxnOp::Put(Entry {
                key,
                value,
                ttl_ms: (ttl > 0).then_some(ttl),
            })
        ),
        key().prop_map(|key| TxnOp::Delete { key }),
        (key(), any::<i64>()).prop_map(|(key, delta)| TxnOp::Add { key, delta }),
    ]
}

proptest! {
    #[test]
    fn random_txns_round_trip(
        assertions in prop::collection::vec((key(), check()), 0..8),
        ops in prop::collection::vec(op(), 1..8),
    ) {
        let txn = Txn {
            assertions: assertions
                .into_iter()
                .map(|(key, check)| Assertion { key, check })
                .collect(),
            ops,
        };
        let op = Operation::Txn(txn);
        prop_assert_eq!(round_trip_request(op.clone()), op);
    }
}
