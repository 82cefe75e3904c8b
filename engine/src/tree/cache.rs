//! The page cache of one shard: a fixed number of frames, CLOCK eviction, pin counts.
//!
//! The cache only keeps pages and picks victims; the pager decides what a victim costs (a dirty
//! victim is written first: a "spill"). Memory is bounded: at most `capacity` frames, plus at most
//! [`PINNED_PAGES_MAX`] while every other frame is pinned by the running operation.
//!
//! A hit is on the path of every tree level of every operation, so finding a page's frame is one
//! array access, not a hash probe: the [`FrameTable`] maps page ids to frame slots directly, in
//! chunks of [`FRAME_TABLE_CHUNK_IDS`] ids allocated when a page of their range enters the cache
//! and freed when the last one leaves. Each entry also carries the frame's CLOCK reference bit, so
//! marking a hit touches the cache line the lookup already read.
//!
//! Invariants: a page id maps to at most one frame and a cached frame's slot maps back to its id;
//! a pinned frame is never chosen as a victim; `dirty_count` equals the number of frames with
//! `dirty` set; a chunk of the frame table is allocated exactly when it maps some page.

use crate::constants::PINNED_PAGES_MAX;
use crate::tree::page::PageId;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for page ids (as FxHash does): page-id sets are on every write's path,
/// and SipHash's flooding resistance buys nothing for ids the engine itself hands out.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageIdHasher(u64);

impl Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type PageIdSet = HashSet<PageId, BuildHasherDefault<PageIdHasher>>;

/// Page ids per frame-table chunk: 4,096 ids of 4 bytes, a 16 KiB chunk. Memory of the table is
/// at most one chunk per range of this many ids holding a cached page, plus 16 bytes of directory
/// per range below the highest cached id: for a cache of `n` frames, at most
/// `min(n, page_count / 4096)` chunks (a 1M-page file, 4 GiB at 4 KiB pages, needs at most 4 MiB).
pub const FRAME_TABLE_CHUNK_IDS: usize = 4096;

const _: () = assert!(FRAME_TABLE_CHUNK_IDS.is_power_of_two());

/// Frame-table entry of an uncached page.
const ABSENT: u32 = u32::MAX;
/// Frame-table entry bit: the frame was referenced since the CLOCK hand last passed it.
const REFERENCED: u32 = 1 << 31;
/// Largest frame count the table can address (the slot must not reach the reference bit).
const FRAMES_MAX: usize = (REFERENCED - 1) as usize;

/// Page id -> `slot | REFERENCED?`, in lazily allocated chunks (see the module doc).
#[derive(Default)]
struct FrameTable {
    chunks: Vec<Option<Box<[u32]>>>,
    /// Mapped ids per chunk, to free a chunk when it empties.
    used: Vec<u32>,
    len: usize,
}

impl FrameTable {
    fn split(id: PageId) -> (usize, usize) {
        let id = usize::try_from(id).expect("page id fits usize");
        (id / FRAME_TABLE_CHUNK_IDS, id % FRAME_TABLE_CHUNK_IDS)
    }

    fn get(&self, id: PageId) -> Option<&u32> {
        let (chunk, index) = Self::split(id);
        let entry = self.chunks.get(chunk)?.as_ref()?.get(index)?;
        (*entry != ABSENT).then_some(entry)
    }

    fn get_mut(&mut self, id: PageId) -> Option<&mut u32> {
        let (chunk, index) = Self::split(id);
        let entry = self.chunks.get_mut(chunk)?.as_mut()?.get_mut(index)?;
        (*entry != ABSENT).then_some(entry)
    }

    /// Maps the uncached page `id` to `entry`.
    fn insert(&mut self, id: PageId, entry: u32) {
        assert_ne!(entry, ABSENT, "mapping page {id} to nothing");
        let (chunk, index) = Self::split(id);
        if chunk >= self.chunks.len() {
            self.chunks.resize(chunk + 1, None);
            self.used.resize(chunk + 1, 0);
        }
        let entries = self.chunks[chunk]
            .get_or_insert_with(|| vec![ABSENT; FRAME_TABLE_CHUNK_IDS].into_boxed_slice());
        assert_eq!(entries[index], ABSENT, "page {id} cached twice");
        entries[index] = entry;
        self.used[chunk] += 1;
        self.len += 1;
    }

    /// Unmaps page `id`; returns its entry if it was mapped.
    fn remove(&mut self, id: PageId) -> Option<u32> {
        let (chunk, index) = Self::split(id);
        let entries = self.chunks.get_mut(chunk)?.as_mut()?;
        let entry = std::mem::replace(&mut entries[index], ABSENT);
        if entry == ABSENT {
            return None;
        }
        self.used[chunk] -= 1;
        self.len -= 1;
        if self.used[chunk] == 0 {
            self.chunks[chunk] = None;
        }
        Some(entry)
    }
}

/// Bookkeeping of one frame; the page bytes live in the arena at `slot * page_size`.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    /// The page in this frame, or `EMPTY`.
    id: PageId,
    dirty: bool,
    pins: u32,
}

const EMPTY: PageId = u64::MAX;

/// The cache: one contiguous arena of frames, allocated up front (the zeroed allocation is
/// mapped lazily by the OS), so a hit costs one frame-table access and the page itself; metadata
/// sits in a small dense array beside it.
pub struct PageCache {
    arena: Vec<u8>,
    meta: Vec<FrameMeta>,
    table: FrameTable,
    empty_slots: Vec<u32>,
    hand: usize,
    capacity: usize,
    dirty_count: usize,
    pinned_total: usize,
    page_size: usize,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("capacity", &self.capacity)
            .field("len", &self.table.len)
            .field("dirty_count", &self.dirty_count)
            .field("pinned_total", &self.pinned_total)
            .finish_non_exhaustive()
    }
}

impl PageCache {
    pub fn new(capacity: usize, page_size: usize) -> PageCache {
        assert!(capacity >= 1, "a cache needs at least one frame");
        let frames = capacity + PINNED_PAGES_MAX;
        assert!(
            frames <= FRAMES_MAX,
            "{frames} frames exceed the frame table's {FRAMES_MAX}"
        );
        PageCache {
            arena: vec![0u8; frames * page_size],
            meta: vec![
                FrameMeta {
                    id: EMPTY,
                    dirty: false,
                    pins: 0
                };
                frames
            ],
            table: FrameTable::default(),
            empty_slots: (0..u32::try_from(frames).expect("frame count fits u32"))
                .rev()
                .collect(),
            hand: 0,
            capacity,
            dirty_count: 0,
            pinned_total: 0,
            page_size,
        }
    }

    /// Every frame's bytes, for [`crate::storage::Storage::advise_cache_memory`].
    pub fn arena(&self) -> &[u8] {
        &self.arena
    }

    pub fn len(&self) -> usize {
        self.table.len
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty_count
    }

    pub fn contains(&self, id: PageId) -> bool {
        self.table.get(id).is_some()
    }

    /// Whether inserting one more page needs an eviction first.
    pub fn is_full(&self) -> bool {
        self.table.len >= self.capacity
    }

    /// The slot of cached page `id`, without marking it referenced.
    fn slot_of(&self, id: PageId) -> Option<usize> {
        self.table
            .get(id)
            .map(|&entry| (entry & !REFERENCED) as usize)
    }

    /// The slot of page `id`, marking it referenced (for [`PageCache::frame_at`]).
    #[inline]
    pub fn lookup(&mut self, id: PageId) -> Option<usize> {
        let entry = self.table.get_mut(id)?;
        // Only write when the bit changes: a hit on a hot page leaves its line clean.
        if *entry & REFERENCED == 0 {
            *entry |= REFERENCED;
        }
        let slot = (*entry & !REFERENCED) as usize;
        debug_assert_eq!(self.meta[slot].id, id, "frame table and frame disagree");
        Some(slot)
    }

    /// The page in `slot`, as returned by [`PageCache::lookup`] with no change since.
    #[inline]
    pub fn frame_at(&self, slot: usize) -> &[u8] {
        &self.arena[slot * self.page_size..(slot + 1) * self.page_size]
    }

    pub fn frame_at_mut(&mut self, slot: usize) -> &mut [u8] {
        &mut self.arena[slot * self.page_size..(slot + 1) * self.page_size]
    }

    pub fn is_dirty(&self, slot: usize) -> bool {
        self.meta[slot].dirty
    }

    /// Adds page `id` with unspecified contents and returns its slot; the caller fills it. The
    /// caller has made room (see [`PageCache::victim`]); past the budget only pinned pages may
    /// push it, by at most `PINNED_PAGES_MAX`.
    pub fn insert(&mut self, id: PageId, dirty: bool) -> usize {
        assert_ne!(id, EMPTY, "page id {id} is the empty-frame marker");
        let slot = self
            .empty_slots
            .pop()
            .expect("cache exceeds its budget by more than PINNED_PAGES_MAX pages");
        self.table.insert(id, slot | REFERENCED);
        let slot = slot as usize;
        self.meta[slot] = FrameMeta { id, dirty, pins: 0 };
        self.dirty_count += usize::from(dirty);
        slot
    }

    /// Copies the page in `from` into `to` (both slots of this cache).
    pub fn copy_frame(&mut self, from: usize, to: usize) {
        let size = self.page_size;
        self.arena
            .copy_within(from * size..(from + 1) * size, to * size);
    }

    /// Drops a page from the cache (evicted or freed). Returns whether it was dirty.
    pub fn remove(&mut self, id: PageId) -> Option<bool> {
        let slot = self.table.remove(id)? & !REFERENCED;
        let meta = std::mem::replace(
            &mut self.meta[slot as usize],
            FrameMeta {
                id: EMPTY,
                dirty: false,
                pins: 0,
            },
        );
        assert_eq!(meta.id, id, "frame table and frame disagree on slot {slot}");
        assert_eq!(meta.pins, 0, "removing pinned page {id}");
        self.dirty_count -= usize::from(meta.dirty);
        self.empty_slots.push(slot);
        Some(meta.dirty)
    }

    pub fn set_dirty(&mut self, slot: usize, dirty: bool) {
        let meta = &mut self.meta[slot];
        assert_ne!(meta.id, EMPTY, "set_dirty on an empty frame");
        if meta.dirty != dirty {
            meta.dirty = dirty;
            if dirty {
                self.dirty_count += 1;
            } else {
                self.dirty_count -= 1;
            }
        }
    }

    pub fn pin(&mut self, id: PageId) {
        let slot = self.slot_of(id).expect("pin of an uncached page");
        self.meta[slot].pins += 1;
        self.pinned_total += 1;
    }

    pub fn unpin(&mut self, id: PageId) {
        let slot = self.slot_of(id).expect("unpin of an uncached page");
        let meta = &mut self.meta[slot];
        assert!(meta.pins > 0, "unpin of unpinned page {id}");
        meta.pins -= 1;
        self.pinned_total -= 1;
    }

    pub fn pinned_total(&self) -> usize {
        self.pinned_total
    }

    /// CLOCK: the next unpinned frame whose reference bit is clear (clearing bits on the way).
    /// `None` when every frame is pinned. The victim stays cached until the caller removes it.
    pub fn victim(&mut self) -> Option<(PageId, bool)> {
        let n = self.meta.len();
        for _ in 0..2 * n + 1 {
            self.hand = (self.hand + 1) % n;
            let meta = self.meta[self.hand];
            if meta.id == EMPTY || meta.pins > 0 {
                continue;
            }
            let entry = self
                .table
                .get_mut(meta.id)
                .expect("a cached frame is in the frame table");
            if *entry & REFERENCED != 0 {
                *entry &= !REFERENCED;
                continue;
            }
            return Some((meta.id, meta.dirty));
        }
        None
    }

    /// Ids of all dirty frames, ascending (so a commit writes in file order).
    pub fn dirty_ids(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self
            .meta
            .iter()
            .filter(|m| m.id != EMPTY && m.dirty)
            .map(|m| m.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Ids of every cached frame (for the integrity check).
    pub fn ids(&self) -> Vec<PageId> {
        self.meta
            .iter()
            .filter(|m| m.id != EMPTY)
            .map(|m| m.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_skips_pinned_and_referenced_frames() {
        let mut cache = PageCache::new(3, 4096);
        for id in 0..3 {
            let slot = cache.insert(id, id == 2);
            cache.frame_at_mut(slot).fill(id as u8);
        }
        assert!(cache.is_full());
        assert_eq!(cache.dirty_count(), 1);
        cache.pin(0);
        cache.pin(1);
        let (victim, dirty) = cache.victim().expect("page 2 is unpinned");
        assert_eq!((victim, dirty), (2, true));
        cache.pin(2);
        assert_eq!(cache.victim(), None, "everything pinned");
        cache.unpin(0);
        assert_eq!(cache.victim().map(|v| v.0), Some(0));
        assert_eq!(cache.remove(0), Some(false));
        assert!(!cache.is_full());
        assert_eq!(cache.dirty_ids(), vec![2]);
        let slot = cache.lookup(1).expect("cached");
        assert!(
            cache.frame_at(slot).iter().all(|&b| b == 1),
            "frames keep their bytes"
        );
    }

    #[test]
    fn frame_table_chunks_come_and_go() {
        let far = 5 * FRAME_TABLE_CHUNK_IDS as PageId + 17;
        let mut cache = PageCache::new(4, 4096);
        let a = cache.insert(3, false);
        let b = cache.insert(far, true);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.lookup(3), Some(a));
        assert_eq!(cache.lookup(far), Some(b));
        assert_eq!(cache.lookup(far + 1), None);
        assert_eq!(cache.lookup(100 * FRAME_TABLE_CHUNK_IDS as PageId), None);
        assert_eq!(cache.table.chunks.iter().flatten().count(), 2);
        assert_eq!(cache.remove(far), Some(true));
        assert_eq!(
            cache.table.chunks.iter().flatten().count(),
            1,
            "empty chunk freed"
        );
        assert!(!cache.contains(far));
        let mut ids = cache.ids();
        ids.sort_unstable();
        assert_eq!(ids, vec![3]);
        assert_eq!(cache.remove(far), None);
        assert_eq!(cache.remove(3), Some(false));
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.table.chunks.iter().flatten().count(), 0);
    }
}
