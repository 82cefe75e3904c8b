//! Files on io_uring: the engine's [`Vfs`] and [`Storage`] traits over direct I/O.
//!
//! A [`UringVfs`] is a directory; its files submit reads, writes, RWF_DSYNC writes and fdatasyncs
//! to the ring of the core they were opened on (or, off the runtime, to a private ring owned by
//! the Vfs, for tools and tests). Invariants, matching `jube_engine::storage`:
//! - misaligned offsets, lengths or buffers are rejected at submit with `InvalidInput`;
//! - operations are not ordered; a `SyncData` is an IORING_OP_FSYNC(DATASYNC) submitted after the
//!   caller saw its writes complete, which is exactly the trait's guarantee (the kernel's fdatasync
//!   covers at least the writes completed before it started);
//! - each completion is delivered once, by `poll` or `wait`; `wait` drives the ring until its own
//!   operation finishes and leaves the others' completions in the reactor for `poll`;
//! - a read that reaches past the end of the file reports the bytes inside it and zeroes the rest
//!   of the buffer (O_DIRECT leaves it untouched); a short write is an error (`Io`), never retried;
//! - where the filesystem refuses O_DIRECT the file is opened buffered (logged once per process);
//!   durability is then the same, from fdatasync or RWF_DSYNC;
//! - an open file takes an entry of its core's fixed-file table when one is free (saving the
//!   descriptor lookup per operation) and gives it back when dropped; without a free entry or a
//!   table it uses its plain descriptor, with the same behaviour;
//! - [`UringVfs::io_buffers`] registers buffers with the ring (IORING_REGISTER_BUFFERS) within
//!   [`REGISTERED_BUFFER_BYTES_MAX`]; when the kernel refuses (ENOMEM past RLIMIT_MEMLOCK, EBUSY
//!   when the ring already has some) it logs once and hands out plain buffers, which
//!   [`UringFile::write_batch`] writes with ordinary writes: same results, no pinning saved.
//!
//! Directory operations (open, rename, remove, list, sync_dir) are rare and run as ordinary
//! blocking system calls on the calling core.

use crate::constants::REGISTERED_BUFFER_BYTES_MAX;
use crate::executor;
use crate::reactor::{OpId, QueueFull, Reactor, ReactorOptions};
use crate::sys::file::{open_data_file, Caching};
use crate::sys::ring::{FdHandle, OpSpec, Payload};
use jube_engine::storage::{
    check_aligned, AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs,
    IO_ALIGN,
};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);
static REGISTRATION_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// A write buffer from [`UringVfs::io_buffers`]: registered with its core's ring (written with
/// IORING_OP_WRITE_FIXED, saving the page pinning of each O_DIRECT write) or, after a refused
/// registration, a plain aligned buffer.
pub struct IoBuf {
    buf: AlignedBuf,
    /// Bytes in use: the slice the buffer derefs to and the length a write writes.
    len: usize,
    index: Option<u16>,
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len)
            .field("capacity", &self.buf.len())
            .field("index", &self.index)
            .finish()
    }
}

impl IoBuf {
    /// Whether the buffer is registered with the ring.
    pub fn is_registered(&self) -> bool {
        self.index.is_some()
    }

    /// Uses the first `len` bytes (at most the size it was made with); a write writes them.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.buf.len(),
            "IoBuf of {} bytes set to {len}",
            self.buf.len()
        );
        self.len = len;
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

/// How files are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    /// O_DIRECT, falling back to buffered I/O where the filesystem refuses it (the default).
    Prefer,
    /// Always buffered (for tests of the fallback path, and filesystems that accept O_DIRECT at
    /// open but fail it at write).
    Never,
}

/// A directory of data files on io_uring. Clones share the ring (a shard's tree and WAL hold one
/// each).
#[derive(Clone)]
pub struct UringVfs {
    dir: PathBuf,
    location: String,
    reactor: Rc<Reactor>,
    direct: DirectIo,
    fixed_files: bool,
}

impl UringVfs {
    /// The directory `dir` (which must exist), with O_DIRECT preferred. On a runtime core its files
    /// use that core's ring; elsewhere a private ring.
    pub fn open(dir: impl AsRef<Path>) -> Result<UringVfs, IoError> {
        UringVfs::open_with(dir, DirectIo::Prefer)
    }

    pub fn open_with(dir: impl AsRef<Path>, direct: DirectIo) -> Result<UringVfs, IoError> {
        let dir = dir.as_ref().to_path_buf();
        let location = dir.display().to_string();
        if !dir.is_dir() {
            return Err(IoError::new(
                IoErrorKind::NotFound,
                &location,
                None,
                "not a directory",
            ));
        }
        let reactor = match executor::try_current_reactor() {
            Some(reactor) => reactor,
            None => Rc::new(Reactor::new(ReactorOptions::default()).map_err(|err| {
                IoError::new(
                    IoErrorKind::Other,
                    &location,
                    None,
                    format!("io_uring setup failed: {err}"),
                )
            })?),
        };
        Ok(UringVfs {
            dir,
            location,
            reactor,
            direct,
            fixed_files: true,
        })
    }

    /// Whether files opened from now on register in the ring's fixed-file table (default true,
    /// where the kernel has one). Benchmarks compare the two.
    pub fn set_fixed_files(&mut self, enabled: bool) {
        self.fixed_files = enabled;
    }

    /// `count` zeroed write buffers of `size` bytes, registered with this core's ring if the
    /// kernel accepts them and they fit [`REGISTERED_BUFFER_BYTES_MAX`]; otherwise (logged once
    /// per process) plain buffers that work the same. A ring registers buffers once: a second call
    /// on the same core gets plain buffers.
    pub fn io_buffers(&self, count: usize, size: usize) -> Vec<IoBuf> {
        let bufs: Vec<AlignedBuf> = (0..count).map(|_| AlignedBuf::zeroed(size)).collect();
        let fits = count <= usize::from(u16::MAX)
            && count.saturating_mul(size) <= REGISTERED_BUFFER_BYTES_MAX;
        let registered = if fits {
            self.reactor.register_buffers(&bufs)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{count} x {size} bytes exceeds the budget of {REGISTERED_BUFFER_BYTES_MAX}"
                ),
            ))
        };
        let registered = match registered {
            Ok(()) => true,
            Err(err) => {
                if !REGISTRATION_REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%err, count, size, "buffer registration refused: writing from plain buffers");
                }
                false
            }
        };
        bufs.into_iter()
            .enumerate()
            .map(|(index, buf)| IoBuf {
                len: buf.len(),
                buf,
                index: registered.then(|| u16::try_from(index).expect("count checked above")),
            })
            .collect()
    }

    fn path_of(&self, name: &str) -> Result<PathBuf, IoError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(IoError::new(
                IoErrorKind::InvalidInput,
                &self.location,
                None,
                format!("{name:?} is not a single path component"),
            ));
        }
        Ok(self.dir.join(name))
    }

    fn error(&self, err: &std::io::Error, path: &Path) -> IoError {
        IoError::from_std(err, &path.display().to_string(), None)
    }
}

impl Vfs for UringVfs {
    type File = UringFile;

    fn open(&mut self, name: &str, mode: OpenMode) -> Result<UringFile, IoError> {
        let path = self.path_of(name)?;
        let create_new = mode == OpenMode::CreateNew;
        let (file, caching) = open_data_file(&path, create_new, self.direct == DirectIo::Prefer)
            .map_err(|err| self.error(&err, &path))?;
        if caching == Caching::Buffered
            && self.direct == DirectIo::Prefer
            && !FALLBACK_LOGGED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                dir = %self.location,
                "the filesystem refused O_DIRECT: using buffered I/O with fdatasync (durable, but through the page cache)"
            );
        }
        let size = file
            .metadata()
            .map_err(|err| self.error(&err, &path))?
            .len();
        let fixed = if self.fixed_files {
            self.reactor.register_file(file.as_raw_fd())
        } else {
            None
        };
        Ok(UringFile {
            fixed,
            file: Rc::new(file),
            path: path.display().to_string(),
            reactor: self.reactor.clone(),
            pending: Vec::new(),
            size,
            caching,
        })
    }

    fn exists(&mut self, name: &str) -> bool {
        self.path_of(name)
            .map(|path| path.exists())
            .unwrap_or(false)
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        let path = self.path_of(name)?;
        std::fs::remove_file(&path).map_err(|err| self.error(&err, &path))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        let (from_path, to_path) = (self.path_of(from)?, self.path_of(to)?);
        std::fs::rename(&from_path, &to_path).map_err(|err| self.error(&err, &from_path))
    }

    fn list(&mut self) -> Result<Vec<String>, IoError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|err| self.error(&err, &self.dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| self.error(&err, &self.dir))?;
            let is_file = entry
                .file_type()
                .map(|kind| kind.is_file())
                .unwrap_or(false);
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        let dir = File::open(&self.dir).map_err(|err| self.error(&err, &self.dir))?;
        dir.sync_all().map_err(|err| self.error(&err, &self.dir))
    }

    fn subdir(&mut self, name: &str) -> Result<UringVfs, IoError> {
        let path = self.path_of(name)?;
        if !path.is_dir() {
            std::fs::create_dir(&path).map_err(|err| self.error(&err, &path))?;
            self.sync_dir()?;
        }
        let location = path.display().to_string();
        Ok(UringVfs {
            dir: path,
            location,
            reactor: self.reactor.clone(),
            direct: self.direct,
            fixed_files: self.fixed_files,
        })
    }

    fn location(&self) -> &str {
        &self.location
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    SyncData,
}

struct Pending {
    user_data: u64,
    op: OpId,
    kind: Kind,
    offset: u64,
    len: usize,
}

/// One open data file; its operations go through the ring of the core it was opened on.
pub struct UringFile {
    file: Rc<File>,
    /// Its entry in the ring's fixed-file table, if it has one.
    fixed: Option<u32>,
    path: String,
    reactor: Rc<Reactor>,
    pending: Vec<Pending>,
    size: u64,
    caching: Caching,
}

impl UringFile {
    /// Whether the file bypasses the page cache (false after the O_DIRECT fallback).
    pub fn is_direct(&self) -> bool {
        self.caching == Caching::Direct
    }

    /// Allocates `len` bytes at `offset` (blocking fallocate): unwritten extents that later
    /// writes fill without extending the file or allocating blocks under an exclusive inode lock.
    /// The first fdatasync after writing into them still commits the journal (the extents turn
    /// from unwritten to written); only pre-zeroed blocks avoid that (see docs/benchmarks.md).
    pub fn allocate(&mut self, offset: u64, len: u64) -> Result<(), IoError> {
        crate::sys::file::allocate(&self.file, offset, len)
            .map_err(|err| IoError::from_std(&err, &self.path, Some(offset)))?;
        self.size = self.size.max(offset + len);
        Ok(())
    }

    /// Whether operations name the file by a fixed-file table entry.
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// Submits a write linked to an fdatasync that starts only after the write succeeded
    /// (IOSQE_IO_LINK): one submission for a durable append. Two completions arrive, tagged
    /// `write_tag` and `sync_tag`; the sync's is the durability point (-ECANCELED, reported as
    /// `Other`, if the write failed).
    pub fn submit_write_then_sync(
        &mut self,
        write_tag: u64,
        sync_tag: u64,
        offset: u64,
        buf: AlignedBuf,
    ) -> Result<(), IoError> {
        check_aligned(&self.path, offset, buf.len())?;
        self.check_tag(write_tag);
        self.check_tag(sync_tag);
        assert_ne!(write_tag, sync_tag, "write and sync tags must differ");
        let len = buf.len();
        let fd: FdHandle = self.file.clone();
        let (write_op, sync_op) = self
            .reactor
            .submit_write_then_sync(fd, self.fixed, offset, buf)
            .map_err(|_| self.queue_full(offset))?;
        self.pending.push(Pending {
            user_data: write_tag,
            op: write_op,
            kind: Kind::Write,
            offset,
            len,
        });
        self.pending.push(Pending {
            user_data: sync_tag,
            op: sync_op,
            kind: Kind::SyncData,
            offset,
            len: 0,
        });
        Ok(())
    }

    /// Writes each buffer at its offset, all in flight at once (registered buffers with
    /// WRITE_FIXED), waits for every one, and returns the buffers in order. Not durable until a
    /// `SyncData` after it. On an error every write has still finished (none is left running) and
    /// the first error is returned; the buffers are then dropped.
    pub fn write_batch(&mut self, writes: Vec<(u64, IoBuf)>) -> Result<Vec<IoBuf>, IoError> {
        for (offset, io) in &writes {
            check_aligned(&self.path, *offset, io.len)?;
        }
        let mut submitted = Vec::with_capacity(writes.len());
        let mut first_err = None;
        for (offset, io) in writes {
            let fd: FdHandle = self.file.clone();
            let (len, fixed, capacity) = (io.len, self.fixed, io.buf.len());
            // A plain buffer writes whole; writing a prefix of one goes through a copy of that
            // prefix (the fallback path only), and the original comes back afterwards.
            let (spec, kept) = match io.index {
                Some(index) => {
                    let spec = OpSpec::WriteFixed {
                        fd,
                        fixed,
                        offset,
                        buf: io.buf,
                        len,
                        index,
                    };
                    (spec, None)
                }
                None if len == capacity => {
                    let spec = OpSpec::Write {
                        fd,
                        fixed,
                        offset,
                        buf: io.buf,
                        dsync: false,
                    };
                    (spec, None)
                }
                None => {
                    let spec = OpSpec::Write {
                        fd,
                        fixed,
                        offset,
                        buf: AlignedBuf::from_slice_padded(&io.buf[..len]),
                        dsync: false,
                    };
                    (spec, Some(io.buf))
                }
            };
            match self.reactor.submit(spec) {
                Ok(op) => submitted.push((op, offset, len, io.index, kept)),
                Err(QueueFull(_)) => {
                    first_err = Some(self.queue_full(offset));
                    break;
                }
            }
        }
        let mut done = Vec::with_capacity(submitted.len());
        for (op, offset, len, index, kept) in submitted {
            let (result, payload) = loop {
                if let Some(finished) = self.reactor.take_done(op) {
                    break finished;
                }
                self.reactor.turn(true);
            };
            let Payload::Aligned(buf) = payload else {
                panic!("a file write returned {payload:?} instead of its buffer")
            };
            if result < 0 {
                let err = std::io::Error::from_raw_os_error(-result);
                first_err.get_or_insert(IoError::from_std(&err, &self.path, Some(offset)));
            } else if result as usize != len {
                first_err.get_or_insert(IoError::new(
                    IoErrorKind::Io,
                    &self.path,
                    Some(offset),
                    format!("short write: {result} of {len} bytes"),
                ));
            } else {
                self.size = self.size.max(offset + len as u64);
            }
            done.push(IoBuf {
                buf: kept.unwrap_or(buf),
                len,
                index,
            });
        }
        match first_err {
            Some(err) => Err(err),
            None => Ok(done),
        }
    }

    fn check_tag(&self, user_data: u64) {
        assert!(
            self.pending.iter().all(|p| p.user_data != user_data),
            "user_data {user_data} is already in flight on {}",
            self.path
        );
    }

    fn queue_full(&self, offset: u64) -> IoError {
        IoError::new(
            IoErrorKind::QueueFull,
            &self.path,
            Some(offset),
            "too many operations in flight on this core",
        )
    }

    fn complete(&mut self, pending: &Pending, result: i32, payload: Payload) -> Completion {
        let mut buf = match payload {
            Payload::Aligned(buf) => Some(buf),
            _ => None,
        };
        let offset = (pending.kind != Kind::SyncData).then_some(pending.offset);
        let result = if result < 0 {
            let err = std::io::Error::from_raw_os_error(-result);
            Err(IoError::from_std(&err, &self.path, offset))
        } else {
            let count = result as usize;
            match pending.kind {
                Kind::Read => {
                    if let Some(buf) = buf.as_mut() {
                        buf[count.min(pending.len)..].fill(0);
                    }
                    Ok(count)
                }
                Kind::Write if count != pending.len => Err(IoError::new(
                    IoErrorKind::Io,
                    &self.path,
                    offset,
                    format!("short write: {count} of {} bytes", pending.len),
                )),
                Kind::Write => {
                    self.size = self.size.max(pending.offset + count as u64);
                    Ok(count)
                }
                Kind::SyncData => Ok(0),
            }
        };
        Completion {
            user_data: pending.user_data,
            result,
            buf,
        }
    }
}

impl Storage for UringFile {
    fn advise_cache_memory(&self, memory: &[u8]) {
        // Best effort: without transparent huge pages the cache works the same, just with more
        // TLB misses.
        let advised = crate::sys::memory::advise_huge_pages(memory);
        tracing::debug!(path = %self.path, advised, "page cache memory advised to huge pages");
    }

    fn submit(&mut self, user_data: u64, op: Op) -> Result<(), IoError> {
        self.check_tag(user_data);
        let fd: FdHandle = self.file.clone();
        let fixed = self.fixed;
        let (spec, kind, offset, len) = match op {
            Op::Read { offset, buf } => {
                check_aligned(&self.path, offset, buf.len())?;
                let len = buf.len();
                let spec = OpSpec::Read {
                    fd,
                    fixed,
                    offset,
                    buf,
                };
                (spec, Kind::Read, offset, len)
            }
            Op::Write { offset, buf } => {
                check_aligned(&self.path, offset, buf.len())?;
                let len = buf.len();
                (
                    OpSpec::Write {
                        fd,
                        fixed,
                        offset,
                        buf,
                        dsync: false,
                    },
                    Kind::Write,
                    offset,
                    len,
                )
            }
            Op::WriteDsync { offset, buf } => {
                check_aligned(&self.path, offset, buf.len())?;
                let len = buf.len();
                (
                    OpSpec::Write {
                        fd,
                        fixed,
                        offset,
                        buf,
                        dsync: true,
                    },
                    Kind::Write,
                    offset,
                    len,
                )
            }
            Op::SyncData => (OpSpec::SyncData { fd, fixed }, Kind::SyncData, 0, 0),
        };
        debug_assert!(len % IO_ALIGN == 0);
        let op = self
            .reactor
            .submit(spec)
            .map_err(|QueueFull(_)| self.queue_full(offset))?;
        self.pending.push(Pending {
            user_data,
            op,
            kind,
            offset,
            len,
        });
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        self.reactor.turn(false);
        let mut index = 0;
        while index < self.pending.len() {
            match self.reactor.take_done(self.pending[index].op) {
                Some((result, payload)) => {
                    let pending = self.pending.swap_remove(index);
                    out.push(self.complete(&pending, result, payload));
                }
                None => index += 1,
            }
        }
    }

    fn wait(&mut self, user_data: u64) -> Completion {
        let index = self
            .pending
            .iter()
            .position(|p| p.user_data == user_data)
            .unwrap_or_else(|| {
                panic!(
                    "wait for user_data {user_data}, which is not in flight on {}",
                    self.path
                )
            });
        let op = self.pending[index].op;
        loop {
            if let Some((result, payload)) = self.reactor.take_done(op) {
                let pending = self.pending.swap_remove(index);
                return self.complete(&pending, result, payload);
            }
            self.reactor.turn(true);
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn set_size(&mut self, size: u64) -> Result<(), IoError> {
        self.file
            .set_len(size)
            .map_err(|err| IoError::from_std(&err, &self.path, Some(size)))?;
        self.size = size;
        Ok(())
    }

    fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        // Abandoned operations run to completion (a write is never skipped half-way through a
        // shutdown); the ring keeps their buffers and the descriptor until they finish.
        for pending in self.pending.drain(..) {
            self.reactor.forget(pending.op);
        }
        if let Some(index) = self.fixed.take() {
            self.reactor.unregister_file(index);
        }
    }
}
