//! Every limit of the server, each with the reason for its value.
//!
//! Invariants: every queue in the server is bounded by one of these constants or by a configured
//! limit named beside it (`connections_max`, `connection_in_flight_max`); relations between the
//! limits and the protocol's are checked at compile time at the bottom of this file.

use jube_protocol::constants::{FRAME_PREFIX_SIZE, FRAME_SIZE_MAX, PIPELINE_DEPTH_MAX};
use std::time::Duration;

/// Bytes asked of the socket per receive. 64 KiB holds hundreds of small requests, so a pipelined
/// client's burst is decoded in one pass, and a connection's idle cost stays small.
pub const RECV_CHUNK_SIZE: usize = 64 * 1024;

/// Largest unread input a connection buffers: one whole frame of the largest size plus one receive
/// chunk. The reader never holds more, whatever the client sends (an oversized length prefix is
/// rejected by the decoder before its bytes are awaited).
pub const READ_BUFFER_SIZE_MAX: usize = FRAME_PREFIX_SIZE + FRAME_SIZE_MAX + RECV_CHUNK_SIZE;

/// Encoded responses the writer gathers before one send. 256 KiB amortises the system call over
/// many small responses while keeping a slow client's unsent bytes per connection small; the writer
/// does not encode more until the send completes, and the reader stops once
/// `connection_in_flight_max` requests wait, so a client that does not read cannot grow memory.
pub const OUTPUT_BUFFER_SIZE_MAX: usize = 256 * 1024;

/// Calls or returns in one cross-core mesh message. Batching many calls per message amortises the
/// wakeup of the receiving core (~30 us when it sleeps, shared/BENCHMARKING.md); 256 bounds the work
/// the receiver does per message so that it reaps its ring often.
pub const MESH_BATCH_CALLS_MAX: usize = 256;

/// Messages the mesh receiver takes per wakeup before yielding to other tasks of its core.
pub const MESH_RECV_BATCH_MAX: usize = 64;

/// How long a graceful shutdown waits for connections to finish their in-flight requests before
/// closing the shards anyway. Long enough for a group commit and a full output buffer to drain to
/// a healthy client; short enough for service managers (systemd's default stop timeout is 90 s).
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Poll interval of the shutdown drain while connections finish; short so that an idle server
/// stops in milliseconds.
pub const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Longest wait of a shard's committer when nothing is pending and the engine asks for no deadline:
/// a safety net so that a missed wakeup costs latency, never a hang.
pub const COMMITTER_IDLE_WAIT_MAX: Duration = Duration::from_millis(100);

/// Highest latency the per-operation histograms record, in microseconds (one minute); slower
/// operations are clamped to it. Three significant figures keep each histogram near 20 KiB.
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// Significant figures of the latency histograms.
pub const LATENCY_SIGNIFICANT_FIGURES: u8 = 3;

/// Bytes a scan reply may carry before it ends the page early with a continuation token, below the
/// frame maximum by room for the reply's envelope and per-entry overhead.
pub const SCAN_REPLY_SIZE_MAX: usize = FRAME_SIZE_MAX - 64 * 1024;

/// FlatBuffers overhead per scan entry (table, vtable offset, two vector lengths, padding): an upper
/// bound used against `SCAN_REPLY_SIZE_MAX`.
pub const SCAN_ENTRY_OVERHEAD_SIZE: usize = 64;

/// Shards a data directory may have: the runtime's core limit times a spread factor of 4, so that
/// a directory created on a large host still opens on a small one.
pub const SHARDS_MAX: usize = 256;

// The server must keep reading until the client's whole pipeline is in flight (docs/protocol.md).
const _: () = assert!(PIPELINE_DEPTH_MAX >= 1);
const _: () = assert!(READ_BUFFER_SIZE_MAX > FRAME_PREFIX_SIZE + FRAME_SIZE_MAX);
const _: () = assert!(OUTPUT_BUFFER_SIZE_MAX >= RECV_CHUNK_SIZE);
const _: () = assert!(SCAN_REPLY_SIZE_MAX < FRAME_SIZE_MAX);
const _: () = assert!(MESH_BATCH_CALLS_MAX >= 1 && MESH_RECV_BATCH_MAX >= 1);
