//! Every limit of the RESP front end, each with the reason for its value.
//!
//! A request past any of these limits is a protocol error: the server sends
//! `-ERR Protocol error: ...` and closes the connection, as Redis does,
//! because the stream cannot be resynchronised without reading the bytes the
//! client claimed it would send. docs/resp.md lists these limits; the
//! relations between them are checked at compile time at the bottom.

use crate::constants as native;

/// Longest bulk string in a request, in bytes: the `proto-max-bulk-len`
/// that `CONFIG GET` reports. Why the native protocol's `VALUE_SIZE_MAX`
/// (16 MiB): jube's value limit policy is one number on the wire for both
/// front ends, so `redis-cli -x SET key < file` of a 16 MiB file works and a
/// byte more does not. A bulk longer than this cannot be a valid key or
/// value at all, so it ends the connection before its bytes arrive. Redis's
/// default is 512 MiB.
pub const BULK_SIZE_MAX: usize = native::VALUE_SIZE_MAX;

/// Most elements in a request array (command name plus arguments). Why
/// 64 Ki: the parser keeps one span per argument, so this bounds that list
/// at 1 MiB, and it leaves room above any batch the commands accept (MSET of
/// `BATCH_ITEMS_MAX` pairs is 2049 arguments), so an over-long MGET gets a
/// command error rather than a closed connection. Redis allows `INT_MAX`.
pub const ARRAY_LENGTH_MAX: usize = 64 * 1024;

/// Most bytes one request (its whole array, or its inline line) may occupy
/// in the read buffer. Why the native `FRAME_SIZE_MAX` (17 MiB): a server
/// must buffer a whole request before it runs it, so this bounds one
/// connection's read buffer, the same for both front ends. It holds one
/// maximal bulk plus a key with ample room. A server buffers a request above
/// its small-frame size only after reserving its bytes from a per-core
/// budget (docs/resp.md, "Limits"). Redis's `client-query-buffer-limit` is
/// 1 GiB.
pub const REQUEST_SIZE_MAX: usize = native::FRAME_SIZE_MAX;

/// Longest inline command line (the form telnet and `redis-cli` scripts
/// send), in bytes, counting up to but not including its newline. While no
/// newline has arrived the parser asks for more bytes until the buffer holds
/// this many, then fails. 64 KiB is Redis's `PROTO_INLINE_MAX_SIZE`.
pub const INLINE_SIZE_MAX: usize = 64 * 1024;

/// Longest `*<count>` or `$<length>` header line, prefix byte included and
/// CRLF excluded. The longest valid one is a sign and 19 digits after the
/// prefix (21 bytes), so a header still unterminated at 32 bytes is garbage
/// and fails at once; Redis waits for 64 KiB before saying so.
pub const HEADER_SIZE_MAX: usize = 32;

/// Longest argument echoed back in an `unknown command` error, in bytes, as
/// Redis's `'%.128s'`. Error replies must stay short and single-line.
pub const ERROR_ARG_ECHO_SIZE_MAX: usize = 128;

/// The only database index `SELECT` accepts. jube has one keyspace.
pub const DATABASE_COUNT: u64 = 1;

// A maximal bulk, its header and CRLF fit in one request.
const _: () = assert!(BULK_SIZE_MAX + HEADER_SIZE_MAX + 4 <= REQUEST_SIZE_MAX);
// Keys travel as bulks too.
const _: () = assert!(native::KEY_SIZE_MAX <= BULK_SIZE_MAX);
// A full native batch expressed as MSET (2n + 1 words) fits in the array limit.
const _: () = assert!(2 * native::BATCH_ITEMS_MAX < ARRAY_LENGTH_MAX);
// An inline line fits in a request.
const _: () = assert!(INLINE_SIZE_MAX <= REQUEST_SIZE_MAX);
// "*" or "$", a minus sign and the 19 digits of i64::MAX.
const _: () = assert!(HEADER_SIZE_MAX >= 21);

/// Longest relative expiry (EX, PX, EXPIRE, SETEX, ...) in milliseconds:
/// the native protocol's `TTL_MS_MAX`, 100 years. Longer ones get Redis's
/// `invalid expire time` error; Redis itself accepts up to `i64::MAX` ms.
pub const EXPIRE_IN_MS_MAX: i64 = native::TTL_MS_MAX as i64;

/// Latest absolute expiry (EXAT, PXAT, EXPIREAT, ...) in Unix milliseconds.
/// Why: the server keeps deadlines as Unix nanoseconds in a u64, which ends
/// in the year 2554; a later deadline gets `invalid expire time`.
pub const EXPIRE_AT_UNIX_MS_MAX: i64 = (u64::MAX / 1_000_000) as i64;

const _: () = assert!(native::TTL_MS_MAX <= i64::MAX as u64);
// Now (any time before 2454) plus the longest relative expiry is a valid deadline.
const _: () = assert!(EXPIRE_IN_MS_MAX < EXPIRE_AT_UNIX_MS_MAX / 2);
