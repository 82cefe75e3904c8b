//! Parsing of the string and expiry commands: GET and SET families, the
//! counters, ranges, the EXPIRE and TTL families, SCAN and the multi-key
//! commands; and the pure expiry rules the server applies with them.
//!
//! Validation follows Redis 7.0 (`t_string.c`, `expire.c`, `db.c`): SET's
//! options are read left to right, each refused with `syntax error` if it
//! clashes with an earlier one; option values are checked only after all
//! options are read. Expiry times must be positive for SET and GETEX; the
//! EXPIRE family accepts any value (a deadline in the past deletes the key).
//! jube adds its deadline limits (`EXPIRE_IN_MS_MAX`, `EXPIRE_AT_UNIX_MS_MAX`)
//! with the same `invalid expire time` error.

use super::{is, take, word, Command, CommandError};
use crate::resp::constants::{EXPIRE_AT_UNIX_MS_MAX, EXPIRE_IN_MS_MAX};
use crate::resp::number::{self, parse_f64, parse_i64};

/// When a key expires: after a duration or at an absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Milliseconds from now (may be zero or negative for the EXPIRE family).
    InMs(i64),
    /// Unix time in milliseconds.
    AtUnixMs(i64),
}

impl Expiry {
    /// The absolute deadline in Unix milliseconds, given the time now.
    pub fn deadline_unix_ms(self, now_unix_ms: i64) -> i64 {
        match self {
            Expiry::InMs(ms) => now_unix_ms.saturating_add(ms),
            Expiry::AtUnixMs(ms) => ms,
        }
    }
}

/// What SET does with the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTtl {
    /// Remove any TTL (plain SET, GETSET).
    Clear,
    /// KEEPTTL: leave it as it is.
    Keep,
    /// EX, PX, EXAT, PXAT, SETEX, PSETEX.
    Expire(Expiry),
}

/// SET's NX / XX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always write.
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// A SET (or SETEX, PSETEX, GETSET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The key.
    pub key: Vec<u8>,
    /// The new value.
    pub value: Vec<u8>,
    /// What happens to the TTL.
    pub ttl: SetTtl,
    /// NX / XX.
    pub condition: Condition,
    /// GET: reply with the old value (bulk or null) instead of OK / null.
    pub get: bool,
}

/// GETEX's option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetExExpiry {
    /// EX, PX, EXAT, PXAT.
    Expire(Expiry),
    /// PERSIST.
    Persist,
}

/// NX / XX / GT / LT of the EXPIRE family. Redis allows XX with GT or LT;
/// NX with anything else and GT with LT are refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// NX: only if the key has no TTL.
    pub nx: bool,
    /// XX: only if the key has a TTL.
    pub xx: bool,
    /// GT: only if the new deadline is later (no TTL counts as infinite).
    pub gt: bool,
    /// LT: only if the new deadline is earlier (no TTL counts as infinite).
    pub lt: bool,
}

impl ExpireCondition {
    /// Whether the expiry may be set, given the key's current deadline
    /// (`None`: no TTL) and the new one, as Redis's `expireGenericCommand`.
    pub fn allows(self, current_deadline_ms: Option<i64>, new_deadline_ms: i64) -> bool {
        match current_deadline_ms {
            None => !(self.xx || self.gt),
            Some(current) => {
                let refused_by_gt = self.gt && new_deadline_ms <= current;
                let refused_by_lt = self.lt && new_deadline_ms >= current;
                !(self.nx || refused_by_gt || refused_by_lt)
            }
        }
    }
}

/// Seconds or milliseconds, for TTL / PTTL and EXPIRETIME / PEXPIRETIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// TTL, EXPIRETIME.
    Seconds,
    /// PTTL, PEXPIRETIME.
    Milliseconds,
}

/// The reply of TTL, PTTL, EXPIRETIME or PEXPIRETIME for a key that exists
/// (a missing key is -2): -1 without a TTL, otherwise the remaining time
/// (`absolute` false) or the deadline, never negative, seconds rounded to
/// nearest as Redis's `(ms + 500) / 1000`.
pub fn ttl_value(
    deadline_unix_ms: Option<i64>,
    now_unix_ms: i64,
    unit: TimeUnit,
    absolute: bool,
) -> i64 {
    let Some(deadline) = deadline_unix_ms else {
        return -1;
    };
    let ms = if absolute {
        deadline
    } else {
        deadline.saturating_sub(now_unix_ms)
    }
    .max(0);
    match unit {
        TimeUnit::Milliseconds => ms,
        TimeUnit::Seconds => ms.saturating_add(500) / 1000,
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The cursor; 0 starts a scan.
    pub cursor: u64,
    /// MATCH, unless it was `*` (which matches everything, as in Redis).
    pub pattern: Option<Vec<u8>>,
    /// COUNT, a hint of how much work to do (at least 1; Redis's default 10).
    pub count: u64,
    /// TYPE, as given (jube only has `string`).
    pub type_name: Option<Vec<u8>>,
}

const NOT_AN_INTEGER: CommandError =
    CommandError(std::borrow::Cow::Borrowed(number::NOT_AN_INTEGER));

fn integer(bytes: &[u8]) -> Result<i64, CommandError> {
    parse_i64(bytes).ok_or(NOT_AN_INTEGER)
}

/// Parses the commands of this family; `Ok(None)` if `name` is not one.
pub(super) fn parse(name: &str, args: &mut [Vec<u8>]) -> Result<Option<Command>, CommandError> {
    let command = match name {
        "get" => Command::Get { key: take(args, 1) },
        "set" => Command::Set(set(args)?),
        "setnx" => Command::SetNx {
            key: take(args, 1),
            value: take(args, 2),
        },
        "setex" | "psetex" => {
            let unit_ms = if name == "setex" { 1000 } else { 1 };
            let ms = expire_positive(name, word(args, 2), unit_ms, false)?;
            let set = Set {
                key: take(args, 1),
                value: take(args, 3),
                ttl: SetTtl::Expire(ms),
                condition: Condition::Always,
                get: false,
            };
            Command::Set(set)
        }
        "getset" => Command::Set(Set {
            key: take(args, 1),
            value: take(args, 2),
            ttl: SetTtl::Clear,
            condition: Condition::Always,
            get: true,
        }),
        "getdel" => Command::GetDel { key: take(args, 1) },
        "getex" => getex(args)?,
        "mget" => Command::MGet {
            keys: rest(args, 1),
        },
        "mset" | "msetnx" => {
            if args.len().is_multiple_of(2) {
                return Err(CommandError::arity(name));
            }
            let words = rest(args, 1);
            let mut pairs = Vec::with_capacity(words.len() / 2);
            let mut words = words.into_iter();
            while let (Some(key), Some(value)) = (words.next(), words.next()) {
                pairs.push((key, value));
            }
            if name == "mset" {
                Command::MSet { pairs }
            } else {
                Command::MSetNx { pairs }
            }
        }
        "del" => Command::Del {
            keys: rest(args, 1),
        },
        "unlink" => Command::Unlink {
            keys: rest(args, 1),
        },
        "exists" => Command::Exists {
            keys: rest(args, 1),
        },
        "incr" => Command::IncrBy {
            key: take(args, 1),
            delta: 1,
        },
        "decr" => Command::IncrBy {
            key: take(args, 1),
            delta: -1,
        },
        "incrby" => Command::IncrBy {
            delta: integer(word(args, 2))?,
            key: take(args, 1),
        },
        "decrby" => {
            let decrement = integer(word(args, 2))?;
            let delta = number::decrement(decrement).map_err(|text| CommandError(text.into()))?;
            Command::IncrBy {
                key: take(args, 1),
                delta,
            }
        }
        "incrbyfloat" => {
            let increment = parse_f64(word(args, 2)).ok_or(CommandError(
                std::borrow::Cow::Borrowed(number::NOT_A_FLOAT),
            ))?;
            Command::IncrByFloat {
                key: take(args, 1),
                increment,
            }
        }
        "append" => Command::Append {
            key: take(args, 1),
            value: take(args, 2),
        },
        "strlen" => Command::StrLen { key: take(args, 1) },
        "getrange" => Command::GetRange {
            start: integer(word(args, 2))?,
            end: integer(word(args, 3))?,
            key: take(args, 1),
        },
        "setrange" => {
            let offset = integer(word(args, 2))?;
            let offset = u64::try_from(offset)
                .map_err(|_| CommandError(crate::resp::range::OFFSET_OUT_OF_RANGE.into()))?;
            Command::SetRange {
                key: take(args, 1),
                offset,
                value: take(args, 3),
            }
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire(name, args)?,
        "ttl" | "pttl" => Command::Ttl {
            key: take(args, 1),
            unit: unit(name == "ttl"),
        },
        "expiretime" | "pexpiretime" => Command::ExpireTime {
            key: take(args, 1),
            unit: unit(name == "expiretime"),
        },
        "persist" => Command::Persist { key: take(args, 1) },
        "type" => Command::Type { key: take(args, 1) },
        "scan" => Command::Scan(scan(args)?),
        "keys" => Command::Keys {
            pattern: take(args, 1),
        },
        "watch" => Command::Watch {
            keys: rest(args, 1),
        },
        _ => return Ok(None),
    };
    Ok(Some(command))
}

fn unit(seconds: bool) -> TimeUnit {
    if seconds {
        TimeUnit::Seconds
    } else {
        TimeUnit::Milliseconds
    }
}

/// Moves words `from..` out of `args`.
pub(super) fn rest(args: &mut [Vec<u8>], from: usize) -> Vec<Vec<u8>> {
    args.get_mut(from..)
        .unwrap_or_default()
        .iter_mut()
        .map(std::mem::take)
        .collect()
}

/// The option words of SET (or GETEX with `getex`), in Redis's order of checks.
#[derive(Default)]
struct ExpireOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// The expiry option seen (`ex`, `px`, `exat`, `pxat`) and its word.
    expire: Option<(&'static str, &'a [u8])>,
}

fn options<'a>(
    args: &'a [Vec<u8>],
    from: usize,
    getex: bool,
) -> Result<ExpireOptions<'a>, CommandError> {
    let mut seen = ExpireOptions::default();
    let mut index = from;
    while let Some(option) = args.get(index) {
        let next = args.get(index + 1).map(Vec::as_slice);
        let expire_kind = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|kind| is(option, kind));
        if is(option, "nx") && !seen.xx && !getex {
            seen.nx = true;
        } else if is(option, "xx") && !seen.nx && !getex {
            seen.xx = true;
        } else if is(option, "get") && !getex {
            seen.get = true;
        } else if is(option, "keepttl") && !seen.persist && seen.expire.is_none() && !getex {
            seen.keep_ttl = true;
        } else if is(option, "persist") && getex && seen.expire.is_none() {
            seen.persist = true;
        } else if let (Some(kind), Some(value)) = (expire_kind, next) {
            // The same option may repeat (the last wins); another clashes.
            let clash = seen.expire.is_some_and(|(earlier, _)| earlier != kind);
            if seen.keep_ttl || seen.persist || clash {
                return Err(CommandError::syntax());
            }
            seen.expire = Some((kind, value));
            index += 1;
        } else {
            return Err(CommandError::syntax());
        }
        index += 1;
    }
    Ok(seen)
}

/// An EX/PX/EXAT/PXAT value: positive, in range, in milliseconds.
fn expire_option(command: &str, kind: &str, value: &[u8]) -> Result<Expiry, CommandError> {
    let unit_ms = if kind == "ex" || kind == "exat" {
        1000
    } else {
        1
    };
    expire_positive(command, value, unit_ms, kind.ends_with("at"))
}

fn expire_positive(
    command: &str,
    value: &[u8],
    unit_ms: i64,
    absolute: bool,
) -> Result<Expiry, CommandError> {
    let value = integer(value)?;
    let ms = value.checked_mul(unit_ms).filter(|ms| *ms > 0);
    let limit = if absolute {
        EXPIRE_AT_UNIX_MS_MAX
    } else {
        EXPIRE_IN_MS_MAX
    };
    match ms {
        Some(ms) if ms <= limit => Ok(if absolute {
            Expiry::AtUnixMs(ms)
        } else {
            Expiry::InMs(ms)
        }),
        _ => Err(CommandError::expire_time(command)),
    }
}

fn set(args: &mut [Vec<u8>]) -> Result<Set, CommandError> {
    let seen = options(args, 3, false)?;
    let ttl = match (seen.expire, seen.keep_ttl) {
        (Some((kind, value)), _) => SetTtl::Expire(expire_option("set", kind, value)?),
        (None, true) => SetTtl::Keep,
        (None, false) => SetTtl::Clear,
    };
    let condition = match (seen.nx, seen.xx) {
        (true, _) => Condition::IfAbsent,
        (_, true) => Condition::IfPresent,
        _ => Condition::Always,
    };
    let get = seen.get;
    Ok(Set {
        key: take(args, 1),
        value: take(args, 2),
        ttl,
        condition,
        get,
    })
}

fn getex(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let seen = options(args, 2, true)?;
    let expiry = match (seen.expire, seen.persist) {
        (Some((kind, value)), _) => Some(GetExExpiry::Expire(expire_option("getex", kind, value)?)),
        (None, true) => Some(GetExExpiry::Persist),
        (None, false) => None,
    };
    Ok(Command::GetEx {
        key: take(args, 1),
        expiry,
    })
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: options first, then the time.
fn expire(name: &str, args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let mut condition = ExpireCondition::default();
    for option in args.get(3..).unwrap_or_default() {
        if is(option, "nx") {
            condition.nx = true;
        } else if is(option, "xx") {
            condition.xx = true;
        } else if is(option, "gt") {
            condition.gt = true;
        } else if is(option, "lt") {
            condition.lt = true;
        } else {
            let option = String::from_utf8_lossy(option);
            return Err(CommandError(
                format!("ERR Unsupported option {option}").into(),
            ));
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(CommandError::from_static(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(CommandError::from_static(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let when = integer(word(args, 2))?;
    let unit_ms = if name == "expire" || name == "expireat" {
        1000
    } else {
        1
    };
    let ms = when
        .checked_mul(unit_ms)
        .ok_or_else(|| CommandError::expire_time(name))?;
    let expiry = if name.ends_with("at") {
        if ms > EXPIRE_AT_UNIX_MS_MAX {
            return Err(CommandError::expire_time(name));
        }
        Expiry::AtUnixMs(ms)
    } else {
        if ms > EXPIRE_IN_MS_MAX {
            return Err(CommandError::expire_time(name));
        }
        Expiry::InMs(ms)
    };
    Ok(Command::Expire {
        key: take(args, 1),
        expiry,
        condition,
    })
}

/// A SCAN cursor as Redis's `strtoul` reads it: optional sign, digits, a
/// negative value wrapping around as in C.
fn cursor(bytes: &[u8]) -> Option<u64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

fn scan(args: &mut [Vec<u8>]) -> Result<Scan, CommandError> {
    let cursor = cursor(word(args, 1)).ok_or(CommandError::from_static("ERR invalid cursor"))?;
    let mut scan = Scan {
        cursor,
        pattern: None,
        count: 10,
        type_name: None,
    };
    let mut index = 2;
    while let Some(option) = args.get(index) {
        if args.len() - index < 2 {
            return Err(CommandError::syntax());
        }
        if is(option, "count") {
            let count = integer(word(args, index + 1))?;
            scan.count = u64::try_from(count)
                .ok()
                .filter(|count| *count >= 1)
                .ok_or_else(CommandError::syntax)?;
        } else if is(option, "match") {
            let pattern = take(args, index + 1);
            scan.pattern = (pattern != b"*").then_some(pattern);
        } else if is(option, "type") {
            scan.type_name = Some(take(args, index + 1));
        } else {
            return Err(CommandError::syntax());
        }
        index += 2;
    }
    Ok(scan)
}
