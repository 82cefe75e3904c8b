//! Tree benchmarks on the real disk, with redb and LMDB (heed) in the same run under the
//! `compare` feature. The workload is redb's published comparison: 24-byte random keys, 150-byte
//! random values.
//!
//! - `bulk_load`: a fresh database, `JUBE_BENCH_KEYS` (default 1,000,000) puts in random order in
//!   one transaction, then a durable commit.
//! - `random_get`: point gets of loaded keys in random order, warm cache (the cache holds the whole
//!   database), 1,000 per iteration; every engine borrows the value (jube: `Tree::get_with`).
//! - `range_scan`: 1,000-row forward scans from random loaded keys.
//!
//! Run: `cargo bench -p jube-engine --features compare --bench tree`. Databases live in a temporary
//! directory under `JUBE_BENCH_DIR` (default: the system temp dir), which must be a real disk for
//! the numbers to mean anything (tmpfs has no O_DIRECT and no sync cost).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use jube_engine::storage::file::{FileStorage, FileVfs};
use jube_engine::tree::{Tree, TreeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

const KEY_SIZE: usize = 24;
const VALUE_SIZE: usize = 150;
const GETS_PER_ITER: usize = 1000;
const SCAN_ROWS: usize = 1000;

fn key_count() -> usize {
    std::env::var("JUBE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The workload's records, in insertion order, from a fixed seed.
fn records(n: usize) -> Vec<([u8; KEY_SIZE], [u8; VALUE_SIZE])> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    (0..n)
        .map(|_| {
            let mut key = [0u8; KEY_SIZE];
            let mut value = [0u8; VALUE_SIZE];
            rng.fill(&mut key[..]);
            rng.fill(&mut value[..]);
            (key, value)
        })
        .collect()
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("JUBE_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir),
        Err(_) => tempfile::tempdir(),
    }
    .expect("temporary directory for the benchmark")
}

/// The operations every engine under test provides.
trait Engine {
    const NAME: &'static str;
    fn load(dir: &Path, records: &[([u8; KEY_SIZE], [u8; VALUE_SIZE])]) -> Self;
    /// Gets each key; returns the bytes seen (so the work cannot be optimised away).
    fn get_all(&mut self, keys: &[[u8; KEY_SIZE]]) -> usize;
    /// Scans `SCAN_ROWS` rows from `start`; returns the rows seen.
    fn scan(&mut self, start: &[u8]) -> usize;
}

struct Jube(Tree<FileStorage>);

impl Engine for Jube {
    const NAME: &'static str = "jube";
    fn load(dir: &Path, records: &[([u8; KEY_SIZE], [u8; VALUE_SIZE])]) -> Self {
        let mut vfs = FileVfs::open(dir, true).expect("vfs");
        let config = TreeConfig {
            cache_bytes: 2 << 30,
            ..TreeConfig::default()
        };
        let mut tree = Tree::create(&mut vfs, config).expect("create");
        for (key, value) in records {
            tree.put(key, value, 0).expect("put");
        }
        tree.commit(1).expect("commit");
        Jube(tree)
    }
    fn get_all(&mut self, keys: &[[u8; KEY_SIZE]]) -> usize {
        // The value borrowed from the page, as redb's and LMDB's gets hand it out (`Tree::get`
        // copies it into a `Value`; `benches/get_ab.rs` measures both).
        keys.iter()
            .map(|k| {
                self.0
                    .get_with(k, |value| value.bytes.len())
                    .expect("get")
                    .expect("present")
            })
            .sum()
    }
    fn scan(&mut self, start: &[u8]) -> usize {
        // The visitor borrows rows from the pages, as redb's and LMDB's iterators do.
        let mut rows = 0;
        let bounds = (Bound::Included(start), Bound::Unbounded);
        self.0
            .scan_visit(bounds.0, bounds.1, SCAN_ROWS, false, None, |_, value| {
                rows += usize::from(!value.bytes.is_empty());
            })
            .expect("scan");
        rows
    }
}

#[cfg(feature = "compare")]
mod others {
    use super::*;
    use redb::TableDefinition;

    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

    pub struct Redb(pub redb::Database);

    impl Engine for Redb {
        const NAME: &'static str = "redb";
        fn load(dir: &Path, records: &[([u8; KEY_SIZE], [u8; VALUE_SIZE])]) -> Self {
            let db = redb::Builder::new()
                .set_cache_size(2 << 30)
                .create(dir.join("redb"))
                .expect("redb create");
            let txn = db.begin_write().expect("txn");
            {
                let mut table = txn.open_table(TABLE).expect("table");
                for (key, value) in records {
                    table.insert(&key[..], &value[..]).expect("insert");
                }
            }
            txn.commit().expect("commit");
            Redb(db)
        }
        fn get_all(&mut self, keys: &[[u8; KEY_SIZE]]) -> usize {
            let txn = self.0.begin_read().expect("read txn");
            let table = txn.open_table(TABLE).expect("table");
            keys.iter()
                .map(|k| {
                    table
                        .get(&k[..])
                        .expect("get")
                        .expect("present")
                        .value()
                        .len()
                })
                .sum()
        }
        fn scan(&mut self, start: &[u8]) -> usize {
            let txn = self.0.begin_read().expect("read txn");
            let table = txn.open_table(TABLE).expect("table");
            let range = table.range(start..).expect("range");
            range
                .take(SCAN_ROWS)
                .map(|r| r.expect("row").1.value().len())
                .filter(|&n| n > 0)
                .count()
        }
    }

    pub struct Lmdb(
        pub heed::Env,
        pub heed::Database<heed::types::ByteSlice, heed::types::ByteSlice>,
    );

    impl Engine for Lmdb {
        const NAME: &'static str = "lmdb";
        fn load(dir: &Path, records: &[([u8; KEY_SIZE], [u8; VALUE_SIZE])]) -> Self {
            let path = dir.join("lmdb");
            std::fs::create_dir_all(&path).expect("lmdb dir");
            // heed 0.11: `open` is safe there (later versions mark it unsafe, which the workspace's
            // forbid(unsafe_code) would refuse even in a benchmark).
            let env = heed::EnvOpenOptions::new()
                .map_size(8 << 30)
                .open(&path)
                .expect("lmdb env");
            let db = env.create_database(None).expect("db");
            let mut txn = env.write_txn().expect("txn");
            for (key, value) in records {
                db.put(&mut txn, &key[..], &value[..]).expect("put");
            }
            txn.commit().expect("commit");
            Lmdb(env, db)
        }
        fn get_all(&mut self, keys: &[[u8; KEY_SIZE]]) -> usize {
            let txn = self.0.read_txn().expect("read txn");
            keys.iter()
                .map(|k| {
                    self.1
                        .get(&txn, &k[..])
                        .expect("get")
                        .expect("present")
                        .len()
                })
                .sum()
        }
        fn scan(&mut self, start: &[u8]) -> usize {
            let txn = self.0.read_txn().expect("read txn");
            let iter = self
                .1
                .range(&txn, &(Bound::Included(start), Bound::Unbounded))
                .expect("range");
            iter.take(SCAN_ROWS)
                .map(|r| r.expect("row").1.len())
                .filter(|&n| n > 0)
                .count()
        }
    }
}

type Records = [([u8; KEY_SIZE], [u8; VALUE_SIZE])];

fn bench_load<E: Engine>(group: &mut BenchmarkGroup<'_, WallTime>, data: &Records) {
    group.bench_function(BenchmarkId::new(E::NAME, data.len()), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = bench_dir();
                let start = Instant::now();
                let engine = E::load(dir.path(), data);
                total += start.elapsed();
                drop(engine);
            }
            total
        })
    });
}

fn bench_gets<E: Engine>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    engine: &mut E,
    keys: &[[u8; KEY_SIZE]],
) {
    engine.get_all(keys); // warm the cache
    let rounds = keys.len() / GETS_PER_ITER;
    let mut round = 0usize;
    group.bench_function(BenchmarkId::new(E::NAME, key_count()), |b| {
        b.iter(|| {
            round = (round + 1) % rounds;
            engine.get_all(&keys[round * GETS_PER_ITER..(round + 1) * GETS_PER_ITER])
        })
    });
}

fn bench_scans<E: Engine>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    engine: &mut E,
    starts: &[[u8; KEY_SIZE]],
) {
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new(E::NAME, key_count()), |b| {
        b.iter(|| {
            next = (next + 1) % starts.len();
            engine.scan(&starts[next])
        })
    });
}

/// Each workload runs every engine back to back, so the engines of one table row are measured
/// minutes apart at most on this shared machine (compare them as ratios, see docs/benchmarks.md).
fn benches(c: &mut Criterion) {
    let data = records(key_count());
    let mut group = c.benchmark_group("bulk_load");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(data.len() as u64));
    bench_load::<Jube>(&mut group, &data);
    #[cfg(feature = "compare")]
    {
        bench_load::<others::Redb>(&mut group, &data);
        bench_load::<others::Lmdb>(&mut group, &data);
    }
    group.finish();

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| bench_dir()).collect();
    let mut jube = Jube::load(dirs[0].path(), &data);
    #[cfg(feature = "compare")]
    let (mut redb, mut lmdb) = (
        others::Redb::load(dirs[1].path(), &data),
        others::Lmdb::load(dirs[2].path(), &data),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let keys: Vec<[u8; KEY_SIZE]> = (0..GETS_PER_ITER * 64)
        .map(|_| data[rng.gen_range(0..data.len())].0)
        .collect();

    let mut group = c.benchmark_group("random_get");
    group.throughput(Throughput::Elements(GETS_PER_ITER as u64));
    bench_gets(&mut group, &mut jube, &keys);
    #[cfg(feature = "compare")]
    {
        bench_gets(&mut group, &mut redb, &keys);
        bench_gets(&mut group, &mut lmdb, &keys);
    }
    group.finish();

    let mut group = c.benchmark_group("range_scan_1000");
    group.throughput(Throughput::Elements(SCAN_ROWS as u64));
    bench_scans(&mut group, &mut jube, &keys);
    #[cfg(feature = "compare")]
    {
        bench_scans(&mut group, &mut redb, &keys);
        bench_scans(&mut group, &mut lmdb, &keys);
    }
    group.finish();
}

criterion_group!(tree_benches, benches);
criterion_main!(tree_benches);
