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
//!   below the checkpoint, oldest unforgotten Decision) ([`TxnState::retain_from`]): recovery
//!   can rebuild the txn state and redo every Commit and Decision above the checkpoint from its
//!   Prepare.
//! - Recovery ([`TxnState::redo`]) reads the retained records in LSN order: those at or below
//!   the checkpoint only rebuild prepares, decisions and outcomes; those above it also apply
//!   their writes, exactly as the original calls did.
//!
//! Values above the inline threshold go to the value log, as single puts' do: before a TxnApply
//! or Prepare record is appended, each such value is appended to the value log and its put
//! becomes a put pointer ([`ResolvedWrite::PutPointer`]) in the record, which the WAL holds
//! back until the values are durable (the flush gate), so neither the txn's answer nor a
//! Prepare's acknowledgement can precede them. Accounting invariants:
//! - A prepared, undecided part's pointers are in no leaf, yet count as live bytes of their
//!   segments (from the append, or adopted at open for an in-doubt part), and *pin* those
//!   segments: garbage collection never picks a pinned segment as its victim, so it neither
//!   moves those values nor retires the segment. A commit moves the pointers into the tree (still
//!   live, unpinned); an abort releases their bytes as garbage (unpinned).
//! - Hence a segment holding a prepared part's value is deleted only after the part's outcome is
//!   logged and a later checkpoint is durable, which covers the outcome record: a recovery that
//!   still replays the retained Prepare (below the checkpoint) also replays its outcome and never
//!   needs the deleted value; an in-doubt Prepare always finds its segment (open refuses, naming
//!   it, otherwise).

use super::vlog::format::record_size;
use super::{Pointer, Shard, ShardError};
use crate::constants::VALUE_KIND_POINTER;
use crate::storage::{Storage, Vfs};
use crate::tree::{Tree, TreeError, Value};
use crate::txn::record::TxnRecord;
use crate::txn::{
    evaluate, PrepareReply, PrepareRequest, ResolvedWrite, TxnId, TxnOutcome, TxnPart, TxnReply,
    TXN_PREPARED_MAX,
};
use crate::wal::Lsn;
use std::collections::BTreeMap;
use std::ops::Bound;

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

/// One prepared, undecided part.
#[derive(Debug, Clone)]
struct Prepared {
    /// LSN of its Prepare record; 0 if it logged none (a read-only part).
    prepare_lsn: Lsn,
    /// The keys it holds locked.
    keys: Vec<Vec<u8>>,
    writes: Vec<ResolvedWrite>,
}

/// The shard's transaction state: prepared parts, locks, decisions, retention.
#[derive(Debug, Default)]
pub(super) struct TxnState {
    prepared: BTreeMap<TxnId, Prepared>,
    locks: BTreeMap<Vec<u8>, TxnId>,
    /// Unforgotten decisions (this shard is their coordinator), with the Decision's LSN.
    decisions: BTreeMap<TxnId, Lsn>,
    /// Prepares resolved by an outcome record not yet covered by a checkpoint:
    /// (outcome LSN, prepare LSN). Redo of the outcome needs the Prepare record.
    resolved: Vec<(Lsn, Lsn)>,
    /// Value-log segments holding values of prepared parts, with how many such values each.
    pinned: BTreeMap<u64, usize>,
    volatile_next: u64,
    stats: TxnStats,
}

impl TxnState {
    /// The holder of `key`'s lock, if any.
    pub(super) fn holder(&self, key: &[u8]) -> Option<TxnId> {
        self.locks.get(key).copied()
    }

    /// The first locked key in the range, with its holder.
    pub(super) fn holder_in(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Option<(Vec<u8>, TxnId)> {
        let empty = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if empty {
            return None;
        }
        self.locks
            .range::<[u8], _>((start, end))
            .next()
            .map(|(key, id)| (key.clone(), *id))
    }

    pub(super) fn note_locked_refusal(&mut self) {
        self.stats.locked_refusals += 1;
    }

    /// Whether value-log segment `segment` holds values of a prepared, undecided part (then
    /// garbage collection must leave it alone).
    pub(super) fn is_pinned(&self, segment: u64) -> bool {
        self.pinned.contains_key(&segment)
    }

    /// Every (key, value-log pointer) of the prepared, undecided parts: live values no leaf
    /// points at.
    pub(super) fn prepared_pointers(&self) -> impl Iterator<Item = (&[u8], &Pointer)> {
        self.prepared
            .values()
            .flat_map(|prepared| prepared.writes.iter())
            .filter_map(|write| write.pointer().map(|pointer| (write.key(), pointer)))
    }

    fn pin(&mut self, writes: &[ResolvedWrite]) {
        for pointer in writes.iter().filter_map(ResolvedWrite::pointer) {
            *self.pinned.entry(pointer.segment).or_default() += 1;
        }
    }

    fn unpin(&mut self, writes: &[ResolvedWrite]) {
        for pointer in writes.iter().filter_map(ResolvedWrite::pointer) {
            let count = self
                .pinned
                .get_mut(&pointer.segment)
                .expect("a prepared value's segment is pinned");
            *count -= 1;
            if *count == 0 {
                self.pinned.remove(&pointer.segment);
            }
        }
    }

    /// The oldest LSN the WAL must keep once a checkpoint at `checkpoint_lsn` is durable; forgets
    /// the resolutions that checkpoint covers.
    pub(super) fn retain_from(&mut self, checkpoint_lsn: Lsn) -> Lsn {
        self.resolved
            .retain(|&(outcome_lsn, _)| outcome_lsn > checkpoint_lsn);
        let prepares = self
            .prepared
            .values()
            .map(|p| p.prepare_lsn)
            .filter(|&lsn| lsn > 0);
        let resolved = self.resolved.iter().map(|&(_, prepare_lsn)| prepare_lsn);
        let decisions = self.decisions.values().copied();
        prepares
            .chain(resolved)
            .chain(decisions)
            .fold(checkpoint_lsn + 1, Lsn::min)
    }

    /// Rebuilds the state from one retained record during recovery, and redoes its writes if it
    /// lies above the checkpoint.
    pub(super) fn redo<F: Storage>(
        &mut self,
        tree: &mut Tree<F>,
        lsn: Lsn,
        record: TxnRecord,
        checkpoint_lsn: Lsn,
    ) -> Result<(), String> {
        let redo = lsn > checkpoint_lsn;
        match record {
            TxnRecord::Apply { writes } => {
                if redo {
                    apply_writes(tree, &writes).map_err(|e| e.to_string())?;
                }
            }
            TxnRecord::Prepare { id, writes } => {
                let keys = writes.iter().map(|w| w.key().to_vec()).collect();
                let prepared = Prepared {
                    prepare_lsn: lsn,
                    keys,
                    writes,
                };
                if self.prepared.insert(id, prepared).is_some() {
                    return Err(format!("{id} is prepared twice"));
                }
            }
            TxnRecord::Decision { id, .. } | TxnRecord::Commit { id } => {
                let prepared = self.prepared.remove(&id);
                if redo {
                    let Some(prepared) = prepared else {
                        return Err(format!(
                            "the outcome of {id} lies above the checkpoint ({checkpoint_lsn}) but \
                             its Prepare record is missing: the WAL lost a retained segment"
                        ));
                    };
                    apply_writes(tree, &prepared.writes).map_err(|e| e.to_string())?;
                    self.resolved.push((lsn, prepared.prepare_lsn));
                }
                if matches!(record, TxnRecord::Decision { .. }) {
                    self.decisions.insert(id, lsn);
                }
            }
            TxnRecord::Abort { id } => {
                // An abort changes nothing; a missing Prepare (released) is harmless.
                self.prepared.remove(&id);
            }
        }
        Ok(())
    }

    /// After the last record: locks the written keys of every in-doubt prepare again and pins
    /// the value-log segments holding its values (the shard adopts them as live).
    pub(super) fn finish_recovery(&mut self) -> Result<(), String> {
        let segments: Vec<u64> = self
            .prepared_pointers()
            .map(|(_, pointer)| pointer.segment)
            .collect();
        for segment in segments {
            *self.pinned.entry(segment).or_default() += 1;
        }
        for (id, prepared) in &self.prepared {
            for key in &prepared.keys {
                if let Some(other) = self.locks.insert(key.clone(), *id) {
                    return Err(format!(
                        "{id} and {other} both hold key {} prepared",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
        Ok(())
    }

    fn lock(&mut self, id: TxnId, keys: &[Vec<u8>]) {
        for key in keys {
            let previous = self.locks.insert(key.clone(), id);
            assert!(
                previous.is_none(),
                "{id} locks a key that is already locked"
            );
        }
    }

    fn unlock(&mut self, id: TxnId, keys: &[Vec<u8>]) {
        for key in keys {
            let holder = self.locks.remove(key);
            assert_eq!(holder, Some(id), "{id} unlocks a key it does not hold");
        }
    }
}

/// Applies resolved writes to the tree, as a txn's record says.
fn apply_writes<F: Storage>(tree: &mut Tree<F>, writes: &[ResolvedWrite]) -> Result<(), TreeError> {
    for write in writes {
        match write {
            ResolvedWrite::Put {
                key,
                value,
                expiry_ms,
            } => {
                tree.put(key, value, *expiry_ms)?;
            }
            ResolvedWrite::Delete { key } => {
                tree.delete(key)?;
            }
            ResolvedWrite::PutPointer {
                key,
                pointer,
                expiry_ms,
            } => {
                tree.put_kind(key, VALUE_KIND_POINTER, &pointer.encode(), *expiry_ms)?;
            }
        }
    }
    Ok(())
}

impl<V: Vfs + Clone> Shard<V> {
    /// Runs a transaction whose keys all live on this shard, in one step: checks the
    /// assertions against the state before it, evaluates the ops on a private overlay, and if
    /// anything is written appends ONE TxnApply record holding the resolved writes and applies
    /// them to the tree. Answer the client once `acked_lsn() >= reply.wait_lsn`.
    ///
    /// Values above the inline threshold go to the value log and the record carries pointers to
    /// them; the record (and so `wait_lsn`) becomes durable only after those values.
    ///
    /// Errors (`Locked` if any key is held by a prepared cross-shard txn, `Busy`, `NoSpace`,
    /// `InvalidTxn`, `TxnTooLarge`, size limits) mean nothing changed.
    pub fn apply_txn(&mut self, part: &TxnPart) -> Result<TxnReply, ShardError> {
        self.check_failed()?;
        self.check_part(part)?;
        let keys = part.keys();
        self.check_unlocked(&keys)?;
        let barrier = self.keys_barrier(&keys);
        let evaluation = match self.evaluate_part(part)? {
            Ok(evaluation) => evaluation,
            Err(failure) => {
                self.txn.stats.failed += 1;
                return Ok(TxnReply {
                    outcome: TxnOutcome::Failed(failure),
                    wait_lsn: barrier,
                });
            }
        };
        let results = evaluation.results;
        let mut wait_lsn = barrier;
        if !evaluation.writes.is_empty() {
            let record = TxnRecord::Apply {
                writes: self.stage_values(evaluation.writes)?,
            };
            let lsn = self.log_staged(&record)?;
            let TxnRecord::Apply { writes } = record else {
                unreachable!("built above")
            };
            self.apply_resolved(&writes, lsn)?;
            wait_lsn = lsn;
        }
        self.txn.stats.applied += 1;
        Ok(TxnReply {
            outcome: TxnOutcome::Committed { results },
            wait_lsn,
        })
    }

    /// Prepares this shard's part of a cross-shard txn (see [`crate::txn::Coordinator`]):
    /// checks its assertions, evaluates its ops, locks all its keys at once and, if the part
    /// writes or this is the coordinator of a writing txn, logs a Prepare record (TxnId,
    /// resolved writes). With `request.id == None` this shard is the coordinator and allocates
    /// the id: (this shard, LSN of its Prepare record), or a volatile id for a read-only txn.
    ///
    /// Values above the inline threshold go to the value log first and the Prepare carries
    /// pointers to them, so it is durable (`wait_lsn` acknowledged) only after they are; until
    /// the outcome those values stay live and their segments are kept from garbage collection.
    ///
    /// `Err(Locked)` if any key is already locked (nothing changed: park and retry);
    /// `Ok(PrepareReply::Failed)` if an assertion or op failed (nothing locked or logged).
    /// `Busy` past [`TXN_PREPARED_MAX`] prepared txns or when the log is full.
    pub fn prepare_txn(&mut self, request: &PrepareRequest) -> Result<PrepareReply, ShardError> {
        self.check_failed()?;
        let part = &request.part;
        self.check_part(part)?;
        let shard_id = self.config.shard_id();
        if let Some(id) = request.id {
            if id.coordinator == shard_id || self.txn.prepared.contains_key(&id) {
                return Err(ShardError::InvalidTxn {
                    detail: format!("{id} cannot be prepared as a participant on shard {shard_id}"),
                });
            }
        }
        if request.read_only && !part.is_read_only() {
            return Err(ShardError::InvalidTxn {
                detail: "a part of a read-only transaction writes".to_string(),
            });
        }
        if self.txn.prepared.len() >= TXN_PREPARED_MAX {
            return Err(ShardError::Busy {
                detail: format!("{TXN_PREPARED_MAX} transactions are prepared on this shard"),
            });
        }
        let keys = part.keys();
        self.check_unlocked(&keys)?;
        let barrier = self.keys_barrier(&keys);
        let evaluation = match self.evaluate_part(part)? {
            Ok(evaluation) => evaluation,
            Err(failure) => {
                return Ok(PrepareReply::Failed {
                    failure,
                    wait_lsn: barrier,
                })
            }
        };
        let coordinator = request.id.is_none();
        let logs = !request.read_only && (coordinator || !evaluation.writes.is_empty());
        let (id, prepare_lsn, writes) = if logs {
            let id = request.id.unwrap_or(TxnId {
                coordinator: shard_id,
                number: self.wal.next_lsn(),
            });
            let record = TxnRecord::Prepare {
                id,
                writes: self.stage_values(evaluation.writes)?,
            };
            let lsn = self.log_staged(&record)?;
            assert!(
                !coordinator || lsn == id.number,
                "the id is the Prepare's LSN"
            );
            let TxnRecord::Prepare { writes, .. } = record else {
                unreachable!("built above")
            };
            (id, lsn, writes)
        } else {
            let id = request.id.unwrap_or_else(|| {
                self.txn.volatile_next += 1;
                TxnId {
                    coordinator: shard_id,
                    number: TxnId::VOLATILE_BIT | self.txn.volatile_next,
                }
            });
            assert!(
                evaluation.writes.is_empty(),
                "a part that logs nothing writes nothing"
            );
            (id, 0, evaluation.writes)
        };
        self.txn.lock(id, &keys);
        self.txn.pin(&writes);
        let prepared = Prepared {
            prepare_lsn,
            keys,
            writes,
        };
        self.txn.prepared.insert(id, prepared);
        self.txn.stats.prepared += 1;
        Ok(PrepareReply::Prepared {
            id,
            results: evaluation.results,
            wait_lsn: prepare_lsn.max(barrier),
        })
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
        self.check_failed()?;
        let shard_id = self.config.shard_id();
        let prepare_lsn = self.txn.prepared.get(&id).map_or(0, |p| p.prepare_lsn);
        let sorted = participants.windows(2).all(|pair| pair[0] < pair[1]);
        if id.coordinator != shard_id
            || prepare_lsn == 0
            || participants.first() != Some(&shard_id)
            || !sorted
            || participants.len() > usize::from(u16::MAX)
        {
            return Err(ShardError::InvalidTxn {
                detail: format!(
                    "{id} cannot be decided on shard {shard_id} with participants {participants:?}"
                ),
            });
        }
        let record = TxnRecord::Decision {
            id,
            participants: participants.to_vec(),
        };
        let lsn = self.log_txn(&record)?;
        let prepared = self.txn.prepared.remove(&id).expect("checked above");
        self.txn.unlock(id, &prepared.keys);
        self.txn.unpin(&prepared.writes);
        self.apply_resolved(&prepared.writes, lsn)?;
        self.txn.resolved.push((lsn, prepared.prepare_lsn));
        self.txn.decisions.insert(id, lsn);
        self.txn.stats.committed += 1;
        Ok(lsn)
    }

    /// Resolves this shard's prepared part of `id`: with `commit`, logs a Commit record and
    /// applies the prepared writes (at a non-coordinator participant, after the Decision is
    /// acknowledged); without, logs an Abort record and discards them. Unlocks the keys either
    /// way. A part that logged no Prepare logs nothing (returns 0). Finishing an id this shard
    /// does not hold prepared is a no-op returning 0, so it is idempotent. `Busy` means nothing
    /// changed: retry.
    ///
    /// Returns the LSN to wait for before the coordinator forgets the decision (an abort need
    /// not be waited for: presumed abort).
    pub fn finish_txn(&mut self, id: TxnId, commit: bool) -> Result<Lsn, ShardError> {
        self.check_failed()?;
        let Some(prepared) = self.txn.prepared.get(&id) else {
            return Ok(0);
        };
        let prepare_lsn = prepared.prepare_lsn;
        let mut lsn = 0;
        if prepare_lsn != 0 {
            if commit && id.coordinator == self.config.shard_id() {
                return Err(ShardError::InvalidTxn {
                    detail: format!("{id} commits at its coordinator with decide_txn"),
                });
            }
            let record = if commit {
                TxnRecord::Commit { id }
            } else {
                TxnRecord::Abort { id }
            };
            lsn = self.log_txn(&record)?;
        }
        let prepared = self.txn.prepared.remove(&id).expect("present above");
        self.txn.unlock(id, &prepared.keys);
        self.txn.unpin(&prepared.writes);
        if commit {
            self.apply_resolved(&prepared.writes, lsn)?;
            self.txn.stats.committed += 1;
        } else {
            // The prepared values in the value log were never pointed at: garbage now.
            for write in &prepared.writes {
                if let Some(pointer) = write.pointer() {
                    self.vlog.release(pointer, write.key().len());
                }
            }
            self.txn.stats.aborted += 1;
        }
        if commit && prepare_lsn != 0 {
            self.txn.resolved.push((lsn, prepare_lsn));
        }
        Ok(lsn)
    }

    /// The txns prepared on this shard and not yet resolved here, ascending. After
    /// [`Shard::open`] these are the in-doubt txns recovery found: their written keys stay
    /// locked until the server resolves each with `finish_txn(id, decision)` where `decision`
    /// is `decision(id)` asked of shard `id.coordinator`.
    pub fn in_doubt(&self) -> Vec<TxnId> {
        self.txn.prepared.keys().copied().collect()
    }

    /// At the coordinator shard: true only if this shard holds an unforgotten Decision (commit)
    /// record for `id`. False means abort (presumed abort).
    pub fn decision(&self, id: TxnId) -> bool {
        self.txn.decisions.contains_key(&id)
    }

    /// Drops the decision of `id` once every participant's Commit is acknowledged (or, after
    /// recovery, once no in-doubt txn references it); the WAL may then release its record at
    /// the next checkpoint. Forgetting an unknown id is a no-op.
    pub fn forget_decision(&mut self, id: TxnId) {
        self.txn.decisions.remove(&id);
    }

    /// The unforgotten decisions this shard holds, ascending (after open: those recovery found).
    pub fn recovered_decisions(&self) -> Vec<TxnId> {
        self.txn.decisions.keys().copied().collect()
    }

    /// The prepared txn holding `key` locked, if any.
    pub fn lock_holder(&self, key: &[u8]) -> Option<TxnId> {
        self.txn.holder(key)
    }

    /// Counters and gauges of the shard's transactions.
    pub fn txn_stats(&self) -> TxnStats {
        let mut stats = self.txn.stats.clone();
        stats.prepared_count = self.txn.prepared.len() as u64;
        stats.locked_keys_count = self.txn.locks.len() as u64;
        stats.decisions_count = self.txn.decisions.len() as u64;
        stats
    }

    /// `Locked` if any of `keys` is locked.
    pub(super) fn check_unlocked(&mut self, keys: &[Vec<u8>]) -> Result<(), ShardError> {
        for key in keys {
            self.check_unlocked_key(key)?;
        }
        Ok(())
    }

    /// `Locked` if `key` is locked.
    pub(super) fn check_unlocked_key(&mut self, key: &[u8]) -> Result<(), ShardError> {
        match self.txn.holder(key) {
            None => Ok(()),
            Some(holder) => {
                self.txn.note_locked_refusal();
                Err(ShardError::Locked {
                    key: key.to_vec(),
                    holder,
                })
            }
        }
    }

    /// `Locked` if any key in the range is locked: a scan must not skip a key a decided
    /// transaction is about to create, nor return one it is about to change.
    pub(super) fn check_unlocked_range(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<(), ShardError> {
        match self.txn.holder_in(start, end) {
            None => Ok(()),
            Some((key, holder)) => {
                self.txn.note_locked_refusal();
                Err(ShardError::Locked { key, holder })
            }
        }
    }

    /// Shape and size limits of a part.
    fn check_part(&self, part: &TxnPart) -> Result<(), ShardError> {
        part.validate()
            .map_err(|detail| ShardError::InvalidTxn { detail })?;
        for assertion in &part.assertions {
            self.check_sizes(&assertion.key, b"")?;
        }
        for op in &part.ops {
            match &op.kind {
                crate::txn::OpKind::Put { value, .. } => self.check_sizes(&op.key, value)?,
                _ => self.check_sizes(&op.key, b"")?,
            }
        }
        Ok(())
    }

    /// The newest unacknowledged write of any of `keys` (0: none).
    fn keys_barrier(&self, keys: &[Vec<u8>]) -> Lsn {
        keys.iter()
            .filter_map(|key| self.read_barrier(key))
            .max()
            .unwrap_or(0)
    }

    fn evaluate_part(
        &mut self,
        part: &TxnPart,
    ) -> Result<Result<crate::txn::Evaluation, crate::txn::TxnFailure>, ShardError> {
        let now = self.now_ms();
        let tree = &mut self.tree;
        let vlog = &mut self.vlog;
        // Values in the value log are read through their pointer, as `Shard::get` does.
        let result = evaluate(part, now, |key| {
            let found = tree.get_with(key, |value| {
                (
                    value.kind,
                    Value {
                        bytes: value.bytes.to_vec(),
                        expiry_ms: value.expiry_ms,
                        version: value.version,
                    },
                )
            })?;
            let Some((kind, mut value)) = found else {
                return Ok(None);
            };
            if kind == VALUE_KIND_POINTER {
                let Some(pointer) = Pointer::decode(&value.bytes) else {
                    let detail = format!("key {key:?} holds a malformed value-log pointer");
                    return Err(ShardError::Failed { detail });
                };
                value.bytes = vlog.read(key, &pointer)?;
            }
            Ok::<_, ShardError>(Some(value))
        });
        result.map_err(|error| self.classify(error))
    }

    /// Appends a txn record, refusing one larger than the WAL's record limit first.
    fn log_txn(&mut self, record: &TxnRecord) -> Result<Lsn, ShardError> {
        let size = record.payload_bytes();
        let max = self.wal.config().payload_bytes_max();
        if size > max {
            return Err(ShardError::TxnTooLarge { size, max });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        record.encode(&mut scratch);
        let result = self.wal.append(record.record_type(), &scratch);
        self.scratch = scratch;
        let lsn = self.check_wal(result)?;
        self.wal_bytes_since_checkpoint += size as u64 + super::RECORD_OVERHEAD_BYTES;
        Ok(lsn)
    }

    /// Writes the values of `writes` above the inline threshold to the value log (for the record
    /// about to be appended at the WAL's next LSN, which the WAL then holds back until they are
    /// durable) and turns their puts into put pointers. On an error nothing stays appended.
    ///
    /// `TxnTooLarge` if those values need more than the value log's buffer
    /// (`VlogConfig::buffer_bytes_max`): they are appended at once, so a larger txn could never
    /// be accepted, while a smaller one always fits once the buffer has drained (else `Busy`).
    fn stage_values(
        &mut self,
        writes: Vec<ResolvedWrite>,
    ) -> Result<Vec<ResolvedWrite>, ShardError> {
        let inline_max = self.tree.config().value_inline_max();
        let size: usize = writes
            .iter()
            .map(|write| match write {
                ResolvedWrite::Put { key, value, .. } if value.len() > inline_max => {
                    record_size(key.len(), value.len())
                }
                _ => 0,
            })
            .sum();
        if size == 0 {
            return Ok(writes);
        }
        let max = self.vlog.config().buffer_bytes_max;
        if size > max {
            return Err(ShardError::TxnTooLarge { size, max });
        }
        let lsn = self.wal.next_lsn();
        let mut staged = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                ResolvedWrite::Put {
                    key,
                    value,
                    expiry_ms,
                } if value.len() > inline_max => match self.vlog.append(&key, &value, lsn) {
                    Ok(pointer) => staged.push(ResolvedWrite::PutPointer {
                        key,
                        pointer,
                        expiry_ms,
                    }),
                    Err(error) => {
                        self.unstage(&staged);
                        return Err(self.classify(ShardError::from(error)));
                    }
                },
                other => staged.push(other),
            }
        }
        Ok(staged)
    }

    /// Takes back the value-log appends [`Shard::stage_values`] made for a record that was
    /// refused, newest first (each is then the last record of the staged batch).
    fn unstage(&mut self, writes: &[ResolvedWrite]) {
        for write in writes.iter().rev() {
            if let Some(pointer) = write.pointer() {
                self.vlog.unappend(pointer, write.key().len());
            }
        }
    }

    /// [`Shard::log_txn`] for a record whose values [`Shard::stage_values`] staged: takes them
    /// back if the record is refused.
    fn log_staged(&mut self, record: &TxnRecord) -> Result<Lsn, ShardError> {
        let logged = self.log_txn(record);
        if logged.is_err() {
            match record {
                TxnRecord::Apply { writes } | TxnRecord::Prepare { writes, .. } => {
                    self.unstage(writes);
                }
                _ => {}
            }
        }
        logged
    }

    /// Applies logged writes to the tree and remembers them as unacknowledged until `lsn` is.
    fn apply_resolved(&mut self, writes: &[ResolvedWrite], lsn: Lsn) -> Result<(), ShardError> {
        // Overwritten or deleted values in the value log become garbage.
        for write in writes {
            if let Some(old) = self.pointer_of(write.key())? {
                self.vlog.release(&old, write.key().len());
            }
        }
        let result = apply_writes(&mut self.tree, writes);
        self.check_tree(result)?;
        for write in writes {
            match write {
                ResolvedWrite::Put { expiry_ms, .. }
                | ResolvedWrite::PutPointer { expiry_ms, .. } => {
                    self.stats.puts += 1;
                    if *expiry_ms != 0 {
                        self.sweeper.note_expiring_write();
                    }
                }
                ResolvedWrite::Delete { .. } => self.stats.deletes += 1,
            }
            self.remember_unacked(write.key(), lsn);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
