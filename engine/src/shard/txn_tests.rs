//! Unit tests of the shard's transaction side: locks, the prepare/decide/finish life cycle,
//! retention and recovery of in-doubt state.

use super::super::{Shard, ShardConfig, ShardError};
use crate::clock::{Clock, ManualClock};
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};
use crate::storage::Vfs;
use crate::txn::{
    Assertion, AssertionKind, OpKind, OpOutput, PrepareReply, PrepareRequest, TxnFailure, TxnId,
    TxnOp, TxnOutcome, TxnPart,
};
use std::ops::Bound;
use std::rc::Rc;

fn open(disk: &SimDisk, shard_id: u32) -> Shard<SimVfs> {
    let vfs = disk
        .root()
        .subdir(&format!("shard-{shard_id:03}"))
        .expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_000));
    let mut config = ShardConfig::new(shard_id);
    config.wal.segment_size_bytes = 8 * 4096;
    config.wal.flush_bytes_max = 2 * 4096;
    config.wal.buffer_bytes_max = 4 * 4096;
    Shard::open(vfs, config, clock).expect("open").0
}

fn put(index: u32, key: &[u8], value: &[u8]) -> TxnOp {
    TxnOp {
        index,
        key: key.to_vec(),
        kind: OpKind::Put {
            value: value.to_vec(),
            expiry_ms: 0,
        },
    }
}

fn writes(ops: Vec<TxnOp>) -> TxnPart {
    TxnPart {
        assertions: Vec::new(),
        ops,
    }
}

fn prepare(shard: &mut Shard<SimVfs>, id: Option<TxnId>, part: TxnPart) -> (TxnId, u64) {
    let request = PrepareRequest {
        id,
        read_only: false,
        part,
    };
    match shard.prepare_txn(&request).expect("prepare") {
        PrepareReply::Prepared { id, wait_lsn, .. } => (id, wait_lsn),
        failed => panic!("prepare failed: {failed:?}"),
    }
}

fn durable(shard: &mut Shard<SimVfs>, lsn: u64) {
    while shard.acked_lsn() < lsn {
        shard.poll().expect("poll");
    }
}

fn value(shard: &mut Shard<SimVfs>, key: &[u8]) -> Option<Vec<u8>> {
    shard.get(key).expect("get").map(|v| v.bytes)
}

#[test]
fn locked_keys_refuse_every_access_until_the_outcome() {
    let disk = SimDisk::new(1, FaultConfig::none());
    let mut shard = open(&disk, 0);
    shard.put(b"b", b"old", 0).expect("put");
    let (id, lsn) = prepare(&mut shard, None, writes(vec![put(0, b"b", b"new")]));
    assert_eq!(
        id,
        TxnId {
            coordinator: 0,
            number: lsn
        },
        "the id is the Prepare's LSN"
    );
    assert_eq!(shard.lock_holder(b"b"), Some(id));
    let locked = |result: Result<(), ShardError>| {
        assert!(
            matches!(&result, Err(ShardError::Locked { key, holder }) if key == b"b" && *holder == id),
            "{result:?}"
        )
    };
    locked(shard.get(b"b").map(|_| ()));
    locked(shard.put(b"b", b"x", 0).map(|_| ()));
    locked(shard.delete(b"b").map(|_| ()));
    locked(
        shard
            .apply_txn(&writes(vec![put(0, b"b", b"y")]))
            .map(|_| ()),
    );
    let range = shard.scan(
        Bound::Included(b"a"),
        Bound::Excluded(b"c"),
        10,
        false,
        None,
    );
    locked(range.map(|_| ()));
    // Other keys and ranges are not affected.
    shard.put(b"a", b"1", 0).expect("unlocked key");
    let other = shard.scan(Bound::Included(b"c"), Bound::Unbounded, 10, false, None);
    assert!(other.is_ok());
    assert!(shard.txn_stats().locked_refusals >= 5);
    durable(&mut shard, lsn);
    let decision = shard.decide_txn(id, &[0, 3]).expect("decide");
    assert_eq!(shard.lock_holder(b"b"), None);
    assert_eq!(value(&mut shard, b"b"), Some(b"new".to_vec()));
    assert!(shard.decision(id));
    assert_eq!(
        shard.read_barrier(b"b"),
        Some(decision),
        "readers wait for the Decision"
    );
    shard.forget_decision(id);
    assert!(!shard.decision(id));
}

#[test]
fn a_participant_commits_or_aborts_and_finish_is_idempotent() {
    let disk = SimDisk::new(2, FaultConfig::none());
    let mut shard = open(&disk, 2);
    shard.put(b"k", b"1", 0).expect("put");
    let id = TxnId {
        coordinator: 0,
        number: 77,
    };
    let part = TxnPart {
        assertions: vec![Assertion {
            index: 0,
            key: b"k".to_vec(),
            kind: AssertionKind::Exists,
        }],
        ops: vec![TxnOp {
            index: 1,
            key: b"k".to_vec(),
            kind: OpKind::Add { delta: 41 },
        }],
    };
    prepare(&mut shard, Some(id), part.clone());
    // Prepared twice: refused.
    let again = PrepareRequest {
        id: Some(id),
        read_only: false,
        part: part.clone(),
    };
    assert!(matches!(
        shard.prepare_txn(&again),
        Err(ShardError::InvalidTxn { .. })
    ));
    assert_eq!(shard.in_doubt(), vec![id]);
    let lsn = shard.finish_txn(id, true).expect("commit");
    assert!(lsn > 0);
    assert_eq!(value(&mut shard, b"k"), Some(b"42".to_vec()));
    assert_eq!(
        shard.finish_txn(id, true),
        Ok(0),
        "finishing again is a no-op"
    );
    assert!(shard.in_doubt().is_empty());
    // An abort discards the prepared writes.
    let other = TxnId {
        coordinator: 1,
        number: 5,
    };
    prepare(&mut shard, Some(other), part);
    shard.finish_txn(other, false).expect("abort");
    assert_eq!(value(&mut shard, b"k"), Some(b"42".to_vec()));
    assert_eq!(shard.txn_stats().committed, 1);
    assert_eq!(shard.txn_stats().aborted, 1);
}

#[test]
fn a_failed_assertion_locks_and_logs_nothing() {
    let disk = SimDisk::new(3, FaultConfig::none());
    let mut shard = open(&disk, 0);
    let before = shard.stats().wal.next_lsn;
    let part = TxnPart {
        assertions: vec![Assertion {
            index: 4,
            key: b"k".to_vec(),
            kind: AssertionKind::Exists,
        }],
        ops: vec![put(5, b"k", b"v")],
    };
    let request = PrepareRequest {
        id: None,
        read_only: false,
        part: part.clone(),
    };
    let reply = shard.prepare_txn(&request).expect("prepare");
    assert!(matches!(
        reply,
        PrepareReply::Failed {
            failure: TxnFailure::AssertionFailed { index: 4, .. },
            ..
        }
    ));
    let reply = shard.apply_txn(&part).expect("apply");
    assert!(matches!(reply.outcome, TxnOutcome::Failed(_)));
    assert_eq!(shard.stats().wal.next_lsn, before, "nothing logged");
    assert_eq!(shard.lock_holder(b"k"), None);
    assert_eq!(value(&mut shard, b"k"), None);
}

#[test]
fn read_only_parts_lock_with_volatile_ids_and_log_nothing() {
    let disk = SimDisk::new(4, FaultConfig::none());
    let mut shard = open(&disk, 1);
    shard.put(b"r", b"v", 0).expect("put");
    let before = shard.stats().wal.next_lsn;
    let request = PrepareRequest {
        id: None,
        read_only: true,
        part: TxnPart {
            assertions: Vec::new(),
            ops: vec![TxnOp {
                index: 0,
                key: b"r".to_vec(),
                kind: OpKind::Read { with_version: true },
            }],
        },
    };
    let PrepareReply::Prepared { id, results, .. } = shard.prepare_txn(&request).expect("ok")
    else {
        panic!("prepared")
    };
    assert!(id.is_volatile());
    assert!(matches!(&results[0].output, OpOutput::Read(Some(v)) if v.bytes == b"v"));
    assert!(matches!(
        shard.put(b"r", b"w", 0),
        Err(ShardError::Locked { .. })
    ));
    assert_eq!(shard.finish_txn(id, true), Ok(0));
    assert_eq!(shard.stats().wal.next_lsn, before, "nothing logged");
    shard.put(b"r", b"w", 0).expect("unlocked");
}

#[test]
fn in_doubt_txns_survive_a_crash_below_the_checkpoint_and_resolve_either_way() {
    let disk = SimDisk::new(5, FaultConfig::crashes());
    let mut shard = open(&disk, 1);
    shard.put(b"x", b"0", 0).expect("put");
    let commit_id = TxnId {
        coordinator: 0,
        number: 10,
    };
    let abort_id = TxnId {
        coordinator: 0,
        number: 11,
    };
    let (_, a) = prepare(
        &mut shard,
        Some(commit_id),
        writes(vec![put(0, b"x", b"1")]),
    );
    let (_, b) = prepare(&mut shard, Some(abort_id), writes(vec![put(0, b"y", b"2")]));
    durable(&mut shard, a.max(b));
    // A checkpoint covers both Prepares; retention must keep their records anyway, also
    // through a lot of later traffic that rolls segments over.
    shard.checkpoint().expect("checkpoint");
    for i in 0..400u32 {
        let lsn = shard
            .put(format!("fill{i:04}").as_bytes(), &[7; 200], 0)
            .expect("put");
        durable(&mut shard, lsn);
        if i % 50 == 0 {
            shard.checkpoint().expect("checkpoint");
        }
    }
    shard.checkpoint().expect("checkpoint");
    assert!(shard.stats().wal.segments_count > 1);
    drop(shard);
    disk.crash();
    let mut shard = open(&disk, 1);
    assert_eq!(shard.in_doubt(), vec![commit_id, abort_id]);
    assert_eq!(shard.lock_holder(b"x"), Some(commit_id), "locks come back");
    assert_eq!(shard.lock_holder(b"y"), Some(abort_id));
    let c = shard.finish_txn(commit_id, true).expect("commit");
    shard.finish_txn(abort_id, false).expect("abort");
    durable(&mut shard, c + 1);
    // The Commit lies above the checkpoint and redoes the Prepare's writes after a crash.
    drop(shard);
    disk.crash();
    let mut shard = open(&disk, 1);
    assert!(shard.in_doubt().is_empty());
    assert_eq!(value(&mut shard, b"x"), Some(b"1".to_vec()));
    assert_eq!(value(&mut shard, b"y"), None);
    // Once a checkpoint covers the outcomes, the Prepares' segments may go.
    shard.checkpoint().expect("checkpoint");
    shard.checkpoint().expect("checkpoint");
    drop(shard);
    disk.crash();
    let mut shard = open(&disk, 1);
    assert!(shard.in_doubt().is_empty());
    assert_eq!(value(&mut shard, b"x"), Some(b"1".to_vec()));
}

#[test]
fn the_coordinators_decision_survives_a_crash_until_forgotten() {
    let disk = SimDisk::new(6, FaultConfig::crashes());
    let mut shard = open(&disk, 0);
    let (id, lsn) = prepare(&mut shard, None, writes(vec![put(0, b"k", b"v")]));
    durable(&mut shard, lsn);
    let decision = shard.decide_txn(id, &[0, 1]).expect("decide");
    durable(&mut shard, decision);
    shard.checkpoint().expect("checkpoint");
    drop(shard);
    disk.crash();
    let mut shard = open(&disk, 0);
    assert!(
        shard.in_doubt().is_empty(),
        "the Decision resolves the coordinator's own part"
    );
    assert_eq!(shard.recovered_decisions(), vec![id]);
    assert!(shard.decision(id));
    assert!(!shard.decision(TxnId {
        coordinator: 0,
        number: id.number + 1
    }));
    assert_eq!(value(&mut shard, b"k"), Some(b"v".to_vec()));
    shard.forget_decision(id);
    assert!(shard.recovered_decisions().is_empty());
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let disk = SimDisk::new(7, FaultConfig::none());
    let mut shard = open(&disk, 1);
    let id = TxnId {
        coordinator: 1,
        number: 3,
    };
    // Deciding what was never prepared, or not at the coordinator.
    assert!(matches!(
        shard.decide_txn(id, &[1, 2]),
        Err(ShardError::InvalidTxn { .. })
    ));
    let foreign = TxnId {
        coordinator: 0,
        number: 3,
    };
    assert!(matches!(
        shard.decide_txn(foreign, &[0, 1]),
        Err(ShardError::InvalidTxn { .. })
    ));
    // A participant request naming this shard as coordinator.
    let request = PrepareRequest {
        id: Some(id),
        read_only: false,
        part: writes(vec![put(0, b"k", b"v")]),
    };
    assert!(matches!(
        shard.prepare_txn(&request),
        Err(ShardError::InvalidTxn { .. })
    ));
    // Duplicate indexes.
    let dup = writes(vec![put(0, b"a", b"v"), put(0, b"b", b"v")]);
    assert!(matches!(
        shard.apply_txn(&dup),
        Err(ShardError::InvalidTxn { .. })
    ));
    // A record larger than the WAL allows.
    let big: Vec<TxnOp> = (0..40)
        .map(|i| put(i, format!("key{i:03}").as_bytes(), &[1; 1000]))
        .collect();
    assert!(matches!(
        shard.apply_txn(&writes(big)),
        Err(ShardError::TxnTooLarge { .. })
    ));
    assert_eq!(shard.stats().wal.next_lsn, 1, "nothing was logged");
}
