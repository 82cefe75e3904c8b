//! Values up to the documented maximum (`VALUE_SIZE_MAX`, 16 MiB) through a real jubed: the native
//! client, jubectl (file in, file out), and RESP (redis-py, redis-cli -x); one byte more gets the
//! documented error and the server stays usable; many connections sending or fetching large frames
//! at once stay within each core's large-frame budget.
//!
//! Strategy: values are seeded pseudo-random bytes, so a truncated, shifted or mixed-up value
//! cannot compare equal; each test starts its own server and compares whole values. The budget
//! tests run one core, announce more large frames at once than its budget holds (sending only each
//! frame's first bytes), and read the budget's figures from INFO while the frames wait.

mod common;

use common::Server;
use jube_protocol::constants::{FRAME_PREFIX_SIZE, KEY_SIZE_MAX, VALUE_SIZE_MAX};
use jube_protocol::{
    decode_response, encode_request, Decoded, Entry, Get, Operation, Request, Response, Status,
};
use jube_server::constants::{LARGE_INPUT_BYTES_PER_CORE_MAX, LARGE_OUTPUT_BYTES_PER_CORE_MAX};
use rand::{RngCore, SeedableRng};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn value(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

fn frame(id: u64, op: Operation) -> Vec<u8> {
    encode_request(&Request { id, op }).expect("encode")
}

/// Reads one response from a raw socket.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Response {
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        match decode_response(buffer) {
            Decoded::Frame { len, message } => {
                buffer.drain(..len);
                return message;
            }
            Decoded::NeedMore(_) => {}
            Decoded::Error(error) => panic!("bad response: {error}"),
        }
        let count = stream.read(&mut chunk).expect("read a response");
        assert!(count > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..count]);
    }
}

#[test]
fn the_largest_value_round_trips_through_the_native_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    let largest = value(VALUE_SIZE_MAX, 1);
    client.put(b"large", &largest, None).expect("put 16 MiB");
    assert_eq!(client.get(b"large").expect("get"), Some(largest.clone()));
    // Overwrite with another large value and read both back through one pipeline.
    let other = value(VALUE_SIZE_MAX / 2 + 1, 2);
    client.put(b"large2", &other, None).expect("put 8 MiB");
    let responses = client
        .pipeline(vec![
            Operation::Get(Get::new(b"large".to_vec())),
            Operation::Get(Get::new(b"large2".to_vec())),
        ])
        .expect("pipelined gets");
    let values: Vec<Vec<u8>> = responses
        .into_iter()
        .map(|response| match response.outcome {
            Ok(jube_protocol::Reply::Get(reply)) => reply.value,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(values[0] == largest && values[1] == other, "values differ");
    // The client refuses one byte more before sending anything.
    let error = client
        .put(b"over", &value(VALUE_SIZE_MAX + 1, 3), None)
        .expect_err("over the maximum");
    assert_eq!(error.status(), Some(Status::ValueTooLarge), "{error}");
    client.ping().expect("the client is still usable");
}

#[test]
fn one_byte_over_the_maximum_gets_value_too_large_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut stream = connect(&server);
    // Bypass the client's own check: the server must refuse the value itself.
    let over = Entry::new(b"over".to_vec(), value(VALUE_SIZE_MAX + 1, 4));
    stream
        .write_all(&frame(7, Operation::Put(over)))
        .expect("send");
    stream.write_all(&frame(8, Operation::Ping)).expect("send");
    let mut buffer = Vec::new();
    let refused = read_response(&mut stream, &mut buffer);
    assert_eq!(refused.request_id, 7);
    assert_eq!(refused.status(), Status::ValueTooLarge, "{refused:?}");
    let pong = read_response(&mut stream, &mut buffer);
    assert_eq!((pong.request_id, pong.status()), (8, Status::Ok));
    let mut client = server.client();
    assert_eq!(
        client.get(b"over").expect("get"),
        None,
        "nothing was stored"
    );
}

fn jubectl(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jubectl"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(args)
        .output()
        .expect("run jubectl")
}

#[test]
fn jubectl_puts_from_a_file_and_gets_to_a_file_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let largest = value(VALUE_SIZE_MAX, 5);
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    std::fs::write(&input, &largest).expect("write input");
    let put = jubectl(
        &server,
        &[
            "put",
            "blob",
            "--value-file",
            input.to_str().expect("utf-8"),
        ],
    );
    assert!(put.status.success(), "{put:?}");
    let get = jubectl(
        &server,
        &["get", "blob", "--out", output.to_str().expect("utf-8")],
    );
    assert!(get.status.success(), "{get:?}");
    assert!(get.stdout.is_empty(), "--out writes nothing to stdout");
    assert!(
        std::fs::read(&output).expect("read output") == largest,
        "bytes differ"
    );

    // From stdin, to stdout.
    let small = value(100_000, 6);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jubectl"))
        .args(["--addr", &server.addr.to_string(), "put", "piped", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run jubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&small)
        .expect("pipe");
    assert!(child.wait().expect("wait").success());
    let get = jubectl(&server, &["get", "piped", "--out", "-"]);
    assert!(
        get.status.success() && get.stdout == small,
        "stdout differs"
    );

    // One byte over: refused with the maximum named, before anything is sent.
    let mut over = largest;
    over.push(0);
    std::fs::write(&input, &over).expect("write input");
    let put = jubectl(
        &server,
        &[
            "put",
            "over",
            "--value-file",
            input.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(put.status.code(), Some(2), "{put:?}");
    let stderr = String::from_utf8_lossy(&put.stderr);
    assert!(
        stderr.contains("too large") && stderr.contains(&VALUE_SIZE_MAX.to_string()),
        "{stderr}"
    );
    let get = jubectl(&server, &["get", "over"]);
    assert_eq!(get.status.code(), Some(1), "not stored: {get:?}");
}

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "{tool} is missing: .ci/run installs it");
}

#[test]
fn resp_clients_set_and_get_the_largest_value() {
    require("python3");
    require("redis-cli");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = server.resp_addr.expect("RESP address").port().to_string();
    // redis-py: the largest value round-trips; one byte more is a protocol error that closes
    // that connection, and a new connection is served.
    let script = format!(
        r#"
import redis, random
r = redis.Redis(port={port})
value = random.Random(7).randbytes({max})
assert r.set("large", value)
assert r.get("large") == value, "value differs"
assert r.strlen("large") == {max}
assert r.config_get("proto-max-bulk-len") == {{"proto-max-bulk-len": str({max})}}
# One byte over: the server answers from the bulk header, before the value arrives, and closes
# (a client still writing may see the reset first, as with Redis).
try:
    r.set("over", value + b"x")
    raise SystemExit("one byte over the maximum was accepted")
except (redis.exceptions.ResponseError, redis.exceptions.ConnectionError) as error:
    print("refused:", error)
import socket
raw = socket.create_connection(("127.0.0.1", {port}))
raw.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nover\r\n$%d\r\n" % ({max} + 1))
print("raw:", raw.recv(1000))
r2 = redis.Redis(port={port})
assert r2.ping()
assert r2.exists("over") == 0
assert r2.get("large") == value
print("ok")
"#,
        max = VALUE_SIZE_MAX
    );
    let output = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("raw: b'-ERR Protocol error: invalid bulk length"),
        "{stdout}"
    );

    // redis-cli -x takes the value from stdin, as operators do with a file.
    let largest = value(VALUE_SIZE_MAX, 8);
    let file = dir.path().join("value.bin");
    std::fs::write(&file, &largest).expect("write");
    let status = Command::new("redis-cli")
        .args(["-p", &port, "-x", "SET", "from-cli"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .stdout(Stdio::null())
        .status()
        .expect("run redis-cli");
    assert!(status.success());
    let mut client = server.client();
    assert!(
        client.get(b"from-cli").expect("get") == Some(largest),
        "redis-cli's value differs"
    );
}

/// Sends the first `head` bytes of a frame on each of `count` connections.
fn announce(server: &Server, frames: &[Vec<u8>], head: usize) -> Vec<TcpStream> {
    frames
        .iter()
        .map(|frame| {
            let mut stream = connect(server);
            stream.write_all(&frame[..head]).expect("send head");
            stream
        })
        .collect()
}

/// Waits until INFO shows `name` at least `at_least`.
fn wait_for_metric(server: &Server, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = server.info_metric(name);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn many_large_requests_at_once_wait_for_the_core_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--cores", "1"]);
    // Puts of the largest value under a key over the limit: the whole frame is buffered, then
    // refused with KeyTooLarge, so the engine is not involved.
    let frames: Vec<Vec<u8>> = (0..8u64)
        .map(|id| {
            let entry = Entry::new(vec![b'k'; KEY_SIZE_MAX + 1], value(VALUE_SIZE_MAX, 10));
            frame(id + 1, Operation::Put(entry))
        })
        .collect();
    let frame_size = frames[0].len();
    let fit = LARGE_INPUT_BYTES_PER_CORE_MAX / frame_size;
    assert!(fit < frames.len(), "the test must overflow the budget");
    let mut streams = announce(&server, &frames, 64 * 1024);
    let waits = wait_for_metric(
        &server,
        "large_frames.input_waits",
        (frames.len() - fit) as u64,
    );
    assert!(
        waits >= (frames.len() - fit) as u64,
        "{waits} waits with {} frames of {frame_size} bytes and room for {fit}",
        frames.len()
    );
    let reserved = server.info_metric("large_frames.input_bytes");
    assert!(
        reserved <= LARGE_INPUT_BYTES_PER_CORE_MAX as u64,
        "{reserved}"
    );
    assert!(reserved >= (fit * frame_size) as u64, "{reserved}");
    // Send the rest of every frame at once, from one thread each; all get their answer.
    let threads: Vec<_> = streams
        .drain(..)
        .zip(frames)
        .map(|(mut stream, frame)| {
            std::thread::spawn(move || {
                stream.write_all(&frame[64 * 1024..]).expect("send rest");
                read_response(&mut stream, &mut Vec::new())
            })
        })
        .collect();
    for (index, thread) in threads.into_iter().enumerate() {
        let response = thread.join().expect("client thread");
        assert_eq!(response.request_id, index as u64 + 1);
        assert_eq!(response.status(), Status::KeyTooLarge, "{response:?}");
    }
    let peak = server.info_metric("large_frames.input_bytes_core_peak");
    assert!(
        peak <= LARGE_INPUT_BYTES_PER_CORE_MAX as u64 && peak >= (fit * frame_size) as u64,
        "peak {peak}"
    );
    assert_eq!(server.info_metric("large_frames.input_bytes"), 0);
}

#[test]
fn many_large_replies_at_once_wait_for_the_core_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--cores", "1"]);
    let largest = value(VALUE_SIZE_MAX, 11);
    server
        .client()
        .put(b"large", &largest, None)
        .expect("put 16 MiB");
    // Eight clients ask for it and do not read yet: the first replies fill their sockets and hold
    // the budget, the rest wait for it.
    let count = 8;
    let reply_size = FRAME_PREFIX_SIZE + VALUE_SIZE_MAX;
    let fit = LARGE_OUTPUT_BYTES_PER_CORE_MAX / reply_size;
    assert!(fit < count);
    let mut streams: Vec<TcpStream> = (0..count)
        .map(|index| {
            let mut stream = connect(&server);
            let get = Operation::Get(Get::new(b"large".to_vec()));
            stream
                .write_all(&frame(index as u64 + 1, get))
                .expect("send");
            stream
        })
        .collect();
    let waits = wait_for_metric(&server, "large_frames.output_waits", (count - fit) as u64);
    assert!(
        waits >= (count - fit) as u64,
        "{waits} waits, room for {fit}"
    );
    let reserved = server.info_metric("large_frames.output_bytes");
    assert!(
        reserved <= LARGE_OUTPUT_BYTES_PER_CORE_MAX as u64,
        "{reserved}"
    );
    for (index, stream) in streams.iter_mut().enumerate() {
        let response = read_response(stream, &mut Vec::new());
        assert_eq!(response.request_id, index as u64 + 1);
        match response.outcome {
            Ok(jube_protocol::Reply::Get(reply)) => {
                assert!(reply.value == largest, "reply {index} differs")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let peak = server.info_metric("large_frames.output_bytes_core_peak");
    assert!(
        peak <= LARGE_OUTPUT_BYTES_PER_CORE_MAX as u64,
        "peak {peak}"
    );
}
