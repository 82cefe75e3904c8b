//! Storage: the only way the engine touches a disk.
//!
//! The trait is shaped like io_uring so that the runtime's ring-backed implementation is a thin
//! adapter: the engine *submits* operations on owned, aligned buffers at `u64` offsets and later
//! *reaps* completions that hand the buffers back. Three implementations exist: [`sim::SimDisk`]
//! (deterministic, fault-injecting, for tests), [`file::FileVfs`] (positional I/O on real files, for
//! tools and tests) and the io_uring one in `jube-runtime`.
//!
//! Invariants every implementation keeps, and the engine relies on:
//! - Offsets and lengths of reads and writes are multiples of [`IO_ALIGN`]; buffers are aligned to
//!   [`IO_ALIGN`] in memory (this is what O_DIRECT demands).
//! - Operations are **not ordered** with respect to each other. A `SyncData` makes durable only the
//!   writes that had *completed* before it was submitted (io_uring gives no more; see
//!   shared/IO_URING.md). A `WriteDsync` is durable when it completes.
//! - A completion is delivered exactly once, by `poll` or by `wait`, and carries the buffer back.
//! - A failed write or sync is reported, never retried by the storage: the engine poisons itself.

pub mod buf;
pub mod file;
pub mod sim;

pub use buf::AlignedBuf;

use std::fmt;

/// Alignment, in bytes, of every I/O buffer, offset and length (the O_DIRECT logical block size we
/// require; 4 KiB covers every NVMe and virtio disk we target).
pub const IO_ALIGN: usize = 4096;

/// The smallest unit a disk writes atomically: a crash can tear a write only at a multiple of this.
pub const SECTOR_SIZE: usize = 512;

const _: () = assert!(IO_ALIGN.is_multiple_of(SECTOR_SIZE));
const _: () = assert!(IO_ALIGN.is_power_of_two());

/// One operation on one file.
#[derive(Debug)]
pub enum Op {
    /// Read `buf.len()` bytes at `offset`. Bytes past the end of the file read as zero and the
    /// completion's result is the number of bytes that were inside the file.
    Read { offset: u64, buf: AlignedBuf },
    /// Write the whole buffer at `offset`, extending the file if needed. Not durable until a later
    /// `SyncData` submitted after this write completed has completed.
    Write { offset: u64, buf: AlignedBuf },
    /// Write the whole buffer at `offset` and make it durable before completing (RWF_DSYNC).
    WriteDsync { offset: u64, buf: AlignedBuf },
    /// fdatasync: makes durable every write (and size change) that completed before submission.
    SyncData,
}

/// The result of one operation, handed back with the buffer it was given.
#[derive(Debug)]
pub struct Completion {
    /// The tag the engine chose when it submitted the operation.
    pub user_data: u64,
    /// Bytes transferred (0 for `SyncData`), or the error.
    pub result: Result<usize, IoError>,
    /// The buffer of a read or write, returned to the caller (None for `SyncData`).
    pub buf: Option<AlignedBuf>,
}

/// What kind of I/O failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoErrorKind {
    /// The device failed the operation (EIO). After a failed write or sync the file's state is
    /// unknown: the engine must stop and recover.
    Io,
    /// The filesystem is full (ENOSPC).
    NoSpace,
    /// The file does not exist.
    NotFound,
    /// The file exists and the caller asked for a new one.
    AlreadyExists,
    /// Too many operations in flight; reap some and submit again.
    QueueFull,
    /// The handle outlived a (simulated) crash or was closed.
    Stale,
    /// The arguments were wrong (misaligned offset or length): a bug in the caller.
    InvalidInput,
    /// Anything else the OS reported.
    Other,
}

/// An I/O error with enough context to act on: which file, which offset, what the OS said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError {
    pub kind: IoErrorKind,
    /// The file's path (or simulated name).
    pub path: String,
    /// The offset of the failed operation, when it had one.
    pub offset: Option<u64>,
    /// A human-readable description (the OS error text, or what the simulator injected).
    pub detail: String,
}

impl IoError {
    pub fn new(
        kind: IoErrorKind,
        path: &str,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) -> Self {
        IoError {
            kind,
            path: path.to_string(),
            offset,
            detail: detail.into(),
        }
    }

    /// Wraps a `std::io::Error`, classifying the errno.
    pub fn from_std(err: &std::io::Error, path: &str, offset: Option<u64>) -> Self {
        let kind = match err.raw_os_error() {
            Some(libc::EIO) => IoErrorKind::Io,
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => IoErrorKind::NoSpace,
            Some(libc::EINVAL) => IoErrorKind::InvalidInput,
            Some(libc::EAGAIN) | Some(libc::EBUSY) => IoErrorKind::QueueFull,
            _ => match err.kind() {
                std::io::ErrorKind::NotFound => IoErrorKind::NotFound,
                std::io::ErrorKind::AlreadyExists => IoErrorKind::AlreadyExists,
                _ => IoErrorKind::Other,
            },
        };
        IoError::new(kind, path, offset, err.to_string())
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} error on {}", self.kind, self.path)?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for IoError {}

/// One open file. Operations are submitted, then reaped with [`Storage::poll`] (never blocks) or
/// waited for one at a time with [`Storage::wait`].
pub trait Storage {
    /// Queues `op`, tagged with `user_data` (unique among this file's operations in flight).
    /// Misaligned reads and writes are rejected here with `InvalidInput`.
    fn submit(&mut self, user_data: u64, op: Op) -> Result<(), IoError>;

    /// Moves every finished operation's completion into `out`, without blocking.
    fn poll(&mut self, out: &mut Vec<Completion>);

    /// Blocks until the operation tagged `user_data` has finished and returns its completion.
    /// Other finished operations stay queued for `poll`. Panics if no such operation is in flight
    /// (that is a bug in the caller).
    fn wait(&mut self, user_data: u64) -> Completion;

    /// Operations submitted and not yet reaped.
    fn in_flight(&self) -> usize;

    /// The file's current size in bytes, as reads see it.
    fn size(&self) -> u64;

    /// Grows (zero-filled) or shrinks the file. Like a write, it is durable after the next sync.
    fn set_size(&mut self, size: u64) -> Result<(), IoError>;

    /// The file's path, for error messages.
    fn path(&self) -> &str;

    /// Advice, before it is first touched, about `memory`: the arena that will cache this file's
    /// pages (large, long-lived, hit at random by every lookup). An implementation may ask the
    /// operating system to back it with huge pages, so that a tree descent costs fewer TLB
    /// misses; it must not change the memory's contents. Default: nothing.
    fn advise_cache_memory(&self, _memory: &[u8]) {}

    /// Reads `buf.len()` bytes at `offset` and waits for them: the blocking form used by the pager
    /// on a cache miss. Returns the buffer and the number of bytes that were inside the file.
    fn read_at(&mut self, offset: u64, buf: AlignedBuf) -> Result<(AlignedBuf, usize), IoError> {
        let tag = BLOCKING_TAG;
        self.submit(tag, Op::Read { offset, buf })?;
        let completion = self.wait(tag);
        let buf = completion
            .buf
            .expect("a read completion carries its buffer");
        completion.result.map(|n| (buf, n))
    }

    /// Writes the buffer at `offset` and waits for the write (not for durability).
    fn write_at(&mut self, offset: u64, buf: AlignedBuf) -> Result<AlignedBuf, IoError> {
        let tag = BLOCKING_TAG;
        self.submit(tag, Op::Write { offset, buf })?;
        let completion = self.wait(tag);
        let buf = completion
            .buf
            .expect("a write completion carries its buffer");
        completion.result.map(|_| buf)
    }

    /// fdatasync and wait for it.
    fn sync_data(&mut self) -> Result<(), IoError> {
        let tag = BLOCKING_TAG;
        self.submit(tag, Op::SyncData)?;
        self.wait(tag).result.map(|_| ())
    }
}

/// The tag the blocking helpers use; engine code never submits an asynchronous operation with it.
pub const BLOCKING_TAG: u64 = u64::MAX;

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new empty file; fail with `AlreadyExists` if it exists.
    CreateNew,
    /// Open an existing file; fail with `NotFound` if it does not exist.
    Existing,
}

/// A directory of files: one shard's directory, or the data directory root.
///
/// Names are single path components. Creating, removing and renaming files change the directory,
/// which is durable only after [`Vfs::sync_dir`] (as on Linux).
pub trait Vfs {
    type File: Storage;

    /// Opens or creates the file `name` in this directory.
    fn open(&mut self, name: &str, mode: OpenMode) -> Result<Self::File, IoError>;

    /// Whether `name` exists in this directory.
    fn exists(&mut self, name: &str) -> bool;

    /// Removes the file `name`.
    fn remove(&mut self, name: &str) -> Result<(), IoError>;

    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError>;

    /// The names of the files in this directory, sorted.
    fn list(&mut self) -> Result<Vec<String>, IoError>;

    /// Makes creations, removals and renames in this directory durable (fsync on the directory).
    fn sync_dir(&mut self) -> Result<(), IoError>;

    /// Opens the subdirectory `name`, creating it (durably) if absent.
    fn subdir(&mut self, name: &str) -> Result<Self, IoError>
    where
        Self: Sized;

    /// A printable location of this directory, for error messages.
    fn location(&self) -> &str;
}

/// Checks that a read or write is aligned as O_DIRECT requires.
pub fn check_aligned(path: &str, offset: u64, len: usize) -> Result<(), IoError> {
    if !offset.is_multiple_of(IO_ALIGN as u64) || !len.is_multiple_of(IO_ALIGN) || len == 0 {
        return Err(IoError::new(
            IoErrorKind::InvalidInput,
            path,
            Some(offset),
            format!("I/O of {len} bytes at offset {offset} is not aligned to {IO_ALIGN} bytes"),
        ));
    }
    Ok(())
}
