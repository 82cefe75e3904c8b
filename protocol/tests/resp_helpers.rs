//! Pure helpers against tables of Redis's behaviour: glob matching (each
//! row observed with `KEYS` on redis-server 7.0.15), number parsing and
//! INCRBYFLOAT formatting, GETRANGE / SETRANGE arithmetic, TTL replies and
//! the EXPIRE conditions.

use jube_protocol::resp::command::{ttl_value, ExpireCondition, TimeUnit};
use jube_protocol::resp::glob::glob_match;
use jube_protocol::resp::number::{
    decrement, format_float_human, increment, increment_float, parse_f64, parse_i64,
};
use jube_protocol::resp::range::{getrange, setrange_apply, setrange_length};

/// Keys that existed, and which of them each pattern matched in Redis.
#[test]
fn glob_matches_like_redis_keys() {
    let keys = [
        "a", "ab", "hello", "hallo", "hxllo", "h*llo", "b", "[", "a[", "\\", "a\\", "]", "aaab",
    ];
    let cases: &[(&str, &[&str])] = &[
        ("a*", &["a", "ab", "a[", "a\\", "aaab"]),
        ("*", &keys),
        ("h?llo", &["hello", "hallo", "hxllo", "h*llo"]),
        ("h[ae]llo", &["hello", "hallo"]),
        ("h[^e]llo", &["hallo", "hxllo", "h*llo"]),
        ("h[a-b]llo", &["hallo"]),
        ("h\\*llo", &["h*llo"]),
        ("[b-a]", &["a", "b"]),
        ("[", &[]),
        ("[a", &["a"]),
        ("a[", &[]),
        ("\\", &["\\"]),
        ("a\\", &["a\\"]),
        ("[\\]]", &["]"]),
        ("*a*a*a*b", &["aaab"]),
    ];
    for (pattern, expected) in cases {
        let matched: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|key| glob_match(pattern.as_bytes(), key.as_bytes()))
            .collect();
        let mut expected = expected.to_vec();
        let mut matched_sorted = matched.clone();
        expected.sort_unstable();
        matched_sorted.sort_unstable();
        assert_eq!(matched_sorted, expected, "pattern {pattern:?}");
    }
}

#[test]
fn glob_edge_cases() {
    assert!(glob_match(b"", b""));
    assert!(!glob_match(b"", b"a"));
    assert!(glob_match(b"*", b""));
    assert!(glob_match(b"**", b"abc"));
    assert!(!glob_match(b"?", b""));
    assert!(glob_match(b"a*", b"a"));
    assert!(glob_match(b"[a-c]*[!]", b"b!"));
    // A pattern that is exponential without Redis's early cut-off.
    let pattern = "a*".repeat(30) + "b";
    assert!(!glob_match(pattern.as_bytes(), "a".repeat(60).as_bytes()));
}

#[test]
fn integers_parse_like_string2ll() {
    let good: &[(&str, i64)] = &[
        ("0", 0),
        ("-1", -1),
        ("42", 42),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ];
    for (text, value) in good {
        assert_eq!(parse_i64(text.as_bytes()), Some(*value), "{text}");
    }
    for text in [
        "",
        "-",
        "-0",
        "+1",
        "01",
        " 1",
        "1 ",
        "1.0",
        "9223372036854775808",
        "abc",
        "1e3",
    ] {
        assert_eq!(parse_i64(text.as_bytes()), None, "{text:?}");
    }
}

#[test]
fn floats_parse_like_string2ld() {
    let good: &[(&str, f64)] = &[
        ("1", 1.0),
        ("10.5", 10.5),
        ("5.0e3", 5000.0),
        ("-.5", -0.5),
        ("inf", f64::INFINITY),
        ("0", 0.0),
        ("1.", 1.0),
    ];
    for (text, value) in good {
        assert_eq!(parse_f64(text.as_bytes()), Some(*value), "{text}");
    }
    for text in [
        "", " 1", "1 ", "abc", "nan", "1e400", "1e-400", "1e", "0x10",
    ] {
        assert_eq!(parse_f64(text.as_bytes()), None, "{text:?}");
    }
}

/// INCRBYFLOAT results as Redis 7.0.15 printed them, where f64 and long
/// double agree.
#[test]
fn incrbyfloat_formatting() {
    let cases: &[(f64, f64, &str)] = &[
        (1.0, 10.5, "11.5"),
        (11.5, 2989.5, "3001"),
        (5000.0, 200.0, "5200"),
        (5200.0, -5200.0, "0"),
        (17179869184.0, 1.5, "17179869185.5"),
        (1.0, 0.25, "1.25"),
        (0.0, -0.0, "0"),
    ];
    for (current, delta, text) in cases {
        let sum = increment_float(*current, *delta).expect("finite");
        assert_eq!(format_float_human(sum), *text, "{current} + {delta}");
    }
    assert_eq!(format_float_human(-0.0), "0");
    assert_eq!(format_float_human(1e300).len(), 301);
    assert_eq!(
        increment_float(1.0, f64::INFINITY),
        Err("ERR increment would produce NaN or Infinity")
    );
}

#[test]
fn integer_increments_overflow_like_redis() {
    assert_eq!(increment(1, 2), Ok(3));
    assert_eq!(
        increment(i64::MAX, 1),
        Err("ERR increment or decrement would overflow")
    );
    assert_eq!(
        increment(i64::MIN, -1),
        Err("ERR increment or decrement would overflow")
    );
    assert_eq!(decrement(5), Ok(-5));
    assert_eq!(decrement(i64::MIN), Err("ERR decrement would overflow"));
}

/// `GETRANGE s start end` on "This is a string" in Redis 7.0.15.
#[test]
fn getrange_like_redis() {
    let text = b"This is a string";
    let cases: &[(i64, i64, &str)] = &[
        (0, 3, "This"),
        (-3, -1, "ing"),
        (0, -1, "This is a string"),
        (10, 100, "string"),
        (-100, -50, "T"),
        (-1, -3, ""),
        (5, 2, ""),
        (-100, 100, "This is a string"),
        (20, 30, ""),
        (3, 3, "s"),
        (-16, -16, "T"),
        (-17, -17, "T"),
        (i64::MIN, i64::MAX, "This is a string"),
    ];
    for (start, end, expected) in cases {
        let range = getrange(text.len(), *start, *end);
        assert_eq!(&text[range], expected.as_bytes(), "{start} {end}");
    }
    assert_eq!(getrange(0, 0, -1), 0..0);
}

#[test]
fn setrange_like_redis() {
    assert_eq!(setrange_length(0, 3, 2, 100), Ok(5));
    assert_eq!(setrange_length(10, 3, 2, 100), Ok(10));
    assert_eq!(
        setrange_length(0, -1, 1, 100),
        Err("ERR offset is out of range")
    );
    assert_eq!(
        setrange_length(0, 100, 1, 100),
        Err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    let mut value = Vec::new();
    setrange_apply(&mut value, 3, b"ab");
    assert_eq!(value, b"\0\0\0ab");
    setrange_apply(&mut value, 1, b"x");
    assert_eq!(value, b"\0x\0ab");
}

#[test]
fn ttl_replies() {
    assert_eq!(ttl_value(None, 1000, TimeUnit::Seconds, false), -1);
    assert_eq!(ttl_value(Some(11_499), 1000, TimeUnit::Seconds, false), 10);
    assert_eq!(ttl_value(Some(11_500), 1000, TimeUnit::Seconds, false), 11);
    assert_eq!(
        ttl_value(Some(11_500), 1000, TimeUnit::Milliseconds, false),
        10_500
    );
    assert_eq!(ttl_value(Some(500), 1000, TimeUnit::Milliseconds, false), 0);
    assert_eq!(
        ttl_value(Some(1_700_000_000_123), 0, TimeUnit::Milliseconds, true),
        1_700_000_000_123
    );
    assert_eq!(
        ttl_value(Some(1_700_000_000_600), 0, TimeUnit::Seconds, true),
        1_700_000_001
    );
}

#[test]
fn expire_conditions() {
    let none = ExpireCondition::default();
    let nx = ExpireCondition { nx: true, ..none };
    let xx = ExpireCondition { xx: true, ..none };
    let gt = ExpireCondition { gt: true, ..none };
    let lt = ExpireCondition { lt: true, ..none };
    assert!(none.allows(None, 5) && none.allows(Some(9), 5));
    assert!(nx.allows(None, 5) && !nx.allows(Some(9), 5));
    assert!(!xx.allows(None, 5) && xx.allows(Some(9), 5));
    assert!(!gt.allows(None, 5) && gt.allows(Some(4), 5) && !gt.allows(Some(5), 5));
    assert!(lt.allows(None, 5) && lt.allows(Some(6), 5) && !lt.allows(Some(5), 5));
}
