//! Replies and their RESP2 and RESP3 encodings. No I/O.
//!
//! A connection speaks RESP2 until `HELLO 3`; the server builds one `Reply`
//! per command and encodes it in the connection's version. RESP3-only types
//! map down to RESP2 exactly as Redis's `networking.c` does:
//!
//! | Reply          | RESP3                 | RESP2                          |
//! |----------------|-----------------------|--------------------------------|
//! | `Null`         | `_`                   | `$-1` (null bulk)              |
//! | `Bulk(None)`   | `_`                   | `$-1`                          |
//! | `Array(None)`  | `_`                   | `*-1` (null array)             |
//! | `Double`       | `,1.5`                | bulk string `1.5`              |
//! | `Boolean`      | `#t` / `#f`           | `:1` / `:0`                    |
//! | `Map`          | `%n` then key, value… | `*2n`, keys and values flat    |
//! | `Set`          | `~n`                  | `*n`                           |
//! | `Verbatim`     | `=len` `txt:` text    | bulk string of the text        |
//! | `Push`         | `>n`                  | `*n`                           |
//!
//! Invariant: simple strings and errors never contain CR or LF on the wire;
//! the encoder replaces them with spaces, as Redis's `addReplyError` does, so
//! no message can break the framing.

use std::borrow::Cow;

/// The RESP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RespVersion {
    /// The default until `HELLO 3`.
    #[default]
    Resp2,
    /// After `HELLO 3`.
    Resp3,
}

/// One reply to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`: a short status such as `OK` or `PONG`.
    Simple(Cow<'static, str>),
    /// `-CODE message`: the text starts with the error code (`ERR`,
    /// `WRONGTYPE`, `NOPROTO`, ...).
    Error(Cow<'static, str>),
    /// `:n`.
    Integer(i64),
    /// `$len` and bytes, or the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` and elements, or the null array.
    Array(Option<Vec<Reply>>),
    /// A RESP3 double; a bulk string in RESP2.
    Double(f64),
    /// A RESP3 map; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A RESP3 set; an array in RESP2.
    Set(Vec<Reply>),
    /// The RESP3 null; the null bulk string in RESP2.
    Null,
    /// A RESP3 boolean; `:1` or `:0` in RESP2.
    Boolean(bool),
    /// A RESP3 verbatim string with its three-letter format (`txt`, `mkd`);
    /// a bulk string in RESP2. `INFO` and `CLIENT INFO` reply with one.
    Verbatim {
        /// The format, such as `*b"txt"`.
        format: [u8; 3],
        /// The text.
        text: Vec<u8>,
    },
    /// A RESP3 push message (out-of-band); an array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple(Cow::Borrowed("OK"));

    /// A bulk string of `bytes`.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(Some(bytes.into()))
    }

    /// An error reply; `message` starts with its code, e.g. `ERR syntax error`.
    pub fn error(message: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(message.into())
    }

    /// An array of bulk strings.
    pub fn bulks<B: Into<Vec<u8>>>(items: impl IntoIterator<Item = B>) -> Reply {
        Reply::Array(Some(items.into_iter().map(Reply::bulk).collect()))
    }

    /// Appends the encoding of this reply in `version` to `out`.
    pub fn encode(&self, version: RespVersion, out: &mut Vec<u8>) {
        let resp3 = version == RespVersion::Resp3;
        match self {
            Reply::Simple(text) => line(out, b'+', &sanitize(text)),
            Reply::Error(text) => line(out, b'-', &sanitize(text)),
            Reply::Integer(value) => line(out, b':', value.to_string().as_bytes()),
            Reply::Bulk(Some(bytes)) => bulk(out, b'$', bytes),
            Reply::Bulk(None) | Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Bulk(None) | Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(None) if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => aggregate(out, b'*', items, version),
            Reply::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, version),
            Reply::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items, version),
            Reply::Double(value) if resp3 => line(out, b',', format_double(*value).as_bytes()),
            Reply::Double(value) => bulk(out, b'$', format_double(*value).as_bytes()),
            Reply::Boolean(value) if resp3 => line(out, b'#', if *value { b"t" } else { b"f" }),
            Reply::Boolean(value) => line(out, b':', if *value { b"1" } else { b"0" }),
            Reply::Map(pairs) => {
                if resp3 {
                    line(out, b'%', pairs.len().to_string().as_bytes());
                } else {
                    line(out, b'*', (2 * pairs.len()).to_string().as_bytes());
                }
                for (key, value) in pairs {
                    key.encode(version, out);
                    value.encode(version, out);
                }
            }
            Reply::Verbatim { format, text } if resp3 => {
                let mut body = Vec::with_capacity(4 + text.len());
                body.extend_from_slice(format);
                body.push(b':');
                body.extend_from_slice(text);
                bulk(out, b'=', &body);
            }
            Reply::Verbatim { text, .. } => bulk(out, b'$', text),
        }
    }

    /// An upper bound on the bytes `encode` appends, in either version: a
    /// server reserves this much of its reply budget before encoding a large
    /// reply into a buffer of its own. Each line (prefix, at most 21 bytes
    /// of number or header, CRLF) counts `LINE_SIZE_MAX`; a double's text is
    /// at most 24 bytes.
    pub fn encoded_size_max(&self) -> usize {
        const LINE_SIZE_MAX: usize = 24;
        const DOUBLE_TEXT_SIZE_MAX: usize = 32;
        match self {
            Reply::Simple(text) | Reply::Error(text) => text.len() + 3,
            Reply::Integer(_) | Reply::Boolean(_) | Reply::Null | Reply::Bulk(None) => {
                LINE_SIZE_MAX
            }
            Reply::Array(None) => LINE_SIZE_MAX,
            Reply::Bulk(Some(bytes)) => LINE_SIZE_MAX + bytes.len() + 2,
            Reply::Double(_) => 2 * LINE_SIZE_MAX + DOUBLE_TEXT_SIZE_MAX,
            Reply::Verbatim { text, .. } => LINE_SIZE_MAX + 4 + text.len() + 2,
            Reply::Array(Some(items)) | Reply::Set(items) | Reply::Push(items) => {
                LINE_SIZE_MAX + items.iter().map(Reply::encoded_size_max).sum::<usize>()
            }
            Reply::Map(pairs) => {
                LINE_SIZE_MAX
                    + pairs
                        .iter()
                        .map(|(key, value)| key.encoded_size_max() + value.encoded_size_max())
                        .sum::<usize>()
            }
        }
    }

    /// The encoding of this reply in `version`, as a new buffer.
    pub fn to_bytes(&self, version: RespVersion) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(version, &mut out);
        out
    }
}

fn line(out: &mut Vec<u8>, prefix: u8, content: &[u8]) {
    out.push(prefix);
    out.extend_from_slice(content);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, prefix: u8, bytes: &[u8]) {
    line(out, prefix, bytes.len().to_string().as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, prefix: u8, items: &[Reply], version: RespVersion) {
    line(out, prefix, items.len().to_string().as_bytes());
    for item in items {
        item.encode(version, out);
    }
}

/// The bytes of `text` with CR and LF turned into spaces.
fn sanitize(text: &str) -> Cow<'_, [u8]> {
    if text.bytes().any(|byte| byte == b'\r' || byte == b'\n') {
        Cow::Owned(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(text.as_bytes())
    }
}

/// Formats a double as Redis 7.2+ does for RESP3 doubles and RESP2 bulk
/// doubles: the shortest digits that read back to the same value, laid out
/// as C's `%.17g` would (fixed notation for exponents -5 < e < 17, otherwise
/// `d.ddde+XX`), `inf`, `-inf` and `nan` spelled so.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-7", "-5e300".
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-5 < exponent) && exponent < 17 {
        let point = exponent + 1;
        let fixed = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}", "0".repeat(point as usize - digits.len()))
        } else {
            let (whole, fraction) = digits.split_at(point as usize);
            format!("{whole}.{fraction}")
        };
        format!("{sign}{fixed}")
    } else {
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{mantissa}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}
