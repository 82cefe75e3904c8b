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

/// The shortest time the committer sleeps while its shards' I/O is in flight, waiting for a
/// completion: a deadline already past must not turn the wait into a spin (a sync takes
/// ~50-150 µs here; a completion or a new write ends the wait sooner).
pub const COMMITTER_BUSY_WAIT_MIN: Duration = Duration::from_millis(1);

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

/// Largest unread input a RESP connection buffers: one whole request of the largest size (the
/// RESP decoder refuses a longer one before its bytes are awaited) plus one receive chunk.
pub const RESP_READ_BUFFER_SIZE_MAX: usize = RESP_REQUEST_SIZE_MAX + RECV_CHUNK_SIZE;

/// The RESP decoder's per-request bound, named here for the relation checks below.
pub const RESP_REQUEST_SIZE_MAX: usize = jube_protocol::resp::constants::REQUEST_SIZE_MAX;

/// SCAN cursors the server remembers (process-wide). A Redis cursor is a number, too small to hold
/// a shard index and a key of up to 512 bytes, so the server keeps each cursor's position and
/// hands out its id; past this many the oldest is forgotten (SCAN with it then answers `invalid
/// cursor`). 4096 positions of at most ~530 bytes stay near 2 MiB.
pub const SCAN_CURSORS_MAX: usize = 4096;

/// Keys one SCAN asks of one shard per call: COUNT is a hint, clamped to this, so that one SCAN
/// costs a bounded amount of work on the shard's core.
pub const SCAN_CALL_KEYS_MAX: usize = 1024;

/// Shard calls one SCAN makes before replying (possibly with fewer keys than COUNT, which Redis
/// allows): bounds a SCAN's latency when many shards or expired keys yield nothing.
pub const SCAN_CALLS_PER_REQUEST_MAX: usize = 16;

/// Keys KEYS asks of one shard per call.
pub const KEYS_CALL_KEYS_MAX: usize = 1024;

/// Most keys KEYS returns; past this it answers an error that points to SCAN, so that one command
/// cannot build an unbounded reply (100 000 keys of at most 512 bytes stay under 52 MiB).
pub const KEYS_REPLY_COUNT_MAX: usize = 100_000;

/// Keys FLUSHDB and FLUSHALL delete per shard call: one write batch small enough that the WAL
/// buffer never refuses it, and that other requests to the shard run between batches.
pub const FLUSH_BATCH_KEYS_MAX: usize = 128;

/// Calls one key's lock wait queue holds on its shard (a call naming a key locked by a prepared
/// cross-shard transaction waits there until the transaction finishes on the shard); past it a
/// call is answered `Busy`. Why 256: enough for every connection of a busy benchmark (50-100)
/// to queue behind one hot key, small enough that one key cannot pin more than a few hundred
/// calls' memory.
pub const TXN_LOCK_WAITERS_MAX: usize = 256;

/// Longest a call waits for a locked key before it is answered `Busy`. A lock lasts two durable
/// writes (Prepare, Decision) plus a Commit, milliseconds even under load; 5 s bounds the wait
/// if a transaction's coordinator failed and only a restart can resolve it.
pub const TXN_LOCK_WAIT_MAX: Duration = Duration::from_secs(5);

/// Times EXEC re-runs a RESP transaction whose snapshot changed between its read and its commit
/// (a key it touched but did not WATCH was written meanwhile) before answering an error. Each
/// retry reads again; conflicts need a concurrent writer of the same key each time.
pub const EXEC_RETRIES_MAX: usize = 16;

/// Commands queued between MULTI and EXEC; past it the command is refused and EXEC answers
/// EXECABORT. EXEC's write transaction holds an assertion and at most a write per key touched,
/// plus the watched keys, within the protocol's `TXN_ITEMS_MAX`; a block of single-key commands
/// on distinct keys fits up to about half of it (more keys per command: EXEC says the
/// transaction is too large).
pub const MULTI_QUEUED_MAX: usize = jube_protocol::constants::TXN_ITEMS_MAX / 2;

/// Keys one connection may WATCH at once (each is an assertion of EXEC's transactions).
pub const WATCHED_KEYS_MAX: usize = jube_protocol::constants::TXN_ITEMS_MAX / 4;

// Any valid protocol transaction fits the engine's limit on one shard.
const _: () = assert!(jube_protocol::constants::TXN_ITEMS_MAX <= jube_engine::txn::TXN_ITEMS_MAX);

const _: () = assert!(RESP_READ_BUFFER_SIZE_MAX > RESP_REQUEST_SIZE_MAX);
const _: () = assert!(TXN_LOCK_WAITERS_MAX >= 1 && EXEC_RETRIES_MAX >= 1);
const _: () = assert!(SCAN_CURSORS_MAX >= 1 && SCAN_CALL_KEYS_MAX >= 1 && KEYS_CALL_KEYS_MAX >= 1);
const _: () = assert!(KEYS_REPLY_COUNT_MAX >= KEYS_CALL_KEYS_MAX && FLUSH_BATCH_KEYS_MAX >= 1);
const _: () = assert!(SCAN_CALLS_PER_REQUEST_MAX >= 1);
