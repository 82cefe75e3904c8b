//! Every limit of the wire protocol, each with the reason for its value.
//!
//! These numbers are part of the protocol contract (docs/protocol.md lists
//! them): a server rejects requests past them with the status named beside
//! each, and a client refuses to send such requests in the first place. The
//! relations between limits are checked at compile time at the bottom of this
//! file, so changing one limit cannot silently break another.

/// The protocol version this crate speaks. Bumped only for changes that the
/// append-only rules (docs/protocol.md, "Versioning") cannot express.
pub const PROTOCOL_VERSION: u16 = 1;

/// The oldest protocol version a server built from this crate still accepts.
/// Requests outside `PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION` get
/// `UnsupportedVersion`.
pub const PROTOCOL_VERSION_MIN: u16 = 1;

/// The FlatBuffers file identifier at bytes 8..12 of every frame.
pub const FILE_IDENTIFIER: &str = "JUBE";

/// Size of the little-endian u32 length prefix in front of every frame.
pub const FRAME_PREFIX_SIZE: usize = 4;

/// Largest FlatBuffer (the bytes after the length prefix) either side sends.
/// Why `VALUE_SIZE_MAX` plus 1 MiB (17 MiB): it holds one Put of the largest
/// key and value, and one Get answer of the largest value, with room for a
/// batch's keys beside it. A server does not keep a buffer of this size per
/// connection: it buffers a frame above its small-frame size only after
/// reserving its bytes from a per-core budget (docs/protocol.md, "Large
/// frames"). A larger prefix gets `FrameTooLarge` and the connection is
/// closed, because the stream cannot be resynchronised without reading the
/// whole claimed frame.
pub const FRAME_SIZE_MAX: usize = VALUE_SIZE_MAX + 1024 * 1024;

/// Longest key, in bytes (`KeyTooLarge`). Why 1 KiB: B+tree pages must hold
/// several keys for fan-out, and keys are copied into every index level, so
/// a long key costs far more than a long value; 1 KiB covers composite and
/// path-like keys in practice.
pub const KEY_SIZE_MAX: usize = 1024;

/// Longest value, in bytes (`ValueTooLarge`). Why 16 MiB: the engine stores
/// values above a quarter page in its value log, whose records hold up to
/// this much; 16 MiB covers documents, images and small blobs, while one
/// value still moves through a server in milliseconds and a handful of them
/// fit each core's large-frame budget. Bigger objects belong in a blob store
/// with their key here. Redis's `proto-max-bulk-len` is 512 MiB.
pub const VALUE_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Most keys in one MultiGet or entries in one MultiPut (`TooManyItems`).
/// Why 1024: a batch fans out to every shard; bounding it bounds the memory
/// and cross-core messages one request can pin, while still amortising the
/// round trip over many keys. Batches are also bounded by `FRAME_SIZE_MAX`.
pub const BATCH_ITEMS_MAX: usize = 1024;

/// Most entries one Scan returns (`TooManyItems` if asked for more). Why
/// 1024: the server merges every shard's stream and must buffer the page it
/// returns; larger ranges continue with the continuation token. A limit of 0
/// in a request means this value.
pub const SCAN_LIMIT_MAX: u32 = 1024;

/// Longest scan continuation token (`InvalidRequest`). The token is opaque to
/// clients, but a server builds it from the last key returned plus a little
/// state, so a key plus 64 bytes is enough and bounds what a client can make
/// the server parse.
pub const CONTINUATION_SIZE_MAX: usize = KEY_SIZE_MAX + 64;

/// Longest time to live, in milliseconds (`InvalidRequest`): 100 years. Why:
/// the server turns a TTL into an absolute deadline in nanoseconds in a u64,
/// which overflows after about 584 years; 100 years leaves room for any clock.
pub const TTL_MS_MAX: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Longest error message a response carries, in bytes; longer ones are cut
/// at a character boundary when encoded. Why 4 KiB: enough for any
/// diagnostic, small enough that an error response is always cheap.
pub const MESSAGE_SIZE_MAX: usize = 4096;

/// Requests a client keeps in flight on one connection before it reads a
/// response. Servers must accept at least this many in flight per
/// connection: a blocking client that writes while the server stops reading
/// would otherwise deadlock once both socket buffers fill.
pub const PIPELINE_DEPTH_MAX: usize = 64;

/// Most assertions plus ops in one Txn (`TooManyItems`). Why 1024: as
/// `BATCH_ITEMS_MAX`, a transaction fans out to its keys' shards and locks
/// them all at once; the bound keeps what one request can lock and pin
/// bounded, while a write of a full batch still fits. It must not exceed the
/// engine's limit per shard (`jube_engine::txn::TXN_ITEMS_MAX`, checked in the
/// server), so that any valid Txn fits any one shard.
pub const TXN_ITEMS_MAX: usize = BATCH_ITEMS_MAX;

/// Most bytes of keys and values (assertion keys and expected values, op
/// keys and put values) one Txn carries (`TooManyItems`). Why 2 MiB: a
/// shard logs its part of a transaction as one WAL record, which must fit
/// the WAL's buffer with room for other writers; values up to the inline
/// threshold (a quarter page) are logged whole in it, so 2 MiB holds a full
/// batch of them; larger values go to the shard's value log and the record
/// carries 24-byte pointers, so one 2 MiB transaction holds, say, a 1 MiB
/// value or MSET of many 64 KiB values. It keeps the request, and the
/// engine's per-transaction value-log bytes, well inside a frame and the
/// value log's buffer.
pub const TXN_SIZE_MAX: usize = 2 * 1024 * 1024;

/// Verifier: deepest nesting of tables. Our deepest message today is
/// Response > InfoResult > InfoSection > Metric (4); 16 leaves room for Txn
/// (a table of operations) without letting a crafted frame recurse deeply.
pub const VERIFIER_DEPTH_MAX: usize = 16;

/// Verifier: most tables in one frame. The largest legitimate counts are a
/// full batch (BATCH_ITEMS_MAX tables plus the envelope) and INFO of a server
/// with many shards (sections times metrics); 64 Ki covers both while
/// bounding the work one frame can make the verifier do.
pub const VERIFIER_TABLES_MAX: usize = 64 * 1024;

/// Verifier: most bytes the verifier may visit, counting bytes reached by
/// several offsets once per offset. Honest frames share only their small
/// vtables, so they stay well under twice their size; a frame that aliases
/// one large vector from many tables (to make readers do quadratic work) is
/// rejected.
pub const VERIFIER_APPARENT_SIZE_MAX: usize = 2 * FRAME_SIZE_MAX;

/// Bytes of FlatBuffers structure (root offset, identifier, vtables, table
/// headers, vector lengths, padding) in a Put frame, beyond its key and
/// value: a generous upper bound used only to check `FRAME_SIZE_MAX` below.
const PUT_OVERHEAD_SIZE_MAX: usize = 256;

const _: () = assert!(PROTOCOL_VERSION_MIN >= 1 && PROTOCOL_VERSION_MIN <= PROTOCOL_VERSION);
const _: () = assert!(FILE_IDENTIFIER.len() == 4);
// The largest Put (and so the largest Get answer) fits in one frame.
const _: () = assert!(KEY_SIZE_MAX + VALUE_SIZE_MAX + PUT_OVERHEAD_SIZE_MAX <= FRAME_SIZE_MAX);
// The length prefix is a u32.
const _: () = assert!(FRAME_SIZE_MAX <= u32::MAX as usize);
// A batch of maximal keys fits in a frame, so MultiGet is limited by
// BATCH_ITEMS_MAX rather than by the frame.
const _: () = assert!(BATCH_ITEMS_MAX * (KEY_SIZE_MAX + 16) <= FRAME_SIZE_MAX);
// A full batch or scan page passes the verifier's table count.
const _: () = assert!(BATCH_ITEMS_MAX + 4 <= VERIFIER_TABLES_MAX);
const _: () = assert!(SCAN_LIMIT_MAX as usize + 4 <= VERIFIER_TABLES_MAX);
const _: () = assert!(CONTINUATION_SIZE_MAX >= KEY_SIZE_MAX);
const _: () = assert!(VERIFIER_APPARENT_SIZE_MAX >= FRAME_SIZE_MAX);
// A maximal Txn fits in a frame (its bytes plus a generous 64 bytes of
// structure per assertion and op) and passes the verifier's table count.
const _: () = assert!(TXN_SIZE_MAX + TXN_ITEMS_MAX * PUT_OVERHEAD_SIZE_MAX / 4 <= FRAME_SIZE_MAX);
const _: () = assert!(TXN_ITEMS_MAX + 4 <= VERIFIER_TABLES_MAX);
// A transaction holds at least one value of the largest inline size (a
// quarter of the largest page: 16 KiB) and several 64 KiB values, which go
// to the value log.
const _: () = assert!(TXN_SIZE_MAX >= KEY_SIZE_MAX + 16 * 1024);
const _: () = assert!(TXN_SIZE_MAX >= 16 * (KEY_SIZE_MAX + 64 * 1024));
// 100 years in nanoseconds still fits in a u64 deadline.
const _: () = assert!(TTL_MS_MAX.checked_mul(1_000_000).is_some());
