//! Bad input on the RESP port: random bytes, a huge bulk length, unterminated lines, bytes after
//! QUIT. Strategy: each case runs on its own raw TCP connection to one jubed; the server must
//! answer an error (or nothing) and close, or keep waiting for more bytes, never panic; after all
//! cases a fresh client and a client connected before them are still served.

mod common;

use common::Server;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the RESP port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends `bytes` and reads until the server closes; returns what it sent back.
fn send_until_closed(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = connect(addr);
    // The server may close before it has read everything: a failed write is an answer too.
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

fn ping(stream: &mut TcpStream) {
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .expect("send PING");
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).expect("read PONG");
    assert_eq!(&reply, b"+PONG\r\n");
}

#[test]
fn bad_input_gets_an_error_or_a_clean_close_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let addr = server.resp_addr.expect("RESP listener");
    let mut bystander = connect(addr);
    ping(&mut bystander);

    let huge_bulk = send_until_closed(addr, b"*1\r\n$999999999999\r\n");
    assert_eq!(huge_bulk, "-ERR Protocol error: invalid bulk length\r\n");
    let huge_array = send_until_closed(addr, b"*99999999\r\n");
    assert_eq!(
        huge_array,
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    let not_bulk = send_until_closed(addr, b"*1\r\n:12\r\n");
    assert_eq!(not_bulk, "-ERR Protocol error: expected '$', got ':'\r\n");
    let long_header = send_until_closed(addr, &[b'*'; 100]);
    assert!(
        long_header.starts_with("-ERR Protocol error"),
        "{long_header}"
    );
    let quotes = send_until_closed(addr, b"SET \"a b\r\n");
    assert!(quotes.contains("unbalanced quotes"), "{quotes}");
    // Replies before the error are sent, then the error, then the close.
    let mixed = send_until_closed(addr, b"PING\r\n*1\r\n$-5\r\n");
    assert_eq!(
        mixed,
        "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    let quit = send_until_closed(addr, b"QUIT\r\nPING\r\n");
    assert_eq!(quit, "+OK\r\n");
    // An unterminated inline line past the inline limit.
    let unterminated = send_until_closed(addr, &vec![b'a'; 70 * 1024]);
    assert!(
        unterminated.contains("too big inline request"),
        "{unterminated}"
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for case in 0..32 {
        let length = rng.gen_range(1..4096);
        let bytes: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
        let mut stream = connect(addr);
        let _ = stream.write_all(&bytes);
        // Either an error and a close, or the server waits for more: both are fine; a short read
        // timeout tells them apart without waiting long.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.is_empty()
                || text.starts_with('-')
                || text.starts_with('+')
                || text.starts_with(':')
                || text.starts_with('$')
                || text.starts_with('*'),
            "case {case}: {text:?}"
        );
    }
    ping(&mut bystander);
    let mut fresh = connect(addr);
    ping(&mut fresh);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
