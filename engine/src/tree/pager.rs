//! The pager: page I/O, the cache, page allocation, epochs and the commit protocol.
//!
//! Copy-on-write with epochs. The *open epoch* is the set of changes since the last
//! `begin_commit`. A page id allocated in the open epoch (`epoch_allocated`) is writable in place;
//! any other page is first copied to a fresh id ([`Pager::make_writable`]). Hence every dirty page
//! has an id that no durable superblock can reach, and the pager may write it at any time: early
//! (a *spill*, when the cache is over budget) or during a commit.
//!
//! Invariants, asserted where they matter:
//! - a write goes only to an id allocated in the open epoch or to a page of the commit in flight
//!   (never to a page the last durable superblock can reach);
//! - a page freed in epoch `E` that was allocated before `E` is reusable only once the commit of
//!   epoch `E` is durable (`pending_free`); a page allocated and freed within the open epoch is
//!   reusable at once;
//! - every page is validated before it is written and after it is read;
//! - after a failed write or sync the pager is poisoned and refuses all further work.

use crate::constants::{PAGES_OFFSET, PINNED_PAGES_MAX, SUPERBLOCK_SIZE, WRITE_RUN_BYTES_MAX};
use crate::storage::{AlignedBuf, Storage};
use crate::tree::cache::{PageCache, PageIdSet};
use crate::tree::config::{TreeConfig, TreeStats};
use crate::tree::error::{Result, TreeError};
use crate::tree::page::{self, PageId, PageType};
use crate::tree::superblock::{self, Superblock};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// A commit between `begin_commit` and its last `commit_step`.
#[derive(Debug)]
struct CommitInFlight {
    superblock: Superblock,
    /// Pages of the closed epoch still to write, in descending id order (popped from the end).
    to_write: Vec<PageId>,
}

#[derive(Debug)]
pub struct Pager<F: Storage> {
    file: F,
    page_size: usize,
    cache: PageCache,
    /// Page-count high-water mark: ids at or above it were never handed out.
    page_count: u64,
    /// Ids reusable now.
    free: BTreeSet<PageId>,
    /// Ids allocated in the open epoch: writable in place, unreachable from any commit.
    epoch_allocated: PageIdSet,
    /// Dirty pages of the closed epoch that the commit in flight has not written yet.
    closed_dirty: PageIdSet,
    /// Ids freed in epoch `E` (keyed by `E`, the generation whose commit frees them).
    pending_free: BTreeMap<u64, Vec<PageId>>,
    /// The generation the open epoch will commit as.
    epoch: u64,
    durable: Superblock,
    commit: Option<CommitInFlight>,
    poisoned: Option<String>,
    /// Pins taken by the running operation, released together.
    op_pins: Vec<PageId>,
    io_buf: Option<AlignedBuf>,
    stats: TreeStats,
}

impl<F: Storage> Pager<F> {
    /// A pager over `file`, positioned at the durable state `durable`. The caller then calls
    /// [`Pager::set_reachable`] with the pages the root reaches, to derive the free set.
    pub fn new(file: F, config: &TreeConfig, durable: Superblock) -> Pager<F> {
        assert_eq!(
            durable.page_size as usize, config.page_size,
            "page size checked by caller"
        );
        let cache = PageCache::new(config.cache_pages(), config.page_size);
        file.advise_cache_memory(cache.arena());
        Pager {
            file,
            page_size: config.page_size,
            cache,
            page_count: durable.page_count,
            free: BTreeSet::new(),
            epoch_allocated: PageIdSet::default(),
            closed_dirty: PageIdSet::default(),
            pending_free: BTreeMap::new(),
            epoch: durable.generation + 1,
            durable,
            commit: None,
            poisoned: None,
            op_pins: Vec::new(),
            io_buf: Some(AlignedBuf::zeroed(config.page_size)),
            stats: TreeStats::default(),
        }
    }

    /// Reads both superblock slots and picks the newest valid one.
    pub fn read_superblock(file: &mut F) -> Result<Superblock> {
        let mut results = Vec::with_capacity(2);
        for slot in 0..2u64 {
            let offset = slot * SUPERBLOCK_SIZE as u64;
            let buf = AlignedBuf::zeroed(SUPERBLOCK_SIZE);
            let result = match file.read_at(offset, buf) {
                Ok((buf, n)) if n == SUPERBLOCK_SIZE => Superblock::decode(&buf),
                Ok((_, n)) => Err(format!("file ends after {n} bytes of the slot")),
                Err(err) => Err(format!("read failed: {err}")),
            };
            results.push(result);
        }
        match superblock::choose(&results[0], &results[1]) {
            Some(sb) => Ok(sb),
            None => Err(TreeError::NoValidSuperblock {
                file: file.path().to_string(),
                offset_a: 0,
                error_a: results[0].clone().err().unwrap_or_default(),
                offset_b: SUPERBLOCK_SIZE as u64,
                error_b: results[1].clone().err().unwrap_or_default(),
            }),
        }
    }

    /// Derives the free set at open: every id below the high-water mark that the root does not
    /// reach. Nothing is persisted about free pages, so none can leak across a restart.
    pub fn set_reachable(&mut self, reachable: &HashSet<PageId>) {
        assert!(
            self.free.is_empty() && self.epoch_allocated.is_empty(),
            "set_reachable at open only"
        );
        self.free = (0..self.page_count)
            .filter(|id| !reachable.contains(id))
            .collect();
    }

    pub fn path(&self) -> &str {
        self.file.path()
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn durable(&self) -> &Superblock {
        &self.durable
    }

    pub fn commit_in_flight(&self) -> bool {
        self.commit.is_some()
    }

    pub fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(first) => Err(TreeError::Poisoned {
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the pager because an operation failed half-way (after it had started changing
    /// pages): the in-memory tree may no longer be consistent.
    pub fn poison_after(&mut self, err: &TreeError) {
        if self.poisoned.is_none() {
            tracing::error!(path = self.file.path(), %err, "operation failed half-way; tree poisoned");
            self.poisoned = Some(format!("a write failed half-way: {err}"));
        }
    }

    fn poison(&mut self, doing: &'static str, source: crate::storage::IoError) -> TreeError {
        tracing::error!(path = self.file.path(), %source, "{doing} failed; tree poisoned");
        if self.poisoned.is_none() {
            self.poisoned = Some(format!("{doing}: {source}"));
        }
        TreeError::Io { doing, source }
    }

    fn page_offset(&self, id: PageId) -> u64 {
        PAGES_OFFSET + id * self.page_size as u64
    }

    /// The bytes of page `id`, read and validated on a miss.
    pub fn page(&mut self, id: PageId) -> Result<&[u8]> {
        let slot = self.ensure_cached(id)?;
        Ok(self.cache.frame_at(slot))
    }

    /// Page `id`, which the tree expects at `level`; a page at another level is corruption.
    #[inline]
    pub fn page_at_level(&mut self, id: PageId, level: usize) -> Result<&[u8]> {
        let slot = self.ensure_cached(id)?;
        let found = page::level(self.cache.frame_at(slot)) as usize;
        if found != level {
            return Err(self.level_mismatch(id, found, level));
        }
        Ok(self.cache.frame_at(slot))
    }

    #[cold]
    fn level_mismatch(&self, id: PageId, found: usize, level: usize) -> TreeError {
        TreeError::CorruptTree {
            file: self.path().to_string(),
            detail: format!("page {id} has level {found} where level {level} belongs"),
        }
    }

    /// The bytes of page `id` for editing; the page must be writable in place.
    pub fn page_mut(&mut self, id: PageId) -> Result<&mut [u8]> {
        assert!(
            self.epoch_allocated.contains(&id),
            "page {id} is not writable in this epoch"
        );
        let slot = self.ensure_cached(id)?;
        self.cache.set_dirty(slot, true);
        Ok(self.cache.frame_at_mut(slot))
    }

    /// Pins `id` until [`Pager::release_pins`]: the cache will not evict it meanwhile.
    pub fn pin(&mut self, id: PageId) -> Result<()> {
        self.ensure_cached(id)?;
        if self.op_pins.len() < PINNED_PAGES_MAX {
            self.cache.pin(id);
            self.op_pins.push(id);
        }
        Ok(())
    }

    /// Releases every pin the running operation took.
    pub fn release_pins(&mut self) {
        for id in std::mem::take(&mut self.op_pins) {
            self.cache.unpin(id);
        }
        assert_eq!(
            self.cache.pinned_total(),
            0,
            "pins outlived their operation"
        );
    }

    /// Makes sure page `id` is cached (reading and validating it on a miss); returns its slot.
    /// A hit does no validation: the page was validated when it was read (or is this process's
    /// own, validated before every write).
    #[inline]
    fn ensure_cached(&mut self, id: PageId) -> Result<usize> {
        if let Some(slot) = self.cache.lookup(id) {
            self.stats.cache_hits += 1;
            return Ok(slot);
        }
        self.read_into_cache(id)
    }

    /// The miss path of [`Pager::ensure_cached`]: make room, read, validate (CRC and structure),
    /// insert.
    #[cold]
    #[inline(never)]
    fn read_into_cache(&mut self, id: PageId) -> Result<usize> {
        self.stats.cache_misses += 1;
        assert!(
            id < self.page_count,
            "page {id} is beyond the high-water mark {}",
            self.page_count
        );
        let offset = self.page_offset(id);
        // Room first: an eviction may spill a dirty page, which needs the I/O buffer.
        self.make_room()?;
        let buf = self.io_buf.take().expect("one I/O at a time");
        let (buf, n) = match self.file.read_at(offset, buf) {
            Ok(read) => read,
            Err(source) => {
                self.io_buf = Some(AlignedBuf::zeroed(self.page_size));
                return Err(TreeError::Io {
                    doing: "reading a page",
                    source,
                });
            }
        };
        self.stats.pages_read += 1;
        let checked = if n < self.page_size {
            Err(format!("file ends {n} bytes into the page"))
        } else {
            page::validate(&buf, id)
        };
        let result = match checked {
            Ok(()) => {
                let slot = self.cache.insert(id, false);
                self.cache.frame_at_mut(slot).copy_from_slice(&buf);
                Ok(slot)
            }
            Err(detail) => Err(TreeError::CorruptPage {
                file: self.path().to_string(),
                offset,
                page_id: id,
                detail,
            }),
        };
        self.io_buf = Some(buf);
        result
    }

    /// Evicts until the cache has a free frame, spilling dirty victims. If every frame is pinned
    /// the cache grows past its budget (bounded by `PINNED_PAGES_MAX`, asserted on insert).
    fn make_room(&mut self) -> Result<()> {
        while self.cache.is_full() {
            let Some((victim, dirty)) = self.cache.victim() else {
                return Ok(());
            };
            if dirty {
                self.write_page(victim)?;
                self.stats.cache_spills += 1;
            }
            self.cache.remove(victim);
            self.stats.cache_evictions += 1;
        }
        Ok(())
    }

    /// Seals, validates and writes the cached dirty page `id`, leaving it clean.
    fn write_page(&mut self, id: PageId) -> Result<()> {
        self.write_run(&[id])
    }

    /// Writes cached dirty pages with consecutive ids in one I/O, leaving them clean. Each page is
    /// sealed and validated first: writing an invalid page is a bug.
    fn write_run(&mut self, run: &[PageId]) -> Result<()> {
        let first = *run.first().expect("a run has pages");
        let offset = self.page_offset(first);
        let mut io_buf = match (run.len(), self.io_buf.take()) {
            (1, Some(buf)) => buf,
            (n, spare) => {
                self.io_buf = spare;
                AlignedBuf::zeroed(n * self.page_size)
            }
        };
        for (index, &id) in run.iter().enumerate() {
            assert_eq!(id, first + index as u64, "a run has consecutive ids");
            assert!(
                self.epoch_allocated.contains(&id) || self.closed_dirty.contains(&id),
                "page {id} may be reachable from a durable superblock and must not be overwritten"
            );
            let slot = self.cache.lookup(id).expect("writing an uncached page");
            assert!(self.cache.is_dirty(slot), "writing clean page {id}");
            let frame = self.cache.frame_at_mut(slot);
            page::seal(frame);
            if let Err(detail) = page::validate(frame, id) {
                panic!("bug: about to write invalid page {id}: {detail}");
            }
            io_buf[index * self.page_size..(index + 1) * self.page_size].copy_from_slice(frame);
        }
        match self.file.write_at(offset, io_buf) {
            Ok(buf) if run.len() == 1 => self.io_buf = Some(buf),
            Ok(_) => {}
            Err(source) => {
                if run.len() == 1 {
                    self.io_buf = Some(AlignedBuf::zeroed(self.page_size));
                }
                return Err(self.poison("writing pages", source));
            }
        }
        self.stats.pages_written += run.len() as u64;
        for &id in run {
            let slot = self.cache.lookup(id).expect("written page is cached");
            self.cache.set_dirty(slot, false);
            self.closed_dirty.remove(&id);
        }
        Ok(())
    }

    /// Hands out a page id: the lowest free one, else a new one at the high-water mark.
    fn allocate(&mut self) -> PageId {
        let id = self.free.pop_first().unwrap_or_else(|| {
            self.page_count += 1;
            self.page_count - 1
        });
        assert!(
            !self.cache.contains(id),
            "allocated page {id} is still cached"
        );
        self.epoch_allocated.insert(id);
        id
    }

    /// A new empty page, writable, dirty and pinned.
    pub fn new_page(&mut self, page_type: PageType, level: u16) -> Result<PageId> {
        self.make_room()?;
        let id = self.allocate();
        let slot = self.cache.insert(id, true);
        page::init(self.cache.frame_at_mut(slot), page_type, level, id);
        self.pin(id)?;
        Ok(id)
    }

    /// Returns `id` if it is writable in place, else copies it to a fresh id (copy-on-write),
    /// frees the old id and returns the new one. The caller repoints the parent.
    pub fn make_writable(&mut self, id: PageId) -> Result<PageId> {
        if self.epoch_allocated.contains(&id) {
            return Ok(id);
        }
        self.ensure_cached(id)?;
        // Pinned so that making room cannot evict the page being copied.
        self.cache.pin(id);
        let room = self.make_room();
        self.cache.unpin(id);
        room?;
        let new_id = self.allocate();
        let from = self.cache.lookup(id).expect("pinned page stayed cached");
        let to = self.cache.insert(new_id, true);
        self.cache.copy_frame(from, to);
        page::set_page_id(self.cache.frame_at_mut(to), new_id);
        self.pin(new_id)?;
        self.free_page(id);
        Ok(new_id)
    }

    /// Releases page `id`, which the tree no longer references.
    pub fn free_page(&mut self, id: PageId) {
        while let Some(at) = self.op_pins.iter().position(|&p| p == id) {
            self.op_pins.swap_remove(at);
            self.cache.unpin(id);
        }
        if self.epoch_allocated.remove(&id) {
            self.cache.remove(id);
            self.free.insert(id);
            return;
        }
        // Reachable from the last durable superblock or from the commit in flight: keep it until
        // the commit of the open epoch is durable. A dirty page of the commit in flight stays
        // cached, because that commit must still write it.
        if !self.closed_dirty.contains(&id) && self.cache.contains(id) {
            self.cache.remove(id);
        }
        self.pending_free.entry(self.epoch).or_default().push(id);
    }

    /// Closes the open epoch: the dirty pages become the commit's, later changes copy them again.
    pub fn begin_commit(&mut self, mut superblock: Superblock) -> Result<()> {
        self.check_usable()?;
        if self.commit.is_some() {
            return Err(TreeError::CommitState {
                detail: "begin_commit while a commit is in flight",
            });
        }
        assert!(self.op_pins.is_empty(), "begin_commit inside an operation");
        superblock.generation = self.epoch;
        superblock.page_count = self.page_count;
        superblock.page_size = u32::try_from(self.page_size).expect("page size fits u32");
        let mut to_write = self.cache.dirty_ids();
        to_write.reverse();
        self.closed_dirty = to_write.iter().copied().collect();
        self.epoch_allocated.clear();
        self.epoch += 1;
        self.commit = Some(CommitInFlight {
            superblock,
            to_write,
        });
        Ok(())
    }

    /// Writes up to `budget_bytes` of the commit in flight (at least one page). Once every page is
    /// written it syncs, writes the other superblock slot and syncs again; then returns `true`.
    pub fn commit_step(&mut self, budget_bytes: usize) -> Result<bool> {
        self.check_usable()?;
        let Some(commit) = self.commit.as_mut() else {
            return Err(TreeError::CommitState {
                detail: "commit_step without begin_commit",
            });
        };
        let mut written = 0usize;
        let mut batch = Vec::new();
        while written < budget_bytes.max(1) {
            let Some(id) = commit.to_write.pop() else {
                break;
            };
            batch.push(id);
            written += self.page_size;
        }
        let done = commit.to_write.is_empty();
        // A page of the commit may already be on disk (spilled when the cache was full); the
        // others go out in runs of consecutive ids, one I/O per run.
        let pending: Vec<PageId> = batch
            .into_iter()
            .filter(|id| self.closed_dirty.contains(id))
            .collect();
        let run_pages_max = (WRITE_RUN_BYTES_MAX / self.page_size).max(1);
        let mut start = 0;
        while start < pending.len() {
            let mut end = start + 1;
            while end < pending.len()
                && end - start < run_pages_max
                && pending[end] == pending[end - 1] + 1
            {
                end += 1;
            }
            self.write_run(&pending[start..end])?;
            start = end;
        }
        if !done {
            return Ok(false);
        }
        self.finish_commit()?;
        Ok(true)
    }

    fn finish_commit(&mut self) -> Result<()> {
        assert!(
            self.closed_dirty.is_empty(),
            "every page of the commit is written before the flip"
        );
        let commit = self.commit.take().expect("commit in flight");
        if let Err(source) = self.file.sync_data() {
            return Err(self.poison("syncing pages before the superblock", source));
        }
        let sb = commit.superblock;
        let mut buf = AlignedBuf::zeroed(SUPERBLOCK_SIZE);
        sb.encode(&mut buf);
        let offset = Superblock::slot_offset(sb.generation);
        if let Err(source) = self.file.write_at(offset, buf) {
            return Err(self.poison("writing the superblock", source));
        }
        if let Err(source) = self.file.sync_data() {
            return Err(self.poison("syncing the superblock", source));
        }
        self.durable = sb;
        let released: Vec<u64> = self
            .pending_free
            .range(..=sb.generation)
            .map(|(&e, _)| e)
            .collect();
        for epoch in released {
            let ids = self.pending_free.remove(&epoch).expect("key listed");
            for &id in &ids {
                // A page freed while its commit was in flight stayed cached until written.
                self.cache.remove(id);
            }
            self.free.extend(ids);
        }
        self.stats.commits += 1;
        Ok(())
    }

    /// Writes the first superblock of a new file (generation 1) after syncing its pages.
    pub fn create_commit(&mut self, superblock: Superblock) -> Result<()> {
        assert_eq!(
            self.durable.generation, 0,
            "create_commit on a fresh pager only"
        );
        self.begin_commit(superblock)?;
        while !self.commit_step(usize::MAX)? {}
        Ok(())
    }

    /// The ids the pager considers free now and pending-free, and all ids allocated this epoch
    /// (for `check_integrity`).
    pub fn accounting(&self) -> (Vec<PageId>, Vec<PageId>, u64) {
        let free = self.free.iter().copied().collect();
        let pending = self.pending_free.values().flatten().copied().collect();
        (free, pending, self.page_count)
    }

    /// The cached page ids (for `check_integrity`: every cached page must be live or pending).
    pub fn cached_ids(&self) -> Vec<PageId> {
        self.cache.ids()
    }

    pub fn stats(&self) -> TreeStats {
        let mut stats = self.stats.clone();
        stats.dirty_bytes = (self.cache.dirty_count() * self.page_size) as u64;
        stats.resident_bytes = (self.cache.len() * self.page_size) as u64;
        stats.page_count = self.page_count;
        stats.free_pages = self.free.len() as u64;
        stats.pending_free_pages = self.pending_free.values().map(|v| v.len() as u64).sum();
        stats
    }
}
