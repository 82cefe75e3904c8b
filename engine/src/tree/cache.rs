//! The page cache of one shard: a fixed number of frames, CLOCK eviction, pin counts.
//!
//! The cache only keeps pages and picks victims; the pager decides what a victim costs (a dirty
//! victim is written first: a "spill"). Memory is bounded: at most `capacity` frames, plus at most
//! [`PINNED_PAGES_MAX`] while every other frame is pinned by the running operation.
//!
//! Invariants: a page id maps to at most one frame; a pinned frame is never chosen as a victim;
//! `dirty_count` equals the number of frames with `dirty` set.

use crate::constants::PINNED_PAGES_MAX;
use crate::tree::page::PageId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for page ids (as FxHash does): page-id maps are on every operation's
/// path, and SipHash's flooding resistance buys nothing for ids the engine itself hands out.
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

pub type PageIdMap<V> = HashMap<PageId, V, BuildHasherDefault<PageIdHasher>>;
pub type PageIdSet = HashSet<PageId, BuildHasherDefault<PageIdHasher>>;

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
/// mapped lazily by the OS), so a hit costs one map probe and the page itself; metadata and
/// reference bits sit in small dense arrays beside it.
pub struct PageCache {
    arena: Vec<u8>,
    meta: Vec<FrameMeta>,
    referenced: Vec<bool>,
    map: PageIdMap<u32>,
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
            .field("len", &self.map.len())
            .field("dirty_count", &self.dirty_count)
            .field("pinned_total", &self.pinned_total)
            .finish_non_exhaustive()
    }
}

impl PageCache {
    pub fn new(capacity: usize, page_size: usize) -> PageCache {
        assert!(capacity >= 1, "a cache needs at least one frame");
        let frames = capacity + PINNED_PAGES_MAX;
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
            referenced: vec![false; frames],
            map: PageIdMap::with_capacity_and_hasher(frames, Default::default()),
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

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty_count
    }

    pub fn contains(&self, id: PageId) -> bool {
        self.map.contains_key(&id)
    }

    /// Whether inserting one more page needs an eviction first.
    pub fn is_full(&self) -> bool {
        self.map.len() >= self.capacity
    }

    /// The slot of page `id`, marking it referenced (for [`PageCache::frame_at`]).
    pub fn lookup(&mut self, id: PageId) -> Option<usize> {
        let slot = *self.map.get(&id)? as usize;
        self.referenced[slot] = true;
        Some(slot)
    }

    /// The page in `slot`, as returned by [`PageCache::lookup`] with no change since.
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
        let slot = self
            .empty_slots
            .pop()
            .expect("cache exceeds its budget by more than PINNED_PAGES_MAX pages");
        let previous = self.map.insert(id, slot);
        assert!(previous.is_none(), "page {id} cached twice");
        let slot = slot as usize;
        self.meta[slot] = FrameMeta { id, dirty, pins: 0 };
        self.referenced[slot] = true;
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
        let slot = self.map.remove(&id)?;
        let meta = std::mem::replace(
            &mut self.meta[slot as usize],
            FrameMeta {
                id: EMPTY,
                dirty: false,
                pins: 0,
            },
        );
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
        let slot = *self.map.get(&id).expect("pin of an uncached page") as usize;
        self.meta[slot].pins += 1;
        self.pinned_total += 1;
    }

    pub fn unpin(&mut self, id: PageId) {
        let slot = *self.map.get(&id).expect("unpin of an uncached page") as usize;
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
            if self.referenced[self.hand] {
                self.referenced[self.hand] = false;
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
        self.map.keys().copied().collect()
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
}
