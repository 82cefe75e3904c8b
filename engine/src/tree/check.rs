//! `check_integrity`: the O(n) validator the simulator runs after every restart.
//!
//! It reads every reachable page (through the cache, so checksums of pages read from disk are
//! verified) and checks, per page: structure (the page validator, on a sealed copy for dirty
//! pages), level, key order, separator fences, the fill factor of non-root pages; and for the
//! whole file: no page reachable twice, the key count, and the page accounting — every id below the
//! high-water mark is exactly one of reachable, free, pending-free, and every cached page is
//! reachable or pending-free.

use super::page::{self, PageId};
use super::{Result, Tree, TreeError};
use crate::constants::page_usable_size;
use crate::storage::Storage;
use std::collections::HashSet;

/// Key fences a subtree must respect: `[low, high)`, unbounded when `None`.
#[derive(Clone)]
struct Fences {
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
}

impl<F: Storage> Tree<F> {
    /// Verifies the whole tree and the page accounting; the error names the first violation.
    pub fn check_integrity(&mut self) -> Result<()> {
        self.pager.check_usable()?;
        let mut reachable = HashSet::new();
        let mut keys = 0u64;
        let fences = Fences {
            low: None,
            high: None,
        };
        self.check_node(self.root, 0, &fences, &mut reachable, &mut keys)?;
        if keys != self.key_count {
            return Err(self.corrupt(format!(
                "{keys} keys in the leaves, key count says {}",
                self.key_count
            )));
        }
        self.check_accounting(&reachable)
    }

    fn check_node(
        &mut self,
        id: PageId,
        depth: usize,
        fences: &Fences,
        reachable: &mut HashSet<PageId>,
        keys: &mut u64,
    ) -> Result<()> {
        if !reachable.insert(id) {
            return Err(self.corrupt(format!("page {id} is reachable twice")));
        }
        let mut copy = self.read_node(id, depth)?.to_vec();
        page::seal(&mut copy);
        if let Err(detail) = page::validate(&copy, id) {
            return Err(self.corrupt(format!("page {id}: {detail}")));
        }
        let count = page::count(&copy);
        let used = page::used_bytes(&copy);
        if depth > 0 && (count == 0 || used < page_usable_size(copy.len()) / 4) {
            return Err(self.corrupt(format!(
                "non-root page {id} is under-full: {count} records, {used} bytes"
            )));
        }
        if depth == 0 && !page::is_leaf(&copy) && count == 0 {
            return Err(self.corrupt(format!("root branch {id} has a single child")));
        }
        for index in 0..count {
            let key = page::key(&copy, index);
            let above = fences.low.as_deref().is_none_or(|low| key >= low);
            let below = fences.high.as_deref().is_none_or(|high| key < high);
            if !above || !below {
                return Err(self.corrupt(format!(
                    "key {index} of page {id} lies outside its parent's fences"
                )));
            }
        }
        if page::is_leaf(&copy) {
            *keys += count as u64;
            return Ok(());
        }
        for child_index in 0..=count {
            let child_fences = Fences {
                low: if child_index == 0 {
                    fences.low.clone()
                } else {
                    Some(page::key(&copy, child_index - 1).to_vec())
                },
                high: if child_index == count {
                    fences.high.clone()
                } else {
                    Some(page::key(&copy, child_index).to_vec())
                },
            };
            let child = page::branch_child(&copy, child_index);
            self.check_node(child, depth + 1, &child_fences, reachable, keys)?;
        }
        Ok(())
    }

    fn check_accounting(&self, reachable: &HashSet<PageId>) -> Result<()> {
        let (free, pending, page_count) = self.pager.accounting();
        let mut seen: HashSet<PageId> = reachable.clone();
        for (what, ids) in [("free", &free), ("pending-free", &pending)] {
            for &id in ids {
                if id >= page_count {
                    return Err(self.corrupt(format!(
                        "{what} page {id} is beyond the page count {page_count}"
                    )));
                }
                if !seen.insert(id) {
                    return Err(self.corrupt(format!(
                        "{what} page {id} is also reachable or listed twice"
                    )));
                }
            }
        }
        if seen.len() as u64 != page_count {
            return Err(self.corrupt(format!(
                "{} reachable + {} free + {} pending = {} pages, but the high-water mark is {page_count} (leak)",
                reachable.len(),
                free.len(),
                pending.len(),
                seen.len()
            )));
        }
        let pending: HashSet<PageId> = pending.into_iter().collect();
        for id in self.pager.cached_ids() {
            if !reachable.contains(&id) && !pending.contains(&id) {
                return Err(TreeError::CorruptTree {
                    file: self.pager.path().to_string(),
                    detail: format!("cached page {id} is neither reachable nor pending-free"),
                });
            }
        }
        Ok(())
    }
}
