//! Transactions on the server: a protocol [`Txn`] split into one part per shard, run as ONE
//! `ApplyTxn` call when a single shard owns every key (no extra message, no extra record), or
//! else as two-phase commit driven by the engine's sans-IO [`Coordinator`] over the
//! dispatcher's calls; and the engine's outcome turned back into the protocol's.
//!
//! Invariants:
//! - the parts cover every assertion and op of the request exactly once, each with its index in
//!   the request, so a failure names the client's index;
//! - a cross-shard driver runs as its own task on the core that received the request: the client
//!   is answered at the coordinator's `Reply` step (after the Decision is durable), and the task
//!   finishes the participants and forgets the decision afterwards; it makes one call per step,
//!   so it holds at most one outstanding call per participant;
//! - a driver that ends without a `Reply` (a coordinator bug) answers `Internal`, never silence.

use crate::call::{wrong_output, CallOutput, CallResult, ShardOp, Target};
use crate::dispatcher::Dispatcher;
use crate::metrics::{CoreMetrics, TxnCounter};
use crate::routing::shard_of;
use crate::shard_host::{
    AssertionKind, Compare, Coordinator, EngineTxnOp, EngineTxnOutcome, Feedback, OpKind, OpOutput,
    OpResult, ShardError, Step, StoreError, TxnAssertion, TxnFailure, TxnPart,
};
use crate::sync::Slot;
use jube_protocol::{
    Check, CompareOp, Failure, GetReply, Status, Txn, TxnOp, TxnOpResult, TxnOutcome,
};
use std::collections::VecDeque;
use std::rc::Rc;

/// What the reply needs of each op of the request: its kind and what a Read asked for.
#[derive(Debug, Clone)]
pub struct OpsMeta {
    /// Per op, in request order: (with_version, with_ttl) for a Read, None otherwise.
    reads: Vec<Option<(bool, bool)>>,
    /// The engine wants one index space for assertions and ops together
    /// (`TxnPart::validate`), so op N of the request travels as index `op_offset + N`
    /// (`op_offset` = the number of assertions) and is mapped back in the reply.
    op_offset: u32,
}

fn compare(op: CompareOp) -> Compare {
    match op {
        CompareOp::Eq => Compare::Eq,
        CompareOp::Ne => Compare::Ne,
        CompareOp::Lt => Compare::Lt,
        CompareOp::Le => Compare::Le,
        CompareOp::Gt => Compare::Gt,
        CompareOp::Ge => Compare::Ge,
    }
}

fn index(position: usize) -> u32 {
    u32::try_from(position).expect("TXN_ITEMS_MAX fits in u32")
}

/// Splits `txn` into (shard, part), ascending by shard, and what the reply needs. Put TTLs travel
/// as ms in `expiry_ms` until the shard resolves them (`ShardOp::ApplyTxn`).
pub fn split(txn: Txn, shard_count: usize) -> (Vec<(u32, TxnPart)>, OpsMeta) {
    let mut parts: Vec<TxnPart> = (0..shard_count).map(|_| TxnPart::default()).collect();
    let op_offset = index(txn.assertions.len());
    for (position, assertion) in txn.assertions.into_iter().enumerate() {
        let kind = match assertion.check {
            Check::Exists => AssertionKind::Exists,
            Check::Absent => AssertionKind::Absent,
            Check::ValueEquals(value) => AssertionKind::ValueEquals(value),
            Check::HashEquals(hash) => AssertionKind::HashEquals(hash),
            Check::IntCompare { op, operand } => AssertionKind::IntCompare {
                op: compare(op),
                operand,
            },
            Check::VersionEquals(version) => AssertionKind::VersionEquals(version),
        };
        parts[shard_of(&assertion.key, shard_count)]
            .assertions
            .push(TxnAssertion {
                index: index(position),
                key: assertion.key,
                kind,
            });
    }
    let mut reads = Vec::with_capacity(txn.ops.len());
    for (position, op) in txn.ops.into_iter().enumerate() {
        let (key, kind) = match op {
            TxnOp::Read(get) => {
                reads.push(Some((get.with_version, get.with_ttl)));
                let kind = OpKind::Read {
                    with_version: get.with_version,
                };
                (get.key, kind)
            }
            TxnOp::Put(entry) => {
                reads.push(None);
                let kind = OpKind::Put {
                    value: entry.value,
                    expiry_ms: entry.ttl_ms.unwrap_or(0),
                };
                (entry.key, kind)
            }
            TxnOp::Delete { key } => {
                reads.push(None);
                (key, OpKind::Delete)
            }
            TxnOp::Add { key, delta } => {
                reads.push(None);
                (key, OpKind::Add { delta })
            }
        };
        parts[shard_of(&key, shard_count)].ops.push(EngineTxnOp {
            index: op_offset + index(position),
            key,
            kind,
        });
    }
    let parts = parts
        .into_iter()
        .enumerate()
        .filter(|(_, part)| !part.assertions.is_empty() || !part.ops.is_empty())
        .map(|(shard, part)| (u32::try_from(shard).expect("SHARDS_MAX fits in u32"), part))
        .collect();
    (parts, OpsMeta { reads, op_offset })
}

/// The protocol outcome of an engine outcome; `now_ms` is the shard time the reads ran at.
pub fn outcome(
    engine: EngineTxnOutcome,
    meta: &OpsMeta,
    now_ms: u64,
) -> Result<TxnOutcome, Failure> {
    let results = match engine {
        EngineTxnOutcome::Failed(TxnFailure::AssertionFailed { index, detail }) => {
            return Ok(TxnOutcome::AssertionFailed { index, detail })
        }
        EngineTxnOutcome::Failed(TxnFailure::OpFailed { index, detail }) => {
            return Ok(TxnOutcome::OpFailed {
                index: index.saturating_sub(meta.op_offset),
                detail,
            })
        }
        EngineTxnOutcome::Committed { results } => results,
    };
    let mut slots: Vec<Option<TxnOpResult>> = vec![None; meta.reads.len()];
    for OpResult { index, output } in results {
        let position = index
            .checked_sub(meta.op_offset)
            .and_then(|position| usize::try_from(position).ok())
            .unwrap_or(usize::MAX);
        let read = meta.reads.get(position).copied().flatten();
        let result = match (output, read) {
            (OpOutput::Read(value), Some((with_version, with_ttl))) => {
                TxnOpResult::Read(value.map(|value| {
                    GetReply {
                        version: with_version.then_some(value.version),
                        ttl_remaining_ms: (with_ttl && value.expiry_ms != 0)
                            .then(|| value.expiry_ms.saturating_sub(now_ms)),
                        value: value.bytes,
                    }
                }))
            }
            (OpOutput::Put, None) => TxnOpResult::Put,
            (OpOutput::Deleted { existed }, None) => TxnOpResult::Delete { existed },
            (OpOutput::Added { value }, None) => TxnOpResult::Add { value },
            _ => return Err(wrong_output("Txn")),
        };
        match slots.get_mut(position) {
            Some(slot @ None) => *slot = Some(result),
            _ => return Err(wrong_output("Txn")),
        }
    }
    let results: Option<Vec<TxnOpResult>> = slots.into_iter().collect();
    results
        .map(TxnOutcome::Committed)
        .ok_or_else(|| wrong_output("Txn"))
}

/// `txn` if it is within the protocol's transaction limits (`Request::validate`), for
/// transactions the server builds itself (RESP MSET, MSETNX, MGET, EXEC).
pub fn validated(txn: Txn) -> Result<Txn, Failure> {
    let request = jube_protocol::Request {
        id: 0,
        op: jube_protocol::Operation::Txn(txn),
    };
    request.validate()?;
    match request.op {
        jube_protocol::Operation::Txn(txn) => Ok(txn),
        _ => unreachable!("built as a Txn above"),
    }
}

/// Counts a finished transaction in INFO's txn counters.
pub fn record(metrics: &CoreMetrics, result: &Result<TxnOutcome, Failure>) {
    metrics.record_txn(match result {
        Ok(TxnOutcome::Committed(_)) => TxnCounter::Committed,
        Ok(TxnOutcome::AssertionFailed { .. }) => TxnCounter::AbortedAssertion,
        Ok(TxnOutcome::OpFailed { .. }) => TxnCounter::AbortedOp,
        Err(_) => TxnCounter::AbortedError,
    });
}

/// A transaction under way: the slot of its single-shard call, or of its driver's reply.
pub struct Started {
    pub slot: Rc<Slot<CallResult>>,
    pub meta: OpsMeta,
}

/// Starts `txn` (already validated): one call if one shard owns every key, else a driver task.
/// The slot receives `CallOutput::Txn` (one shard) or `CallOutput::TxnDone` (several).
pub fn start(dispatcher: &Rc<Dispatcher>, shard_count: usize, txn: Txn) -> Started {
    let (mut parts, meta) = split(txn, shard_count);
    if parts.len() <= 1 {
        let (shard, part) = parts.pop().unwrap_or_default();
        let target = Target::Shard(usize::try_from(shard).unwrap_or(0));
        let slot = dispatcher.call(target, ShardOp::ApplyTxn(part));
        return Started { slot, meta };
    }
    dispatcher.metrics.record_txn(TxnCounter::CrossShard);
    let slot = Slot::new();
    let driver = drive(
        dispatcher.clone(),
        Coordinator::new(parts),
        meta.clone(),
        slot.clone(),
    );
    if let Err(error) = jube_runtime::try_spawn(jube_runtime::Priority::Foreground, driver) {
        // Only while the core stops: the driver future was dropped unrun, so fill here.
        slot.fill(Err(Failure::new(
            Status::ShuttingDown,
            format!("no task for the transaction: {error}"),
        )));
    }
    Started { slot, meta }
}

/// The protocol outcome of a started transaction's result.
pub fn finish(result: CallResult, meta: &OpsMeta) -> Result<TxnOutcome, Failure> {
    match result? {
        CallOutput::Txn {
            outcome: engine,
            now_ms,
        } => outcome(engine, meta, now_ms),
        CallOutput::TxnDone(outcome) => Ok(outcome),
        _ => Err(wrong_output("Txn")),
    }
}

/// Runs `txn` to its outcome (for RESP commands and flows that await it), counting it.
pub async fn execute(
    dispatcher: &Rc<Dispatcher>,
    shard_count: usize,
    txn: Txn,
) -> Result<TxnOutcome, Failure> {
    let started = start(dispatcher, shard_count, txn);
    let result = finish(started.slot.wait().await, &started.meta);
    record(&dispatcher.metrics, &result);
    result
}

/// The engine error a failed call stands for, as the coordinator needs it.
fn shard_error(failure: &Failure) -> ShardError {
    let detail = failure.message.clone();
    match failure.status {
        Status::Busy => ShardError::Busy { detail },
        Status::NoSpace => ShardError::NoSpace { detail },
        Status::InvalidRequest
        | Status::TooManyItems
        | Status::KeyTooLarge
        | Status::ValueTooLarge => ShardError::InvalidTxn { detail },
        _ => ShardError::Failed { detail },
    }
}

/// Which step an outstanding call performs.
enum Pending {
    Prepare { shard: u32 },
    Durable { shard: u32, lsn: u64 },
    Decide { shard: u32 },
    Finish { shard: u32 },
}

/// What the driver remembers besides the coordinator.
struct Driver {
    meta: OpsMeta,
    /// The first call failure, answered as is (its status is more precise than a ShardError's).
    first_failure: Option<Failure>,
    /// The latest shard time a prepare ran at, for the TTLs of reads.
    now_ms: u64,
}

impl Driver {
    fn feedback(&mut self, pending: Pending, result: CallResult) -> Feedback {
        if let Err(failure) = &result {
            self.first_failure.get_or_insert_with(|| failure.clone());
        }
        let error = |result: CallResult| match result {
            Err(failure) => shard_error(&failure),
            Ok(_) => ShardError::Failed {
                detail: wrong_output("Txn").message,
            },
        };
        match pending {
            Pending::Prepare { shard } => Feedback::Prepared {
                shard,
                reply: match result {
                    Ok(CallOutput::Prepared { reply, now_ms }) => {
                        self.now_ms = self.now_ms.max(now_ms);
                        Ok(reply)
                    }
                    other => Err(error(other)),
                },
            },
            Pending::Durable { shard, lsn } => Feedback::Durable {
                shard,
                lsn,
                result: match result {
                    Ok(CallOutput::Done) => Ok(()),
                    other => Err(error(other)),
                },
            },
            Pending::Decide { shard } => Feedback::Decided {
                shard,
                result: match result {
                    Ok(CallOutput::Logged(lsn)) => Ok(lsn),
                    other => Err(error(other)),
                },
            },
            Pending::Finish { shard } => Feedback::Finished {
                shard,
                result: match result {
                    Ok(CallOutput::Logged(lsn)) => Ok(lsn),
                    other => Err(error(other)),
                },
            },
        }
    }

    fn reply(&mut self, result: Result<EngineTxnOutcome, ShardError>) -> CallResult {
        match result {
            Ok(engine) => outcome(engine, &self.meta, self.now_ms).map(CallOutput::TxnDone),
            Err(error) => Err(self.first_failure.take().unwrap_or_else(|| {
                let error = StoreError::from(error);
                Failure::new(error.status(), error.message())
            })),
        }
    }
}

fn target(shard: u32) -> Target {
    Target::Shard(usize::try_from(shard).expect("a shard id fits in usize"))
}

/// Drives one cross-shard transaction to its end (see the module doc); fills `reply` once.
async fn drive(
    dispatcher: Rc<Dispatcher>,
    mut coordinator: Coordinator,
    meta: OpsMeta,
    reply: Rc<Slot<CallResult>>,
) {
    let mut driver = Driver {
        meta,
        first_failure: None,
        now_ms: 0,
    };
    let mut outstanding: VecDeque<(Rc<Slot<CallResult>>, Pending)> = VecDeque::new();
    let mut replied = false;
    loop {
        for step in coordinator.take_steps() {
            let (op, shard, pending) = match step {
                Step::Prepare { shard, request } => (
                    ShardOp::PrepareTxn(request),
                    shard,
                    Pending::Prepare { shard },
                ),
                Step::AwaitDurable { shard, lsn } => (
                    ShardOp::AwaitLsn { lsn },
                    shard,
                    Pending::Durable { shard, lsn },
                ),
                Step::Decide {
                    shard,
                    id,
                    participants,
                } => (
                    ShardOp::DecideTxn { id, participants },
                    shard,
                    Pending::Decide { shard },
                ),
                Step::Finish { shard, id, commit } => (
                    ShardOp::FinishTxn { id, commit },
                    shard,
                    Pending::Finish { shard },
                ),
                Step::Forget { shard, id } => {
                    // No feedback: the slot is filled and dropped by the dispatcher.
                    let _ = dispatcher.call(target(shard), ShardOp::ForgetDecision { id });
                    continue;
                }
                Step::Reply(result) => {
                    assert!(!replied, "the coordinator replied twice");
                    replied = true;
                    reply.fill(driver.reply(result));
                    continue;
                }
            };
            outstanding.push_back((dispatcher.call(target(shard), op), pending));
        }
        if coordinator.is_done() {
            break;
        }
        let Some((slot, pending)) = outstanding.pop_front() else {
            tracing::error!("transaction coordinator waits for nothing: stopping its driver");
            break;
        };
        let result = slot.wait().await;
        coordinator.feed(driver.feedback(pending, result));
        // Feed every other step that completed meanwhile before asking for more steps.
        while let Some(position) = outstanding.iter().position(|(slot, _)| slot.is_filled()) {
            let Some((slot, pending)) = outstanding.remove(position) else {
                break;
            };
            let result = slot.take().unwrap_or_else(|| Err(wrong_output("Txn")));
            coordinator.feed(driver.feedback(pending, result));
        }
    }
    if !replied {
        reply.fill(Err(Failure::new(
            Status::Internal,
            "the transaction coordinator ended without an outcome",
        )));
    }
    if let Some(id) = coordinator.id() {
        tracing::trace!(%id, "transaction driver done");
    }
}

/// What start-up resolution did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub committed: usize,
    pub aborted: usize,
    /// In-doubt txns left locked: their shard or their coordinator shard failed to open.
    pub unresolved: usize,
    pub decisions_forgotten: usize,
}

async fn call_at(dispatcher: &Dispatcher, shard: u32, op: ShardOp) -> CallResult {
    dispatcher.call(target(shard), op).wait().await
}

/// Start-up, before any listener: resolves every in-doubt transaction recovery found (a Prepare
/// without outcome) to its coordinator's decision (presumed abort), waits until those Commit and
/// Abort records are durable, then forgets every decision no unresolved txn references. A shard
/// that failed to open is skipped (its own keys answer `ShardFailed` anyway); a txn whose
/// coordinator shard failed stays locked, and is logged.
pub async fn resolve_in_doubt(dispatcher: &Dispatcher, shard_count: usize) -> Resolution {
    let mut resolution = Resolution::default();
    let mut in_doubt = Vec::new();
    let mut decisions = Vec::new();
    for shard in 0..shard_count {
        let shard = u32::try_from(shard).expect("SHARDS_MAX fits in u32");
        match call_at(dispatcher, shard, ShardOp::TxnRecovery).await {
            Ok(CallOutput::Recovery {
                in_doubt: ids,
                decisions: held,
            }) => {
                in_doubt.extend(ids.into_iter().map(|id| (shard, id)));
                decisions.extend(held.into_iter().map(|id| (shard, id)));
            }
            Ok(_) => tracing::error!(shard, "txn recovery: wrong kind of answer"),
            Err(failure) => tracing::warn!(shard, %failure, "txn recovery skipped: shard failed"),
        }
    }
    let mut unresolved = Vec::new();
    let mut waits = Vec::new();
    for (shard, id) in in_doubt {
        let commit = match call_at(dispatcher, id.coordinator, ShardOp::Decision { id }).await {
            Ok(CallOutput::Decision(commit)) => commit,
            other => {
                tracing::error!(shard, %id, ?other, "in-doubt transaction left locked: its coordinator shard cannot answer");
                unresolved.push(id);
                continue;
            }
        };
        match call_at(dispatcher, shard, ShardOp::FinishTxn { id, commit }).await {
            Ok(CallOutput::Logged(lsn)) => {
                tracing::info!(shard, %id, commit, "in-doubt transaction resolved");
                waits.push((shard, lsn));
                if commit {
                    resolution.committed += 1;
                } else {
                    resolution.aborted += 1;
                }
            }
            other => {
                tracing::error!(shard, %id, ?other, "in-doubt transaction left locked: finishing it failed");
                unresolved.push(id);
            }
        }
    }
    for (shard, lsn) in waits {
        if let Err(failure) = call_at(dispatcher, shard, ShardOp::AwaitLsn { lsn }).await {
            tracing::error!(shard, %failure, "the outcome of an in-doubt transaction is not durable");
        }
    }
    for (shard, id) in decisions {
        if unresolved.contains(&id) {
            continue;
        }
        if call_at(dispatcher, shard, ShardOp::ForgetDecision { id })
            .await
            .is_ok()
        {
            resolution.decisions_forgotten += 1;
        }
    }
    resolution.unresolved = unresolved.len();
    resolution
}

#[cfg(test)]
mod tests {
    use super::*;
    use jube_protocol::Get;

    #[test]
    fn split_groups_by_shard_and_keeps_request_indexes() {
        let txn = Txn::new()
            .assert_exists("a")
            .assert_version("b", 3)
            .put("b", "1")
            .op(TxnOp::Read(Get {
                key: b"a".to_vec(),
                with_version: false,
                with_ttl: true,
            }))
            .add("c", 5)
            .put_ttl("a", "x", 250);
        let (parts, meta) = split(txn, 4);
        let shards: Vec<u32> = parts.iter().map(|(shard, _)| *shard).collect();
        let mut sorted = shards.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(shards, sorted, "ascending, one part per shard");
        let mut assertion_indexes: Vec<u32> = parts
            .iter()
            .flat_map(|(_, part)| part.assertions.iter().map(|a| a.index))
            .collect();
        assertion_indexes.sort_unstable();
        assert_eq!(assertion_indexes, [0, 1]);
        let mut op_indexes: Vec<u32> = parts
            .iter()
            .flat_map(|(_, part)| part.ops.iter().map(|o| o.index))
            .collect();
        op_indexes.sort_unstable();
        assert_eq!(
            op_indexes,
            [2, 3, 4, 5],
            "ops follow the assertions' indexes"
        );
        for (shard, part) in &parts {
            for key in part.keys() {
                assert_eq!(shard_of(&key, 4) as u32, *shard);
            }
        }
        let ttl_put = parts
            .iter()
            .flat_map(|(_, part)| part.ops.iter())
            .find(|op| op.index == 2 + 3)
            .expect("op 3");
        assert!(matches!(ttl_put.kind, OpKind::Put { expiry_ms: 250, .. }));
        assert_eq!(meta.reads, [None, Some((false, true)), None, None]);
    }

    #[test]
    fn outcomes_map_back_by_index() {
        let meta = OpsMeta {
            reads: vec![None, Some((true, true)), None, None],
            op_offset: 10,
        };
        let value = jube_engine::tree::Value {
            bytes: b"v".to_vec(),
            expiry_ms: 1_500,
            version: 9,
        };
        let engine = EngineTxnOutcome::Committed {
            results: vec![
                OpResult {
                    index: 13,
                    output: OpOutput::Added { value: 4 },
                },
                OpResult {
                    index: 10,
                    output: OpOutput::Put,
                },
                OpResult {
                    index: 11,
                    output: OpOutput::Read(Some(value)),
                },
                OpResult {
                    index: 12,
                    output: OpOutput::Deleted { existed: true },
                },
            ],
        };
        let mapped = outcome(engine, &meta, 1_000).expect("maps");
        assert_eq!(
            mapped,
            TxnOutcome::Committed(vec![
                TxnOpResult::Put,
                TxnOpResult::Read(Some(GetReply {
                    value: b"v".to_vec(),
                    version: Some(9),
                    ttl_remaining_ms: Some(500),
                })),
                TxnOpResult::Delete { existed: true },
                TxnOpResult::Add { value: 4 },
            ])
        );
        // A missing or duplicated result is a server bug, reported as Internal.
        let short = EngineTxnOutcome::Committed {
            results: Vec::new(),
        };
        assert_eq!(
            outcome(short, &meta, 0).unwrap_err().status,
            Status::Internal
        );
        let failed = EngineTxnOutcome::Failed(TxnFailure::AssertionFailed {
            index: 1,
            detail: "absent".into(),
        });
        assert!(matches!(
            outcome(failed, &meta, 0),
            Ok(TxnOutcome::AssertionFailed { index: 1, .. })
        ));
        let op_failed = EngineTxnOutcome::Failed(TxnFailure::OpFailed {
            index: 12,
            detail: "not an integer".into(),
        });
        assert!(matches!(
            outcome(op_failed, &meta, 0),
            Ok(TxnOutcome::OpFailed { index: 2, .. })
        ));
    }
}
