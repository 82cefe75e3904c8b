//! Commands over the whole keyspace, run as flows of shard calls by the connection's reader (which
//! reads no further request until the flow replies, so the client's order is kept): SCAN, KEYS,
//! DBSIZE, FLUSHDB/FLUSHALL.
//!
//! Invariants:
//! - every flow is bounded: SCAN makes at most `SCAN_CALLS_PER_REQUEST_MAX` calls of at most
//!   `SCAN_CALL_KEYS_MAX` keys; KEYS stops with an error past `KEYS_REPLY_COUNT_MAX` keys; FLUSH
//!   deletes `FLUSH_BATCH_KEYS_MAX` keys per call through the normal write path;
//! - a SCAN cursor is a shard index and the last key returned there, kept in the process-wide
//!   cursor table (a Redis cursor is a number); a scan visits shards in order and keys in key
//!   order, so every key present for the whole scan is returned (once, unless the cursor is
//!   retried);
//! - nothing here is atomic across shards: FLUSHDB empties shards one after another (docs/resp.md;
//!   MSET, MSETNX and MGET are transactions instead, `execute`).

use super::execute::call_reply;
use super::shard_op::{RespOp, RespOutput};
use super::ScanPosition;
use crate::call::{CallOutput, CallResult, ShardOp, Target};
use crate::constants::{
    FLUSH_BATCH_KEYS_MAX, KEYS_CALL_KEYS_MAX, KEYS_REPLY_COUNT_MAX, SCAN_CALLS_PER_REQUEST_MAX,
    SCAN_CALL_KEYS_MAX,
};
use crate::server::CoreContext;
use jube_protocol::resp::command::Scan;
use jube_protocol::resp::Reply;
use std::borrow::Cow;

async fn call(context: &CoreContext, target: Target, op: ShardOp) -> CallResult {
    context.dispatcher.call(target, op).wait().await
}

/// One ScanKeys call: the keys and where to resume, or the error reply.
async fn scan_keys(
    context: &CoreContext,
    position: &ScanPosition,
    limit: usize,
    pattern: Option<&[u8]>,
) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), Reply> {
    let op = RespOp::ScanKeys {
        after: position.after.clone(),
        limit,
        pattern: pattern.map(<[u8]>::to_vec),
    };
    match call(context, Target::Shard(position.shard), ShardOp::Resp(op)).await {
        Ok(CallOutput::Resp(RespOutput::Keys { keys, resume })) => Ok((keys, resume)),
        other => Err(call_reply(other)),
    }
}

/// The position after a call that ended at `resume` on `position.shard`; None when the scan is
/// complete.
fn advance(
    position: ScanPosition,
    resume: Option<Vec<u8>>,
    shard_count: usize,
) -> Option<ScanPosition> {
    match resume {
        Some(after) => Some(ScanPosition {
            shard: position.shard,
            after: Some(after),
        }),
        None if position.shard + 1 < shard_count => Some(ScanPosition {
            shard: position.shard + 1,
            after: None,
        }),
        None => None,
    }
}

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
pub async fn scan(context: &CoreContext, scan: Scan) -> Reply {
    let resp = &context.shared.resp;
    let shard_count = context.shared.shard_count;
    let mut position = if scan.cursor == 0 {
        Some(ScanPosition {
            shard: 0,
            after: None,
        })
    } else {
        match resp.cursor(scan.cursor) {
            Some(position) => Some(position),
            None => return Reply::Error(Cow::Borrowed("ERR invalid cursor")),
        }
    };
    // jube holds strings only: TYPE string is every key, any other type none.
    let wanted = scan
        .type_name
        .as_deref()
        .is_none_or(|name| name.eq_ignore_ascii_case(b"string"));
    let count = usize::try_from(scan.count).unwrap_or(usize::MAX).max(1);
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut calls = 0;
    while let Some(current) = position.take() {
        let limit = (count - found.len().min(count)).clamp(1, SCAN_CALL_KEYS_MAX);
        let (keys, resume) =
            match scan_keys(context, &current, limit, scan.pattern.as_deref()).await {
                Ok(page) => page,
                Err(reply) => return reply,
            };
        if wanted {
            found.extend(keys);
        }
        position = advance(current, resume, shard_count);
        calls += 1;
        if found.len() >= count || calls >= SCAN_CALLS_PER_REQUEST_MAX {
            break;
        }
    }
    let cursor = position.map_or(0, |position| resp.save_cursor(position));
    Reply::Array(Some(vec![
        Reply::bulk(cursor.to_string()),
        Reply::bulks(found),
    ]))
}

/// `KEYS pattern`: every matching key, shard by shard.
pub async fn keys(context: &CoreContext, pattern: &[u8]) -> Reply {
    let shard_count = context.shared.shard_count;
    let pattern = (pattern != b"*").then_some(pattern);
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut position = Some(ScanPosition {
        shard: 0,
        after: None,
    });
    while let Some(current) = position.take() {
        let (keys, resume) = match scan_keys(context, &current, KEYS_CALL_KEYS_MAX, pattern).await {
            Ok(page) => page,
            Err(reply) => return reply,
        };
        found.extend(keys);
        if found.len() > KEYS_REPLY_COUNT_MAX {
            return Reply::Error(Cow::Owned(format!(
                "ERR KEYS matches more than {KEYS_REPLY_COUNT_MAX} keys: use SCAN"
            )));
        }
        position = advance(current, resume, shard_count);
    }
    Reply::bulks(found)
}

/// `DBSIZE`: the sum of the shards' key counts (from their stats, so keys that expired but are
/// not yet removed still count, as in Redis).
pub async fn dbsize(context: &CoreContext) -> Reply {
    let mut total: u64 = 0;
    for core in 0..context.dispatcher.cores() {
        match call(context, Target::Core(core), ShardOp::Report).await {
            Ok(CallOutput::Report(report)) => {
                for shard in &report.shards {
                    total += shard
                        .metrics
                        .iter()
                        .find(|(name, _)| name == "keys")
                        .map_or(0, |(_, value)| *value);
                }
            }
            other => return call_reply(other),
        }
    }
    Reply::Integer(i64::try_from(total).unwrap_or(i64::MAX))
}

/// `FLUSHDB` / `FLUSHALL`: deletes every key, shard by shard, in batches through the write path.
pub async fn flush(context: &CoreContext) -> Reply {
    for shard in 0..context.shared.shard_count {
        loop {
            let op = RespOp::FlushBatch {
                limit: FLUSH_BATCH_KEYS_MAX,
            };
            match call_reply(call(context, Target::Shard(shard), ShardOp::Resp(op)).await) {
                Reply::Integer(0) => break,
                Reply::Integer(_) => continue,
                other => return other,
            }
        }
    }
    Reply::OK
}
