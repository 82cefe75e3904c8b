//! Tree mutation: copy-on-write descent, splits, merges and redistribution.
//!
//! A write first makes the whole root-to-leaf path writable (copying pages the open epoch does not
//! own and repointing their parents), then edits the leaf in place. Overflow splits a page in two
//! by bytes and pushes a separator up, splitting parents as needed and growing a new root at the
//! top. Underflow (a non-root page less than a quarter full) merges the page with a sibling when
//! both fit in one page, and otherwise redistributes their records evenly; the parent's separator
//! changes accordingly, which may underflow (merge) or overflow (split) the parent in turn. A root
//! branch left with a single child is replaced by that child.
//!
//! Invariants kept: separators of leaves are the shortest prefix of the right page's first key
//! that is greater than the left page's last key; halves of a split or redistribution are each at
//! least a quarter full (the record limits in `constants.rs` guarantee it).

use super::page::{self, LeafRecord, PageId, PageType};
use super::{PutOutcome, Result, Tree};
use crate::constants::{page_usable_size, SLOT_SIZE, TREE_HEIGHT_MAX};
use crate::storage::Storage;

/// The writable path of an operation: page ids from the root down, and the child index taken at
/// each branch (`child_indexes[d]` is the index in `ids[d]` of `ids[d + 1]`).
struct Path {
    ids: Vec<PageId>,
    child_indexes: Vec<usize>,
}

/// Two adjacent pages of one level being split, merged or redistributed.
#[derive(Debug, Clone, Copy)]
struct Pair {
    left: PageId,
    right: PageId,
    page_type: PageType,
    level: u16,
    /// The left page's `child0` (branches only).
    child0: PageId,
}

/// The shortest prefix of `right` that is greater than `left` (given `left < right`).
fn shortest_separator(left: &[u8], right: &[u8]) -> Vec<u8> {
    assert!(left < right, "separator between unordered keys");
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    right[..=common].to_vec()
}

/// Where to cut `records` (sizes include slots) so both halves fit and are as even as possible.
/// For a branch the record at the cut moves up to the parent and belongs to neither half.
fn split_point(records: &[Vec<u8>], usable: usize, page_type: PageType) -> usize {
    let sizes: Vec<usize> = records.iter().map(|r| r.len() + SLOT_SIZE).collect();
    let total: usize = sizes.iter().sum();
    let promoted = usize::from(page_type == PageType::Branch);
    let mut best: Option<(usize, usize)> = None;
    let mut left = 0usize;
    // Both halves keep at least one record; a branch also keeps one for the parent.
    let last_cut = records.len() - 1 - promoted;
    for cut in 1..=last_cut {
        left += sizes[cut - 1];
        let right = total - left - if promoted == 1 { sizes[cut] } else { 0 };
        if left <= usable && right <= usable {
            let imbalance = left.abs_diff(right);
            if best.is_none_or(|(_, b)| imbalance < b) {
                best = Some((cut, imbalance));
            }
        }
    }
    best.expect("records of bounded size always split into two pages")
        .0
}

fn is_underflow(buf: &[u8]) -> bool {
    page::used_bytes(buf) < page_usable_size(buf.len()) / 4
}

impl<F: Storage> Tree<F> {
    /// Makes the path to `key` writable and pins it.
    fn descend_for_write(&mut self, key: &[u8]) -> Result<Path> {
        let mut path = Path {
            ids: Vec::with_capacity(self.height),
            child_indexes: Vec::new(),
        };
        let root = self.pager.make_writable(self.root)?;
        self.root = root;
        let mut id = root;
        for depth in 0..self.height {
            self.pager.pin(id)?;
            let page = self.read_node(id, depth)?;
            path.ids.push(id);
            if page::is_leaf(page) {
                return Ok(path);
            }
            let index = page::branch_child_index(page, key);
            let child = page::branch_child(page, index);
            let writable = self.pager.make_writable(child)?;
            if writable != child {
                page::set_branch_child(self.pager.page_mut(id)?, index, writable);
            }
            path.child_indexes.push(index);
            id = writable;
        }
        Err(self.corrupt(format!("no leaf within the tree height {}", self.height)))
    }

    /// Stores the record; `keep_version` re-stores a key under the version it has (a value-log
    /// move), otherwise the key gets the next version.
    pub(super) fn put_inner(
        &mut self,
        key: &[u8],
        kind: u8,
        value: &[u8],
        expiry_ms: u64,
        keep_version: Option<u64>,
    ) -> Result<PutOutcome> {
        let path = self.descend_for_write(key)?;
        let leaf = *path.ids.last().expect("path ends at a leaf");
        let version = keep_version.unwrap_or_else(|| {
            self.version_last += 1;
            self.version_last
        });
        // The record is encoded into the tree's reused buffer; only a split keeps it.
        let mut rec = std::mem::take(&mut self.record_scratch);
        LeafRecord {
            kind,
            key,
            value,
            expiry_ms,
            version,
        }
        .encode_into(&mut rec);
        let buf = self.pager.page_mut(leaf)?;
        let (inserted, index) = match page::search(buf, key) {
            Ok(index) => {
                if page::replace_record(buf, index, &rec) {
                    // Same size, same place: nothing moves, the page's fill is unchanged.
                    self.record_scratch = rec;
                    return Ok(PutOutcome {
                        inserted: false,
                        version,
                    });
                }
                page::remove_record(buf, index);
                (false, index)
            }
            Err(index) => (true, index),
        };
        if page::insert_record(buf, index, &rec) {
            self.record_scratch = rec;
            if !inserted && self.height > 1 && is_underflow(buf) {
                self.rebalance(&path)?;
            }
        } else {
            self.split(&path, path.ids.len() - 1, index, rec)?;
        }
        self.key_count += u64::from(inserted);
        Ok(PutOutcome { inserted, version })
    }

    pub(super) fn delete_inner(&mut self, key: &[u8]) -> Result<()> {
        let path = self.descend_for_write(key)?;
        let leaf = *path.ids.last().expect("path ends at a leaf");
        let buf = self.pager.page_mut(leaf)?;
        let index = page::search(buf, key).expect("delete checked the key exists");
        page::remove_record(buf, index);
        self.key_count -= 1;
        self.rebalance(&path)
    }

    /// Splits `path.ids[depth]` while inserting raw record `rec` at `index`.
    fn split(&mut self, path: &Path, depth: usize, index: usize, rec: Vec<u8>) -> Result<()> {
        let id = path.ids[depth];
        let buf = self.pager.page(id)?;
        let (page_type, level) = (page::page_type(buf), page::level(buf));
        let child0 = if page_type == PageType::Branch {
            page::branch_child(buf, 0)
        } else {
            0
        };
        let mut records: Vec<Vec<u8>> = (0..page::count(buf))
            .map(|i| page::record(buf, i).to_vec())
            .collect();
        records.insert(index, rec);
        let usable = page_usable_size(buf.len());
        let cut = split_point(&records, usable, page_type);
        let right = self.pager.new_page(page_type, level)?;
        self.counters.splits += 1;
        let pair = Pair {
            left: id,
            right,
            page_type,
            level,
            child0,
        };
        let separator = self.distribute(&pair, &records, cut)?;
        self.insert_separator(path, depth, &separator, right)
    }

    /// Adds `(separator, right)` to the parent of `path.ids[depth]`, just after it.
    fn insert_separator(
        &mut self,
        path: &Path,
        depth: usize,
        separator: &[u8],
        right: PageId,
    ) -> Result<()> {
        let rec = page::branch_record(right, separator);
        if depth == 0 {
            assert!(
                self.height < TREE_HEIGHT_MAX,
                "tree height {} reached TREE_HEIGHT_MAX",
                self.height
            );
            let level = u16::try_from(self.height).expect("height fits u16");
            let root = self.pager.new_page(PageType::Branch, level)?;
            let buf = self.pager.page_mut(root)?;
            page::set_branch_child(buf, 0, path.ids[0]);
            assert!(
                page::insert_record(buf, 0, &rec),
                "a new root holds one separator"
            );
            self.root = root;
            self.height += 1;
            return Ok(());
        }
        let parent = path.ids[depth - 1];
        let index = path.child_indexes[depth - 1];
        if !page::insert_record(self.pager.page_mut(parent)?, index, &rec) {
            self.split(path, depth - 1, index, rec)?;
        }
        Ok(())
    }

    /// Restores the fill factor from the leaf of `path` upward, then shrinks a one-child root.
    fn rebalance(&mut self, path: &Path) -> Result<()> {
        for depth in (1..path.ids.len()).rev() {
            if !is_underflow(self.pager.page(path.ids[depth])?) {
                break;
            }
            if !self.merge_or_redistribute(path, depth)? {
                break;
            }
        }
        while self.height > 1 {
            let buf = self.pager.page(self.root)?;
            if page::count(buf) > 0 {
                break;
            }
            let child = page::branch_child(buf, 0);
            self.pager.free_page(self.root);
            self.root = child;
            self.height -= 1;
            self.counters.root_collapses += 1;
        }
        Ok(())
    }

    /// Fixes the underflow of `path.ids[depth]` with a sibling. Returns whether the parent lost a
    /// separator (a merge), so it may underflow in turn.
    fn merge_or_redistribute(&mut self, path: &Path, depth: usize) -> Result<bool> {
        let parent = path.ids[depth - 1];
        let index = path.child_indexes[depth - 1];
        let left_index = if index > 0 { index - 1 } else { index };
        let sibling_index = if index > 0 { index - 1 } else { index + 1 };
        let parent_buf = self.pager.page(parent)?;
        assert!(
            sibling_index < page::branch_children(parent_buf),
            "a non-root page has a sibling"
        );
        let sibling = page::branch_child(parent_buf, sibling_index);
        let separator = page::key(parent_buf, left_index).to_vec();
        let writable = self.pager.make_writable(sibling)?;
        if writable != sibling {
            page::set_branch_child(self.pager.page_mut(parent)?, sibling_index, writable);
        }
        let parent_buf = self.pager.page(parent)?;
        let left = page::branch_child(parent_buf, left_index);
        let right = page::branch_child(parent_buf, left_index + 1);
        let (records, page_type, level, child0) = self.gather_pair(left, right, &separator)?;
        let usable = page_usable_size(self.pager.page_size());
        let total: usize = records.iter().map(|r| r.len() + SLOT_SIZE).sum();
        if total <= usable {
            page::rebuild(
                self.pager.page_mut(left)?,
                page_type,
                level,
                left,
                child0,
                records.iter().map(Vec::as_slice),
            );
            page::remove_record(self.pager.page_mut(parent)?, left_index);
            self.pager.free_page(right);
            self.counters.merges += 1;
            return Ok(true);
        }
        let cut = split_point(&records, usable, page_type);
        self.counters.redistributions += 1;
        let pair = Pair {
            left,
            right,
            page_type,
            level,
            child0,
        };
        let new_separator = self.distribute(&pair, &records, cut)?;
        page::remove_record(self.pager.page_mut(parent)?, left_index);
        let rec = page::branch_record(right, &new_separator);
        if !page::insert_record(self.pager.page_mut(parent)?, left_index, &rec) {
            self.split(path, depth - 1, left_index, rec)?;
            return Ok(false);
        }
        // The parent kept its separator count but its size changed; check it like a merge would.
        Ok(true)
    }

    /// Rebuilds the pair from `records` cut at `cut` and returns the separator between them. For
    /// a branch the record at the cut moves up: its key is the separator and its child becomes
    /// the right page's `child0`.
    fn distribute(&mut self, pair: &Pair, records: &[Vec<u8>], cut: usize) -> Result<Vec<u8>> {
        let Pair {
            left,
            right,
            page_type,
            level,
            child0,
        } = *pair;
        let (separator, right_child0, right_from) = match page_type {
            PageType::Leaf => {
                let left_last = page::record_key(page_type, &records[cut - 1]);
                let right_first = page::record_key(page_type, &records[cut]);
                (shortest_separator(left_last, right_first), 0, cut)
            }
            PageType::Branch => (
                page::record_key(page_type, &records[cut]).to_vec(),
                page::branch_record_child(&records[cut]),
                cut + 1,
            ),
        };
        let left_records = records[..cut].iter().map(Vec::as_slice);
        page::rebuild(
            self.pager.page_mut(left)?,
            page_type,
            level,
            left,
            child0,
            left_records,
        );
        let right_records = records[right_from..].iter().map(Vec::as_slice);
        page::rebuild(
            self.pager.page_mut(right)?,
            page_type,
            level,
            right,
            right_child0,
            right_records,
        );
        Ok(separator)
    }

    /// The records of two adjacent siblings in order; for branches the parent's separator comes
    /// down between them, pointing at the right page's first child.
    #[allow(clippy::type_complexity)]
    fn gather_pair(
        &mut self,
        left: PageId,
        right: PageId,
        separator: &[u8],
    ) -> Result<(Vec<Vec<u8>>, PageType, u16, PageId)> {
        let right_buf = self.pager.page(right)?;
        let page_type = page::page_type(right_buf);
        let mut tail: Vec<Vec<u8>> = Vec::with_capacity(page::count(right_buf) + 1);
        if page_type == PageType::Branch {
            tail.push(page::branch_record(
                page::branch_child(right_buf, 0),
                separator,
            ));
        }
        tail.extend((0..page::count(right_buf)).map(|i| page::record(right_buf, i).to_vec()));
        let left_buf = self.pager.page(left)?;
        let level = page::level(left_buf);
        let child0 = if page_type == PageType::Branch {
            page::branch_child(left_buf, 0)
        } else {
            0
        };
        let mut records: Vec<Vec<u8>> = (0..page::count(left_buf))
            .map(|i| page::record(left_buf, i).to_vec())
            .collect();
        records.extend(tail);
        Ok((records, page_type, level, child0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_short_and_between() {
        assert_eq!(shortest_separator(b"apple", b"banana"), b"b".to_vec());
        assert_eq!(shortest_separator(b"abc", b"abd"), b"abd".to_vec());
        assert_eq!(shortest_separator(b"ab", b"abc"), b"abc".to_vec());
        assert_eq!(shortest_separator(b"", b"\x00"), b"\x00".to_vec());
    }

    #[test]
    fn split_point_balances_and_fits() {
        let records: Vec<Vec<u8>> = (0..10).map(|i| vec![0u8; 100 + i * 10]).collect();
        let cut = split_point(&records, 800, PageType::Leaf);
        let left: usize = records[..cut].iter().map(|r| r.len() + SLOT_SIZE).sum();
        let right: usize = records[cut..].iter().map(|r| r.len() + SLOT_SIZE).sum();
        assert!(
            left <= 800 && right <= 800,
            "both halves fit: {left} {right}"
        );
        assert!(left.abs_diff(right) < 200);
        let cut = split_point(&records, 800, PageType::Branch);
        assert!(cut >= 1 && cut + 1 < records.len());
    }
}
