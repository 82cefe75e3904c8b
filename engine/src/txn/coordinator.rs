//! The two-phase-commit driver of one cross-shard transaction, as a sans-IO state machine.
//!
//! The coordinator does no I/O and knows no runtime: it says what to do next ([`Step`]) and is
//! told what happened ([`Feedback`]). The server's dispatcher performs steps with mesh calls to
//! the shards' cores; the engine's multi-shard simulation performs the very same steps over a
//! simulated mesh. Driving loop:
//!
//! ```text
//! let mut coordinator = Coordinator::new(parts);
//! loop {
//!     for step in coordinator.take_steps() { issue(step) }     // may run concurrently
//!     if coordinator.is_done() { break }
//!     coordinator.feed(next_completion().await);
//! }
//! ```
//!
//! Protocol (participants sorted by shard id; coordinator shard C = the lowest):
//! 1. `Prepare` at C (it allocates the [`TxnId`]), then at each other participant in ascending
//!    shard order, one at a time: the canonical lock order, so transactions never deadlock.
//! 2. Once all are prepared, `AwaitDurable` for every prepare's `wait_lsn`.
//! 3. Writing txn: `Decide` at C, `AwaitDurable` of the Decision: the commit point. Then
//!    `Reply(Committed)`, `Finish(commit)` at every other participant, `AwaitDurable` of each
//!    Commit, and finally `Forget` at C.
//!    Read-only txn: `Reply(Committed)`, then `Finish` (release) at every participant.
//! 4. A failed assertion or op, or an error from a prepare, a durability wait of a prepare, or
//!    a decide that logged nothing (`Busy`, `NoSpace`, `Locked`...): `Finish(abort)` at every
//!    prepared participant (presumed abort: no durability wait), and `Reply` with the failure.
//!    A `Failed` decide leaves the outcome to recovery: the reply is the error, nothing else is
//!    sent (the participants stay prepared until the process restarts and resolves them).
//!
//! Invariants: exactly one `Reply` per transaction; `Decide` is issued only after every
//! prepare's record is acknowledged; `Finish(commit)` only after the Decision is acknowledged;
//! `Forget` only after every Commit is acknowledged; a `Finish(abort)` never follows a `Decide`.

use super::{PrepareReply, PrepareRequest, TxnId, TxnOutcome, TxnPart};
use crate::shard::ShardError;
use crate::wal::Lsn;

/// What the driver must do next. Every step except `Forget` and `Reply` is answered by exactly
/// one [`Feedback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Call `Shard::prepare_txn(&request)` on `shard`; feed [`Feedback::Prepared`].
    Prepare { shard: u32, request: PrepareRequest },
    /// Feed [`Feedback::Durable`] once `shard`'s `acked_lsn() >= lsn` (or the shard failed).
    AwaitDurable { shard: u32, lsn: Lsn },
    /// Call `Shard::decide_txn(id, &participants)` on `shard` (the coordinator); feed
    /// [`Feedback::Decided`].
    Decide {
        shard: u32,
        id: TxnId,
        participants: Vec<u32>,
    },
    /// Call `Shard::finish_txn(id, commit)` on `shard`; feed [`Feedback::Finished`].
    Finish { shard: u32, id: TxnId, commit: bool },
    /// Call `Shard::forget_decision(id)` on `shard` (the coordinator). No feedback.
    Forget { shard: u32, id: TxnId },
    /// Answer the client. Issued exactly once; more steps may follow it.
    Reply(Result<TxnOutcome, ShardError>),
}

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    Prepared {
        shard: u32,
        reply: Result<PrepareReply, ShardError>,
    },
    Durable {
        shard: u32,
        lsn: Lsn,
        result: Result<(), ShardError>,
    },
    Decided {
        shard: u32,
        result: Result<Lsn, ShardError>,
    },
    Finished {
        shard: u32,
        result: Result<Lsn, ShardError>,
    },
}

/// The driver of one cross-shard transaction; see the module doc.
#[derive(Debug)]
pub struct Coordinator {
    _private: (),
}

impl Coordinator {
    /// A transaction over `parts`: (shard id, that shard's part). Needs at least two distinct
    /// shards (a single-shard txn is `Shard::apply_txn`); any order, sorted here.
    pub fn new(parts: Vec<(u32, TxnPart)>) -> Coordinator {
        let _ = parts;
        unimplemented!("API commit: body follows")
    }

    /// The steps to issue now, each returned once. Call after `new` and after every `feed`.
    pub fn take_steps(&mut self) -> Vec<Step> {
        unimplemented!("API commit: body follows")
    }

    /// Reports the completion of a step issued earlier.
    pub fn feed(&mut self, feedback: Feedback) {
        let _ = feedback;
        unimplemented!("API commit: body follows")
    }

    /// True once every issued step was answered and nothing is left to issue.
    pub fn is_done(&self) -> bool {
        unimplemented!("API commit: body follows")
    }

    /// The transaction's id, once the coordinator shard allocated it.
    pub fn id(&self) -> Option<TxnId> {
        unimplemented!("API commit: body follows")
    }

    /// The participant shards, ascending; the first is the coordinator shard.
    pub fn participants(&self) -> Vec<u32> {
        unimplemented!("API commit: body follows")
    }
}
