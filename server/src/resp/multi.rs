//! MULTI, EXEC, DISCARD, WATCH and UNWATCH: Redis transactions on jube's transactions.
//!
//! - WATCH reads each key's version (absent: 0) and remembers it in the session.
//! - Between MULTI and EXEC every command is checked and queued (`+QUEUED`); a command refused at
//!   that point (bad arguments, or one that cannot run in a transaction: not a key command)
//!   makes EXEC answer `EXECABORT`, as in Redis.
//! - EXEC runs optimistically: (1) a read-only transaction snapshots every key the queued
//!   commands touch (value, TTL, version) and asserts every WATCHed version; (2) the queued
//!   commands run, in order, on that snapshot through the very code that runs them on a shard
//!   (`shard_op::run` over [`Overlay`]), giving each command's exact Redis reply; (3) one write
//!   transaction asserts the WATCHed versions and every snapshot version, and puts or deletes the
//!   final value of every key written. A WATCHed key that changed fails (1) or (3) on a WATCH
//!   assertion: EXEC answers a null array. Another key that changed between (1) and (3) fails a
//!   snapshot assertion: EXEC runs again from (1), at most `EXEC_RETRIES_MAX` times.
//!
//! Invariants: the commands' effects apply atomically (one transaction), exactly as if they had
//! run alone at the commit point (every key they read or wrote is asserted unchanged since the
//! snapshot); WATCH state is cleared by EXEC, DISCARD and UNWATCH; the queue is bounded by
//! `MULTI_QUEUED_MAX` and the watched keys by `WATCHED_KEYS_MAX`.

use super::execute::{failure_reply, single_key_op, Session};
use super::shard_op::{self, RespOp, RespOutput};
use crate::call::{CallOutput, ShardOp, Target};
use crate::constants::{EXEC_RETRIES_MAX, MULTI_QUEUED_MAX, WATCHED_KEYS_MAX};
use crate::routing::shard_of;
use crate::server::CoreContext;
use crate::shard_host::{
    Lsn, PrepareReply, PrepareRequest, Progress, ScanResult, ShardEngine, StoreError, StoredValue,
    TxnId, TxnPart, TxnReply,
};
use jube_protocol::resp::command::errors;
use jube_protocol::resp::{Command, Reply};
use jube_protocol::{Get, Status, Txn, TxnOp, TxnOpResult, TxnOutcome};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// A command queued between MULTI and EXEC, already turned into what EXEC runs.
#[derive(Debug, Clone)]
enum Queued {
    Op(RespOp),
    MGet(Vec<Vec<u8>>),
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// A command whose reply needs no key (PING, ECHO, UNWATCH).
    Reply(Reply),
}

impl Queued {
    fn keys(&self) -> Vec<&[u8]> {
        match self {
            Queued::Op(op) => op.keys(),
            Queued::MGet(keys) => keys.iter().map(Vec::as_slice).collect(),
            Queued::MSet(pairs) => pairs.iter().map(|(key, _)| key.as_slice()).collect(),
            Queued::Reply(_) => Vec::new(),
        }
    }
}

/// A connection's MULTI block.
#[derive(Debug, Default)]
pub struct MultiState {
    queued: Vec<Queued>,
    /// A command was refused while queueing: EXEC answers EXECABORT.
    aborted: bool,
}

impl MultiState {
    pub fn abort(&mut self) {
        self.aborted = true;
    }
}

const EXEC_ABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

fn error(text: &'static str) -> Reply {
    Reply::Error(Cow::Borrowed(text))
}

/// What a command becomes inside MULTI, or the error that refuses it.
fn queued(command: Command) -> Result<Queued, Reply> {
    let command = match single_key_op(command) {
        Ok(op) => return Ok(Queued::Op(op)),
        Err(command) => command,
    };
    Ok(match command {
        Command::MGet { keys } => Queued::MGet(keys),
        Command::MSet { pairs } => Queued::MSet(pairs),
        Command::MSetNx { pairs } => Queued::Op(RespOp::MSetNx { pairs }),
        Command::Del { keys } | Command::Unlink { keys } => Queued::Op(RespOp::Delete { keys }),
        Command::Exists { keys } => Queued::Op(RespOp::Exists { keys }),
        Command::Ping { message: None } => Queued::Reply(Reply::Simple(Cow::Borrowed("PONG"))),
        Command::Ping {
            message: Some(message),
        }
        | Command::Echo { message } => Queued::Reply(Reply::bulk(message)),
        Command::Unwatch => Queued::Reply(Reply::OK),
        _ => {
            return Err(error(
                "ERR jube runs only key commands, PING and ECHO inside MULTI",
            ))
        }
    })
}

/// Handles the transaction commands, and every command while MULTI is open; gives any other
/// command back to run normally.
pub async fn transaction_command(
    context: &CoreContext,
    session: &mut Session,
    command: Command,
) -> Result<Reply, Command> {
    match command {
        Command::Multi if session.multi.is_some() => Ok(error(errors::MULTI_NESTED)),
        Command::Multi => {
            session.multi = Some(MultiState::default());
            Ok(Reply::OK)
        }
        Command::Exec => Ok(match session.multi.take() {
            None => error(errors::EXEC_WITHOUT_MULTI),
            Some(multi) => {
                let watched = std::mem::take(&mut session.watched);
                if multi.aborted {
                    error(EXEC_ABORT)
                } else {
                    exec(context, multi.queued, &watched).await
                }
            }
        }),
        Command::Discard => Ok(match session.multi.take() {
            None => error(errors::DISCARD_WITHOUT_MULTI),
            Some(_) => {
                session.watched.clear();
                Reply::OK
            }
        }),
        Command::Watch { .. } if session.multi.is_some() => {
            Ok(error("ERR WATCH inside MULTI is not allowed"))
        }
        Command::Watch { keys } => Ok(watch(context, session, keys).await),
        Command::Unwatch if session.multi.is_none() => {
            session.watched.clear();
            Ok(Reply::OK)
        }
        command => {
            let Some(multi) = &mut session.multi else {
                return Err(command);
            };
            if multi.queued.len() >= MULTI_QUEUED_MAX {
                multi.abort();
                return Ok(Reply::Error(Cow::Owned(format!(
                    "ERR more than {MULTI_QUEUED_MAX} commands queued in MULTI"
                ))));
            }
            Ok(match queued(command) {
                Ok(queued) => {
                    multi.queued.push(queued);
                    Reply::Simple(Cow::Borrowed("QUEUED"))
                }
                Err(reply) => {
                    multi.abort();
                    reply
                }
            })
        }
    }
}

/// `WATCH key...`: remembers each key's current version.
async fn watch(context: &CoreContext, session: &mut Session, keys: Vec<Vec<u8>>) -> Reply {
    let shard_count = context.shared.shard_count;
    let mut fresh: Vec<Vec<u8>> = Vec::new();
    for key in keys {
        if !session.watched.iter().any(|(watched, _)| *watched == key) && !fresh.contains(&key) {
            fresh.push(key);
        }
    }
    if session.watched.len() + fresh.len() > WATCHED_KEYS_MAX {
        return Reply::Error(Cow::Owned(format!(
            "ERR a connection may WATCH at most {WATCHED_KEYS_MAX} keys"
        )));
    }
    let calls: Vec<_> = fresh
        .iter()
        .map(|key| {
            let op = ShardOp::Get {
                key: key.clone(),
                with_version: true,
                with_ttl: false,
            };
            context
                .dispatcher
                .call(Target::Shard(shard_of(key, shard_count)), op)
        })
        .collect();
    for (key, call) in fresh.into_iter().zip(calls) {
        let version = match call.wait().await {
            Ok(CallOutput::Get(Some(reply))) => reply.version.unwrap_or(0),
            Ok(CallOutput::Get(None)) => 0,
            Ok(_) => return failure_reply(&crate::call::wrong_output("WATCH")),
            Err(failure) => return failure_reply(&failure),
        };
        session.watched.push((key, version));
    }
    Reply::OK
}

/// A key as the snapshot saw it.
#[derive(Debug, Clone)]
struct Seen {
    value: Option<StoredValue>,
    /// The version to assert (0: absent).
    version: u64,
}

fn wall_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Runs a queued MULTI block; see the module doc.
async fn exec(context: &CoreContext, queued: Vec<Queued>, watched: &[(Vec<u8>, u64)]) -> Reply {
    let keys: BTreeSet<Vec<u8>> = queued
        .iter()
        .flat_map(Queued::keys)
        .map(<[u8]>::to_vec)
        .collect();
    for _ in 0..EXEC_RETRIES_MAX {
        let snapshot = match read_snapshot(context, &keys, watched).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Reply::Array(None),
            Err(reply) => return reply,
        };
        let now_ms = wall_ms();
        let mut overlay = Overlay::new(now_ms, &snapshot);
        let replies: Vec<Reply> = queued
            .iter()
            .map(|command| overlay.run(command.clone()))
            .collect();
        if overlay.written.is_empty() {
            return Reply::Array(Some(replies));
        }
        let mut txn = Txn::new();
        for (key, version) in watched {
            txn = txn.assert_version(key.clone(), *version);
        }
        for (key, seen) in &snapshot {
            txn = txn.assert_version(key.clone(), seen.version);
        }
        for key in &overlay.written {
            txn = match overlay.values.get(key).cloned().flatten() {
                Some(value) => match value.expiry_ms {
                    Some(expiry_ms) => txn.put_ttl(
                        key.clone(),
                        value.bytes,
                        expiry_ms.saturating_sub(now_ms).max(1),
                    ),
                    None => txn.put(key.clone(), value.bytes),
                },
                None => txn.delete(key.clone()),
            };
        }
        let txn = match crate::txn::validated(txn) {
            Ok(txn) => txn,
            Err(failure) => return failure_reply(&failure),
        };
        match crate::txn::execute(&context.dispatcher, context.shared.shard_count, txn).await {
            Ok(TxnOutcome::Committed(_)) => return Reply::Array(Some(replies)),
            Ok(TxnOutcome::AssertionFailed { index, .. }) if (index as usize) < watched.len() => {
                return Reply::Array(None)
            }
            // A key read or written (not watched) changed since the snapshot: run again.
            Ok(TxnOutcome::AssertionFailed { .. }) => continue,
            Ok(TxnOutcome::OpFailed { index, detail }) => {
                return Reply::Error(Cow::Owned(format!(
                    "ERR EXEC write {index} failed: {detail}"
                )))
            }
            Err(failure) => return failure_reply(&failure),
        }
    }
    Reply::Error(Cow::Owned(format!(
        "ERR EXEC met concurrent writes of its keys {EXEC_RETRIES_MAX} times in a row: retry"
    )))
}

/// Reads every key with its version and TTL in one read-only transaction that also asserts the
/// WATCHed versions. Ok(None): a WATCHed key changed.
async fn read_snapshot(
    context: &CoreContext,
    keys: &BTreeSet<Vec<u8>>,
    watched: &[(Vec<u8>, u64)],
) -> Result<Option<BTreeMap<Vec<u8>, Seen>>, Reply> {
    let mut txn = Txn::new();
    for (key, version) in watched {
        txn = txn.assert_version(key.clone(), *version);
    }
    for key in keys {
        txn = txn.op(TxnOp::Read(Get {
            key: key.clone(),
            with_version: true,
            with_ttl: true,
        }));
    }
    if txn.assertions.is_empty() && txn.ops.is_empty() {
        return Ok(Some(BTreeMap::new()));
    }
    let txn = crate::txn::validated(txn).map_err(|failure| failure_reply(&failure))?;
    let now_ms = wall_ms();
    let results =
        match crate::txn::execute(&context.dispatcher, context.shared.shard_count, txn).await {
            Ok(TxnOutcome::Committed(results)) => results,
            Ok(TxnOutcome::AssertionFailed { .. }) => return Ok(None),
            Ok(TxnOutcome::OpFailed { detail, .. }) => {
                return Err(Reply::Error(Cow::Owned(format!("ERR EXEC read: {detail}"))))
            }
            Err(failure) => return Err(failure_reply(&failure)),
        };
    let mut snapshot = BTreeMap::new();
    for (key, result) in keys.iter().zip(results) {
        let seen = match result {
            TxnOpResult::Read(Some(reply)) => Seen {
                version: reply.version.unwrap_or(0),
                value: Some(StoredValue {
                    expiry_ms: reply.ttl_remaining_ms.map(|ttl| now_ms.saturating_add(ttl)),
                    bytes: reply.value,
                    version: reply.version.unwrap_or(0),
                }),
            },
            TxnOpResult::Read(None) => Seen {
                value: None,
                version: 0,
            },
            _ => return Err(failure_reply(&crate::call::wrong_output("EXEC"))),
        };
        snapshot.insert(key.clone(), seen);
    }
    Ok(Some(snapshot))
}

/// The keys of one EXEC as a tiny in-memory shard: the snapshot plus the writes of the commands
/// run so far. It lets `shard_op::run` compute each command's effect and reply exactly as on a
/// shard; nothing here touches the engine.
struct Overlay {
    now_ms: u64,
    values: BTreeMap<Vec<u8>, Option<StoredValue>>,
    written: BTreeSet<Vec<u8>>,
}

impl Overlay {
    fn new(now_ms: u64, snapshot: &BTreeMap<Vec<u8>, Seen>) -> Overlay {
        Overlay {
            now_ms,
            values: snapshot
                .iter()
                .map(|(key, seen)| (key.clone(), seen.value.clone()))
                .collect(),
            written: BTreeSet::new(),
        }
    }

    fn run_op(&mut self, op: RespOp) -> Reply {
        let now_ms = self.now_ms;
        match shard_op::run(self, op, now_ms) {
            Ok((_, CallOutput::Resp(RespOutput::Reply(reply)))) => reply,
            Ok(_) => failure_reply(&crate::call::wrong_output("EXEC")),
            Err(error) => Reply::Error(Cow::Owned(format!("ERR {}", error.message()))),
        }
    }

    fn run(&mut self, queued: Queued) -> Reply {
        match queued {
            Queued::Op(op) => self.run_op(op),
            Queued::MGet(keys) => Reply::Array(Some(
                keys.into_iter()
                    .map(|key| self.run_op(RespOp::Get { key }))
                    .collect(),
            )),
            Queued::MSet(pairs) => {
                for (key, value) in pairs {
                    self.values.insert(
                        key.clone(),
                        Some(StoredValue {
                            bytes: value,
                            expiry_ms: None,
                            version: 0,
                        }),
                    );
                    self.written.insert(key);
                }
                Reply::OK
            }
            Queued::Reply(reply) => reply,
        }
    }
}

fn not_in_exec() -> StoreError {
    StoreError::Rejected {
        status: Status::Internal,
        message: "not available while EXEC computes its commands".to_string(),
    }
}

impl ShardEngine for Overlay {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.values.get(key).cloned().flatten())
    }

    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: Option<u64>) -> Result<Lsn, StoreError> {
        let stored = StoredValue {
            bytes: value.to_vec(),
            expiry_ms,
            version: 0,
        };
        self.values.insert(key.to_vec(), Some(stored));
        self.written.insert(key.to_vec());
        Ok(0)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(bool, Lsn), StoreError> {
        let existed = self.values.insert(key.to_vec(), None).flatten().is_some();
        self.written.insert(key.to_vec());
        Ok((existed, 0))
    }

    fn scan(
        &mut self,
        _start: Bound<&[u8]>,
        _end: Bound<&[u8]>,
        _limit: usize,
        _reverse: bool,
    ) -> Result<ScanResult, StoreError> {
        Err(not_in_exec())
    }

    fn poll(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn io_in_flight(&self) -> bool {
        false
    }

    fn next_deadline_ns(&self) -> Option<u64> {
        None
    }

    fn acked_lsn(&self) -> Lsn {
        0
    }

    fn read_barrier(&self, _key: &[u8]) -> Option<Lsn> {
        None
    }

    fn scan_barrier(&self) -> Option<Lsn> {
        None
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Err(not_in_exec())
    }

    fn close(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    fn progress(&self) -> Progress {
        Progress::default()
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn apply_txn(&mut self, _part: &TxnPart) -> Result<TxnReply, StoreError> {
        Err(not_in_exec())
    }

    fn prepare_txn(&mut self, _request: &PrepareRequest) -> Result<PrepareReply, StoreError> {
        Err(not_in_exec())
    }

    fn decide_txn(&mut self, _id: TxnId, _participants: &[u32]) -> Result<Lsn, StoreError> {
        Err(not_in_exec())
    }

    fn finish_txn(&mut self, _id: TxnId, _commit: bool) -> Result<Lsn, StoreError> {
        Err(not_in_exec())
    }

    fn in_doubt(&self) -> Vec<TxnId> {
        Vec::new()
    }

    fn decision(&self, _id: TxnId) -> bool {
        false
    }

    fn forget_decision(&mut self, _id: TxnId) {}

    fn recovered_decisions(&self) -> Vec<TxnId> {
        Vec::new()
    }

    fn lock_holder(&self, _key: &[u8]) -> Option<TxnId> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jube_protocol::resp::command::{Condition, Set, SetTtl};

    fn snapshot(entries: &[(&str, Option<&str>)]) -> BTreeMap<Vec<u8>, Seen> {
        entries
            .iter()
            .map(|(key, value)| {
                let value = value.map(|v| StoredValue {
                    bytes: v.as_bytes().to_vec(),
                    expiry_ms: None,
                    version: 5,
                });
                let version = if value.is_some() { 5 } else { 0 };
                (key.as_bytes().to_vec(), Seen { value, version })
            })
            .collect()
    }

    #[test]
    fn overlay_runs_commands_in_order_with_redis_replies() {
        let mut overlay = Overlay::new(1_000, &snapshot(&[("n", Some("41")), ("s", None)]));
        let incr = overlay.run(Queued::Op(RespOp::IncrBy {
            key: b"n".to_vec(),
            delta: 1,
        }));
        assert_eq!(incr, Reply::Integer(42));
        let get = overlay.run(Queued::Op(RespOp::Get { key: b"n".to_vec() }));
        assert_eq!(
            get,
            Reply::bulk("42"),
            "a later command sees the earlier write"
        );
        let set_nx = overlay.run(Queued::Op(RespOp::Set(Set {
            key: b"s".to_vec(),
            value: b"v".to_vec(),
            ttl: SetTtl::Clear,
            condition: Condition::IfAbsent,
            get: false,
        })));
        assert_eq!(set_nx, Reply::OK);
        let again = overlay.run(Queued::Op(RespOp::SetNx {
            key: b"s".to_vec(),
            value: b"w".to_vec(),
        }));
        assert_eq!(
            again,
            Reply::Integer(0),
            "SETNX of a key set earlier in EXEC"
        );
        let not_int = overlay.run(Queued::Op(RespOp::IncrBy {
            key: b"s".to_vec(),
            delta: 1,
        }));
        assert!(
            matches!(not_int, Reply::Error(_)),
            "an error reply, the block goes on"
        );
        let deleted = overlay.run(Queued::Op(RespOp::Delete {
            keys: vec![b"n".to_vec(), b"s".to_vec()],
        }));
        assert_eq!(deleted, Reply::Integer(2));
        assert_eq!(
            overlay.written.iter().cloned().collect::<Vec<_>>(),
            [b"n".to_vec(), b"s".to_vec()]
        );
        assert!(overlay.values.values().all(Option::is_none));
    }

    #[test]
    fn only_key_commands_queue() {
        assert!(matches!(
            queued(Command::Get { key: b"k".to_vec() }),
            Ok(Queued::Op(_))
        ));
        assert!(matches!(
            queued(Command::Ping { message: None }),
            Ok(Queued::Reply(_))
        ));
        assert!(queued(Command::DbSize).is_err());
        assert!(queued(Command::Keys {
            pattern: b"*".to_vec()
        })
        .is_err());
    }
}
