//! The RESP request parser: arrays and inline commands, every split point,
//! pipelining, limits (shrunk through `Limits` to stay fast), and the error
//! texts Redis 7.0 sends for the same bytes (observed with a real
//! redis-server 7.0.15; each is recorded beside its input). Property tests
//! check that decode never panics on random bytes and that decoding what
//! `encode_command` wrote gives the words back, using all of the bytes.

use jube_protocol::resp::frame::{
    decode, decode_with, encode_command, size_hint, split_inline, Decoded, Limits, RespError,
};
use proptest::prelude::*;

fn words(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|word| word.as_bytes().to_vec()).collect()
}

fn command(buf: &[u8]) -> (usize, Vec<Vec<u8>>) {
    match decode(buf) {
        Decoded::Command { len, args } => (len, args),
        other => panic!("expected a command from {buf:?}, got {other:?}"),
    }
}

fn error(buf: &[u8]) -> RespError {
    error_with(buf, &Limits::DEFAULT)
}

fn error_with(buf: &[u8], limits: &Limits) -> RespError {
    match decode_with(buf, limits) {
        Decoded::Error(error) => error,
        other => panic!("expected an error from {buf:?}, got {other:?}"),
    }
}

#[test]
fn array_round_trip() {
    let args = words(&["SET", "key", "", "a\r\nb"]);
    let mut buf = Vec::new();
    encode_command(&args, &mut buf);
    assert_eq!(
        buf,
        b"*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
    );
    assert_eq!(command(&buf), (buf.len(), args));
}

#[test]
fn every_split_point_needs_more() {
    let mut buf = Vec::new();
    encode_command(&words(&["MSET", "a", "1", "bb", "22"]), &mut buf);
    let inline = b"set \"a b\" 'c'\r\n";
    for whole in [&buf[..], &inline[..]] {
        for split in 0..whole.len() {
            assert_eq!(
                decode(&whole[..split]),
                Decoded::NeedMore,
                "split at {split} of {whole:?}"
            );
        }
        assert_eq!(command(whole).0, whole.len());
    }
}

#[test]
fn pipelined_requests_parse_one_at_a_time() {
    let mut buf = Vec::new();
    encode_command(&words(&["PING"]), &mut buf);
    buf.extend_from_slice(b"*0\r\n*-1\r\n\r\nGET k\n");
    encode_command(&words(&["ECHO", "x"]), &mut buf);
    let mut seen = Vec::new();
    let mut rest = &buf[..];
    while !rest.is_empty() {
        let (len, args) = command(rest);
        seen.push(args);
        rest = &rest[len..];
    }
    let empty: Vec<Vec<u8>> = Vec::new();
    assert_eq!(
        seen,
        vec![
            words(&["PING"]),
            empty.clone(),
            empty.clone(),
            empty,
            words(&["GET", "k"]),
            words(&["ECHO", "x"])
        ]
    );
}

#[test]
fn inline_quoting_follows_sdssplitargs() {
    let cases: &[(&[u8], &[&str])] = &[
        (b"get key", &["get", "key"]),
        (b"  set   a\tb  ", &["set", "a", "b"]),
        (b"set \"a b\" 'c d'", &["set", "a b", "c d"]),
        (
            b"echo \"\\x41\\x7a\\n\\t\\\\\\\"q\"",
            &["echo", "Az\n\t\\\"q"],
        ),
        (b"echo \"\\xZZ\"", &["echo", "xZZ"]),
        (b"echo 'it\\'s' 'a\\nb'", &["echo", "it's", "a\\nb"]),
        (b"echo a\"b c\"", &["echo", "ab c"]),
        (b"echo \"\"", &["echo", ""]),
        (b"echo a\x0bb", &["echo", "a\x0bb"]),
        (b"", &[]),
        (b"   ", &[]),
    ];
    for (line, expected) in cases {
        assert_eq!(
            split_inline(line).as_ref(),
            Ok(&words(expected)),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    for line in [
        &b"get \"a"[..],
        b"get 'a",
        b"get \"a\"b",
        b"get 'a'b",
        b"echo \"a\\",
    ] {
        assert_eq!(
            split_inline(line),
            Err(RespError::UnbalancedQuotes),
            "{line:?}"
        );
    }
}

#[test]
fn inline_line_endings() {
    assert_eq!(command(b"PING\n"), (5, words(&["PING"])));
    assert_eq!(command(b"PING\r\n"), (6, words(&["PING"])));
    assert_eq!(
        command(b"echo \"a\"\r\nPING\r\n"),
        (10, words(&["echo", "a"]))
    );
    assert_eq!(decode(b"PING\r"), Decoded::NeedMore);
    assert_eq!(error(b"get a\0b\r\n"), RespError::InlineNul);
}

/// Each input with the reply Redis 7.0.15 sent before closing the connection.
#[test]
fn protocol_errors_match_redis() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"*2\r\n$3\r\nGET\r\n$-1\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n:1\r\n",
            "Protocol error: expected '$', got ':'",
        ),
        (b"*abc\r\n", "Protocol error: invalid multibulk length"),
        (
            b"*3000000000\r\n",
            "Protocol error: invalid multibulk length",
        ),
        (b"*01\r\n", "Protocol error: invalid multibulk length"),
        (
            b"*1\r\n$600000000\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$04\r\nPING\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$+4\r\nPING\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"get \"a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"get \"a\"b\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
    ];
    for (input, redis) in cases {
        assert_eq!(error(input).to_string(), *redis, "{input:?}");
    }
}

/// Where jube is stricter than Redis (which skips two bytes unchecked after
/// a bulk and after a header's `\r`).
#[test]
fn missing_crlf_is_an_error() {
    assert_eq!(
        error(b"*1\r\n$4\r\nPINGxx"),
        RespError::ExpectedCrlf { offset: 12 }
    );
    assert_eq!(error(b"*1\rx"), RespError::ExpectedCrlf { offset: 2 });
    assert_eq!(error(b"*1\r\n$4\rx"), RespError::ExpectedCrlf { offset: 6 });
    assert_eq!(decode(b"*1\r\n$4\r\nPING\r"), Decoded::NeedMore);
}

#[test]
fn header_lines_are_bounded() {
    let long = format!("*{}", "1".repeat(40));
    assert_eq!(error(long.as_bytes()), RespError::MultibulkHeaderTooLong);
    assert_eq!(decode(&long.as_bytes()[..32]), Decoded::NeedMore);
    let long = format!("*1\r\n${}", "1".repeat(40));
    assert_eq!(
        error(long.as_bytes()),
        RespError::BulkHeaderTooLong { offset: 4 }
    );
    assert_eq!(
        RespError::MultibulkHeaderTooLong.to_string(),
        "Protocol error: too big mbulk count string"
    );
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        bulk_size_max: 4,
        array_length_max: 3,
        request_size_max: 40,
        inline_size_max: 8,
    };
    // At each limit: accepted.
    assert!(matches!(
        decode_with(b"*1\r\n$4\r\nabcd\r\n", &limits),
        Decoded::Command { .. }
    ));
    assert!(matches!(
        decode_with(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", &limits),
        Decoded::Command { .. }
    ));
    assert!(matches!(
        decode_with(b"12345678\n", &limits),
        Decoded::Command { .. }
    ));
    assert!(matches!(
        decode_with(b"1234567\r\n", &limits),
        Decoded::Command { .. }
    ));
    // One past: refused before the bytes arrive.
    assert_eq!(
        error_with(b"*1\r\n$5\r\n", &limits),
        RespError::InvalidBulkLength { offset: 4 }
    );
    assert_eq!(
        error_with(b"*4\r\n", &limits),
        RespError::InvalidMultibulkLength { offset: 0 }
    );
    assert_eq!(decode_with(b"12345678", &limits), Decoded::NeedMore);
    assert_eq!(error_with(b"123456789", &limits), RespError::InlineTooLong);
    assert_eq!(
        RespError::InlineTooLong.to_string(),
        "Protocol error: too big inline request"
    );
    let limits = Limits {
        request_size_max: 20,
        ..limits
    };
    assert_eq!(
        error_with(b"*3\r\n$4\r\nabcd\r\n$4\r\n", &limits),
        RespError::RequestTooLarge { size: 24 }
    );
}

#[test]
fn default_limits_refuse_a_huge_bulk_without_its_bytes() {
    let huge = format!(
        "*1\r\n${}\r\n",
        jube_protocol::resp::constants::BULK_SIZE_MAX + 1
    );
    assert_eq!(
        error(huge.as_bytes()),
        RespError::InvalidBulkLength { offset: 4 }
    );
    let many = format!(
        "*{}\r\n",
        jube_protocol::resp::constants::ARRAY_LENGTH_MAX + 1
    );
    assert_eq!(
        error(many.as_bytes()),
        RespError::InvalidMultibulkLength { offset: 0 }
    );
    // A large but legal count with few elements present allocates nothing big.
    let promised = format!(
        "*{}\r\n$1\r\na\r\n",
        jube_protocol::resp::constants::ARRAY_LENGTH_MAX
    );
    assert_eq!(decode(promised.as_bytes()), Decoded::NeedMore);
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Decoded::Command { len, .. } = decode(&bytes) {
            prop_assert!(len <= bytes.len() && len > 0);
        }
    }

    #[test]
    fn decode_never_panics_on_resp_like_input(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                Just(b"-1".to_vec()), Just(b"3".to_vec()), Just(b"\"".to_vec()),
                Just(b"'".to_vec()), Just(b"\\".to_vec()), Just(b" ".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..4),
            ],
            0..24,
        )
    ) {
        let bytes: Vec<u8> = parts.concat();
        let limits = Limits { bulk_size_max: 8, array_length_max: 4, request_size_max: 64, inline_size_max: 16 };
        if let Decoded::Command { len, .. } = decode_with(&bytes, &limits) {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn encode_then_decode_is_identity(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut buf = Vec::new();
        encode_command(&args, &mut buf);
        let whole = buf.len();
        buf.extend_from_slice(&tail);
        prop_assert_eq!(decode(&buf), Decoded::Command { len: whole, args });
        prop_assert_eq!(decode(&buf[..whole - 1]), Decoded::NeedMore);
        // Every prefix's size hint is above what it holds and never past the request's end.
        for cut in 0..whole {
            let hint = size_hint(&buf[..cut]);
            prop_assert!(hint > cut && hint <= whole, "cut {} hint {} whole {}", cut, hint, whole);
        }
    }
}

#[test]
fn size_hint_names_the_end_of_a_large_bulk_once_its_header_arrives() {
    let value = vec![b'v'; 1 << 20];
    let mut buf = Vec::new();
    encode_command(&[b"SET".as_slice(), b"key", &value], &mut buf);
    let header_end = buf.len() - value.len() - 2;
    // Before the value's header: one byte more is all that is known.
    assert_eq!(size_hint(&buf[..header_end - 3]), header_end - 2);
    // From the header on: the whole request.
    assert_eq!(size_hint(&buf[..header_end]), buf.len());
    assert_eq!(size_hint(&buf[..header_end + 1000]), buf.len());
    // Inline commands say nothing about their length.
    assert_eq!(size_hint(b"SET a"), 6);
}
