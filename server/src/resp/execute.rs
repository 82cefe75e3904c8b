//! From a RESP request's words to its reply: the AUTH gate, `Command::parse`, then either an
//! immediate reply (connection commands), shard calls made at once (single-key commands, MGET,
//! MSET, DEL, EXISTS: one call per owning shard), or an inline flow over every shard
//! (`keyspace`), which the reader awaits before it reads the next request.
//!
//! Invariants:
//! - a command's calls are made when it is read, in request order, so a shard sees one
//!   connection's calls in the order the client sent them, and a later command observes an
//!   earlier one's writes;
//! - a single-key command is one call to the key's shard (`shard_op`), so read-modify-write is
//!   atomic there; a multi-key command makes one call per shard it touches;
//! - before AUTH (when `resp_password` is set) only AUTH, HELLO and QUIT run.

use super::admin;
use super::keyspace;
use super::multi::{self, MultiState};
use super::shard_op::{RespOp, RespOutput};
use crate::call::{CallOutput, CallResult, ShardOp, Target};
use crate::metrics::CoreMetrics;
use crate::routing::shard_of;
use crate::server::CoreContext;
use crate::sync::Slot;
use crate::txn::OpsMeta;
use jube_protocol::resp::command::errors;
use jube_protocol::resp::{table, Command, Reply, RespVersion};
use jube_protocol::{Failure, Status, Txn, TxnOp, TxnOpResult, TxnOutcome};
use std::borrow::Cow;
use std::rc::Rc;

/// A connection's state, owned by its reader.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub peer: String,
    pub version: RespVersion,
    pub authenticated: bool,
    pub name: Option<Vec<u8>>,
    pub library_name: Option<Vec<u8>>,
    pub library_version: Option<Vec<u8>>,
    /// When the connection was accepted (CLIENT INFO's age).
    pub started: std::time::Instant,
    /// Between MULTI and EXEC/DISCARD: the queued commands.
    pub multi: Option<MultiState>,
    /// WATCHed keys and the version each had when watched (0: absent), until EXEC, DISCARD or
    /// UNWATCH.
    pub watched: Vec<(Vec<u8>, u64)>,
}

impl Session {
    pub fn new(id: u64, peer: String) -> Session {
        Session {
            id,
            peer,
            version: RespVersion::Resp2,
            authenticated: false,
            name: None,
            library_name: None,
            library_version: None,
            started: std::time::Instant::now(),
            multi: None,
            watched: Vec::new(),
        }
    }
}

/// How a multi-key command's transaction becomes its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnReply {
    /// MSET: `+OK`.
    Ok,
    /// MSETNX: 1 if written, 0 if a key existed.
    SetIfAbsent,
    /// MGET: the values read, in order.
    Values,
}

/// How the results of a command's calls become its reply.
#[derive(Debug, Clone)]
pub enum Combine {
    /// One call whose output is the reply.
    One,
    /// Integer replies added up (DEL, EXISTS).
    Sum,
    /// `+OK` once every call succeeded (MSET).
    Ok,
    /// MGET: values gathered by position.
    MGet { count: usize },
    /// MSET, MSETNX, cross-shard MGET: one transaction's outcome.
    Txn { meta: OpsMeta, reply: TxnReply },
}

/// What a reply waits for.
pub enum Pending {
    Ready(Reply),
    Calls {
        parts: Vec<Rc<Slot<CallResult>>>,
        combine: Combine,
    },
}

/// One request in the connection's FIFO.
pub struct Item {
    pub pending: Pending,
    /// The RESP version to encode the reply in.
    pub version: RespVersion,
    /// Close the connection after this reply (QUIT, protocol error).
    pub close_after: bool,
}

impl Item {
    pub fn ready(reply: Reply, version: RespVersion) -> Item {
        Item {
            pending: Pending::Ready(reply),
            version,
            close_after: false,
        }
    }

    pub fn closing(reply: Reply, version: RespVersion) -> Item {
        Item {
            close_after: true,
            ..Item::ready(reply, version)
        }
    }

    pub fn is_ready(&self) -> bool {
        match &self.pending {
            Pending::Ready(_) => true,
            Pending::Calls { parts, .. } => parts.iter().all(|part| part.is_filled()),
        }
    }

    /// Waits for every call and builds the reply; transactions are counted in `metrics`.
    pub async fn finish(self, metrics: &CoreMetrics) -> Reply {
        let (parts, combine) = match self.pending {
            Pending::Ready(reply) => return reply,
            Pending::Calls { parts, combine } => (parts, combine),
        };
        let mut results = Vec::with_capacity(parts.len());
        for part in &parts {
            results.push(part.wait().await);
        }
        combine_results(combine, results, metrics)
    }
}

/// The error reply for a failed call, in Redis's form (`ERR ...`).
pub fn failure_reply(failure: &Failure) -> Reply {
    match failure.status {
        Status::KeyTooLarge => Reply::Error(Cow::Borrowed(errors::KEY_TOO_LARGE)),
        Status::ValueTooLarge => Reply::Error(Cow::Borrowed(errors::VALUE_TOO_LARGE)),
        status => Reply::Error(Cow::Owned(format!("ERR {status}: {}", failure.message))),
    }
}

/// The reply a shard computed, or the error reply for its failure.
pub fn call_reply(result: CallResult) -> Reply {
    match result {
        Ok(CallOutput::Resp(RespOutput::Reply(reply))) => reply,
        Ok(_) => internal(),
        Err(failure) => failure_reply(&failure),
    }
}

fn internal() -> Reply {
    Reply::Error(Cow::Borrowed(
        "ERR internal error: a shard answered with the wrong kind of result",
    ))
}

fn combine_results(combine: Combine, results: Vec<CallResult>, metrics: &CoreMetrics) -> Reply {
    match combine {
        Combine::Txn { meta, reply } => {
            let result = results.into_iter().next().map_or_else(
                || Err(crate::call::wrong_output("Txn")),
                |result| crate::txn::finish(result, &meta),
            );
            crate::txn::record(metrics, &result);
            txn_reply(result, reply)
        }
        Combine::One => results.into_iter().next().map_or_else(internal, call_reply),
        Combine::Sum => {
            let mut sum: i64 = 0;
            for result in results {
                match call_reply(result) {
                    Reply::Integer(count) => sum = sum.saturating_add(count),
                    other => return other,
                }
            }
            Reply::Integer(sum)
        }
        Combine::Ok => match results.into_iter().find_map(Result::err) {
            Some(failure) => failure_reply(&failure),
            None => Reply::OK,
        },
        Combine::MGet { count } => {
            let mut values = vec![None; count];
            for result in results {
                match result {
                    Ok(CallOutput::Values(found)) => {
                        for (position, value) in found {
                            if let Some(slot) = values.get_mut(position) {
                                *slot = value;
                            }
                        }
                    }
                    Ok(_) => return internal(),
                    Err(failure) => return failure_reply(&failure),
                }
            }
            Reply::Array(Some(values.into_iter().map(Reply::Bulk).collect()))
        }
    }
}

fn txn_reply(result: Result<TxnOutcome, Failure>, reply: TxnReply) -> Reply {
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => return failure_reply(&failure),
    };
    match (outcome, reply) {
        (TxnOutcome::Committed(_), TxnReply::Ok) => Reply::OK,
        (TxnOutcome::Committed(_), TxnReply::SetIfAbsent) => Reply::Integer(1),
        (TxnOutcome::AssertionFailed { .. }, TxnReply::SetIfAbsent) => Reply::Integer(0),
        (TxnOutcome::Committed(results), TxnReply::Values) => Reply::Array(Some(
            results
                .into_iter()
                .map(|result| match result {
                    TxnOpResult::Read(value) => Reply::Bulk(value.map(|value| value.value)),
                    _ => internal(),
                })
                .collect(),
        )),
        (TxnOutcome::OpFailed { index, detail }, _)
        | (TxnOutcome::AssertionFailed { index, detail }, _) => Reply::Error(Cow::Owned(format!(
            "ERR transaction item {index} failed: {detail}"
        ))),
    }
}

/// Runs one request (non-empty `args`) and returns its FIFO item.
pub async fn execute(context: &CoreContext, session: &mut Session, args: Vec<Vec<u8>>) -> Item {
    let version = session.version;
    if !session.authenticated && context.shared.config.server.resp_password.is_some() {
        let name = args.first().map(|name| name.to_ascii_lowercase());
        if !matches!(name.as_deref(), Some(b"auth" | b"hello" | b"quit")) {
            return Item::ready(Reply::Error(Cow::Borrowed(errors::NO_AUTH)), version);
        }
    }
    let command = match Command::parse(args) {
        Ok(command) => command,
        Err(error) => {
            // As in Redis: a command refused while queueing makes EXEC answer EXECABORT.
            if let Some(multi) = &mut session.multi {
                multi.abort();
            }
            return Item::ready(error.to_reply(), version);
        }
    };
    if let Command::Quit = command {
        return Item::closing(Reply::OK, version);
    }
    let command = match multi::transaction_command(context, session, command).await {
        Ok(reply) => return Item::ready(reply, version),
        Err(command) => command,
    };
    let pending = match route(context, command) {
        Routed::Pending(pending) => pending,
        Routed::Local(command) => Pending::Ready(local(context, session, command).await),
    };
    // HELLO may have changed the version: its own reply is in the new one, as in Redis.
    Item {
        pending,
        version: session.version,
        close_after: false,
    }
}

enum Routed {
    Pending(Pending),
    /// Not a keyed command: answered by `local`.
    Local(Command),
}

/// The one-shard op of a single-key command, or the command back if it is not one.
pub fn single_key_op(command: Command) -> Result<RespOp, Command> {
    Ok(match command {
        Command::Get { key } => RespOp::Get { key },
        Command::StrLen { key } => RespOp::StrLen { key },
        Command::GetRange { key, start, end } => RespOp::GetRange { key, start, end },
        Command::Ttl { key, unit } => RespOp::Ttl {
            key,
            unit,
            absolute: false,
        },
        Command::ExpireTime { key, unit } => RespOp::Ttl {
            key,
            unit,
            absolute: true,
        },
        Command::Type { key } => RespOp::Type { key },
        Command::Set(set) => RespOp::Set(set),
        Command::SetNx { key, value } => RespOp::SetNx { key, value },
        Command::GetDel { key } => RespOp::GetDel { key },
        Command::GetEx { key, expiry } => RespOp::GetEx { key, expiry },
        Command::IncrBy { key, delta } => RespOp::IncrBy { key, delta },
        Command::IncrByFloat { key, increment } => RespOp::IncrByFloat {
            key,
            increment_bits: increment.to_bits(),
        },
        Command::Append { key, value } => RespOp::Append { key, value },
        Command::SetRange { key, offset, value } => RespOp::SetRange { key, offset, value },
        Command::Expire {
            key,
            expiry,
            condition,
        } => RespOp::Expire {
            key,
            expiry,
            condition,
        },
        Command::Persist { key } => RespOp::Persist { key },
        other => return Err(other),
    })
}

/// Makes the shard calls of a keyed command.
fn route(context: &CoreContext, command: Command) -> Routed {
    let shard_count = context.shared.shard_count;
    let command = match single_key_op(command) {
        Ok(op) => {
            let shard = op
                .keys()
                .first()
                .map_or(0, |key| shard_of(key, shard_count));
            return Routed::Pending(Pending::Calls {
                parts: vec![context
                    .dispatcher
                    .call(Target::Shard(shard), ShardOp::Resp(op))],
                combine: Combine::One,
            });
        }
        Err(command) => command,
    };
    let pending = match command {
        Command::MGet { keys } => mget(context, keys),
        Command::MSet { pairs } => mset(context, pairs),
        Command::MSetNx { pairs } => mset_nx(context, pairs),
        Command::Del { keys } | Command::Unlink { keys } => {
            per_shard_sum(context, keys, |keys| RespOp::Delete { keys })
        }
        Command::Exists { keys } => per_shard_sum(context, keys, |keys| RespOp::Exists { keys }),
        other => return Routed::Local(other),
    };
    Routed::Pending(pending)
}

/// `items` grouped by the shard of `key_of(item)`, shards in order, empty groups left out.
pub fn by_shard<T>(
    items: Vec<T>,
    shard_count: usize,
    key_of: impl Fn(&T) -> &[u8],
) -> Vec<(usize, Vec<T>)> {
    let mut groups: Vec<Vec<T>> = (0..shard_count).map(|_| Vec::new()).collect();
    for item in items {
        let shard = shard_of(key_of(&item), shard_count);
        groups[shard].push(item);
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, group)| !group.is_empty())
        .collect()
}

/// MGET: one call if one shard owns every key; across shards, a read-only transaction (locks,
/// no log record), so that no MGET sees half of a cross-shard MSET.
fn mget(context: &CoreContext, keys: Vec<Vec<u8>>) -> Pending {
    let count = keys.len();
    let items: Vec<(usize, Vec<u8>)> = keys.into_iter().enumerate().collect();
    let mut groups = by_shard(items, context.shared.shard_count, |(_, key)| key);
    if groups.len() > 1 {
        let txn = groups
            .into_iter()
            .flat_map(|(_, items)| items)
            .fold(vec![Vec::new(); count], |mut keys, (position, key)| {
                keys[position] = key;
                keys
            })
            .into_iter()
            .fold(Txn::new(), |txn, key| {
                txn.op(TxnOp::Read(jube_protocol::Get::new(key)))
            });
        return start_txn(context, txn, TxnReply::Values);
    }
    let parts = groups
        .pop()
        .map(|(shard, items)| {
            context
                .dispatcher
                .call(Target::Shard(shard), ShardOp::MultiGet { items })
        })
        .into_iter()
        .collect();
    Pending::Calls {
        parts,
        combine: Combine::MGet { count },
    }
}

/// MSET: one transaction (one call and one log record if one shard owns every key), so it is all
/// or nothing, across shards and crashes.
fn mset(context: &CoreContext, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Pending {
    let txn = pairs
        .into_iter()
        .fold(Txn::new(), |txn, (key, value)| txn.put(key, value));
    start_txn(context, txn, TxnReply::Ok)
}

/// MSETNX: one transaction asserting every key absent, then writing them all.
fn mset_nx(context: &CoreContext, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Pending {
    let mut txn = Txn::new();
    for (key, _) in &pairs {
        txn = txn.assert_absent(key.clone());
    }
    let txn = pairs
        .into_iter()
        .fold(txn, |txn, (key, value)| txn.put(key, value));
    start_txn(context, txn, TxnReply::SetIfAbsent)
}

/// Starts `txn` after checking the protocol's transaction limits.
fn start_txn(context: &CoreContext, txn: Txn, reply: TxnReply) -> Pending {
    match crate::txn::validated(txn) {
        Ok(txn) => {
            let started = crate::txn::start(&context.dispatcher, context.shared.shard_count, txn);
            Pending::Calls {
                parts: vec![started.slot],
                combine: Combine::Txn {
                    meta: started.meta,
                    reply,
                },
            }
        }
        Err(failure) => Pending::Ready(failure_reply(&failure)),
    }
}

fn per_shard_sum(
    context: &CoreContext,
    keys: Vec<Vec<u8>>,
    op: impl Fn(Vec<Vec<u8>>) -> RespOp,
) -> Pending {
    let parts = by_shard(keys, context.shared.shard_count, |key| key)
        .into_iter()
        .map(|(shard, keys)| {
            context
                .dispatcher
                .call(Target::Shard(shard), ShardOp::Resp(op(keys)))
        })
        .collect();
    Pending::Calls {
        parts,
        combine: Combine::Sum,
    }
}

/// Commands without a key of their own: connection state, the server, and whole-keyspace flows.
async fn local(context: &CoreContext, session: &mut Session, command: Command) -> Reply {
    match command {
        Command::Ping { message: None } => Reply::Simple(Cow::Borrowed("PONG")),
        Command::Ping {
            message: Some(message),
        } => Reply::bulk(message),
        Command::Echo { message } => Reply::bulk(message),
        Command::Select => Reply::OK,
        Command::Hello {
            version,
            auth,
            client_name,
        } => admin::hello(context, session, version, auth, client_name),
        Command::Auth(credentials) => admin::auth(context, session, &credentials),
        Command::Client(query) => admin::client(session, query),
        Command::ConfigGet { patterns } => admin::config_get(context, &patterns),
        Command::Command(query) => command_query(query),
        Command::Time => admin::time(),
        Command::Info { sections } => admin::info(context, &sections).await,
        Command::Scan(scan) => keyspace::scan(context, scan).await,
        Command::Keys { pattern } => keyspace::keys(context, &pattern).await,
        Command::DbSize => keyspace::dbsize(context).await,
        Command::FlushDb { .. } | Command::FlushAll { .. } => keyspace::flush(context).await,
        // Commands the parser knows that the server does not run yet.
        _ => Reply::Error(Cow::Borrowed("ERR jube does not run this command yet")),
    }
}

fn command_query(query: jube_protocol::resp::command::CommandQuery) -> Reply {
    use jube_protocol::resp::command::CommandQuery;
    match query {
        CommandQuery::List => table::command_reply(),
        CommandQuery::Count => table::count_reply(),
        CommandQuery::Info(names) => table::info_reply(&names),
        CommandQuery::Docs(names) => table::docs_reply(&names),
    }
}
