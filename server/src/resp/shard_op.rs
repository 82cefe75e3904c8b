//! The RESP commands' work on one shard: every command that touches keys of a single shard runs
//! here as one call, on the shard's core, in one step.
//!
//! Invariants:
//! - a read-modify-write command (INCR family, APPEND, SETRANGE, SET with NX/XX/GET/KEEPTTL,
//!   GETSET, GETDEL, GETEX, the EXPIRE family, PERSIST, MSETNX within one shard) reads, computes
//!   and writes inside one call: the core is single-threaded, so no other call runs in between,
//!   which makes it atomic;
//! - the result carries the LSN to wait for (the write's, or the read barrier of what was read),
//!   so the shard worker answers only once that LSN is acknowledged, as for native calls;
//! - expiry is stored as the engine's absolute wall-clock deadline in ms; a deadline already past
//!   deletes the key instead of writing it (as Redis does), and reads go through
//!   `shard_worker::live`, the server's one expiry check, until the engine hides expired keys
//!   itself;
//! - an argument or stored-value error (not an integer, overflow) is an error *reply*, never a
//!   `StoreError`: only the engine fails calls.

use crate::call::CallOutput;
use crate::shard_host::{Lsn, ShardEngine, StoreError, StoredValue};
use crate::shard_worker::{live, Read};
use jube_protocol::resp::command::{
    ttl_value, Condition, ExpireCondition, Expiry, GetExExpiry, Set, SetTtl, TimeUnit,
};
use jube_protocol::resp::constants::BULK_SIZE_MAX;
use jube_protocol::resp::glob::glob_match;
use jube_protocol::resp::{number, range, Reply};
use std::borrow::Cow;
use std::ops::Bound;

/// A RESP command's work on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespOp {
    Get {
        key: Vec<u8>,
    },
    StrLen {
        key: Vec<u8>,
    },
    GetRange {
        key: Vec<u8>,
        start: i64,
        end: i64,
    },
    /// TTL, PTTL (`absolute` false), EXPIRETIME, PEXPIRETIME (`absolute` true).
    Ttl {
        key: Vec<u8>,
        unit: TimeUnit,
        absolute: bool,
    },
    Type {
        key: Vec<u8>,
    },
    Set(Set),
    SetNx {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    GetDel {
        key: Vec<u8>,
    },
    GetEx {
        key: Vec<u8>,
        expiry: Option<GetExExpiry>,
    },
    IncrBy {
        key: Vec<u8>,
        delta: i64,
    },
    /// The increment as `f64::to_bits`, so that the op stays `Eq`.
    IncrByFloat {
        key: Vec<u8>,
        increment_bits: u64,
    },
    Append {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    SetRange {
        key: Vec<u8>,
        offset: u64,
        value: Vec<u8>,
    },
    Expire {
        key: Vec<u8>,
        expiry: Expiry,
        condition: ExpireCondition,
    },
    Persist {
        key: Vec<u8>,
    },
    /// The keys of an EXISTS this shard owns (repeats kept): replies with how many exist.
    Exists {
        keys: Vec<Vec<u8>>,
    },
    /// The keys of a DEL or UNLINK this shard owns: replies with how many it deleted.
    Delete {
        keys: Vec<Vec<u8>>,
    },
    /// An MSETNX whose keys are all on this shard: all written, or none if any exists.
    MSetNx {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Up to `limit` keys after `after` (from the start if None), those matching `pattern` kept.
    ScanKeys {
        after: Option<Vec<u8>>,
        limit: usize,
        pattern: Option<Vec<u8>>,
    },
    /// Deletes up to `limit` keys from the start of the shard: replies with how many.
    FlushBatch {
        limit: usize,
    },
}

impl RespOp {
    /// Every key the op names (a scan or flush names none).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            RespOp::Get { key }
            | RespOp::StrLen { key }
            | RespOp::GetRange { key, .. }
            | RespOp::Ttl { key, .. }
            | RespOp::Type { key }
            | RespOp::SetNx { key, .. }
            | RespOp::GetDel { key }
            | RespOp::GetEx { key, .. }
            | RespOp::IncrBy { key, .. }
            | RespOp::IncrByFloat { key, .. }
            | RespOp::Append { key, .. }
            | RespOp::SetRange { key, .. }
            | RespOp::Expire { key, .. }
            | RespOp::Persist { key } => vec![key.as_slice()],
            RespOp::Set(set) => vec![set.key.as_slice()],
            RespOp::Exists { keys } | RespOp::Delete { keys } => {
                keys.iter().map(Vec::as_slice).collect()
            }
            RespOp::MSetNx { pairs } => pairs.iter().map(|(key, _)| key.as_slice()).collect(),
            RespOp::ScanKeys { .. } | RespOp::FlushBatch { .. } => Vec::new(),
        }
    }
}

/// What a RESP call returns.
#[derive(Debug, Clone)]
pub enum RespOutput {
    Reply(Reply),
    /// ScanKeys: the live matching keys, and where to resume if the shard holds more.
    Keys {
        keys: Vec<Vec<u8>>,
        resume: Option<Vec<u8>>,
    },
}

type Step = Result<(Option<Lsn>, Reply), StoreError>;

/// One call's view of the shard: the engine and the wall-clock time of the call.
struct Store<'a> {
    engine: &'a mut dyn ShardEngine,
    now_ms: u64,
}

/// Runs `op` on `engine` at wall-clock `now_ms`; the LSN is what to wait for before answering.
pub fn run(engine: &mut dyn ShardEngine, op: RespOp, now_ms: u64) -> Read<CallOutput> {
    let mut store = Store { engine, now_ms };
    let (lsn, output) = match op {
        RespOp::ScanKeys {
            after,
            limit,
            pattern,
        } => store.scan_keys(after, limit, pattern.as_deref())?,
        op => {
            let (lsn, reply) = store.run(op)?;
            (lsn, RespOutput::Reply(reply))
        }
    };
    Ok((lsn, CallOutput::Resp(output)))
}

fn int(value: usize) -> Reply {
    Reply::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

fn error(text: &'static str) -> Reply {
    Reply::Error(Cow::Borrowed(text))
}

impl Store<'_> {
    fn run(&mut self, op: RespOp) -> Step {
        match op {
            RespOp::Get { key } => self.read_reply(&key, |v| Reply::Bulk(v.map(|v| v.bytes))),
            RespOp::StrLen { key } => {
                self.read_reply(&key, |v| int(v.map_or(0, |v| v.bytes.len())))
            }
            RespOp::GetRange { key, start, end } => self.read_reply(&key, |value| {
                let bytes = value.map(|v| v.bytes).unwrap_or_default();
                let range = range::getrange(bytes.len(), start, end);
                Reply::bulk(bytes.get(range).unwrap_or_default())
            }),
            RespOp::Ttl {
                key,
                unit,
                absolute,
            } => {
                let now = self.now_signed();
                self.read_reply(&key, |value| match value {
                    None => Reply::Integer(-2),
                    Some(v) => {
                        Reply::Integer(ttl_value(v.expiry_ms.map(signed), now, unit, absolute))
                    }
                })
            }
            RespOp::Type { key } => self.read_reply(&key, |value| {
                Reply::Simple(Cow::Borrowed(if value.is_some() {
                    "string"
                } else {
                    "none"
                }))
            }),
            RespOp::Set(set) => self.set(set),
            RespOp::SetNx { key, value } => {
                let set = Set {
                    key,
                    value,
                    ttl: SetTtl::Clear,
                    condition: Condition::IfAbsent,
                    get: false,
                };
                let (lsn, reply) = self.set(set)?;
                Ok((lsn, Reply::Integer(i64::from(reply == Reply::OK))))
            }
            RespOp::GetDel { key } => match self.read(&key)? {
                None => Ok((self.barrier(&key), Reply::Bulk(None))),
                Some(old) => Ok((Some(self.delete(&key)?), Reply::Bulk(Some(old.bytes)))),
            },
            RespOp::GetEx { key, expiry } => self.get_ex(key, expiry),
            RespOp::IncrBy { key, delta } => self.incr_by(key, delta),
            RespOp::IncrByFloat {
                key,
                increment_bits,
            } => self.incr_by_float(key, f64::from_bits(increment_bits)),
            RespOp::Append { key, value } => {
                let old = self.read(&key)?;
                let expiry = old.as_ref().and_then(|v| v.expiry_ms);
                let mut bytes = old.map(|v| v.bytes).unwrap_or_default();
                bytes.extend_from_slice(&value);
                let length = bytes.len();
                Ok((Some(self.put(&key, bytes, expiry)?), int(length)))
            }
            RespOp::SetRange { key, offset, value } => self.set_range(key, offset, value),
            RespOp::Expire {
                key,
                expiry,
                condition,
            } => self.expire(key, expiry, condition),
            RespOp::Persist { key } => match self.read(&key)? {
                Some(old) if old.expiry_ms.is_some() => {
                    Ok((Some(self.put(&key, old.bytes, None)?), Reply::Integer(1)))
                }
                _ => Ok((self.barrier(&key), Reply::Integer(0))),
            },
            RespOp::Exists { keys } => {
                let mut count = 0;
                for key in &keys {
                    count += usize::from(self.read(key)?.is_some());
                }
                Ok((self.barriers(&keys), int(count)))
            }
            RespOp::Delete { keys } => self.delete_keys(keys),
            RespOp::MSetNx { pairs } => self.mset_nx(pairs),
            RespOp::FlushBatch { limit } => self.flush_batch(limit),
            RespOp::ScanKeys { .. } => unreachable!("run() handles ScanKeys"),
        }
    }

    fn now_signed(&self) -> i64 {
        signed(self.now_ms)
    }

    /// The live value of `key`, or None if absent or expired.
    fn read(&mut self, key: &[u8]) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.engine.get(key)?.and_then(|v| live(v, self.now_ms)))
    }

    fn barrier(&self, key: &[u8]) -> Option<Lsn> {
        self.engine.read_barrier(key)
    }

    fn barriers(&self, keys: &[Vec<u8>]) -> Option<Lsn> {
        keys.iter().filter_map(|key| self.barrier(key)).max()
    }

    fn read_reply(&mut self, key: &[u8], reply: impl FnOnce(Option<StoredValue>) -> Reply) -> Step {
        let value = self.read(key)?;
        Ok((self.barrier(key), reply(value)))
    }

    fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        expiry_ms: Option<u64>,
    ) -> Result<Lsn, StoreError> {
        self.engine.put(key, &value, expiry_ms)
    }

    fn delete(&mut self, key: &[u8]) -> Result<Lsn, StoreError> {
        self.engine.delete(key).map(|(_, lsn)| lsn)
    }

    /// Writes `value` with deadline `deadline_ms`, or deletes the key if the deadline has passed.
    fn put_until(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        deadline_ms: i64,
    ) -> Result<Lsn, StoreError> {
        if deadline_ms <= self.now_signed() {
            return self.delete(key);
        }
        self.put(key, value, Some(unsigned(deadline_ms)))
    }

    fn set(&mut self, set: Set) -> Step {
        let old = self.read(&set.key)?;
        let allowed = match set.condition {
            Condition::Always => true,
            Condition::IfAbsent => old.is_none(),
            Condition::IfPresent => old.is_some(),
        };
        let old_expiry = old.as_ref().and_then(|v| v.expiry_ms);
        let old_reply = Reply::Bulk(old.map(|v| v.bytes));
        if !allowed {
            let reply = if set.get {
                old_reply
            } else {
                Reply::Bulk(None)
            };
            return Ok((self.barrier(&set.key), reply));
        }
        let lsn = match set.ttl {
            SetTtl::Clear => self.put(&set.key, set.value, None)?,
            SetTtl::Keep => self.put(&set.key, set.value, old_expiry)?,
            SetTtl::Expire(expiry) => {
                let deadline = expiry.deadline_unix_ms(self.now_signed());
                self.put_until(&set.key, set.value, deadline)?
            }
        };
        Ok((Some(lsn), if set.get { old_reply } else { Reply::OK }))
    }

    fn get_ex(&mut self, key: Vec<u8>, expiry: Option<GetExExpiry>) -> Step {
        let Some(old) = self.read(&key)? else {
            return Ok((self.barrier(&key), Reply::Bulk(None)));
        };
        let reply = Reply::bulk(old.bytes.clone());
        let lsn = match expiry {
            None => return Ok((self.barrier(&key), reply)),
            Some(GetExExpiry::Persist) if old.expiry_ms.is_none() => {
                return Ok((self.barrier(&key), reply))
            }
            Some(GetExExpiry::Persist) => self.put(&key, old.bytes, None)?,
            Some(GetExExpiry::Expire(expiry)) => {
                let deadline = expiry.deadline_unix_ms(self.now_signed());
                self.put_until(&key, old.bytes, deadline)?
            }
        };
        Ok((Some(lsn), reply))
    }

    fn incr_by(&mut self, key: Vec<u8>, delta: i64) -> Step {
        let old = self.read(&key)?;
        let expiry = old.as_ref().and_then(|v| v.expiry_ms);
        let current = match &old {
            None => 0,
            Some(value) => match number::parse_i64(&value.bytes) {
                Some(current) => current,
                None => return Ok((self.barrier(&key), error(number::NOT_AN_INTEGER))),
            },
        };
        match number::increment(current, delta) {
            Ok(new) => {
                let lsn = self.put(&key, new.to_string().into_bytes(), expiry)?;
                Ok((Some(lsn), Reply::Integer(new)))
            }
            Err(text) => Ok((self.barrier(&key), error(text))),
        }
    }

    fn incr_by_float(&mut self, key: Vec<u8>, increment: f64) -> Step {
        let old = self.read(&key)?;
        let expiry = old.as_ref().and_then(|v| v.expiry_ms);
        let current = match &old {
            None => 0.0,
            Some(value) => match number::parse_f64(&value.bytes) {
                Some(current) => current,
                None => return Ok((self.barrier(&key), error(number::NOT_A_FLOAT))),
            },
        };
        match number::increment_float(current, increment) {
            Ok(new) => {
                let text = number::format_float_human(new);
                let lsn = self.put(&key, text.clone().into_bytes(), expiry)?;
                Ok((Some(lsn), Reply::bulk(text)))
            }
            Err(text) => Ok((self.barrier(&key), error(text))),
        }
    }

    fn set_range(&mut self, key: Vec<u8>, offset: u64, value: Vec<u8>) -> Step {
        let old = self.read(&key)?;
        let current_length = old.as_ref().map_or(0, |v| v.bytes.len());
        let offset_signed = i64::try_from(offset).unwrap_or(i64::MAX);
        let length =
            match range::setrange_length(current_length, offset_signed, value.len(), BULK_SIZE_MAX)
            {
                Ok(length) => length,
                Err(text) => return Ok((self.barrier(&key), error(text))),
            };
        if value.is_empty() {
            // Redis neither creates nor pads the key for an empty value.
            return Ok((self.barrier(&key), int(current_length)));
        }
        let expiry = old.as_ref().and_then(|v| v.expiry_ms);
        let mut bytes = old.map(|v| v.bytes).unwrap_or_default();
        // setrange_length bounded offset + value by BULK_SIZE_MAX, so it fits in usize.
        range::setrange_apply(&mut bytes, offset as usize, &value);
        debug_assert_eq!(bytes.len(), length, "SETRANGE length");
        Ok((Some(self.put(&key, bytes, expiry)?), int(length)))
    }

    fn expire(&mut self, key: Vec<u8>, expiry: Expiry, condition: ExpireCondition) -> Step {
        let Some(old) = self.read(&key)? else {
            return Ok((self.barrier(&key), Reply::Integer(0)));
        };
        let deadline = expiry.deadline_unix_ms(self.now_signed());
        if !condition.allows(old.expiry_ms.map(signed), deadline) {
            return Ok((self.barrier(&key), Reply::Integer(0)));
        }
        let lsn = self.put_until(&key, old.bytes, deadline)?;
        Ok((Some(lsn), Reply::Integer(1)))
    }

    fn delete_keys(&mut self, keys: Vec<Vec<u8>>) -> Step {
        let mut count = 0;
        let mut lsn = None;
        for key in &keys {
            // Expired keys are deleted too (they are garbage) but do not count, as in Redis.
            let Some(stored) = self.engine.get(key)? else {
                continue;
            };
            count += usize::from(live(stored, self.now_ms).is_some());
            lsn = lsn.max(Some(self.delete(key)?));
        }
        Ok((lsn.or_else(|| self.barriers(&keys)), int(count)))
    }

    fn mset_nx(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Step {
        for (key, _) in &pairs {
            if self.read(key)?.is_some() {
                let keys: Vec<Vec<u8>> = pairs.iter().map(|(key, _)| key.clone()).collect();
                return Ok((self.barriers(&keys), Reply::Integer(0)));
            }
        }
        let mut lsn = None;
        for (key, value) in pairs {
            lsn = lsn.max(Some(self.put(&key, value, None)?));
        }
        Ok((lsn, Reply::Integer(1)))
    }

    fn flush_batch(&mut self, limit: usize) -> Step {
        let (entries, _) = self
            .engine
            .scan(Bound::Unbounded, Bound::Unbounded, limit, false)?;
        let mut lsn = None;
        for (key, _) in &entries {
            lsn = lsn.max(Some(self.delete(key)?));
        }
        Ok((lsn.or(self.engine.scan_barrier()), int(entries.len())))
    }

    fn scan_keys(
        &mut self,
        after: Option<Vec<u8>>,
        limit: usize,
        pattern: Option<&[u8]>,
    ) -> Result<(Option<Lsn>, RespOutput), StoreError> {
        let start = match &after {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let (entries, more) = self.engine.scan(start, Bound::Unbounded, limit, false)?;
        let resume = if more {
            entries.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        let now_ms = self.now_ms;
        let keys = entries
            .into_iter()
            .filter(|(key, value)| {
                live(value.clone(), now_ms).is_some()
                    && pattern.is_none_or(|pattern| glob_match(pattern, key))
            })
            .map(|(key, _)| key)
            .collect();
        // Like a native scan: wait for every unacknowledged write (deletes included).
        let barrier = Some(self.engine.scan_barrier().unwrap_or(0));
        Ok((barrier, RespOutput::Keys { keys, resume }))
    }
}

fn signed(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn unsigned(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}
