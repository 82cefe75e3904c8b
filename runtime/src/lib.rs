//! jube-runtime: thread-per-core executors on io_uring.
//!
//! One pinned thread per core, each owning one io_uring ring and a single-threaded executor
//! ([`executor`]); files with direct I/O that implement the engine's `Storage` and `Vfs`
//! ([`fs`]); TCP through the ring with one SO_REUSEPORT listener per core ([`net`]); io_uring
//! timeouts ([`timer`]); and a mesh of bounded queues between every pair of cores, woken through
//! the rings ([`mesh`]).
//!
//! Invariants: only [`sys`] contains `unsafe` code or libc calls; every queue is bounded by a
//! constant in [`constants`]; a core's ring, tasks and files never leave its thread (they are
//! `!Send`), and cores talk only through the mesh or [`Runtime::spawn_on`].

#![deny(unsafe_code)]

pub mod constants;
pub mod error;
pub mod executor;
pub mod fs;
pub mod mesh;
pub mod net;
mod reactor;
pub mod runtime;
mod sys;
pub mod timer;

pub use error::RuntimeError;
pub use executor::{
    core_count, current_core, ops_in_flight, spawn, spawn_background, try_spawn, yield_now,
    JoinHandle, Priority, SpawnError,
};
pub use fs::{DirectIo, IoBuf, UringFile, UringVfs};
pub use mesh::{Endpoint, Mesh, SendError, TrySendError};
pub use net::{recv_stats, RecvStats, TcpListener, TcpStream};
pub use reactor::{file_io_completed, FileIoCompleted};
pub use runtime::{Builder, Runtime};
pub use sys::ring::RingFeatures;
pub use timer::{sleep, timeout, Elapsed};
