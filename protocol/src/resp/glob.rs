//! Redis's glob matching, for `KEYS pattern` and `SCAN ... MATCH pattern`.
//!
//! A port of `stringmatchlen` from Redis 7's `util.c`, byte for byte in its
//! corner cases: `*` any run, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` (a
//! reversed range `[z-a]` is accepted), `\x` a literal `x`, and an unclosed
//! `[` that takes the rest of the pattern as its set. Bytes compare as C's
//! signed `char`, as they do in Redis on x86-64 and aarch64 Linux builds
//! with signed chars, which only matters for ranges spanning 0x7f/0x80.
//!
//! The empty string matches only patterns made of stars (`KEYS **` finds
//! the key `""` in Redis 7.0).
//!
//! Invariant: matching terminates in polynomial time on any pattern. As in
//! Redis (CVE-2022-36021), once the rest of a pattern after a `*` fails at
//! every position, no earlier `*` retries longer matches, and recursion is
//! cut at `NESTING_MAX`.

/// Deepest recursion (one level per `*` in the pattern) before giving up
/// with "no match", as Redis does.
const NESTING_MAX: usize = 1000;

/// True if `string` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    // Redis's loop reads the string's NUL terminator when the string is
    // empty; what it then does amounts to "only stars match", except for a
    // negated set that walks past the end, which we do not copy.
    if string.is_empty() {
        return pattern.iter().all(|&byte| byte == b'*');
    }
    let mut skip_longer = false;
    matches(pattern, string, &mut skip_longer, 0)
}

fn matches(mut pattern: &[u8], mut string: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > NESTING_MAX {
        return false;
    }
    while let (Some(&token), Some(&byte)) = (pattern.first(), string.first()) {
        match token {
            b'*' => {
                while pattern.get(1) == Some(&b'*') {
                    pattern = pattern.get(1..).unwrap_or_default();
                }
                let rest = pattern.get(1..).unwrap_or_default();
                if rest.is_empty() {
                    return true;
                }
                while !string.is_empty() {
                    if matches(rest, string, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    string = string.get(1..).unwrap_or_default();
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {}
            b'[' => {
                let (matched, after) = bracket(pattern.get(1..).unwrap_or_default(), byte);
                if !matched {
                    return false;
                }
                // `after` starts at the closing `]` (or is empty), which the
                // common step below consumes.
                pattern = after;
            }
            b'\\' if pattern.len() >= 2 => {
                pattern = pattern.get(1..).unwrap_or_default();
                if pattern.first() != Some(&byte) {
                    return false;
                }
            }
            literal => {
                if literal != byte {
                    return false;
                }
            }
        }
        string = string.get(1..).unwrap_or_default();
        pattern = pattern.get(1..).unwrap_or_default();
        if string.is_empty() {
            while pattern.first() == Some(&b'*') {
                pattern = pattern.get(1..).unwrap_or_default();
            }
            break;
        }
    }
    pattern.is_empty() && string.is_empty()
}

/// Matches `byte` against the set that starts just after a `[`. Returns
/// whether it matched and the pattern from the closing `]` on (empty if the
/// set was never closed).
fn bracket(mut pattern: &[u8], byte: u8) -> (bool, &[u8]) {
    let negate = pattern.first() == Some(&b'^');
    if negate {
        pattern = pattern.get(1..).unwrap_or_default();
    }
    let mut matched = false;
    loop {
        match pattern {
            [b'\\', escaped, ..] => {
                matched |= *escaped == byte;
                pattern = pattern.get(1..).unwrap_or_default();
            }
            [b']', ..] => break,
            // Redis steps back one byte here so that its common step lands
            // on the end; an empty remainder says the same.
            [] => return (matched != negate, b""),
            [start, b'-', end, ..] => {
                let (low, high) = (
                    signed(*start).min(signed(*end)),
                    signed(*start).max(signed(*end)),
                );
                matched |= (low..=high).contains(&signed(byte));
                pattern = pattern.get(2..).unwrap_or_default();
            }
            [literal, ..] => matched |= *literal == byte,
        }
        pattern = pattern.get(1..).unwrap_or_default();
    }
    (matched != negate, pattern)
}

/// A byte as C's signed `char`.
fn signed(byte: u8) -> i8 {
    i8::from_ne_bytes([byte])
}
