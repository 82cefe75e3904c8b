//! Incremental parser for RESP client requests. No I/O.
//!
//! A client sends either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library sends) or an inline command, one line of
//! space-separated words with Redis's quoting rules (what telnet and
//! `redis-cli` in some modes send). Many requests may sit back to back in one
//! buffer (pipelining); `decode` parses the first and says how many bytes it
//! used, and the caller drops them and calls again.
//!
//! Invariants:
//! - `decode` never panics and is a pure function of its input: the caller
//!   may call it again on the same bytes plus more and get a consistent answer.
//! - Nothing is allocated from a length prefix before the bytes it announces
//!   are in the buffer: a first pass checks the whole request and records
//!   spans (one per argument actually present), and only a complete request
//!   is copied out. The first pass skips bulk bodies by length, so calling
//!   `decode` after every read costs O(arguments), not O(bytes).
//! - Every limit in `resp::constants` is enforced here; past one the answer
//!   is `Error`, after which the stream cannot be trusted and the server sends
//!   the error (in Redis's words) and closes the connection.
//! - `Command { args }` may be empty (`*0\r\n`, `*-1\r\n`, a blank line): Redis
//!   skips such requests silently, and so must the server, after consuming `len`.

use std::ops::Range;

use super::constants;
use super::number::parse_i64;

/// The result of trying to parse one request from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole request: its arguments (command name first) and the number of
    /// bytes of the buffer it occupied.
    Command {
        /// Bytes consumed from the front of the buffer.
        len: usize,
        /// The command name and its arguments; empty for an empty request.
        args: Vec<Vec<u8>>,
    },
    /// The buffer holds the start of a request but not all of it.
    NeedMore,
    /// The bytes are not a valid request; reply with the error and close.
    Error(RespError),
}

/// Why a request could not be parsed. `Display` gives the text Redis sends
/// (after `-ERR `) for the same fault; the fields say where, for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// `*<count>` is not a number, has a sign or leading zero, or is over the limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength {
        /// Byte offset of the header in the request.
        offset: usize,
    },
    /// `$<length>` is not a number, is negative, or is over `BULK_SIZE_MAX`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength {
        /// Byte offset of the header in the request.
        offset: usize,
    },
    /// An array element did not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*got))]
    ExpectedBulk {
        /// The byte found instead.
        got: u8,
        /// Its offset in the request.
        offset: usize,
    },
    /// `*<count>` line unterminated after `HEADER_SIZE_MAX` bytes.
    #[error("Protocol error: too big mbulk count string")]
    MultibulkHeaderTooLong,
    /// `$<length>` line unterminated after `HEADER_SIZE_MAX` bytes.
    #[error("Protocol error: too big bulk count string")]
    BulkHeaderTooLong {
        /// Byte offset of the header in the request.
        offset: usize,
    },
    /// A `\r` not followed by `\n`, or a bulk body not followed by CRLF.
    #[error("Protocol error: expected CRLF")]
    ExpectedCrlf {
        /// Byte offset where CRLF was expected.
        offset: usize,
    },
    /// An inline line with no newline after `INLINE_SIZE_MAX` bytes.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline line whose quotes do not balance, or a closing quote
    /// followed by something other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// An inline line containing a NUL byte (Redis silently cuts the line
    /// there; jube refuses it rather than run a truncated command).
    #[error("Protocol error: NUL byte in inline request")]
    InlineNul,
    /// The request would occupy more than `REQUEST_SIZE_MAX` bytes.
    #[error("Protocol error: too big request")]
    RequestTooLarge {
        /// Bytes the request claims, at least.
        size: usize,
    },
}

/// The limits the parser enforces. `Limits::DEFAULT` holds the values of
/// `resp::constants`; tests shrink them to reach the edges cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string.
    pub bulk_size_max: usize,
    /// Most elements in a request array.
    pub array_length_max: usize,
    /// Most bytes one request may occupy.
    pub request_size_max: usize,
    /// Longest inline line, newline excluded.
    pub inline_size_max: usize,
}

impl Limits {
    /// The limits of `resp::constants`.
    pub const DEFAULT: Limits = Limits {
        bulk_size_max: constants::BULK_SIZE_MAX,
        array_length_max: constants::ARRAY_LENGTH_MAX,
        request_size_max: constants::REQUEST_SIZE_MAX,
        inline_size_max: constants::INLINE_SIZE_MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Parses the first request in `buf` under the default limits.
pub fn decode(buf: &[u8]) -> Decoded {
    decode_with(buf, &Limits::DEFAULT)
}

/// Parses the first request in `buf` under `limits`.
pub fn decode_with(buf: &[u8], limits: &Limits) -> Decoded {
    match buf.first() {
        None => Decoded::NeedMore,
        Some(b'*') => decode_array(buf, limits),
        Some(_) => decode_inline(buf, limits),
    }
}

/// Appends `args` to `out` as a RESP array of bulk strings, the form clients
/// send. `decode` of the result gives `args` back.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// What reading one CRLF-terminated header line found.
enum Line {
    /// The line's content ends at `end`; the next line starts at `next`.
    Complete { end: usize, next: usize },
    /// No `\r` yet within the allowed length.
    Incomplete,
    /// No `\r` within the allowed length and the buffer already holds more.
    TooLong,
    /// A `\r` not followed by `\n`.
    BadTerminator { offset: usize },
}

/// Finds the CRLF ending the header line that starts at `start`, looking at
/// most `HEADER_SIZE_MAX` bytes ahead.
fn header_line(buf: &[u8], start: usize) -> Line {
    let window_end = buf
        .len()
        .min(start.saturating_add(constants::HEADER_SIZE_MAX + 1));
    let window = buf.get(start..window_end).unwrap_or(&[]);
    match window.iter().position(|&byte| byte == b'\r') {
        None if window.len() > constants::HEADER_SIZE_MAX => Line::TooLong,
        None => Line::Incomplete,
        Some(index) => {
            let end = start + index;
            match buf.get(end + 1) {
                None => Line::Incomplete,
                Some(b'\n') => Line::Complete { end, next: end + 2 },
                Some(_) => Line::BadTerminator { offset: end },
            }
        }
    }
}

/// What the first pass over an array request found.
enum Pass {
    /// A whole request of `len` bytes with one span per argument.
    Complete {
        len: usize,
        spans: Vec<Range<usize>>,
    },
    /// The request is not all in the buffer, which must hold at least
    /// `at_least` bytes before it can be (as far as its headers tell).
    Partial { at_least: usize },
}

fn decode_array(buf: &[u8], limits: &Limits) -> Decoded {
    match first_pass(buf, limits) {
        Ok(Pass::Complete { len, spans }) => {
            let args = spans
                .into_iter()
                .map(|span| buf.get(span).unwrap_or_default().to_vec())
                .collect();
            Decoded::Command { len, args }
        }
        Ok(Pass::Partial { .. }) => Decoded::NeedMore,
        Err(error) => Decoded::Error(error),
    }
}

/// Checks the array request at the front of `buf` without copying anything.
fn first_pass(buf: &[u8], limits: &Limits) -> Result<Pass, RespError> {
    let more = Pass::Partial {
        at_least: buf.len() + 1,
    };
    let (count_end, mut pos) = match header_line(buf, 0) {
        Line::Complete { end, next } => (end, next),
        Line::Incomplete => return Ok(more),
        Line::TooLong => return Err(RespError::MultibulkHeaderTooLong),
        Line::BadTerminator { offset } => return Err(RespError::ExpectedCrlf { offset }),
    };
    let count = match buf.get(1..count_end).and_then(parse_i64) {
        Some(count) if count <= 0 => {
            return Ok(Pass::Complete {
                len: pos,
                spans: Vec::new(),
            })
        }
        Some(count) if count as u64 <= limits.array_length_max as u64 => count as usize,
        _ => return Err(RespError::InvalidMultibulkLength { offset: 0 }),
    };
    // Grows only with arguments actually present in the buffer.
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(count.min(16));
    while spans.len() < count {
        match bulk(buf, pos, limits)? {
            Ok(span) => {
                pos = span.end + 2;
                spans.push(span);
            }
            Err(at_least) => return Ok(Pass::Partial { at_least }),
        }
    }
    Ok(Pass::Complete { len: pos, spans })
}

/// Bytes `buf` must hold at least before the request at its front can be
/// whole, as far as the headers already in `buf` tell: the end of a bulk
/// whose header has arrived, else one byte more than `buf` holds. A server
/// uses it to size (and budget) its read buffer for a large request once,
/// instead of growing it as the bytes arrive. When `decode` of `buf` gives
/// `NeedMore` the answer is above `buf.len()`; otherwise it means nothing.
pub fn size_hint(buf: &[u8]) -> usize {
    size_hint_with(buf, &Limits::DEFAULT)
}

/// As [`size_hint`], under `limits`.
pub fn size_hint_with(buf: &[u8], limits: &Limits) -> usize {
    match buf.first() {
        Some(b'*') => match first_pass(buf, limits) {
            Ok(Pass::Partial { at_least }) => at_least,
            _ => buf.len() + 1,
        },
        _ => buf.len() + 1,
    }
}

/// Checks the bulk string starting at `pos` and returns the span of its body,
/// or, if the buffer ends before its CRLF, how many bytes the buffer must
/// hold at least before it can be whole.
fn bulk(buf: &[u8], pos: usize, limits: &Limits) -> Result<Result<Range<usize>, usize>, RespError> {
    if pos > limits.request_size_max {
        return Err(RespError::RequestTooLarge { size: pos });
    }
    let unknown = Err(buf.len() + 1);
    match buf.get(pos) {
        None => return Ok(unknown),
        Some(b'$') => {}
        Some(&got) => return Err(RespError::ExpectedBulk { got, offset: pos }),
    }
    let (length_end, body_start) = match header_line(buf, pos) {
        Line::Complete { end, next } => (end, next),
        Line::Incomplete => return Ok(unknown),
        Line::TooLong => return Err(RespError::BulkHeaderTooLong { offset: pos }),
        Line::BadTerminator { offset } => return Err(RespError::ExpectedCrlf { offset }),
    };
    let length = match buf.get(pos + 1..length_end).and_then(parse_i64) {
        Some(length) if length >= 0 && length as u64 <= limits.bulk_size_max as u64 => {
            length as usize
        }
        _ => return Err(RespError::InvalidBulkLength { offset: pos }),
    };
    let body_end = body_start + length;
    if body_end + 2 > limits.request_size_max {
        return Err(RespError::RequestTooLarge { size: body_end + 2 });
    }
    match buf.get(body_end..body_end + 2) {
        None if buf.len() <= body_end + 1 => Ok(Err(body_end + 2)),
        Some(b"\r\n") => Ok(Ok(body_start..body_end)),
        _ => Err(RespError::ExpectedCrlf { offset: body_end }),
    }
}

fn decode_inline(buf: &[u8], limits: &Limits) -> Decoded {
    // The newline may sit just past the limit: the limit counts content.
    let window = buf.get(..buf.len().min(limits.inline_size_max.saturating_add(1)));
    let newline = window
        .unwrap_or_default()
        .iter()
        .position(|&byte| byte == b'\n');
    let Some(newline) = newline else {
        return if buf.len() > limits.inline_size_max {
            Decoded::Error(RespError::InlineTooLong)
        } else {
            Decoded::NeedMore
        };
    };
    let mut line = buf.get(..newline).unwrap_or_default();
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    if line.contains(&0) {
        return Decoded::Error(RespError::InlineNul);
    }
    match split_inline(line) {
        Ok(args) => Decoded::Command {
            len: newline + 1,
            args,
        },
        Err(error) => Decoded::Error(error),
    }
}

/// C's `isspace`, which Redis uses to skip blanks between words.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits an inline line into words with the rules of Redis's
/// `sdssplitargs`: blanks separate words; `"..."` takes the escapes `\n \r
/// \t \b \a \xHH` and `\<any>`; `'...'` takes only `\'`; a quote may open in
/// the middle of a word (`a"b c"` is `ab c`) but a closing quote must be
/// followed by a blank or the end of the line.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).copied().is_some_and(is_space) {
            pos += 1;
        }
        if pos >= line.len() {
            return Ok(args);
        }
        let (word, next) = split_word(line, pos)?;
        args.push(word);
        pos = next;
    }
}

/// Reads one word starting at `pos`; returns it and the position after it.
fn split_word(line: &[u8], mut pos: usize) -> Result<(Vec<u8>, usize), RespError> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Double,
        Single,
    }
    let mut quote = Quote::None;
    let mut word = Vec::new();
    loop {
        let byte = line.get(pos).copied();
        let next = line.get(pos + 1).copied();
        match quote {
            Quote::Double => match (byte, next) {
                (None, _) => return Err(RespError::UnbalancedQuotes),
                (Some(b'\\'), Some(b'x')) if hex_pair(line, pos + 2).is_some() => {
                    word.extend(hex_pair(line, pos + 2));
                    pos += 3;
                }
                (Some(b'\\'), Some(escaped)) => {
                    word.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    pos += 1;
                }
                (Some(b'"'), next) => return closing_quote(word, next, pos),
                (Some(other), _) => word.push(other),
            },
            Quote::Single => match (byte, next) {
                (None, _) => return Err(RespError::UnbalancedQuotes),
                (Some(b'\\'), Some(b'\'')) => {
                    word.push(b'\'');
                    pos += 1;
                }
                (Some(b'\''), next) => return closing_quote(word, next, pos),
                (Some(other), _) => word.push(other),
            },
            Quote::None => match byte {
                None | Some(b' ' | b'\n' | b'\r' | b'\t' | 0) => return Ok((word, pos)),
                Some(b'"') => quote = Quote::Double,
                Some(b'\'') => quote = Quote::Single,
                Some(other) => word.push(other),
            },
        }
        pos += 1;
    }
}

/// A closing quote at `pos` ends the word only if a blank or the end follows.
fn closing_quote(
    word: Vec<u8>,
    next: Option<u8>,
    pos: usize,
) -> Result<(Vec<u8>, usize), RespError> {
    match next {
        Some(byte) if !is_space(byte) => Err(RespError::UnbalancedQuotes),
        _ => Ok((word, pos + 1)),
    }
}

/// The byte written as two hex digits at `pos`, if there are two.
fn hex_pair(line: &[u8], pos: usize) -> Option<u8> {
    let high = char::from(*line.get(pos)?).to_digit(16)?;
    let low = char::from(*line.get(pos + 1)?).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}
