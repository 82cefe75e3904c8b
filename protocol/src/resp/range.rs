//! GETRANGE and SETRANGE index arithmetic, as pure functions over lengths.
//!
//! GETRANGE follows Redis 7.0's `getrangeCommand`: negative indices count
//! from the end, both ends are clamped into the string, and an inverted or
//! empty range gives the empty string (including when both indices are
//! negative and `start > end`, checked before any clamping). SETRANGE pads
//! with zero bytes up to the offset.
//!
//! Invariant: `getrange` always returns a range within `0..length`.

use std::ops::Range;

/// `-ERR` text for a negative SETRANGE offset.
pub const OFFSET_OUT_OF_RANGE: &str = "ERR offset is out of range";
/// `-ERR` text for a SETRANGE whose result would be longer than allowed.
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// The bytes of a string of `length` bytes that `GETRANGE key start end` returns.
pub fn getrange(length: usize, start: i64, end: i64) -> Range<usize> {
    let length_signed = i64::try_from(length).unwrap_or(i64::MAX);
    if start < 0 && end < 0 && start > end {
        return 0..0;
    }
    let start = if start < 0 {
        start.saturating_add(length_signed)
    } else {
        start
    }
    .max(0);
    let end = if end < 0 {
        end.saturating_add(length_signed)
    } else {
        end
    }
    .max(0);
    let end = end.min(length_signed - 1);
    if length == 0 || start > end {
        return 0..0;
    }
    // Both are now within 0..length.
    start as usize..end as usize + 1
}

/// Checks a SETRANGE and returns the length the string will have: the
/// larger of its current length and `offset + value_length`. `size_max` is
/// the longest value the store accepts.
pub fn setrange_length(
    current_length: usize,
    offset: i64,
    value_length: usize,
    size_max: usize,
) -> Result<usize, &'static str> {
    let offset = usize::try_from(offset).map_err(|_| OFFSET_OUT_OF_RANGE)?;
    let end = offset.checked_add(value_length).ok_or(STRING_TOO_LONG)?;
    if end > size_max {
        return Err(STRING_TOO_LONG);
    }
    Ok(current_length.max(end))
}

/// Writes `value` into `current` at `offset`, padding with zero bytes.
/// The caller has checked the result length with `setrange_length`.
pub fn setrange_apply(current: &mut Vec<u8>, offset: usize, value: &[u8]) {
    let end = offset + value.len();
    if current.len() < end {
        current.resize(end, 0);
    }
    if let Some(target) = current.get_mut(offset..end) {
        target.copy_from_slice(value);
    }
}
