//! The value log: one shard's large values, in append-only segment files.
//!
//! A put of a value above the inline threshold appends a record (key and value) to the staged
//! batch of the active segment and gets back a [`Pointer`]; the shard logs that pointer in the
//! WAL and stores it in the leaf. Batches are flushed like the WAL's: one block-aligned write
//! padded with zeroes, then (after it completed) a SyncData, or one RWF_DSYNC write; at most one
//! flush in flight, so appends made meanwhile batch up. The shard holds back every WAL record
//! whose value is not yet durable here ([`ValueLog::durable_gate`] and `Wal::set_flush_gate`),
//! so a durable WAL record never points at a value a crash could lose, and a large value is
//! written once (plus once per garbage-collection move). Values not yet written are read from
//! memory; others from the value cache ([`cache`]) or with one aligned read of exactly the
//! blocks the record spans (blocking, or submitted and reaped by `poll` for GETs: `aread`),
//! verified against the pointer's checksum. Only verified bytes (or a
//! value just put) enter the cache, so a damaged record that is not cached is always reported.
//!
//! Accounting: every segment knows its size on disk and its live bytes (the records the tree
//! points at). Live bytes are rebuilt at open by walking the tree (not persisted), then kept
//! current by every put, delete and move. Garbage is size minus live bytes (padding and torn
//! tails count as garbage: they are space). Segments are deleted only after they are *retired*
//! (no live bytes, not active) at some LSN R and a checkpoint with LSN >= R is durable: then no
//! tree a recovery can start from, and no WAL record it replays, points into them.
//!
//! Invariants:
//! - no flush ever rewrites a block holding durable records (flushes start at a block boundary
//!   of the segment's tail, and every open starts a new segment, so a torn tail is never
//!   written over);
//! - bytes staged plus bytes in flight never exceed `buffer_bytes_max` (one record is always
//!   accepted into an empty buffer: the configuration guarantees the largest record fits);
//! - segment ids are never reused: the next id is persisted in the superblock at checkpoints
//!   and raised above every file present at open;
//! - after a failed write or sync the log is poisoned until the shard is reopened.

mod aread;
pub mod cache;
pub mod format;

#[cfg(test)]
mod tests;

use crate::constants::{
    VLOG_BUFFER_BYTES_MAX_DEFAULT, VLOG_CACHE_BYTES_DEFAULT, VLOG_GC_SLICE_BYTES_DEFAULT,
    VLOG_IO_BUFFER_KEPT_BYTES_MAX, VLOG_SEGMENT_BYTES_DEFAULT, VLOG_SEGMENT_HEADER_SIZE,
};
use crate::storage::{AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs};
use crate::wal::{Lsn, SyncMode};
pub use aread::ReadStart;
use cache::ValueCache;
pub use cache::ValueCacheStats;
pub use format::Pointer;
use format::{
    check_segment_header, decode_record, encode_record, encode_segment_header, record_size,
    segment_name, Decoded,
};
use std::collections::BTreeMap;
use std::fmt;

const TAG_WRITE: u64 = 11;
const TAG_SYNC: u64 = 12;
const BLOCK: u64 = crate::storage::IO_ALIGN as u64;

fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK) * BLOCK
}

fn align_down(value: u64) -> u64 {
    value / BLOCK * BLOCK
}

/// Settings of one shard's value log and its garbage collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlogConfig {
    /// A new segment starts once the active one reaches this size.
    pub segment_bytes: u64,
    /// Most bytes of records staged and in flight; beyond it a large put is `Busy`.
    pub buffer_bytes_max: usize,
    /// GC runs while at least this percentage of the log's bytes is garbage (1..=100).
    pub gc_garbage_percent: u8,
    /// Bytes of a victim one GC slice reads (plus one record straddling the end).
    pub gc_slice_bytes: usize,
    /// Least time between two GC slices: with the slice size, bounds GC's I/O rate.
    pub gc_interval_ms: u64,
    /// Bytes of the cache of values read or written (0: no cache); see [`cache`].
    pub cache_bytes: usize,
}

impl Default for VlogConfig {
    fn default() -> Self {
        VlogConfig {
            segment_bytes: VLOG_SEGMENT_BYTES_DEFAULT,
            buffer_bytes_max: VLOG_BUFFER_BYTES_MAX_DEFAULT,
            gc_garbage_percent: 50,
            gc_slice_bytes: VLOG_GC_SLICE_BYTES_DEFAULT,
            gc_interval_ms: 10,
            cache_bytes: VLOG_CACHE_BYTES_DEFAULT,
        }
    }
}

impl VlogConfig {
    pub fn validate(&self) -> Result<(), String> {
        let record_max = record_size(
            crate::constants::KEY_SIZE_MAX,
            crate::constants::VALUE_SIZE_MAX,
        );
        if self.buffer_bytes_max < record_max {
            return Err(format!(
                "vlog buffer_bytes_max {} is below the largest record ({record_max} bytes)",
                self.buffer_bytes_max
            ));
        }
        if self.segment_bytes <= VLOG_SEGMENT_HEADER_SIZE as u64 {
            return Err(format!(
                "vlog segment_bytes {} is too small",
                self.segment_bytes
            ));
        }
        if !(1..=100).contains(&self.gc_garbage_percent) {
            return Err(format!(
                "vlog gc_garbage_percent {} is outside 1..=100",
                self.gc_garbage_percent
            ));
        }
        if self.gc_slice_bytes == 0 || !self.gc_slice_bytes.is_multiple_of(BLOCK as usize) {
            return Err(format!(
                "vlog gc_slice_bytes {} is not a positive block multiple",
                self.gc_slice_bytes
            ));
        }
        Ok(())
    }
}

/// What went wrong in the value log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlogError {
    /// An I/O failure; a failed write or sync poisons the log.
    Io(IoError),
    /// The buffer of unwritten values is full: retry after the next flush.
    Busy { buffered_bytes: usize, max: usize },
    /// Creating a segment found the disk full (nothing was written).
    NoSpace(IoError),
    /// A record read back is not what its pointer names: never served.
    Corrupt {
        path: String,
        offset: u64,
        detail: String,
    },
    /// A pointer names a segment that does not exist.
    Missing { segment: String },
}

impl fmt::Display for VlogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VlogError::Io(e) => write!(f, "value log I/O error: {e}"),
            VlogError::Busy {
                buffered_bytes,
                max,
            } => write!(
                f,
                "value log busy: {buffered_bytes} of {max} buffer bytes in use"
            ),
            VlogError::NoSpace(e) => write!(f, "value log out of disk space: {e}"),
            VlogError::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "value-log record in {path} at offset {offset} is corrupt: {detail}"
            ),
            VlogError::Missing { segment } => {
                write!(f, "value-log segment {segment} is missing")
            }
        }
    }
}

/// Counters and gauges of the value log, for INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VlogStats {
    /// Gauge: segment files.
    pub segments: u64,
    /// Gauge: bytes of records the tree points at.
    pub live_bytes: u64,
    /// Gauge: bytes of segment files that are not live (overwritten, deleted, padding).
    pub dead_bytes: u64,
    /// Record bytes appended since open (puts and moves).
    pub bytes_appended: u64,
    pub flushes: u64,
    /// Values read from segment files (not from memory).
    pub reads: u64,
    /// Of those, reads submitted without blocking for asynchronous GETs (`aread`).
    pub reads_async: u64,
    /// GETs that found the asynchronous reads' limits reached and read synchronously.
    pub reads_async_refused: u64,
    /// Victim segments whose collection finished since open.
    pub gc_runs: u64,
    /// Bytes of live records moved by GC since open.
    pub gc_bytes_moved: u64,
    /// Segments deleted since open.
    pub segments_deleted: u64,
    /// Victims whose scan could not account for every live byte (damage before their tail).
    pub gc_failures: u64,
    /// The cache of values: hits, misses, evictions, bytes.
    pub cache: ValueCacheStats,
}

/// One segment file and its accounting.
#[derive(Debug)]
pub(crate) struct Segment<F> {
    file: F,
    /// Bytes written to the file (whole flushes, padding included).
    pub(crate) size: u64,
    /// Bytes of records the tree points at.
    pub(crate) live_bytes: u64,
    /// Retired (no live bytes, never written again) once the log reached this LSN.
    pub(crate) retired_at: Option<Lsn>,
    /// GC gave up on it (see `VlogStats::gc_failures`).
    pub(crate) gc_failed: bool,
}

#[derive(Debug)]
struct Batch {
    segment: u64,
    offset: u64,
    bytes: Vec<u8>,
    /// The LSN of the first WAL record pointing into this batch.
    first_lsn: Lsn,
}

impl Batch {
    fn holds(&self, pointer: &Pointer) -> bool {
        pointer.segment == self.segment
            && pointer.offset >= self.offset
            && pointer.offset < self.offset + self.bytes.len() as u64
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Writing,
    Syncing,
}

#[derive(Debug)]
struct Flight {
    batch: Batch,
    len: usize,
    stage: Stage,
}

/// Segments whose header did not validate at open: (id, what is wrong).
pub type DamagedSegments = Vec<(u64, String)>;

/// A record found by [`ValueLog::scan_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    pub pointer: Pointer,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One shard's value log; see the module doc.
pub struct ValueLog<V: Vfs> {
    vfs: V,
    config: VlogConfig,
    shard_id: u32,
    sync_mode: SyncMode,
    pub(crate) segments: BTreeMap<u64, Segment<V::File>>,
    next_id: u64,
    /// The segment taking appends, if one was started since open.
    active: Option<u64>,
    /// Where the next batch starts in the active segment (block-aligned).
    tail: u64,
    staged: Option<Batch>,
    flight: Option<Flight>,
    /// A segment was created and the directory not synced since.
    dir_unsynced: bool,
    poisoned: Option<IoError>,
    stats: VlogStats,
    completions: Vec<Completion>,
    cache: ValueCache,
    /// The buffer of the last read, kept for the next one (see `take_buffer`).
    read_buffer: Option<AlignedBuf>,
    /// The buffer of the last flush, back from its write, kept for the next flush.
    flush_buffer: Option<AlignedBuf>,
    /// Asynchronous reads in flight and their results (`aread`).
    reads: aread::Reads,
}

/// The segment a pointer names, to read from; `Missing` if it is gone.
fn segment_to_read<F>(
    segments: &mut BTreeMap<u64, Segment<F>>,
    segment: u64,
) -> Result<&mut Segment<F>, VlogError> {
    segments
        .get_mut(&segment)
        .ok_or_else(|| VlogError::Missing {
            segment: segment_name(segment),
        })
}

impl<V: Vfs> ValueLog<V> {
    /// Opens the segments in `vfs`. `segment_next` is the value-log head from the superblock.
    /// Segments whose header is invalid are kept with no live bytes (the shard checks that the
    /// tree points into none of them, then retires them).
    pub fn open(
        mut vfs: V,
        config: VlogConfig,
        shard_id: u32,
        sync_mode: SyncMode,
        segment_next: u64,
    ) -> Result<(ValueLog<V>, DamagedSegments), VlogError> {
        let mut segments = BTreeMap::new();
        let mut damaged = Vec::new();
        let mut next_id = segment_next.max(1);
        for name in vfs.list().map_err(VlogError::Io)? {
            let Some(id) = format::parse_segment_name(&name) else {
                continue;
            };
            next_id = next_id.max(id + 1);
            let mut file = vfs.open(&name, OpenMode::Existing).map_err(VlogError::Io)?;
            let size = file.size();
            let header = if size < VLOG_SEGMENT_HEADER_SIZE as u64 {
                Err("shorter than its header block".to_string())
            } else {
                let block = AlignedBuf::zeroed(VLOG_SEGMENT_HEADER_SIZE);
                let (block, _) = file.read_at(0, block).map_err(VlogError::Io)?;
                check_segment_header(&block, shard_id, id)
            };
            if let Err(detail) = header {
                damaged.push((id, format!("{}: {detail}", file.path())));
            }
            segments.insert(
                id,
                Segment {
                    file,
                    size,
                    live_bytes: 0,
                    retired_at: None,
                    gc_failed: false,
                },
            );
        }
        let cache = ValueCache::new(config.cache_bytes);
        let log = ValueLog {
            vfs,
            config,
            shard_id,
            sync_mode,
            segments,
            next_id,
            active: None,
            tail: 0,
            staged: None,
            flight: None,
            dir_unsynced: false,
            poisoned: None,
            stats: VlogStats::default(),
            completions: Vec::new(),
            cache,
            read_buffer: None,
            flush_buffer: None,
            reads: aread::Reads::default(),
        };
        Ok((log, damaged))
    }

    pub fn config(&self) -> &VlogConfig {
        &self.config
    }

    /// The id the next new segment gets: the value-log head the superblock records.
    pub fn segment_next(&self) -> u64 {
        self.next_id
    }

    /// Whether any segment exists (so the tree may hold pointers).
    pub fn has_segments(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Checks, at open, that `pointer` (stored under `key`) names a record inside an existing
    /// segment, and counts it live.
    pub fn adopt(&mut self, key: &[u8], pointer: &Pointer) -> Result<(), String> {
        let name = segment_name(pointer.segment);
        let Some(segment) = self.segments.get_mut(&pointer.segment) else {
            return Err(format!(
                "key {:?} points into value-log segment {name}, which is missing",
                String::from_utf8_lossy(key)
            ));
        };
        let end = pointer.offset + pointer.record_size(key.len());
        if pointer.offset < VLOG_SEGMENT_HEADER_SIZE as u64 || end > segment.size {
            return Err(format!(
                "key {:?} points at bytes {}..{end} of value-log segment {}, which holds {}",
                String::from_utf8_lossy(key),
                pointer.offset,
                segment.file.path(),
                segment.size
            ));
        }
        segment.live_bytes += pointer.record_size(key.len());
        Ok(())
    }

    /// Appends a record of `key` and `value` for the WAL record `lsn` that will point at it.
    pub fn append(&mut self, key: &[u8], value: &[u8], lsn: Lsn) -> Result<Pointer, VlogError> {
        self.check_poisoned()?;
        let size = record_size(key.len(), value.len());
        let buffered = self.buffered_bytes();
        if buffered > 0 && buffered + size > self.config.buffer_bytes_max {
            return Err(VlogError::Busy {
                buffered_bytes: buffered,
                max: self.config.buffer_bytes_max,
            });
        }
        if self.staged.is_none() {
            self.open_batch(lsn)?;
        }
        let batch = self.staged.as_mut().expect("a batch is open");
        let offset = batch.offset + batch.bytes.len() as u64;
        let checksum = encode_record(&mut batch.bytes, batch.segment, key, value);
        let pointer = Pointer {
            segment: batch.segment,
            offset,
            value_size: u32::try_from(value.len()).expect("value size checked"),
            checksum,
        };
        let segment = self.segments.get_mut(&pointer.segment).expect("active");
        segment.live_bytes += size as u64;
        self.stats.bytes_appended += size as u64;
        Ok(pointer)
    }

    /// Takes back the last [`ValueLog::append`] (its WAL record was refused).
    pub fn unappend(&mut self, pointer: &Pointer, key_len: usize) {
        let batch = self.staged.as_mut().expect("unappend right after append");
        let size = pointer.record_size(key_len);
        assert_eq!(
            batch.offset + batch.bytes.len() as u64,
            pointer.offset + size,
            "unappend of the last record only"
        );
        batch.bytes.truncate(batch.bytes.len() - size as usize);
        let segment = self.segments.get_mut(&pointer.segment).expect("active");
        segment.live_bytes -= size;
        self.stats.bytes_appended -= size;
    }

    /// The record `pointer` (of `key`) is no longer pointed at: its bytes become garbage.
    pub fn release(&mut self, pointer: &Pointer, key_len: usize) {
        let size = pointer.record_size(key_len);
        let segment = self
            .segments
            .get_mut(&pointer.segment)
            .expect("a live pointer names an open segment");
        assert!(
            segment.live_bytes >= size,
            "live bytes of a segment went negative"
        );
        segment.live_bytes -= size;
    }

    /// Starts a batch at the tail of the active segment, or at a new segment.
    fn open_batch(&mut self, lsn: Lsn) -> Result<(), VlogError> {
        let roll = match self.active {
            None => true,
            Some(_) => self.tail >= self.config.segment_bytes,
        };
        if roll {
            let id = self.next_id;
            let name = segment_name(id);
            let file = self.vfs.open(&name, OpenMode::CreateNew).map_err(|e| {
                if e.kind == IoErrorKind::NoSpace {
                    VlogError::NoSpace(e)
                } else {
                    VlogError::Io(e)
                }
            })?;
            self.next_id += 1;
            self.dir_unsynced = true;
            self.segments.insert(
                id,
                Segment {
                    file,
                    size: 0,
                    live_bytes: 0,
                    retired_at: None,
                    gc_failed: false,
                },
            );
            self.active = Some(id);
            let mut bytes = vec![0u8; VLOG_SEGMENT_HEADER_SIZE];
            encode_segment_header(&mut bytes, self.shard_id, id);
            self.staged = Some(Batch {
                segment: id,
                offset: 0,
                bytes,
                first_lsn: lsn,
            });
            self.tail = 0;
        } else {
            self.staged = Some(Batch {
                segment: self.active.expect("active"),
                offset: self.tail,
                bytes: Vec::new(),
                first_lsn: lsn,
            });
        }
        Ok(())
    }

    fn buffered_bytes(&self) -> usize {
        self.staged.as_ref().map_or(0, |b| b.bytes.len())
            + self.flight.as_ref().map_or(0, |f| f.batch.bytes.len())
    }

    /// Every WAL record at or below this LSN points only at durable values.
    pub fn durable_gate(&self) -> Lsn {
        let staged = self.staged.as_ref().filter(|b| has_records(b));
        [
            staged.map(|b| b.first_lsn),
            self.flight.as_ref().map(|f| f.batch.first_lsn),
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or(Lsn::MAX, |lsn| lsn - 1)
    }

    /// True while a flush or an asynchronous read is on the disk.
    pub fn io_in_flight(&self) -> bool {
        self.flight.is_some() || self.reads_in_flight() > 0
    }

    /// Reaps the flush in flight and starts the next one; never blocks (beyond the Storage).
    /// Returns whether anything progressed.
    pub fn poll(&mut self) -> Result<bool, VlogError> {
        self.check_poisoned()?;
        let mut progressed = false;
        for _ in 0..4 {
            let mut step = self.reap()?;
            if self.flight.is_none() && self.staged.as_ref().is_some_and(has_records) {
                self.start_flush()?;
                step = true;
            }
            progressed |= step;
            if !step {
                break;
            }
        }
        self.delete_deferred()?;
        Ok(progressed)
    }

    /// Flushes everything staged and blocks until it is durable.
    pub fn flush_and_wait(&mut self) -> Result<(), VlogError> {
        loop {
            self.poll()?;
            let Some(flight) = &self.flight else {
                if self.staged.as_ref().is_some_and(has_records) {
                    continue;
                }
                return Ok(());
            };
            let tag = match flight.stage {
                Stage::Writing => TAG_WRITE,
                Stage::Syncing => TAG_SYNC,
            };
            let segment = flight.batch.segment;
            let file = &mut self
                .segments
                .get_mut(&segment)
                .expect("flight segment")
                .file;
            let completion = file.wait(tag);
            self.on_completion(completion)?;
        }
    }

    /// Reaps the completions of the flush's segment and of every segment with reads in flight.
    fn reap(&mut self) -> Result<bool, VlogError> {
        let flushing = self.flight.as_ref().map(|f| f.batch.segment);
        if flushing.is_none() && self.reads_in_flight() == 0 {
            return Ok(false);
        }
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        let reading = self.reads.segments().filter(|&id| Some(id) != flushing);
        let polled: Vec<u64> = flushing.into_iter().chain(reading).collect();
        for id in polled {
            let segment = self
                .segments
                .get_mut(&id)
                .expect("a segment with I/O in flight");
            segment.file.poll(&mut completions);
        }
        let progressed = !completions.is_empty();
        let mut result = Ok(());
        for completion in completions.drain(..) {
            if completion.user_data >= aread::TAG_READ_BASE {
                self.on_read_completion(completion);
            } else if result.is_ok() {
                result = self.on_completion(completion);
            }
        }
        self.completions = completions;
        result.map(|()| progressed)
    }

    fn on_completion(&mut self, completion: Completion) -> Result<(), VlogError> {
        let flight = self
            .flight
            .as_mut()
            .expect("a completion of the flush in flight");
        if let Err(error) = completion.result {
            return Err(self.poison(error));
        }
        if let Some(buf) = completion.buf {
            keep_buffer(&mut self.flush_buffer, buf);
        }
        match (completion.user_data, &flight.stage) {
            (TAG_WRITE, Stage::Writing) if self.sync_mode == SyncMode::WriteThenSync => {
                flight.stage = Stage::Syncing;
                let segment = flight.batch.segment;
                let file = &mut self.segments.get_mut(&segment).expect("segment").file;
                if let Err(error) = file.submit(TAG_SYNC, Op::SyncData) {
                    return Err(self.poison(error));
                }
            }
            (TAG_WRITE, Stage::Writing) | (TAG_SYNC, Stage::Syncing) => {
                let flight = self.flight.take().expect("flight");
                let segment = self
                    .segments
                    .get_mut(&flight.batch.segment)
                    .expect("segment");
                segment.size = segment.size.max(flight.batch.offset + flight.len as u64);
            }
            (tag, stage) => panic!("value-log completion {tag} in stage {stage:?}"),
        }
        Ok(())
    }

    fn start_flush(&mut self) -> Result<(), VlogError> {
        let batch = self.staged.take().expect("a staged batch");
        if self.dir_unsynced {
            // The WAL records pointing into a new segment may become durable only after its
            // name is: the directory is synced before the segment's first write.
            self.vfs.sync_dir().map_err(|e| self.poison(e))?;
            self.dir_unsynced = false;
        }
        let len = usize::try_from(align_up(batch.bytes.len() as u64)).expect("fits");
        let mut buf = take_buffer(&mut self.flush_buffer, len);
        buf[..batch.bytes.len()].copy_from_slice(&batch.bytes);
        // A kept buffer holds an earlier flush's bytes: the padding must be zero.
        buf[batch.bytes.len()..].fill(0);
        let op = match self.sync_mode {
            SyncMode::WriteThenSync => Op::Write {
                offset: batch.offset,
                buf,
            },
            SyncMode::WriteDsync => Op::WriteDsync {
                offset: batch.offset,
                buf,
            },
        };
        if Some(batch.segment) == self.active {
            self.tail = batch.offset + len as u64;
        }
        let segment = batch.segment;
        self.flight = Some(Flight {
            batch,
            len,
            stage: Stage::Writing,
        });
        self.stats.flushes += 1;
        let file = &mut self.segments.get_mut(&segment).expect("segment").file;
        file.submit(TAG_WRITE, op).map_err(|e| self.poison(e))
    }

    fn poison(&mut self, error: IoError) -> VlogError {
        tracing::error!(%error, "value log poisoned: a write or sync failed; reopen to recover");
        self.poisoned.get_or_insert(error.clone());
        VlogError::Io(error)
    }

    fn check_poisoned(&self) -> Result<(), VlogError> {
        match &self.poisoned {
            Some(error) => Err(VlogError::Io(error.clone())),
            None => Ok(()),
        }
    }

    /// The value `pointer` (stored under `key`) names: from memory if not yet written, else from
    /// the cache, else with one read of the blocks the record spans, checked against the pointer
    /// (and then cached).
    pub fn read(&mut self, key: &[u8], pointer: &Pointer) -> Result<Vec<u8>, VlogError> {
        let size = pointer.record_size(key.len()) as usize;
        if let Some(result) = self.read_from_memory(key, pointer) {
            return result;
        }
        if let Some(value) = self.cache.get(key, pointer) {
            return Ok(value.to_vec());
        }
        self.cache.note_miss();
        let segment = segment_to_read(&mut self.segments, pointer.segment)?;
        let start = align_down(pointer.offset);
        let end = align_up(pointer.offset + size as u64);
        let len = usize::try_from(end - start).expect("fits");
        let buf = take_buffer(&mut self.read_buffer, len);
        // A reused buffer is overwritten whole: bytes past the end of the file read as zero.
        let (buf, _) = segment.file.read_at(start, buf).map_err(VlogError::Io)?;
        self.stats.reads += 1;
        let at = usize::try_from(pointer.offset - start).expect("fits");
        let bytes = &buf[at..at + size];
        let path = segment.file.path();
        let result = check_record(bytes, key, pointer, path, pointer.offset).map(|value| {
            self.cache.insert(key, pointer, value);
            value.to_vec()
        });
        keep_buffer(&mut self.read_buffer, buf);
        result
    }

    /// The value `pointer` names if its record is not yet written (staged or in flight).
    fn read_from_memory(
        &self,
        key: &[u8],
        pointer: &Pointer,
    ) -> Option<Result<Vec<u8>, VlogError>> {
        let size = pointer.record_size(key.len()) as usize;
        let in_memory = [self.staged.as_ref(), self.flight.as_ref().map(|f| &f.batch)];
        let batch = in_memory.into_iter().flatten().find(|b| b.holds(pointer))?;
        let at = usize::try_from(pointer.offset - batch.offset).expect("fits");
        let bytes = batch.bytes.get(at..at + size).unwrap_or(&[]);
        Some(check_record(bytes, key, pointer, "(in memory)", pointer.offset).map(<[u8]>::to_vec))
    }

    /// GC moved the record at `from` to `to`: a cached value follows it.
    pub fn moved(&mut self, from: &Pointer, to: &Pointer) {
        self.cache.moved(from, to);
    }

    /// Caches `value`, which was just appended under `key` at `pointer` and logged: the put's
    /// bytes are in memory already, and the next read of the key need not go to the disk.
    pub fn remember(&mut self, key: &[u8], pointer: &Pointer, value: &[u8]) {
        self.cache.insert(key, pointer, value);
    }

    /// Reads records of segment `id` from `from` (a record boundary or block boundary): about
    /// `gc_slice_bytes` of them, whole. Returns the records, where to continue, and whether the
    /// segment's valid records ended (end of file, or the damaged tail of a crash).
    pub fn scan_segment(
        &mut self,
        id: u64,
        from: u64,
    ) -> Result<(Vec<ScannedRecord>, u64, bool), VlogError> {
        let slice = self.config.gc_slice_bytes as u64;
        let segment = self.segments.get_mut(&id).expect("scan of an open segment");
        let size = segment.size;
        let mut pos = from.max(VLOG_SEGMENT_HEADER_SIZE as u64);
        if pos >= size {
            return Ok((Vec::new(), pos, true));
        }
        let mut start = align_down(pos);
        let mut end = align_up((pos + slice).min(size));
        let mut records = Vec::new();
        loop {
            let buf = AlignedBuf::zeroed(usize::try_from(end - start).expect("fits"));
            let (buf, _) = segment.file.read_at(start, buf).map_err(VlogError::Io)?;
            self.stats.reads += 1;
            loop {
                if pos >= end || pos >= size {
                    return Ok((records, pos, pos >= size));
                }
                let at = usize::try_from(pos - start).expect("fits");
                match padded_decode(&buf[at..], pos, id) {
                    Decoded::Record(record, len) => {
                        records.push(ScannedRecord {
                            pointer: Pointer {
                                segment: id,
                                offset: pos,
                                value_size: u32::try_from(record.value.len()).expect("fits"),
                                checksum: record.checksum,
                            },
                            key: record.key.to_vec(),
                            value: record.value.to_vec(),
                        });
                        pos += len as u64;
                    }
                    Decoded::Padding => pos = align_up(pos + 1),
                    Decoded::Truncated(len) => {
                        if pos + len as u64 > size {
                            return Ok((records, pos, true));
                        }
                        if !records.is_empty() {
                            return Ok((records, pos, false));
                        }
                        // One record longer than the slice: read it whole.
                        start = align_down(pos);
                        end = align_up(pos + len as u64);
                        break;
                    }
                    Decoded::Invalid(detail) => {
                        tracing::warn!(
                            path = segment.file.path(),
                            offset = pos,
                            detail,
                            "value-log scan stops at a damaged record (a torn tail after a crash)"
                        );
                        return Ok((records, pos, true));
                    }
                }
            }
        }
    }

    /// Marks segments with no live bytes as retired at `lsn` (never the active one, nor one
    /// with data not yet written). Returns how many.
    pub fn retire_dead(&mut self, lsn: Lsn) -> usize {
        let busy = self.busy_segments();
        let mut retired = 0;
        for (id, segment) in &mut self.segments {
            if segment.live_bytes == 0 && segment.retired_at.is_none() && !busy.contains(id) {
                segment.retired_at = Some(lsn);
                retired += 1;
            }
        }
        retired
    }

    /// Segments that take appends or have data not yet written: never GC victims.
    fn busy_segments(&self) -> Vec<u64> {
        [
            self.active,
            self.staged.as_ref().map(|b| b.segment),
            self.flight.as_ref().map(|f| f.batch.segment),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The segment GC should collect next, if any. Collection starts once the garbage of the
    /// whole log reaches `gc_garbage_percent` of its size, and takes the segment with the most
    /// garbage (greedy: under uniform overwrites that is the oldest, whose live share is the
    /// smallest, so the fewest bytes move per byte freed). Disk use therefore stays near
    /// `live / (1 - percent/100)` plus the active segment. A segment with nothing live is
    /// always taken: it costs no I/O, only a deletion after the next checkpoint.
    pub fn pick_victim(&self) -> Option<u64> {
        self.pick_victim_where(|_| true)
    }

    /// [`ValueLog::pick_victim`] among the segments `eligible` accepts: the shard excludes those
    /// holding values of prepared, undecided transactions (their pointers are in no leaf, so a
    /// collection could neither move nor account for them).
    pub fn pick_victim_where(&self, eligible: impl Fn(u64) -> bool) -> Option<u64> {
        let busy = self.busy_segments();
        let candidates = || {
            self.segments.iter().filter(|(id, s)| {
                !busy.contains(id)
                    && s.retired_at.is_none()
                    && !s.gc_failed
                    && s.size > 0
                    && eligible(**id)
            })
        };
        if let Some((&id, _)) = candidates().find(|(_, s)| s.live_bytes == 0) {
            return Some(id);
        }
        // Retired segments only wait for a checkpoint to be deleted: their garbage is already
        // dealt with, and counting it would send GC after segments that are mostly live.
        let unretired = || self.segments.values().filter(|s| s.retired_at.is_none());
        let size: u64 = unretired().map(|s| s.size).sum();
        let live: u64 = unretired().map(|s| s.live_bytes).sum();
        let garbage = size.saturating_sub(live);
        if garbage * 100 < u64::from(self.config.gc_garbage_percent) * size {
            return None;
        }
        candidates()
            .max_by_key(|(_, s)| s.size.saturating_sub(s.live_bytes))
            .map(|(&id, _)| id)
    }

    /// Live bytes of segment `id` (0 if it is gone).
    pub fn live_bytes(&self, id: u64) -> u64 {
        self.segments.get(&id).map_or(0, |s| s.live_bytes)
    }

    /// Counts a finished collection of `id`: retires it if nothing live is left, otherwise gives
    /// up on it (its live records sit behind damage the scan could not cross).
    pub fn finish_collection(&mut self, id: u64, lsn: Lsn) {
        self.stats.gc_runs += 1;
        let segment = self.segments.get_mut(&id).expect("victim");
        if segment.live_bytes == 0 {
            segment.retired_at = Some(lsn);
        } else {
            segment.gc_failed = true;
            self.stats.gc_failures += 1;
            tracing::error!(
                path = segment.file.path(),
                live_bytes = segment.live_bytes,
                "value-log GC could not find every live record: the segment is damaged"
            );
        }
    }

    /// Counts bytes moved by GC in a slice.
    pub fn note_moved(&mut self, bytes: u64) {
        self.stats.gc_bytes_moved += bytes;
    }

    /// After a checkpoint with LSN `lsn` is durable: deletes the segments retired at or below
    /// it, then syncs the directory. Returns how many. A segment with asynchronous reads in
    /// flight is deleted by the `poll` that reaps its last read (`aread`).
    pub fn delete_retired(&mut self, lsn: Lsn) -> Result<usize, VlogError> {
        let retired = |s: &Segment<V::File>| s.retired_at.is_some_and(|at| at <= lsn);
        let (pinned, doomed): (Vec<u64>, Vec<u64>) = self
            .segments
            .iter()
            .filter(|(_, s)| retired(s))
            .map(|(&id, _)| id)
            .partition(|&id| self.reads.pinned(id));
        if !pinned.is_empty() {
            self.reads.defer_deletion(lsn);
        }
        for &id in &doomed {
            self.segments.remove(&id);
            self.cache.drop_segment(id);
            self.vfs
                .remove(&segment_name(id))
                .map_err(|e| self.poison(e))?;
            self.stats.segments_deleted += 1;
        }
        if !doomed.is_empty() {
            self.vfs.sync_dir().map_err(|e| self.poison(e))?;
        }
        Ok(doomed.len())
    }

    /// Segments with cached values that no longer exist (always empty: deletion drops them).
    #[cfg(test)]
    pub(crate) fn cached_segments_missing(&self) -> Vec<u64> {
        let segments = self.cache.segments();
        segments
            .into_iter()
            .filter(|id| !self.segments.contains_key(id))
            .collect()
    }

    pub fn stats(&self) -> VlogStats {
        let mut stats = self.stats.clone();
        stats.segments = self.segments.len() as u64;
        stats.live_bytes = self.segments.values().map(|s| s.live_bytes).sum();
        let size: u64 = self
            .segments
            .values()
            .map(|s| s.size.max(s.live_bytes))
            .sum();
        stats.dead_bytes = size - stats.live_bytes;
        stats.cache = self.cache.stats();
        stats
    }
}

/// [`decode_record`] at segment offset `pos`, also recognizing the zero padding of a flush that
/// ended fewer than a record header's bytes before a block boundary: there the header read runs
/// into the next flush's first record, so it is not all zero. A record that really starts there
/// decodes whole first, so only bytes that are no intact record are taken for padding.
fn padded_decode(bytes: &[u8], pos: u64, segment: u64) -> Decoded<'_> {
    let decoded = decode_record(bytes, segment);
    let to_block = usize::try_from(align_up(pos) - pos).expect("below a block");
    let short_padding = !matches!(decoded, Decoded::Record(..))
        && to_block > 0
        && to_block < crate::constants::VLOG_RECORD_HEADER_SIZE
        && bytes
            .get(..to_block)
            .is_some_and(|b| b.iter().all(|&b| b == 0));
    if short_padding {
        Decoded::Padding
    } else {
        decoded
    }
}

fn has_records(batch: &Batch) -> bool {
    let header = if batch.offset == 0 {
        VLOG_SEGMENT_HEADER_SIZE
    } else {
        0
    };
    batch.bytes.len() > header
}

/// A buffer of `len` bytes for a read or a write: the kept one if it is large enough (its bytes
/// are not zeroed again: a read overwrites all of them, a write's padding is zeroed by the
/// caller), else a new one.
fn take_buffer(kept: &mut Option<AlignedBuf>, len: usize) -> AlignedBuf {
    match kept.take() {
        Some(mut buf) if buf.capacity() >= len => {
            buf.set_len(len);
            buf
        }
        other => {
            *kept = other;
            AlignedBuf::zeroed(len)
        }
    }
}

/// Keeps `buf` for the next [`take_buffer`] if it is the larger one and at most
/// `VLOG_IO_BUFFER_KEPT_BYTES_MAX`.
fn keep_buffer(kept: &mut Option<AlignedBuf>, buf: AlignedBuf) {
    if buf.capacity() > VLOG_IO_BUFFER_KEPT_BYTES_MAX {
        return;
    }
    if kept
        .as_ref()
        .is_none_or(|old| old.capacity() < buf.capacity())
    {
        *kept = Some(buf);
    }
}

/// Checks that `bytes` are the record `pointer` names for `key`, and returns its value.
fn check_record<'a>(
    bytes: &'a [u8],
    key: &[u8],
    pointer: &Pointer,
    path: &str,
    offset: u64,
) -> Result<&'a [u8], VlogError> {
    let corrupt = |detail: String| VlogError::Corrupt {
        path: path.to_string(),
        offset,
        detail,
    };
    match decode_record(bytes, pointer.segment) {
        Decoded::Record(record, _) => {
            if record.key != key
                || record.checksum != pointer.checksum
                || record.value.len() != pointer.value_size as usize
            {
                return Err(corrupt(format!(
                    "the record there is not the one key {:?} points at",
                    String::from_utf8_lossy(key)
                )));
            }
            Ok(record.value)
        }
        Decoded::Padding => Err(corrupt("zero bytes where a record should be".to_string())),
        Decoded::Truncated(_) => Err(corrupt("the record runs past the bytes read".to_string())),
        Decoded::Invalid(detail) => Err(corrupt(detail.to_string())),
    }
}
