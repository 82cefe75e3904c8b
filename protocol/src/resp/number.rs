//! Numbers parsed and printed as Redis does, for arguments and for the
//! read-modify-write commands (INCR family, INCRBYFLOAT).
//!
//! - Integers follow `string2ll`: optional `-`, no `+`, no leading zeros, no
//!   blanks, `-0` refused, within i64.
//! - Floats follow `string2ld` in spirit: the whole argument must be a
//!   number, no leading blank, `inf` allowed, NaN refused, and a finite
//!   literal that overflows or underflows to zero refused.
//! - INCRBYFLOAT prints with `%.17f` and strips trailing zeros (Redis's
//!   `LD_STR_HUMAN`), so `10.5` stays `10.5` and `3.0e3` becomes `3000`.
//!
//! Difference from Redis (docs/resp.md): jube computes INCRBYFLOAT in IEEE
//! double; Redis on x86-64 uses 80-bit long double, so results can differ
//! past the 15th significant digit (Redis: `0.1` + `0.2` = `0.3`; jube:
//! `0.30000000000000004`), and hex floats (`0x1p3`) are refused.

/// `-ERR` text for an argument that must be an integer.
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
/// `-ERR` text for an argument or value that must be a float.
pub const NOT_A_FLOAT: &str = "ERR value is not a valid float";
/// `-ERR` text for INCR, INCRBY, DECR, DECRBY past the i64 range.
pub const INCR_OVERFLOW: &str = "ERR increment or decrement would overflow";
/// `-ERR` text for `DECRBY key -9223372036854775808`, whose negation overflows.
pub const DECREMENT_OVERFLOW: &str = "ERR decrement would overflow";
/// `-ERR` text for INCRBYFLOAT whose result is not finite.
pub const FLOAT_NOT_FINITE: &str = "ERR increment would produce NaN or Infinity";

/// Longest float literal Redis accepts (`MAX_LONG_DOUBLE_CHARS`).
const FLOAT_SIZE_MAX: usize = 5 * 1024;

/// Parses `bytes` as Redis's `string2ll` does.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [first, ..] if !(b'1'..=b'9').contains(first) => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN parses without overflow.
    let mut value: i64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(byte - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses `bytes` as a float argument or stored value (see the module doc).
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    if bytes.is_empty() || bytes.len() >= FLOAT_SIZE_MAX {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    let literal_infinite = text.bytes().any(|b| b.eq_ignore_ascii_case(&b'i'));
    if value.is_infinite() && !literal_infinite {
        return None;
    }
    if value == 0.0 {
        let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
        if mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
            return None;
        }
    }
    Some(value)
}

/// `current + delta` for INCR/INCRBY/DECR/DECRBY (pass `-delta` for the
/// DECR forms through `decrement`), or Redis's overflow error.
pub fn increment(current: i64, delta: i64) -> Result<i64, &'static str> {
    current.checked_add(delta).ok_or(INCR_OVERFLOW)
}

/// The delta DECRBY applies: `-decrement`, or Redis's error for i64::MIN.
pub fn decrement(decrement: i64) -> Result<i64, &'static str> {
    decrement.checked_neg().ok_or(DECREMENT_OVERFLOW)
}

/// `current + increment` for INCRBYFLOAT, or Redis's error if not finite.
pub fn increment_float(current: f64, increment: f64) -> Result<f64, &'static str> {
    let sum = current + increment;
    if sum.is_finite() {
        Ok(sum)
    } else {
        Err(FLOAT_NOT_FINITE)
    }
}

/// Formats an INCRBYFLOAT result as Redis stores and returns it: `%.17f`,
/// trailing zeros and a trailing point removed, `-0` written `0`.
pub fn format_float_human(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let mut text = format!("{value:.17}");
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}
