//! FileVfs: the engine's storage on real files with plain positional I/O.
//!
//! Every operation runs to completion inside `submit` (pread/pwrite/fdatasync on the calling
//! thread) and its completion waits to be reaped, so the engine sees the same submit/reap protocol
//! as with io_uring, without the overlap. It serves tools (`jubectl validate`), tests and the
//! benchmarks of the engine alone; the server uses the io_uring implementation in `jube-runtime`.
//!
//! Files are opened with O_DIRECT so that reads and writes bypass the page cache exactly as they
//! will through the ring. Filesystems that refuse O_DIRECT (tmpfs before Linux 6.6) get buffered I/O; that
//! fallback is logged once per process and stays correct, since durability comes from fdatasync
//! either way.

use super::{
    check_aligned, AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs,
};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

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
            file,
            path,
            direct,
            done: VecDeque::new(),
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
    file: File,
    path: String,
    direct: bool,
    done: VecDeque<Completion>,
}

impl FileStorage {
    /// Whether this file bypasses the page cache (O_DIRECT).
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    fn run(&mut self, op: Op) -> (Result<usize, IoError>, Option<AlignedBuf>) {
        let err = |e: std::io::Error, offset| IoError::from_std(&e, &self.path, offset);
        match op {
            Op::Read { offset, mut buf } => {
                let mut filled = 0;
                while filled < buf.len() {
                    match self
                        .file
                        .read_at(&mut buf[filled..], offset + filled as u64)
                    {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return (Err(err(e, Some(offset))), Some(buf)),
                    }
                }
                buf[filled..].fill(0);
                (Ok(filled), Some(buf))
            }
            Op::Write { offset, buf } => match self.file.write_all_at(&buf, offset) {
                Ok(()) => (Ok(buf.len()), Some(buf)),
                Err(e) => (Err(err(e, Some(offset))), Some(buf)),
            },
            Op::WriteDsync { offset, buf } => {
                let result = self
                    .file
                    .write_all_at(&buf, offset)
                    .and_then(|()| self.file.sync_data());
                match result {
                    Ok(()) => (Ok(buf.len()), Some(buf)),
                    Err(e) => (Err(err(e, Some(offset))), Some(buf)),
                }
            }
            Op::SyncData => match self.file.sync_data() {
                Ok(()) => (Ok(0), None),
                Err(e) => (Err(err(e, None)), None),
            },
        }
    }
}

impl Storage for FileStorage {
    fn submit(&mut self, user_data: u64, op: Op) -> Result<(), IoError> {
        match &op {
            Op::Read { offset, buf }
            | Op::Write { offset, buf }
            | Op::WriteDsync { offset, buf } => {
                check_aligned(&self.path, *offset, buf.len())?;
            }
            Op::SyncData => {}
        }
        let (result, buf) = self.run(op);
        self.done.push_back(Completion {
            user_data,
            result,
            buf,
        });
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.done.drain(..));
    }

    fn wait(&mut self, user_data: u64) -> Completion {
        let index = self.done.iter().position(|c| c.user_data == user_data);
        let index =
            index.unwrap_or_else(|| panic!("wait for {user_data}, not in flight on {}", self.path));
        self.done.remove(index).expect("index is in range")
    }

    fn in_flight(&self) -> usize {
        self.done.len()
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
        let mut out = Vec::new();
        file.poll(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|c| c.result.is_ok()));
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
