//! Every limit of the tree's on-disk format, with its reason.
//!
//! Relations between limits are checked at compile time below, so changing one number cannot
//! silently break another (a key so long that a branch page can no longer hold four of them, a
//! value so large that a leaf split cannot place it). Tests shrink the *configurable* limits
//! (page size, cache budget) through `TreeConfig`; the constants here are the format's bounds.

use crate::storage::{IO_ALIGN, SECTOR_SIZE};

/// Version of the page-file format written by this code (superblock and page headers).
/// Version 2 added the clock calibration and value-log head to the superblock and the
/// value-log pointer kind of leaf records (docs/format.md, "Compatibility").
pub const FORMAT_VERSION: u32 = 2;

/// Oldest page-file format this code still opens. A version-1 file has no value log and a zero
/// clock calibration, so it reads as a version-2 file that never used either; its next
/// checkpoint writes version-2 superblocks and pages.
pub const FORMAT_VERSION_MIN: u32 = 1;

/// Largest value a put accepts, in bytes. Values above the inline threshold live in the value
/// log (one record, one read), so the bound comes from memory, not from the page: the value log
/// buffers at most `VLOG_BUFFER_BYTES_MAX_DEFAULT` of unwritten values per shard, and a read
/// allocates one buffer of the record's size. 16 MiB is what the protocol and clients are sized
/// for (issue 8).
pub const VALUE_SIZE_MAX: usize = 16 << 20;

/// Value kinds of a leaf record (byte 0): the value bytes are the value itself...
pub const VALUE_KIND_INLINE: u8 = 0;
/// ...or a value-log pointer (segment u64, offset u64, length u32, checksum u32).
pub const VALUE_KIND_POINTER: u8 = 1;

/// Bytes of a value-log pointer stored in a leaf.
pub const VLOG_POINTER_SIZE: usize = 24;

/// Bytes of the fixed part of a value-log record: crc, value size, key size, reserved.
pub const VLOG_RECORD_HEADER_SIZE: usize = 16;

/// Bytes of a value-log segment header (one whole block, so records start block-aligned).
pub const VLOG_SEGMENT_HEADER_SIZE: usize = IO_ALIGN;

/// Default size after which the value log starts a new segment (segments may end up to one
/// flush longer). Large enough that the per-segment file count stays small, small enough that
/// garbage collection rewrites a bounded amount per victim.
pub const VLOG_SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Default bound of value-log bytes staged or in flight (not yet durable). Beyond it a put of a
/// large value is refused with `Busy`. Two maximum records: one in flight, one staged.
pub const VLOG_BUFFER_BYTES_MAX_DEFAULT: usize =
    2 * (VALUE_SIZE_MAX + VLOG_RECORD_HEADER_SIZE + KEY_SIZE_MAX);

/// Default bytes of a victim segment one garbage-collection slice reads (plus at most one
/// record that straddles the end of the slice): bounds the I/O a `poll` does for GC.
pub const VLOG_GC_SLICE_BYTES_DEFAULT: usize = 1 << 20;

/// Default bytes of each shard's cache of value-log values (`VlogConfig::cache_bytes`, the
/// server's `storage.value_cache_bytes_per_shard`): a quarter of the server's default page cache
/// per shard (256 MiB). Without it every read of a large value is one synchronous disk read on
/// the shard's core (docs/benchmarks.md, "Large values").
pub const VLOG_CACHE_BYTES_DEFAULT: usize = 64 << 20;

/// A value whose entry (key, value and overhead) costs more than the cache's size divided by
/// this is not cached, so that one large value cannot flush everything else: with the default
/// 64 MiB, values up to about 8 MiB are cached.
pub const VLOG_CACHE_VALUE_SHARE_DIVISOR: usize = 8;

/// Bytes charged per cache entry beyond its key and value: the entry's slot (48), its index
/// entry (about 32 at the map's load factor), the allocator's header of the value's block and a
/// free-list slot, rounded up, so that the bound covers the cache's real memory.
pub const VLOG_CACHE_ENTRY_OVERHEAD_BYTES: usize = 128;

/// The value log keeps the buffer of its last read and of its last flush for the next one (so
/// that neither allocates and zeroes a buffer each time) if it is at most this long: the extent
/// of a 4 MiB value, or a flush of three 1 MiB values, with room to spare. Kept buffers cost at
/// most 2 x 4.06 MiB per shard; larger reads and flushes allocate their buffer and free it after.
pub const VLOG_IO_BUFFER_KEPT_BYTES_MAX: usize = (4 << 20) + (64 << 10);

/// Most value-log reads one shard keeps in flight for asynchronous GETs
/// (`Shard::start_get`). A GET that finds the limit reached reads synchronously instead (the
/// behaviour before asynchronous reads): it is still answered, the core only blocks for it, so
/// no client sees a new `Busy` for a read the disk can serve. Bounds the per-shard table of
/// pending reads and, with the byte limit below, their buffers.
pub const VLOG_READS_IN_FLIGHT_MAX: usize = 64;

/// Most bytes of read buffers one shard keeps in flight for asynchronous GETs; a read that would
/// exceed it reads synchronously (as above). 8 MiB: 64 reads of 128 KiB, or two 4 MiB values.
pub const VLOG_READ_BYTES_IN_FLIGHT_MAX: usize = 8 << 20;

/// Smallest page size: one O_DIRECT block, so a page is one aligned I/O.
pub const PAGE_SIZE_MIN: usize = 4096;

/// Largest page size. Slot offsets inside a page are `u16`, so a page cannot exceed 64 KiB.
pub const PAGE_SIZE_MAX: usize = 65536;

/// Page size when the configuration does not choose one.
pub const PAGE_SIZE_DEFAULT: usize = 4096;

/// Bytes of the header at the start of every page (see docs/format.md, "Page header").
pub const PAGE_HEADER_SIZE: usize = 40;

/// Bytes of one slot (a `u16` offset of a record) in a page's slot array.
pub const SLOT_SIZE: usize = 2;

/// Bytes of a leaf record's fixed part: kind, flags, key length, value length, expiry, version.
pub const LEAF_RECORD_HEADER_SIZE: usize = 24;

/// Bytes of a branch record's fixed part: child page id and key length.
pub const BRANCH_RECORD_HEADER_SIZE: usize = 10;

/// Size of each superblock slot; two slots (A, B) open the page file.
pub const SUPERBLOCK_SIZE: usize = IO_ALIGN;

/// Offset of the first data page (page id 0): just after superblock slots A and B.
pub const PAGES_OFFSET: u64 = 2 * SUPERBLOCK_SIZE as u64;

/// Longest key, in bytes. Chosen so that a branch page of the smallest size holds at least four
/// maximum-size separators (fan-out >= 4 bounds the height), and so a leaf holds two maximum
/// records (a split always succeeds). Redis allows longer keys; ours are indexed, theirs hashed.
pub const KEY_SIZE_MAX: usize = 512;

/// Largest inline value at the smallest page size: a quarter page. Larger page sizes allow a
/// quarter of their own size (`TreeConfig::value_inline_max`); larger values go to the value
/// log.
pub const VALUE_INLINE_MAX_AT_PAGE_SIZE_MIN: usize = PAGE_SIZE_MIN / 4;

/// Deepest tree we accept. With fan-out >= 4 a tree of height 32 would index more pages than a
/// u64 addresses, so a deeper one on disk is corruption (or a cycle), not data.
pub const TREE_HEIGHT_MAX: usize = 32;

/// Pages one operation may pin at once: the root-to-leaf path plus a sibling and a new page per
/// level during a split or merge. The cache may exceed its budget by at most this many pages while
/// every other page is pinned (the documented small constant over the budget).
pub const PINNED_PAGES_MAX: usize = 3 * TREE_HEIGHT_MAX + 4;

/// Fewest pages the cache budget may name: an operation on a tree of ordinary height must be able
/// to keep its path resident.
pub const CACHE_PAGES_MIN: usize = 4;

/// Largest single write of a commit: consecutive dirty pages are written together up to this
/// many bytes (1 MiB: large enough to reach a disk's sequential bandwidth, small enough to keep
/// one commit slice short and the staging buffer cheap).
pub const WRITE_RUN_BYTES_MAX: usize = 1 << 20;

/// Name of the page file inside a shard directory.
pub const PAGE_FILE_NAME: &str = "pages";

/// Largest leaf record: header, key, inline value, slot.
pub const fn leaf_record_size_max(value_inline_max: usize) -> usize {
    LEAF_RECORD_HEADER_SIZE + KEY_SIZE_MAX + value_inline_max + SLOT_SIZE
}

/// Largest branch record: header, separator key, slot.
pub const BRANCH_RECORD_SIZE_MAX: usize = BRANCH_RECORD_HEADER_SIZE + KEY_SIZE_MAX + SLOT_SIZE;

/// Bytes of a page available for slots and records.
pub const fn page_usable_size(page_size: usize) -> usize {
    page_size - PAGE_HEADER_SIZE
}

const _: () = assert!(PAGE_SIZE_MIN.is_power_of_two() && PAGE_SIZE_MAX.is_power_of_two());
const _: () = assert!(
    PAGE_SIZE_MIN.is_multiple_of(IO_ALIGN),
    "a page must be whole O_DIRECT blocks"
);
const _: () = assert!(PAGE_SIZE_MIN.is_multiple_of(SECTOR_SIZE));
const _: () = assert!(
    PAGE_SIZE_MAX <= u16::MAX as usize + 1,
    "slot offsets are u16"
);
const _: () = assert!(PAGE_SIZE_DEFAULT >= PAGE_SIZE_MIN && PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX);
const _: () = assert!(SUPERBLOCK_SIZE.is_multiple_of(IO_ALIGN));
const _: () = assert!(PAGES_OFFSET.is_multiple_of(IO_ALIGN as u64));
// A branch of the smallest page holds at least four maximum-size separators.
const _: () = assert!(4 * BRANCH_RECORD_SIZE_MAX <= page_usable_size(PAGE_SIZE_MIN));
// A leaf of the smallest page holds two maximum records, so splitting a full leaf plus one record
// always yields two pages that fit, and each half of a split or redistribution is at least a
// quarter full (the fill factor `check_integrity` verifies).
const _: () = assert!(
    2 * leaf_record_size_max(VALUE_INLINE_MAX_AT_PAGE_SIZE_MIN) <= page_usable_size(PAGE_SIZE_MIN)
);
// The quarter-page rule keeps that relation at every page size: the usable part grows with the
// page, the key limit does not.
const _: () =
    assert!(2 * leaf_record_size_max(PAGE_SIZE_MAX / 4) <= page_usable_size(PAGE_SIZE_MAX));
const _: () = assert!(
    KEY_SIZE_MAX <= u16::MAX as usize,
    "key lengths are u16 on disk"
);
const _: () = assert!(CACHE_PAGES_MIN >= 2);
const _: () =
    assert!(WRITE_RUN_BYTES_MAX >= PAGE_SIZE_MAX && WRITE_RUN_BYTES_MAX.is_multiple_of(IO_ALIGN));
const _: () = assert!(VLOG_POINTER_SIZE <= VALUE_INLINE_MAX_AT_PAGE_SIZE_MIN);
const _: () = assert!(VLOG_SEGMENT_HEADER_SIZE.is_multiple_of(IO_ALIGN));
const _: () = assert!(
    VALUE_SIZE_MAX <= u32::MAX as usize,
    "value sizes are u32 on disk"
);
const _: () = assert!(VLOG_GC_SLICE_BYTES_DEFAULT.is_multiple_of(IO_ALIGN));
const _: () = assert!(VLOG_CACHE_VALUE_SHARE_DIVISOR >= 2);
const _: () = assert!(VLOG_IO_BUFFER_KEPT_BYTES_MAX.is_multiple_of(IO_ALIGN));
const _: () = assert!(VLOG_READ_BYTES_IN_FLIGHT_MAX >= VLOG_IO_BUFFER_KEPT_BYTES_MAX);
const _: () = assert!(VLOG_READS_IN_FLIGHT_MAX > 0);
const _: () = assert!(
    VLOG_BUFFER_BYTES_MAX_DEFAULT >= VALUE_SIZE_MAX + VLOG_RECORD_HEADER_SIZE + KEY_SIZE_MAX
);
