//! A small RESP2 encoder and parser: just what the load generator sends
//! (commands as arrays of bulk strings) and every reply type Redis may answer
//! with, so any reply, even an unexpected one, is framed correctly.
//!
//! Like jube-protocol's framing, parsing does no I/O: `parse(&[u8])` returns
//! a whole value and its length, `NeedMore`, or a protocol error, and never
//! panics whatever the bytes.
//!
//! Invariants:
//! - `Parsed::Value { len, .. }` is exactly the bytes of that reply, so the
//!   caller drops them and parses the next;
//! - bulk lengths and array counts are bounded (`BULK_SIZE_MAX`,
//!   `ARRAY_COUNT_MAX`, `NESTING_MAX`) so a corrupt stream cannot make the
//!   parser allocate or recurse without limit.

use std::io::Write;

/// Largest bulk string accepted: Redis's own proto-max-bulk-len default.
pub const BULK_SIZE_MAX: usize = 512 * 1024 * 1024;
/// Most elements in one array reply.
pub const ARRAY_COUNT_MAX: usize = 1024 * 1024;
/// Deepest nesting of arrays.
pub const NESTING_MAX: usize = 8;

/// A parsed reply, borrowing its bytes from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    /// `None` is the null bulk string (`$-1`): GET of a missing key.
    Bulk(Option<&'a [u8]>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Value<'a>>>),
}

/// What `parse` found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    Value {
        len: usize,
        value: Value<'a>,
    },
    /// The buffer ends inside a reply: read more and parse again.
    NeedMore,
}

/// The bytes are not RESP2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RESP protocol error at byte {offset}: {reason}")]
pub struct ParseError {
    pub offset: usize,
    pub reason: String,
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    write_header(out, b'*', args.len());
    for arg in args {
        write_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn write_header(out: &mut Vec<u8>, kind: u8, count: usize) {
    out.push(kind);
    // Writing into a Vec cannot fail.
    write!(out, "{count}\r\n").expect("write to Vec");
}

/// Parses the first reply of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, ParseError> {
    match parse_at(buf, 0, 0)? {
        Some((value, end)) => Ok(Parsed::Value { len: end, value }),
        None => Ok(Parsed::NeedMore),
    }
}

/// The line starting at `start` without its CRLF, and the offset after it;
/// `None` if the CRLF has not arrived.
fn line(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = buf.get(start..).unwrap_or_default();
    let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    if lf == 0 || rest[lf - 1] != b'\r' {
        return Err(ParseError {
            offset: start + lf,
            reason: "line feed without carriage return".into(),
        });
    }
    Ok(Some((&rest[..lf - 1], start + lf + 1)))
}

fn parse_integer(text: &[u8], offset: usize) -> Result<i64, ParseError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| ParseError {
            offset,
            reason: format!("bad integer {:?}", String::from_utf8_lossy(text)),
        })
}

/// A length or count: -1 (null) or 0..=max.
fn parse_length(text: &[u8], offset: usize, max: usize) -> Result<Option<usize>, ParseError> {
    let length = parse_integer(text, offset)?;
    if length == -1 {
        return Ok(None);
    }
    match usize::try_from(length) {
        Ok(length) if length <= max => Ok(Some(length)),
        _ => Err(ParseError {
            offset,
            reason: format!("length {length} is outside -1..={max}"),
        }),
    }
}

type Step<'a> = Result<Option<(Value<'a>, usize)>, ParseError>;

fn parse_at(buf: &[u8], start: usize, depth: usize) -> Step<'_> {
    let Some(kind) = buf.get(start).copied() else {
        return Ok(None);
    };
    let Some((text, after)) = line(buf, start + 1)? else {
        return Ok(None);
    };
    let offset = start + 1;
    match kind {
        b'+' => Ok(Some((Value::Simple(text), after))),
        b'-' => Ok(Some((Value::Error(text), after))),
        b':' => Ok(Some((Value::Integer(parse_integer(text, offset)?), after))),
        b'$' => {
            let Some(size) = parse_length(text, offset, BULK_SIZE_MAX)? else {
                return Ok(Some((Value::Bulk(None), after)));
            };
            let end = after + size;
            let Some(terminator) = buf.get(end..end + 2) else {
                return Ok(None);
            };
            if terminator != b"\r\n" {
                return Err(ParseError {
                    offset: end,
                    reason: "bulk string not followed by CRLF".into(),
                });
            }
            Ok(Some((Value::Bulk(Some(&buf[after..end])), end + 2)))
        }
        b'*' => {
            let Some(count) = parse_length(text, offset, ARRAY_COUNT_MAX)? else {
                return Ok(Some((Value::Array(None), after)));
            };
            if depth >= NESTING_MAX {
                return Err(ParseError {
                    offset: start,
                    reason: format!("arrays nested deeper than {NESTING_MAX}"),
                });
            }
            // Do not trust `count` for the allocation: it is bounded by the
            // bytes present, at least 3 per element.
            let mut items = Vec::with_capacity(count.min(buf.len() / 3));
            let mut next = after;
            for _ in 0..count {
                let Some((item, end)) = parse_at(buf, next, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                next = end;
            }
            Ok(Some((Value::Array(Some(items)), next)))
        }
        other => Err(ParseError {
            offset: start,
            reason: format!("unknown reply type byte 0x{other:02x}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> (Value<'_>, usize) {
        match parse(buf).expect("valid RESP") {
            Parsed::Value { len, value } => (value, len),
            Parsed::NeedMore => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&[b"SET", b"k1", b"v\r\n1"], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$4\r\nv\r\n1\r\n");
        // A command is itself a RESP value: it parses back to its parts.
        let (value, len) = whole(&out);
        assert_eq!(len, out.len());
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Bulk(Some(b"SET")),
                Value::Bulk(Some(b"k1")),
                Value::Bulk(Some(b"v\r\n1")),
            ]))
        );
    }

    #[test]
    fn every_reply_type_parses() {
        let cases: Vec<(&[u8], Value)> = vec![
            (b"+OK\r\n", Value::Simple(b"OK")),
            (b"-ERR wrong\r\n", Value::Error(b"ERR wrong")),
            (b":-42\r\n", Value::Integer(-42)),
            (b"$5\r\nhello\r\n", Value::Bulk(Some(b"hello"))),
            (b"$0\r\n\r\n", Value::Bulk(Some(b""))),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*2\r\n:1\r\n*1\r\n+x\r\n",
                Value::Array(Some(vec![
                    Value::Integer(1),
                    Value::Array(Some(vec![Value::Simple(b"x")])),
                ])),
            ),
        ];
        for (bytes, expected) in cases {
            let (value, len) = whole(bytes);
            assert_eq!(value, expected);
            assert_eq!(len, bytes.len());
        }
    }

    #[test]
    fn every_prefix_needs_more_and_pipelined_replies_split() {
        let stream: &[u8] = b"+OK\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\na\r\n:7\r\n-ERR x\r\n";
        // Any cut inside the first reply asks for more rather than misparsing.
        let mut offset = 0;
        let mut replies = 0;
        while offset < stream.len() {
            let (_, len) = whole(&stream[offset..]);
            for cut in 0..len {
                assert_eq!(
                    parse(&stream[offset..offset + cut]),
                    Ok(Parsed::NeedMore),
                    "prefix of {cut} bytes at {offset}"
                );
            }
            offset += len;
            replies += 1;
        }
        assert_eq!(replies, 5);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b"?what\r\n"[..],
            b"+OK\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999999999999\r\n",
            b"*-5\r\n",
        ] {
            assert!(
                parse(bytes).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = "*1\r\n".repeat(NESTING_MAX + 1) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
        // Every byte string either parses, needs more, or errors.
        let mut state = 0x1234_5678u32;
        for _ in 0..2000 {
            let alphabet = b"+-:$*\r\n0123-ab";
            let bytes: Vec<u8> = (0..16)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    alphabet[(state >> 16) as usize % alphabet.len()]
                })
                .collect();
            let _ = parse(&bytes);
        }
    }
}
