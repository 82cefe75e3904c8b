//! SimDisk: an in-memory disk that is deterministic from a seed and injects the faults a real
//! disk and kernel can produce, so that crash tests can explore them on purpose.
//!
//! # Model
//! Each file is an inode with two images: the **live** image (what reads see) and the **durable**
//! image (what survives a crash). A completed write changes the live image at once and joins the
//! inode's list of *unsynced* writes. A `SyncData` records, when it is *submitted*, the last write
//! that had completed; when the sync completes, exactly those writes (and size changes) move to the
//! durable image, in completion order. Writes still in flight or completed after the sync was
//! submitted are not covered: io_uring does not order operations, and neither do we.
//! A `WriteDsync` is durable when it completes. Operations complete in a seeded random order:
//! each `poll` completes every in-flight operation of that file with probability
//! `FaultConfig::complete_per_poll_percent`; `wait` completes the one asked for.
//!
//! The directory is modelled the same way: creating, removing and renaming files change the live
//! namespace at once and the durable one only at `sync_dir` of that directory. Creating a
//! subdirectory is durable at once (as `Vfs::subdir` promises).
//!
//! # Faults
//! On a simulated [`SimDisk::crash`], every unsynced write meets one fate, drawn by weight:
//! - **kept**: it reached the disk whole;
//! - **dropped**: it never reached the disk;
//! - **torn**: only a prefix of its sectors ([`SECTOR_SIZE`]) reached the disk;
//! - **garbled**: it reached the disk, but one of its sectors holds random bytes.
//!
//! Writes still in flight at the crash are treated as unsynced writes (they may or may not have
//! happened); reads and syncs in flight are forgotten. Unsynced size changes are kept or dropped.
//! Each directory's unsynced namespace changes survive as a random prefix (the kernel may have
//! committed some of them). Every handle opened before the crash then fails with `Stale`.
//!
//! Without a crash, while running:
//! - **EIO on write**: the write fails; a random subset of its sectors may still have landed in the
//!   live image (unsynced), as with a real failed write.
//! - **EIO on sync**: the sync fails and makes nothing durable.
//! - **Corrupted read**: one byte of the returned buffer is flipped (the media is unchanged).
//! - **ENOSPC**: a write or size change that would take the total of all files past
//!   `capacity_bytes` fails with `NoSpace` and changes nothing.
//!
//! - **Power cut** ([`SimDisk::cut_power_after`]): after a given number of further operations,
//!   every operation and directory change fails with `Stale` until [`SimDisk::crash`] reboots
//!   the disk. With it a test can crash the engine at *any* point: inside a group commit, between
//!   a write and its sync, during a segment rollover, a checkpoint, or recovery itself.
//!
//! Probabilities are given per million operations. Tests can also flip bytes of the durable image
//! directly ([`SimDisk::flip_byte`]) to model media corruption.
//!
//! Every random choice comes from one ChaCha8 generator seeded at construction, so a test that
//! prints its seed can be replayed exactly.

use super::{
    check_aligned, AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs,
    SECTOR_SIZE,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// The most operations one simulated file accepts in flight (mirrors a ring's depth).
pub const SIM_IN_FLIGHT_MAX: usize = 4096;

/// Which faults the simulated disk injects, and how often.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Weight of "kept" among crash fates of an unsynced write.
    pub crash_keep_weight: u32,
    /// Weight of "dropped".
    pub crash_drop_weight: u32,
    /// Weight of "torn at a sector boundary".
    pub crash_torn_weight: u32,
    /// Weight of "garbled sector".
    pub crash_garble_weight: u32,
    /// Probability per million that a write fails with EIO.
    pub write_eio_ppm: u32,
    /// Probability per million that a sync, or the sync half of an RWF_DSYNC write, fails with
    /// EIO.
    pub sync_eio_ppm: u32,
    /// Probability per million that a read returns one flipped byte.
    pub read_corrupt_ppm: u32,
    /// Total bytes all files may hold; past it writes fail with ENOSPC.
    pub capacity_bytes: u64,
    /// Chance, in percent, that `poll` completes a given in-flight operation.
    pub complete_per_poll_percent: u32,
}

impl FaultConfig {
    /// A perfect disk: no faults, every unsynced write kept at a crash, operations complete at
    /// the first poll. Crashes still forget in-flight reads and unsynced directory changes.
    pub fn none() -> FaultConfig {
        FaultConfig {
            crash_keep_weight: 1,
            crash_drop_weight: 0,
            crash_torn_weight: 0,
            crash_garble_weight: 0,
            write_eio_ppm: 0,
            sync_eio_ppm: 0,
            read_corrupt_ppm: 0,
            capacity_bytes: u64::MAX,
            complete_per_poll_percent: 100,
        }
    }

    /// Crash faults only (keep, drop, tear, garble in equal measure) and random completion
    /// order; no errors while running. The default for crash-recovery model tests.
    pub fn crashes() -> FaultConfig {
        FaultConfig {
            crash_keep_weight: 1,
            crash_drop_weight: 1,
            crash_torn_weight: 1,
            crash_garble_weight: 1,
            complete_per_poll_percent: 50,
            ..FaultConfig::none()
        }
    }
}

/// Counters a test can use to check how the engine drove the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub reads: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub syncs: u64,
    pub dsync_writes: u64,
    pub crashes: u64,
    pub injected_write_errors: u64,
    pub injected_sync_errors: u64,
    pub injected_read_corruptions: u64,
    pub injected_no_space: u64,
}

type InodeId = u64;

#[derive(Debug)]
enum Change {
    Write {
        offset: u64,
        data: Vec<u8>,
        forced: bool,
    },
    Resize {
        size: u64,
    },
}

#[derive(Debug)]
struct Unsynced {
    seq: u64,
    change: Change,
}

#[derive(Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

impl Inode {
    /// Moves forced (dsync) writes at the head of the unsynced list into the durable image.
    fn drain_forced_prefix(&mut self) {
        while let Some(first) = self.unsynced.first() {
            if !matches!(first.change, Change::Write { forced: true, .. }) {
                break;
            }
            let entry = self.unsynced.remove(0);
            apply(&mut self.durable, &entry.change);
        }
    }
}

fn apply(image: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data, .. } => write_into(image, *offset, data),
        Change::Resize { size } => image.resize(to_usize(*size), 0),
    }
}

fn write_into(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).expect("simulated file offsets fit in memory")
}

#[derive(Debug, Clone)]
enum DirOp {
    Link { name: String, inode: InodeId },
    Unlink { name: String },
    Rename { from: String, to: String },
}

#[derive(Debug)]
struct InFlight {
    inode: InodeId,
    path: String,
    user_data: u64,
    op: Op,
    /// For a sync: the last completion sequence number it covers.
    covers_seq: u64,
}

#[derive(Debug)]
struct DiskState {
    rng: ChaCha8Rng,
    faults: FaultConfig,
    epoch: u64,
    next_inode: InodeId,
    completion_seq: u64,
    inodes: BTreeMap<InodeId, Inode>,
    /// Directory path -> (name -> inode), as reads see it.
    live_dirs: BTreeMap<String, BTreeMap<String, InodeId>>,
    /// Directory path -> (name -> inode), as a crash leaves it.
    durable_dirs: BTreeMap<String, BTreeMap<String, InodeId>>,
    /// Directory path -> namespace changes since its last sync.
    dir_logs: BTreeMap<String, Vec<DirOp>>,
    in_flight: Vec<InFlight>,
    done: BTreeMap<InodeId, Vec<Completion>>,
    stats: SimStats,
    /// Operations left before the power goes out (None: no cut scheduled).
    power_left: Option<u64>,
}

/// A simulated disk; clones share it. See the module doc for the fault model.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Rc<RefCell<DiskState>>,
}

impl SimDisk {
    /// A new empty disk whose every random choice derives from `seed`.
    pub fn new(seed: u64, faults: FaultConfig) -> SimDisk {
        let mut dirs = BTreeMap::new();
        dirs.insert(String::new(), BTreeMap::new());
        let state = DiskState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            epoch: 0,
            next_inode: 1,
            completion_seq: 0,
            inodes: BTreeMap::new(),
            live_dirs: dirs.clone(),
            durable_dirs: dirs,
            dir_logs: BTreeMap::new(),
            in_flight: Vec::new(),
            done: BTreeMap::new(),
            stats: SimStats::default(),
            power_left: None,
        };
        SimDisk {
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// The root directory of the disk.
    pub fn root(&self) -> SimVfs {
        SimVfs {
            disk: self.clone(),
            dir: String::new(),
            location: "sim:/".to_string(),
        }
    }

    /// Replaces the fault configuration (e.g. to turn errors on after set-up).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.borrow_mut().faults = faults;
    }

    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats.clone()
    }

    /// Simulates power loss: see the module doc for what survives. Handles opened before the
    /// crash fail with `Stale` afterwards; open the files again through [`SimDisk::root`].
    pub fn crash(&self) {
        self.state.borrow_mut().crash();
    }

    /// Cuts the power after `ops` more operations (reads, writes, syncs and directory changes):
    /// from then on everything fails with `Stale` until [`SimDisk::crash`].
    pub fn cut_power_after(&self, ops: u64) {
        self.state.borrow_mut().power_left = Some(ops);
    }

    /// Cancels a scheduled power cut that has not happened yet (one that has stays until
    /// [`SimDisk::crash`]).
    pub fn cancel_power_cut(&self) {
        let mut state = self.state.borrow_mut();
        if state.power_left != Some(0) {
            state.power_left = None;
        }
    }

    /// Whether a scheduled power cut has happened.
    pub fn power_is_out(&self) -> bool {
        self.state.borrow().power_left == Some(0)
    }

    /// Flips the bits of one byte of `path` (a '/'-separated path from the root) in both images,
    /// as media corruption would. Returns false if the file or offset does not exist.
    pub fn flip_byte(&self, path: &str, offset: u64) -> bool {
        let mut state = self.state.borrow_mut();
        let Some(inode) = state.lookup_live(path) else {
            return false;
        };
        let file = state.inodes.get_mut(&inode).expect("linked inodes exist");
        let index = to_usize(offset);
        let mut flipped = false;
        for image in [&mut file.live, &mut file.durable] {
            if let Some(byte) = image.get_mut(index) {
                *byte ^= 0xff;
                flipped = true;
            }
        }
        flipped
    }

    /// The durable bytes of `path`, as a crash now would leave them if every unsynced write were
    /// dropped.
    pub fn durable_image(&self, path: &str) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let inode = state.lookup_live(path)?;
        state.inodes.get(&inode).map(|file| file.durable.clone())
    }
}

fn split_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl DiskState {
    fn lookup_live(&self, path: &str) -> Option<InodeId> {
        let (dir, name) = split_path(path);
        self.live_dirs.get(dir)?.get(name).copied()
    }

    fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000u32) < ppm
    }

    fn live_total(&self) -> u64 {
        self.inodes
            .values()
            .map(|inode| inode.live.len() as u64)
            .sum()
    }

    /// Counts one operation against a scheduled power cut; Err once the power is out.
    fn spend_power(&mut self, path: &str) -> Result<(), IoError> {
        match &mut self.power_left {
            Some(0) => Err(IoError::new(
                IoErrorKind::Stale,
                path,
                None,
                "the power is out",
            )),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn crash(&mut self) {
        self.stats.crashes += 1;
        self.power_left = None;
        // Writes in flight may or may not have reached the disk: treat them as unsynced.
        let in_flight = std::mem::take(&mut self.in_flight);
        for op in in_flight {
            if let Op::Write { offset, buf } | Op::WriteDsync { offset, buf } = op.op {
                self.completion_seq += 1;
                let seq = self.completion_seq;
                if let Some(inode) = self.inodes.get_mut(&op.inode) {
                    let change = Change::Write {
                        offset,
                        data: buf.to_vec(),
                        forced: false,
                    };
                    inode.unsynced.push(Unsynced { seq, change });
                }
            }
        }
        self.done.clear();
        let ids: Vec<InodeId> = self.inodes.keys().copied().collect();
        for id in ids {
            let unsynced = std::mem::take(&mut self.inodes.get_mut(&id).expect("listed").unsynced);
            let mut durable =
                std::mem::take(&mut self.inodes.get_mut(&id).expect("listed").durable);
            for entry in unsynced {
                self.apply_with_fate(&mut durable, entry.change);
            }
            let inode = self.inodes.get_mut(&id).expect("listed");
            inode.live = durable.clone();
            inode.durable = durable;
        }
        let logs = std::mem::take(&mut self.dir_logs);
        for (dir, ops) in logs {
            let kept = self.rng.gen_range(0..=ops.len());
            let entries = self.durable_dirs.entry(dir).or_default();
            for op in ops.into_iter().take(kept) {
                apply_dir_op(entries, op);
            }
        }
        self.live_dirs = self.durable_dirs.clone();
        let linked: BTreeSet<InodeId> = self
            .durable_dirs
            .values()
            .flat_map(|entries| entries.values().copied())
            .collect();
        self.inodes.retain(|id, _| linked.contains(id));
        self.epoch += 1;
    }

    fn apply_with_fate(&mut self, durable: &mut Vec<u8>, change: Change) {
        let change = match change {
            Change::Write { forced: true, .. } => change,
            Change::Write {
                offset,
                mut data,
                forced: false,
            } => {
                let f = &self.faults;
                let weights = [
                    f.crash_keep_weight,
                    f.crash_drop_weight,
                    f.crash_torn_weight,
                    f.crash_garble_weight,
                ];
                let total: u32 = weights.iter().sum();
                let mut pick = self.rng.gen_range(0..total.max(1));
                let mut fate = 0;
                while fate < 3 && pick >= weights[fate] {
                    pick -= weights[fate];
                    fate += 1;
                }
                let sectors = data.len().div_ceil(SECTOR_SIZE);
                if sectors == 0 {
                    return;
                }
                match fate {
                    0 => {}
                    1 => return,
                    2 => {
                        let kept = self.rng.gen_range(0..sectors);
                        data.truncate(kept * SECTOR_SIZE);
                    }
                    _ => {
                        let sector = self.rng.gen_range(0..sectors);
                        let end = ((sector + 1) * SECTOR_SIZE).min(data.len());
                        self.rng.fill(&mut data[sector * SECTOR_SIZE..end]);
                    }
                }
                Change::Write {
                    offset,
                    data,
                    forced: false,
                }
            }
            Change::Resize { .. } => {
                if self.rng.gen_bool(0.5) {
                    return;
                }
                change
            }
        };
        apply(durable, &change);
    }

    /// Completes one in-flight operation and queues its completion.
    fn complete(&mut self, index: usize) {
        let op = self.in_flight.swap_remove(index);
        let inode_id = op.inode;
        let completion = self.execute(op);
        self.done.entry(inode_id).or_default().push(completion);
    }

    fn execute(&mut self, op: InFlight) -> Completion {
        let user_data = op.user_data;
        let path = op.path;
        let done = |result, buf| Completion {
            user_data,
            result,
            buf,
        };
        if let Err(err) = self.spend_power(&path) {
            // The operation never reached the disk (the harsher of "may or may not have").
            let buf = match op.op {
                Op::Read { buf, .. } | Op::Write { buf, .. } | Op::WriteDsync { buf, .. } => {
                    Some(buf)
                }
                Op::SyncData => None,
            };
            return done(Err(err), buf);
        }
        match op.op {
            Op::Read { offset, mut buf } => {
                self.stats.reads += 1;
                let file = self.inodes.get(&op.inode).expect("open inode exists");
                let start = to_usize(offset).min(file.live.len());
                let end = (start + buf.len()).min(file.live.len());
                let n = end - start;
                buf[..n].copy_from_slice(&file.live[start..end]);
                buf[n..].fill(0);
                if self.chance_ppm(self.faults.read_corrupt_ppm) {
                    self.stats.injected_read_corruptions += 1;
                    let at = self.rng.gen_range(0..buf.len());
                    buf[at] ^= 1 << self.rng.gen_range(0..8);
                }
                done(Ok(n), Some(buf))
            }
            Op::Write { offset, buf } => {
                self.execute_write(op.inode, &path, user_data, offset, buf, false)
            }
            Op::WriteDsync { offset, buf } => {
                self.execute_write(op.inode, &path, user_data, offset, buf, true)
            }
            Op::SyncData => {
                if self.chance_ppm(self.faults.sync_eio_ppm) {
                    self.stats.injected_sync_errors += 1;
                    let err = IoError::new(IoErrorKind::Io, &path, None, "injected EIO on sync");
                    return done(Err(err), None);
                }
                self.stats.syncs += 1;
                let file = self.inodes.get_mut(&op.inode).expect("open inode exists");
                let (covered, rest): (Vec<Unsynced>, Vec<Unsynced>) =
                    std::mem::take(&mut file.unsynced)
                        .into_iter()
                        .partition(|u| u.seq <= op.covers_seq);
                for entry in covered {
                    apply(&mut file.durable, &entry.change);
                }
                file.unsynced = rest;
                file.drain_forced_prefix();
                done(Ok(0), None)
            }
        }
    }

    /// Puts `data` of a failed write on the live image as an unsynced write: a crash may keep,
    /// drop, tear or garble it.
    fn land_unsynced(&mut self, inode_id: InodeId, offset: u64, data: Vec<u8>) {
        self.completion_seq += 1;
        let seq = self.completion_seq;
        let file = self.inodes.get_mut(&inode_id).expect("open inode exists");
        write_into(&mut file.live, offset, &data);
        file.unsynced.push(Unsynced {
            seq,
            change: Change::Write {
                offset,
                data,
                forced: false,
            },
        });
    }

    fn execute_write(
        &mut self,
        inode_id: InodeId,
        path: &str,
        user_data: u64,
        offset: u64,
        buf: AlignedBuf,
        forced: bool,
    ) -> Completion {
        let len = buf.len();
        let current = self
            .inodes
            .get(&inode_id)
            .map_or(0, |f| f.live.len() as u64);
        let growth = (offset + len as u64).saturating_sub(current);
        if self.live_total() + growth > self.faults.capacity_bytes {
            self.stats.injected_no_space += 1;
            let err = IoError::new(IoErrorKind::NoSpace, path, Some(offset), "injected ENOSPC");
            return Completion {
                user_data,
                result: Err(err),
                buf: Some(buf),
            };
        }
        if self.chance_ppm(self.faults.write_eio_ppm) {
            self.stats.injected_write_errors += 1;
            // A failed write may still have put some of its sectors on the (volatile) disk.
            let sectors = len / SECTOR_SIZE;
            let landed = self.rng.gen_range(0..=sectors);
            self.land_unsynced(inode_id, offset, buf[..landed * SECTOR_SIZE].to_vec());
            let err = IoError::new(IoErrorKind::Io, path, Some(offset), "injected EIO on write");
            return Completion {
                user_data,
                result: Err(err),
                buf: Some(buf),
            };
        }
        if forced && self.chance_ppm(self.faults.sync_eio_ppm) {
            // RWF_DSYNC's data reached the (volatile) disk, its flush failed: the write is as
            // unsynced as a plain one, and the caller sees the sync's EIO.
            self.stats.injected_sync_errors += 1;
            self.land_unsynced(inode_id, offset, buf.to_vec());
            let err = IoError::new(
                IoErrorKind::Io,
                path,
                Some(offset),
                "injected EIO on the sync of an RWF_DSYNC write",
            );
            return Completion {
                user_data,
                result: Err(err),
                buf: Some(buf),
            };
        }
        self.stats.writes += 1;
        self.stats.bytes_written += len as u64;
        if forced {
            self.stats.dsync_writes += 1;
        }
        self.completion_seq += 1;
        let seq = self.completion_seq;
        let file = self.inodes.get_mut(&inode_id).expect("open inode exists");
        write_into(&mut file.live, offset, &buf);
        let change = Change::Write {
            offset,
            data: buf.to_vec(),
            forced,
        };
        file.unsynced.push(Unsynced { seq, change });
        file.drain_forced_prefix();
        Completion {
            user_data,
            result: Ok(len),
            buf: Some(buf),
        }
    }
}

fn apply_dir_op(entries: &mut BTreeMap<String, InodeId>, op: DirOp) {
    match op {
        DirOp::Link { name, inode } => {
            entries.insert(name, inode);
        }
        DirOp::Unlink { name } => {
            entries.remove(&name);
        }
        DirOp::Rename { from, to } => {
            if let Some(inode) = entries.remove(&from) {
                entries.insert(to, inode);
            }
        }
    }
}

/// A directory on a [`SimDisk`].
#[derive(Debug, Clone)]
pub struct SimVfs {
    disk: SimDisk,
    dir: String,
    location: String,
}

impl SimVfs {
    /// The disk this directory lives on.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// The path of `name` in this directory, as [`SimDisk::flip_byte`] takes it.
    pub fn path_of(&self, name: &str) -> String {
        join(&self.dir, name)
    }

    fn not_found(&self, name: &str) -> IoError {
        IoError::new(
            IoErrorKind::NotFound,
            &self.path_of(name),
            None,
            "no such file",
        )
    }

    fn log(&self, state: &mut DiskState, op: DirOp) {
        state.dir_logs.entry(self.dir.clone()).or_default().push(op);
    }
}

impl Vfs for SimVfs {
    type File = SimStorage;

    fn open(&mut self, name: &str, mode: OpenMode) -> Result<SimStorage, IoError> {
        let path = self.path_of(name);
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        state.spend_power(&path)?;
        let existing = state
            .live_dirs
            .get(&self.dir)
            .and_then(|d| d.get(name).copied());
        let inode = match (mode, existing) {
            (OpenMode::Existing, Some(inode)) => inode,
            (OpenMode::Existing, None) => return Err(self.not_found(name)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(IoError::new(
                    IoErrorKind::AlreadyExists,
                    &path,
                    None,
                    "file exists",
                ))
            }
            (OpenMode::CreateNew, None) => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Inode::default());
                state
                    .live_dirs
                    .entry(self.dir.clone())
                    .or_default()
                    .insert(name.to_string(), inode);
                self.log(
                    state,
                    DirOp::Link {
                        name: name.to_string(),
                        inode,
                    },
                );
                inode
            }
        };
        let epoch = state.epoch;
        Ok(SimStorage {
            disk: self.disk.clone(),
            path: format!("sim:/{path}"),
            inode,
            epoch,
        })
    }

    fn exists(&mut self, name: &str) -> bool {
        let state = self.disk.state.borrow();
        state
            .live_dirs
            .get(&self.dir)
            .is_some_and(|d| d.contains_key(name))
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        state.spend_power(&self.path_of(name))?;
        let entries = state.live_dirs.entry(self.dir.clone()).or_default();
        if entries.remove(name).is_none() {
            return Err(self.not_found(name));
        }
        self.log(
            state,
            DirOp::Unlink {
                name: name.to_string(),
            },
        );
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        state.spend_power(&self.path_of(from))?;
        let entries = state.live_dirs.entry(self.dir.clone()).or_default();
        let Some(inode) = entries.remove(from) else {
            return Err(self.not_found(from));
        };
        entries.insert(to.to_string(), inode);
        self.log(
            state,
            DirOp::Rename {
                from: from.to_string(),
                to: to.to_string(),
            },
        );
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<String>, IoError> {
        let state = self.disk.state.borrow();
        Ok(state
            .live_dirs
            .get(&self.dir)
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        state.spend_power(&self.location)?;
        if let Some(ops) = state.dir_logs.remove(&self.dir) {
            let entries = state.durable_dirs.entry(self.dir.clone()).or_default();
            for op in ops {
                apply_dir_op(entries, op);
            }
        }
        Ok(())
    }

    fn subdir(&mut self, name: &str) -> Result<SimVfs, IoError> {
        let dir = self.path_of(name);
        let mut state = self.disk.state.borrow_mut();
        state.live_dirs.entry(dir.clone()).or_default();
        state.durable_dirs.entry(dir.clone()).or_default();
        let location = format!("sim:/{dir}");
        Ok(SimVfs {
            disk: self.disk.clone(),
            dir,
            location,
        })
    }

    fn location(&self) -> &str {
        &self.location
    }
}

/// One open file on a [`SimDisk`].
#[derive(Debug)]
pub struct SimStorage {
    disk: SimDisk,
    path: String,
    inode: InodeId,
    epoch: u64,
}

impl SimStorage {
    fn check_live(&self, state: &DiskState) -> Result<(), IoError> {
        if state.epoch != self.epoch {
            return Err(IoError::new(
                IoErrorKind::Stale,
                &self.path,
                None,
                "opened before a crash",
            ));
        }
        Ok(())
    }
}

impl Storage for SimStorage {
    fn submit(&mut self, user_data: u64, op: Op) -> Result<(), IoError> {
        let mut state = self.disk.state.borrow_mut();
        self.check_live(&state)?;
        match &op {
            Op::Read { offset, buf }
            | Op::Write { offset, buf }
            | Op::WriteDsync { offset, buf } => {
                check_aligned(&self.path, *offset, buf.len())?;
            }
            Op::SyncData => {}
        }
        let mine = state
            .in_flight
            .iter()
            .filter(|f| f.inode == self.inode)
            .count();
        if mine >= SIM_IN_FLIGHT_MAX {
            return Err(IoError::new(
                IoErrorKind::QueueFull,
                &self.path,
                None,
                "too many in flight",
            ));
        }
        assert!(
            !state
                .in_flight
                .iter()
                .any(|f| f.inode == self.inode && f.user_data == user_data),
            "user_data {user_data} is already in flight on {}",
            self.path
        );
        let covers_seq = state.completion_seq;
        let path = self.path.clone();
        state.in_flight.push(InFlight {
            inode: self.inode,
            path,
            user_data,
            op,
            covers_seq,
        });
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        if state.epoch != self.epoch {
            return;
        }
        let mut index = 0;
        while index < state.in_flight.len() {
            let percent = state.faults.complete_per_poll_percent;
            if state.in_flight[index].inode == self.inode && state.rng.gen_range(0..100) < percent {
                // swap_remove moves the last element here: look at this index again.
                state.complete(index);
            } else {
                index += 1;
            }
        }
        if let Some(done) = state.done.remove(&self.inode) {
            out.extend(done);
        }
    }

    fn wait(&mut self, user_data: u64) -> Completion {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        let stale = state.epoch != self.epoch;
        if let Some(done) = state.done.get_mut(&self.inode) {
            if let Some(i) = done.iter().position(|c| c.user_data == user_data) {
                return done.remove(i);
            }
        }
        let index = state
            .in_flight
            .iter()
            .position(|f| f.inode == self.inode && f.user_data == user_data);
        let Some(index) = index else {
            assert!(
                stale,
                "wait for user_data {user_data} that is not in flight on {}",
                self.path
            );
            let err = IoError::new(IoErrorKind::Stale, &self.path, None, "lost in a crash");
            return Completion {
                user_data,
                result: Err(err),
                buf: None,
            };
        };
        let op = state.in_flight.swap_remove(index);
        state.execute(op)
    }

    fn in_flight(&self) -> usize {
        let state = self.disk.state.borrow();
        let queued = state
            .in_flight
            .iter()
            .filter(|f| f.inode == self.inode)
            .count();
        queued + state.done.get(&self.inode).map_or(0, Vec::len)
    }

    fn size(&self) -> u64 {
        let state = self.disk.state.borrow();
        state
            .inodes
            .get(&self.inode)
            .map_or(0, |f| f.live.len() as u64)
    }

    fn set_size(&mut self, size: u64) -> Result<(), IoError> {
        let mut guard = self.disk.state.borrow_mut();
        let state = &mut *guard;
        self.check_live(state)?;
        state.spend_power(&self.path)?;
        let current = state
            .inodes
            .get(&self.inode)
            .map_or(0, |f| f.live.len() as u64);
        if state.live_total() + size.saturating_sub(current) > state.faults.capacity_bytes {
            state.stats.injected_no_space += 1;
            return Err(IoError::new(
                IoErrorKind::NoSpace,
                &self.path,
                Some(size),
                "injected ENOSPC",
            ));
        }
        state.completion_seq += 1;
        let seq = state.completion_seq;
        let file = state
            .inodes
            .get_mut(&self.inode)
            .expect("open inode exists");
        file.live.resize(to_usize(size), 0);
        file.unsynced.push(Unsynced {
            seq,
            change: Change::Resize { size },
        });
        Ok(())
    }

    fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests;
