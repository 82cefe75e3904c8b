//! Asynchronous reads of value-log records, for GETs that miss the value cache.
//!
//! [`ValueLog::start_read`] answers at once from memory (a record not yet written) or from the
//! cache; otherwise it submits one aligned read of the blocks the record spans, tagged
//! `TAG_READ_BASE + ticket`, and returns the ticket. [`ValueLog::poll`] reaps the completions of
//! every segment with reads in flight (alongside the flush's), checks each record exactly as the
//! synchronous [`ValueLog::read`] does (key, size and checksum equal to the pointer's; anything
//! else is `Corrupt` naming the file and offset, never served), caches verified values, and
//! queues the result for [`ValueLog::take_reads`].
//!
//! A pointer names an immutable record: overwrites, deletes and GC moves make it garbage but do
//! not change its bytes, so a read started before them returns the value the key held at the
//! start. Only deleting the segment would; so a segment with reads in flight is *pinned*:
//! [`ValueLog::delete_retired`] skips it and remembers the checkpoint LSN, and the deletion
//! happens in the `poll` that reaps its last read.
//!
//! Invariants:
//! - at most `VLOG_READS_IN_FLIGHT_MAX` reads and `VLOG_READ_BYTES_IN_FLIGHT_MAX` bytes of read
//!   buffers are in flight; past either, `start_read` reads synchronously;
//! - `pins[s]` is the number of reads in flight on segment `s`, and a pinned segment exists;
//! - every ticket handed out is answered exactly once by `take_reads`, or given back by
//!   `abandon_reads` (after the shard failed).

use super::{align_down, align_up, check_record, segment_to_read, Pointer, ValueLog, VlogError};
use crate::constants::{VLOG_READS_IN_FLIGHT_MAX, VLOG_READ_BYTES_IN_FLIGHT_MAX};
use crate::storage::{AlignedBuf, Completion, IoErrorKind, Op, Storage, Vfs};
use crate::wal::Lsn;
use std::collections::BTreeMap;

/// Tags of asynchronous reads start here: far above the flush's tags, below `BLOCKING_TAG`.
pub(super) const TAG_READ_BASE: u64 = 1 << 40;

/// One read in flight.
#[derive(Debug)]
pub(super) struct PendingRead {
    key: Vec<u8>,
    pointer: Pointer,
    /// The file offset the read starts at (the block holding the record's start).
    start: u64,
    len: usize,
}

/// The asynchronous reads of one value log.
#[derive(Debug, Default)]
pub(super) struct Reads {
    next_ticket: u64,
    pending: BTreeMap<u64, PendingRead>,
    /// Reads in flight per segment: a pinned segment is not deleted.
    pins: BTreeMap<u64, usize>,
    bytes_in_flight: usize,
    /// Results reaped and not yet taken.
    done: Vec<(u64, Result<Vec<u8>, VlogError>)>,
    /// The newest checkpoint LSN a deletion was deferred at, for pinned retired segments.
    deletion_deferred: Option<Lsn>,
    /// `abandon_reads` forgot reads still in flight: their completions may still arrive.
    abandoned: bool,
}

impl Reads {
    pub(super) fn pinned(&self, segment: u64) -> bool {
        self.pins.contains_key(&segment)
    }

    pub(super) fn defer_deletion(&mut self, lsn: Lsn) {
        self.deletion_deferred = Some(self.deletion_deferred.map_or(lsn, |old| old.max(lsn)));
    }

    /// Segments with reads in flight.
    pub(super) fn segments(&self) -> impl Iterator<Item = u64> + '_ {
        self.pins.keys().copied()
    }

    fn unpin(&mut self, segment: u64) {
        let count = self
            .pins
            .get_mut(&segment)
            .expect("a read pins its segment");
        *count -= 1;
        if *count == 0 {
            self.pins.remove(&segment);
        }
    }
}

/// What [`ValueLog::start_read`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStart {
    /// The value, at once (from memory, the cache, or a synchronous read past the limits).
    Ready(Vec<u8>),
    /// A read is in flight: its result comes from [`ValueLog::take_reads`] under this ticket.
    Pending(u64),
}

impl<V: Vfs> ValueLog<V> {
    /// Starts reading the value `pointer` (stored under `key`) names; see the module doc.
    pub fn start_read(&mut self, key: &[u8], pointer: &Pointer) -> Result<ReadStart, VlogError> {
        if let Some(result) = self.read_from_memory(key, pointer) {
            return result.map(ReadStart::Ready);
        }
        if let Some(value) = self.cache.get(key, pointer) {
            return Ok(ReadStart::Ready(value.to_vec()));
        }
        let size = pointer.record_size(key.len());
        let start = align_down(pointer.offset);
        let len = usize::try_from(align_up(pointer.offset + size) - start).expect("fits");
        let reads = &self.reads;
        if reads.pending.len() >= VLOG_READS_IN_FLIGHT_MAX
            || reads.bytes_in_flight + len > VLOG_READ_BYTES_IN_FLIGHT_MAX
        {
            // `read` counts the miss itself.
            self.stats.reads_async_refused += 1;
            return self.read(key, pointer).map(ReadStart::Ready);
        }
        self.cache.note_miss();
        let segment = segment_to_read(&mut self.segments, pointer.segment)?;
        let ticket = self.reads.next_ticket;
        let buf = AlignedBuf::zeroed(len);
        let op = Op::Read { offset: start, buf };
        match segment.file.submit(TAG_READ_BASE + ticket, op) {
            Ok(()) => {}
            // The submission queue is full: read synchronously, as past the limits.
            Err(error) if error.kind == IoErrorKind::QueueFull => {
                return self.read(key, pointer).map(ReadStart::Ready);
            }
            Err(error) => return Err(VlogError::Io(error)),
        }
        let reads = &mut self.reads;
        reads.next_ticket += 1;
        self.stats.reads_async += 1;
        reads.bytes_in_flight += len;
        *reads.pins.entry(pointer.segment).or_insert(0) += 1;
        reads.pending.insert(
            ticket,
            PendingRead {
                key: key.to_vec(),
                pointer: *pointer,
                start,
                len,
            },
        );
        Ok(ReadStart::Pending(ticket))
    }

    /// Reads in flight.
    pub fn reads_in_flight(&self) -> usize {
        self.reads.pending.len()
    }

    /// Moves the results of finished reads (ticket, value or error) into `out`.
    pub fn take_reads(&mut self, out: &mut Vec<(u64, Result<Vec<u8>, VlogError>)>) {
        out.append(&mut self.reads.done);
    }

    /// Forgets every read not yet taken (the shard failed and answers them with its error);
    /// returns their tickets. Their operations finish inside the Storage, which owns the buffers.
    pub fn abandon_reads(&mut self) -> Vec<u64> {
        let reads = std::mem::take(&mut self.reads);
        let mut tickets: Vec<u64> = reads.pending.into_keys().collect();
        tickets.extend(reads.done.into_iter().map(|(ticket, _)| ticket));
        self.reads.next_ticket = reads.next_ticket;
        self.reads.abandoned = true;
        tickets
    }

    /// Handles the completion of the read with `tag`.
    pub(super) fn on_read_completion(&mut self, completion: Completion) {
        let ticket = completion.user_data - TAG_READ_BASE;
        let Some(read) = self.reads.pending.remove(&ticket) else {
            assert!(
                self.reads.abandoned,
                "read completion {ticket} of no pending read"
            );
            return;
        };
        self.reads.bytes_in_flight -= read.len;
        self.reads.unpin(read.pointer.segment);
        let result = completion.result.map_err(VlogError::Io).and_then(|_| {
            self.stats.reads += 1;
            let buf = completion
                .buf
                .expect("a read completion carries its buffer");
            assert_eq!(buf.len(), read.len, "a read returns its whole buffer");
            let size = read.pointer.record_size(read.key.len()) as usize;
            let at = usize::try_from(read.pointer.offset - read.start).expect("fits");
            let bytes = &buf[at..at + size];
            let segment = self.segments.get(&read.pointer.segment).expect("pinned");
            let path = segment.file.path();
            let value = check_record(bytes, &read.key, &read.pointer, path, read.pointer.offset)?;
            self.cache.insert(&read.key, &read.pointer, value);
            Ok(value.to_vec())
        });
        self.reads.done.push((ticket, result));
    }

    /// Deletes the retired segments whose deletion waited for their reads, once none is left
    /// in flight on them.
    pub(super) fn delete_deferred(&mut self) -> Result<(), VlogError> {
        // `delete_retired` defers again if some of them are still pinned.
        let Some(lsn) = self.reads.deletion_deferred.take() else {
            return Ok(());
        };
        self.delete_retired(lsn).map(|_| ())
    }
}
