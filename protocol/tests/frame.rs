//! Frame and message tests: every request and response round-trips through
//! encode/decode; decoding rejects each kind of bad frame with the right
//! error and never panics (proptest over random and mutated bytes);
//! truncated frames ask for exactly the missing bytes.

use std::ops::Bound;

use flatbuffers::FlatBufferBuilder;
use jube_protocol::constants::{
    BATCH_ITEMS_MAX, CONTINUATION_SIZE_MAX, FRAME_PREFIX_SIZE, FRAME_SIZE_MAX, KEY_SIZE_MAX,
    MESSAGE_SIZE_MAX, PROTOCOL_VERSION, SCAN_LIMIT_MAX, TTL_MS_MAX, VALUE_SIZE_MAX,
};
use jube_protocol::frame::encode_request_with_version;
use jube_protocol::generated::jube::wire as fb;
use jube_protocol::{
    decode_request, decode_response, encode_request, encode_response, encode_response_in_place,
    CheckpointReply, DecodeError, Decoded, EncodeError, Entry, Get, GetReply, InfoReply,
    InfoSection, Metric, Operation, Reply, Request, Response, ResponseEncoder, Scan, ScanReply,
    Status,
};
use proptest::prelude::*;

fn every_operation() -> Vec<Operation> {
    vec![
        Operation::Ping,
        Operation::Get(Get::new(*b"k")),
        Operation::Get(Get {
            key: b"key".to_vec(),
            with_version: true,
            with_ttl: true,
        }),
        Operation::Put(Entry::new(*b"k", *b"v")),
        Operation::Put(Entry {
            key: b"k".to_vec(),
            value: Vec::new(),
            ttl_ms: Some(1500),
        }),
        Operation::Delete {
            key: b"gone".to_vec(),
        },
        Operation::MultiGet {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        },
        Operation::MultiGet { keys: Vec::new() },
        Operation::MultiPut {
            entries: vec![
                Entry::new(*b"a", *b"1"),
                Entry {
                    key: b"b".to_vec(),
                    value: b"2".to_vec(),
                    ttl_ms: Some(TTL_MS_MAX),
                },
            ],
        },
        Operation::Scan(Scan::all()),
        Operation::Scan(Scan {
            start: Bound::Included(b"a".to_vec()),
            end: Bound::Excluded(b"z".to_vec()),
            limit: SCAN_LIMIT_MAX,
            reverse: true,
            continuation: Some(b"token".to_vec()),
        }),
        Operation::Scan(Scan {
            start: Bound::Excluded(b"a".to_vec()),
            end: Bound::Included(b"b".to_vec()),
            limit: 1,
            reverse: false,
            continuation: Some(Vec::new()),
        }),
        Operation::Info,
        Operation::Checkpoint,
    ]
}

fn every_reply() -> Vec<Reply> {
    vec![
        Reply::Ping,
        Reply::Get(GetReply {
            value: b"v".to_vec(),
            version: None,
            ttl_remaining_ms: None,
        }),
        Reply::Get(GetReply {
            value: Vec::new(),
            version: Some(7),
            ttl_remaining_ms: Some(99),
        }),
        Reply::Put,
        Reply::Delete,
        Reply::MultiGet {
            values: vec![Some(b"x".to_vec()), None, Some(Vec::new())],
        },
        Reply::MultiPut,
        Reply::Scan(ScanReply {
            entries: Vec::new(),
            continuation: None,
        }),
        Reply::Scan(ScanReply {
            entries: vec![Entry::new(*b"a", *b"1"), Entry::new(*b"b", *b"")],
            continuation: Some(b"next".to_vec()),
        }),
        Reply::Info(InfoReply::default()),
        Reply::Info(InfoReply {
            server_version: "jubed 0.1.0".to_owned(),
            uptime_ms: 12,
            shard_count: 2,
            core_count: 2,
            sections: vec![
                InfoSection {
                    name: "total".to_owned(),
                    metrics: vec![Metric {
                        name: "keys".to_owned(),
                        value: 3,
                    }],
                },
                InfoSection {
                    name: "shard.0".to_owned(),
                    metrics: Vec::new(),
                },
            ],
        }),
        Reply::Checkpoint(CheckpointReply { duration_us: 1234 }),
    ]
}

fn decoded_request(frame: &[u8]) -> Request {
    match decode_request(frame) {
        Decoded::Frame { len, message } => {
            assert_eq!(len, frame.len(), "frame length");
            message
        }
        other => panic!("expected a request frame, got {other:?}"),
    }
}

fn decoded_response(frame: &[u8]) -> Response {
    match decode_response(frame) {
        Decoded::Frame { len, message } => {
            assert_eq!(len, frame.len(), "frame length");
            message
        }
        other => panic!("expected a response frame, got {other:?}"),
    }
}

fn request_error(frame: &[u8]) -> DecodeError {
    match decode_request(frame) {
        Decoded::Error(error) => error,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn every_request_round_trips() {
    for (index, op) in every_operation().into_iter().enumerate() {
        let request = Request {
            id: 1000 + index as u64,
            op,
        };
        let frame = encode_request(&request).expect("encode");
        let payload_len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(
            payload_len + FRAME_PREFIX_SIZE,
            frame.len(),
            "length prefix"
        );
        assert_eq!(&frame[8..12], b"JUBE", "file identifier");
        assert_eq!(decoded_request(&frame), request);
    }
}

#[test]
fn every_response_round_trips() {
    for (index, reply) in every_reply().into_iter().enumerate() {
        let response = Response::ok(index as u64, reply);
        let frame = encode_response(&response).expect("encode");
        assert_eq!(decoded_response(&frame), response);
    }
    for status in Status::KNOWN
        .into_iter()
        .skip(1)
        .chain([Status::Unknown(500)])
    {
        let response = Response::error(42, status, format!("failed with {status}"));
        let frame = encode_response(&response).expect("encode");
        assert_eq!(decoded_response(&frame), response);
    }
}

/// One reused encoder, fed every response in turn (large before small, so a stale byte of an
/// earlier, longer response would show), gives exactly `encode_response`'s bytes.
#[test]
fn a_reused_response_encoder_matches_encode_response() {
    let mut encoder = ResponseEncoder::default();
    let mut responses: Vec<Response> = every_reply()
        .into_iter()
        .enumerate()
        .map(|(index, reply)| Response::ok(index as u64, reply))
        .collect();
    responses.push(Response::error(7, Status::NotFound, "no such key"));
    responses.push(Response::ok(
        8,
        Reply::Get(GetReply {
            value: vec![0xAB; 4000],
            version: Some(3),
            ttl_remaining_ms: None,
        }),
    ));
    responses.push(Response::ok(9, Reply::Put));
    for response in responses {
        let expected = encode_response(&response).expect("encode");
        let frame = encoder.encode(&response).expect("encode with the encoder");
        assert_eq!(frame, expected.as_slice());
        assert_eq!(decoded_response(frame), response);
    }
}

#[test]
fn status_codes_match_the_schema() {
    for (code, status) in Status::KNOWN.into_iter().enumerate() {
        let code = u16::try_from(code).unwrap();
        assert_eq!(status.code(), code);
        assert_eq!(Status::from_code(code), status);
        assert_eq!(
            fb::Status(code).variant_name(),
            Some(format!("{status:?}").as_str())
        );
    }
    let past_end = u16::try_from(Status::KNOWN.len()).unwrap();
    assert_eq!(
        fb::Status(past_end).variant_name(),
        None,
        "schema has statuses that Status lacks"
    );
    assert_eq!(Status::from_code(past_end), Status::Unknown(past_end));
    assert_eq!(Status::Unknown(past_end).code(), past_end);
}

#[test]
fn frames_decode_one_at_a_time_from_a_stream() {
    let first = encode_request(&Request {
        id: 1,
        op: Operation::Ping,
    })
    .unwrap();
    let second = encode_request(&Request {
        id: 2,
        op: Operation::Info,
    })
    .unwrap();
    let stream = [first.clone(), second.clone()].concat();
    let Decoded::Frame { len, message } = decode_request(&stream) else {
        panic!("first frame")
    };
    assert_eq!((len, message.id), (first.len(), 1));
    assert_eq!(decoded_request(&stream[len..]).id, 2);
}

#[test]
fn truncated_frames_need_exactly_the_missing_bytes() {
    let request = Request {
        id: 9,
        op: Operation::Put(Entry::new(*b"key", *b"value")),
    };
    let frame = encode_request(&request).unwrap();
    for cut in 0..frame.len() {
        let missing = if cut < FRAME_PREFIX_SIZE {
            FRAME_PREFIX_SIZE - cut
        } else {
            frame.len() - cut
        };
        assert_eq!(
            decode_request(&frame[..cut]),
            Decoded::NeedMore(missing),
            "cut at {cut}"
        );
    }
    let response = encode_response(&Response::ok(9, Reply::Put)).unwrap();
    assert_eq!(
        decode_response(&response[..response.len() - 1]),
        Decoded::NeedMore(1)
    );
}

#[test]
fn oversized_length_prefix_is_fatal() {
    let mut frame = ((FRAME_SIZE_MAX + 1) as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&[0; 16]);
    let error = request_error(&frame);
    assert_eq!(
        error,
        DecodeError::FrameTooLarge {
            len: FRAME_SIZE_MAX + 1
        }
    );
    assert_eq!(error.status(), Status::FrameTooLarge);
    assert_eq!(
        error.frame_len(),
        None,
        "the stream cannot be resynchronised"
    );
    assert_eq!(error.to_response().request_id, 0);
    // The largest allowed prefix is not an error, just a frame not yet read.
    let limit = (FRAME_SIZE_MAX as u32).to_le_bytes();
    assert_eq!(decode_request(&limit), Decoded::NeedMore(FRAME_SIZE_MAX));
}

#[test]
fn frames_failing_verification_are_malformed() {
    let frame = encode_request(&Request {
        id: 5,
        op: Operation::Get(Get::new(*b"key")),
    })
    .unwrap();
    // The root offset points past the end of the buffer.
    let mut bad_root = frame.clone();
    bad_root[4..8].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    // No identifier.
    let mut bad_identifier = frame.clone();
    bad_identifier[8..12].copy_from_slice(b"JUNK");
    // Too short to hold a root offset and identifier.
    let tiny = [4, 0, 0, 0, 1, 2, 3, 4];
    let empty = [0, 0, 0, 0];
    for (name, bytes) in [
        ("bad root", &bad_root[..]),
        ("bad identifier", &bad_identifier[..]),
        ("tiny", &tiny[..]),
        ("empty", &empty[..]),
    ] {
        let error = request_error(bytes);
        assert!(
            matches!(error, DecodeError::Malformed { .. }),
            "{name}: {error:?}"
        );
        assert_eq!(error.status(), Status::MalformedFrame, "{name}");
        assert_eq!(
            error.frame_len(),
            Some(bytes.len()),
            "{name}: skip the frame"
        );
        assert_eq!(error.request_id(), None, "{name}");
    }
}

#[test]
fn required_field_missing_fails_verification() {
    // A Get table without its required key, built by hand (GetBuilder's
    // `finish` would refuse it).
    let mut fbb = FlatBufferBuilder::new();
    let start = fbb.start_table();
    fbb.push_slot::<bool>(fb::Get::VT_WITH_TTL, true, false);
    let get = fbb.end_table(start);
    let args = fb::RequestArgs {
        version: PROTOCOL_VERSION,
        request_id: 3,
        op_type: fb::Operation::Get,
        op: Some(flatbuffers::WIPOffset::new(get.value())),
    };
    let root = fb::Request::create(&mut fbb, &args);
    fbb.finish_size_prefixed(root, Some("JUBE"));
    let error = request_error(fbb.finished_data());
    assert!(matches!(error, DecodeError::Malformed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("key"),
        "names the missing field: {error}"
    );
}

/// Builds a request frame with a raw operation tag and a Ping table.
fn frame_with_operation_tag(tag: u8, request_id: u64, version: u16) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let op = fb::Ping::create(&mut fbb, &fb::PingArgs {}).as_union_value();
    let args = fb::RequestArgs {
        version,
        request_id,
        op_type: fb::Operation(tag),
        op: Some(op),
    };
    let root = fb::Request::create(&mut fbb, &args);
    fbb.finish_size_prefixed(root, Some("JUBE"));
    fbb.finished_data().to_vec()
}

#[test]
fn unknown_operation_is_rejected_with_its_request_id() {
    let frame = frame_with_operation_tag(42, 77, PROTOCOL_VERSION);
    let error = request_error(&frame);
    assert_eq!(error.status(), Status::UnknownOperation);
    assert_eq!(error.request_id(), Some(77));
    assert_eq!(error.frame_len(), Some(frame.len()), "the stream goes on");
    let response = error.to_response();
    assert_eq!(response.request_id, 77);
    assert_eq!(response.status(), Status::UnknownOperation);
    // The tag just past the last known one is unknown too.
    let past_end = fb::Operation::ENUM_MAX + 1;
    assert_eq!(
        request_error(&frame_with_operation_tag(past_end, 1, PROTOCOL_VERSION)).status(),
        Status::UnknownOperation
    );
    // No operation at all is an invalid request, not an unknown one.
    let mut fbb = FlatBufferBuilder::new();
    let root = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs {
            version: PROTOCOL_VERSION,
            request_id: 8,
            ..Default::default()
        },
    );
    fbb.finish_size_prefixed(root, Some("JUBE"));
    let error = request_error(fbb.finished_data());
    assert_eq!(
        (error.status(), error.request_id()),
        (Status::InvalidRequest, Some(8))
    );
}

#[test]
fn unsupported_version_is_rejected_with_its_request_id() {
    for version in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        let frame = encode_request_with_version(
            &Request {
                id: 31,
                op: Operation::Ping,
            },
            version,
        )
        .unwrap();
        let error = request_error(&frame);
        assert_eq!(
            error.status(),
            Status::UnsupportedVersion,
            "version {version}"
        );
        assert_eq!(error.request_id(), Some(31));
    }
}

fn rejection(op: Operation) -> Status {
    let frame = encode_request(&Request { id: 4, op }).unwrap();
    let error = request_error(&frame);
    assert_eq!(error.request_id(), Some(4));
    error.status()
}

#[test]
fn limits_are_enforced_on_decode() {
    let key_max = vec![b'k'; KEY_SIZE_MAX];
    let key_over = vec![b'k'; KEY_SIZE_MAX + 1];
    let ok = Request {
        id: 1,
        op: Operation::Put(Entry::new(key_max.clone(), vec![0; VALUE_SIZE_MAX])),
    };
    assert_eq!(
        decoded_request(&encode_request(&ok).unwrap()),
        ok,
        "the largest put fits"
    );

    assert_eq!(
        rejection(Operation::Get(Get::new(key_over.clone()))),
        Status::KeyTooLarge
    );
    assert_eq!(
        rejection(Operation::Delete { key: Vec::new() }),
        Status::InvalidRequest
    );
    assert_eq!(
        rejection(Operation::Put(Entry::new(
            *b"k",
            vec![0; VALUE_SIZE_MAX + 1]
        ))),
        Status::ValueTooLarge
    );
    let zero_ttl = Entry {
        key: b"k".to_vec(),
        value: Vec::new(),
        ttl_ms: Some(0),
    };
    assert_eq!(rejection(Operation::Put(zero_ttl)), Status::InvalidRequest);
    let long_ttl = Entry {
        key: b"k".to_vec(),
        value: Vec::new(),
        ttl_ms: Some(TTL_MS_MAX + 1),
    };
    assert_eq!(
        rejection(Operation::MultiPut {
            entries: vec![long_ttl]
        }),
        Status::InvalidRequest
    );
    let keys = vec![b"k".to_vec(); BATCH_ITEMS_MAX + 1];
    assert_eq!(
        rejection(Operation::MultiGet { keys }),
        Status::TooManyItems
    );
    let entries = vec![Entry::new(*b"k", *b"v"); BATCH_ITEMS_MAX + 1];
    assert_eq!(
        rejection(Operation::MultiPut { entries }),
        Status::TooManyItems
    );
    assert_eq!(
        rejection(Operation::MultiGet {
            keys: vec![key_over.clone()]
        }),
        Status::KeyTooLarge
    );
    let scan = |edit: &dyn Fn(&mut Scan)| {
        let mut scan = Scan::all();
        edit(&mut scan);
        rejection(Operation::Scan(scan))
    };
    assert_eq!(
        scan(&|s| s.limit = SCAN_LIMIT_MAX + 1),
        Status::TooManyItems
    );
    assert_eq!(
        scan(&|s| s.start = Bound::Included(key_over.clone())),
        Status::KeyTooLarge
    );
    assert_eq!(
        scan(&|s| s.end = Bound::Excluded(Vec::new())),
        Status::InvalidRequest
    );
    assert_eq!(
        scan(&|s| s.continuation = Some(vec![0; CONTINUATION_SIZE_MAX + 1])),
        Status::InvalidRequest
    );
}

/// Builds a Scan request with a raw start bound.
fn scan_frame_with_bound(kind: fb::BoundKind, key: Option<&[u8]>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let key = key.map(|key| fbb.create_vector(key));
    let start = fb::Bound::create(&mut fbb, &fb::BoundArgs { kind, key });
    let scan = fb::Scan::create(
        &mut fbb,
        &fb::ScanArgs {
            start: Some(start),
            ..Default::default()
        },
    );
    let args = fb::RequestArgs {
        version: PROTOCOL_VERSION,
        request_id: 6,
        op_type: fb::Operation::Scan,
        op: Some(scan.as_union_value()),
    };
    let root = fb::Request::create(&mut fbb, &args);
    fbb.finish_size_prefixed(root, Some("JUBE"));
    fbb.finished_data().to_vec()
}

#[test]
fn contradictory_scan_bounds_are_invalid() {
    for (kind, key) in [
        (fb::BoundKind::Unbounded, Some(&b"k"[..])),
        (fb::BoundKind::Included, None),
        (fb::BoundKind::Excluded, None),
        (fb::BoundKind(9), Some(&b"k"[..])),
    ] {
        let error = request_error(&scan_frame_with_bound(kind, key));
        assert_eq!(error.status(), Status::InvalidRequest, "{kind:?} {key:?}");
    }
    let request = decoded_request(&scan_frame_with_bound(fb::BoundKind::Unbounded, None));
    assert_eq!(request.op, Operation::Scan(Scan::all()));
}

#[test]
fn ok_response_without_result_is_rejected() {
    let mut fbb = FlatBufferBuilder::new();
    let args = fb::ResponseArgs {
        version: PROTOCOL_VERSION,
        request_id: 12,
        ..Default::default()
    };
    let root = fb::Response::create(&mut fbb, &args);
    fbb.finish_size_prefixed(root, Some("JUBE"));
    match decode_response(fbb.finished_data()) {
        Decoded::Error(error) => {
            assert_eq!(error.request_id(), Some(12));
            assert_eq!(error.status(), Status::MalformedFrame);
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn long_messages_are_cut_at_a_char_boundary() {
    let message = "é".repeat(MESSAGE_SIZE_MAX); // two bytes each
    let frame = encode_response(&Response::error(1, Status::Internal, message)).unwrap();
    let Err(failure) = decoded_response(&frame).outcome else {
        panic!("expected a failure")
    };
    assert_eq!(failure.message.len(), MESSAGE_SIZE_MAX);
    assert!(failure.message.chars().all(|c| c == 'é'));
}

#[test]
fn encoding_past_the_frame_limit_fails() {
    let values = vec![Some(vec![0; VALUE_SIZE_MAX]); FRAME_SIZE_MAX / VALUE_SIZE_MAX + 1];
    let error = encode_response(&Response::ok(1, Reply::MultiGet { values })).unwrap_err();
    assert!(
        matches!(error, EncodeError::FrameTooLarge { len } if len > FRAME_SIZE_MAX),
        "{error:?}"
    );
}

fn bytes(len_max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=len_max)
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=16)
}

fn entry() -> impl Strategy<Value = Entry> {
    (key(), bytes(32), proptest::option::of(1..=TTL_MS_MAX))
        .prop_map(|(key, value, ttl_ms)| Entry { key, value, ttl_ms })
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Ping),
        (key(), any::<bool>(), any::<bool>()).prop_map(|(key, with_version, with_ttl)| {
            Operation::Get(Get {
                key,
                with_version,
                with_ttl,
            })
        }),
        entry().prop_map(Operation::Put),
        key().prop_map(|key| Operation::Delete { key }),
        proptest::collection::vec(key(), 0..8).prop_map(|keys| Operation::MultiGet { keys }),
        proptest::collection::vec(entry(), 0..8)
            .prop_map(|entries| Operation::MultiPut { entries }),
        (
            bound(),
            bound(),
            0..=SCAN_LIMIT_MAX,
            any::<bool>(),
            proptest::option::of(bytes(32))
        )
            .prop_map(
                |(start, end, limit, reverse, continuation)| Operation::Scan(Scan {
                    start,
                    end,
                    limit,
                    reverse,
                    continuation
                })
            ),
        Just(Operation::Info),
        Just(Operation::Checkpoint),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let metric = ("[a-z_.]{1,12}", any::<u64>()).prop_map(|(name, value)| Metric { name, value });
    let section = ("[a-z0-9.]{1,12}", proptest::collection::vec(metric, 0..4))
        .prop_map(|(name, metrics)| InfoSection { name, metrics });
    let info = (
        ".{0,16}",
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(section, 0..4),
    )
        .prop_map(
            |(server_version, uptime_ms, shard_count, core_count, sections)| InfoReply {
                server_version,
                uptime_ms,
                shard_count,
                core_count,
                sections,
            },
        );
    let scan_entry = (key(), bytes(32)).prop_map(|(key, value)| Entry::new(key, value));
    prop_oneof![
        Just(Reply::Ping),
        (
            bytes(32),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(value, version, ttl_remaining_ms)| Reply::Get(GetReply {
                value,
                version,
                ttl_remaining_ms
            })),
        Just(Reply::Put),
        Just(Reply::Delete),
        proptest::collection::vec(proptest::option::of(bytes(16)), 0..8)
            .prop_map(|values| Reply::MultiGet { values }),
        Just(Reply::MultiPut),
        (
            proptest::collection::vec(scan_entry, 0..8),
            proptest::option::of(bytes(16))
        )
            .prop_map(|(entries, continuation)| Reply::Scan(ScanReply {
                entries,
                continuation
            })),
        info.prop_map(Reply::Info),
        any::<u64>().prop_map(|duration_us| Reply::Checkpoint(CheckpointReply { duration_us })),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let failure =
        (1..=u16::MAX, ".{0,32}").prop_map(|(code, message)| (Status::from_code(code), message));
    (
        any::<u64>(),
        prop_oneof![reply().prop_map(Ok), failure.prop_map(Err)],
    )
        .prop_map(|(id, outcome)| match outcome {
            Ok(reply) => Response::ok(id, reply),
            Err((status, message)) => Response::error(id, status, message),
        })
}

proptest! {
    #[test]
    fn request_encode_decode_is_identity(id in any::<u64>(), op in operation()) {
        let request = Request { id, op };
        let frame = encode_request(&request).unwrap();
        prop_assert_eq!(decode_request(&frame), Decoded::Frame { len: frame.len(), message: request });
    }

    #[test]
    fn response_encode_decode_is_identity(response in response()) {
        let frame = encode_response(&response).unwrap();
        // The bound a server reserves before encoding a large response holds.
        prop_assert!(frame.len() <= response.encoded_size_max(), "{} > bound", frame.len());
        let (buffer, offset) = encode_response_in_place(&response).unwrap();
        prop_assert_eq!(&buffer[offset..], &frame[..]);
        prop_assert_eq!(decode_response(&frame), Decoded::Frame { len: frame.len(), message: response });
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in bytes(256)) {
        check_decode_result(&bytes, decode_request(&bytes));
        check_decode_result(&bytes, decode_response(&bytes));
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        op in operation(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut frame = encode_request(&Request { id: 1, op }).unwrap();
        // Keep the length prefix honest so the bytes reach the verifier.
        for (index, byte) in edits {
            let at = FRAME_PREFIX_SIZE + index.index(frame.len() - FRAME_PREFIX_SIZE);
            frame[at] = byte;
        }
        check_decode_result(&frame, decode_request(&frame));
        check_decode_result(&frame, decode_response(&frame));
    }
}

/// Whatever decode says must be consistent with the bytes it saw.
fn check_decode_result<T>(bytes: &[u8], decoded: Decoded<T>) {
    match decoded {
        Decoded::Frame { len, .. } => assert!(len <= bytes.len() && len >= FRAME_PREFIX_SIZE + 8),
        Decoded::NeedMore(count) => {
            assert!(count >= 1 && bytes.len() + count <= FRAME_PREFIX_SIZE + FRAME_SIZE_MAX)
        }
        Decoded::Error(error) => {
            if let Some(len) = error.frame_len() {
                assert!(
                    len <= bytes.len(),
                    "{error:?} claims more bytes than it saw"
                );
            }
        }
    }
}
