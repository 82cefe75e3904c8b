//! One shard's B+tree over its page file: the public face of the pager, cache and tree code.
//!
//! Keys are byte strings in lexicographic order; each key maps to a [`Value`] (inline bytes, an
//! expiry timestamp the tree stores but does not interpret, and a per-key version). A value may
//! instead be a value-log pointer (kind `VALUE_KIND_POINTER`, see [`Tree::put_kind`]), which the
//! tree stores as 24 opaque bytes; [`Tree::get`] and [`Tree::scan`] return stored bytes as they
//! are, and the shard resolves pointers through `get_with` / `scan_visit`. Changes live
//! in the page cache until a commit makes them durable (see [`Tree::begin_commit`]); the WAL issue
//! makes every acknowledged write durable through its own log and uses commits as checkpoints.
//!
//! Invariants (verified by [`Tree::check_integrity`]): keys strictly increase across the leaves;
//! every key of child `i` of a branch lies in `[separator i-1, separator i)`; all leaves are at
//! level 0 and a branch at level `l` has children at `l - 1`; non-root pages are at least a quarter
//! full; every page id below the high-water mark is exactly one of reachable, free, pending-free.

mod btree;
mod cache;
mod check;
pub mod config;
pub mod error;
pub mod page;
mod pager;
mod scan;
pub mod superblock;

pub use config::{TreeConfig, TreeStats};
pub use error::{Result, TreeError};
pub use scan::{ScanEntry, ScanPage, ValueRef};

use crate::constants::{KEY_SIZE_MAX, PAGE_FILE_NAME, TREE_HEIGHT_MAX, VLOG_POINTER_SIZE};
use crate::storage::{OpenMode, Storage, Vfs};
use page::{PageId, PageType};
use pager::Pager;
use std::collections::HashSet;
pub use superblock::ShardMeta;
use superblock::Superblock;

/// A stored value and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub bytes: Vec<u8>,
    /// Absolute expiry in wall-clock milliseconds; 0 means none. The tree stores it only.
    pub expiry_ms: u64,
    /// Per-key version: taken from a shard-wide counter on every write, so it strictly increases
    /// for a key and never repeats, even across delete and re-create.
    pub version: u64,
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// True when the key was absent before.
    pub inserted: bool,
    /// The version now stored with the key.
    pub version: u64,
}

/// What open found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInfo {
    pub generation: u64,
    /// The WAL position this tree state includes; redo starts after it.
    pub checkpoint_lsn: u64,
    pub key_count: u64,
    pub tree_height: u32,
    pub page_count: u64,
    /// What the shard stored with the checkpoint (zero for a format-1 file).
    pub meta: ShardMeta,
}

/// One shard's tree.
#[derive(Debug)]
pub struct Tree<F: Storage> {
    pager: Pager<F>,
    config: TreeConfig,
    root: PageId,
    /// Levels: 1 when the root is a leaf.
    height: usize,
    key_count: u64,
    version_last: u64,
    /// Structural counters (splits, merges, ...) kept by the tree code, merged into `stats()`.
    counters: TreeStats,
    /// The encoded leaf record of the running put, reused from put to put (no allocation per
    /// put); at most one record's bytes.
    record_scratch: Vec<u8>,
}

impl<F: Storage> Tree<F> {
    /// Creates the page file `pages` in `vfs` (it must not exist) holding an empty tree, durably.
    pub fn create<V: Vfs<File = F>>(vfs: &mut V, config: TreeConfig) -> Result<Tree<F>> {
        config.validate()?;
        let file = vfs
            .open(PAGE_FILE_NAME, OpenMode::CreateNew)
            .map_err(|source| TreeError::Io {
                doing: "creating the page file",
                source,
            })?;
        let blank = Superblock {
            page_size: u32::try_from(config.page_size).expect("validated page size"),
            generation: 0,
            root_page_id: 0,
            tree_height: 1,
            shard_id: config.shard_id,
            page_count: 0,
            key_count: 0,
            checkpoint_lsn: 0,
            version_last: 0,
            meta: ShardMeta::default(),
        };
        let mut pager = Pager::new(file, &config, blank);
        let root = pager.new_page(PageType::Leaf, 0)?;
        pager.release_pins();
        pager.create_commit(Superblock {
            root_page_id: root,
            ..blank
        })?;
        vfs.sync_dir().map_err(|source| TreeError::Io {
            doing: "syncing the shard directory",
            source,
        })?;
        Ok(Tree {
            pager,
            config,
            root,
            height: 1,
            key_count: 0,
            version_last: 0,
            counters: TreeStats::default(),
            record_scratch: Vec::new(),
        })
    }

    /// Opens the page file in `vfs` at its newest valid superblock.
    pub fn open<V: Vfs<File = F>>(vfs: &mut V, config: TreeConfig) -> Result<(Tree<F>, OpenInfo)> {
        config.validate()?;
        let mut file = vfs
            .open(PAGE_FILE_NAME, OpenMode::Existing)
            .map_err(|source| TreeError::Io {
                doing: "opening the page file",
                source,
            })?;
        // What a previous incarnation wrote may sit in the OS cache without being durable (its
        // sync may have failed before it was poisoned). Make it durable before trusting it: a
        // later commit overwrites the other superblock slot, which may hold the only durable one.
        file.sync_data().map_err(|source| TreeError::Io {
            doing: "syncing the page file at open",
            source,
        })?;
        let sb = Pager::read_superblock(&mut file)?;
        let mismatch = |detail: String| TreeError::ConfigMismatch {
            file: file.path().to_string(),
            detail,
        };
        if sb.page_size as usize != config.page_size {
            return Err(mismatch(format!(
                "page size {} on disk, {} configured",
                sb.page_size, config.page_size
            )));
        }
        if sb.shard_id != config.shard_id {
            return Err(mismatch(format!(
                "shard id {} on disk, {} configured",
                sb.shard_id, config.shard_id
            )));
        }
        let pager = Pager::new(file, &config, sb);
        let mut tree = Tree {
            pager,
            config,
            root: sb.root_page_id,
            height: sb.tree_height as usize,
            key_count: sb.key_count,
            version_last: sb.version_last,
            counters: TreeStats::default(),
            record_scratch: Vec::new(),
        };
        let reachable = tree.reachable_pages()?;
        tree.pager.set_reachable(&reachable);
        let info = OpenInfo {
            generation: sb.generation,
            checkpoint_lsn: sb.checkpoint_lsn,
            key_count: sb.key_count,
            tree_height: sb.tree_height,
            page_count: sb.page_count,
            meta: sb.meta,
        };
        Ok((tree, info))
    }

    /// Every page the root reaches. Reads branch pages only: leaf ids come from their parents.
    fn reachable_pages(&mut self) -> Result<HashSet<PageId>> {
        let mut reachable = HashSet::from([self.root]);
        let mut level_ids = vec![self.root];
        for depth in 0..self.height - 1 {
            let mut next = Vec::new();
            for id in level_ids {
                let page = self.read_node(id, depth)?;
                for index in 0..page::branch_children(page) {
                    next.push(page::branch_child(page, index));
                }
            }
            for &child in &next {
                if child >= self.pager.durable().page_count || !reachable.insert(child) {
                    return Err(
                        self.corrupt(format!("page {child} is out of range or reachable twice"))
                    );
                }
            }
            level_ids = next;
        }
        Ok(reachable)
    }

    /// Reads page `id` found at `depth` (0 = root) and checks its level against the height.
    fn read_node(&mut self, id: PageId, depth: usize) -> Result<&[u8]> {
        self.pager.page_at_level(id, self.height - 1 - depth)
    }

    fn corrupt(&self, detail: String) -> TreeError {
        TreeError::CorruptTree {
            file: self.pager.path().to_string(),
            detail,
        }
    }

    fn check_key(key: &[u8]) -> Result<()> {
        if key.len() > KEY_SIZE_MAX {
            return Err(TreeError::KeyTooLarge {
                size: key.len(),
                max: KEY_SIZE_MAX,
            });
        }
        Ok(())
    }

    /// The value stored under `key`, if any.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Value>> {
        self.get_with(key, |value| Value {
            bytes: value.bytes.to_vec(),
            expiry_ms: value.expiry_ms,
            version: value.version,
        })
    }

    /// Looks `key` up and hands its value, borrowed from the page, to `read` (no copy unless
    /// `read` makes one).
    pub fn get_with<T>(
        &mut self,
        key: &[u8],
        read: impl FnOnce(ValueRef<'_>) -> T,
    ) -> Result<Option<T>> {
        self.pager.check_usable()?;
        Self::check_key(key)?;
        let mut id = self.root;
        for depth in 0..self.height {
            let page = self.read_node(id, depth)?;
            if page::is_leaf(page) {
                return Ok(page::search(page, key).ok().map(|index| {
                    let rec = page::leaf_record(page, index);
                    read(ValueRef {
                        kind: rec.kind,
                        bytes: rec.value,
                        expiry_ms: rec.expiry_ms,
                        version: rec.version,
                    })
                }));
            }
            id = page::branch_child(page, page::branch_child_index(page, key));
        }
        Err(self.corrupt(format!("no leaf within the tree height {}", self.height)))
    }

    /// Stores `value` under `key` with expiry `expiry_ms` (0 = none).
    pub fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: u64) -> Result<PutOutcome> {
        self.put_kind(key, page::VALUE_KIND_INLINE, value, expiry_ms)
    }

    /// Stores `bytes` of value kind `kind` under `key`: an inline value, or an encoded value-log
    /// pointer of exactly `VLOG_POINTER_SIZE` bytes.
    pub fn put_kind(
        &mut self,
        key: &[u8],
        kind: u8,
        bytes: &[u8],
        expiry_ms: u64,
    ) -> Result<PutOutcome> {
        self.pager.check_usable()?;
        Self::check_key(key)?;
        let max = self.config.value_inline_max();
        if bytes.len() > max {
            return Err(TreeError::ValueTooLarge {
                size: bytes.len(),
                max,
            });
        }
        assert!(
            kind == page::VALUE_KIND_INLINE
                || (kind == page::VALUE_KIND_POINTER && bytes.len() == VLOG_POINTER_SIZE),
            "put of value kind {kind} with {} bytes",
            bytes.len()
        );
        self.write_record(key, kind, bytes, expiry_ms, None)
    }

    /// Replaces the value of `key` with `bytes` of kind `kind`, keeping its expiry and version,
    /// if `matches` accepts the value it holds now. Returns whether it did. A value-log move:
    /// the value is the same, only where it lives changed, so the version (what WATCH and
    /// conditional writes compare) must not change.
    pub fn replace_if(
        &mut self,
        key: &[u8],
        matches: impl FnOnce(ValueRef<'_>) -> bool,
        kind: u8,
        bytes: &[u8],
    ) -> Result<bool> {
        let found = self.get_with(key, |value| {
            matches(value).then_some((value.expiry_ms, value.version))
        })?;
        let Some(Some((expiry_ms, version))) = found else {
            return Ok(false);
        };
        assert!(bytes.len() <= self.config.value_inline_max());
        self.write_record(key, kind, bytes, expiry_ms, Some(version))
            .map(|_| true)
    }

    fn write_record(
        &mut self,
        key: &[u8],
        kind: u8,
        bytes: &[u8],
        expiry_ms: u64,
        keep_version: Option<u64>,
    ) -> Result<PutOutcome> {
        let result = self.put_inner(key, kind, bytes, expiry_ms, keep_version);
        self.pager.release_pins();
        if let Err(err) = &result {
            // A read error half-way through a split or merge leaves a half-applied change.
            self.pager.poison_after(err);
        }
        result
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        self.pager.check_usable()?;
        Self::check_key(key)?;
        if self.get_with(key, |_| ())?.is_none() {
            return Ok(false);
        }
        let result = self.delete_inner(key);
        self.pager.release_pins();
        if let Err(err) = &result {
            self.pager.poison_after(err);
        }
        result.map(|()| true)
    }

    /// Starts a commit of everything changed so far, recording `checkpoint_lsn` in the new
    /// superblock. Later changes go to the next epoch; `commit_step` writes this one.
    pub fn begin_commit(&mut self, checkpoint_lsn: u64) -> Result<()> {
        let meta = self.pager.durable().meta;
        self.begin_commit_with(checkpoint_lsn, meta)
    }

    /// [`Tree::begin_commit`], storing `meta` (the shard's clock calibration and value-log head)
    /// in the new superblock.
    pub fn begin_commit_with(&mut self, checkpoint_lsn: u64, meta: ShardMeta) -> Result<()> {
        let sb = Superblock {
            page_size: 0,
            generation: 0,
            root_page_id: self.root,
            tree_height: u32::try_from(self.height).expect("height <= TREE_HEIGHT_MAX"),
            shard_id: self.config.shard_id,
            page_count: 0,
            key_count: self.key_count,
            checkpoint_lsn,
            version_last: self.version_last,
            meta,
        };
        self.pager.begin_commit(sb)
    }

    /// Writes up to `budget_bytes` of the commit in flight; returns true once it is durable.
    pub fn commit_step(&mut self, budget_bytes: usize) -> Result<bool> {
        self.pager.commit_step(budget_bytes)
    }

    /// Commits everything changed so far and returns when it is durable.
    pub fn commit(&mut self, checkpoint_lsn: u64) -> Result<()> {
        self.begin_commit(checkpoint_lsn)?;
        while !self.commit_step(usize::MAX)? {}
        Ok(())
    }

    /// Whether a commit is between `begin_commit` and its last step.
    pub fn commit_in_flight(&self) -> bool {
        self.pager.commit_in_flight()
    }

    /// Whether an earlier failed write or sync has poisoned the tree (reopen to recover).
    pub fn is_poisoned(&self) -> bool {
        self.pager.check_usable().is_err()
    }

    /// The generation of the last durable commit.
    pub fn durable_generation(&self) -> u64 {
        self.pager.durable().generation
    }

    pub fn key_count(&self) -> u64 {
        self.key_count
    }

    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    pub fn stats(&self) -> TreeStats {
        let mut stats = self.pager.stats();
        stats.tree_height = self.height as u64;
        stats.key_count = self.key_count;
        stats.splits = self.counters.splits;
        stats.merges = self.counters.merges;
        stats.redistributions = self.counters.redistributions;
        stats.root_collapses = self.counters.root_collapses;
        stats
    }
}

const _: () = assert!(
    TREE_HEIGHT_MAX < u16::MAX as usize,
    "levels are u16 on disk"
);

#[cfg(test)]
mod tests;
