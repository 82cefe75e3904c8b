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

/// A value borrowed from a page during [`Tree::scan_visit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRef<'a> {
    /// `VALUE_KIND_INLINE`: `bytes` is the value; `VALUE_KIND_POINTER`: `bytes` is an encoded
    /// value-log pointer, which the shard resolves.
    pub kind: u8,
    pub bytes: &'a [u8],
    pub expiry_ms: u64,
    pub version: u64,
}

/// The state of one scan walk: bounds, direction, how many rows so far, and the visitor.
struct Walk<'r, 'v> {
    range: Range<'r>,
    reverse: bool,
    limit: usize,
    seen: usize,
    /// The key of the row that reached the limit: the continuation.
    last_key: Option<Vec<u8>>,
    visit: &'v mut dyn FnMut(&[u8], ValueRef<'_>),
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
        let mut entries = Vec::with_capacity(limit.min(SCAN_PREALLOCATE_MAX));
        let continuation =
            self.scan_visit(start, end, limit, reverse, continuation, |key, value| {
                let value = Value {
                    bytes: value.bytes.to_vec(),
                    expiry_ms: value.expiry_ms,
                    version: value.version,
                };
                entries.push(ScanEntry {
                    key: key.to_vec(),
                    value,
                });
            })?;
        Ok(ScanPage {
            entries,
            continuation,
        })
    }

    /// Like [`Tree::scan`], but hands each row to `visit` as slices borrowed from the page (no
    /// copies: what a server encoding rows straight into a response wants). Returns the
    /// continuation: the last key visited when the limit was reached.
    pub fn scan_visit(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
        continuation: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], ValueRef<'_>),
    ) -> Result<Option<Vec<u8>>> {
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
        let mut walk = Walk {
            range,
            reverse,
            limit,
            seen: 0,
            last_key: None,
            visit: &mut visit,
        };
        if limit > 0 {
            self.scan_node(self.root, 0, &mut walk)?;
        }
        Ok(walk.last_key)
    }

    fn scan_node(&mut self, id: PageId, depth: usize, walk: &mut Walk<'_, '_>) -> Result<()> {
        let buf = self.read_node(id, depth)?;
        if page::is_leaf(buf) {
            scan_leaf(buf, walk);
            return Ok(());
        }
        let range = walk.range;
        let first = bound_key(range.start).map_or(0, |key| page::branch_child_index(buf, key));
        let last =
            bound_key(range.end).map_or(page::count(buf), |key| page::branch_child_index(buf, key));
        let mut children: Vec<PageId> = (first..=last.max(first))
            .map(|i| page::branch_child(buf, i))
            .collect();
        if walk.reverse {
            children.reverse();
        }
        for child in children {
            if walk.seen >= walk.limit {
                break;
            }
            self.scan_node(child, depth + 1, walk)?;
        }
        Ok(())
    }
}

fn scan_leaf(buf: &[u8], walk: &mut Walk<'_, '_>) {
    // Exact index bounds from two binary searches, so rows need no per-row range check.
    let begin = match walk.range.start {
        Bound::Included(key) => page::search(buf, key).unwrap_or_else(|i| i),
        Bound::Excluded(key) => page::search(buf, key).map_or_else(|i| i, |i| i + 1),
        Bound::Unbounded => 0,
    };
    let end = match walk.range.end {
        Bound::Included(key) => page::search(buf, key).map_or_else(|i| i, |i| i + 1),
        Bound::Excluded(key) => page::search(buf, key).unwrap_or_else(|i| i),
        Bound::Unbounded => page::count(buf),
    };
    let mut visit_index = |index: usize| {
        if walk.seen >= walk.limit {
            return;
        }
        let rec = page::leaf_record(buf, index);
        debug_assert!(walk.range.above_start(rec.key) && walk.range.below_end(rec.key));
        let value = ValueRef {
            kind: rec.kind,
            bytes: rec.value,
            expiry_ms: rec.expiry_ms,
            version: rec.version,
        };
        (walk.visit)(rec.key, value);
        walk.seen += 1;
        if walk.seen == walk.limit {
            walk.last_key = Some(rec.key.to_vec());
        }
    };
    if walk.reverse {
        (begin..end.max(begin)).rev().for_each(&mut visit_index);
    } else {
        (begin..end.max(begin)).for_each(&mut visit_index);
    }
}
