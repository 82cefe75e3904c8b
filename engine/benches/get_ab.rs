//! Random point gets, jube against LMDB (heed) and redb, alternating engines every round so that
//! all three see the same machine load (the criterion benchmark in `tree.rs` runs each engine's
//! samples back to back, seconds apart, which on a shared VM moves the ratio by tens of percent).
//!
//! Same workload as `tree.rs`: `JUBE_BENCH_KEYS` (default 1,000,000) keys of 24 random bytes with
//! 150-byte random values, loaded in one transaction and committed; caches large enough for the
//! whole database; gets of loaded keys in random order. Each round times, for every engine in a
//! rotating order, `GET_AB_BATCHES` (default 16) batches of 1,000 gets over fresh keys; a round's
//! figure is the median batch. The report gives each engine's median over `GET_AB_ROUNDS`
//! (default 30) rounds and the median of the per-round ratios, with their spread. Batches during
//! which the thread was switched out (its schedstat timeslice count moved) are dropped: on a
//! shared 2-vCPU machine they measure the other load.
//!
//! jube runs twice: `jube get` copies the value into a `Value` (allocation and copy, what
//! `Tree::get` returns), `jube get_with` borrows it from the page (as LMDB's and redb's gets do).
//!
//! Run: `cargo bench -p jube-engine --features compare --bench get_ab`.

use jube_engine::storage::file::{FileStorage, FileVfs};
use jube_engine::tree::{Tree, TreeConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redb::TableDefinition;
use std::time::Instant;

const KEY_SIZE: usize = 24;
const VALUE_SIZE: usize = 150;
const GETS_PER_BATCH: usize = 1000;
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

type Key = [u8; KEY_SIZE];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn records(n: usize) -> Vec<(Key, [u8; VALUE_SIZE])> {
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

struct Engines {
    jube: Tree<FileStorage>,
    redb: redb::Database,
    lmdb: (
        heed::Env,
        heed::Database<heed::types::ByteSlice, heed::types::ByteSlice>,
    ),
}

fn load(dir: &std::path::Path, data: &[(Key, [u8; VALUE_SIZE])]) -> Engines {
    let jube_dir = dir.join("jube");
    std::fs::create_dir_all(&jube_dir).expect("jube dir");
    let mut vfs = FileVfs::open(&jube_dir, true).expect("vfs");
    let config = TreeConfig {
        cache_bytes: 2 << 30,
        ..TreeConfig::default()
    };
    let mut jube = Tree::create(&mut vfs, config).expect("create");
    for (key, value) in data {
        jube.put(key, value, 0).expect("put");
    }
    jube.commit(1).expect("commit");

    let redb = redb::Builder::new()
        .set_cache_size(2 << 30)
        .create(dir.join("redb"))
        .expect("redb create");
    let txn = redb.begin_write().expect("txn");
    {
        let mut table = txn.open_table(TABLE).expect("table");
        for (key, value) in data {
            table.insert(&key[..], &value[..]).expect("insert");
        }
    }
    txn.commit().expect("commit");

    let path = dir.join("lmdb");
    std::fs::create_dir_all(&path).expect("lmdb dir");
    let env = heed::EnvOpenOptions::new()
        .map_size(8 << 30)
        .open(&path)
        .expect("lmdb env");
    let db = env.create_database(None).expect("db");
    let mut txn = env.write_txn().expect("txn");
    for (key, value) in data {
        db.put(&mut txn, &key[..], &value[..]).expect("put");
    }
    txn.commit().expect("commit");
    Engines {
        jube,
        redb,
        lmdb: (env, db),
    }
}

const NAMES: [&str; 4] = ["jube get", "jube get_with", "redb", "lmdb"];

/// Gets `keys` on engine `which`; returns the value bytes seen.
fn get_batch(engines: &mut Engines, which: usize, keys: &[Key]) -> usize {
    match which {
        0 => keys
            .iter()
            .map(|k| {
                engines
                    .jube
                    .get(k)
                    .expect("get")
                    .expect("present")
                    .bytes
                    .len()
            })
            .sum(),
        1 => keys
            .iter()
            .map(|k| {
                engines
                    .jube
                    .get_with(k, |v| v.bytes.len())
                    .expect("get")
                    .expect("present")
            })
            .sum(),
        2 => {
            let txn = engines.redb.begin_read().expect("read txn");
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
        _ => {
            let (env, db) = &engines.lmdb;
            let txn = env.read_txn().expect("read txn");
            keys.iter()
                .map(|k| db.get(&txn, &k[..]).expect("get").expect("present").len())
                .sum()
        }
    }
}

/// Times this thread was scheduled onto a CPU (the third field of its schedstat): a batch during
/// which it changed was preempted.
fn timeslices() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn spread(values: &mut [f64]) -> f64 {
    let m = median(values);
    (values[values.len() - 1] - values[0]) / m
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` / `cargo test` probing the harness
    }
    let rounds = env_usize("GET_AB_ROUNDS", 30);
    let batches = env_usize("GET_AB_BATCHES", 16);
    let data = records(env_usize("JUBE_BENCH_KEYS", 1_000_000));
    let dir = match std::env::var("JUBE_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir),
        Err(_) => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let mut engines = load(dir.path(), &data);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let keys: Vec<Key> = (0..GETS_PER_BATCH * 64)
        .map(|_| data[rng.gen_range(0..data.len())].0)
        .collect();
    for which in 0..NAMES.len() {
        get_batch(&mut engines, which, &keys); // warm every cache
    }
    let mut per_engine: Vec<Vec<f64>> = vec![Vec::new(); NAMES.len()];
    let mut sink = 0usize;
    let mut next_batch = 0usize;
    let mut preempted = 0usize;
    for round in 0..rounds {
        for step in 0..NAMES.len() {
            let which = (round + step) % NAMES.len();
            let mut times = Vec::with_capacity(batches);
            let mut whole = Vec::with_capacity(batches);
            for _ in 0..batches {
                let slice = &keys[next_batch * GETS_PER_BATCH..(next_batch + 1) * GETS_PER_BATCH];
                next_batch = (next_batch + 1) % 64;
                let switches = timeslices();
                let start = Instant::now();
                sink += get_batch(&mut engines, which, slice);
                let ms = start.elapsed().as_secs_f64() * 1e3;
                times.push(ms);
                if timeslices() == switches {
                    whole.push(ms);
                } else {
                    preempted += 1;
                }
            }
            // Batches during which the thread was switched out measure the machine's other load,
            // not the engine: keep the others (or, if every batch was preempted, the fastest).
            let figure = if whole.is_empty() {
                times.iter().copied().fold(f64::INFINITY, f64::min)
            } else {
                median(&mut whole)
            };
            per_engine[which].push(figure);
        }
    }
    println!(
        "random get, ms per 1,000 gets ({rounds} rounds x {batches} batches; \
         {preempted} preempted batches dropped; sink {sink})"
    );
    println!("| engine | median ms | spread | median ratio to lmdb | ratio spread |");
    println!("|---|---|---|---|---|");
    let lmdb = per_engine[3].clone();
    for (which, name) in NAMES.iter().enumerate() {
        let mut ratios: Vec<f64> = per_engine[which]
            .iter()
            .zip(&lmdb)
            .map(|(a, b)| a / b)
            .collect();
        let mut times = per_engine[which].clone();
        println!(
            "| {name} | {:.3} | {:.0}% | {:.3} | {:.0}% |",
            median(&mut times),
            100.0 * spread(&mut times),
            median(&mut ratios),
            100.0 * spread(&mut ratios)
        );
    }
}
