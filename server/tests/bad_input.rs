//! Hostile and broken clients against the real jubed: random bytes, truncated frames, an oversized
//! length prefix, unknown operations, frames failing verification, clients vanishing mid-frame,
//! more connections than allowed. Strategy: each case talks raw bytes over its own socket and checks
//! that it gets the documented error response or a clean close; after every case a separate,
//! well-behaved client must still be served (the server did not panic or wedge). None of this needs
//! storage, so it runs on every build.

mod common;

use common::Server;
use flatbuffers::FlatBufferBuilder;
use jube_protocol::constants::{FRAME_SIZE_MAX, PIPELINE_DEPTH_MAX, PROTOCOL_VERSION};
use jube_protocol::generated::jube::wire as fb;
use jube_protocol::{
    decode_response, encode_request, Decoded, Operation, Request, Response, Status,
};
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Reads responses until `count` are decoded or the server closes; returns them and whether the
/// connection was closed.
fn read_responses(stream: &mut TcpStream, count: usize) -> (Vec<Response>, bool) {
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Decoded::Frame { len, message } = decode_response(&buffer) {
            buffer.drain(..len);
            responses.push(message);
        }
        if responses.len() >= count {
            return (responses, false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return (responses, true),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return (responses, true)
            }
            Err(error) => panic!("reading responses: {error}"),
        }
    }
}

fn ping_frame(id: u64) -> Vec<u8> {
    encode_request(&Request {
        id,
        op: Operation::Ping,
    })
    .expect("encode")
}

fn assert_still_serving(server: &Server) {
    let mut client = server.client();
    client
        .ping()
        .expect("a well-behaved client is still served");
}

/// A request frame with a raw operation tag (a Ping table as its body).
fn frame_with_operation_tag(tag: u8, request_id: u64) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let op = fb::Ping::create(&mut fbb, &fb::PingArgs {}).as_union_value();
    let args = fb::RequestArgs {
        version: PROTOCOL_VERSION,
        request_id,
        op_type: fb::Operation(tag),
        op: Some(op),
    };
    let root = fb::Request::create(&mut fbb, &args);
    fbb.finish_size_prefixed(root, Some("JUBE"));
    fbb.finished_data().to_vec()
}

fn pipelined_pings_come_back_in_order(server: &Server) {
    // Pipelined pings on one connection come back in order.
    let mut stream = connect(server);
    let frames: Vec<u8> = (1..=500u64).flat_map(ping_frame).collect();
    stream.write_all(&frames).expect("write");
    let (responses, closed) = read_responses(&mut stream, 500);
    assert!(!closed);
    let ids: Vec<u64> = responses.iter().map(|r| r.request_id).collect();
    assert_eq!(
        ids,
        (1..=500).collect::<Vec<_>>(),
        "responses in request order"
    );
}

fn bad_frames_get_errors_and_the_connection_goes_on(server: &Server) {
    let mut stream = connect(server);
    // Unknown operation: an error with the request id, and the connection goes on.
    stream
        .write_all(&frame_with_operation_tag(42, 7))
        .expect("write");
    stream.write_all(&ping_frame(8)).expect("write");
    let (responses, _) = read_responses(&mut stream, 2);
    assert_eq!(
        (responses[0].request_id, responses[0].status()),
        (7, Status::UnknownOperation)
    );
    assert_eq!(
        (responses[1].request_id, responses[1].status()),
        (8, Status::Ok)
    );

    // A frame of the right length and identifier that fails verification: MalformedFrame (id 0),
    // and the connection goes on after it.
    // Its root offset (after the length prefix, before the identifier) points far outside it.
    let mut bad = ping_frame(9);
    bad[4..8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    stream.write_all(&bad).expect("write");
    stream.write_all(&ping_frame(10)).expect("write");
    let (responses, _) = read_responses(&mut stream, 2);
    assert_eq!(
        (responses[0].request_id, responses[0].status()),
        (0, Status::MalformedFrame)
    );
    assert_eq!(
        (responses[1].request_id, responses[1].status()),
        (10, Status::Ok)
    );
    drop(stream);
}

fn an_oversized_length_prefix_closes_the_connection(server: &Server) {
    // An oversized length prefix: FrameTooLarge, then the server closes the connection.
    let mut stream = connect(server);
    let too_large = u32::try_from(FRAME_SIZE_MAX + 1).expect("fits");
    stream.write_all(&too_large.to_le_bytes()).expect("write");
    stream.write_all(&[0u8; 64]).expect("write");
    let (responses, closed) = read_responses(&mut stream, 2);
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(
        (responses[0].request_id, responses[0].status()),
        (0, Status::FrameTooLarge)
    );
    assert!(
        closed,
        "the stream cannot be resynchronised, so it is closed"
    );
    assert_still_serving(server);
}

fn random_bytes_get_only_errors(server: &Server) {
    // Random bytes: whatever they decode to, only error responses come back, or a close.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    for round in 0..8 {
        let mut stream = connect(server);
        let mut junk = vec![0u8; 2048];
        rng.fill(&mut junk[..]);
        if round % 2 == 0 {
            // A plausible length prefix makes the server wait for, then verify, the frame.
            junk[..4].copy_from_slice(&2044u32.to_le_bytes());
        }
        stream.write_all(&junk).expect("write");
        stream.shutdown(Shutdown::Write).expect("half-close");
        let (responses, _) = read_responses(&mut stream, usize::MAX);
        assert!(
            responses.iter().all(|r| r.status() != Status::Ok),
            "round {round}: {responses:?}"
        );
    }
    assert_still_serving(server);
}

fn truncated_frames_close_cleanly(server: &Server) {
    // Truncated frames, and clients that vanish mid-frame.
    for cut in [1, 3, 4, 9] {
        let mut stream = connect(server);
        stream.write_all(&ping_frame(1)[..cut]).expect("write");
        drop(stream);
    }
    let mut stream = connect(server);
    stream.write_all(&ping_frame(1)[..7]).expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let (responses, closed) = read_responses(&mut stream, 1);
    assert!(
        responses.is_empty() && closed,
        "a truncated frame gets a clean close: {responses:?}"
    );
    assert_still_serving(server);
}

#[test]
fn bad_input_gets_errors_or_a_clean_close_and_never_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    pipelined_pings_come_back_in_order(&server);
    bad_frames_get_errors_and_the_connection_goes_on(&server);
    an_oversized_length_prefix_closes_the_connection(&server);
    random_bytes_get_only_errors(&server);
    truncated_frames_close_cleanly(&server);
    assert_still_serving(&server);
}

#[test]
fn a_client_that_does_not_read_is_not_read_either() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // Far more pipelined requests than the in-flight limit, never reading: the server must stop
    // reading (the client's writes block) rather than buffer without bound, and stay up.
    let stream = connect(&server);
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let frame = ping_frame(1);
    let mut writer = stream.try_clone().expect("clone");
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match writer.write(&frame) {
            Ok(written) => sent += written,
            Err(_) => break,
        }
    }
    assert!(
        sent < 64 << 20,
        "the server kept reading {sent} bytes from a client that never reads"
    );
    assert!(
        sent / frame.len() >= PIPELINE_DEPTH_MAX,
        "the server read fewer than the pipeline depth"
    );
    assert_still_serving(&server);
}

#[test]
fn connections_past_the_limit_are_refused_with_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("jubed.toml");
    std::fs::write(&config, "[server]\nconnections_max = 2\n").expect("write config");
    let server = Server::start(
        dir.path(),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let mut first = server.client();
    let mut second = server.client();
    first.ping().expect("first");
    second.ping().expect("second");
    let mut third = connect(&server);
    let (responses, closed) = read_responses(&mut third, 1);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status(), Status::Busy);
    let _ = closed;
    drop(first);
    // The freed slot is usable again once the server has seen the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut client = server.client();
        if client.ping().is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a closed connection's slot was never freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
