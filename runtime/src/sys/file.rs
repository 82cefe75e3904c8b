//! Opening data files for direct I/O.
//!
//! Invariant: a file is opened with O_DIRECT unless the filesystem refuses it (EINVAL, as tmpfs
//! does); then it is opened buffered and the caller is told, so durability comes from fdatasync /
//! RWF_DSYNC, which work on both.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How a file was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// O_DIRECT: bypasses the page cache; buffers, offsets and lengths must be aligned.
    Direct,
    /// Buffered, because the filesystem refused O_DIRECT.
    Buffered,
}

/// Opens `path` read-write with O_DIRECT, or buffered when O_DIRECT is refused. `create_new`
/// creates the file and fails if it exists.
pub fn open_data_file(
    path: &Path,
    create_new: bool,
    allow_direct: bool,
) -> io::Result<(File, Caching)> {
    let open = |flags: i32| {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .custom_flags(flags | libc::O_CLOEXEC);
        if create_new {
            options.create_new(true);
        }
        options.open(path)
    };
    if allow_direct {
        match open(libc::O_DIRECT) {
            Ok(file) => return Ok((file, Caching::Direct)),
            // tmpfs and some FUSE filesystems refuse O_DIRECT with EINVAL. With create_new the
            // failed open may already have created the file: remove it so the retry can create it.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                if create_new {
                    let _ = std::fs::remove_file(path);
                }
            }
            Err(err) => return Err(err),
        }
    }
    open(0).map(|file| (file, Caching::Buffered))
}

/// Allocates `len` bytes at `offset` (fallocate mode 0: the blocks become unwritten extents and
/// the size grows to cover them), so later writes there neither extend the file nor allocate.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: fallocate takes no pointers; the descriptor is kept open by the borrow of `file`.
    let ret = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
