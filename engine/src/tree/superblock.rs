//! The superblock: the root of everything durable in a page file.
//!
//! Two slots, A at offset 0 and B at offset [`SUPERBLOCK_SIZE`], each one O_DIRECT block. A commit
//! of generation `g` writes slot `g % 2`, so the other slot keeps the previous durable state until
//! the new one is synced. Open takes the valid slot with the highest generation.
//!
//! Invariants: the CRC32C in the last four bytes covers every other byte of the slot, so a torn or
//! mixed write (new sectors next to old ones) fails it; reserved bytes are zero; the page size is
//! a power of two within the format's limits. Format 1 slots (no clock calibration, no value
//! log) still decode: their calibration and value-log fields were reserved zero bytes, and zero
//! is what "never calibrated, no value log" means. Every slot written is format 2.

use crate::constants::{
    FORMAT_VERSION, FORMAT_VERSION_MIN, PAGE_SIZE_MAX, PAGE_SIZE_MIN, SUPERBLOCK_SIZE,
    TREE_HEIGHT_MAX,
};
use crate::tree::page::PageId;

/// The eight bytes that open every superblock slot.
pub const MAGIC: [u8; 8] = *b"JUBETREE";

/// Offsets of the fields (docs/format.md, "Superblock"; the format-table test compares).
pub mod field {
    pub const MAGIC: usize = 0;
    pub const FORMAT_VERSION: usize = 8;
    pub const PAGE_SIZE: usize = 12;
    pub const GENERATION: usize = 16;
    pub const ROOT_PAGE_ID: usize = 24;
    pub const TREE_HEIGHT: usize = 32;
    pub const SHARD_ID: usize = 36;
    pub const PAGE_COUNT: usize = 40;
    pub const KEY_COUNT: usize = 48;
    pub const CHECKPOINT_LSN: usize = 56;
    pub const VERSION_LAST: usize = 64;
    /// The shard's expiry time (wall-clock ms) when the checkpoint began: the floor below which
    /// its time never goes again (format 2; zero in format 1).
    pub const CLOCK_FLOOR_MS: usize = 72;
    /// The raw wall clock at the same instant; its difference to the floor is the drift then.
    pub const CLOCK_WALL_MS: usize = 80;
    /// The monotonic clock at the same instant (ns; its origin is per process).
    pub const CLOCK_MONOTONIC_NS: usize = 88;
    /// The value-log head: the id the next new value-log segment gets (ids never repeat).
    pub const VLOG_SEGMENT_NEXT: usize = 96;
    pub const RESERVED: usize = 104;
    pub const RESERVED_END: usize = super::SUPERBLOCK_SIZE - 4;
    pub const CRC: usize = super::SUPERBLOCK_SIZE - 4;

    /// Every field with its offset, for the format-table test.
    pub const OFFSETS: [(&str, usize); 17] = [
        ("magic", MAGIC),
        ("format_version", FORMAT_VERSION),
        ("page_size", PAGE_SIZE),
        ("generation", GENERATION),
        ("root_page_id", ROOT_PAGE_ID),
        ("tree_height", TREE_HEIGHT),
        ("shard_id", SHARD_ID),
        ("page_count", PAGE_COUNT),
        ("key_count", KEY_COUNT),
        ("checkpoint_lsn", CHECKPOINT_LSN),
        ("version_last", VERSION_LAST),
        ("clock_floor_ms", CLOCK_FLOOR_MS),
        ("clock_wall_ms", CLOCK_WALL_MS),
        ("clock_monotonic_ns", CLOCK_MONOTONIC_NS),
        ("vlog_segment_next", VLOG_SEGMENT_NEXT),
        ("reserved", RESERVED),
        ("crc32c", CRC),
    ];
}

/// The decoded contents of one superblock slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    pub page_size: u32,
    /// Commit counter: 1 for the superblock written at creation, +1 per commit.
    pub generation: u64,
    pub root_page_id: PageId,
    /// Levels of the tree: 1 when the root is a leaf.
    pub tree_height: u32,
    pub shard_id: u32,
    /// Page-count high-water mark: every page id in use is below it.
    pub page_count: u64,
    pub key_count: u64,
    /// The WAL position this tree state includes (0 until the WAL exists).
    pub checkpoint_lsn: u64,
    /// The last per-key version handed out, so versions never repeat across restarts.
    pub version_last: u64,
    /// What the shard above the tree persists with each checkpoint (zero in format 1).
    pub meta: ShardMeta,
}

/// Fields the tree stores in its superblock for the shard, without interpreting them: the TTL
/// clock calibration and the value-log head (docs/format.md, "Superblock").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardMeta {
    pub clock_floor_ms: u64,
    pub clock_wall_ms: u64,
    pub clock_monotonic_ns: u64,
    pub vlog_segment_next: u64,
}

impl Superblock {
    /// Encodes the slot, CRC included.
    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), SUPERBLOCK_SIZE, "superblock buffer size");
        out.fill(0);
        out[field::MAGIC..field::MAGIC + 8].copy_from_slice(&MAGIC);
        out[field::FORMAT_VERSION..][..4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[field::PAGE_SIZE..][..4].copy_from_slice(&self.page_size.to_le_bytes());
        out[field::GENERATION..][..8].copy_from_slice(&self.generation.to_le_bytes());
        out[field::ROOT_PAGE_ID..][..8].copy_from_slice(&self.root_page_id.to_le_bytes());
        out[field::TREE_HEIGHT..][..4].copy_from_slice(&self.tree_height.to_le_bytes());
        out[field::SHARD_ID..][..4].copy_from_slice(&self.shard_id.to_le_bytes());
        out[field::PAGE_COUNT..][..8].copy_from_slice(&self.page_count.to_le_bytes());
        out[field::KEY_COUNT..][..8].copy_from_slice(&self.key_count.to_le_bytes());
        out[field::CHECKPOINT_LSN..][..8].copy_from_slice(&self.checkpoint_lsn.to_le_bytes());
        out[field::VERSION_LAST..][..8].copy_from_slice(&self.version_last.to_le_bytes());
        let meta = &self.meta;
        out[field::CLOCK_FLOOR_MS..][..8].copy_from_slice(&meta.clock_floor_ms.to_le_bytes());
        out[field::CLOCK_WALL_MS..][..8].copy_from_slice(&meta.clock_wall_ms.to_le_bytes());
        out[field::CLOCK_MONOTONIC_NS..][..8]
            .copy_from_slice(&meta.clock_monotonic_ns.to_le_bytes());
        out[field::VLOG_SEGMENT_NEXT..][..8].copy_from_slice(&meta.vlog_segment_next.to_le_bytes());
        let crc = crc32c::crc32c(&out[..field::CRC]);
        out[field::CRC..].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Superblock::decode(out).as_ref(), Ok(self));
    }

    /// Decodes and validates one slot; the error says what is wrong with it.
    pub fn decode(buf: &[u8]) -> Result<Superblock, String> {
        if buf.len() != SUPERBLOCK_SIZE {
            return Err(format!(
                "slot is {} bytes, expected {SUPERBLOCK_SIZE}",
                buf.len()
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        if buf[field::MAGIC..field::MAGIC + 8] != MAGIC {
            return Err("bad magic (not a jube page file, or never written)".to_string());
        }
        let (stored, computed) = (u32_at(field::CRC), crc32c::crc32c(&buf[..field::CRC]));
        if stored != computed {
            return Err(format!(
                "checksum mismatch: stored {stored:#010x}, computed {computed:#010x} (torn write?)"
            ));
        }
        let version = u32_at(field::FORMAT_VERSION);
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "format version {version}; this build reads versions {FORMAT_VERSION_MIN} to \
                 {FORMAT_VERSION}"
            ));
        }
        // Format 1 reserved everything after `version_last`; format 2 uses the first fields.
        let reserved_from = if version == 1 {
            field::CLOCK_FLOOR_MS
        } else {
            field::RESERVED
        };
        if buf[reserved_from..field::RESERVED_END]
            .iter()
            .any(|&b| b != 0)
        {
            return Err("reserved bytes are not zero".to_string());
        }
        let sb = Superblock {
            page_size: u32_at(field::PAGE_SIZE),
            generation: u64_at(field::GENERATION),
            root_page_id: u64_at(field::ROOT_PAGE_ID),
            tree_height: u32_at(field::TREE_HEIGHT),
            shard_id: u32_at(field::SHARD_ID),
            page_count: u64_at(field::PAGE_COUNT),
            key_count: u64_at(field::KEY_COUNT),
            checkpoint_lsn: u64_at(field::CHECKPOINT_LSN),
            version_last: u64_at(field::VERSION_LAST),
            meta: ShardMeta {
                clock_floor_ms: u64_at(field::CLOCK_FLOOR_MS),
                clock_wall_ms: u64_at(field::CLOCK_WALL_MS),
                clock_monotonic_ns: u64_at(field::CLOCK_MONOTONIC_NS),
                vlog_segment_next: u64_at(field::VLOG_SEGMENT_NEXT),
            },
        };
        sb.check_fields()?;
        Ok(sb)
    }

    fn check_fields(&self) -> Result<(), String> {
        let page_size = self.page_size as usize;
        if !page_size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size) {
            return Err(format!(
                "page size {page_size} is not a power of two in 4 KiB..=64 KiB"
            ));
        }
        if self.tree_height == 0 || self.tree_height as usize > TREE_HEIGHT_MAX {
            return Err(format!(
                "tree height {} outside 1..={TREE_HEIGHT_MAX}",
                self.tree_height
            ));
        }
        if self.root_page_id >= self.page_count {
            return Err(format!(
                "root page {} is not below the page count {}",
                self.root_page_id, self.page_count
            ));
        }
        if self.generation == 0 {
            return Err("generation 0 is never written".to_string());
        }
        Ok(())
    }

    /// Byte offset of the slot generation `generation` is written to.
    pub fn slot_offset(generation: u64) -> u64 {
        (generation % 2) * SUPERBLOCK_SIZE as u64
    }
}

/// Picks the superblock to open from the decode results of slots A and B: the valid one with the
/// highest generation. `None` when neither is valid.
pub fn choose(
    a: &Result<Superblock, String>,
    b: &Result<Superblock, String>,
) -> Option<Superblock> {
    match (a, b) {
        (Ok(a), Ok(b)) => Some(if a.generation >= b.generation { *a } else { *b }),
        (Ok(a), Err(_)) => Some(*a),
        (Err(_), Ok(b)) => Some(*b),
        (Err(_), Err(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(generation: u64) -> Superblock {
        Superblock {
            page_size: 4096,
            generation,
            root_page_id: 3,
            tree_height: 2,
            shard_id: 7,
            page_count: 10,
            key_count: 99,
            checkpoint_lsn: 1234,
            version_last: 555,
            meta: ShardMeta {
                clock_floor_ms: 1_700_000_000_000,
                clock_wall_ms: 1_700_000_000_500,
                clock_monotonic_ns: 42,
                vlog_segment_next: 3,
            },
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = vec![0u8; SUPERBLOCK_SIZE];
        sample(5).encode(&mut buf);
        assert_eq!(Superblock::decode(&buf), Ok(sample(5)));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = vec![0u8; SUPERBLOCK_SIZE];
        sample(5).encode(&mut buf);
        for at in 0..SUPERBLOCK_SIZE {
            buf[at] ^= 0x5a;
            assert!(
                Superblock::decode(&buf).is_err(),
                "flip at byte {at} went unnoticed"
            );
            buf[at] ^= 0x5a;
        }
    }

    #[test]
    fn format_1_slots_still_decode_with_zero_meta() {
        let mut buf = vec![0u8; SUPERBLOCK_SIZE];
        let v1 = Superblock {
            meta: ShardMeta::default(),
            ..sample(5)
        };
        v1.encode(&mut buf);
        buf[field::FORMAT_VERSION..][..4].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..field::CRC]);
        buf[field::CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Superblock::decode(&buf), Ok(v1));
        // A format-1 slot with bytes in what was then reserved is damaged, not format 2.
        buf[field::VLOG_SEGMENT_NEXT] = 1;
        let crc = crc32c::crc32c(&buf[..field::CRC]);
        buf[field::CRC..].copy_from_slice(&crc.to_le_bytes());
        assert!(Superblock::decode(&buf).is_err());
        buf[field::VLOG_SEGMENT_NEXT] = 0;
        buf[field::FORMAT_VERSION..][..4].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&buf[..field::CRC]);
        buf[field::CRC..].copy_from_slice(&crc.to_le_bytes());
        let error = Superblock::decode(&buf).expect_err("version 3 is refused");
        assert!(error.contains("format version 3"), "{error}");
    }

    #[test]
    fn torn_slot_is_rejected() {
        // New first sector, old rest: the mixed slot must fail, whichever generation it claims.
        let (mut old, mut new) = (vec![0u8; SUPERBLOCK_SIZE], vec![0u8; SUPERBLOCK_SIZE]);
        sample(4).encode(&mut old);
        sample(6).encode(&mut new);
        let mut mixed = old.clone();
        mixed[..512].copy_from_slice(&new[..512]);
        assert!(Superblock::decode(&mixed).is_err());
    }

    #[test]
    fn choose_prefers_the_highest_valid_generation() {
        let bad: Result<Superblock, String> = Err("torn".to_string());
        assert_eq!(choose(&Ok(sample(4)), &Ok(sample(5))), Some(sample(5)));
        assert_eq!(choose(&Ok(sample(6)), &Ok(sample(5))), Some(sample(6)));
        assert_eq!(choose(&bad, &Ok(sample(5))), Some(sample(5)));
        assert_eq!(choose(&Ok(sample(4)), &bad), Some(sample(4)));
        assert_eq!(choose(&bad, &bad), None);
    }

    #[test]
    fn slots_alternate() {
        assert_eq!(Superblock::slot_offset(1), SUPERBLOCK_SIZE as u64);
        assert_eq!(Superblock::slot_offset(2), 0);
    }
}
