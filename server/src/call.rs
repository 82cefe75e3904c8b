//! The unit of work one core asks of another: a call to a shard (or to a core, for INFO), and its
//! result. Calls and results cross cores inside mesh messages, so every type here is `Send` and
//! owns its bytes.
//!
//! Invariants: every call gets exactly one result, delivered to the slot (local) or ticket (remote)
//! it came with; a result is computed on the shard's core and is final (durability waits happen
//! before it is delivered).

use crate::metrics::CoreSnapshot;
use crate::resp::shard_op::{RespOp, RespOutput};
use crate::shard_host::{EngineTxnOutcome, Lsn, PrepareReply, PrepareRequest, TxnId, TxnPart};
use jube_protocol::{Failure, GetReply, Status};
use std::ops::Bound;

/// Whom a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Shard(usize),
    /// The core itself (its metrics and the stats of its shards).
    Core(usize),
}

/// One entry of a MultiPut: key, value, TTL in ms.
pub type PutItem = (Vec<u8>, Vec<u8>, Option<u64>);

/// The failure of a call whose output has the wrong variant for its request: a server bug.
pub fn wrong_output(what: &str) -> Failure {
    Failure::new(
        Status::Internal,
        format!("a shard answered {what} with the wrong kind of result"),
    )
}

/// What a shard is asked to do. Keys and values are already validated against the protocol's
/// limits by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardOp {
    Get {
        key: Vec<u8>,
        with_version: bool,
        with_ttl: bool,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// The keys of a MultiGet that this shard owns, with their positions in the request.
    MultiGet {
        items: Vec<(usize, Vec<u8>)>,
    },
    /// The entries of a MultiPut that this shard owns, in request order (the last one wins).
    MultiPut {
        entries: Vec<PutItem>,
    },
    Scan {
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
        reverse: bool,
    },
    Checkpoint,
    /// For `Target::Core`: the core's report for INFO.
    Report,
    /// A RESP command's work on one shard, run there in one step (`resp::shard_op`).
    Resp(RespOp),
    /// A transaction whose keys all live on this shard (`Shard::apply_txn`). Put ops carry
    /// their TTL in ms in `expiry_ms` (0 = none) until the shard resolves it against its clock.
    ApplyTxn(TxnPart),
    /// Two-phase commit, phase one (`Shard::prepare_txn`); Put TTLs as for `ApplyTxn`.
    PrepareTxn(PrepareRequest),
    DecideTxn {
        id: TxnId,
        participants: Vec<u32>,
    },
    FinishTxn {
        id: TxnId,
        commit: bool,
    },
    ForgetDecision {
        id: TxnId,
    },
    /// Answers once the shard's acknowledged LSN reaches `lsn`.
    AwaitLsn {
        lsn: Lsn,
    },
    /// Start-up: the shard's in-doubt txns and the decisions recovery found.
    TxnRecovery,
    /// Start-up: whether coordinator shard's `id` committed.
    Decision {
        id: TxnId,
    },
}

impl ShardOp {
    /// The keys the op reads or writes by name: it waits while any of them is locked by a
    /// prepared transaction. Scans name no key (the engine tells if their range meets a lock);
    /// the steps of two-phase commit name none, so that they never wait for a lock.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            ShardOp::Get { key, .. } | ShardOp::Put { key, .. } | ShardOp::Delete { key } => {
                vec![key.as_slice()]
            }
            ShardOp::MultiGet { items } => items.iter().map(|(_, key)| key.as_slice()).collect(),
            ShardOp::MultiPut { entries } => {
                entries.iter().map(|(key, ..)| key.as_slice()).collect()
            }
            ShardOp::Resp(op) => op.keys(),
            ShardOp::ApplyTxn(part) => part_keys(part),
            ShardOp::PrepareTxn(request) => part_keys(&request.part),
            _ => Vec::new(),
        }
    }

    /// The key of a Get, Put or Delete: the ops that name exactly one key.
    pub fn single_key(&self) -> Option<&[u8]> {
        match self {
            ShardOp::Get { key, .. } | ShardOp::Put { key, .. } | ShardOp::Delete { key } => {
                Some(key)
            }
            _ => None,
        }
    }

    /// Whether [`ShardOp::keys`] is empty, without collecting the keys.
    pub fn names_no_key(&self) -> bool {
        self.single_key().is_none() && self.keys().is_empty()
    }

    /// Whether the op may write (the committer is woken to start a group commit at once).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            ShardOp::Put { .. }
                | ShardOp::Delete { .. }
                | ShardOp::MultiPut { .. }
                | ShardOp::ApplyTxn(_)
                | ShardOp::PrepareTxn(_)
                | ShardOp::DecideTxn { .. }
                | ShardOp::FinishTxn { .. }
        )
    }
}

fn part_keys(part: &TxnPart) -> Vec<&[u8]> {
    part.assertions
        .iter()
        .map(|assertion| assertion.key.as_slice())
        .chain(part.ops.iter().map(|op| op.key.as_slice()))
        .collect()
}

/// The stats of one shard for INFO.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: usize,
    /// "open" or the reason the shard refuses work.
    pub failure: Option<String>,
    pub metrics: Vec<(String, u64)>,
}

/// What core answers a `Report` call with.
#[derive(Debug, Clone)]
pub struct CoreReport {
    pub core: usize,
    pub shards: Vec<ShardReport>,
    pub snapshot: CoreSnapshot,
}

/// A successful call's output.
#[derive(Debug, Clone)]
pub enum CallOutput {
    Get(Option<GetReply>),
    Done,
    /// MultiGet: (position in the request, value).
    Values(Vec<(usize, Option<Vec<u8>>)>),
    /// Scan: entries in scan order, and whether the shard may hold more in the range.
    Entries {
        entries: Vec<(Vec<u8>, Vec<u8>)>,
        more: bool,
    },
    Checkpointed,
    Report(Box<CoreReport>),
    Resp(RespOutput),
    /// ApplyTxn: the outcome, and the shard's time (ms) it ran at, for TTLs of reads.
    Txn {
        outcome: EngineTxnOutcome,
        now_ms: u64,
    },
    /// PrepareTxn: the engine's answer, and the shard's time (ms).
    Prepared {
        reply: PrepareReply,
        now_ms: u64,
    },
    /// DecideTxn, FinishTxn: the LSN to wait for before the next step.
    Logged(Lsn),
    /// TxnRecovery: in-doubt txns, and unforgotten decisions.
    Recovery {
        in_doubt: Vec<TxnId>,
        decisions: Vec<TxnId>,
    },
    Decision(bool),
    /// A cross-shard transaction's outcome, from its driver (`txn::start`).
    TxnDone(jube_protocol::TxnOutcome),
}

pub type CallResult = Result<CallOutput, Failure>;

/// A call travelling to another core; `ticket` finds its result slot on the way back.
#[derive(Debug)]
pub struct Call {
    pub ticket: u64,
    pub target: Target,
    pub op: ShardOp,
}

/// A result travelling back to the core that made the call.
#[derive(Debug)]
pub struct Return {
    pub ticket: u64,
    pub result: CallResult,
}

/// A mesh message: a batch of calls from `from`, or a batch of results for the receiver's calls.
#[derive(Debug)]
pub enum MeshMessage {
    Calls(Vec<Call>),
    Returns(Vec<Return>),
}
