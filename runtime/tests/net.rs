//! TCP echo over 127.0.0.1. Strategy: two cores each bind the same ephemeral port with
//! SO_REUSEPORT and echo through the ring (multishot accept, recv, send); 20 blocking client
//! threads each send numbered messages and check every echo byte for byte. A second test drops a
//! connection mid-recv and checks the ring released the operation.

use jube_runtime::{ops_in_flight, sleep, spawn, Runtime, TcpListener};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

async fn serve(mut listener: TcpListener) {
    loop {
        let Ok(stream) = listener.accept().await else {
            continue;
        };
        spawn(async move {
            let mut buf = vec![0u8; 4096];
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
                back.resize(4096, 0);
                buf = back;
            }
        });
    }
}

fn start_echo(rt: &Runtime) -> SocketAddr {
    let addr = rt
        .block_on(0, || async {
            let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            spawn(serve(listener));
            addr
        })
        .unwrap();
    for core in 1..rt.cores() {
        rt.block_on(core, move || async move {
            spawn(serve(TcpListener::bind(addr).unwrap()));
        })
        .unwrap();
    }
    addr
}

#[test]
fn echo_over_loopback_with_reuseport_listeners() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    let addr = start_echo(&rt);
    let clients: Vec<_> = (0..20)
        .map(|client| {
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                for round in 0..50 {
                    let message: Vec<u8> = (0..100 + round)
                        .map(|i| (client * 7 + round + i) as u8)
                        .collect();
                    stream.write_all(&message).unwrap();
                    let mut echoed = vec![0u8; message.len()];
                    stream.read_exact(&mut echoed).unwrap();
                    assert_eq!(echoed, message, "client {client} round {round}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    rt.shutdown().unwrap();
}

#[test]
fn large_messages_are_echoed_whole() {
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    let addr = start_echo(&rt);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let message = message.clone();
        std::thread::spawn(move || stream.write_all(&message).unwrap())
    };
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == message);
}

#[test]
fn dropping_a_pending_recv_releases_its_operation() {
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let client = std::thread::spawn(move || {
        let addr = addr_rx.recv().unwrap();
        let stream = std::net::TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(stream);
    });
    let done = rt.block_on(0, move || async move {
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let stream = listener.accept().await.unwrap();
        let baseline = ops_in_flight();
        // A recv that will never complete (the client sends nothing), abandoned by a timeout.
        let outcome =
            jube_runtime::timeout(Duration::from_millis(10), stream.recv(vec![0u8; 64])).await;
        assert!(outcome.is_err());
        // A multishot recv stays armed for the connection's next read (no byte is lost between
        // reads); dropping the connection is what cancels it.
        drop(stream);
        for _ in 0..100 {
            if ops_in_flight() <= baseline {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        assert!(
            ops_in_flight() <= baseline,
            "abandoned recv still in the ring"
        );
        drop(listener);
        true
    });
    assert!(done.unwrap());
    client.join().unwrap();
}
