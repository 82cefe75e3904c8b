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
