//! The shard's side of transactions: single-shard apply, prepare/decide/finish of two-phase
//! commit, key locks, and the txn state recovery rebuilds.
//!
//! Invariants:
//! - A key is in the lock table exactly while a prepared transaction holding it is undecided
//!   here; every other access to it (get, put, delete, a scan whose range covers it, another
//!   txn) answers `ShardError::Locked` and changes nothing.
//! - A prepared transaction's writes were resolved against the state at prepare time; since its
//!   keys stay locked until its outcome, that state is unchanged when the outcome applies them.
//! - The WAL keeps every record from min(checkpoint LSN + 1, oldest Prepare not resolved at or
//!   below the checkpoint, oldest unforgotten Decision): recovery can rebuild the txn state and
//!   redo every Commit and Decision above the checkpoint from its Prepare.

use super::{Shard, ShardError};
use crate::storage::Vfs;
use crate::txn::{PrepareReply, PrepareRequest, TxnId, TxnPart, TxnReply};
use crate::wal::Lsn;

/// Counters of the shard's transactions, for INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Single-shard txns applied (committed) and failed (assertion or op).
    pub applied: u64,
    pub failed: u64,
    /// Cross-shard parts prepared here, and outcomes applied here.
    pub prepared: u64,
    pub committed: u64,
    pub aborted: u64,
    /// Calls refused with `Locked`.
    pub locked_refusals: u64,
    /// Gauges: undecided prepared txns, locked keys, unforgotten decisions.
    pub prepared_count: u64,
    pub locked_keys_count: u64,
    pub decisions_count: u64,
}

impl<V: Vfs + Clone> Shard<V> {
    /// Runs a transaction whose keys all live on this shard, in one step: checks the
    /// assertions against the state before it, evaluates the ops on a private overlay, and if
    /// anything is written appends ONE TxnApply record holding the resolved writes and applies
    /// them to the tree. Answer the client once `acked_lsn() >= reply.wait_lsn`.
    ///
    /// Errors (`Locked` if any key is held by a prepared cross-shard txn, `Busy`, `NoSpace`,
    /// `InvalidTxn`, `TxnTooLarge`, size limits) mean nothing changed.
    pub fn apply_txn(&mut self, part: &TxnPart) -> Result<TxnReply, ShardError> {
        let _ = part;
        unimplemented!("API commit: body follows")
    }

    /// Prepares this shard's part of a cross-shard txn (see [`crate::txn::Coordinator`]):
    /// checks its assertions, evaluates its ops, locks all its keys at once and, if the part
    /// writes or this is the coordinator of a writing txn, logs a Prepare record (TxnId,
    /// resolved writes). With `request.id == None` this shard is the coordinator and allocates
    /// the id: (this shard, LSN of its Prepare record), or a volatile id for a read-only txn.
    ///
    /// `Err(Locked)` if any key is already locked (nothing changed: park and retry);
    /// `Ok(PrepareReply::Failed)` if an assertion or op failed (nothing locked or logged).
    pub fn prepare_txn(&mut self, request: &PrepareRequest) -> Result<PrepareReply, ShardError> {
        let _ = request;
        unimplemented!("API commit: body follows")
    }

    /// At the coordinator shard, once every participant's Prepare is acknowledged: logs the
    /// Decision record (commit, with the participant list), applies this shard's prepared writes
    /// and unlocks its keys. The Decision is the commit point: once `acked_lsn()` reaches the
    /// returned LSN the txn is committed and the client may be answered. The decision is kept
    /// (and its record retained in the WAL) until [`Shard::forget_decision`].
    ///
    /// `Err(Busy | NoSpace)`: nothing was logged (the coordinator may abort). `Err(Failed)`:
    /// the shard failed; recovery decides.
    pub fn decide_txn(&mut self, id: TxnId, participants: &[u32]) -> Result<Lsn, ShardError> {
        let _ = (id, participants);
        unimplemented!("API commit: body follows")
    }

    /// Resolves this shard's prepared part of `id`: with `commit`, logs a Commit record and
    /// applies the prepared writes (at a non-coordinator participant, after the Decision is
    /// acknowledged); without, logs an Abort record and discards them. Unlocks the keys either
    /// way. A part that logged no Prepare logs nothing (returns 0). Finishing an id this shard
    /// does not hold prepared is a no-op returning 0, so it is idempotent.
    ///
    /// Returns the LSN to wait for before the coordinator forgets the decision (an abort need
    /// not be waited for: presumed abort).
    pub fn finish_txn(&mut self, id: TxnId, commit: bool) -> Result<Lsn, ShardError> {
        let _ = (id, commit);
        unimplemented!("API commit: body follows")
    }

    /// The txns prepared on this shard and not yet resolved here, ascending. After
    /// [`Shard::open`] these are the in-doubt txns recovery found: their keys stay locked until
    /// the server resolves each with `finish_txn(id, decision)` where `decision` is
    /// `decision(id)` asked of shard `id.coordinator`.
    pub fn in_doubt(&self) -> Vec<TxnId> {
        unimplemented!("API commit: body follows")
    }

    /// At the coordinator shard: true only if this shard holds an unforgotten Decision (commit)
    /// record for `id`. False means abort (presumed abort).
    pub fn decision(&self, id: TxnId) -> bool {
        let _ = id;
        unimplemented!("API commit: body follows")
    }

    /// Drops the decision of `id` once every participant's Commit is acknowledged (or, after
    /// recovery, once no in-doubt txn references it); the WAL may then release its record at
    /// the next checkpoint. Forgetting an unknown id is a no-op.
    pub fn forget_decision(&mut self, id: TxnId) {
        let _ = id;
        unimplemented!("API commit: body follows")
    }

    /// The unforgotten decisions this shard holds, ascending (after open: those recovery found).
    pub fn recovered_decisions(&self) -> Vec<TxnId> {
        unimplemented!("API commit: body follows")
    }

    /// The prepared txn holding `key` locked, if any.
    pub fn lock_holder(&self, key: &[u8]) -> Option<TxnId> {
        let _ = key;
        unimplemented!("API commit: body follows")
    }

    /// Counters and gauges of the shard's transactions.
    pub fn txn_stats(&self) -> TxnStats {
        unimplemented!("API commit: body follows")
    }
}
