//! Corruption and torn-tail tests: damage before the tail is refused with the file and offset
//! named; a torn tail is truncated and counted; nothing is silently dropped.

mod wal_common;

use jube_engine::clock::ManualClock;
use jube_engine::storage::sim::{FaultConfig, SimDisk};
use jube_engine::storage::Vfs;
use jube_engine::wal::record::{parse_name, FileKind, SegmentHeader};
use jube_engine::wal::{Lsn, WalError};
use wal_common::{open, payload, small_config, wal_dir, SimWal};

/// Appends `count` records, flushing every `per_flush`, and waits until all are durable.
fn write_flushes(wal: &mut SimWal, count: u64, per_flush: u64) {
    for i in 0..count {
        let lsn = wal.next_lsn();
        wal.append(1, &payload(lsn, 150)).expect("append");
        if (i + 1) % per_flush == 0 {
            wal.flush_and_wait().expect("flush");
        }
    }
    wal.flush_and_wait().expect("flush");
}

/// Segment names with a valid header (not the preallocated spare), oldest first.
fn segments(disk: &SimDisk) -> Vec<String> {
    let mut dir = wal_dir(disk);
    let names = dir.list().expect("list");
    names
        .into_iter()
        .filter(|n| matches!(parse_name(n), Some(FileKind::Segment(_))))
        .filter(|n| {
            let image = disk.durable_image(&dir.path_of(n)).unwrap_or_default();
            image.len() >= 4096 && SegmentHeader::decode(&image[..4096]).is_ok()
        })
        .collect()
}

/// Byte offset of the record with `lsn` in segment `name` (searching for its header).
fn offset_of(disk: &SimDisk, name: &str, lsn: Lsn) -> u64 {
    let dir = wal_dir(disk);
    let path = dir.path_of(name);
    let image = disk.durable_image(&path).expect("segment exists");
    let needle = lsn.to_le_bytes();
    let found = (4096..image.len() - 32)
        .find(|&at| image[at + 8..at + 16] == needle && image[at + 24] == 1);
    found.expect("record present") as u64
}

fn setup(seed: u64, records: u64, per_flush: u64) -> (SimDisk, ManualClock) {
    let disk = SimDisk::new(seed, FaultConfig::none());
    let clock = ManualClock::new(0);
    let (mut wal, _, _) = open(&disk, &clock, &small_config(), 1).expect("open");
    write_flushes(&mut wal, records, per_flush);
    (disk, clock)
}

fn expect_corrupt(result: Result<impl Sized, WalError>, file: &str, offset: u64) {
    match result.map(|_| ()) {
        Err(WalError::Corrupt {
            path,
            offset: at,
            detail,
        }) => {
            assert!(
                path.ends_with(file),
                "error names {path}, expected {file}: {detail}"
            );
            assert_eq!(at, offset, "error offset ({detail})");
        }
        other => panic!("expected corruption in {file} at {offset}, got {other:?}"),
    }
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_refused() {
    let (disk, clock) = setup(1, 1500, 20);
    let names = segments(&disk);
    assert!(names.len() >= 4);
    let victim = &names[1];
    let at = offset_of(&disk, victim, first_lsn_guess(&disk, victim) + 3);
    let lsn = lsn_at(&disk, victim, at);
    assert!(
        disk.flip_byte(&wal_dir(&disk).path_of(victim), at + 40),
        "flipped"
    );
    let result = open(&disk, &clock, &small_config(), 1);
    expect_corrupt(result, victim, at);
    let text = open(&disk, &clock, &small_config(), 1)
        .err()
        .expect("still refused")
        .to_string();
    assert!(text.contains(&format!("LSN {lsn}")), "{text}");
}

#[test]
fn flipped_byte_mid_way_in_the_last_segment_is_refused() {
    // Later flushes after the damaged record carry a synced-LSN hint covering it.
    let (disk, clock) = setup(2, 200, 10);
    let names = segments(&disk);
    let last = names.last().expect("a segment");
    let first = first_lsn_guess(&disk, last);
    let at = offset_of(&disk, last, first + 2);
    disk.flip_byte(&wal_dir(&disk).path_of(last), at + 33);
    expect_corrupt(open(&disk, &clock, &small_config(), 1), last, at);
}

#[test]
fn missing_middle_segment_is_refused() {
    let (disk, clock) = setup(3, 1500, 20);
    let names = segments(&disk);
    let mut dir = wal_dir(&disk);
    dir.remove(&names[2]).expect("remove");
    dir.sync_dir().expect("sync");
    let err = open(&disk, &clock, &small_config(), 1)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, WalError::Corrupt { .. }), "{text}");
    assert!(
        text.contains(&names[1]) && text.contains("absent"),
        "{text}"
    );
}

#[test]
fn damaged_header_of_a_middle_segment_is_refused() {
    let (disk, clock) = setup(4, 1500, 20);
    let names = segments(&disk);
    disk.flip_byte(&wal_dir(&disk).path_of(&names[2]), 20);
    expect_corrupt(open(&disk, &clock, &small_config(), 1), &names[2], 0);
}

#[test]
fn torn_tail_is_truncated_counted_and_written_over() {
    let mut torn_seen = 0;
    for seed in 0..40 {
        let disk = SimDisk::new(seed, FaultConfig::none());
        let clock = ManualClock::new(0);
        let config = small_config();
        let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
        write_flushes(&mut wal, 100, 10);
        let durable = wal.durable_lsn();
        // A multi-block flush whose write completes but whose sync never does.
        let faults = FaultConfig {
            crash_keep_weight: 0,
            crash_torn_weight: 1,
            crash_garble_weight: 1,
            complete_per_poll_percent: 0,
            ..FaultConfig::none()
        };
        disk.set_faults(faults);
        for _ in 0..40 {
            let lsn = wal.next_lsn();
            wal.append(2, &payload(lsn, 150)).expect("append");
        }
        wal.flush();
        wal.poll().expect("write submitted, still in flight");
        assert_eq!(wal.durable_lsn(), durable);
        drop(wal);
        disk.crash();
        disk.set_faults(FaultConfig::none());
        let (mut wal, replayed, report) =
            open(&disk, &clock, &config, 1).expect("a torn tail is not corruption");
        assert!(
            replayed.len() as u64 >= durable,
            "seed {seed}: durable records lost"
        );
        if report.torn_tail.is_some() {
            torn_seen += 1;
            assert_eq!(wal.stats().torn_tails_truncated, 1);
        }
        // New records go after the last valid one and survive the next recovery.
        let next = wal.next_lsn();
        assert_eq!(next, replayed.len() as u64 + 1);
        wal.append(3, &payload(next, 10))
            .expect("append after recovery");
        wal.flush_and_wait().expect("flush");
        drop(wal);
        let (_, again, report) = open(&disk, &clock, &config, 1).expect("reopen");
        assert_eq!(again.len(), replayed.len() + 1, "seed {seed}");
        assert_eq!(
            report.torn_tail, None,
            "an already-truncated tail is not counted twice"
        );
    }
    assert!(
        torn_seen >= 10,
        "only {torn_seen} of 40 crashes left a detectable torn tail"
    );
}

#[test]
fn damage_to_the_last_flush_alone_reads_as_a_torn_tail() {
    // The documented limit: without a later record naming them durable, the records of the
    // last flush cannot be told from a torn write. They are truncated, logged and counted.
    let (disk, clock) = setup(5, 30, 10);
    let names = segments(&disk);
    let last = names.last().expect("segment");
    let at = offset_of(&disk, last, 28);
    disk.flip_byte(&wal_dir(&disk).path_of(last), at + 40);
    let (wal, replayed, report) = open(&disk, &clock, &small_config(), 1).expect("opens");
    assert_eq!(replayed.len(), 27);
    assert_eq!(report.torn_tail.map(|t| t.offset), Some(at));
    assert_eq!(wal.stats().torn_tails_truncated, 1);
}

fn first_lsn_guess(disk: &SimDisk, name: &str) -> Lsn {
    let image = disk
        .durable_image(&wal_dir(disk).path_of(name))
        .expect("exists");
    u64::from_le_bytes(image[24..32].try_into().expect("8 bytes"))
}

fn lsn_at(disk: &SimDisk, name: &str, at: u64) -> Lsn {
    let image = disk
        .durable_image(&wal_dir(disk).path_of(name))
        .expect("exists");
    let at = at as usize;
    u64::from_le_bytes(image[at + 8..at + 16].try_into().expect("8 bytes"))
}

/// Recovery reads segments through a window (`RECOVERY_WINDOW_BYTES` plus one record), not
/// whole. With a segment several windows long: every record is replayed across window
/// boundaries; a flipped byte two windows in, with later flushes whose hints cover it, is
/// refused at the right offset (the scan for such records crosses windows); the same damage in
/// the last flush alone is a torn tail.
#[test]
fn segments_larger_than_the_recovery_window_recover_and_refuse_alike() {
    use jube_engine::wal::constants::RECOVERY_WINDOW_BYTES;
    let window = RECOVERY_WINDOW_BYTES as u64;
    let mut config = small_config();
    config.segment_size_bytes = 4 * window;
    config.flush_bytes_max = 64 * 1024;
    config.buffer_bytes_max = 256 * 1024;
    // ~3.3 windows of 1,000-byte records, 41 per flush (11 blocks, which do not divide the
    // window): flushes and records straddle window boundaries.
    let count = 3 * window / 900;
    let fill = |seed: u64| {
        let disk = SimDisk::new(seed, FaultConfig::none());
        let clock = ManualClock::new(0);
        let (mut wal, _, _) = open(&disk, &clock, &config, 1).expect("open");
        let mut appended = Vec::new();
        for i in 0..count {
            let lsn = wal.next_lsn();
            let data = payload(lsn, 1_000);
            wal.append(1, &data).expect("append");
            appended.push((lsn, 1u8, data));
            if (i + 1) % 41 == 0 {
                wal.flush_and_wait().expect("flush");
            }
        }
        wal.flush_and_wait().expect("flush");
        drop(wal);
        let name = segments(&disk)
            .pop()
            .expect("one segment holds every record");
        (disk, clock, appended, name)
    };

    let (disk, clock, appended, _) = fill(11);
    let (_, replayed, report) = open(&disk, &clock, &config, 1).expect("reopen");
    assert_eq!(report.torn_tail, None);
    assert_eq!(replayed.len(), appended.len());
    assert!(replayed == appended, "replayed records differ");

    let (disk, clock, _, name) = fill(12);
    let target = (2 * window + window / 3) / 1_032;
    let at = offset_of(&disk, &name, target);
    assert!(at > 2 * window, "record at {at} is past two windows");
    disk.flip_byte(&wal_dir(&disk).path_of(&name), at + 100);
    expect_corrupt(open(&disk, &clock, &config, 1), &name, at);

    let (disk, clock, _, name) = fill(13);
    let at = offset_of(&disk, &name, count - 2);
    disk.flip_byte(&wal_dir(&disk).path_of(&name), at + 100);
    let (_, replayed, report) = open(&disk, &clock, &config, 1).expect("a torn tail");
    assert_eq!(replayed.len() as u64, count - 3);
    assert_eq!(report.torn_tail.map(|t| t.offset), Some(at));
}
