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
use super::shard_op::{RespOp, RespOutput};
use crate::call::{CallOutput, CallResult, PutItem, ShardOp, Target};
use crate::routing::shard_of;
use crate::server::CoreContext;
use crate::sync::Slot;
use jube_protocol::resp::command::errors;
use jube_protocol::resp::{table, Command, Reply, RespVersion};
use jube_protocol::{Failure, Status};
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
        }
    }
}

/// How the results of a command's calls become its reply.
#[derive(Debug, Clone, Copy)]
pub enum Combine {
    /// One call whose output is the reply.
    One,
    /// Integer replies added up (DEL, EXISTS).
    Sum,
    /// `+OK` once every call succeeded (MSET).
    Ok,
    /// MGET: values gathered by position.
    MGet { count: usize },
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

    /// Waits for every call and builds the reply.
    pub async fn finish(self) -> Reply {
        let (parts, combine) = match self.pending {
            Pending::Ready(reply) => return reply,
            Pending::Calls { parts, combine } => (parts, combine),
        };
        let mut results = Vec::with_capacity(parts.len());
        for part in &parts {
            results.push(part.wait().await);
        }
        combine_results(combine, results)
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

fn combine_results(combine: Combine, results: Vec<CallResult>) -> Reply {
    match combine {
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
        Err(error) => return Item::ready(error.to_reply(), version),
    };
    if let Command::Quit = command {
        return Item::closing(Reply::OK, version);
    }
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

/// Makes the shard calls of a keyed command.
fn route(context: &CoreContext, command: Command) -> Routed {
    let shard_count = context.shared.shard_count;
    let one = |key: &[u8], op: RespOp| Pending::Calls {
        parts: vec![context
            .dispatcher
            .call(Target::Shard(shard_of(key, shard_count)), ShardOp::Resp(op))],
        combine: Combine::One,
    };
    let pending = match command {
        Command::Get { key } => one(&key.clone(), RespOp::Get { key }),
        Command::StrLen { key } => one(&key.clone(), RespOp::StrLen { key }),
        Command::GetRange { key, start, end } => {
            one(&key.clone(), RespOp::GetRange { key, start, end })
        }
        Command::Ttl { key, unit } => one(
            &key.clone(),
            RespOp::Ttl {
                key,
                unit,
                absolute: false,
            },
        ),
        Command::ExpireTime { key, unit } => one(
            &key.clone(),
            RespOp::Ttl {
                key,
                unit,
                absolute: true,
            },
        ),
        Command::Type { key } => one(&key.clone(), RespOp::Type { key }),
        Command::Set(set) => one(&set.key.clone(), RespOp::Set(set)),
        Command::SetNx { key, value } => one(&key.clone(), RespOp::SetNx { key, value }),
        Command::GetDel { key } => one(&key.clone(), RespOp::GetDel { key }),
        Command::GetEx { key, expiry } => one(&key.clone(), RespOp::GetEx { key, expiry }),
        Command::IncrBy { key, delta } => one(&key.clone(), RespOp::IncrBy { key, delta }),
        Command::IncrByFloat { key, increment } => one(
            &key.clone(),
            RespOp::IncrByFloat {
                key,
                increment_bits: increment.to_bits(),
            },
        ),
        Command::Append { key, value } => one(&key.clone(), RespOp::Append { key, value }),
        Command::SetRange { key, offset, value } => {
            one(&key.clone(), RespOp::SetRange { key, offset, value })
        }
        Command::Expire {
            key,
            expiry,
            condition,
        } => one(
            &key.clone(),
            RespOp::Expire {
                key,
                expiry,
                condition,
            },
        ),
        Command::Persist { key } => one(&key.clone(), RespOp::Persist { key }),
        Command::MGet { keys } => mget(context, keys),
        Command::MSet { pairs } => mset(context, pairs),
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

fn mget(context: &CoreContext, keys: Vec<Vec<u8>>) -> Pending {
    let count = keys.len();
    let items: Vec<(usize, Vec<u8>)> = keys.into_iter().enumerate().collect();
    let parts = by_shard(items, context.shared.shard_count, |(_, key)| key)
        .into_iter()
        .map(|(shard, items)| {
            context
                .dispatcher
                .call(Target::Shard(shard), ShardOp::MultiGet { items })
        })
        .collect();
    Pending::Calls {
        parts,
        combine: Combine::MGet { count },
    }
}

/// MSET: one write batch per shard. Each shard's part is atomic; across shards it is not (no
/// transactions yet: docs/resp.md).
fn mset(context: &CoreContext, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Pending {
    let entries: Vec<PutItem> = pairs
        .into_iter()
        .map(|(key, value)| (key, value, None))
        .collect();
    let parts = by_shard(entries, context.shared.shard_count, |(key, _, _)| key)
        .into_iter()
        .map(|(shard, entries)| {
            context
                .dispatcher
                .call(Target::Shard(shard), ShardOp::MultiPut { entries })
        })
        .collect();
    Pending::Calls {
        parts,
        combine: Combine::Ok,
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
        Command::MSetNx { pairs } => keyspace::mset_nx(context, pairs).await,
        Command::Unwatch => Reply::OK,
        Command::Multi | Command::Exec | Command::Discard | Command::Watch { .. } => {
            Reply::Error(Cow::Borrowed(
                "ERR transactions (MULTI, EXEC, DISCARD, WATCH) are not supported yet (jube issue 9)",
            ))
        }
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
