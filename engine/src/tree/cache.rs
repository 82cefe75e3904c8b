//! The page cache of one shard: a fixed number of frames, CLOCK eviction, pin counts.
//!
//! The cache only keeps pages and picks victims; the pager decides what a victim costs (a dirty
//! victim is written first: a "spill"). Memory is bounded: at most `capacity` frames, plus at most
//! [`PINNED_PAGES_MAX`] while every other frame is pinned by the running operation.
//!
//! Invariants: a page id maps to at most one frame; a pinned frame is never chosen as a victim;
//! `dirty_count` equals the number of frames with `dirty` set.

use crate::constants::PINNED_PAGES_MAX;
use crate::storage::AlignedBuf;
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

/// One cached page.
#[derive(Debug)]
pub struct Frame {
    pub id: PageId,
    /// The page bytes. A dirty page's CRC is stale until the pager seals it for writing.
    pub buf: AlignedBuf,
    dirty: bool,
    pins: u32,
    referenced: bool,
}

impl Frame {
    pub fn dirty(&self) -> bool {
        self.dirty
    }
}

#[derive(Debug)]
pub struct PageCache {
    slots: Vec<Option<Frame>>,
    map: PageIdMap<usize>,
    empty_slots: Vec<usize>,
    hand: usize,
    capacity: usize,
    dirty_count: usize,
    pinned_total: usize,
    /// Buffers of evicted frames, reused for the next miss (at most a few).
    spare_bufs: Vec<AlignedBuf>,
    page_size: usize,
}

impl PageCache {
    pub fn new(capacity: usize, page_size: usize) -> PageCache {
        assert!(capacity >= 1, "a cache needs at least one frame");
        PageCache {
            slots: Vec::with_capacity(capacity + 1),
            map: PageIdMap::with_capacity_and_hasher(capacity + 1, Default::default()),
            empty_slots: Vec::new(),
            hand: 0,
            capacity,
            dirty_count: 0,
            pinned_total: 0,
            spare_bufs: Vec::new(),
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
        let slot = *self.map.get(&id)?;
        self.slots[slot].as_mut().expect("mapped slot holds a frame").referenced = true;
        Some(slot)
    }

    /// The frame in `slot`, as returned by [`PageCache::lookup`] with no change since.
    pub fn frame_at(&self, slot: usize) -> &Frame {
        self.slots[slot].as_ref().expect("looked-up slot holds a frame")
    }

    pub fn frame_at_mut(&mut self, slot: usize) -> &mut Frame {
        self.slots[slot].as_mut().expect("looked-up slot holds a frame")
    }

    pub fn get(&mut self, id: PageId) -> Option<&Frame> {
        let slot = *self.map.get(&id)?;
        let frame = self.slots[slot]
            .as_mut()
            .expect("mapped slot holds a frame");
        frame.referenced = true;
        Some(frame)
    }

    pub fn get_mut(&mut self, id: PageId) -> Option<&mut Frame> {
        let slot = *self.map.get(&id)?;
        let frame = self.slots[slot]
            .as_mut()
            .expect("mapped slot holds a frame");
        frame.referenced = true;
        Some(frame)
    }

    /// A zeroed buffer for a page, reusing an evicted frame's buffer when one is at hand.
    pub fn new_buf(&mut self) -> AlignedBuf {
        match self.spare_bufs.pop() {
            Some(buf) => buf,
            None => AlignedBuf::zeroed(self.page_size),
        }
    }

    /// Adds a page. The caller has made room (see [`PageCache::victim`]).
    pub fn insert(&mut self, id: PageId, buf: AlignedBuf, dirty: bool) {
        assert_eq!(buf.len(), self.page_size, "page buffer size");
        assert!(
            self.map.len() < self.capacity + PINNED_PAGES_MAX,
            "cache exceeds its budget by more than PINNED_PAGES_MAX pages"
        );
        let frame = Frame {
            id,
            buf,
            dirty,
            pins: 0,
            referenced: true,
        };
        let slot = match self.empty_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(frame);
                slot
            }
            None => {
                self.slots.push(Some(frame));
                self.slots.len() - 1
            }
        };
        let previous = self.map.insert(id, slot);
        assert!(previous.is_none(), "page {id} cached twice");
        self.dirty_count += usize::from(dirty);
    }

    /// Drops a page from the cache (evicted or freed). Returns whether it was dirty.
    pub fn remove(&mut self, id: PageId) -> Option<bool> {
        let slot = self.map.remove(&id)?;
        let frame = self.slots[slot].take().expect("mapped slot holds a frame");
        assert_eq!(frame.pins, 0, "removing pinned page {id}");
        self.dirty_count -= usize::from(frame.dirty);
        self.empty_slots.push(slot);
        if self.spare_bufs.len() < 4 {
            self.spare_bufs.push(frame.buf);
        }
        Some(frame.dirty)
    }

    pub fn set_dirty(&mut self, id: PageId, dirty: bool) {
        let slot = *self.map.get(&id).expect("set_dirty on an uncached page");
        let frame = self.slots[slot]
            .as_mut()
            .expect("mapped slot holds a frame");
        if frame.dirty != dirty {
            frame.dirty = dirty;
            if dirty {
                self.dirty_count += 1;
            } else {
                self.dirty_count -= 1;
            }
        }
    }

    pub fn pin(&mut self, id: PageId) {
        let slot = *self.map.get(&id).expect("pin of an uncached page");
        self.slots[slot]
            .as_mut()
            .expect("mapped slot holds a frame")
            .pins += 1;
        self.pinned_total += 1;
    }

    pub fn unpin(&mut self, id: PageId) {
        let slot = *self.map.get(&id).expect("unpin of an uncached page");
        let frame = self.slots[slot]
            .as_mut()
            .expect("mapped slot holds a frame");
        assert!(frame.pins > 0, "unpin of unpinned page {id}");
        frame.pins -= 1;
        self.pinned_total -= 1;
    }

    pub fn pinned_total(&self) -> usize {
        self.pinned_total
    }

    /// CLOCK: the next unpinned frame whose reference bit is clear (clearing bits on the way).
    /// `None` when every frame is pinned. The victim stays cached until the caller removes it.
    pub fn victim(&mut self) -> Option<(PageId, bool)> {
        let n = self.slots.len();
        for _ in 0..2 * n + 1 {
            if n == 0 {
                return None;
            }
            self.hand = (self.hand + 1) % n;
            if let Some(frame) = self.slots[self.hand].as_mut() {
                if frame.pins > 0 {
                    continue;
                }
                if frame.referenced {
                    frame.referenced = false;
                    continue;
                }
                return Some((frame.id, frame.dirty));
            }
        }
        None
    }

    /// Ids of all dirty frames, ascending (so a commit writes in file order).
    pub fn dirty_ids(&self) -> Vec<PageId> {
        let mut ids: Vec<PageId> = self
            .slots
            .iter()
            .flatten()
            .filter(|frame| frame.dirty)
            .map(|frame| frame.id)
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
            let buf = cache.new_buf();
            cache.insert(id, buf, id == 2);
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
    }
}
