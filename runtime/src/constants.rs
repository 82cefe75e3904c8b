//! Every limit of the runtime, each with the reason for its value.
//!
//! Invariants: every queue in the runtime is bounded by one of these constants (or, for run queues,
//! by the number of live tasks, itself bounded by [`TASKS_PER_CORE_MAX`]); relations between the
//! limits are checked at compile time at the bottom of this file.

use std::time::Duration;

/// Submission queue entries per ring. 256 SQEs cover a group commit of 64 writes plus their syncs,
/// the network operations of a few hundred connections, and timers, between two `io_uring_enter`
/// calls; when the SQ fills up the reactor submits early, so this bounds batching, not concurrency.
pub const RING_ENTRIES: u32 = 256;

/// Completion queue entries per ring. Four times the SQ, because multishot accept and the cross-core
/// wakeups post completions that have no submission of their own in the same batch.
pub const RING_CQ_ENTRIES: u32 = 1024;

/// Operations in flight on one core's ring at once (the size of the reactor's slot table, fixed at
/// start). A submit beyond it fails with `QueueFull` rather than allocating: the engine reaps and
/// retries, the network layer waits.
pub const OPS_IN_FLIGHT_MAX: usize = 4096;

/// Live tasks on one core. Run queues hold each task at most once, so this also bounds them. The
/// server must bound connections per core below this (one task per connection plus a few).
pub const TASKS_PER_CORE_MAX: usize = 65_536;

/// Foreground tasks run per executor tick before the ring is reaped again. Small enough that I/O
/// completions and cross-core messages are seen every few tens of microseconds under load.
pub const FOREGROUND_BATCH_MAX: usize = 64;

/// Background tasks run per tick while foreground work is waiting: one, so background work (checkpoint,
/// sweeps, GC) gets a small guaranteed share and never delays a request by more than one poll.
pub const BACKGROUND_PER_BUSY_TICK_MAX: usize = 1;

/// How long an idle core keeps polling its ring and its inboxes before it sleeps in
/// `io_uring_enter`. Waking an idle vCPU costs ~30 us on our VMs (shared/BENCHMARKING.md), so a
/// spin of the same order catches the next request of a busy connection or the reply of another
/// core without paying that cost. Measured in docs/benchmarks.md (`## Runtime`).
pub const IDLE_SPIN: Duration = Duration::from_micros(50);

/// Messages in each one-way queue between two cores. 1024 small messages is a few hundred
/// microseconds of work for the receiver: enough to batch many messages per wakeup, small enough
/// that a stuck receiver pushes back on its senders quickly.
pub const MESH_QUEUE_CAPACITY: usize = 1024;

/// Jobs queued from threads outside the runtime to one core (`Runtime::spawn_on`).
pub const INJECT_QUEUE_CAPACITY: usize = 1024;

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base pages): the alignment
/// of the page cache arena's advice (`sys::memory`).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Cores one runtime may run. Bounds the mesh to `CORES_MAX^2` queues.
pub const CORES_MAX: usize = 64;

/// Pending connections in each listener's kernel backlog.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Accepted connections a multishot accept may queue before the listener stops accepting until the
/// application has taken some (the kernel's listen backlog then holds the rest).
pub const ACCEPT_BACKLOG_MAX: usize = 256;

/// Provided buffers in each core's receive buffer ring (IORING_REGISTER_PBUF_RING), shared by every
/// connection of that core. A multishot recv takes one per completion; the reactor copies the bytes
/// into the connection's queue and hands the buffer back at the same reap, so the ring only runs dry
/// (ENOBUFS, which ends the multishot without losing data: the bytes stay in the socket and the
/// connection re-arms) when more than this many receives complete between two reaps. A power of two
/// (the kernel's rule), at most 32768 (the kernel's bound).
pub const RECV_BUFFER_COUNT: u16 = 128;

/// Bytes in each provided receive buffer: one completion carries at most this much. 16 KiB holds a
/// pipelined batch of small requests in one completion and keeps a 1 MiB transfer at 64 completions.
pub const RECV_BUFFER_SIZE: usize = 16 * 1024;

/// Received bytes a connection may have queued (copied out of provided buffers, not yet taken by
/// its reader) before its multishot recv is cancelled; the kernel's socket buffer then holds the
/// rest, which is TCP backpressure. A soft bound: completions already posted when the cancel is
/// submitted are still queued (never dropped), at most one reap batch more.
pub const RECV_QUEUED_BYTES_MAX: usize = 256 * 1024;

/// Entries of each core's sparse table of registered (fixed) files. Registering a file table
/// costs no locked memory; a data file takes an entry while it is open, and a file opened when
/// the table is full uses its plain descriptor.
pub const FIXED_FILES_MAX: u32 = 1024;

/// The locked-memory budget of one core's registered I/O buffers. RLIMIT_MEMLOCK is 8 MiB on our
/// machines and cannot be raised (shared/IO_URING.md), and it is shared by every core of the
/// process: registration past it fails (ENOMEM) and the caller falls back to plain buffers.
pub const REGISTERED_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How long shutdown waits for in-flight operations that ignore cancellation (file writes and syncs
/// cannot be cancelled) before giving up and leaking their buffers instead of freeing memory the
/// kernel may still write to.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

const _: () = assert!(RING_CQ_ENTRIES >= 2 * RING_ENTRIES);
const _: () = assert!(RING_ENTRIES.is_power_of_two() && RING_CQ_ENTRIES.is_power_of_two());
const _: () = assert!(OPS_IN_FLIGHT_MAX <= u32::MAX as usize - 16);
const _: () = assert!(
    BACKGROUND_PER_BUSY_TICK_MAX >= 1 && BACKGROUND_PER_BUSY_TICK_MAX < FOREGROUND_BATCH_MAX
);
const _: () = assert!(CORES_MAX * CORES_MAX * MESH_QUEUE_CAPACITY <= 1 << 22);
const _: () = assert!(ACCEPT_BACKLOG_MAX <= LISTEN_BACKLOG as usize);
const _: () = assert!(RECV_BUFFER_COUNT.is_power_of_two() && RECV_BUFFER_COUNT <= 32_768);
const _: () = assert!(RECV_BUFFER_SIZE >= 4096 && RECV_BUFFER_SIZE <= u32::MAX as usize);
const _: () = assert!(RECV_BUFFER_COUNT as usize * RECV_BUFFER_SIZE <= 8 * 1024 * 1024);
const _: () = assert!(RECV_QUEUED_BYTES_MAX >= RECV_BUFFER_SIZE);
const _: () = assert!(REGISTERED_BUFFER_BYTES_MAX <= 8 * 1024 * 1024);
