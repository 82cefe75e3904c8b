//! A cross-core hop round trip through `jube_runtime::Mesh`: core 0 sends a message to core 1,
//! which sends it back. This is what a request pays when its connection lives on one core and its
//! key's shard on the other. Two cores, not pinned (the machine is shared), with the default idle
//! spin and with none, which shows what a sleeping core's wakeup costs.
//!
//! Each criterion sample makes a fresh mesh, starts an echo task on core 1 for exactly the sample's
//! iterations, and times only the round trips on core 0.
//!
//! Run: `cargo bench -p jube-benches --bench mesh_hop`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jube_runtime::{constants::IDLE_SPIN, Runtime};
use std::time::{Duration, Instant};

fn round_trips(rt: &Runtime, iters: u64) -> Duration {
    let mesh = rt.mesh::<u64>();
    let echo_mesh = mesh.clone();
    rt.spawn_on(1, move || async move {
        let endpoint = echo_mesh.join();
        for _ in 0..iters {
            let (from, value) = endpoint.recv().await;
            endpoint.send(from, value).await.expect("echo reply");
        }
    })
    .expect("spawn echo on core 1");
    rt.block_on(0, move || async move {
        let endpoint = mesh.join();
        let start = Instant::now();
        for i in 0..iters {
            endpoint.send(1, i).await.expect("ping");
            let (_, back) = endpoint.recv().await;
            assert_eq!(back, i, "the echo answers in order");
        }
        start.elapsed()
    })
    .expect("round trips on core 0")
}

fn mesh_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh_round_trip");
    for (label, spin) in [
        ("idle_spin_50us", IDLE_SPIN),
        ("no_idle_spin", Duration::ZERO),
    ] {
        let rt = Runtime::builder()
            .cores(2)
            .pin(false)
            .idle_spin(spin)
            .build()
            .expect("start a 2-core runtime");
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| round_trips(&rt, iters))
        });
        rt.shutdown().expect("runtime shuts down");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = mesh_hop
}
criterion_main!(benches);
