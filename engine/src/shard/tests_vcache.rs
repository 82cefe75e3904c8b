//! The value cache through the shard: reads answered from memory return the bytes the key holds
//! now (after overwrites, GC moves, segment deletion and reopening), and a damaged record that
//! is not cached is still reported, never masked.

use super::*;
use crate::clock::ManualClock;
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};

fn open(disk: &SimDisk, config: &ShardConfig, clock: &ManualClock) -> Shard<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Shard::open(vfs, config.clone(), clock).expect("open").0
}

fn settle(shard: &mut Shard<SimVfs>) {
    let last = shard.last_lsn();
    while shard.acked_lsn() < last {
        shard.poll().expect("poll");
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn get(shard: &mut Shard<SimVfs>, key: &[u8]) -> Option<Vec<u8>> {
    shard.get(key).expect("get").map(|value| value.bytes)
}

#[test]
fn cached_reads_follow_overwrites_and_start_empty_after_reopen() {
    let disk = SimDisk::new(11, FaultConfig::none());
    let clock = ManualClock::new(0);
    let config = ShardConfig::new(0);
    let mut shard = open(&disk, &config, &clock);
    shard.put(b"k", &pattern(5_000, 1), 0).expect("put");
    settle(&mut shard);
    assert_eq!(get(&mut shard, b"k"), Some(pattern(5_000, 1)));
    let cache = shard.stats().vlog.cache;
    assert_eq!((cache.hits, cache.misses), (1, 0), "filled by the put");
    shard.put(b"k", &pattern(7_000, 2), 0).expect("overwrite");
    settle(&mut shard);
    assert_eq!(get(&mut shard, b"k"), Some(pattern(7_000, 2)));
    shard.delete(b"k").expect("delete");
    assert_eq!(
        get(&mut shard, b"k"),
        None,
        "deleted, whatever the cache holds"
    );
    shard.put(b"k", &pattern(6_000, 3), 0).expect("put again");
    let stats = shard.stats().vlog;
    assert_eq!(stats.reads, 0, "nothing went to the disk");
    assert_eq!(stats.cache.entries, 3, "old values stay until evicted");
    shard.close().expect("close");

    let mut shard = open(&disk, &config, &clock);
    assert_eq!(shard.stats().vlog.cache.entries, 0);
    assert_eq!(get(&mut shard, b"k"), Some(pattern(6_000, 3)));
    assert_eq!(get(&mut shard, b"k"), Some(pattern(6_000, 3)));
    let stats = shard.stats().vlog;
    assert_eq!(
        (stats.cache.misses, stats.cache.hits, stats.reads),
        (1, 1, 1)
    );
    shard.check_integrity().expect("integrity");
}

#[test]
fn a_damaged_record_is_reported_once_evicted_from_a_small_cache() {
    let disk = SimDisk::new(12, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = ShardConfig::new(0);
    // Room for about nine 5,000-byte values (each may cost an eighth of the cache).
    config.vlog.cache_bytes = 48 << 10;
    let mut shard = open(&disk, &config, &clock);
    for i in 0..20u8 {
        shard.put(&[b'k', i], &pattern(5_000, i), 0).expect("put");
    }
    settle(&mut shard);
    let stats = shard.stats().vlog.cache;
    assert!(stats.evictions >= 10, "{stats:?}");
    assert!(stats.bytes <= 48 << 10, "{stats:?}");
    // The last value is cached; the first was evicted. Damage both records on the disk.
    let record = 16 + 2 + 5_000;
    let path = "shard-000/vlog-0000000000000001";
    assert!(disk.flip_byte(path, (4096 + 19 * record + 100) as u64));
    assert!(disk.flip_byte(path, (4096 + 100) as u64));
    assert_eq!(
        get(&mut shard, &[b'k', 19]),
        Some(pattern(5_000, 19)),
        "the cached copy was verified when it was put"
    );
    let error = shard
        .get(b"k\x00")
        .expect_err("the damaged record is not served");
    let message = error.to_string();
    assert!(
        message.contains("vlog-0000000000000001") && message.contains("4096"),
        "names the file and the offset: {message}"
    );
}

#[test]
fn gc_moves_and_segment_deletion_keep_cached_reads_right() {
    let disk = SimDisk::new(13, FaultConfig::none());
    let clock = ManualClock::new(0);
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 1 << 20;
    config.vlog.segment_bytes = 128 * 1024;
    config.vlog.gc_interval_ms = 0;
    config.vlog.gc_slice_bytes = 64 * 1024;
    config.vlog.gc_garbage_percent = 25;
    config.vlog.cache_bytes = 256 << 10;
    let mut shard = open(&disk, &config, &clock);
    let mut model = std::collections::BTreeMap::new();
    // 60 keys written once, then the even ones overwritten: GC must move the odd ones, and
    // reads of every key run between the writes so the cache holds old and new positions.
    for round in 0..30u8 {
        for key in 0..60u8 {
            if round > 0 && key % 2 == 1 {
                continue;
            }
            let value = pattern(3_000, round.wrapping_mul(61) ^ key);
            shard.put(&[b'k', key], &value, 0).expect("put");
            model.insert(vec![b'k', key], value);
            clock.advance_ns(100_000);
            shard.poll().expect("poll");
            let probe = vec![b'k', key.wrapping_mul(7) % 60];
            if let Some(expected) = model.get(&probe) {
                assert_eq!(get(&mut shard, &probe).as_ref(), Some(expected));
            }
        }
    }
    for _ in 0..100 {
        clock.advance_ns(1_000_000);
        shard.poll().expect("poll");
    }
    shard.checkpoint().expect("checkpoint");
    let stats = shard.stats().vlog;
    assert!(
        stats.gc_bytes_moved > 0 && stats.segments_deleted > 0,
        "{stats:?}"
    );
    assert!(stats.cache.hits > 0, "{stats:?}");
    assert_eq!(
        shard.vlog.cached_segments_missing(),
        Vec::<u64>::new(),
        "deleting a segment drops its cached values"
    );
    for (key, value) in &model {
        assert_eq!(get(&mut shard, key).as_ref(), Some(value), "{key:?}");
    }
    shard.check_integrity().expect("integrity");
}
