//! Space stays bounded under overwrites: the workload of issue 8, at full size.
//!
//! 1,000 keys are each overwritten 100 times with 64 KiB values (6.4 GB of puts, about 65 MB
//! live at any time), in a different order every round, through one shard, polling after every put as the server's committer does,
//! so value-log garbage collection runs in its ordinary background slices. At the end (GC given
//! time to finish, then a checkpoint so retired segments are deleted) the value-log files must
//! take at most 3x the live data, and every key must hold its last value, before and after the
//! shard is dropped without a checkpoint and reopened (WAL redo).
//!
//! It runs on real files with O_DIRECT (`FileVfs`) in a temporary directory on /dev/shm when it
//! exists (tmpfs accepts O_DIRECT since Linux 6.6), else in the system temp directory: the
//! simulated disk keeps two images of every file and made the full-size run several times
//! slower. Crash behaviour is the simulator's job (the shard model test and the GC power-cut
//! test); this test is about space.

use jube_engine::clock::{Clock, ManualClock};
use jube_engine::shard::{Shard, ShardConfig, ShardError};
use jube_engine::storage::file::FileVfs;
use std::path::Path;
use std::rc::Rc;

const KEYS: u32 = 1_000;
const ROUNDS: u32 = 100;
const VALUE_BYTES: usize = 64 * 1024;

fn config() -> ShardConfig {
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 4 << 20;
    config.wal.segment_size_bytes = 8 << 20;
    config.vlog.segment_bytes = 8 << 20;
    config.vlog.gc_interval_ms = 0;
    config
}

fn open(dir: &Path, clock: &ManualClock) -> Shard<FileVfs> {
    let vfs = FileVfs::open(dir, true).expect("vfs");
    let clock: Rc<dyn Clock> = Rc::new(clock.clone());
    Shard::open(vfs, config(), clock).expect("open").0
}

/// The value of `key` in `round`: its first bytes name both, the rest is filler.
fn value(key: u32, round: u32) -> Vec<u8> {
    let mut value = vec![(key ^ round) as u8; VALUE_BYTES];
    value[..8].copy_from_slice(&(u64::from(key) << 32 | u64::from(round)).to_le_bytes());
    value
}

fn vlog_disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("vlog-"))
        .map(|entry| entry.metadata().expect("metadata").len())
        .sum()
}

fn check_values(shard: &mut Shard<FileVfs>) {
    for key in 0..KEYS {
        let got = shard
            .get(format!("key{key:04}").as_bytes())
            .expect("get")
            .expect("present")
            .bytes;
        assert!(
            got == value(key, ROUNDS - 1),
            "key {key} holds its last value"
        );
    }
}

#[test]
fn overwriting_1000_keys_100_times_with_64_kib_values_keeps_disk_use_within_3x_live() {
    let shm = Path::new("/dev/shm");
    let temp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let temp = temp.expect("temp dir");
    let dir = temp.path();
    let started = std::time::Instant::now();
    let clock = ManualClock::new(1_700_000_000_000);
    let mut shard = open(dir, &clock);
    let mut disk_max = 0;
    for round in 0..ROUNDS {
        for i in 0..KEYS {
            // A different order every round (7919 is prime to 1000), so segments die unevenly
            // and GC has live values to move.
            let key = (i * 7919 + round * round * 31) % KEYS;
            let name = format!("key{key:04}");
            let value = value(key, round);
            loop {
                match shard.put(name.as_bytes(), &value, 0) {
                    Ok(_) => break,
                    Err(ShardError::Busy { .. }) => shard.poll().expect("poll"),
                    Err(other) => panic!("put: {other}"),
                }
            }
            clock.advance_ns(50_000);
            shard.poll().expect("poll");
        }
        disk_max = disk_max.max(vlog_disk_bytes(dir));
    }
    for _ in 0..10_000 {
        clock.advance_ns(1_000_000);
        shard.poll().expect("poll");
        if shard.stats().vlog.dead_bytes * 2 < shard.stats().vlog.live_bytes {
            break;
        }
    }
    shard.checkpoint().expect("checkpoint");
    let stats = shard.stats().vlog;
    let on_disk = vlog_disk_bytes(dir);
    eprintln!(
        "{:.1} s: live {} bytes, on disk {on_disk} bytes ({:.2}x), peak during the run \
         {disk_max}, {} GC runs moved {} bytes, {} segments deleted",
        started.elapsed().as_secs_f64(),
        stats.live_bytes,
        on_disk as f64 / stats.live_bytes as f64,
        stats.gc_runs,
        stats.gc_bytes_moved,
        stats.segments_deleted
    );
    assert!(stats.live_bytes >= u64::from(KEYS) * VALUE_BYTES as u64);
    assert!(
        on_disk <= 3 * stats.live_bytes,
        "value log takes {on_disk} bytes for {} live",
        stats.live_bytes
    );
    check_values(&mut shard);
    for key in 0..10 {
        shard
            .put(
                format!("key{key:04}").as_bytes(),
                &value(key, ROUNDS - 1),
                0,
            )
            .expect("put");
    }
    let last = shard.last_lsn();
    while shard.acked_lsn() < last {
        shard.poll().expect("poll");
    }
    drop(shard);
    let mut shard = open(dir, &clock);
    check_values(&mut shard);
    shard.check_integrity().expect("integrity");
}
