//! WAL behaviour without crashes: round trips across segment rollovers, release and recycling,
//! backpressure, sync policies, group commit, failure handling (EIO poisons, ENOSPC refuses).

mod wal_common;

use jube_engine::clock::ManualClock;
use jube_engine::storage::sim::{FaultConfig, SimDisk};
use jube_engine::storage::Vfs;
use jube_engine::wal::{Lsn, SyncMode, SyncPolicy, WalError};
use wal_common::{open, payload, small_config, wal_dir, Rec};

fn append_all(wal: &mut wal_common::SimWal, from: Lsn, count: u64, len: usize) -> Vec<Rec> {
    let mut appended = Vec::new();
    for lsn in from..from + count {
        let data = payload(lsn, len);
        loop {
            match wal.append(1 + (lsn % 5) as u8, &data) {
                Ok(got) => {
                    assert_eq!(got, lsn);
                    break;
                }
                Err(WalError::Busy { .. }) => wal.poll().expect("poll"),
                Err(e) => panic!("append failed: {e}"),
            }
        }
        appended.push((lsn, 1 + (lsn % 5) as u8, data));
        wal.poll().expect("poll");
    }
    appended
}

#[test]
fn records_survive_reopen_across_many_segments() {
    let disk = SimDisk::new(1, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, replayed, _) = open(&disk, &clock, &config, 1).expect("open empty");
    assert!(replayed.is_empty());
    let appended = append_all(&mut wal, 1, 3000, 100);
    assert_eq!(wal.flush_and_wait().expect("flush"), 3000);
    assert_eq!(wal.durable_lsn(), 3000);
    let stats = wal.stats();
    assert!(
        stats.rollovers_count >= 5,
        "expected rollovers, got {stats:?}"
    );
    drop(wal);
    let (wal, replayed, report) = open(&disk, &clock, &config, 1).expect("reopen");
    assert_eq!(replayed, appended);
    assert_eq!(report.torn_tail, None);
    assert_eq!(wal.next_lsn(), 3001);
    drop(wal);
    // Replaying from the middle returns the suffix.
    let (_, replayed, _) = open(&disk, &clock, &config, 1234).expect("reopen from 1234");
    assert_eq!(replayed, appended[1233..].to_vec());
}

#[test]
fn release_recycles_segments_and_recovery_still_works() {
    let disk = SimDisk::new(2, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    let mut appended = append_all(&mut wal, 1, 2000, 200);
    wal.flush_and_wait().expect("flush");
    let before = wal.stats().segments_count;
    let released = wal.release_below(1500).expect("release");
    assert!(released >= 2, "released {released} of {before}");
    assert_eq!(wal.stats().segments_count, before - released as u64);
    appended.extend(append_all(&mut wal, 2001, 2000, 200));
    wal.flush_and_wait().expect("flush");
    let stats = wal.stats();
    assert!(
        stats.segments_recycled >= 1,
        "rollover reused a released file: {stats:?}"
    );
    drop(wal);
    let (_, replayed, _) = open(&disk, &clock, &config, 1500).expect("reopen");
    assert_eq!(replayed, appended[1499..].to_vec());
    let refused = open(&disk, &clock, &config, 1);
    assert!(
        matches!(refused, Err(WalError::Corrupt { .. })),
        "released records cannot be replayed"
    );
}

#[test]
fn a_full_buffer_answers_busy_and_drains() {
    let disk = SimDisk::new(3, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    let mut count = 0;
    let err = loop {
        match wal.append(1, &[7u8; 500]) {
            Ok(_) => count += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, WalError::Busy { .. }), "{err}");
    assert!(
        count * 532 <= config.buffer_bytes_max,
        "buffer bound exceeded: {count} records"
    );
    assert_eq!(wal.stats().busy_rejections, 1);
    wal.flush_and_wait().expect("drain");
    wal.append(1, &[7u8; 500]).expect("room again");
    let too_big = wal.append(1, &vec![0u8; config.flush_bytes_max]);
    assert!(matches!(too_big, Err(WalError::RecordTooLarge { .. })));
}

#[test]
fn always_policy_acks_only_durable_records_with_far_fewer_syncs() {
    // 1,000 writers in flight: each appends, and the group commit acknowledges them in batches.
    let disk = SimDisk::new(
        4,
        FaultConfig {
            complete_per_poll_percent: 30,
            ..FaultConfig::none()
        },
    );
    let clock = ManualClock::new(0);
    let mut config = small_config();
    config.segment_size_bytes = 4 * 1024 * 1024;
    config.flush_bytes_max = 256 * 1024;
    config.buffer_bytes_max = 1024 * 1024;
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    for lsn in 1..=1000u64 {
        assert_eq!(wal.append(1, &payload(lsn, 100)).expect("append"), lsn);
        assert!(wal.ack_lsn() < lsn, "acknowledged before durable");
        if lsn % 10 == 0 {
            wal.poll().expect("poll");
        }
    }
    while wal.ack_lsn() < 1000 {
        wal.poll().expect("poll");
    }
    let stats = wal.stats();
    assert_eq!(stats.durable_lsn, 1000);
    let syncs = disk.stats().syncs;
    assert!(
        syncs * 10 <= 1000,
        "{syncs} syncs for 1000 records: group commit is not batching"
    );
    assert_eq!(stats.records_per_commit.sum, 1000);
    assert!(stats.records_per_commit.mean() >= 10.0, "{stats:?}");
}

#[test]
fn dsync_mode_uses_one_write_per_flush() {
    let disk = SimDisk::new(5, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = small_config();
    config.sync_mode = SyncMode::WriteDsync;
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    let before = (disk.stats(), wal.stats());
    let appended = append_all(&mut wal, 1, 500, 100);
    wal.flush_and_wait().expect("flush");
    let after = (disk.stats(), wal.stats());
    let flushes = after.1.flushes_count - before.1.flushes_count;
    assert_eq!(
        after.0.dsync_writes - before.0.dsync_writes,
        flushes,
        "one RWF_DSYNC write per flush"
    );
    let preallocations = after.1.segments_created - before.1.segments_created;
    let syncs = after.0.syncs - before.0.syncs;
    // The spare started while opening may finish (and sync) inside the window.
    assert!(
        syncs <= preallocations + 1,
        "{syncs} syncs for {preallocations} preallocations: data synced separately"
    );
    drop(wal);
    let (_, replayed, _) = open(&disk, &clock, &config, 1).expect("reopen");
    assert_eq!(replayed, appended);
}

#[test]
fn periodic_policy_acks_at_once_and_syncs_within_the_interval() {
    let disk = SimDisk::new(6, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = small_config();
    config.sync_policy = SyncPolicy::Periodic { interval_ms: 10 };
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    let lsn = wal.append(1, b"x").expect("append");
    assert_eq!(wal.ack_lsn(), lsn, "periodic acknowledges at once");
    wal.poll().expect("poll");
    assert_eq!(wal.durable_lsn(), 0, "not synced before the interval");
    clock.advance_ns(9_000_000);
    wal.poll().expect("poll");
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(wal.flush_deadline_ns(), Some(10_000_000));
    clock.advance_ns(1_000_000);
    wal.poll().expect("poll");
    wal.poll().expect("poll");
    assert_eq!(wal.durable_lsn(), lsn, "synced once the interval elapsed");
}

#[test]
fn periodic_policy_waits_its_interval_after_the_flush_gate_opens() {
    // The shard gates records behind value-log flushes; opening the gate must not force a WAL
    // sync under `Periodic` (it used to: a gated batch was closed, and closed batches flushed).
    let disk = SimDisk::new(16, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = small_config();
    config.sync_policy = SyncPolicy::Periodic { interval_ms: 10 };
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    wal.append(1, b"before").expect("append");
    wal.set_flush_gate(0);
    let gated = wal.append(3, b"points into the value log").expect("append");
    wal.poll().expect("poll");
    assert_eq!(wal.stats().flushes_count, 0, "held by the gate");
    for step in 1..=9 {
        clock.advance_ns(1_000_000);
        wal.set_flush_gate(Lsn::MAX);
        wal.append(1, &[step]).expect("append");
        wal.poll().expect("poll");
        assert_eq!(wal.stats().flushes_count, 0, "no flush before the interval");
    }
    clock.advance_ns(1_000_000);
    for _ in 0..8 {
        wal.poll().expect("poll");
    }
    assert_eq!(
        wal.durable_lsn(),
        gated + 9,
        "all durable once the interval elapsed"
    );
    // The gate split the records into the batch it held and the one after it: two flushes,
    // not one per gate change.
    assert_eq!(wal.stats().flushes_count, 2);
}

#[test]
fn max_delay_holds_a_flush_until_the_oldest_record_waited() {
    let disk = SimDisk::new(7, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = small_config();
    config.flush_delay_ns_max = 500_000;
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    wal.append(1, b"a").expect("append");
    clock.advance_ns(400_000);
    wal.append(1, b"b").expect("append");
    wal.poll().expect("poll");
    assert_eq!(wal.stats().flushes_count, 0);
    clock.advance_ns(100_000);
    wal.poll().expect("poll");
    wal.poll().expect("poll");
    assert_eq!(wal.durable_lsn(), 2, "both records in one flush");
    assert_eq!(wal.stats().flushes_count, 1);
}

#[test]
fn a_failed_write_poisons_the_wal() {
    let disk = SimDisk::new(8, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    append_all(&mut wal, 1, 10, 100);
    wal.flush_and_wait().expect("flush");
    disk.set_faults(FaultConfig {
        write_eio_ppm: 1_000_000,
        ..FaultConfig::none()
    });
    wal.append(1, b"doomed").expect("buffered");
    let err = wal.flush_and_wait().expect_err("the write fails");
    assert!(matches!(err, WalError::Poisoned(_)), "{err}");
    assert!(
        err.to_string().contains("wal-") && err.to_string().contains("offset"),
        "{err}"
    );
    assert_eq!(wal.durable_lsn(), 10);
    disk.set_faults(FaultConfig::none());
    assert!(matches!(wal.append(1, b"more"), Err(WalError::Poisoned(_))));
    assert!(matches!(wal.poll(), Err(WalError::Poisoned(_))));
    drop(wal);
    let (_, replayed, _) = open(&disk, &clock, &config, 1).expect("reopen recovers");
    // The failed write may still have landed whole in the live image (no crash happened), so
    // record 11 may or may not be there; the 10 durable ones must.
    assert!(
        matches!(replayed.len(), 10 | 11),
        "{} records",
        replayed.len()
    );
}

#[test]
fn a_failed_sync_poisons_the_wal() {
    // Both ways a flush is made durable: the SyncData after a write, and RWF_DSYNC's own flush.
    for sync_mode in [SyncMode::WriteThenSync, SyncMode::WriteDsync] {
        let disk = SimDisk::new(9, FaultConfig::none());
        let clock = ManualClock::new(0);
        let mut config = small_config();
        config.sync_mode = sync_mode;
        let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
        disk.set_faults(FaultConfig {
            sync_eio_ppm: 1_000_000,
            ..FaultConfig::none()
        });
        wal.append(1, b"x").expect("buffered");
        assert!(
            matches!(wal.flush_and_wait(), Err(WalError::Poisoned(_))),
            "{sync_mode:?}"
        );
        assert_eq!(wal.durable_lsn(), 0, "{sync_mode:?}");
        assert!(wal.poisoned().is_some(), "{sync_mode:?}");
        assert_eq!(disk.stats().injected_sync_errors, 1, "{sync_mode:?}");
    }
}

#[test]
fn no_space_for_the_next_segment_refuses_appends_until_release() {
    let disk = SimDisk::new(10, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
    wal.flush_and_wait().expect("spare ready");
    // Room for what exists now and nothing more.
    let used: u64 = wal.stats().segments_bytes + config.segment_size_bytes;
    disk.set_faults(FaultConfig {
        capacity_bytes: used,
        ..FaultConfig::none()
    });
    let mut lsn = 1;
    let err = loop {
        match wal.append(1, &payload(lsn, 300)) {
            Ok(_) => lsn += 1,
            Err(WalError::Busy { .. }) => {}
            Err(e) => break e,
        }
        if let Err(e) = wal.poll() {
            break e;
        }
    };
    assert!(matches!(err, WalError::NoSpace(_)), "{err}");
    assert!(err.to_string().contains("space"), "{err}");
    assert!(
        wal.poisoned().is_none(),
        "ENOSPC on preallocation does not poison"
    );
    let durable = wal.flush_and_wait().err();
    assert!(
        matches!(durable, None | Some(WalError::NoSpace(_))),
        "{durable:?}"
    );
    let released = wal.release_below(wal.durable_lsn()).expect("release");
    assert!(released >= 1);
    wal.append(1, b"after release")
        .expect("appends resume once space is freed");
    let _ = wal_dir(&disk).list();
}

/// Flush buffers are reused: a small flush after a large one must not carry the large one's
/// records in its padding, and a segment header built in a reused buffer is zero past its used
/// bytes. Checked on the durable bytes of every segment: after the records of each flush, the
/// rest of its last block is zero, and recovery replays exactly what was appended.
#[test]
fn reused_flush_buffers_leave_no_stale_bytes_behind() {
    use jube_engine::storage::IO_ALIGN;
    use jube_engine::wal::constants::{SEGMENT_HEADER_BYTES, SEGMENT_HEADER_USED_BYTES};
    use jube_engine::wal::record::{decode_record, segment_name};

    let disk = SimDisk::new(9, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = small_config();
    let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open empty");
    let mut appended = Vec::new();
    let mut lsn = 1;
    // Alternate full flushes with one-record flushes, across several rollovers.
    for round in 0..40 {
        let (count, len) = if round % 2 == 0 { (60, 100) } else { (1, 8) };
        appended.extend(append_all(&mut wal, lsn, count, len));
        lsn += count;
        wal.flush_and_wait().expect("flush");
    }
    let last_seq = wal.stats().segments_created + wal.stats().rollovers_count;
    assert!(wal.stats().rollovers_count >= 2, "{:?}", wal.stats());
    drop(wal);

    let dir = wal_dir(&disk);
    let payload_max = config.payload_bytes_max();
    let mut segments_checked = 0;
    for seq in 1..=last_seq + 1 {
        let Some(image) = disk.durable_image(&dir.path_of(&segment_name(seq))) else {
            continue;
        };
        segments_checked += 1;
        assert!(
            image[SEGMENT_HEADER_USED_BYTES..SEGMENT_HEADER_BYTES]
                .iter()
                .all(|&b| b == 0),
            "segment {seq}: header block not zero past its used bytes"
        );
        let mut at = SEGMENT_HEADER_BYTES;
        while at < image.len() {
            match decode_record(&image, at, seq, payload_max) {
                Some(record) => at += record.encoded_len(),
                None => {
                    let block_end = at.next_multiple_of(IO_ALIGN).min(image.len());
                    assert!(
                        image[at..block_end].iter().all(|&b| b == 0),
                        "segment {seq}: stale bytes in the padding at {at}"
                    );
                    if at == block_end {
                        // A block that starts with no record: the end of what was written.
                        assert!(image[at..].iter().all(|&b| b == 0), "segment {seq} at {at}");
                        break;
                    }
                    at = block_end;
                }
            }
        }
    }
    assert!(segments_checked >= 3, "checked {segments_checked} segments");
    let (_, replayed, report) = open(&disk, &clock, &config, 1).expect("reopen");
    assert_eq!(report.torn_tail, None);
    assert_eq!(replayed, appended);
}
