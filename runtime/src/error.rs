//! Errors of starting and stopping the runtime.
//!
//! Invariant: every variant says what failed and, where the operator can act, what to do.

use std::fmt;

/// Why the runtime could not start or stop cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The kernel refused to create an io_uring instance.
    IoUringUnavailable { errno: Option<i32>, detail: String },
    /// A configuration value is out of range.
    InvalidConfig(String),
    /// A core failed to start (ring setup, eventfd).
    CoreStart { core: usize, detail: String },
    /// A core's thread panicked.
    CorePanicked { core: usize },
}

impl RuntimeError {
    /// Classifies a failure of `io_uring_setup`.
    pub fn from_setup_error(err: &std::io::Error) -> RuntimeError {
        RuntimeError::IoUringUnavailable {
            errno: err.raw_os_error(),
            detail: err.to_string(),
        }
    }

    fn advice(errno: Option<i32>) -> &'static str {
        match errno {
            Some(libc::ENOSYS) => {
                "this kernel has no io_uring (Linux 6.1 or newer is required; 5.19 works with fewer features)"
            }
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "io_uring is forbidden here: check /proc/sys/kernel/io_uring_disabled (must be 0, or 1 with the \
                 process in the io_uring_group) and, in a container, allow io_uring_setup, io_uring_enter and \
                 io_uring_register in the seccomp profile (e.g. docker --security-opt seccomp=unconfined)"
            }
            Some(libc::ENOMEM) => {
                "the kernel could not allocate the ring: raise RLIMIT_MEMLOCK (ulimit -l) on kernels older than 5.12, \
                 or free memory"
            }
            _ => "jube needs io_uring (Linux 6.1 or newer recommended)",
        }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::IoUringUnavailable { errno, detail } => {
                write!(
                    f,
                    "io_uring is unavailable ({detail}): {}",
                    RuntimeError::advice(*errno)
                )
            }
            RuntimeError::InvalidConfig(detail) => {
                write!(f, "invalid runtime configuration: {detail}")
            }
            RuntimeError::CoreStart { core, detail } => {
                write!(f, "core {core} failed to start: {detail}")
            }
            RuntimeError::CorePanicked { core } => write!(f, "core {core}'s thread panicked"),
        }
    }
}

impl std::error::Error for RuntimeError {}
