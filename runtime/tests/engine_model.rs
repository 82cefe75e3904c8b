//! The engine's shard, run over the io_uring `Storage` on a real directory: the point is that the
//! real path works end to end (appends, group commits, checkpoints, segment rollover, close and
//! recovery), not crash coverage, which the simulator gives.
//!
//! Strategy: one runtime core opens a shard on `UringVfs` in a temporary ext4 directory with
//! small segments and a tiny cache, and runs random puts, deletes, gets, scans and polls against
//! a `BTreeMap`, acknowledging writes as the group commit completes; every few thousand steps it
//! closes the shard (a final checkpoint) or drops it (no checkpoint: recovery must replay the
//! WAL), reopens it and compares the whole contents with the model.

use jube_engine::clock::{Clock, SystemClock};
use jube_engine::shard::{Shard, ShardConfig};
use jube_engine::tree::TreeConfig;
use jube_runtime::{Runtime, UringVfs};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

fn config() -> ShardConfig {
    let mut config = ShardConfig::new(0);
    config.tree = TreeConfig {
        page_size: 4096,
        cache_bytes: 8 * 4096,
        ..TreeConfig::default()
    };
    config.wal.segment_size_bytes = 64 * 4096;
    config.wal.flush_bytes_max = 8 * 4096;
    config.wal.buffer_bytes_max = 32 * 4096;
    config.checkpoint_wal_bytes = 128 * 4096;
    config.checkpoint_slice_bytes = 4 * 4096;
    config
}

fn open(dir: &Path) -> Shard<UringVfs> {
    let vfs = UringVfs::open(dir).expect("open the directory on this core's ring");
    let clock: Rc<dyn Clock> = Rc::new(SystemClock::new());
    Shard::open(vfs, config(), clock).expect("open the shard").0
}

fn contents(shard: &mut Shard<UringVfs>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let page = shard
        .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX, false, None)
        .expect("scan");
    page.entries
        .into_iter()
        .map(|e| (e.key, e.value.bytes))
        .collect()
}

/// A small deterministic generator, so a failure replays without a seed argument.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

fn workload(dir: &Path) {
    let mut rng = Lcg(7);
    let mut model = BTreeMap::new();
    let mut shard = open(dir);
    let mut last_lsn = 0;
    let mut exercised = 0;
    for step in 0..20_000u64 {
        let key = format!("key{:04}", rng.next(1500)).into_bytes();
        match rng.next(10) {
            0..=4 => {
                let value = vec![rng.next(256) as u8; rng.next(300) as usize];
                last_lsn = shard.put(&key, &value, 0).expect("put");
                model.insert(key, value);
            }
            5 => {
                let (present, lsn) = shard.delete(&key).expect("delete");
                assert_eq!(present, model.remove(&key).is_some());
                last_lsn = last_lsn.max(lsn);
            }
            6..=7 => {
                let got = shard.get(&key).expect("get").map(|v| v.bytes);
                assert_eq!(got.as_ref(), model.get(&key), "step {step}");
            }
            _ => shard.poll().expect("poll"),
        }
        if step % 5_000 == 4_999 {
            while shard.acked_lsn() < last_lsn {
                shard.poll().expect("poll until acknowledged");
            }
            let stats = shard.stats();
            exercised += stats.checkpoints + stats.wal.rollovers_count;
            if step % 10_000 == 9_999 {
                shard.close().expect("close");
            } else {
                drop(shard);
            }
            shard = open(dir);
            assert_eq!(
                contents(&mut shard),
                model,
                "after reopening at step {step}"
            );
            shard.check_integrity().expect("integrity");
        }
    }
    assert!(
        exercised > 0,
        "no checkpoint or rollover happened: the test lost its point"
    );
}

#[test]
fn the_shard_model_runs_over_io_uring() {
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let path = dir.path().to_path_buf();
    let rt = Runtime::builder()
        .cores(1)
        .pin(false)
        .build()
        .expect("runtime");
    rt.block_on(0, move || async move { workload(&path) })
        .expect("run on the core");
    rt.shutdown().expect("shutdown");
}
