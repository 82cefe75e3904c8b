//! Value-log garbage collection, and the value log's accounting at open.
//!
//! A collection picks the segment with the highest garbage ratio at or above
//! `VlogConfig::gc_garbage_percent` (never the active segment, never one with unwritten data)
//! and reads it front to back in slices of `gc_slice_bytes`, at most one slice per
//! `gc_interval_ms`, from `Shard::poll`. For each record it finds, if the key still points at
//! exactly that record, the value is moved through the normal write path: appended to the
//! active segment, logged as a `Move` record (which redo applies only if the key still holds the
//! old pointer, and which keeps the key's version and expiry), and the leaf repointed. When the
//! scan reaches the end, the victim has no live bytes left and is retired at the current LSN R;
//! a checkpoint is requested, and once a checkpoint with LSN >= R is durable the file is deleted
//! (no tree a recovery can start from points into it, and no WAL record above that checkpoint
//! does). Every step is crash-safe: until the deletion, the victim is intact, and a move is a
//! WAL record like any other (held back until the moved value is durable).
//!
//! Values of prepared, undecided transactions are live but in no leaf: their segments are
//! *pinned* (`txn.rs`) and never picked as victims, so a collection never meets a live record it
//! cannot move; once the transaction's outcome is applied the pin goes and the values are an
//! ordinary leaf's (commit) or garbage (abort).
//!
//! Accounting is rebuilt at open, not persisted: a walk of every leaf after WAL redo counts the
//! live bytes of each segment, plus the values of in-doubt transactions (rebuilt from their
//! retained Prepare records), and refuses to start if a pointer names a missing or damaged
//! segment. The walk reads every leaf page, so it runs only when the shard has used the value
//! log. `check_integrity` repeats it and compares with the running counts.

use super::record::Change;
use super::vlog::{Pointer, ValueLog};
use super::{Shard, ShardError};
use crate::constants::VALUE_KIND_POINTER;
use crate::storage::{Storage, Vfs};
use crate::tree::Tree;
use crate::wal::Lsn;
use std::collections::BTreeMap;
use std::ops::Bound;

/// The collector's state: the victim being read and when the next slice may run.
#[derive(Debug, Default)]
pub(super) struct Collector {
    victim: Option<Victim>,
    next_slice_ns: u64,
}

#[derive(Debug)]
struct Victim {
    segment: u64,
    /// Where the scan continues (a record or block boundary).
    position: u64,
    moved_bytes: u64,
}

/// Live bytes per segment, with the first key seen pointing there.
type LiveBySegment = BTreeMap<u64, (u64, Vec<u8>)>;

/// Every (key, pointer) in the tree.
type KeyPointers = Vec<(Vec<u8>, Pointer)>;

/// Every value-log pointer in `tree`: per segment (live bytes, a key), and every (key, pointer).
fn pointers_by_segment<F: Storage>(
    tree: &mut Tree<F>,
) -> Result<(LiveBySegment, KeyPointers), String> {
    let mut by_segment: BTreeMap<u64, (u64, Vec<u8>)> = BTreeMap::new();
    let mut pointers = Vec::new();
    let mut malformed = None;
    let result = tree.scan_visit(
        Bound::Unbounded,
        Bound::Unbounded,
        usize::MAX,
        false,
        None,
        |key, value| {
            if value.kind != VALUE_KIND_POINTER {
                return;
            }
            match Pointer::decode(value.bytes) {
                Some(pointer) => {
                    let entry = by_segment
                        .entry(pointer.segment)
                        .or_insert_with(|| (0, key.to_vec()));
                    entry.0 += pointer.record_size(key.len());
                    pointers.push((key.to_vec(), pointer));
                }
                None => {
                    malformed.get_or_insert_with(|| key.to_vec());
                }
            }
        },
    );
    result.map_err(|e| e.to_string())?;
    if let Some(key) = malformed {
        return Err(format!(
            "key {:?} holds a malformed value-log pointer",
            String::from_utf8_lossy(&key)
        ));
    }
    Ok((by_segment, pointers))
}

/// Counts the live bytes of every segment from the tree's pointers; refuses pointers into
/// missing or damaged segments.
pub(super) fn rebuild_accounting<F: Storage, V: Vfs>(
    tree: &mut Tree<F>,
    vlog: &mut ValueLog<V>,
    damaged: &[(u64, String)],
) -> Result<(), String> {
    let (by_segment, pointers) = pointers_by_segment(tree)?;
    for (id, detail) in damaged {
        if let Some((_, key)) = by_segment.get(id) {
            return Err(format!(
                "key {:?} points into a value-log segment that is damaged: {detail}",
                String::from_utf8_lossy(key)
            ));
        }
        tracing::warn!(%detail, "value-log segment with a damaged header and no live values: it will be deleted");
    }
    for (key, pointer) in &pointers {
        vlog.adopt(key, pointer)?;
    }
    Ok(())
}

/// Counts the values of in-doubt transactions (`pointers`: their keys and pointers) live at
/// open; refuses pointers into missing or damaged segments.
pub(super) fn adopt_prepared<'a, V: Vfs>(
    vlog: &mut ValueLog<V>,
    damaged: &[(u64, String)],
    pointers: impl Iterator<Item = (&'a [u8], &'a Pointer)>,
) -> Result<(), String> {
    for (key, pointer) in pointers {
        if let Some((_, detail)) = damaged.iter().find(|(id, _)| *id == pointer.segment) {
            return Err(format!(
                "an in-doubt transaction's value of key {:?} is in a value-log segment that is \
                 damaged: {detail}",
                String::from_utf8_lossy(key)
            ));
        }
        vlog.adopt(key, pointer)
            .map_err(|detail| format!("an in-doubt transaction's value: {detail}"))?;
    }
    Ok(())
}

impl<V: Vfs + Clone> Shard<V> {
    /// The segment GC should collect next: never one holding a prepared transaction's values.
    fn gc_pick_victim(&self) -> Option<u64> {
        let txn = &self.txn;
        self.vlog
            .pick_victim_where(|segment| !txn.is_pinned(segment))
    }

    /// When the next GC slice is due, if there is work.
    pub(super) fn gc_deadline_ns(&self) -> Option<u64> {
        let work = self.gc.victim.is_some() || self.gc_pick_victim().is_some();
        work.then_some(self.gc.next_slice_ns)
    }

    /// One bounded slice of garbage collection, at most every `gc_interval_ms`.
    pub(super) fn gc_step(&mut self) -> Result<(), ShardError> {
        let now = self.clock.monotonic_ns();
        if now < self.gc.next_slice_ns {
            return Ok(());
        }
        if self.gc.victim.is_none() {
            let Some(segment) = self.gc_pick_victim() else {
                return Ok(());
            };
            tracing::debug!(
                shard = self.config.shard_id(),
                segment,
                "value-log GC starts"
            );
            self.gc.victim = Some(Victim {
                segment,
                position: 0,
                moved_bytes: 0,
            });
        }
        let interval_ns = self.config.vlog.gc_interval_ms.saturating_mul(1_000_000);
        self.gc.next_slice_ns = now.saturating_add(interval_ns);
        let victim = self.gc.victim.as_ref().expect("a victim");
        let (segment, position) = (victim.segment, victim.position);
        // Prepared values are appended only to the active segment, which is never a victim.
        assert!(
            !self.txn.is_pinned(segment),
            "GC victim {segment} holds a prepared transaction's values"
        );
        // A segment with nothing live left needs no reading: it only waits to be deleted.
        let (records, next, ended) = if self.vlog.live_bytes(segment) == 0 {
            (Vec::new(), position, true)
        } else {
            let result = self.vlog.scan_segment(segment, position);
            result.map_err(|error| self.classify(ShardError::from(error)))?
        };
        for record in records {
            let still_here = self.pointer_of(&record.key)? == Some(record.pointer);
            if !still_here {
                continue;
            }
            match self.move_value(&record.key, &record.value, &record.pointer) {
                Ok(()) => {
                    let size = record.pointer.record_size(record.key.len());
                    self.gc.victim.as_mut().expect("victim").moved_bytes += size;
                    self.vlog.note_moved(size);
                }
                // The logs are full: resume at this record in a later slice.
                Err(ShardError::Busy { .. } | ShardError::NoSpace { .. }) => {
                    self.gc.victim.as_mut().expect("victim").position = record.pointer.offset;
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
        let victim = self.gc.victim.as_mut().expect("victim");
        victim.position = next;
        if ended {
            let victim = self.gc.victim.take().expect("victim");
            let lsn: Lsn = self.wal.next_lsn() - 1;
            self.vlog.finish_collection(segment, lsn);
            tracing::debug!(
                shard = self.config.shard_id(),
                segment,
                moved_bytes = victim.moved_bytes,
                "value-log GC finished a segment"
            );
            // The victim's file goes with the next checkpoint: ask for one now.
            self.checkpoint_requested = true;
        }
        Ok(())
    }

    /// Moves the value of `key` from `from` to the active segment through the write path.
    fn move_value(&mut self, key: &[u8], value: &[u8], from: &Pointer) -> Result<(), ShardError> {
        let result = self.vlog.append(key, value, self.wal.next_lsn());
        let to = result.map_err(|error| self.classify(ShardError::from(error)))?;
        let (from_bytes, to_bytes) = (from.encode(), to.encode());
        let logged = self.log(Change::Move {
            key,
            from: from_bytes,
            to: to_bytes,
        });
        if let Err(error) = logged {
            self.vlog.unappend(&to, key.len());
            return Err(error);
        }
        let holds_from = |value: crate::tree::ValueRef<'_>| {
            value.kind == VALUE_KIND_POINTER && value.bytes == from_bytes
        };
        let result = self
            .tree
            .replace_if(key, holds_from, VALUE_KIND_POINTER, &to_bytes);
        let moved = self.check_tree(result)?;
        assert!(
            moved,
            "the key held the old pointer when the move was logged"
        );
        self.vlog.release(from, key.len());
        self.vlog.moved(from, &to);
        Ok(())
    }

    /// Compares the value log's running live-byte counts with a fresh walk of the tree.
    pub(super) fn check_vlog_accounting(&mut self) -> Result<(), ShardError> {
        let walked = pointers_by_segment(&mut self.tree);
        let (mut by_segment, _) =
            walked.map_err(|detail| self.classify(ShardError::Failed { detail }))?;
        for (key, pointer) in self.txn.prepared_pointers() {
            let entry = by_segment
                .entry(pointer.segment)
                .or_insert_with(|| (0, key.to_vec()));
            entry.0 += pointer.record_size(key.len());
        }
        let ids: Vec<u64> = self.vlog.segments.keys().copied().collect();
        for id in ids.iter().chain(by_segment.keys()) {
            let walked = by_segment.get(id).map_or(0, |(live, _)| *live);
            let counted = self.vlog.live_bytes(*id);
            if walked != counted || (walked > 0 && !self.vlog.segments.contains_key(id)) {
                let detail = format!(
                    "value-log segment {id}: the tree and prepared transactions point at {walked} \
                     bytes, the count says {counted}"
                );
                return Err(ShardError::Failed { detail });
            }
        }
        Ok(())
    }
}
