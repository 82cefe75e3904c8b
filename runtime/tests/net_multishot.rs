//! Receiving through multishot recv with provided buffer rings, and its fallbacks.
//!
//! Strategy: echo servers on 127.0.0.1 (one SO_REUSEPORT listener per core) serve blocking client
//! threads that send patterned messages and check every echoed byte, so a lost, duplicated or
//! reordered byte fails the comparison. Each test reads the cores' receive counters afterwards to
//! prove it went down the path it names: the multishot path with many connections and small and
//! large messages; a buffer ring of one tiny buffer (every burst exhausts it: ENOBUFS, re-arm);
//! a reader that stops reading (the queue bound cancels the multishot, then re-arms); a peer that
//! closes after sending; and the one-recv-per-call fallback forced on.

use jube_runtime::{recv_stats, spawn, RecvStats, Runtime, TcpListener};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

async fn echo(mut listener: TcpListener, chunk: usize) {
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                let (read, back) = stream.recv(buf).await;
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut reply = back;
                reply.truncate(n);
                let (sent, mut back) = stream.send_all(reply).await;
                if sent.is_err() {
                    return;
                }
                back.resize(chunk, 0);
                buf = back;
            }
        });
    }
}

fn start_echo(rt: &Runtime, chunk: usize) -> SocketAddr {
    let addr = rt
        .block_on(0, move || async move {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(echo(listener, chunk));
            addr
        })
        .unwrap();
    for core in 1..rt.cores() {
        rt.block_on(core, move || async move {
            spawn(echo(TcpListener::bind(addr).unwrap(), chunk));
        })
        .unwrap();
    }
    addr
}

fn stats(rt: &Runtime) -> RecvStats {
    let mut total = RecvStats::default();
    for core in 0..rt.cores() {
        let s = rt.block_on(core, || async { recv_stats() }).unwrap();
        total.multishot_arms += s.multishot_arms;
        total.multishot_completions += s.multishot_completions;
        total.buffer_exhaustions += s.buffer_exhaustions;
        total.queue_full_cancels += s.queue_full_cancels;
        total.oneshot_recvs += s.oneshot_recvs;
    }
    total
}

fn pattern(client: usize, round: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (client * 31 + round * 7 + i * 13 + i / 251) as u8)
        .collect()
}

/// Writes `message` from a second thread while reading its echo, so large messages cannot
/// deadlock on full socket buffers.
fn round_trip(stream: &mut std::net::TcpStream, message: &[u8]) -> Vec<u8> {
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let message = message.to_vec();
        std::thread::spawn(move || stream.write_all(&message).unwrap())
    };
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    echoed
}

fn run_clients(addr: SocketAddr, clients: usize, sizes: &'static [usize]) {
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                for (round, &len) in sizes.iter().enumerate() {
                    let len = len + client;
                    let message = pattern(client, round, len);
                    let echoed = round_trip(&mut stream, &message);
                    assert!(echoed == message, "client {client} round {round} ({len} B)");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn many_connections_small_and_large_messages_through_multishot() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    assert!(
        rt.features().recv_buffers,
        "this kernel registers buffer rings"
    );
    let addr = start_echo(&rt, 64 * 1024);
    run_clients(addr, 40, &[1, 64, 700, 5_000, 70_000, 3, 300_000, 17]);
    let stats = stats(&rt);
    assert!(stats.multishot_arms >= 40, "{stats:?}");
    assert!(stats.multishot_completions > 40 * 8, "{stats:?}");
    rt.shutdown().unwrap();
}

#[test]
fn an_exhausted_buffer_ring_rearms_without_losing_bytes() {
    // One buffer of 64 bytes per core: any burst longer than 64 bytes ends the multishot with
    // ENOBUFS before the reactor has returned the buffer.
    let rt = Runtime::builder()
        .cores(1)
        .pin(false)
        .recv_buffers(1, 64)
        .build()
        .unwrap();
    let addr = start_echo(&rt, 4096);
    run_clients(addr, 8, &[10, 5_000, 200_000, 63, 64, 65, 1_000]);
    let stats = stats(&rt);
    assert!(stats.buffer_exhaustions > 0, "{stats:?}");
    assert!(stats.multishot_completions > 0, "{stats:?}");
    rt.shutdown().unwrap();
}

#[test]
fn a_reader_that_stops_reading_is_bounded_and_loses_nothing() {
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    let total = 3 * 1024 * 1024;
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr_rx.recv().unwrap()).unwrap();
        stream.write_all(&pattern(1, 1, total)).unwrap();
    });
    let received = rt
        .block_on(0, move || async move {
            let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let stream = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let (first, buf) = stream.recv(vec![0u8; 1000]).await;
            received.extend_from_slice(&buf[..first.unwrap()]);
            // Stop reading while the client sends megabytes: the queue hits its bound.
            jube_runtime::sleep(Duration::from_millis(300)).await;
            let mut buf = buf;
            loop {
                let (read, back) = stream.recv(buf).await;
                match read.unwrap() {
                    0 => break,
                    n => received.extend_from_slice(&back[..n]),
                }
                buf = back;
            }
            (received, recv_stats())
        })
        .unwrap();
    client.join().unwrap();
    let (received, stats) = received;
    assert_eq!(received.len(), total);
    assert!(received == pattern(1, 1, total), "bytes lost or reordered");
    assert!(stats.queue_full_cancels > 0, "{stats:?}");
    assert!(
        stats.multishot_arms >= 2,
        "re-armed after the cancel: {stats:?}"
    );
    rt.shutdown().unwrap();
}

#[test]
fn a_peer_that_closes_after_sending_is_read_to_the_end() {
    for multishot in [true, false] {
        let rt = Runtime::builder()
            .cores(1)
            .pin(false)
            .multishot_recv(multishot)
            .build()
            .unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let client = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr_rx.recv().unwrap()).unwrap();
            stream.write_all(&pattern(2, 0, 100_000)).unwrap();
            // Dropping the stream closes it: the reader sees the bytes, then end of stream.
        });
        let (received, eofs) = rt
            .block_on(0, move || async move {
                let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let stream = listener.accept().await.unwrap();
                let mut received = Vec::new();
                let mut buf = vec![0u8; 3000];
                let mut eofs = 0;
                // Read past the end twice: a closed peer keeps answering 0.
                while eofs < 2 {
                    let (read, back) = stream.recv(buf).await;
                    match read.unwrap() {
                        0 => eofs += 1,
                        n => received.extend_from_slice(&back[..n]),
                    }
                    buf = back;
                }
                (received, eofs)
            })
            .unwrap();
        client.join().unwrap();
        assert_eq!(eofs, 2);
        assert!(received == pattern(2, 0, 100_000), "multishot {multishot}");
        rt.shutdown().unwrap();
    }
}

#[test]
fn the_one_recv_per_call_fallback_echoes() {
    let rt = Runtime::builder()
        .cores(2)
        .pin(false)
        .multishot_recv(false)
        .build()
        .unwrap();
    assert!(!rt.features().recv_buffers);
    let addr = start_echo(&rt, 4096);
    run_clients(addr, 10, &[1, 100, 10_000, 100_000]);
    let stats = stats(&rt);
    assert_eq!(stats.multishot_arms, 0, "{stats:?}");
    assert_eq!(stats.multishot_completions, 0, "{stats:?}");
    assert!(stats.oneshot_recvs > 40, "{stats:?}");
    rt.shutdown().unwrap();
}
