//! Every limit of the server, each with the reason for its value.
//!
//! Invariants: every queue in the server is bounded by one of these constants or by a configured
//! limit named beside it (`connections_max`, `connection_in_flight_max`); relations between the
//! limits and the protocol's are checked at compile time at the bottom of this file.

use jube_protocol::constants::{FRAME_PREFIX_SIZE, FRAME_SIZE_MAX, PIPELINE_DEPTH_MAX};
use std::time::Duration;

/// Longest value the server takes, from either front end: the protocol's `VALUE_SIZE_MAX` (and so
/// the RESP `BULK_SIZE_MAX`), 16 MiB. The engine must store every such value (values above a
/// quarter page go to its value log), which the check below holds it to: a value the wire allows
/// never fails in the engine for its size.
pub const VALUE_SIZE_MAX: usize = jube_protocol::constants::VALUE_SIZE_MAX;

/// Bytes asked of the socket per receive. 64 KiB holds hundreds of small requests, so a pipelined
/// client's burst is decoded in one pass, and a connection's idle cost stays small.
pub const RECV_CHUNK_SIZE: usize = 64 * 1024;

/// Largest unread input a connection buffers: one whole frame of the largest size plus one receive
/// chunk. The reader never holds more, whatever the client sends (an oversized length prefix is
/// rejected by the decoder before its bytes are awaited); past `LARGE_FRAME_SIZE_MIN` the frame's
/// bytes are reserved from the core's budget first.
pub const READ_BUFFER_SIZE_MAX: usize = FRAME_PREFIX_SIZE + FRAME_SIZE_MAX + RECV_CHUNK_SIZE;

/// Largest frame (or RESP request, or encoded reply) a connection buffers on its own: anything
/// larger is a *large frame*, whose bytes are first reserved from its core's budget
/// ([`LARGE_INPUT_BYTES_PER_CORE_MAX`], [`LARGE_OUTPUT_BYTES_PER_CORE_MAX`]). One receive chunk:
/// small requests (every key, every value up to 64 KiB) never touch the budget.
pub const LARGE_FRAME_SIZE_MIN: usize = RECV_CHUNK_SIZE;

/// Capacity a connection's read buffer keeps between frames: a large frame grows it to the
/// frame's size once (its bytes reserved), and after the frame it shrinks back to this, so an idle
/// connection that once sent 16 MiB holds 128 KiB, not 16 MiB.
pub const INPUT_BUFFER_RETAINED_SIZE: usize = 2 * RECV_CHUNK_SIZE;

/// Bytes of large frames that one core's connections may be receiving at once (the sum of their
/// reservations). Why 64 MiB: four maximal (17 MiB) frames fit with room for smaller ones, so a
/// core keeps receiving large values from several clients at wire speed, while 1,000 connections
/// each sending 16 MiB hold at most 64 MiB per core (plus one request's growth, see
/// frame_budget.rs) instead of 16 GiB. Past it a connection that needs more waits (it is not read
/// meanwhile: TCP backpressure), in arrival order.
pub const LARGE_INPUT_BYTES_PER_CORE_MAX: usize = 64 * 1024 * 1024;

/// Bytes of large encoded replies (a Get of a 16 MiB value) that one core's connections may hold
/// at once, each from its encoding until its last byte is sent. Why 64 MiB: as for input. Past it a
/// connection's writer waits, in arrival order, before encoding its reply (its reader stops in
/// turn once `connection_in_flight_max` requests wait).
pub const LARGE_OUTPUT_BYTES_PER_CORE_MAX: usize = 64 * 1024 * 1024;

/// Longest time a connection holding budget for a large frame may go without progress: a receive
/// or send that moves no byte for this long closes the connection, so that a client that stops
/// sending the rest of its 16 MiB (or stops reading its reply) cannot pin its core's budget, and so
/// block every other large frame there, for longer than this.
pub const LARGE_FRAME_STALL_TIMEOUT: Duration = Duration::from_secs(10);

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
const _: () = assert!(VALUE_SIZE_MAX <= jube_engine::constants::VALUE_SIZE_MAX);
const _: () = assert!(VALUE_SIZE_MAX == jube_protocol::resp::constants::BULK_SIZE_MAX);
// A frame of the largest size fits each budget, so waiting for budget always ends.
const _: () = assert!(LARGE_INPUT_BYTES_PER_CORE_MAX >= FRAME_PREFIX_SIZE + FRAME_SIZE_MAX);
const _: () = assert!(LARGE_OUTPUT_BYTES_PER_CORE_MAX >= FRAME_PREFIX_SIZE + FRAME_SIZE_MAX);
const _: () = assert!(LARGE_FRAME_SIZE_MIN <= INPUT_BUFFER_RETAINED_SIZE);
const _: () = assert!(INPUT_BUFFER_RETAINED_SIZE < READ_BUFFER_SIZE_MAX);

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
const _: () = assert!(LARGE_INPUT_BYTES_PER_CORE_MAX >= RESP_REQUEST_SIZE_MAX);
const _: () = assert!(SCAN_CURSORS_MAX >= 1 && SCAN_CALL_KEYS_MAX >= 1 && KEYS_CALL_KEYS_MAX >= 1);
const _: () = assert!(KEYS_REPLY_COUNT_MAX >= KEYS_CALL_KEYS_MAX && FLUSH_BATCH_KEYS_MAX >= 1);
const _: () = assert!(SCAN_CALLS_PER_REQUEST_MAX >= 1);
