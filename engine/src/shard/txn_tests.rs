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

// ----- values above the inline threshold, in the value log -----

/// A shard for large-value txns: small value-log segments and GC at every poll, so a few MiB
/// of values fill and collect several segments.
fn open_big(disk: &SimDisk, shard_id: u32) -> Shard<SimVfs> {
    let vfs = disk
        .root()
        .subdir(&format!("shard-{shard_id:03}"))
        .expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_000));
    let mut config = ShardConfig::new(shard_id);
    config.wal.segment_size_bytes = 16 * 4096;
    config.wal.flush_bytes_max = 4 * 4096;
    config.wal.buffer_bytes_max = 8 * 4096;
    config.vlog.segment_bytes = 128 << 10;
    config.vlog.gc_interval_ms = 0;
    config.vlog.gc_slice_bytes = 64 << 10;
    config.vlog.gc_garbage_percent = 25;
    Shard::open(vfs, config, clock).expect("open").0
}

/// A value whose bytes depend on `seed` and position, so a misplaced byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

const BIG_SIZES: [usize; 3] = [2 << 10, 64 << 10, 1 << 20];
const BIG_KEYS: [&[u8]; 3] = [b"big-2k", b"big-64k", b"big-1m"];

/// Puts of the three large sizes (seeded by `seed`) and a small value, as one part.
fn big_puts(seed: u8) -> TxnPart {
    let mut ops: Vec<TxnOp> = BIG_KEYS
        .iter()
        .zip(BIG_SIZES)
        .enumerate()
        .map(|(i, (key, size))| put(i as u32, key, &pattern(size, seed.wrapping_add(i as u8))))
        .collect();
    ops.push(put(3, b"small", &[seed; 10]));
    writes(ops)
}

/// Which `big_puts` seed the shard holds: all four keys must agree (all-or-nothing).
fn big_state(shard: &mut Shard<SimVfs>, seeds: &[u8]) -> u8 {
    for &seed in seeds {
        let mut holds: Vec<bool> = BIG_KEYS
            .iter()
            .zip(BIG_SIZES)
            .enumerate()
            .map(|(i, (key, size))| {
                value(shard, key) == Some(pattern(size, seed.wrapping_add(i as u8)))
            })
            .collect();
        holds.push(value(shard, b"small") == Some(vec![seed; 10]));
        if holds.iter().all(|&h| h) {
            return seed;
        }
        assert!(
            holds.iter().all(|&h| !h),
            "txn {seed} applied in part: {holds:?}"
        );
    }
    panic!("the shard holds none of the txns {seeds:?}")
}

fn settle(shard: &mut Shard<SimVfs>) {
    durable(shard, shard.last_lsn());
}

#[test]
fn a_single_shard_txn_takes_values_up_to_a_mib_through_the_value_log() {
    let disk = SimDisk::new(21, FaultConfig::crashes());
    let mut shard = open_big(&disk, 0);
    let reply = shard.apply_txn(&big_puts(1)).expect("apply");
    assert!(matches!(reply.outcome, TxnOutcome::Committed { .. }));
    // One record: the values went to the value log, the record holds pointers and waits for
    // them (nothing is durable before a poll).
    assert_eq!(reply.wait_lsn, shard.last_lsn());
    assert!(shard.acked_lsn() < reply.wait_lsn);
    assert!(shard.stats().vlog.live_bytes > (1 << 20));
    assert_eq!(big_state(&mut shard, &[1]), 1, "served from memory");
    durable(&mut shard, reply.wait_lsn);
    assert_eq!(
        big_state(&mut shard, &[1]),
        1,
        "read back from the value log"
    );
    // Inside a txn: assertions and reads see large values in the tree and in the overlay, and
    // an add on a large value fails the txn.
    let big64 = pattern(BIG_SIZES[1], 2);
    let fresh = pattern(300_000, 9);
    let part = TxnPart {
        assertions: vec![
            Assertion {
                index: 0,
                key: BIG_KEYS[1].to_vec(),
                kind: AssertionKind::ValueEquals(big64.clone()),
            },
            Assertion {
                index: 1,
                key: BIG_KEYS[2].to_vec(),
                kind: AssertionKind::HashEquals(crate::txn::value_hash(&pattern(1 << 20, 3))),
            },
        ],
        ops: vec![
            TxnOp {
                index: 2,
                key: BIG_KEYS[1].to_vec(),
                kind: OpKind::Read { with_version: true },
            },
            put(3, b"fresh", &fresh),
            TxnOp {
                index: 4,
                key: b"fresh".to_vec(),
                kind: OpKind::Read {
                    with_version: false,
                },
            },
        ],
    };
    let reply = shard.apply_txn(&part).expect("apply");
    let TxnOutcome::Committed { results } = reply.outcome else {
        panic!("committed: {:?}", reply.outcome)
    };
    assert!(matches!(&results[0].output, OpOutput::Read(Some(v)) if v.bytes == big64));
    assert!(matches!(&results[2].output, OpOutput::Read(Some(v)) if v.bytes == fresh));
    let add = writes(vec![TxnOp {
        index: 0,
        key: BIG_KEYS[0].to_vec(),
        kind: OpKind::Add { delta: 1 },
    }]);
    let reply = shard.apply_txn(&add).expect("apply");
    assert!(matches!(
        reply.outcome,
        TxnOutcome::Failed(TxnFailure::OpFailed { index: 0, .. })
    ));
    settle(&mut shard);
    shard.check_integrity().expect("integrity");
    // A clean reopen redoes the pointers and rebuilds the same accounting.
    let live = shard.stats().vlog.live_bytes;
    drop(shard);
    disk.crash();
    let mut shard = open_big(&disk, 0);
    assert_eq!(big_state(&mut shard, &[1]), 1);
    assert_eq!(value(&mut shard, b"fresh"), Some(fresh.clone()));
    assert_eq!(shard.stats().vlog.live_bytes, live);
    shard.check_integrity().expect("integrity after reopen");
    // Overwritten many times, the values' segments become garbage that GC collects, and the
    // latest values survive it, a checkpoint and a crash.
    for seed in 10..16u8 {
        let reply = loop {
            match shard.apply_txn(&big_puts(seed)) {
                Err(ShardError::Busy { .. }) => shard.poll().expect("poll"),
                other => break other.expect("apply"),
            }
        };
        durable(&mut shard, reply.wait_lsn);
        for _ in 0..20 {
            shard.poll().expect("poll");
        }
    }
    for _ in 0..200 {
        shard.poll().expect("poll");
    }
    shard.checkpoint().expect("checkpoint");
    let stats = shard.stats().vlog;
    assert!(stats.gc_runs > 0 && stats.segments_deleted > 0, "{stats:?}");
    assert_eq!(stats.gc_failures, 0, "{stats:?}");
    assert_eq!(big_state(&mut shard, &[15]), 15);
    shard.check_integrity().expect("integrity after GC");
    drop(shard);
    disk.crash();
    let mut shard = open_big(&disk, 0);
    assert_eq!(big_state(&mut shard, &[15]), 15);
    assert_eq!(value(&mut shard, b"fresh"), Some(fresh));
    shard
        .check_integrity()
        .expect("integrity after GC and a crash");
}

/// Power cuts at many points while a txn of large values is written: an acknowledged txn is
/// whole after recovery; an unacknowledged one is whole or absent.
#[test]
fn power_cuts_leave_a_large_value_txn_whole_or_absent() {
    let mut outcomes = [0u32; 2];
    for cut_after in (0..60).step_by(3) {
        let disk = SimDisk::new(300 + cut_after, FaultConfig::crashes());
        let mut shard = open_big(&disk, 0);
        let first = shard.apply_txn(&big_puts(1)).expect("apply");
        durable(&mut shard, first.wait_lsn);
        disk.cut_power_after(cut_after);
        let mut acked = false;
        if let Ok(reply) = shard.apply_txn(&big_puts(2)) {
            for _ in 0..100 {
                if shard.poll().is_err() {
                    break;
                }
                acked |= shard.acked_lsn() >= reply.wait_lsn;
            }
        }
        drop(shard);
        disk.crash();
        disk.cancel_power_cut();
        let mut shard = open_big(&disk, 0);
        let state = big_state(&mut shard, &[2, 1]);
        assert!(
            !acked || state == 2,
            "cut after {cut_after}: an acknowledged txn is lost"
        );
        outcomes[usize::from(state == 2)] += 1;
        shard.check_integrity().expect("integrity after recovery");
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "cuts landed both before and after the txn was durable: {outcomes:?}"
    );
}

#[test]
fn in_doubt_large_values_stay_live_until_resolved_and_aborted_ones_are_collected() {
    let disk = SimDisk::new(22, FaultConfig::crashes());
    let mut participant = open_big(&disk, 1);
    let mut coordinator = open_big(&disk, 0);
    let commit_id = TxnId {
        coordinator: 0,
        number: 100,
    };
    let abort_id = TxnId {
        coordinator: 0,
        number: 101,
    };
    let x = pattern(64 << 10, 1);
    let y = pattern(2 << 10, 2);
    let z = pattern(1 << 20, 3);
    let (_, a) = prepare(
        &mut participant,
        Some(commit_id),
        writes(vec![put(0, b"x", &x), put(1, b"y", &y)]),
    );
    let (_, b) = prepare(
        &mut participant,
        Some(abort_id),
        writes(vec![put(0, b"z", &z)]),
    );
    // The Prepare waits for its values like any pointer record.
    assert!(participant.acked_lsn() < a.max(b));
    durable(&mut participant, a.max(b));
    // The coordinator's own Prepare with a large value, never decided: presumed abort.
    let (own, c) = prepare(&mut coordinator, None, writes(vec![put(0, b"w", &z)]));
    durable(&mut coordinator, c);
    // Checkpoints put the Prepares below the checkpoint LSN; later traffic rolls segments.
    participant.checkpoint().expect("checkpoint");
    for i in 0..20u8 {
        let lsn = participant
            .put(format!("fill{i:02}").as_bytes(), &pattern(20_000, i), 0)
            .expect("put");
        durable(&mut participant, lsn);
    }
    participant.checkpoint().expect("checkpoint");
    coordinator.checkpoint().expect("checkpoint");
    let live_before = participant.stats().vlog.live_bytes;
    participant
        .check_integrity()
        .expect("prepared values are counted live");
    drop(participant);
    drop(coordinator);
    disk.crash();
    let mut participant = open_big(&disk, 1);
    let mut coordinator = open_big(&disk, 0);
    assert_eq!(participant.in_doubt(), vec![commit_id, abort_id]);
    assert_eq!(coordinator.in_doubt(), vec![own]);
    assert!(!coordinator.decision(own));
    assert_eq!(
        participant.stats().vlog.live_bytes,
        live_before,
        "in-doubt values are adopted live at open"
    );
    participant.check_integrity().expect("integrity in doubt");
    // GC runs while they are in doubt: their segment is never a victim.
    for _ in 0..100 {
        participant.poll().expect("poll");
    }
    participant.checkpoint().expect("checkpoint");
    assert_eq!(participant.stats().vlog.gc_failures, 0);
    let commit = participant.finish_txn(commit_id, true).expect("commit");
    participant.finish_txn(abort_id, false).expect("abort");
    coordinator.finish_txn(own, false).expect("abort");
    durable(&mut participant, commit + 1);
    settle(&mut coordinator);
    let z_record = (16 + 1 + z.len()) as u64;
    let stats = participant.stats().vlog;
    assert_eq!(
        stats.live_bytes,
        live_before - z_record,
        "the aborted value is garbage"
    );
    assert!(stats.dead_bytes >= z_record, "{stats:?}");
    assert_eq!(value(&mut participant, b"x"), Some(x.clone()));
    assert_eq!(value(&mut participant, b"y"), Some(y.clone()));
    assert_eq!(value(&mut participant, b"z"), None);
    assert_eq!(value(&mut coordinator, b"w"), None);
    participant
        .check_integrity()
        .expect("integrity after resolution");
    coordinator
        .check_integrity()
        .expect("integrity after abort");
    // GC collects the aborted value's segment (moving x and y out of it) and a checkpoint
    // deletes it; the committed values survive that and a crash.
    let deleted = participant.stats().vlog.segments_deleted;
    for _ in 0..200 {
        participant.poll().expect("poll");
        coordinator.poll().expect("poll");
    }
    participant.checkpoint().expect("checkpoint");
    coordinator.checkpoint().expect("checkpoint");
    let stats = participant.stats().vlog;
    assert!(stats.segments_deleted > deleted, "{stats:?}");
    assert!(stats.dead_bytes < z_record, "{stats:?}");
    assert!(coordinator.stats().vlog.segments_deleted > 0);
    drop(participant);
    drop(coordinator);
    disk.crash();
    let mut participant = open_big(&disk, 1);
    assert!(participant.in_doubt().is_empty());
    assert_eq!(value(&mut participant, b"x"), Some(x));
    assert_eq!(value(&mut participant, b"y"), Some(y));
    assert_eq!(value(&mut participant, b"z"), None);
    participant
        .check_integrity()
        .expect("integrity after GC and a crash");
}

#[test]
fn gc_leaves_a_prepared_txns_values_alone_across_crashes() {
    let disk = SimDisk::new(23, FaultConfig::crashes());
    let mut shard = open_big(&disk, 1);
    let id = TxnId {
        coordinator: 0,
        number: 7,
    };
    // Values around the prepared ones in their segment, overwritten below: that segment
    // becomes mostly garbage, the best victim there is, but it holds the prepared values.
    for i in 0..4u8 {
        shard
            .put(format!("k{i}").as_bytes(), &pattern(30_000, i), 0)
            .expect("put");
    }
    let p = pattern(40_000, 50);
    let q = pattern(5_000, 51);
    let (_, lsn) = prepare(
        &mut shard,
        Some(id),
        writes(vec![put(0, b"p", &p), put(1, b"q", &q)]),
    );
    durable(&mut shard, lsn);
    let overwrite = |shard: &mut Shard<SimVfs>, round: u8| {
        for i in 0..4u8 {
            let key = format!("k{i}");
            loop {
                match shard.put(key.as_bytes(), &pattern(30_000, round ^ i), 0) {
                    Err(ShardError::Busy { .. }) => shard.poll().expect("poll"),
                    other => {
                        other.expect("put");
                        break;
                    }
                }
            }
            for _ in 0..5 {
                shard.poll().expect("poll");
            }
        }
    };
    for round in 1..12u8 {
        overwrite(&mut shard, round);
    }
    shard.checkpoint().expect("checkpoint");
    let stats = shard.stats().vlog;
    assert!(stats.gc_runs > 0 && stats.segments_deleted > 0, "{stats:?}");
    assert_eq!(stats.gc_failures, 0, "{stats:?}");
    shard.check_integrity().expect("integrity while prepared");
    // A crash with the txn in doubt: its values are adopted, GC goes on around them.
    settle(&mut shard);
    drop(shard);
    disk.crash();
    let mut shard = open_big(&disk, 1);
    assert_eq!(shard.in_doubt(), vec![id]);
    for round in 12..20u8 {
        overwrite(&mut shard, round);
    }
    shard.checkpoint().expect("checkpoint");
    let stats = shard.stats().vlog;
    assert!(stats.gc_runs > 0, "{stats:?}");
    assert_eq!(stats.gc_failures, 0, "{stats:?}");
    shard.check_integrity().expect("integrity in doubt");
    // The commit finds its values, and once they are leaves' values GC may move them.
    let commit = shard.finish_txn(id, true).expect("commit");
    durable(&mut shard, commit);
    assert_eq!(value(&mut shard, b"p"), Some(p.clone()));
    assert_eq!(value(&mut shard, b"q"), Some(q.clone()));
    let moved = shard.stats().vlog.gc_bytes_moved;
    for round in 20..30u8 {
        overwrite(&mut shard, round);
    }
    shard.checkpoint().expect("checkpoint");
    assert!(shard.stats().vlog.gc_bytes_moved > moved);
    drop(shard);
    disk.crash();
    let mut shard = open_big(&disk, 1);
    assert_eq!(value(&mut shard, b"p"), Some(p));
    assert_eq!(value(&mut shard, b"q"), Some(q));
    shard
        .check_integrity()
        .expect("integrity after commit, GC and a crash");
}

#[test]
fn a_txn_whose_large_values_exceed_the_value_log_buffer_is_refused_whole() {
    let disk = SimDisk::new(24, FaultConfig::none());
    let mut shard = open_big(&disk, 0);
    let max = shard.config().vlog.buffer_bytes_max;
    let huge = vec![5u8; crate::constants::VALUE_SIZE_MAX];
    let count = max / huge.len() + 1;
    let ops = (0..count)
        .map(|i| put(i as u32, format!("h{i}").as_bytes(), &huge))
        .collect();
    let before = shard.stats().wal.next_lsn;
    assert!(matches!(
        shard.apply_txn(&writes(ops)),
        Err(ShardError::TxnTooLarge { max: m, .. }) if m == max
    ));
    assert_eq!(shard.stats().wal.next_lsn, before, "nothing logged");
    assert_eq!(shard.stats().vlog.live_bytes, 0, "nothing appended");
    // A 16 MiB value alone is fine.
    let reply = shard
        .apply_txn(&writes(vec![put(0, b"h", &huge)]))
        .expect("apply");
    durable(&mut shard, reply.wait_lsn);
    assert_eq!(value(&mut shard, b"h"), Some(huge));
}
