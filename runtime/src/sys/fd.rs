//! File-descriptor helpers: eventfd creation and signalling, duplicating a ring's descriptor, and
//! adopting descriptors the kernel handed back through a completion.
//!
//! Invariant: every descriptor leaves this module inside an `OwnedFd` (or a std type built from
//! one), so it is closed exactly once.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A blocking (so that an io_uring read on it waits instead of failing with EAGAIN), close-on-exec
/// eventfd with counter 0.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the flags are valid constants.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter, waking whoever waits on it. A full counter (EAGAIN) already
/// means "woken", so it is not an error.
pub fn eventfd_signal(fd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: we pass a pointer to 8 live bytes on our stack and their exact length; the
    // descriptor is kept open by the borrow of `fd`.
    let written = unsafe {
        libc::write(
            fd.as_raw_fd(),
            (&one as *const u64).cast::<libc::c_void>(),
            std::mem::size_of::<u64>(),
        )
    };
    if written < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// A new descriptor for the same open file as `fd` (close-on-exec).
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller passes a descriptor it holds open for the duration of this call (a ring's
    // descriptor borrowed from the ring that owns it); `try_clone_to_owned` dups it immediately.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned()
}

/// Takes ownership of a descriptor the kernel created for us (an accepted connection reported by
/// a completion). Panics on a negative value: callers check the completion's result first.
pub fn adopt(fd: i32) -> OwnedFd {
    assert!(fd >= 0, "adopting an invalid descriptor {fd}");
    // SAFETY: a non-negative accept completion result is a new descriptor that the kernel installed
    // in our table for us and that no other object owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
