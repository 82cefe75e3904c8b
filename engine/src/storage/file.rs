//! FileVfs: the engine's storage on real files with plain positional I/O.
//!
//! Operations submitted with [`Storage::submit`] run on the file's I/O thread (pread, pwrite,
//! fdatasync, one at a time in submission order), so the caller keeps working while they are on
//! the disk, as it does with io_uring: the WAL appends the next records while a flush is in
//! flight. `poll` and `wait` collect the completions. The thread starts at a file's first
//! `submit` (files only read and written through the blocking helpers, like the page file, never
//! start one) and stops when the file is dropped, after finishing what was queued. The blocking
//! helpers ([`Storage::read_at`], [`Storage::write_at`], [`Storage::sync_data`]) run on the
//! calling thread: a hop to the I/O thread and back would only add two wake-ups.
//!
//! It serves tools (`jubectl validate`), tests and the benchmarks of the engine alone; the server
//! uses the io_uring implementation in `jube-runtime`.
//!
//! Files are opened with O_DIRECT so that reads and writes bypass the page cache exactly as they
//! will through the ring. Filesystems that refuse O_DIRECT (tmpfs before Linux 6.6) get buffered
//! I/O; that fallback is logged once per process and stays correct, since durability comes from
//! fdatasync either way.
//!
//! Invariants: at most [`FILE_IN_FLIGHT_MAX`] operations are submitted and not yet reaped (more
//! are refused with `QueueFull`), so both channels to and from the I/O thread are bounded; every
//! submitted operation yields exactly one completion; operations run in submission order, so a
//! `SyncData` covers every write submitted before it (more than the `Storage` contract asks).

use super::{
    check_aligned, AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs,
};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Operations one file may have submitted and not yet reaped. The engine keeps one or two in
/// flight per file (a WAL flush's write then its sync; a segment's zero-fill chunk); the bound
/// keeps the I/O thread's queues small and makes a runaway caller fail loudly (`QueueFull`).
pub const FILE_IN_FLIGHT_MAX: usize = 64;

/// How long an idle I/O thread polls for the next operation, and a caller of `wait` for its
/// completion, before sleeping. Waking a sleeping thread costs tens of microseconds on the VMs we
/// measure (shared/BENCHMARKING.md), which a flush's sync, submitted right after its write
/// completes, would otherwise pay every time (the runtime's executor spins as long before it
/// sleeps in the ring, for the same reason).
pub const FILE_IO_SPIN: Duration = Duration::from_micros(50);

static BUFFERED_FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// A directory of real files.
#[derive(Debug, Clone)]
pub struct FileVfs {
    dir: PathBuf,
    location: String,
    direct_io: bool,
}

impl FileVfs {
    /// Opens the directory `dir`, creating it (and its parents) if absent. With `direct_io`
    /// false, files use buffered I/O (for tests that want the page cache).
    pub fn open(dir: impl AsRef<Path>, direct_io: bool) -> Result<FileVfs, IoError> {
        let dir = dir.as_ref().to_path_buf();
        let location = dir.display().to_string();
        std::fs::create_dir_all(&dir).map_err(|e| IoError::from_std(&e, &location, None))?;
        Ok(FileVfs {
            dir,
            location,
            direct_io,
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn err(&self, e: &std::io::Error, name: &str) -> IoError {
        IoError::from_std(e, &self.path_of(name).display().to_string(), None)
    }
}

fn open_file(path: &Path, mode: OpenMode, direct_io: bool) -> std::io::Result<(File, bool)> {
    let options = |direct: bool| {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if mode == OpenMode::CreateNew {
            options.create_new(true);
        }
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options
    };
    if direct_io {
        match options(true).open(path) {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if !BUFFERED_FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        path = %path.display(),
                        "the filesystem refuses O_DIRECT (tmpfs?): using buffered I/O plus fdatasync"
                    );
                }
                // create_new may have created the file before O_DIRECT was refused.
                let retry_mode = if path.exists() {
                    OpenMode::Existing
                } else {
                    mode
                };
                let mut fallback = OpenOptions::new();
                fallback
                    .read(true)
                    .write(true)
                    .create_new(retry_mode == OpenMode::CreateNew);
                return fallback.open(path).map(|file| (file, false));
            }
            Err(e) => return Err(e),
        }
    }
    options(false).open(path).map(|file| (file, false))
}

impl Vfs for FileVfs {
    type File = FileStorage;

    fn open(&mut self, name: &str, mode: OpenMode) -> Result<FileStorage, IoError> {
        let path = self.path_of(name);
        let (file, direct) =
            open_file(&path, mode, self.direct_io).map_err(|e| self.err(&e, name))?;
        let path = path.display().to_string();
        Ok(FileStorage {
            file: Arc::new(file),
            path,
            direct,
            worker: None,
            done: VecDeque::new(),
            in_flight: Vec::new(),
        })
    }

    fn exists(&mut self, name: &str) -> bool {
        self.path_of(name).exists()
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        std::fs::remove_file(self.path_of(name)).map_err(|e| self.err(&e, name))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), IoError> {
        std::fs::rename(self.path_of(from), self.path_of(to)).map_err(|e| self.err(&e, from))
    }

    fn list(&mut self) -> Result<Vec<String>, IoError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| IoError::from_std(&e, &self.location, None))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IoError::from_std(&e, &self.location, None))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&mut self) -> Result<(), IoError> {
        let dir = File::open(&self.dir).map_err(|e| IoError::from_std(&e, &self.location, None))?;
        dir.sync_all()
            .map_err(|e| IoError::from_std(&e, &self.location, None))
    }

    fn subdir(&mut self, name: &str) -> Result<FileVfs, IoError> {
        let path = self.path_of(name);
        let existed = path.is_dir();
        let sub = FileVfs::open(&path, self.direct_io)?;
        if !existed {
            self.sync_dir()?;
        }
        Ok(sub)
    }

    fn location(&self) -> &str {
        &self.location
    }
}

/// One real file; see the module doc.
#[derive(Debug)]
pub struct FileStorage {
    file: Arc<File>,
    path: String,
    direct: bool,
    /// The I/O thread, started by the first `submit`.
    worker: Option<Worker>,
    /// Completions received while `wait` looked for another one.
    done: VecDeque<Completion>,
    /// Tags submitted and not yet reaped.
    in_flight: Vec<u64>,
}

/// The I/O thread of one file and its two channels.
#[derive(Debug)]
struct Worker {
    requests: Option<SyncSender<(u64, Op)>>,
    completions: Receiver<Completion>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(file: Arc<File>, path: String) -> Result<Worker, IoError> {
        let (requests, inbox) = mpsc::sync_channel::<(u64, Op)>(FILE_IN_FLIGHT_MAX);
        let (outbox, completions) = mpsc::sync_channel::<Completion>(FILE_IN_FLIGHT_MAX);
        let name = format!("jube-file-io-{}", short_name(&path));
        let location = path.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Some((user_data, op)) = next_request(&inbox) {
                    let (result, buf) = run(&file, &path, op);
                    let completion = Completion {
                        user_data,
                        result,
                        buf,
                    };
                    if outbox.send(completion).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| IoError::from_std(&e, &location, None))?;
        Ok(Worker {
            requests: Some(requests),
            completions,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    /// Closes the request channel and joins the thread, which first finishes what was queued:
    /// a dropped file leaves no operation running behind its back.
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a file I/O thread panicked");
            }
        }
    }
}

/// The next request, polling for [`FILE_IO_SPIN`] before sleeping; `None` once the file is gone.
fn next_request(inbox: &Receiver<(u64, Op)>) -> Option<(u64, Op)> {
    let spin_until = Instant::now() + FILE_IO_SPIN;
    loop {
        match inbox.try_recv() {
            Ok(request) => return Some(request),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if Instant::now() < spin_until => std::hint::spin_loop(),
            Err(TryRecvError::Empty) => return inbox.recv().ok(),
        }
    }
}

/// The file name of `path`, for the I/O thread's name.
fn short_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Runs one operation to completion on the calling thread.
fn run(file: &File, path: &str, op: Op) -> (Result<usize, IoError>, Option<AlignedBuf>) {
    let err = |e: std::io::Error, offset| IoError::from_std(&e, path, offset);
    match op {
        Op::Read { offset, mut buf } => {
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return (Err(err(e, Some(offset))), Some(buf)),
                }
            }
            buf[filled..].fill(0);
            (Ok(filled), Some(buf))
        }
        Op::Write { offset, buf } => match file.write_all_at(&buf, offset) {
            Ok(()) => (Ok(buf.len()), Some(buf)),
            Err(e) => (Err(err(e, Some(offset))), Some(buf)),
        },
        Op::WriteDsync { offset, buf } => {
            let result = file
                .write_all_at(&buf, offset)
                .and_then(|()| file.sync_data());
            match result {
                Ok(()) => (Ok(buf.len()), Some(buf)),
                Err(e) => (Err(err(e, Some(offset))), Some(buf)),
            }
        }
        Op::SyncData => match file.sync_data() {
            Ok(()) => (Ok(0), None),
            Err(e) => (Err(err(e, None)), None),
        },
    }
}

fn check_op(path: &str, op: &Op) -> Result<(), IoError> {
    match op {
        Op::Read { offset, buf } | Op::Write { offset, buf } | Op::WriteDsync { offset, buf } => {
            check_aligned(path, *offset, buf.len())
        }
        Op::SyncData => Ok(()),
    }
}

impl FileStorage {
    /// Whether this file bypasses the page cache (O_DIRECT).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Records a completion reaped from the I/O thread.
    fn reaped(&mut self, completion: &Completion) {
        let at = self
            .in_flight
            .iter()
            .position(|&tag| tag == completion.user_data)
            .expect("a completion answers an operation in flight");
        self.in_flight.swap_remove(at);
    }

    /// Runs a blocking helper's operation on the calling thread.
    fn run_inline(&mut self, op: Op) -> (Result<usize, IoError>, Option<AlignedBuf>) {
        if let Err(e) = check_op(&self.path, &op) {
            return (Err(e), None);
        }
        run(&self.file, &self.path, op)
    }
}

impl Storage for FileStorage {
    fn submit(&mut self, user_data: u64, op: Op) -> Result<(), IoError> {
        check_op(&self.path, &op)?;
        assert!(
            !self.in_flight.contains(&user_data)
                && !self.done.iter().any(|c| c.user_data == user_data),
            "tag {user_data} is already in flight on {}",
            self.path
        );
        if self.in_flight.len() >= FILE_IN_FLIGHT_MAX {
            return Err(IoError::new(
                IoErrorKind::QueueFull,
                &self.path,
                None,
                format!("{FILE_IN_FLIGHT_MAX} operations in flight (FILE_IN_FLIGHT_MAX)"),
            ));
        }
        if self.worker.is_none() {
            self.worker = Some(Worker::start(Arc::clone(&self.file), self.path.clone())?);
        }
        let worker = self.worker.as_ref().expect("started above");
        let requests = worker.requests.as_ref().expect("open until drop");
        // Never blocks: at most FILE_IN_FLIGHT_MAX requests exist, the channel's capacity.
        if requests.send((user_data, op)).is_err() {
            panic!("the I/O thread of {} stopped", self.path);
        }
        self.in_flight.push(user_data);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
        let Some(worker) = self.worker.as_ref() else {
            return;
        };
        let start = out.len();
        while let Ok(completion) = worker.completions.try_recv() {
            out.push(completion);
        }
        for completion in &out[start..] {
            let at = self
                .in_flight
                .iter()
                .position(|&tag| tag == completion.user_data)
                .expect("a completion answers an operation in flight");
            self.in_flight.swap_remove(at);
        }
    }

    fn wait(&mut self, user_data: u64) -> Completion {
        if let Some(index) = self.done.iter().position(|c| c.user_data == user_data) {
            return self.done.remove(index).expect("index is in range");
        }
        assert!(
            self.in_flight.contains(&user_data),
            "wait for {user_data}, not in flight on {}",
            self.path
        );
        let spin_until = Instant::now() + FILE_IO_SPIN;
        loop {
            let worker = self
                .worker
                .as_ref()
                .expect("an operation in flight started it");
            // Poll briefly before sleeping: a sync that rewrites written blocks often completes
            // within the spin, and a sleeping thread pays the wake-up.
            let next = match worker.completions.try_recv() {
                Ok(completion) => Ok(completion),
                Err(TryRecvError::Empty) if Instant::now() < spin_until => {
                    std::hint::spin_loop();
                    continue;
                }
                Err(_) => worker.completions.recv(),
            };
            let completion =
                next.unwrap_or_else(|_| panic!("the I/O thread of {} stopped", self.path));
            self.reaped(&completion);
            if completion.user_data == user_data {
                return completion;
            }
            self.done.push_back(completion);
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len() + self.done.len()
    }

    fn size(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn set_size(&mut self, size: u64) -> Result<(), IoError> {
        self.file.set_len(size).map_err(|e| {
            let mut error = IoError::from_std(&e, &self.path, Some(size));
            if error.kind == IoErrorKind::Other && e.raw_os_error() == Some(libc::EFBIG) {
                error.kind = IoErrorKind::NoSpace;
            }
            error
        })
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn read_at(&mut self, offset: u64, buf: AlignedBuf) -> Result<(AlignedBuf, usize), IoError> {
        match self.run_inline(Op::Read { offset, buf }) {
            (Ok(n), Some(buf)) => Ok((buf, n)),
            (Err(e), _) => Err(e),
            (Ok(_), None) => unreachable!("a read hands its buffer back"),
        }
    }

    fn write_at(&mut self, offset: u64, buf: AlignedBuf) -> Result<AlignedBuf, IoError> {
        match self.run_inline(Op::Write { offset, buf }) {
            (Ok(_), Some(buf)) => Ok(buf),
            (Err(e), _) => Err(e),
            (Ok(_), None) => unreachable!("a write hands its buffer back"),
        }
    }

    fn sync_data(&mut self) -> Result<(), IoError> {
        self.run_inline(Op::SyncData).0.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(vfs: &mut FileVfs) {
        let mut file = vfs.open("data", OpenMode::CreateNew).expect("create");
        let mut buf = AlignedBuf::zeroed(8192);
        buf[..4].copy_from_slice(b"jube");
        buf[4096] = 7;
        file.write_at(0, buf).expect("write");
        file.sync_data().expect("sync");
        let (back, n) = file.read_at(0, AlignedBuf::zeroed(12288)).expect("read");
        assert_eq!(n, 8192);
        assert_eq!(&back[..4], b"jube");
        assert_eq!(back[4096], 7);
        assert!(
            back[8192..].iter().all(|&b| b == 0),
            "bytes past the end read as zero"
        );
        file.submit(
            1,
            Op::WriteDsync {
                offset: 8192,
                buf: AlignedBuf::zeroed(4096),
            },
        )
        .expect("submit");
        file.submit(2, Op::SyncData).expect("submit");
        assert_eq!(file.in_flight(), 2);
        let sync = file.wait(2);
        assert!(sync.result.is_ok() && sync.buf.is_none());
        let mut out = Vec::new();
        file.poll(&mut out);
        assert_eq!(
            out.len(),
            1,
            "the write finished before the sync it precedes"
        );
        assert_eq!(out[0].user_data, 1);
        assert!(out[0].result.is_ok());
        assert_eq!(file.in_flight(), 0);
        assert_eq!(file.size(), 12288);
        let misaligned = file.submit(
            3,
            Op::Read {
                offset: 1,
                buf: AlignedBuf::zeroed(4096),
            },
        );
        assert_eq!(
            misaligned.expect_err("misaligned").kind,
            IoErrorKind::InvalidInput
        );
        assert_eq!(
            vfs.open("data", OpenMode::CreateNew)
                .expect_err("exists")
                .kind,
            IoErrorKind::AlreadyExists
        );
        vfs.rename("data", "renamed").expect("rename");
        vfs.sync_dir().expect("sync dir");
        assert_eq!(vfs.list().expect("list"), vec!["renamed".to_string()]);
        vfs.remove("renamed").expect("remove");
        assert_eq!(
            vfs.open("renamed", OpenMode::Existing)
                .expect_err("gone")
                .kind,
            IoErrorKind::NotFound
        );
    }

    /// Submitted operations run on the I/O thread in order, complete exactly once each (by `poll`
    /// or `wait`), and the bound on operations in flight is enforced.
    #[test]
    fn submitted_operations_complete_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vfs = FileVfs::open(dir.path(), true).expect("open");
        let mut file = vfs.open("queue", OpenMode::CreateNew).expect("create");
        for tag in 0..FILE_IN_FLIGHT_MAX as u64 {
            let mut buf = AlignedBuf::zeroed(IO_ALIGN_TEST);
            buf[0] = tag as u8;
            let op = Op::Write {
                offset: tag * IO_ALIGN_TEST as u64,
                buf,
            };
            file.submit(tag, op).expect("submit within the bound");
        }
        let full = file.submit(1000, Op::SyncData).expect_err("over the bound");
        assert_eq!(full.kind, IoErrorKind::QueueFull);
        let last = file.wait(FILE_IN_FLIGHT_MAX as u64 - 1);
        assert_eq!(last.result, Ok(IO_ALIGN_TEST));
        let mut out = Vec::new();
        file.poll(&mut out);
        let mut tags: Vec<u64> = out.iter().map(|c| c.user_data).collect();
        tags.sort_unstable();
        let expected: Vec<u64> = (0..FILE_IN_FLIGHT_MAX as u64 - 1).collect();
        assert_eq!(tags, expected, "every earlier write completed, once");
        file.submit(1000, Op::SyncData).expect("room again");
        // Dropping a file with an operation queued finishes it first.
        drop(file);
        let mut file = vfs.open("queue", OpenMode::Existing).expect("reopen");
        let (back, n) = file
            .read_at(0, AlignedBuf::zeroed(FILE_IN_FLIGHT_MAX * IO_ALIGN_TEST))
            .expect("read");
        assert_eq!(n, FILE_IN_FLIGHT_MAX * IO_ALIGN_TEST);
        for tag in 0..FILE_IN_FLIGHT_MAX {
            assert_eq!(back[tag * IO_ALIGN_TEST], tag as u8);
        }
    }

    const IO_ALIGN_TEST: usize = crate::storage::IO_ALIGN;

    #[test]
    fn direct_io_on_a_real_filesystem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vfs = FileVfs::open(dir.path(), true).expect("open");
        exercise(&mut vfs);
        let mut sub = vfs.subdir("shard-0").expect("subdir");
        exercise(&mut sub);
    }

    /// tmpfs refused O_DIRECT until Linux 6.6 and accepts it since; either way a FileVfs there
    /// must work, through the buffered fallback or directly.
    #[test]
    fn tmpfs_works_with_or_without_direct_io() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let mut vfs = FileVfs::open(dir.path(), true).expect("open");
        exercise(&mut vfs);
    }

    #[test]
    fn buffered_mode_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut vfs = FileVfs::open(dir.path(), false).expect("open");
        let file = vfs.open("probe", OpenMode::CreateNew).expect("create");
        assert!(!file.is_direct());
        vfs.remove("probe").expect("remove");
        exercise(&mut vfs);
    }
}
