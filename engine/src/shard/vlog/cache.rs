//! A bounded cache of value-log values, per shard, keyed by where the value lives.
//!
//! A value in the value log never changes where it is: a put writes a new record at a new
//! position, GC copies a record to a new position, and a segment id is never reused. So an entry
//! keyed by its pointer's position (segment, offset) can never go stale and needs no
//! invalidation on overwrite: the key's leaf simply points elsewhere and the old entry ages out.
//! A GC move re-keys a cached entry to the record's new position (the bytes are the same), so a
//! hot value stays cached across collections; entries of a segment are dropped when GC deletes
//! it, to give their memory back at once.
//!
//! Entries hold the key and the value (a hit compares both the key and the pointer's checksum
//! and value size, so a lookup can only return the record that the on-disk check would accept).
//! Only bytes that passed that check on a read, or that the shard was just given by a put, are
//! inserted: the cache never holds bytes nobody verified.
//!
//! Eviction is CLOCK, like the page cache (`tree/cache.rs`): a hit sets the entry's reference
//! bit (no list to update); an insertion sweeps the hand over the slots, clearing set bits and
//! evicting the first entry whose bit is clear, until the new entry fits. Each slot is passed at
//! most twice per insertion (one pass clears every bit), and every eviction frees a slot the
//! insertion or a later one reuses, so the bookkeeping is O(1) amortized. New entries start with
//! the bit clear: a value read once (a scan) goes before values read again.
//!
//! Invariants:
//! - `used_bytes` (the sum of every entry's cost: key, value and `VLOG_CACHE_ENTRY_OVERHEAD_BYTES`)
//!   never exceeds `capacity_bytes`;
//! - an entry costs at most `capacity_bytes / VLOG_CACHE_VALUE_SHARE_DIVISOR`; larger values
//!   bypass the cache (one large value cannot flush everything else);
//! - `index` maps exactly the occupied slots, each to its own position.

use super::format::Pointer;
use crate::constants::{VLOG_CACHE_ENTRY_OVERHEAD_BYTES, VLOG_CACHE_VALUE_SHARE_DIVISOR};
use std::collections::HashMap;

/// Counters and gauges of one shard's value cache, for INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValueCacheStats {
    /// Reads of value-log values answered from the cache.
    pub hits: u64,
    /// Reads of value-log values that went to the disk (values not yet written are served from
    /// the log's buffer and count as neither).
    pub misses: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Values not cached because they cost more than the per-entry share of the cache.
    pub bypassed: u64,
    /// Gauge: bytes the entries cost (keys, values and per-entry overhead).
    pub bytes: u64,
    /// Gauge: entries.
    pub entries: u64,
}

#[derive(Debug)]
struct Entry {
    segment: u64,
    offset: u64,
    checksum: u32,
    key_len: usize,
    /// The key followed by the value.
    bytes: Box<[u8]>,
    referenced: bool,
}

impl Entry {
    fn cost(&self) -> usize {
        entry_cost(self.bytes.len())
    }
}

fn entry_cost(key_and_value_len: usize) -> usize {
    key_and_value_len + VLOG_CACHE_ENTRY_OVERHEAD_BYTES
}

/// A bounded CLOCK cache of verified value-log values; see the module doc.
#[derive(Debug)]
pub struct ValueCache {
    capacity_bytes: usize,
    used_bytes: usize,
    /// (segment, offset) -> slot.
    index: HashMap<(u64, u64), usize>,
    slots: Vec<Option<Entry>>,
    /// Empty slots, reused before the vector grows.
    free: Vec<usize>,
    hand: usize,
    stats: ValueCacheStats,
}

impl ValueCache {
    /// A cache whose entries cost at most `capacity_bytes` in total (0 turns it off).
    pub fn new(capacity_bytes: usize) -> ValueCache {
        ValueCache {
            capacity_bytes,
            used_bytes: 0,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            stats: ValueCacheStats::default(),
        }
    }

    /// The most an entry (key, value and overhead) may cost to be cached.
    pub fn entry_bytes_max(&self) -> usize {
        self.capacity_bytes / VLOG_CACHE_VALUE_SHARE_DIVISOR
    }

    /// The value `pointer` names for `key`, if cached (counted as a hit; the caller counts a
    /// miss with [`ValueCache::note_miss`] when it goes to the disk).
    pub fn get(&mut self, key: &[u8], pointer: &Pointer) -> Option<&[u8]> {
        let slot = *self.index.get(&(pointer.segment, pointer.offset))?;
        let entry = self.slots[slot]
            .as_mut()
            .expect("indexed slots are occupied");
        let matches = entry.checksum == pointer.checksum
            && entry.bytes.len() - entry.key_len == pointer.value_size as usize
            && &entry.bytes[..entry.key_len] == key;
        if !matches {
            // Not the record the pointer was made for: only possible if the tree is damaged.
            // Never answer from it; the disk read reports what is really there.
            return None;
        }
        self.stats.hits += 1;
        entry.referenced = true;
        Some(&entry.bytes[entry.key_len..])
    }

    /// Counts a read that the cache could not answer.
    pub fn note_miss(&mut self) {
        self.stats.misses += 1;
    }

    /// Caches `value` of `key` at `pointer`: bytes that were just verified against the pointer
    /// or just written. Evicts as needed; a value over the per-entry share is not cached.
    pub fn insert(&mut self, key: &[u8], pointer: &Pointer, value: &[u8]) {
        debug_assert_eq!(value.len(), pointer.value_size as usize);
        let cost = entry_cost(key.len() + value.len());
        if cost > self.entry_bytes_max() {
            self.stats.bypassed += 1;
            return;
        }
        if let Some(&slot) = self.index.get(&(pointer.segment, pointer.offset)) {
            let entry = self.slots[slot]
                .as_ref()
                .expect("indexed slots are occupied");
            if entry.checksum == pointer.checksum && &entry.bytes[..entry.key_len] == key {
                return;
            }
            // A record taken back (`ValueLog::unappend`) left its position to another one.
            self.remove_slot(slot);
        }
        while self.used_bytes + cost > self.capacity_bytes {
            self.evict_one();
        }
        let mut bytes = Vec::with_capacity(key.len() + value.len());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        let entry = Entry {
            segment: pointer.segment,
            offset: pointer.offset,
            checksum: pointer.checksum,
            key_len: key.len(),
            bytes: bytes.into_boxed_slice(),
            referenced: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        debug_assert!(self.slots[slot].is_none());
        self.slots[slot] = Some(entry);
        self.index.insert((pointer.segment, pointer.offset), slot);
        self.used_bytes += cost;
        assert!(
            self.used_bytes <= self.capacity_bytes,
            "the value cache exceeded its bound"
        );
    }

    /// Evicts the first unreferenced entry under the hand, clearing reference bits on the way.
    /// Called only while some entry exists (the bytes wanted exceed the free bytes).
    fn evict_one(&mut self) {
        assert!(self.used_bytes > 0, "eviction from an empty value cache");
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = self.hand;
            self.hand += 1;
            let Some(entry) = self.slots[slot].as_mut() else {
                continue;
            };
            if entry.referenced {
                entry.referenced = false;
                continue;
            }
            self.remove_slot(slot);
            self.stats.evictions += 1;
            return;
        }
    }

    fn remove_slot(&mut self, slot: usize) {
        let entry = self.slots[slot].take().expect("an occupied slot");
        self.index.remove(&(entry.segment, entry.offset));
        self.used_bytes -= entry.cost();
        self.free.push(slot);
    }

    /// GC copied the record at `from` to `to` (same key and value, new position and checksum):
    /// a cached value follows it, keeping its reference bit, without a copy.
    pub fn moved(&mut self, from: &Pointer, to: &Pointer) {
        debug_assert_eq!(from.value_size, to.value_size);
        if !self.index.contains_key(&(from.segment, from.offset)) {
            return;
        }
        self.remove(to);
        let slot = self
            .index
            .remove(&(from.segment, from.offset))
            .expect("checked above");
        let entry = self.slots[slot]
            .as_mut()
            .expect("indexed slots are occupied");
        entry.segment = to.segment;
        entry.offset = to.offset;
        entry.checksum = to.checksum;
        self.index.insert((to.segment, to.offset), slot);
    }

    /// Drops the entry at `pointer`, if any.
    pub fn remove(&mut self, pointer: &Pointer) {
        if let Some(slot) = self.index.get(&(pointer.segment, pointer.offset)).copied() {
            self.remove_slot(slot);
        }
    }

    /// Drops every entry of `segment` (GC deleted it). O(slots); runs once per deleted segment.
    pub fn drop_segment(&mut self, segment: u64) {
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|entry| entry.segment == segment)
            {
                self.remove_slot(slot);
            }
        }
    }

    pub fn stats(&self) -> ValueCacheStats {
        ValueCacheStats {
            bytes: self.used_bytes as u64,
            entries: self.index.len() as u64,
            ..self.stats.clone()
        }
    }

    /// The segments that have cached entries.
    #[cfg(test)]
    pub fn segments(&self) -> std::collections::BTreeSet<u64> {
        self.index.keys().map(|&(segment, _)| segment).collect()
    }

    /// O(n) check of the invariants in the module doc.
    #[cfg(test)]
    fn check(&self) {
        let occupied: Vec<(usize, &Entry)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| entry.as_ref().map(|e| (slot, e)))
            .collect();
        let used: usize = occupied.iter().map(|(_, e)| e.cost()).sum();
        assert_eq!(used, self.used_bytes);
        assert!(self.used_bytes <= self.capacity_bytes);
        assert_eq!(occupied.len(), self.index.len());
        for (slot, entry) in occupied {
            assert_eq!(self.index[&(entry.segment, entry.offset)], slot);
            assert!(entry.cost() <= self.entry_bytes_max());
        }
        assert_eq!(self.free.len() + self.index.len(), self.slots.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(segment: u64, offset: u64, value: &[u8]) -> Pointer {
        Pointer {
            segment,
            offset,
            value_size: value.len() as u32,
            checksum: crc32c::crc32c(value) ^ offset as u32,
        }
    }

    fn value(len: usize, seed: u64) -> Vec<u8> {
        (0..len).map(|i| (i as u64 * 7 + seed) as u8).collect()
    }

    #[test]
    fn hits_return_the_inserted_bytes_and_mismatches_miss() {
        let mut cache = ValueCache::new(1 << 20);
        let v = value(5_000, 1);
        let p = pointer(1, 4096, &v);
        assert_eq!(cache.get(b"k", &p), None);
        cache.insert(b"k", &p, &v);
        assert_eq!(cache.get(b"k", &p), Some(&v[..]));
        assert_eq!(cache.get(b"other", &p), None, "another key's pointer");
        let wrong_crc = Pointer {
            checksum: p.checksum ^ 1,
            ..p
        };
        assert_eq!(cache.get(b"k", &wrong_crc), None);
        let wrong_size = Pointer {
            value_size: p.value_size - 1,
            ..p
        };
        assert_eq!(cache.get(b"k", &wrong_size), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.entries), (1, 1));
        assert_eq!(
            stats.bytes,
            (5_001 + VLOG_CACHE_ENTRY_OVERHEAD_BYTES) as u64
        );
        // Another record at the same position (a put taken back, then another) replaces it.
        let w = value(5_000, 2);
        let q = pointer(1, 4096, &w);
        let q = Pointer {
            checksum: q.checksum ^ 7,
            ..q
        };
        cache.insert(b"k", &q, &w);
        assert_eq!(cache.get(b"k", &p), None);
        assert_eq!(cache.get(b"k", &q), Some(&w[..]));
        assert_eq!(cache.stats().entries, 1);
        cache.remove(&q);
        assert_eq!(cache.get(b"k", &q), None);
        assert_eq!(cache.stats().bytes, 0);
        cache.check();
    }

    #[test]
    fn the_bound_holds_under_random_inserts_and_referenced_entries_survive() {
        let capacity = 256 << 10;
        let mut cache = ValueCache::new(capacity);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let hot = value(2_000, 99);
        let hot_pointer = pointer(9, 4096, &hot);
        cache.insert(b"hot", &hot_pointer, &hot);
        for i in 0..5_000u64 {
            let len = 1_025 + (next() % 30_000) as usize;
            let v = value(len, i);
            let p = pointer(1 + next() % 4, 4096 + i * 40_000, &v);
            cache.insert(b"key", &p, &v);
            assert!(cache.stats().bytes as usize <= capacity);
            // The hot value is read between every insertion: CLOCK keeps it.
            assert_eq!(cache.get(b"hot", &hot_pointer), Some(&hot[..]), "{i}");
            if i % 500 == 0 {
                cache.check();
            }
        }
        let stats = cache.stats();
        assert!(stats.evictions > 4_000, "{stats:?}");
        assert!(
            stats.bytes as usize > capacity / 2,
            "the cache stays in use: {stats:?}"
        );
        cache.check();
    }

    #[test]
    fn eviction_takes_unreferenced_entries_first() {
        let per_entry = 10_000;
        let cost = entry_cost(1 + per_entry);
        let mut cache = ValueCache::new(cost * 8);
        let values: Vec<Vec<u8>> = (0..8).map(|i| value(per_entry, i)).collect();
        let pointers: Vec<Pointer> = (0..8)
            .map(|i| pointer(1, 4096 * (i + 1), &values[i as usize]))
            .collect();
        for (p, v) in pointers.iter().zip(&values) {
            cache.insert(b"k", p, v);
        }
        assert_eq!(cache.stats().entries, 8, "exactly full");
        for i in [0, 2, 4, 6] {
            assert!(cache.get(b"k", &pointers[i]).is_some());
        }
        let extra = value(per_entry, 100);
        let extra_pointer = pointer(2, 4096, &extra);
        cache.insert(b"k", &extra_pointer, &extra);
        assert_eq!(cache.stats().evictions, 1);
        assert!(
            cache.get(b"k", &pointers[1]).is_none(),
            "the first unreferenced entry went"
        );
        for i in [0, 2, 4, 6] {
            assert!(
                cache.get(b"k", &pointers[i]).is_some(),
                "{i} was referenced"
            );
        }
        cache.check();
    }

    #[test]
    fn dropping_a_segment_frees_its_entries_only() {
        let mut cache = ValueCache::new(1 << 20);
        let v = value(3_000, 5);
        for i in 0..20u64 {
            cache.insert(b"k", &pointer(1 + i % 2, 4096 * (i + 1), &v), &v);
        }
        cache.drop_segment(1);
        let stats = cache.stats();
        assert_eq!(stats.entries, 10);
        assert_eq!(
            stats.bytes,
            10 * entry_cost(3_001) as u64,
            "the bytes of the dropped entries came back"
        );
        for i in 0..20u64 {
            let hit = cache
                .get(b"k", &pointer(1 + i % 2, 4096 * (i + 1), &v))
                .is_some();
            assert_eq!(hit, i % 2 == 1, "{i}");
        }
        // Freed slots are reused before the slot vector grows.
        let slots = cache.slots.len();
        for i in 0..10u64 {
            cache.insert(b"k", &pointer(3, 4096 * (i + 1), &v), &v);
        }
        assert_eq!(cache.slots.len(), slots);
        cache.check();
    }

    #[test]
    fn a_moved_value_follows_its_record() {
        let mut cache = ValueCache::new(1 << 20);
        let v = value(4_000, 3);
        let from = pointer(1, 4096, &v);
        let to = pointer(2, 8192, &v);
        cache.insert(b"k", &from, &v);
        cache.moved(&from, &to);
        assert_eq!(cache.get(b"k", &from), None);
        assert_eq!(cache.get(b"k", &to), Some(&v[..]));
        // A value that was not cached stays uncached.
        let other = pointer(3, 4096, &v);
        cache.moved(&pointer(1, 12_288, &v), &other);
        assert_eq!(cache.get(b"k", &other), None);
        assert_eq!(cache.stats().entries, 1);
        cache.check();
    }

    #[test]
    fn oversized_values_bypass_and_a_zero_capacity_caches_nothing() {
        let capacity = 64 << 10;
        let mut cache = ValueCache::new(capacity);
        let fits = value(capacity / VLOG_CACHE_VALUE_SHARE_DIVISOR - 200, 1);
        let too_big = value(capacity / VLOG_CACHE_VALUE_SHARE_DIVISOR, 2);
        cache.insert(b"k", &pointer(1, 4096, &fits), &fits);
        cache.insert(b"k", &pointer(1, 8192, &too_big), &too_big);
        assert!(cache.get(b"k", &pointer(1, 4096, &fits)).is_some());
        assert!(cache.get(b"k", &pointer(1, 8192, &too_big)).is_none());
        assert_eq!(cache.stats().bypassed, 1);
        let mut off = ValueCache::new(0);
        off.insert(b"k", &pointer(1, 4096, &fits), &fits);
        assert_eq!(off.stats().entries, 0);
        assert!(off.get(b"k", &pointer(1, 4096, &fits)).is_none());
        cache.check();
        off.check();
    }
}
