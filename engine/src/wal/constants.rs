//! Limits and format constants of the WAL, each with the reason for its value.
//!
//! Invariants (checked at compile time below): every on-disk unit is a whole number of
//! [`IO_ALIGN`] blocks, a record header fits in a block, a flush fits in a segment, and the
//! in-memory buffer holds at least one full flush besides the one in flight.

use crate::storage::IO_ALIGN;

/// Identifies a WAL segment file ("JUBEWAL" and a NUL), so that a stray file is never parsed.
pub const SEGMENT_MAGIC: [u8; 8] = *b"JUBEWAL\0";

/// On-disk format version of segments and records. Bump on any layout change.
pub const WAL_FORMAT_VERSION: u32 = 1;

/// The segment header occupies the whole first block so that records start block-aligned and
/// the header is never rewritten by a later flush.
pub const SEGMENT_HEADER_BYTES: usize = IO_ALIGN;

/// Bytes of the header that are meaningful (magic .. crc); the rest of the block is zero.
pub const SEGMENT_HEADER_USED_BYTES: usize = 48;

/// Fixed part of every record: crc, length, LSN, synced-LSN hint, type, reserved.
pub const RECORD_HEADER_BYTES: usize = 32;

/// Default segment size: big enough that rollover (and its directory fsync) is rare, small
/// enough that recycling after a checkpoint returns space promptly.
pub const SEGMENT_SIZE_DEFAULT: u64 = 64 * 1024 * 1024;

/// Smallest segment a configuration may ask for: a header block and two data blocks.
pub const SEGMENT_SIZE_MIN: u64 = 3 * IO_ALIGN as u64;

/// Default largest single flush (one write). A 1 MiB durable write costs about twice a 4 KiB one
/// on the disks we measured (BENCHMARKING.md), so larger batches stop paying off.
pub const FLUSH_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// Default bound of bytes appended and not yet durable (staged plus in flight). Beyond it
/// `append` answers `Busy`: memory stays bounded and the caller sheds load.
pub const BUFFER_BYTES_MAX_DEFAULT: usize = 4 * FLUSH_BYTES_MAX_DEFAULT;

/// Default longest wait of a record before a flush is forced, under `SyncPolicy::Always`.
/// Zero: flush whenever the disk is idle; batching comes from records that arrive while a flush
/// is in flight, so an idle server adds no latency.
pub const FLUSH_DELAY_NS_MAX_DEFAULT: u64 = 0;

/// Size of one zero-fill write while preallocating a new segment in the background: large
/// enough to be efficient, small enough not to monopolise the disk queue.
pub const ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;

/// Recovery reads a segment through a window of this many bytes (plus room for one largest
/// record), not whole: the memory it needs at open is bounded whatever the segment size.
pub const RECOVERY_WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// Released segments kept (renamed) for reuse instead of deleted. Rewriting a written file is
/// ~3x cheaper to fdatasync than writing fresh extents; more than a few is wasted disk.
pub const FREE_SEGMENTS_MAX: usize = 4;

/// Buckets of the per-commit histograms: bucket `i` counts values in `[2^(i-1), 2^i)`, bucket 0
/// counts zero, the last bucket everything larger.
pub const HISTOGRAM_BUCKETS: usize = 24;

const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(IO_ALIGN));
const _: () = assert!(SEGMENT_HEADER_USED_BYTES <= SEGMENT_HEADER_BYTES);
const _: () = assert!(RECORD_HEADER_BYTES < IO_ALIGN);
const _: () = assert!(SEGMENT_SIZE_DEFAULT.is_multiple_of(IO_ALIGN as u64));
const _: () = assert!(SEGMENT_SIZE_MIN >= (SEGMENT_HEADER_BYTES + 2 * IO_ALIGN) as u64);
const _: () = assert!(FLUSH_BYTES_MAX_DEFAULT.is_multiple_of(IO_ALIGN));
const _: () = assert!(
    (FLUSH_BYTES_MAX_DEFAULT + SEGMENT_HEADER_BYTES) as u64 <= SEGMENT_SIZE_DEFAULT,
    "a flush must fit in one segment"
);
const _: () = assert!(BUFFER_BYTES_MAX_DEFAULT >= 2 * FLUSH_BYTES_MAX_DEFAULT);
const _: () = assert!(ZERO_FILL_CHUNK_BYTES.is_multiple_of(IO_ALIGN));
const _: () = assert!(SEGMENT_SIZE_DEFAULT.is_multiple_of(ZERO_FILL_CHUNK_BYTES as u64));
const _: () = assert!(HISTOGRAM_BUCKETS <= 64);
const _: () = assert!(RECOVERY_WINDOW_BYTES.is_multiple_of(IO_ALIGN));
