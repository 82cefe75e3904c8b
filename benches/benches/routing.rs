//! The routing hash (`jube_server::routing`): every keyed request hashes its key once to find its
//! shard and core. Keys of 16 bytes (the `bench-vs-redis` shape) and 128 bytes.
//!
//! Run: `cargo bench -p jube-benches --bench routing`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jube_server::routing::{core_of, fnv1a64, shard_of};
use std::time::Duration;

/// Shard count of the benchmarked layouts: a power of two and not, to show the modulo's cost.
const SHARD_COUNTS: [usize; 2] = [16, 24];

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    for key_bytes in [16usize, 128] {
        let key: Vec<u8> = (0..key_bytes).map(|i| b'a' + (i % 26) as u8).collect();
        group.bench_with_input(BenchmarkId::new("fnv1a64", key_bytes), &key, |b, key| {
            b.iter(|| fnv1a64(black_box(key)))
        });
        for shards in SHARD_COUNTS {
            let id = BenchmarkId::new(format!("shard_and_core/{shards}_shards"), key_bytes);
            group.bench_with_input(id, &key, |b, key| {
                b.iter(|| core_of(shard_of(black_box(key), black_box(shards)), 2))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = routing
}
criterion_main!(benches);
