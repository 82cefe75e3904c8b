//! WAL group-commit benchmark on a real directory (issue 3), through the blocking `FileVfs` and
//! through the runtime's io_uring `UringVfs` (what jubed's shards use), both with O_DIRECT.
//!
//! For 1, 16, 256 and 4,096 writers in flight (a writer keeps one 100-byte record appended and
//! not yet acknowledged; when the durable LSN covers it, it appends the next), it measures
//! durable appends/s and records per sync under `SyncPolicy::Always`, and, alternating with it
//! in the same run, the raw limit of the disk for the same pattern: a loop of one aligned write
//! of the batch size the WAL reached, followed by fdatasync, over preallocated space (blocking
//! calls, the same for both Vfs). It prints medians of the repeats with their spread, and WAL
//! disk bytes/s as a percentage of raw.
//!
//! How the two Vfs are driven: with `FileVfs` every operation completes inside `submit`, so the
//! loop appends every writer's record, then polls once (the poll writes and syncs the batch);
//! appends and I/O cannot overlap. With `UringVfs` the loop polls after every
//! `POLL_EVERY_APPENDS` appends, as a shard's core polls its WAL between requests: a flush starts
//! as soon as the disk is idle and the records appended meanwhile form the next batch, so appends
//! overlap the write and sync in flight. When every writer waits, the loop does what an idle
//! core of the runtime does: it polls for `IDLE_SPIN` (50 us), then sleeps in `Wal::wait_one`
//! until the flush in flight advances.
//!
//! Segments are released as soon as they are durable (as if checkpoints kept up), so rollover
//! recycles files; the first rollovers still zero-fill new ones.
//!
//! Usage: `cargo run --release -p jube-benches --bin wal_group_commit -- [--secs S] [--repeats N]
//! [--dir DIR] [--vfs file,uring] [--sync-mode dsync|write-then-sync] [--ring-raw]
//! [--writers 1,16,256,4096]` (defaults:
//! 2 s per measurement, 3 repeats, /tmp, both, dsync; `--ring-raw` adds a raw loop of
//! one RWF_DSYNC write at a time through io_uring, the ceiling of a flush through the ring).
//! No assertions on timing: a benchmark is not a test.

use clap::Parser;
use jube_engine::clock::SystemClock;
use jube_engine::storage::file::FileVfs;
use jube_engine::storage::{AlignedBuf, Op, OpenMode, Storage, Vfs, IO_ALIGN};
use jube_engine::wal::{SyncMode, Wal, WalConfig};
use jube_runtime::constants::IDLE_SPIN;
use jube_runtime::UringVfs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WRITERS: [u64; 4] = [1, 16, 256, 4096];
const RECORD_BYTES: usize = 100;
/// Appends between two polls of the WAL through io_uring (a shard polls between requests).
const POLL_EVERY_APPENDS: u64 = 64;
/// Size of the raw loop's preallocated file.
const RAW_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Parser, Debug)]
#[command(
    about = "WAL group commit vs the raw write+fdatasync limit, through FileVfs and io_uring"
)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    secs: f64,
    /// Repeats of each (WAL, raw) pair; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Directory on the disk to measure (a scratch subdirectory is created and removed).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
    /// Which Vfs to drive the WAL through: file, uring, or both (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("file"), String::from("uring")])]
    vfs: Vec<String>,
    /// How the WAL makes a flush durable: `dsync` (the default, as in jubed: one RWF_DSYNC
    /// write) or `write-then-sync` (a write, then an fdatasync). The raw loop is write +
    /// fdatasync either way.
    #[arg(long, default_value = "dsync")]
    sync_mode: String,
    /// Also measure, alternating with the others, a raw loop of one RWF_DSYNC write at a time
    /// through io_uring at the same size: the ceiling of a flush through the ring, which tells
    /// the WAL's own cost from the kernel path's.
    #[arg(long)]
    ring_raw: bool,
    /// Writer counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = WRITERS)]
    writers: Vec<u64>,
}

struct WalRun {
    appends_per_s: f64,
    records_per_sync: f64,
    disk_bytes_per_sync: f64,
    disk_bytes_per_s: f64,
}

/// Runs `writers` closed-loop writers for `secs`; `poll_every` appends between polls (None: poll
/// once after every writer has appended).
fn run_wal<V: Vfs>(
    wal: &mut Wal<V, SystemClock>,
    writers: u64,
    poll_every: Option<u64>,
    secs: f64,
) -> WalRun {
    let payload = [0x5au8; RECORD_BYTES];
    let before = wal.stats();
    let start_acked = wal.ack_lsn();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let batch = poll_every.unwrap_or(u64::MAX);
    while Instant::now() < deadline {
        let mut appended = 0;
        while wal.next_lsn() - 1 - wal.ack_lsn() < writers && appended < batch {
            wal.append(1, &payload)
                .expect("append within the buffer bound");
            appended += 1;
        }
        wal.poll().expect("poll");
        if poll_every.is_some()
            && wal.next_lsn() - 1 - wal.ack_lsn() >= writers
            && wal.io_in_flight()
        {
            // Every writer waits for the flush in flight: do what an idle core of the runtime
            // does, spin on the ring for `IDLE_SPIN`, then sleep in it.
            let acked = wal.ack_lsn();
            let spin_until = Instant::now() + IDLE_SPIN;
            while wal.ack_lsn() == acked && wal.io_in_flight() && Instant::now() < spin_until {
                std::hint::spin_loop();
                wal.poll().expect("poll");
            }
            if wal.ack_lsn() == acked && wal.io_in_flight() {
                wal.wait_one().expect("wait");
                wal.poll().expect("poll");
            }
        }
        if wal.durable_lsn() > 0 && wal.stats().segments_count > 2 {
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

/// How a raw loop makes each write durable.
#[derive(Clone, Copy)]
enum RawSync {
    /// A write, then an fdatasync (blocking helpers).
    WriteThenSync,
    /// One RWF_DSYNC write, waited for.
    Dsync,
}

/// A loop of one `write_bytes` write at a time, made durable as `sync` says, over a preallocated
/// file: (syncs/s, bytes/s).
fn run_raw(file: &mut impl Storage, write_bytes: usize, secs: f64, sync: RawSync) -> (f64, f64) {
    let mut buf = AlignedBuf::zeroed(write_bytes);
    let mut offset = 0u64;
    let mut count = 0u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        if offset + write_bytes as u64 > RAW_FILE_BYTES {
            offset = 0;
        }
        buf = match sync {
            RawSync::WriteThenSync => {
                let buf = file.write_at(offset, buf).expect("raw write");
                file.sync_data().expect("raw fdatasync");
                buf
            }
            RawSync::Dsync => {
                file.submit(1, Op::WriteDsync { offset, buf })
                    .expect("raw RWF_DSYNC write");
                let completion = file.wait(1);
                completion.result.expect("raw RWF_DSYNC write");
                completion.buf.expect("a write returns its buffer")
            }
        };
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

/// A preallocated, written and synced file for a raw loop.
fn raw_file<V: Vfs>(mut raw_vfs: V) -> V::File {
    let mut raw = raw_vfs.open("raw", OpenMode::CreateNew).expect("raw file");
    let mut chunk = Some(AlignedBuf::zeroed(1024 * 1024));
    for offset in (0..RAW_FILE_BYTES).step_by(1024 * 1024) {
        chunk = Some(
            raw.write_at(offset, chunk.take().expect("buffer"))
                .expect("prealloc"),
        );
    }
    raw.sync_data().expect("sync");
    raw
}

fn measure<V: Vfs>(
    name: &str,
    vfs: V,
    raw: &mut <FileVfs as Vfs>::File,
    mut ring_raw: Option<&mut <UringVfs as Vfs>::File>,
    poll_every: Option<u64>,
    args: &Args,
) {
    let mut config = WalConfig::new(0);
    config.sync_mode = match args.sync_mode.as_str() {
        "write-then-sync" => SyncMode::WriteThenSync,
        "dsync" => SyncMode::WriteDsync,
        other => {
            eprintln!("unknown --sync-mode {other}: expected write-then-sync or dsync");
            std::process::exit(2);
        }
    };
    let (mut wal, _) = Wal::open(vfs, SystemClock::new(), config, 1, |_| Ok(())).expect("open");
    println!(
        "\n{name}, sync mode {}: {} s per run, {} repeats, {RECORD_BYTES}-byte records, raw O_DIRECT: {}",
        args.sync_mode,
        args.secs,
        args.repeats,
        raw.is_direct()
    );
    run_wal(&mut wal, 16, poll_every, 0.3); // warm-up; lets the spare segment finish preallocating
    let ring_header = if ring_raw.is_some() {
        (
            " ring RWF_DSYNC raw MB/s (spread) | WAL % of ring raw |",
            "---|---|",
        )
    } else {
        ("", "")
    };
    println!("| writers in flight | durable appends/s (spread) | records/sync | WAL bytes/sync | WAL MB/s | raw syncs/s at that size | raw MB/s (spread) | WAL % of raw |{}", ring_header.0);
    println!("|---|---|---|---|---|---|---|---|{}", ring_header.1);
    for &writers in &args.writers {
        let (mut appends, mut per_sync, mut bytes_sync, mut wal_mbs, mut raw_syncs, mut raw_mbs) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut ring_mbs = vec![];
        for _ in 0..args.repeats {
            let run = run_wal(&mut wal, writers, poll_every, args.secs);
            let size =
                ((run.disk_bytes_per_sync as usize).div_ceil(IO_ALIGN) * IO_ALIGN).max(IO_ALIGN);
            let (syncs, bytes) = run_raw(raw, size, args.secs, RawSync::WriteThenSync);
            appends.push(run.appends_per_s);
            per_sync.push(run.records_per_sync);
            bytes_sync.push(run.disk_bytes_per_sync);
            wal_mbs.push(run.disk_bytes_per_s / 1e6);
            raw_syncs.push(syncs);
            raw_mbs.push(bytes / 1e6);
            if let Some(ring) = ring_raw.as_deref_mut() {
                ring_mbs.push(run_raw(ring, size, args.secs, RawSync::Dsync).1 / 1e6);
            }
            wal.release_below(wal.durable_lsn()).expect("release");
        }
        let ratio: Vec<f64> = wal_mbs
            .iter()
            .zip(&raw_mbs)
            .map(|(w, r)| w / r * 100.0)
            .collect();
        let ring_cells = if ring_mbs.is_empty() {
            String::new()
        } else {
            let ring_ratio: Vec<f64> = wal_mbs
                .iter()
                .zip(&ring_mbs)
                .map(|(w, r)| w / r * 100.0)
                .collect();
            let (g, g_spread) = median_spread(ring_mbs);
            let (gpct, _) = median_spread(ring_ratio);
            format!(" {g:.1} ({g_spread:.0}%) | {gpct:.0}% |")
        };
        let (a, a_spread) = median_spread(appends);
        let (p, _) = median_spread(per_sync);
        let (b, _) = median_spread(bytes_sync);
        let (w, _) = median_spread(wal_mbs);
        let (rs, _) = median_spread(raw_syncs);
        let (r, r_spread) = median_spread(raw_mbs);
        let (pct, _) = median_spread(ratio);
        println!("| {writers} | {a:.0} ({a_spread:.0}%) | {p:.1} | {b:.0} | {w:.1} | {rs:.0} | {r:.1} ({r_spread:.0}%) | {pct:.0}% |{ring_cells}");
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
}

fn main() {
    let args = Args::parse();
    let dir = args
        .dir
        .join(format!("jube-walbench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("raw")).expect("bench directory");
    let mut raw = raw_file(FileVfs::open(dir.join("raw"), true).expect("raw directory"));
    let mut ring_raw = args.ring_raw.then(|| {
        std::fs::create_dir_all(dir.join("ring-raw")).expect("bench directory");
        raw_file(UringVfs::open(dir.join("ring-raw")).expect("ring raw directory"))
    });
    for name in &args.vfs {
        let wal_dir = dir.join(format!("wal-{name}"));
        std::fs::create_dir_all(&wal_dir).expect("wal directory");
        match name.as_str() {
            "file" => {
                let vfs = FileVfs::open(&wal_dir, true).expect("FileVfs");
                measure(
                    "FileVfs (blocking)",
                    vfs,
                    &mut raw,
                    ring_raw.as_mut(),
                    None,
                    &args,
                );
            }
            "uring" => {
                let vfs = UringVfs::open(&wal_dir).expect("UringVfs");
                let label = format!("UringVfs (io_uring, poll every {POLL_EVERY_APPENDS} appends)");
                measure(
                    &label,
                    vfs,
                    &mut raw,
                    ring_raw.as_mut(),
                    Some(POLL_EVERY_APPENDS),
                    &args,
                );
            }
            other => {
                eprintln!("unknown --vfs {other}: expected file or uring");
                std::process::exit(2);
            }
        }
    }
    drop(raw);
    drop(ring_raw);
    std::fs::remove_dir_all(&dir).expect("clean up the bench directory");
}
