//! Asynchronous GETs ([`Shard::start_get`], [`Shard::take_gets`]) on the simulated disk.
//!
//! Strategy: reads complete in a seeded random order (`complete_per_poll_percent` below 100),
//! or not at all until the test lets them (0), while puts, overwrites, deletes, garbage
//! collection and checkpoints (which delete segments) run between a GET's start and its end.
//! Invariants checked: every ticket is answered exactly once; a finished GET returns exactly
//! the value the key held when it started (its bytes are a per-write pattern, so a stale,
//! misplaced or damaged byte shows); a damaged record is an error naming its file and offset;
//! a failure, a close or a crash with reads in flight neither panics nor loses a ticket.

use super::*;
use crate::clock::ManualClock;
use crate::constants::VLOG_READS_IN_FLIGHT_MAX;
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};
use crate::storage::Vfs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

fn open(disk: &SimDisk, config: &ShardConfig, clock: &ManualClock) -> Shard<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Shard::open(vfs, config.clone(), clock).expect("open").0
}

/// Small segments, eager GC, no value cache: every GET of a written value reads the disk.
fn config() -> ShardConfig {
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 1 << 20;
    config.wal.segment_size_bytes = 1 << 20;
    config.wal.flush_bytes_max = 256 << 10;
    config.wal.buffer_bytes_max = 512 << 10;
    config.vlog.segment_bytes = 32 * 1024;
    config.vlog.gc_interval_ms = 0;
    config.vlog.gc_slice_bytes = 16 * 1024;
    config.vlog.gc_garbage_percent = 25;
    config.vlog.cache_bytes = 0;
    config.checkpoint_interval_ms = 1_000;
    config
}

/// A value whose every byte depends on `seed` and its position.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7919)) as u8
        })
        .collect()
}

fn settle(shard: &mut Shard<SimVfs>) {
    while shard.acked_lsn() < shard.last_lsn() || shard.io_in_flight() {
        shard.poll().expect("poll");
    }
}

fn value_of(finished: &FinishedGet) -> Option<Vec<u8>> {
    let answer = finished.1.as_ref().expect("a finished GET");
    answer.as_ref().map(|v| v.bytes.clone())
}

#[test]
fn async_gets_return_the_value_held_at_their_start_despite_writes_and_gc() {
    for seed in 0..4u64 {
        let mut faults = FaultConfig::none();
        faults.complete_per_poll_percent = 30;
        let disk = SimDisk::new(seed, faults);
        let clock = ManualClock::new(0);
        let mut shard = open(&disk, &config(), &clock);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut expected: BTreeMap<GetTicket, Option<Vec<u8>>> = BTreeMap::new();
        let (mut pending, mut done, mut write) = (0u64, 0u64, 0u32);
        let mut finished = Vec::new();
        for step in 0..3_000u32 {
            let key = rng.gen_range(0..24u32);
            let name = format!("key{key:02}").into_bytes();
            match rng.gen_range(0..10) {
                0..=4 => match shard.start_get(&name).expect("start_get") {
                    GetStart::Done(value) => {
                        done += 1;
                        assert_eq!(value.map(|v| v.bytes), model.get(&key).cloned());
                    }
                    GetStart::Pending(ticket) => {
                        pending += 1;
                        expected.insert(ticket, model.get(&key).cloned());
                    }
                },
                5..=7 => {
                    write += 1;
                    // Mostly value-log values, sometimes inline ones.
                    let len = if rng.gen_bool(0.8) { 3_000 } else { 100 };
                    let value = pattern(len + (write as usize % 50), write);
                    match shard.put(&name, &value, 0) {
                        Ok(_) => {
                            model.insert(key, value);
                        }
                        Err(ShardError::Busy { .. }) => {}
                        Err(other) => panic!("put: {other}"),
                    }
                }
                8 => {
                    shard.delete(&name).expect("delete");
                    model.remove(&key);
                }
                _ => {
                    if step % 500 == 9 {
                        shard.request_checkpoint();
                    }
                }
            }
            clock.advance_ns(200_000);
            shard.poll().expect("poll");
            shard.take_gets(&mut finished);
            for got in finished.drain(..) {
                let want = expected.remove(&got.0).expect("each ticket answered once");
                assert!(value_of(&got) == want, "seed {seed}: {:?} wrong", got.0);
            }
        }
        while !expected.is_empty() {
            shard.poll().expect("poll");
            shard.take_gets(&mut finished);
            for got in finished.drain(..) {
                let want = expected.remove(&got.0).expect("each ticket answered once");
                assert!(value_of(&got) == want, "seed {seed}: {:?} wrong", got.0);
            }
        }
        assert_eq!(shard.gets_pending(), 0);
        let stats = shard.stats().vlog;
        assert!(pending > 100 && done > 100, "seed {seed}: {pending} {done}");
        assert!(
            stats.gc_runs > 0 && stats.segments_deleted > 0,
            "seed {seed}: GC and deletion ran between starts and ends: {stats:?}"
        );
        assert!(shard.vlog.cached_segments_missing().is_empty());
        shard.check_integrity().expect("integrity");
    }
}

/// Puts `count` value-log values (one flush: contiguous records in segment 1), makes them durable, and stops completing I/O in `poll`.
fn written(count: u32, seed: u64) -> (SimDisk, ManualClock, Shard<SimVfs>) {
    let disk = SimDisk::new(seed, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut shard = open(&disk, &config(), &clock);
    for i in 0..count {
        let key = format!("key{i:03}").into_bytes();
        shard.put(&key, &pattern(3_000, i), 0).expect("put");
    }
    settle(&mut shard);
    let mut faults = FaultConfig::none();
    faults.complete_per_poll_percent = 0;
    disk.set_faults(faults);
    (disk, clock, shard)
}

fn start_pending(shard: &mut Shard<SimVfs>, key: &[u8]) -> GetTicket {
    match shard.start_get(key).expect("start_get") {
        GetStart::Pending(ticket) => ticket,
        GetStart::Done(_) => panic!("{key:?} answered at once"),
    }
}

#[test]
fn a_retired_segment_is_deleted_only_after_its_reads_finish() {
    let (disk, clock, mut shard) = written(1, 10);
    let ticket = start_pending(&mut shard, b"key000");
    // Overwrites move the key out of segment 1; GC retires it, a checkpoint would delete it.
    for i in 0..12 {
        shard
            .put(b"key000", &pattern(3_000, 100 + i), 0)
            .expect("put");
        shard.checkpoint().expect("checkpoint");
    }
    clock.advance_ns(10_000_000);
    shard.poll().expect("poll");
    shard.checkpoint().expect("checkpoint");
    let name = "vlog-0000000000000001";
    let mut vfs = disk.root().subdir("shard-000").expect("subdir");
    assert!(vfs.exists(name), "pinned by the read in flight");
    assert_eq!(shard.stats().vlog.segments_deleted, 0);
    disk.set_faults(FaultConfig::none());
    let mut finished = Vec::new();
    while finished.is_empty() {
        shard.poll().expect("poll");
        shard.take_gets(&mut finished);
    }
    assert_eq!(finished[0].0, ticket);
    assert_eq!(value_of(&finished[0]), Some(pattern(3_000, 0)));
    assert!(!vfs.exists(name), "deleted once its last read finished");
    assert!(shard.stats().vlog.segments_deleted > 0);
}

#[test]
fn a_corrupt_record_read_asynchronously_is_an_error_naming_file_and_offset() {
    let (disk, _clock, mut shard) = written(3, 11);
    let ticket = start_pending(&mut shard, b"key001");
    // Record 1 starts after the header block and one record of 16 + 6 + 3000 bytes.
    let offset = 4096 + (16 + 6 + 3_000);
    assert!(disk.flip_byte("shard-000/vlog-0000000000000001", offset + 500));
    disk.set_faults(FaultConfig::none());
    let mut finished = Vec::new();
    while finished.is_empty() {
        let _ = shard.poll();
        shard.take_gets(&mut finished);
    }
    assert_eq!(finished[0].0, ticket);
    let message = finished[0].1.as_ref().expect_err("not served").to_string();
    assert!(
        message.contains("vlog-0000000000000001") && message.contains(&offset.to_string()),
        "names the file and the record's offset: {message}"
    );
    assert!(shard.start_get(b"key000").is_err(), "the shard has failed");
}

#[test]
fn a_failure_answers_every_read_in_flight_with_the_error() {
    let (disk, _clock, mut shard) = written(5, 12);
    let tickets: Vec<GetTicket> = (0..5)
        .map(|i| start_pending(&mut shard, format!("key{i:03}").as_bytes()))
        .collect();
    let mut faults = FaultConfig::none();
    faults.complete_per_poll_percent = 0;
    faults.write_eio_ppm = 1_000_000;
    disk.set_faults(faults);
    shard.put(b"other", &pattern(3_000, 9), 0).expect("put");
    assert!(shard.checkpoint().is_err(), "the write fails");
    let mut finished = Vec::new();
    shard.take_gets(&mut finished);
    let mut answered: Vec<GetTicket> = finished.iter().map(|f| f.0).collect();
    answered.sort();
    assert_eq!(answered, tickets, "every ticket answered");
    assert!(finished
        .iter()
        .all(|f| matches!(f.1, Err(ShardError::Failed { .. }))));
    assert_eq!(shard.gets_pending(), 0);
}

#[test]
fn close_or_crash_with_reads_in_flight_loses_nothing() {
    for crash in [false, true] {
        let (disk, clock, mut shard) = written(6, 13);
        for i in 0..6 {
            start_pending(&mut shard, format!("key{i:03}").as_bytes());
        }
        if crash {
            drop(shard);
            disk.crash();
        } else {
            disk.set_faults(FaultConfig::none());
            shard.close().expect("close with reads in flight");
        }
        disk.set_faults(FaultConfig::none());
        let mut shard = open(&disk, &config(), &clock);
        for i in 0..6 {
            let got = shard.get(format!("key{i:03}").as_bytes()).expect("get");
            assert_eq!(got.map(|v| v.bytes), Some(pattern(3_000, i)));
        }
        shard.check_integrity().expect("integrity");
    }
}

#[test]
fn past_the_limit_reads_are_synchronous() {
    let count = VLOG_READS_IN_FLIGHT_MAX as u32 + 10;
    let (disk, _clock, mut shard) = written(count, 14);
    let mut pending = 0;
    for i in 0..count {
        match shard
            .start_get(format!("key{i:03}").as_bytes())
            .expect("get")
        {
            GetStart::Pending(_) => pending += 1,
            GetStart::Done(value) => {
                assert!(i >= VLOG_READS_IN_FLIGHT_MAX as u32, "{i} under the limit");
                assert_eq!(value.map(|v| v.bytes), Some(pattern(3_000, i)));
            }
        }
    }
    assert_eq!(pending, VLOG_READS_IN_FLIGHT_MAX);
    let stats = shard.stats().vlog;
    assert_eq!(stats.reads_async, VLOG_READS_IN_FLIGHT_MAX as u64);
    assert_eq!(stats.reads_async_refused, 10);
    disk.set_faults(FaultConfig::none());
    let mut finished = Vec::new();
    while shard.gets_pending() > 0 {
        shard.poll().expect("poll");
        shard.take_gets(&mut finished);
    }
    assert_eq!(finished.len(), VLOG_READS_IN_FLIGHT_MAX);
    for got in &finished {
        let index = u32::try_from(got.0 .0).expect("ticket");
        assert_eq!(value_of(got), Some(pattern(3_000, index)));
    }
}
