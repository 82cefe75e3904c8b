//! Expiry with an injected clock: the boundary, scans and deletes of expired keys, clock jumps in
//! both directions, expiry across restart and crash, and the sweeper alone and under writes.

use super::super::{Shard, ShardConfig};
use crate::clock::{Clock, ManualClock};
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};
use crate::storage::Vfs;
use std::ops::Bound;
use std::rc::Rc;

const T0: u64 = 1_700_000_000_000;

fn open(disk: &SimDisk, clock: &ManualClock) -> Shard<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Shard::open(vfs, ShardConfig::new(0), clock)
        .expect("open")
        .0
}

fn settle(shard: &mut Shard<SimVfs>, lsn: u64) {
    while shard.acked_lsn() < lsn {
        shard.poll().expect("poll");
    }
}

fn present(shard: &mut Shard<SimVfs>, key: &[u8]) -> bool {
    shard.get(key).expect("get").is_some()
}

#[test]
fn a_key_expires_exactly_at_its_expiry() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(1, FaultConfig::none());
    let mut shard = open(&disk, &clock);
    shard.put(b"k", b"v", T0 + 1_000).expect("put");
    clock.advance_ns(999_000_000);
    assert!(present(&mut shard, b"k"), "1 ms before its expiry");
    clock.advance_ns(1_000_000);
    assert!(!present(&mut shard, b"k"), "at its expiry");
    let (deleted, _) = shard.delete(b"k").expect("delete");
    assert!(!deleted, "an expired key deletes as absent");
}

#[test]
fn scans_skip_expired_keys_and_still_fill_their_limit() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(2, FaultConfig::none());
    let mut shard = open(&disk, &clock);
    for i in 0..100u32 {
        let expiry = if i % 2 == 0 { T0 + 10 } else { 0 };
        shard
            .put(format!("k{i:03}").as_bytes(), b"v", expiry)
            .expect("put");
    }
    clock.advance_ns(20_000_000);
    let page = shard
        .scan(Bound::Unbounded, Bound::Unbounded, 10, false, None)
        .expect("scan");
    let keys: Vec<String> = page
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.key).into_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("k{:03}", 2 * i + 1)).collect();
    assert_eq!(keys, expected);
    assert!(page.continuation.is_some());
}

#[test]
fn wall_clock_jumps_neither_resurrect_nor_expire_early() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(3, FaultConfig::none());
    let mut shard = open(&disk, &clock);
    shard.put(b"short", b"v", T0 + 1_000).expect("put");
    shard.put(b"long", b"v", T0 + 60_000).expect("put");
    clock.advance_ns(2_000_000_000);
    assert!(!present(&mut shard, b"short"));
    clock.set_wall_ms(T0 - 3_600_000);
    assert!(
        !present(&mut shard, b"short"),
        "a clock set back resurrects nothing"
    );
    clock.set_wall_ms(T0 + 3_600_000);
    assert!(
        present(&mut shard, b"long"),
        "a clock set forward expires nothing early"
    );
    clock.advance_ns(200_000_000);
    shard.poll().expect("poll");
    let drift = shard.stats().sweep.clock_drift_ms;
    assert!(drift > 3_500_000, "the drift is reported: {drift}");
}

#[test]
fn expiry_survives_restart_and_crash_at_the_same_wall_time() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(4, FaultConfig::crashes());
    let mut shard = open(&disk, &clock);
    let lsn = shard.put(b"k", b"v", T0 + 5_000).expect("put");
    settle(&mut shard, lsn);
    drop(shard);
    disk.crash();
    clock.advance_ns(4_000_000_000);
    let mut shard = open(&disk, &clock);
    assert!(
        present(&mut shard, b"k"),
        "acknowledged, and not yet expired"
    );
    assert_eq!(
        shard.get(b"k").expect("get").map(|v| v.expiry_ms),
        Some(T0 + 5_000)
    );
    clock.advance_ns(1_000_000_000);
    assert!(
        !present(&mut shard, b"k"),
        "expired at the same wall time after recovery"
    );
}

#[test]
fn the_sweeper_removes_expired_keys_and_keeps_the_rest() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(5, FaultConfig::none());
    let mut shard = open(&disk, &clock);
    let mut lsn = 0;
    for i in 0..1_000u32 {
        let expiry = if i % 4 == 0 { 0 } else { T0 + 50 };
        lsn = shard
            .put(format!("k{i:04}").as_bytes(), b"value", expiry)
            .expect("put");
    }
    settle(&mut shard, lsn);
    clock.advance_ns(100_000_000);
    for _ in 0..100 {
        clock.advance_ns(100_000_000);
        shard.poll().expect("poll");
    }
    let stats = shard.stats();
    assert_eq!(stats.sweep.expired_swept, 750);
    assert_eq!(stats.tree.key_count, 250, "space came back without reads");
    assert!(stats.sweep.passes >= 1);
    assert!(present(&mut shard, b"k0000"));
    assert_eq!(
        shard.stats().sweep.keys_with_ttl,
        0,
        "the last pass found none left"
    );
}

#[test]
fn the_sweeper_works_under_writes_and_its_deletes_survive_a_crash() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(6, FaultConfig::crashes());
    let mut shard = open(&disk, &clock);
    let mut lsn = 0;
    for round in 0..50u64 {
        for i in 0..40u64 {
            let key = format!("r{round:02}-{i:02}");
            let expiry = clock.wall_ms() + 100;
            lsn = shard.put(key.as_bytes(), b"v", expiry).expect("put");
        }
        clock.advance_ns(50_000_000);
        shard.poll().expect("poll");
    }
    clock.advance_ns(1_000_000_000);
    for _ in 0..200 {
        clock.advance_ns(100_000_000);
        shard.poll().expect("poll");
    }
    let last = shard.stats().wal.next_lsn - 1;
    settle(&mut shard, last);
    assert!(lsn > 0);
    assert_eq!(
        shard.stats().tree.key_count,
        0,
        "every expired key was swept"
    );
    drop(shard);
    disk.crash();
    let mut shard = open(&disk, &clock);
    assert_eq!(
        shard.stats().tree.key_count,
        0,
        "the sweeper's deletes were logged"
    );
    shard.check_integrity().expect("integrity");
}

/// The calibration persisted at each checkpoint keeps a wall clock set back across a restart
/// (clean or crash) from resurrecting keys: time resumes at the last checkpoint's time.
#[test]
fn a_wall_clock_set_back_across_a_restart_resurrects_nothing() {
    for crash in [false, true] {
        let clock = ManualClock::new(T0);
        let disk = SimDisk::new(7, FaultConfig::crashes());
        let mut shard = open(&disk, &clock);
        let lsn = shard.put(b"k", b"v", T0 + 1_000).expect("put");
        let big = vec![9u8; 5_000];
        shard.put(b"big", &big, T0 + 1_000).expect("put large");
        settle(&mut shard, lsn + 1);
        clock.advance_ns(2_000_000_000);
        assert!(!present(&mut shard, b"k") && !present(&mut shard, b"big"));
        if crash {
            shard.checkpoint().expect("checkpoint");
            drop(shard);
            disk.crash();
        } else {
            shard.close().expect("close");
        }
        clock.set_wall_ms(T0 - 3_600_000);
        let mut shard = open(&disk, &clock);
        assert!(
            shard.now_ms() >= T0 + 2_000,
            "time resumes at the persisted floor, not the wall clock: {}",
            shard.now_ms()
        );
        assert!(!present(&mut shard, b"k"), "crash {crash}: no resurrection");
        assert!(
            !present(&mut shard, b"big"),
            "crash {crash}: no resurrection"
        );
        let drift = {
            clock.advance_ns(200_000_000);
            shard.poll().expect("poll");
            shard.stats().sweep.clock_drift_ms
        };
        assert!(
            drift < -3_500_000,
            "the backwards drift is reported: {drift}"
        );
    }
}

/// A forward jump while running expires nothing early, shows as drift, and is not persisted:
/// the checkpoint records the shard's own time, so a restart under the corrected wall clock
/// does not inherit the jump.
#[test]
fn a_forward_jump_is_bounded_reported_and_not_persisted() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(8, FaultConfig::none());
    let mut shard = open(&disk, &clock);
    shard.put(b"k", b"v", T0 + 60_000).expect("put");
    clock.set_wall_ms(T0 + 86_400_000);
    clock.advance_ns(1_000_000_000);
    assert!(present(&mut shard, b"k"), "a jump forward expires nothing");
    assert!(
        shard.now_ms() < T0 + 2_000,
        "time follows the monotonic clock"
    );
    shard.poll().expect("poll");
    assert!(
        shard.stats().sweep.clock_drift_ms > 86_000_000,
        "the jump shows as drift"
    );
    shard.close().expect("close");
    clock.set_wall_ms(T0 + 2_000);
    let mut shard = open(&disk, &clock);
    assert!(
        shard.now_ms() < T0 + 3_000,
        "the persisted floor is the shard's time, not the jumped wall clock: {}",
        shard.now_ms()
    );
    assert!(present(&mut shard, b"k"), "still alive after the restart");
}

/// A large value with a TTL: stored in the value log, acknowledged, recovered after a crash
/// with the same expiry, expired on time, and swept (its value-log bytes become garbage).
#[test]
fn a_large_value_with_a_ttl_expires_on_time_after_a_crash_and_is_swept() {
    let clock = ManualClock::new(T0);
    let disk = SimDisk::new(9, FaultConfig::crashes());
    let mut shard = open(&disk, &clock);
    let big = vec![5u8; 50_000];
    let lsn = shard.put(b"big", &big, T0 + 5_000).expect("put");
    settle(&mut shard, lsn);
    drop(shard);
    disk.crash();
    clock.advance_ns(4_000_000_000);
    let mut shard = open(&disk, &clock);
    let got = shard.get(b"big").expect("get").expect("present");
    assert_eq!((got.bytes.len(), got.expiry_ms), (50_000, T0 + 5_000));
    assert!(shard.stats().vlog.live_bytes > 50_000);
    clock.advance_ns(1_000_000_000);
    assert!(
        !present(&mut shard, b"big"),
        "expired at the same wall time"
    );
    for _ in 0..5 {
        clock.advance_ns(200_000_000);
        shard.poll().expect("poll");
    }
    assert_eq!(shard.stats().sweep.expired_swept, 1);
    assert_eq!(
        shard.stats().vlog.live_bytes,
        0,
        "the swept value is garbage"
    );
    shard.check_integrity().expect("integrity");
}
