//! Client tests against a tiny TCP server on 127.0.0.1 (ephemeral port) run
//! in a thread: it decodes requests with `decode_request` and answers with
//! canned responses. They check each call's result and error mapping, that
//! pipelined responses come back in order and matched to their ids, that the
//! pipeline depth bounds what is on the wire, and that protocol violations by
//! the server break the connection instead of being misread.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Bound;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use jube_protocol::constants::KEY_SIZE_MAX;
use jube_protocol::{
    decode_request, encode_response, CheckpointReply, Client, ClientError, ClientOptions, Decoded,
    Entry, Get, GetReply, InfoReply, InfoSection, Metric, Operation, Reply, Request, Response,
    Scan, ScanReply, Status, Txn, TxnOpResult, TxnOutcome,
};

/// Reads every whole request buffered on `stream`, waiting for at least one;
/// `None` at end of stream.
fn read_requests(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<Request>> {
    let mut requests = Vec::new();
    loop {
        match decode_request(buf) {
            Decoded::Frame { len, message } => {
                buf.drain(..len);
                requests.push(message);
                continue;
            }
            Decoded::Error(error) => panic!("test server got a bad frame: {error}"),
            Decoded::NeedMore(_) if !requests.is_empty() => return Some(requests),
            Decoded::NeedMore(_) => {}
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(count) => buf.extend_from_slice(&chunk[..count]),
            Err(error) => panic!("test server read: {error}"),
        }
    }
}

/// Serves one connection: `handler` maps each request to its response.
fn spawn_server(
    mut handler: impl FnMut(&Request) -> Response + Send + 'static,
) -> (String, JoinHandle<Vec<Request>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(requests) = read_requests(&mut stream, &mut buf) {
            for request in requests {
                let frame = encode_response(&handler(&request)).expect("encode");
                stream.write_all(&frame).expect("write");
                seen.push(request);
            }
        }
        seen
    });
    (addr, handle)
}

/// The canned store: "missing" is absent, any other key's value is the key
/// reversed.
fn canned(request: &Request) -> Response {
    let value_of = |key: &[u8]| key.iter().rev().copied().collect::<Vec<u8>>();
    let reply = match &request.op {
        Operation::Ping => Reply::Ping,
        Operation::Get(get) if get.key == b"missing" => {
            return Response::error(request.id, Status::NotFound, "no such key")
        }
        Operation::Get(get) => Reply::Get(GetReply {
            value: value_of(&get.key),
            version: get.with_version.then_some(3),
            ttl_remaining_ms: None,
        }),
        Operation::Put(entry) if entry.key == b"full" => {
            return Response::error(request.id, Status::NoSpace, "disk full")
        }
        Operation::Put(_) => Reply::Put,
        Operation::Delete { .. } => Reply::Delete,
        Operation::MultiGet { keys } => Reply::MultiGet {
            values: keys
                .iter()
                .map(|key| (key != b"missing").then(|| value_of(key)))
                .collect(),
        },
        Operation::MultiPut { .. } => Reply::MultiPut,
        Operation::Scan(scan) => Reply::Scan(ScanReply {
            entries: vec![Entry::new(*b"a", *b"1")],
            continuation: (scan.limit == 1).then(|| b"after-a".to_vec()),
        }),
        Operation::Info => Reply::Info(InfoReply {
            server_version: "test".to_owned(),
            uptime_ms: 5,
            shard_count: 1,
            core_count: 1,
            sections: vec![InfoSection {
                name: "total".to_owned(),
                metrics: vec![Metric {
                    name: "keys".to_owned(),
                    value: 1,
                }],
            }],
        }),
        Operation::Checkpoint => Reply::Checkpoint(CheckpointReply { duration_us: 77 }),
        // A canned transaction: an assertion on "taken" fails, else every op is a Put.
        Operation::Txn(txn) => Reply::Txn(
            match txn.assertions.iter().position(|a| a.key == b"taken") {
                Some(index) => TxnOutcome::AssertionFailed {
                    index: index as u32,
                    detail: "exists".to_owned(),
                },
                None => TxnOutcome::Committed(txn.ops.iter().map(|_| TxnOpResult::Put).collect()),
            },
        ),
    };
    Response::ok(request.id, reply)
}

fn options() -> ClientOptions {
    ClientOptions {
        io_timeout: Some(Duration::from_secs(10)),
        ..ClientOptions::default()
    }
}

#[test]
fn one_call_per_method() {
    let (addr, server) = spawn_server(canned);
    let mut client = Client::connect_with(addr.as_str(), &options()).expect("connect");
    client.ping().unwrap();
    assert_eq!(client.get(b"abc").unwrap(), Some(b"cba".to_vec()));
    assert_eq!(client.get(b"missing").unwrap(), None);
    let with_version = Get {
        key: b"k".to_vec(),
        with_version: true,
        with_ttl: false,
    };
    assert_eq!(
        client
            .get_with(with_version)
            .unwrap()
            .and_then(|reply| reply.version),
        Some(3)
    );
    client.put(b"k", b"v", None).unwrap();
    client
        .put(b"k", b"v", Some(Duration::from_micros(1500)))
        .unwrap();
    client.delete(b"k").unwrap();
    assert_eq!(
        client.multi_get(&[&b"ab"[..], b"missing"]).unwrap(),
        vec![Some(b"ba".to_vec()), None]
    );
    client
        .multi_put(vec![Entry::new(*b"a", *b"1"), Entry::new(*b"b", *b"2")])
        .unwrap();
    let page = client
        .scan(Scan {
            limit: 1,
            ..Scan::all()
        })
        .unwrap();
    assert_eq!(page.entries, vec![Entry::new(*b"a", *b"1")]);
    assert_eq!(page.continuation.as_deref(), Some(&b"after-a"[..]));
    let range = Scan {
        start: Bound::Included(b"a".to_vec()),
        end: Bound::Excluded(b"b".to_vec()),
        ..Scan::all()
    };
    assert_eq!(client.scan(range).unwrap().continuation, None);
    assert_eq!(client.info().unwrap().sections[0].metrics[0].value, 1);
    assert_eq!(client.checkpoint().unwrap().duration_us, 77);
    drop(client);

    let seen = server.join().expect("server");
    let ids: Vec<u64> = seen.iter().map(|request| request.id).collect();
    assert_eq!(
        ids,
        (1..=13).collect::<Vec<u64>>(),
        "ids are nonzero and increasing"
    );
    let ttl = seen.iter().find_map(|request| match &request.op {
        Operation::Put(entry) => entry.ttl_ms,
        _ => None,
    });
    assert_eq!(ttl, Some(2), "1.5 ms rounds up to 2 ms");
}

#[test]
fn server_failures_are_typed_errors() {
    let (addr, server) = spawn_server(canned);
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let error = client.put(b"full", b"v", None).unwrap_err();
    assert!(
        matches!(&error, ClientError::Server { status: Status::NoSpace, message } if message == "disk full"),
        "{error:?}"
    );
    assert_eq!(error.status(), Some(Status::NoSpace));
    client
        .ping()
        .expect("a server failure leaves the connection usable");
    drop(client);
    server.join().unwrap();
}

#[test]
fn invalid_requests_are_not_sent() {
    let (addr, server) = spawn_server(canned);
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let error = client.get(&vec![b'k'; KEY_SIZE_MAX + 1]).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Invalid {
                status: Status::KeyTooLarge,
                ..
            }
        ),
        "{error:?}"
    );
    let error = client.put(b"k", b"v", Some(Duration::ZERO)).unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidRequest));
    client.ping().unwrap();
    drop(client);
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 1, "only the ping reached the server: {seen:?}");
}

#[test]
fn pipelined_responses_come_back_in_order() {
    const COUNT: usize = 16;
    // The server reads all COUNT requests before it answers any, so this
    // passes only if the client really sends them without waiting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut requests = Vec::new();
        while requests.len() < COUNT {
            requests.extend(read_requests(&mut stream, &mut buf).expect("client closed early"));
        }
        let frames: Vec<u8> = requests
            .iter()
            .flat_map(|request| encode_response(&canned(request)).unwrap())
            .collect();
        stream.write_all(&frames).unwrap();
        requests.len()
    });
    let mut client = Client::connect_with(addr, &options()).unwrap();
    let ops: Vec<Operation> = (0..COUNT)
        .map(|index| match index % 3 {
            0 => Operation::Get(Get::new(format!("key{index}"))),
            1 => Operation::Get(Get::new(*b"missing")),
            _ => Operation::Put(Entry::new(format!("key{index}"), *b"v")),
        })
        .collect();
    let responses = client.pipeline(ops).unwrap();
    assert_eq!(server.join().unwrap(), COUNT);
    assert_eq!(client.in_flight(), 0);
    for (index, response) in responses.iter().enumerate() {
        assert_eq!(response.request_id, index as u64 + 1);
        let expected = match index % 3 {
            0 => Ok(Reply::Get(GetReply {
                value: format!("key{index}").bytes().rev().collect(),
                version: None,
                ttl_remaining_ms: None,
            })),
            1 => Err(Status::NotFound),
            _ => Ok(Reply::Put),
        };
        assert_eq!(
            response.outcome.clone().map_err(|failure| failure.status),
            expected,
            "response {index}"
        );
    }
}

#[test]
fn pipeline_depth_bounds_requests_on_the_wire() {
    // The server waits until no more requests arrive, records how many it
    // holds, and only then answers them. With depth 2 the client must stop
    // at 2 and read a response before sending the third.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = Vec::new();
        let mut batch_sizes = Vec::new();
        let mut held = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(count) => buf.extend_from_slice(&chunk[..count]),
                Err(_) if !held.is_empty() => {
                    // Quiet for 200 ms: the client is waiting on us.
                    batch_sizes.push(held.len());
                    for request in held.drain(..) {
                        stream
                            .write_all(&encode_response(&canned(&request)).unwrap())
                            .unwrap();
                    }
                    continue;
                }
                Err(_) => continue,
            }
            while let Decoded::Frame { len, message } = decode_request(&buf) {
                buf.drain(..len);
                held.push(message);
            }
        }
        batch_sizes
    });
    let options = ClientOptions {
        pipeline_depth: 2,
        ..options()
    };
    let mut client = Client::connect_with(addr, &options).unwrap();
    for index in 0..5u32 {
        client
            .send(Operation::Put(Entry::new(index.to_le_bytes(), *b"v")))
            .unwrap();
    }
    assert_eq!(client.in_flight(), 5);
    let ids: Vec<u64> = (0..5)
        .map(|_| client.receive().unwrap().request_id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        client.receive(),
        Err(ClientError::NothingInFlight)
    ));
    drop(client);
    let batch_sizes = server.join().unwrap();
    assert!(
        batch_sizes.iter().all(|&size| size <= 2),
        "more than 2 on the wire: {batch_sizes:?}"
    );
    assert_eq!(batch_sizes.iter().sum::<usize>(), 5);
}

#[test]
fn txn_returns_its_outcome_and_validates_first() {
    let (addr, server) = spawn_server(canned);
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let committed = client
        .txn(Txn::new().assert_absent("free").put("a", "1").put("b", "2"))
        .unwrap();
    assert_eq!(
        committed,
        TxnOutcome::Committed(vec![TxnOpResult::Put, TxnOpResult::Put])
    );
    let failed = client
        .txn(
            Txn::new()
                .assert_absent("free")
                .assert_absent("taken")
                .put("a", "1"),
        )
        .unwrap();
    assert!(matches!(
        failed,
        TxnOutcome::AssertionFailed { index: 1, .. }
    ));
    // An empty transaction is refused before it is sent.
    let error = client.txn(Txn::new()).unwrap_err();
    assert_eq!(error.status(), Some(Status::InvalidRequest));
    drop(client);
    let seen = server.join().unwrap();
    assert_eq!(
        seen.len(),
        2,
        "the invalid transaction never reached the server"
    );
}

#[test]
fn one_shot_calls_refuse_while_pipelined_requests_are_unanswered() {
    let (addr, server) = spawn_server(canned);
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    client.send(Operation::Ping).unwrap();
    assert!(matches!(
        client.ping(),
        Err(ClientError::Pipelined { in_flight: 1 })
    ));
    assert_eq!(client.receive().unwrap().outcome, Ok(Reply::Ping));
    client.ping().unwrap();
    drop(client);
    server.join().unwrap();
}

#[test]
fn wrong_response_id_breaks_the_connection() {
    let (addr, server) = spawn_server(|request| Response::ok(request.id + 100, Reply::Ping));
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let error = client.ping().unwrap_err();
    assert!(
        matches!(&error, ClientError::Protocol(message) if message.contains("does not match")),
        "{error:?}"
    );
    assert!(matches!(client.ping(), Err(ClientError::Broken)));
    drop(client);
    server.join().unwrap();
}

#[test]
fn wrong_reply_kind_is_a_protocol_error() {
    let (addr, server) = spawn_server(|request| Response::ok(request.id, Reply::Put));
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let error = client.get(b"k").unwrap_err();
    assert!(
        matches!(&error, ClientError::Protocol(message) if message.contains("Get")),
        "{error:?}"
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn error_with_unknown_request_id_surfaces_its_status() {
    let (addr, server) = spawn_server(|_| Response::error(0, Status::MalformedFrame, "bad frame"));
    let mut client = Client::connect_with(addr.as_str(), &options()).unwrap();
    let error = client.ping().unwrap_err();
    assert_eq!(error.status(), Some(Status::MalformedFrame), "{error:?}");
    assert!(matches!(client.ping(), Err(ClientError::Broken)));
    drop(client);
    server.join().unwrap();
}

#[test]
fn server_closing_mid_stream_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let requests = read_requests(&mut stream, &mut buf).unwrap();
        // Half a response, then close.
        let frame = encode_response(&canned(&requests[0])).unwrap();
        stream.write_all(&frame[..frame.len() / 2]).unwrap();
    });
    let mut client = Client::connect_with(addr, &options()).unwrap();
    assert!(matches!(client.ping(), Err(ClientError::Closed)));
    server.join().unwrap();
}

#[test]
fn connecting_to_a_closed_port_fails() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(2),
        ..options()
    };
    let error = Client::connect_with(("127.0.0.1", port), &options).unwrap_err();
    assert!(
        matches!(&error, ClientError::Connect { addr, .. } if addr.ends_with(&port.to_string())),
        "{error:?}"
    );
}
