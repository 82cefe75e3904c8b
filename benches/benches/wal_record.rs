//! WAL record encoding (`jube_engine::wal::record::encode_record`): header, payload copy and
//! CRC32C for every durable write, on the shard's core, before the group commit. Payloads of
//! 128 bytes (about a 16-byte key and a 100-byte value with the engine's framing), 1 KiB and
//! 16 KiB, appended into a reused buffer as the WAL writer does.
//!
//! Run: `cargo bench -p jube-benches --bench wal_record`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jube_engine::wal::record::encode_record;
use std::time::Duration;

/// A non-zero record type (0 is reserved for padding).
const RECORD_TYPE: u8 = 1;
/// Records encoded into one buffer before it is cleared, as in one group commit.
const RECORDS_PER_BUFFER: u64 = 256;

fn wal_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_record_encode");
    for payload_bytes in [128usize, 1024, 16 * 1024] {
        let payload = vec![0x5a; payload_bytes];
        let mut out = Vec::with_capacity((payload_bytes + 64) * RECORDS_PER_BUFFER as usize);
        group.throughput(Throughput::Bytes(payload_bytes as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(payload_bytes),
            &payload,
            |b, payload| {
                let mut lsn = 1u64;
                b.iter(|| {
                    if lsn.is_multiple_of(RECORDS_PER_BUFFER) {
                        out.clear();
                    }
                    encode_record(&mut out, 7, lsn, lsn - 1, RECORD_TYPE, black_box(payload));
                    lsn += 1;
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = wal_record
}
criterion_main!(benches);
