//! RESP request parsing (`jube_protocol::resp::decode`): the first step of every request on the
//! RESP listener. Shapes match `bench-vs-redis`: 16-byte keys, 100-byte values, and a pipeline of
//! 16 SETs parsed one request at a time as the connection loop does.
//!
//! Run: `cargo bench -p jube-benches --bench resp_decode`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jube_protocol::resp::{decode, encode_command, Decoded};
use std::time::Duration;

const KEY: &[u8; 16] = b"k000000000012345";
const PIPELINE: usize = 16;

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(args, &mut out);
    out
}

/// Parses every request in `buf`; returns how many.
fn decode_all(mut buf: &[u8]) -> usize {
    let mut count = 0;
    while !buf.is_empty() {
        match decode(buf) {
            Decoded::Command { len, args } => {
                black_box(args);
                buf = &buf[len..];
                count += 1;
            }
            other => panic!("not a request: {other:?}"),
        }
    }
    count
}

fn resp(c: &mut Criterion) {
    let value = vec![b'x'; 100];
    let set = command(&[b"SET", KEY, &value]);
    let get = command(&[b"GET", KEY]);
    let pipeline: Vec<u8> = (0..PIPELINE).flat_map(|_| set.iter().copied()).collect();
    let mut group = c.benchmark_group("resp_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_100B", |b| b.iter(|| decode_all(black_box(&set))));
    group.bench_function("get", |b| b.iter(|| decode_all(black_box(&get))));
    group.bench_function("inline_ping", |b| {
        b.iter(|| decode_all(black_box(b"PING\r\n")))
    });
    group.throughput(Throughput::Elements(PIPELINE as u64));
    group.bench_function("set_100B_pipeline_16", |b| {
        b.iter(|| decode_all(black_box(&pipeline)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = resp
}
criterion_main!(benches);
