//! Cross-core messaging: round-trip latency (p50/p99) and one-way throughput of the runtime's mesh,
//! against two OS threads talking over std's bounded channels (the baseline), in the same run.
//!
//! Latency: core 0 sends a timestamped ping to core 1, which answers; 20,000 sequential round
//! trips, measured with the mesh's idle spin on (default) and off (sleep in the ring at once),
//! which is the measurement behind `IDLE_SPIN`. Throughput: core 0 sends 2,000,000 u64s to core 1
//! with `send().await` (backpressure on a full lane), core 1 receives in batches.
//! Usage: `cargo run --release -p jube-benches --bin runtime_mesh -- [rounds]`

#[path = "../runtime_stats.rs"]
mod runtime_stats;

use jube_runtime::{spawn, Runtime};
use runtime_stats::{percentile, summarize};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROUND_TRIPS: usize = 20_000;
const MESSAGES: u64 = 2_000_000;

fn mesh_round_trips(spin: Duration) -> Vec<f64> {
    let rt = Runtime::builder()
        .cores(2)
        .idle_spin(spin)
        .build()
        .expect("runtime");
    let mesh = rt.mesh::<u64>();
    let echo_mesh = mesh.clone();
    rt.spawn_on(1, move || async move {
        let endpoint = echo_mesh.join();
        for _ in 0..ROUND_TRIPS {
            let (from, value) = endpoint.recv().await;
            endpoint.send(from, value).await.expect("reply");
        }
    })
    .expect("spawn echo");
    rt.block_on(0, move || async move {
        let endpoint = mesh.join();
        let mut samples = Vec::with_capacity(ROUND_TRIPS);
        for i in 0..ROUND_TRIPS as u64 {
            let start = Instant::now();
            endpoint.send(1, i).await.expect("ping");
            let (_, back) = endpoint.recv().await;
            assert_eq!(back, i);
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples
    })
    .expect("core 0")
}

fn thread_round_trips() -> Vec<f64> {
    let (ping_tx, ping_rx) = mpsc::sync_channel::<u64>(1024);
    let (pong_tx, pong_rx) = mpsc::sync_channel::<u64>(1024);
    let echo = std::thread::spawn(move || {
        for value in ping_rx.iter().take(ROUND_TRIPS) {
            pong_tx.send(value).expect("pong");
        }
    });
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS as u64 {
        let start = Instant::now();
        ping_tx.send(i).expect("ping");
        assert_eq!(pong_rx.recv().expect("pong"), i);
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    echo.join().expect("echo thread");
    samples
}

fn mesh_throughput() -> (f64, u64) {
    let rt = Runtime::builder().cores(2).build().expect("runtime");
    let mesh = rt.mesh::<u64>();
    let receiver_mesh = mesh.clone();
    let (tx, rx) = mpsc::channel();
    rt.spawn_on(1, move || async move {
        let endpoint = receiver_mesh.join();
        let mut batch = Vec::with_capacity(1024);
        let mut received = 0u64;
        while received < MESSAGES {
            batch.clear();
            received += endpoint.recv_batch(&mut batch, 1024).await as u64;
        }
        tx.send(Instant::now()).expect("report");
    })
    .expect("spawn receiver");
    let start = Instant::now();
    rt.spawn_on(0, move || async move {
        let endpoint = mesh.join();
        spawn(async move {
            for i in 0..MESSAGES {
                endpoint.send(1, i).await.expect("send");
            }
        });
    })
    .expect("spawn sender");
    let end = rx.recv().expect("receiver finished");
    let rate = MESSAGES as f64 / (end - start).as_secs_f64();
    (rate, rt.wakeups_sent(1))
}

fn thread_throughput() -> f64 {
    let (tx, rx) = mpsc::sync_channel::<u64>(1024);
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            tx.send(i).expect("send");
        }
    });
    let received = rx.iter().count() as u64;
    assert_eq!(received, MESSAGES);
    sender.join().expect("sender");
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut latency: [Vec<(f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut throughput: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut wakeups = Vec::new();
    for _ in 0..rounds {
        let runs = [
            thread_round_trips(),
            mesh_round_trips(jube_runtime::constants::IDLE_SPIN),
            mesh_round_trips(Duration::ZERO),
        ];
        for (index, mut samples) in runs.into_iter().enumerate() {
            latency[index].push((
                percentile(&mut samples, 50.0),
                percentile(&mut samples, 99.0),
            ));
        }
        throughput[0].push(thread_throughput());
        let (rate, woken) = mesh_throughput();
        throughput[1].push(rate);
        wakeups.push(woken);
    }
    let labels = [
        "baseline: 2 threads, std sync_channel",
        "mesh, idle spin 50 us (default)",
        "mesh, no idle spin",
    ];
    println!("| round trip | p50 us (median of {rounds}) | p99 us (median of {rounds}) | p50 vs baseline |");
    println!("|---|---|---|---|");
    let base_p50 = summarize(&latency[0].iter().map(|l| l.0).collect::<Vec<_>>()).median;
    for (index, label) in labels.iter().enumerate() {
        let p50 = summarize(&latency[index].iter().map(|l| l.0).collect::<Vec<_>>());
        let p99 = summarize(&latency[index].iter().map(|l| l.1).collect::<Vec<_>>());
        println!(
            "| {label} | {:.1} ({:.1}..{:.1}) | {:.1} ({:.1}..{:.1}) | {:.2}x |",
            p50.median,
            p50.min,
            p50.max,
            p99.median,
            p99.min,
            p99.max,
            p50.median / base_p50
        );
    }
    let base = summarize(&throughput[0]);
    let mesh = summarize(&throughput[1]);
    println!("\n| one-way throughput | msgs/s (median) | min..max | vs baseline |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: std sync_channel(1024) | {:.0} | {:.0}..{:.0} | 1.00x |",
        base.median, base.min, base.max
    );
    println!(
        "| mesh, lane of 1024, send().await | {:.0} | {:.0}..{:.0} | {:.2}x |",
        mesh.median,
        mesh.min,
        mesh.max,
        mesh.median / base.median
    );
    println!("\nwakeups of the receiving core per run: {wakeups:?} for {MESSAGES} messages each");
}
