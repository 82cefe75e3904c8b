//! WAL group-commit benchmark on a real directory through `FileVfs` (O_DIRECT when possible).
//!
//! For 1, 16, 256 and 4,096 writers in flight (a writer keeps one 100-byte record appended and
//! not yet acknowledged; when the durable LSN covers it, it appends the next), it measures
//! durable appends/s and records per sync under `SyncPolicy::Always`, and, alternating with it
//! in the same run, the raw limit of the disk for the same pattern: a loop of one aligned write
//! of the batch size the WAL reached, followed by fdatasync, over preallocated space. It prints
//! medians of the repeats with their spread, and WAL disk bytes/s as a percentage of raw.
//! Segments are released as soon as they are durable (as if checkpoints kept up), so rollover
//! recycles files; the first rollovers still zero-fill new ones.
//!
//! Run (release; libtest runs this bench's single test in bench mode with `--test`):
//! `cargo bench -p jube-engine --bench wal_group_commit -- --test --nocapture`
//! Environment: WAL_BENCH_DIR (default /tmp), WAL_BENCH_SECS per measurement (default 1),
//! WAL_BENCH_REPEATS (default 3). No assertions on timing: a benchmark is not a test.

use jube_engine::clock::SystemClock;
use jube_engine::storage::file::FileVfs;
use jube_engine::storage::{AlignedBuf, OpenMode, Storage, Vfs, IO_ALIGN};
use jube_engine::wal::{Wal, WalConfig};
use std::time::{Duration, Instant};

const WRITERS: [u64; 4] = [1, 16, 256, 4096];
const RECORD_BYTES: usize = 100;

struct WalRun {
    appends_per_s: f64,
    records_per_sync: f64,
    disk_bytes_per_sync: f64,
    disk_bytes_per_s: f64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_wal(wal: &mut Wal<FileVfs, SystemClock>, writers: u64, secs: f64) -> WalRun {
    let payload = [0x5au8; RECORD_BYTES];
    let before = wal.stats();
    let start_acked = wal.ack_lsn();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        while wal.next_lsn() - 1 - wal.ack_lsn() < writers {
            wal.append(1, &payload)
                .expect("append within the buffer bound");
        }
        wal.poll().expect("poll");
        if wal.stats().segments_count > 2 {
            // A shard whose checkpoints keep up releases segments once they are durable, so
            // rollover reuses them instead of zero-filling new files (extra I/O).
            wal.release_below(wal.durable_lsn()).expect("release");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = wal.stats();
    let acked = (wal.ack_lsn() - start_acked) as f64;
    let syncs = (after.syncs_count - before.syncs_count).max(1) as f64;
    let bytes = (after.bytes_written - before.bytes_written) as f64;
    WalRun {
        appends_per_s: acked / elapsed,
        records_per_sync: acked / syncs,
        disk_bytes_per_sync: bytes / syncs,
        disk_bytes_per_s: bytes / elapsed,
    }
}

/// Write + fdatasync loop of `write_bytes` over a preallocated file: (syncs/s, bytes/s).
fn run_raw(file: &mut impl Storage, file_bytes: u64, write_bytes: usize, secs: f64) -> (f64, f64) {
    let mut buf = AlignedBuf::zeroed(write_bytes);
    let mut offset = 0u64;
    let mut count = 0u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if offset + write_bytes as u64 > file_bytes {
            offset = 0;
        }
        buf = file.write_at(offset, buf).expect("raw write");
        file.sync_data().expect("raw fdatasync");
        offset += write_bytes as u64;
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        count as f64 / elapsed,
        (count * write_bytes as u64) as f64 / elapsed,
    )
}

fn median_spread(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let spread = (values[values.len() - 1] - values[0]) / median.max(f64::MIN_POSITIVE) * 100.0;
    (median, spread)
}

#[test]
fn wal_group_commit() {
    let root = std::path::PathBuf::from(env_or("WAL_BENCH_DIR", "/tmp".to_string()));
    let dir = root.join(format!("jube-walbench-{}", std::process::id()));
    let secs: f64 = env_or("WAL_BENCH_SECS", 1.0);
    let repeats: usize = env_or("WAL_BENCH_REPEATS", 3);
    let vfs = FileVfs::open(dir.join("wal"), true).expect("bench directory");
    let config = WalConfig::new(0);
    let (mut wal, _) =
        Wal::open(vfs, SystemClock::new(), config.clone(), 1, |_| Ok(())).expect("open");
    let mut raw_vfs = FileVfs::open(dir.join("raw"), true).expect("raw directory");
    let mut raw = raw_vfs.open("raw", OpenMode::CreateNew).expect("raw file");
    let raw_bytes = 64 * 1024 * 1024u64;
    let chunk = AlignedBuf::zeroed(1024 * 1024);
    let mut chunk = Some(chunk);
    for offset in (0..raw_bytes).step_by(1024 * 1024) {
        chunk = Some(
            raw.write_at(offset, chunk.take().expect("buffer"))
                .expect("prealloc"),
        );
    }
    raw.sync_data().expect("sync");
    println!(
        "dir {} (O_DIRECT: {}), {secs} s per run, {repeats} repeats, {RECORD_BYTES}-byte records",
        dir.display(),
        raw.is_direct()
    );
    run_wal(&mut wal, 16, 0.3); // warm-up; lets the spare segment finish preallocating
    println!("| writers in flight | durable appends/s (spread) | records/sync | WAL bytes/sync | WAL MB/s | raw syncs/s at that size | raw MB/s | WAL % of raw |");
    println!("|---|---|---|---|---|---|---|---|");
    for writers in WRITERS {
        let (mut appends, mut per_sync, mut bytes_sync, mut wal_mbs, mut raw_syncs, mut raw_mbs) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..repeats {
            let run = run_wal(&mut wal, writers, secs);
            let size =
                ((run.disk_bytes_per_sync as usize).div_ceil(IO_ALIGN) * IO_ALIGN).max(IO_ALIGN);
            let (syncs, bytes) = run_raw(&mut raw, raw_bytes, size, secs);
            appends.push(run.appends_per_s);
            per_sync.push(run.records_per_sync);
            bytes_sync.push(run.disk_bytes_per_sync);
            wal_mbs.push(run.disk_bytes_per_s / 1e6);
            raw_syncs.push(syncs);
            raw_mbs.push(bytes / 1e6);
            wal.release_below(wal.durable_lsn()).expect("release");
        }
        let ratio: Vec<f64> = wal_mbs
            .iter()
            .zip(&raw_mbs)
            .map(|(w, r)| w / r * 100.0)
            .collect();
        let (a, a_spread) = median_spread(appends);
        let (p, _) = median_spread(per_sync);
        let (b, _) = median_spread(bytes_sync);
        let (w, _) = median_spread(wal_mbs);
        let (rs, _) = median_spread(raw_syncs);
        let (r, r_spread) = median_spread(raw_mbs);
        let (pct, _) = median_spread(ratio);
        println!("| {writers} | {a:.0} ({a_spread:.0}%) | {p:.1} | {b:.0} | {w:.1} | {rs:.0} | {r:.1} ({r_spread:.0}%) | {pct:.0}% |");
    }
    let stats = wal.stats();
    println!(
        "stats: syncs {}, flushes {}, rollovers {}, recycled {}, created {}, stalls {}",
        stats.syncs_count,
        stats.flushes_count,
        stats.rollovers_count,
        stats.segments_recycled,
        stats.segments_created,
        stats.rollover_stalls
    );
    drop(wal);
    drop(raw);
    std::fs::remove_dir_all(&dir).expect("clean up the bench directory");
}
