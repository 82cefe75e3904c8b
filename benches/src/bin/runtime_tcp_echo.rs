//! TCP echo over loopback: the runtime (2 cores, SO_REUSEPORT listener per core, ring recv/send)
//! against the same echo on tokio (multi-thread, 2 workers), in the same run, alternating. The
//! runtime runs twice per round: with multishot recv and provided buffers (the default), and with
//! the one-recv-per-call fallback forced on.
//!
//! One load generator (a tokio current-thread runtime on its own thread) keeps 50 connections
//! busy, each sending a 64-byte request and waiting for its 64-byte echo, for a fixed time; the
//! rate is completed round trips per second. Server and load share the machine's 2 cores alike for
//! both servers.
//! Usage: `cargo run --release -p jube-benches --bin runtime_tcp_echo -- [seconds_per_run] [rounds]`

#[path = "../runtime_stats.rs"]
mod runtime_stats;

use runtime_stats::{stability, summarize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 50;
const MESSAGE_BYTES: usize = 64;

async fn jube_serve(mut listener: jube_runtime::TcpListener) {
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        jube_runtime::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (read, mut back) = stream.recv(buf).await;
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                back.truncate(n);
                let (sent, mut back) = stream.send_all(back).await;
                if sent.is_err() {
                    return;
                }
                back.resize(4096, 0);
                buf = back;
            }
        });
    }
}

fn start_jube(multishot: bool) -> (jube_runtime::Runtime, SocketAddr) {
    let rt = jube_runtime::Runtime::builder()
        .cores(2)
        .multishot_recv(multishot)
        .build()
        .expect("runtime");
    let addr = rt
        .block_on(0, || async {
            let listener = jube_runtime::TcpListener::bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            jube_runtime::spawn(jube_serve(listener));
            addr
        })
        .expect("core 0");
    rt.block_on(1, move || async move {
        jube_runtime::spawn(jube_serve(
            jube_runtime::TcpListener::bind(addr).expect("bind"),
        ));
    })
    .expect("core 1");
    (rt, addr)
}

fn start_tokio() -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (rt, addr)
}

/// Round trips per second that 50 connections complete against `addr` in `run`.
fn load(addr: SocketAddr, run: Duration) -> f64 {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    client.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Vec::new();
        for _ in 0..CONNECTIONS {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            streams.push(stream);
        }
        let start = Instant::now();
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let (done, stop) = (done.clone(), stop.clone());
                tokio::spawn(async move {
                    let request = [7u8; MESSAGE_BYTES];
                    let mut reply = [0u8; MESSAGE_BYTES];
                    while !stop.load(Ordering::Relaxed) {
                        stream.write_all(&request).await.expect("send");
                        stream.read_exact(&mut reply).await.expect("echo");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(run).await;
        stop.store(true, Ordering::Relaxed);
        let elapsed = start.elapsed();
        let count = done.load(Ordering::Relaxed);
        for task in tasks {
            task.await.expect("connection task");
        }
        count as f64 / elapsed.as_secs_f64()
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let run = Duration::from_secs_f64(seconds);
    let (mut jube, mut oneshot, mut tokio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (rt, addr) = start_tokio();
        tokio.push(load(addr, run));
        rt.shutdown_timeout(Duration::from_secs(1));
        let (rt, addr) = start_jube(true);
        jube.push(load(addr, run));
        rt.shutdown().expect("jube shutdown");
        let (rt, addr) = start_jube(false);
        oneshot.push(load(addr, run));
        rt.shutdown().expect("jube shutdown");
    }
    let (t, j, o) = (summarize(&tokio), summarize(&jube), summarize(&oneshot));
    println!("| echo, {CONNECTIONS} connections, {MESSAGE_BYTES} B | round trips/s (median of {rounds}) | min..max | vs tokio |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: tokio, 2 workers{} | {:.0} | {:.0}..{:.0} | 1.00x |",
        stability(&t),
        t.median,
        t.min,
        t.max
    );
    println!(
        "| jube-runtime, 2 cores, multishot recv{} | {:.0} | {:.0}..{:.0} | {:.2}x |",
        stability(&j),
        j.median,
        j.min,
        j.max,
        j.median / t.median
    );
    println!(
        "| jube-runtime, 2 cores, one recv per call{} | {:.0} | {:.0}..{:.0} | {:.2}x |",
        stability(&o),
        o.median,
        o.min,
        o.max,
        o.median / t.median
    );
}
