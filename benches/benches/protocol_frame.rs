//! Native frame encode and decode (`jube_protocol::frame`): the per-request cost the server pays
//! on every native request (decode the request, encode the response) and the client pays the other
//! way. Shapes match `bench-vs-redis`: a 16-byte key and a 100-byte value.
//!
//! Run: `cargo bench -p jube-benches --bench protocol_frame`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jube_protocol::{
    decode_request, decode_response, encode_request, encode_response, Decoded, Entry, Get,
    GetReply, Operation, Reply, Request, Response,
};
use std::time::Duration;

const KEY: &[u8; 16] = b"k000000000012345";
const VALUE_BYTES: usize = 100;

fn put_request() -> Request {
    Request {
        id: 42,
        op: Operation::Put(Entry::new(KEY.to_vec(), vec![0xab; VALUE_BYTES])),
    }
}

fn get_request() -> Request {
    Request {
        id: 43,
        op: Operation::Get(Get {
            key: KEY.to_vec(),
            with_version: false,
            with_ttl: false,
        }),
    }
}

fn get_response() -> Response {
    Response {
        request_id: 43,
        outcome: Ok(Reply::Get(GetReply {
            value: vec![0xab; VALUE_BYTES],
            version: None,
            ttl_remaining_ms: None,
        })),
    }
}

fn frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    let put = put_request();
    let get = get_request();
    let reply = get_response();
    group.bench_function("encode_request/put_100B", |b| {
        b.iter(|| encode_request(black_box(&put)).expect("encodes"));
    });
    group.bench_function("encode_request/get", |b| {
        b.iter(|| encode_request(black_box(&get)).expect("encodes"));
    });
    group.bench_function("encode_response/get_100B", |b| {
        b.iter(|| encode_response(black_box(&reply)).expect("encodes"));
    });
    let put_bytes = encode_request(&put).expect("encodes");
    let get_bytes = encode_request(&get).expect("encodes");
    let reply_bytes = encode_response(&reply).expect("encodes");
    group.bench_function("decode_request/put_100B", |b| {
        b.iter(|| match decode_request(black_box(&put_bytes)) {
            Decoded::Frame { len, message } => (len, message),
            other => panic!("not a frame: {other:?}"),
        });
    });
    group.bench_function("decode_request/get", |b| {
        b.iter(|| match decode_request(black_box(&get_bytes)) {
            Decoded::Frame { len, message } => (len, message),
            other => panic!("not a frame: {other:?}"),
        });
    });
    group.bench_function("decode_response/get_100B", |b| {
        b.iter(|| match decode_response(black_box(&reply_bytes)) {
            Decoded::Frame { len, message } => (len, message),
            other => panic!("not a frame: {other:?}"),
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = frame
}
criterion_main!(benches);
