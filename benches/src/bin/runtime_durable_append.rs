//! Durable appends per second through the runtime versus a plain blocking pwrite + fdatasync loop.
//!
//! Each mode appends `size`-byte blocks to a fresh O_DIRECT file in /tmp (ext4) for a fixed time and
//! counts appends that were durable when counted. Modes run one after the other in every round (so
//! baseline and runtime alternate), rounds repeat, and the median round is reported with its spread.
//! With `prezeroed`, every mode instead overwrites, circularly, one file that was written with zeros
//! and synced beforehand (how a WAL that recycles pre-zeroed segments writes); with `fresh`, each run
//! appends to a new file, so every fdatasync also commits ext4's journal for the new extents; with
//! `fallocated`, each run writes a new file whose blocks were allocated (fallocate, unwritten
//! extents) but never written, which separates the cost of extending the file from the cost of
//! converting extents.
//! Ring modes use the core's fixed-file table unless marked "plain fd"; "registered" modes write
//! from buffers registered with the ring (WRITE_FIXED).
//! Usage: `cargo run --release -p jube-benches --bin runtime_durable_append -- [fresh|prezeroed|fallocated] [seconds_per_run] [rounds]`

#[path = "../runtime_stats.rs"]
mod runtime_stats;

use jube_engine::storage::{AlignedBuf, Op, OpenMode, Storage, Vfs};
use jube_runtime::{IoBuf, Runtime, UringFile, UringVfs};
use runtime_stats::{stability, summarize};
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BATCH: u64 = 16;
/// Bytes allocated up front for each run in the `fallocated` pattern.
const ALLOCATED_BYTES: u64 = 1 << 30;

thread_local! {
    /// Core 0's registered buffers (a ring registers buffers once), lent to each run.
    static REGISTERED: RefCell<Option<Vec<IoBuf>>> = const { RefCell::new(None) };
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pattern {
    Fresh,
    Prezeroed,
    Fallocated,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    BlockingQd1,
    RingWriteThenSyncQd1,
    RingLinkedQd1,
    RingDsyncQd1,
    RingPlainFdQd1,
    RingRegisteredQd1,
    BlockingBatch,
    RingBatch,
    RingDsyncQd16,
    RingPlainFdBatch,
    RingRegisteredBatch,
}

impl Mode {
    const ALL: [Mode; 11] = [
        Mode::BlockingQd1,
        Mode::RingWriteThenSyncQd1,
        Mode::RingLinkedQd1,
        Mode::RingDsyncQd1,
        Mode::RingPlainFdQd1,
        Mode::RingRegisteredQd1,
        Mode::BlockingBatch,
        Mode::RingBatch,
        Mode::RingDsyncQd16,
        Mode::RingPlainFdBatch,
        Mode::RingRegisteredBatch,
    ];

    fn label(self) -> &'static str {
        match self {
            Mode::BlockingQd1 => "baseline: pwrite + fdatasync, qd1",
            Mode::RingWriteThenSyncQd1 => "ring: write, wait, fdatasync, wait (qd1)",
            Mode::RingLinkedQd1 => "ring: write linked to fdatasync (qd1)",
            Mode::RingDsyncQd1 => "ring: RWF_DSYNC write (qd1)",
            Mode::BlockingBatch => "baseline: 16 pwrites + 1 fdatasync",
            Mode::RingBatch => "ring: 16 writes in flight + 1 fdatasync",
            Mode::RingDsyncQd16 => "ring: 16 RWF_DSYNC writes in flight",
            Mode::RingPlainFdQd1 => "ring: write, wait, fdatasync, wait (qd1), plain fd",
            Mode::RingRegisteredQd1 => "ring: registered-buffer write, fdatasync (qd1)",
            Mode::RingPlainFdBatch => "ring: 16 writes + 1 fdatasync, plain fd",
            Mode::RingRegisteredBatch => "ring: 16 registered-buffer writes + 1 fdatasync",
        }
    }

    fn baseline(self) -> Mode {
        match self {
            Mode::BlockingBatch
            | Mode::RingBatch
            | Mode::RingDsyncQd16
            | Mode::RingPlainFdBatch
            | Mode::RingRegisteredBatch => Mode::BlockingBatch,
            _ => Mode::BlockingQd1,
        }
    }
}

fn blocking(path: &Path, size: usize, batch: u64, run: Duration, wrap: u64) -> f64 {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open O_DIRECT file in /tmp");
    let mut buf = AlignedBuf::zeroed(size);
    buf.fill(0xab);
    let (start, mut offset, mut appends) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < run {
        for _ in 0..batch {
            file.write_all_at(&buf, offset).expect("pwrite");
            offset = (offset + size as u64) % wrap;
        }
        file.sync_data().expect("fdatasync");
        appends += batch;
    }
    appends as f64 / start.elapsed().as_secs_f64()
}

fn ring(file: &mut UringFile, mode: Mode, size: usize, run: Duration, wrap: u64) -> f64 {
    let mut bufs: Vec<AlignedBuf> = (0..BATCH).map(|_| AlignedBuf::zeroed(size)).collect();
    let (start, mut offset, mut appends) = (Instant::now(), 0u64, 0u64);
    let mut out = Vec::new();
    let mut registered = REGISTERED
        .with(|r| r.borrow_mut().take())
        .unwrap_or_default();
    for buf in &mut registered {
        buf.set_len(size);
    }
    while start.elapsed() < run {
        match mode {
            Mode::RingRegisteredQd1 | Mode::RingRegisteredBatch => {
                let count = if mode == Mode::RingRegisteredQd1 {
                    1
                } else {
                    BATCH
                };
                let mut writes = Vec::new();
                for _ in 0..count {
                    writes.push((offset, registered.pop().expect("registered buffer")));
                    offset = (offset + size as u64) % wrap;
                }
                registered.extend(file.write_batch(writes).expect("write"));
                file.sync_data().expect("sync");
                appends += count;
            }
            Mode::RingWriteThenSyncQd1 | Mode::RingPlainFdQd1 => {
                let buf = bufs.pop().expect("buffer");
                bufs.push(file.write_at(offset, buf).expect("write"));
                file.sync_data().expect("sync");
                (offset, appends) = ((offset + size as u64) % wrap, appends + 1);
            }
            Mode::RingLinkedQd1 => {
                let buf = bufs.pop().expect("buffer");
                file.submit_write_then_sync(1, 2, offset, buf)
                    .expect("submit");
                file.wait(2).result.expect("sync");
                let write = file.wait(1);
                write.result.expect("write");
                bufs.push(write.buf.expect("buffer back"));
                (offset, appends) = ((offset + size as u64) % wrap, appends + 1);
            }
            Mode::RingDsyncQd1 => {
                let buf = bufs.pop().expect("buffer");
                file.submit(1, Op::WriteDsync { offset, buf })
                    .expect("submit");
                let done = file.wait(1);
                done.result.expect("write");
                bufs.push(done.buf.expect("buffer back"));
                (offset, appends) = ((offset + size as u64) % wrap, appends + 1);
            }
            Mode::RingBatch | Mode::RingDsyncQd16 | Mode::RingPlainFdBatch => {
                let dsync = mode == Mode::RingDsyncQd16;
                for tag in 0..BATCH {
                    let buf = bufs.pop().expect("buffer");
                    let op = if dsync {
                        Op::WriteDsync { offset, buf }
                    } else {
                        Op::Write { offset, buf }
                    };
                    file.submit(tag, op).expect("submit");
                    offset = (offset + size as u64) % wrap;
                }
                // Wait for any write still in flight, then take every other finished one.
                let mut waiting: Vec<u64> = (0..BATCH).collect();
                while let Some(&tag) = waiting.last() {
                    out.push(file.wait(tag));
                    file.poll(&mut out);
                    for done in out.drain(..) {
                        done.result.expect("write");
                        bufs.push(done.buf.expect("buffer back"));
                        waiting.retain(|t| *t != done.user_data);
                    }
                }
                if !dsync {
                    file.sync_data().expect("sync");
                }
                appends += BATCH;
            }
            Mode::BlockingQd1 | Mode::BlockingBatch => {
                unreachable!("blocking modes do not use the ring")
            }
        }
    }
    REGISTERED.with(|r| *r.borrow_mut() = Some(registered));
    appends as f64 / start.elapsed().as_secs_f64()
}

/// Writes `len` zero bytes to `path` and syncs them, so later writes overwrite allocated blocks.
fn prezero(path: &Path, len: u64) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create");
    let zeros = vec![0u8; 1 << 20];
    for chunk in 0..len / zeros.len() as u64 {
        file.write_all_at(&zeros, chunk * zeros.len() as u64)
            .expect("prezero");
    }
    file.sync_all().expect("sync");
}

/// A new file of `len` allocated (fallocate) but never written bytes.
fn fallocated(dir: &Path, name: &str, len: u64) {
    let mut vfs = UringVfs::open(dir).expect("vfs");
    let mut file = vfs.open(name, OpenMode::CreateNew).expect("create");
    file.allocate(0, len).expect("fallocate");
    file.sync_data().expect("sync");
    drop(file);
    vfs.sync_dir().expect("sync dir");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pattern = match args.get(1).map(String::as_str) {
        Some("prezeroed") => Pattern::Prezeroed,
        Some("fallocated") => Pattern::Fallocated,
        _ => Pattern::Fresh,
    };
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.7);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let run = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir in /tmp");
    let rt = Runtime::builder().cores(1).build().expect("runtime");
    let dir_path = dir.path().to_path_buf();
    let registered = rt
        .block_on(0, move || async move {
            let vfs = UringVfs::open(&dir_path).expect("vfs");
            let bufs = vfs.io_buffers(BATCH as usize, 65536);
            let registered = bufs.iter().all(|b| b.is_registered());
            REGISTERED.with(|r| *r.borrow_mut() = Some(bufs));
            registered
        })
        .expect("core 0 runs");
    println!(
        "features: {:?}; {pattern:?} files; {rounds} rounds of {seconds} s per mode; buffers registered: {registered}",
        rt.features()
    );
    for size in [4096usize, 65536] {
        let wrap = match pattern {
            Pattern::Prezeroed => 256 * size as u64 * BATCH,
            Pattern::Fallocated => ALLOCATED_BYTES,
            Pattern::Fresh => u64::MAX,
        };
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Mode::ALL.len()];
        let mut run_index = 0;
        for _ in 0..rounds {
            for (index, mode) in Mode::ALL.into_iter().enumerate() {
                run_index += 1;
                let name = if pattern == Pattern::Prezeroed {
                    format!("prezeroed-{size}")
                } else {
                    format!("run-{size}-{run_index}")
                };
                let path: PathBuf = dir.path().join(&name);
                match pattern {
                    Pattern::Prezeroed if !path.exists() => prezero(&path, wrap),
                    Pattern::Fallocated => fallocated(dir.path(), &name, ALLOCATED_BYTES),
                    _ => {}
                }
                let rate = match mode {
                    Mode::BlockingQd1 => blocking(&path, size, 1, run, wrap),
                    Mode::BlockingBatch => blocking(&path, size, BATCH, run, wrap),
                    _ => {
                        let dir_path = dir.path().to_path_buf();
                        rt.block_on(0, move || async move {
                            let mut vfs = UringVfs::open(&dir_path).expect("vfs");
                            vfs.set_fixed_files(!matches!(
                                mode,
                                Mode::RingPlainFdQd1 | Mode::RingPlainFdBatch
                            ));
                            let open_mode = if pattern == Pattern::Fresh {
                                OpenMode::CreateNew
                            } else {
                                OpenMode::Existing
                            };
                            let mut file = vfs.open(&name, open_mode).expect("open");
                            assert!(file.is_direct());
                            ring(&mut file, mode, size, run, wrap)
                        })
                        .expect("core 0 runs")
                    }
                };
                samples[index].push(rate);
                if pattern != Pattern::Prezeroed {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        println!("\n| {size} B appends | appends/s (median) | min..max | vs baseline |");
        println!("|---|---|---|---|");
        for (index, mode) in Mode::ALL.into_iter().enumerate() {
            let summary = summarize(&samples[index]);
            let base_index = Mode::ALL
                .iter()
                .position(|m| *m == mode.baseline())
                .expect("baseline");
            let base = summarize(&samples[base_index]).median;
            println!(
                "| {}{} | {:.0} | {:.0}..{:.0} | {:.2}x |",
                mode.label(),
                stability(&summary),
                summary.median,
                summary.min,
                summary.max,
                summary.median / base
            );
        }
    }
}
