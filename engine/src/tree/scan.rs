//! Range scans: forward or reverse, inclusive, exclusive or unbounded ends, a limit, and a
//! resumable cursor.
//!
//! The cursor is a continuation key (the last key returned), not a position in a page: pages move
//! under copy-on-write and splits, keys do not. Resuming with it narrows the range to exclude that
//! key, so a scan resumed after any number of writes returns each key still in range at most once
//! and never skips one that stayed.
//!
//! The walk descends only into children whose key range meets the scan range, visits them in
//! order (or reverse order), and stops at the limit; it copies records out, so nothing stays
//! borrowed from the cache across page loads.

use super::page::{self, PageId};
use super::{Result, Tree, Value};
use crate::storage::Storage;
use std::ops::Bound;

/// Entries a scan reserves room for up front (more grow the vector as usual).
const SCAN_PREALLOCATE_MAX: usize = 4096;

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub key: Vec<u8>,
    pub value: Value,
}

/// One page of scan results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<ScanEntry>,
    /// Present when the limit was reached: pass it back to continue after the last entry.
    pub continuation: Option<Vec<u8>>,
}

/// The bounds of a scan, borrowed.
#[derive(Debug, Clone, Copy)]
struct Range<'a> {
    start: Bound<&'a [u8]>,
    end: Bound<&'a [u8]>,
}

impl Range<'_> {
    fn above_start(&self, key: &[u8]) -> bool {
        match self.start {
            Bound::Included(s) => key >= s,
            Bound::Excluded(s) => key > s,
            Bound::Unbounded => true,
        }
    }

    fn below_end(&self, key: &[u8]) -> bool {
        match self.end {
            Bound::Included(e) => key <= e,
            Bound::Excluded(e) => key < e,
            Bound::Unbounded => true,
        }
    }
}

fn bound_key(bound: Bound<&[u8]>) -> Option<&[u8]> {
    match bound {
        Bound::Included(key) | Bound::Excluded(key) => Some(key),
        Bound::Unbounded => None,
    }
}

impl<F: Storage> Tree<F> {
    /// Up to `limit` entries with keys in `(start, end)`, ascending (or descending if `reverse`),
    /// resuming after `continuation` when given (the value a previous page returned).
    pub fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
        continuation: Option<&[u8]>,
    ) -> Result<ScanPage> {
        self.pager.check_usable()?;
        for key in [bound_key(start), bound_key(end), continuation]
            .into_iter()
            .flatten()
        {
            Self::check_key(key)?;
        }
        let mut range = Range { start, end };
        if let Some(after) = continuation {
            // Resume strictly past the last key returned.
            if reverse {
                range.end = Bound::Excluded(after);
            } else {
                range.start = Bound::Excluded(after);
            }
        }
        let mut entries = Vec::with_capacity(limit.min(SCAN_PREALLOCATE_MAX));
        if limit > 0 {
            self.scan_node(self.root, 0, range, reverse, limit, &mut entries)?;
        }
        let continuation = (limit > 0 && entries.len() == limit)
            .then(|| entries.last().map(|e: &ScanEntry| e.key.clone()))
            .flatten();
        Ok(ScanPage {
            entries,
            continuation,
        })
    }

    fn scan_node(
        &mut self,
        id: PageId,
        depth: usize,
        range: Range<'_>,
        reverse: bool,
        limit: usize,
        out: &mut Vec<ScanEntry>,
    ) -> Result<()> {
        let buf = self.read_node(id, depth)?;
        if page::is_leaf(buf) {
            scan_leaf(buf, range, reverse, limit, out);
            return Ok(());
        }
        let first = bound_key(range.start).map_or(0, |key| page::branch_child_index(buf, key));
        let last =
            bound_key(range.end).map_or(page::count(buf), |key| page::branch_child_index(buf, key));
        let mut children: Vec<PageId> = (first..=last.max(first))
            .map(|i| page::branch_child(buf, i))
            .collect();
        if reverse {
            children.reverse();
        }
        for child in children {
            if out.len() >= limit {
                break;
            }
            self.scan_node(child, depth + 1, range, reverse, limit, out)?;
        }
        Ok(())
    }
}

fn scan_leaf(buf: &[u8], range: Range<'_>, reverse: bool, limit: usize, out: &mut Vec<ScanEntry>) {
    let begin = match range.start {
        Bound::Included(key) | Bound::Excluded(key) => page::search(buf, key).unwrap_or_else(|i| i),
        Bound::Unbounded => 0,
    };
    let end = match range.end {
        Bound::Included(key) | Bound::Excluded(key) => {
            page::search(buf, key).map_or_else(|i| i, |i| i + 1)
        }
        Bound::Unbounded => page::count(buf),
    };
    let mut visit = |index: usize| {
        let rec = page::leaf_record(buf, index);
        if range.above_start(rec.key) && range.below_end(rec.key) && out.len() < limit {
            let value = Value {
                bytes: rec.value.to_vec(),
                expiry_ms: rec.expiry_ms,
                version: rec.version,
            };
            out.push(ScanEntry {
                key: rec.key.to_vec(),
                value,
            });
        }
    };
    if reverse {
        (begin..end.max(begin)).rev().for_each(&mut visit);
    } else {
        (begin..end.max(begin)).for_each(&mut visit);
    }
}
