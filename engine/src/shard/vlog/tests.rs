//! The value log alone on a simulated disk: append, flush, read back from memory and from disk,
//! the durability gate, and a corrupted record reported with its file and offset.

use super::*;
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};

fn open(disk: &SimDisk) -> ValueLog<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let config = VlogConfig {
        segment_bytes: 64 * 1024,
        ..VlogConfig::default()
    };
    let (log, damaged) = ValueLog::open(vfs, config, 0, SyncMode::WriteThenSync, 0).expect("open");
    assert!(damaged.is_empty());
    log
}

#[test]
fn values_read_back_from_memory_then_disk_and_the_gate_follows_durability() {
    let disk = SimDisk::new(1, FaultConfig::none());
    let mut log = open(&disk);
    assert_eq!(log.durable_gate(), Lsn::MAX);
    let value = vec![0xab; 10_000];
    let pointer = log.append(b"key", &value, 7).expect("append");
    assert_eq!(log.durable_gate(), 6, "record 7 waits for its value");
    assert_eq!(log.read(b"key", &pointer).expect("from memory"), value);
    log.flush_and_wait().expect("flush");
    assert_eq!(log.durable_gate(), Lsn::MAX);
    assert_eq!(log.read(b"key", &pointer).expect("from disk"), value);
    assert_eq!(log.stats().reads, 1);
    let error = log
        .read(b"other", &pointer)
        .expect_err("another key's pointer");
    assert!(matches!(error, VlogError::Corrupt { .. }), "{error}");
}

#[test]
fn segments_roll_over_and_a_flipped_byte_is_reported_with_file_and_offset() {
    let disk = SimDisk::new(2, FaultConfig::none());
    let mut log = open(&disk);
    let mut pointers = Vec::new();
    for i in 0..20u64 {
        let value = vec![i as u8 + 1; 9_000];
        pointers.push(log.append(b"k", &value, i + 1).expect("append"));
        log.flush_and_wait().expect("flush");
    }
    assert!(log.stats().segments >= 2, "64 KiB segments rolled over");
    let victim = pointers[3];
    let path = format!("shard-000/{}", format::segment_name(victim.segment));
    assert!(disk.flip_byte(&path, victim.offset + 100));
    let error = log.read(b"k", &victim).expect_err("corrupt");
    let message = error.to_string();
    assert!(
        message.contains(&format::segment_name(victim.segment))
            && message.contains(&victim.offset.to_string()),
        "names file and offset: {message}"
    );
    assert_eq!(
        log.read(b"k", &pointers[4]).expect("others intact"),
        vec![5; 9_000]
    );
}

fn open_uncached(disk: &SimDisk) -> ValueLog<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let config = VlogConfig {
        segment_bytes: 64 * 1024,
        cache_bytes: 0,
        ..VlogConfig::default()
    };
    let (log, _) = ValueLog::open(vfs, config, 0, SyncMode::WriteThenSync, 0).expect("open");
    log
}

#[test]
fn a_reused_flush_buffer_writes_zero_padding() {
    let disk = SimDisk::new(3, FaultConfig::none());
    let mut log = open_uncached(&disk);
    // A long flush leaves its bytes in the kept buffer; a short one after it reuses that buffer.
    // (The first flush, with the segment header, only opens the segment.)
    log.append(b"k", &[0x11; 2_000], 1).expect("append");
    log.flush_and_wait().expect("flush");
    log.append(b"k", &[0xff; 20_000], 2).expect("append");
    log.flush_and_wait().expect("flush");
    let second = log.append(b"k", &[0xab; 2_000], 3).expect("append");
    log.flush_and_wait().expect("flush");
    let image = disk
        .durable_image("shard-000/vlog-0000000000000001")
        .expect("segment");
    let end = second.offset as usize + 16 + 1 + 2_000;
    let block_end = end.div_ceil(4096) * 4096;
    assert_eq!(image.len(), block_end);
    assert!(
        image[end..].iter().all(|&b| b == 0),
        "the padding after the last record is zero, not an earlier flush's bytes"
    );
    let (records, _, ended) = log.scan_segment(1, 0).expect("scan");
    assert_eq!((records.len(), ended), (3, true));
}
