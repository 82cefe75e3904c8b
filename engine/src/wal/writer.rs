//! The WAL writer: appends into an in-memory buffer, group commit, segment rollover, release.
//!
//! Records are staged in batches. A batch is a run of records bound for one flush: it starts on
//! a block boundary of one segment (at offset 0 with the segment header when it opens a new
//! segment) and is written padded to whole blocks. At most one flush is in flight; records
//! appended meanwhile accumulate in later batches (double buffering). A flush is a write and,
//! after that write completed, a SyncData (or one RWF_DSYNC write).
//!
//! Each batch is built in place in an aligned buffer big enough for the largest flush, so a flush
//! hands that buffer to the Storage as it is (only the padding of its last block is zeroed): no
//! copy and no allocation per flush. Buffers come back with the write's completion and are reused;
//! at most [`SPARE_BUFFERS_MAX`] idle ones are kept.
//!
//! Invariants:
//! - staged batches are in LSN order, contiguous, and each lies in one segment;
//! - bytes staged plus bytes in flight never exceed `buffer_bytes_max`;
//! - `durable_lsn <= written_lsn < next_lsn`, and `durable_lsn` moves only on a completed sync;
//! - the writer only ever switches to a segment whose preparation finished (`Spare::Ready`).

use super::constants::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use super::record::{encode_record_into, segment_crc_seed, segment_name, SegmentHeader};
use super::recovery::{self, RecoveryReport, SegmentInfo};
use super::segment::{self, FreeFile, Spare};
use super::{Lsn, RedoRecord, SyncMode, SyncPolicy, WalConfig, WalError, WalStats};
use crate::clock::Clock;
use crate::storage::{AlignedBuf, Completion, IoError, IoErrorKind, Op, Storage, Vfs, IO_ALIGN};
use std::collections::VecDeque;

const TAG_WRITE: u64 = 1;
const TAG_SYNC: u64 = 2;

/// Rounds of reaping and submitting one `poll` does at most (a blocking Storage completes an
/// operation per round; more rounds than stages of a flush gain nothing).
const POLL_ROUNDS_MAX: usize = 8;

/// Idle batch buffers kept for reuse. Two cover the steady state (one batch filling while one
/// flush is in flight); a burst that staged more batches frees the extra buffers again.
const SPARE_BUFFERS_MAX: usize = 2;

fn align_up(value: u64) -> u64 {
    value.div_ceil(IO_ALIGN as u64) * IO_ALIGN as u64
}

#[derive(Debug)]
struct Batch {
    seq: u64,
    offset: u64,
    /// The batch's bytes are `buf[..fill]`; `buf` holds the largest flush.
    buf: AlignedBuf,
    fill: usize,
    /// `segment_crc_seed(seq)`, which every record's checksum starts from.
    crc_seed: u32,
    first_lsn: Lsn,
    last_lsn: Lsn,
    records: u64,
    oldest_ns: u64,
    /// No more records may join (a later batch exists, or the flush gate held it back).
    closed: bool,
    /// Closed because the next record did not fit: flush it without waiting for the delay.
    /// (A batch closed only by the flush gate waits for the delay like an open one, so that
    /// under `Periodic` value-log flushes do not turn into WAL syncs.)
    full: bool,
    starts_segment: bool,
}

impl Batch {
    fn end(&self) -> u64 {
        self.offset + self.fill as u64
    }

    fn record_bytes(&self) -> usize {
        self.fill
            - if self.starts_segment {
                SEGMENT_HEADER_BYTES
            } else {
                0
            }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Writing,
    Syncing,
}

#[derive(Debug)]
struct Flight {
    seq: u64,
    last_lsn: Lsn,
    len: usize,
    needs_sync: bool,
    starts_segment: bool,
    stage: Stage,
}

/// One shard's write-ahead log, open for appending. See the module docs of [`super`].
pub struct Wal<V: Vfs, C: Clock> {
    vfs: V,
    clock: C,
    config: WalConfig,
    file: V::File,
    seq: u64,
    /// Live segments, oldest first; the last one is `seq`.
    segments: VecDeque<SegmentInfo>,
    /// The newest segment whose header is durable; older segments may be released.
    headed_seq: u64,
    next_lsn: Lsn,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    /// `flush` asked for every record up to this LSN to be flushed without delay.
    flush_requested_lsn: Lsn,
    /// No record above this LSN may be written yet (see [`Wal::set_flush_gate`]).
    flush_gate: Lsn,
    staged: VecDeque<Batch>,
    staged_bytes: usize,
    /// Where the next batch starts when nothing is staged: (segment, block-aligned offset).
    tail: (u64, u64),
    flight: Option<Flight>,
    bytes_since_sync: u64,
    stalled: bool,
    spare: Spare<V::File>,
    pool: Vec<FreeFile>,
    poisoned: Option<IoError>,
    no_space: Option<IoError>,
    stats: WalStats,
    completions: Vec<Completion>,
    spare_buffers: Vec<AlignedBuf>,
}

impl<V: Vfs, C: Clock> Wal<V, C> {
    /// Opens the WAL in `vfs` (one shard's directory, created empty for a new shard), replays
    /// every record with LSN >= `replay_from` through `redo`, truncates a torn tail and starts
    /// a fresh segment for new appends. Refuses a log corrupt before its tail.
    ///
    /// `replay_from` is the checkpoint LSN + 1 (1 for a new shard). If `redo` fails, `open`
    /// returns `WalError::Redo` and the caller must discard what the callback applied.
    pub fn open<F>(
        vfs: V,
        clock: C,
        config: WalConfig,
        replay_from: Lsn,
        redo: F,
    ) -> Result<(Wal<V, C>, RecoveryReport), WalError>
    where
        F: FnMut(RedoRecord<'_>) -> Result<(), String>,
    {
        Wal::open_inner(vfs, clock, config, replay_from, false, redo)
    }

    /// Like [`Wal::open`], but hands `redo` every record still retained, from the oldest
    /// segment not yet released (records below `replay_from` included, in LSN order): the
    /// shard rebuilds its transaction state from those (see `release_below`, which the shard
    /// calls with the oldest LSN it still needs).
    pub fn open_retained<F>(
        vfs: V,
        clock: C,
        config: WalConfig,
        replay_from: Lsn,
        redo: F,
    ) -> Result<(Wal<V, C>, RecoveryReport), WalError>
    where
        F: FnMut(RedoRecord<'_>) -> Result<(), String>,
    {
        Wal::open_inner(vfs, clock, config, replay_from, true, redo)
    }

    fn open_inner<F>(
        mut vfs: V,
        clock: C,
        config: WalConfig,
        replay_from: Lsn,
        retained: bool,
        mut redo: F,
    ) -> Result<(Wal<V, C>, RecoveryReport), WalError>
    where
        F: FnMut(RedoRecord<'_>) -> Result<(), String>,
    {
        config.validate()?;
        let recovered = recovery::recover(&mut vfs, &config, replay_from, retained, &mut redo)?;
        let mut pool = recovered.pool;
        let seq = recovered.seq_max + 1;
        let next_lsn = recovered.next_lsn;
        let mut file =
            segment::prepare_blocking(&mut vfs, &mut pool, seq, config.segment_size_bytes)?;
        let header = SegmentHeader {
            shard_id: config.shard_id,
            seq,
            first_lsn: next_lsn,
            segment_size_bytes: config.segment_size_bytes,
        };
        let mut block = AlignedBuf::zeroed(SEGMENT_HEADER_BYTES);
        header.encode_into(&mut block);
        file.write_at(0, block)?;
        file.sync_data()?;
        let mut segments: VecDeque<SegmentInfo> = recovered.segments.into();
        segments.push_back(SegmentInfo {
            seq,
            first_lsn: next_lsn,
        });
        let mut stats = WalStats {
            torn_tails_truncated: u64::from(recovered.report.torn_tail.is_some()),
            records_recovered: recovered.report.records_replayed,
            ..WalStats::default()
        };
        stats.segments_created = recovered.report.segments_created;
        let mut wal = Wal {
            vfs,
            clock,
            config,
            file,
            seq,
            segments,
            headed_seq: seq,
            next_lsn,
            written_lsn: next_lsn - 1,
            durable_lsn: next_lsn - 1,
            flush_requested_lsn: 0,
            flush_gate: Lsn::MAX,
            staged: VecDeque::new(),
            staged_bytes: 0,
            tail: (seq, SEGMENT_HEADER_BYTES as u64),
            flight: None,
            bytes_since_sync: 0,
            stalled: false,
            spare: Spare::Idle,
            pool,
            poisoned: None,
            no_space: None,
            stats,
            completions: Vec::new(),
            spare_buffers: Vec::new(),
        };
        wal.start_spare();
        Ok((wal, recovered.report))
    }

    /// Buffers one record and returns its LSN. The record is acknowledged once
    /// [`Wal::ack_lsn`] reaches that LSN. `record_type` must not be 0 (reserved).
    pub fn append(&mut self, record_type: u8, payload: &[u8]) -> Result<Lsn, WalError> {
        self.check_writable()?;
        let payload_bytes_max = self.config.payload_bytes_max();
        if payload.len() > payload_bytes_max {
            return Err(WalError::RecordTooLarge {
                payload_bytes: payload.len(),
                payload_bytes_max,
            });
        }
        let size = RECORD_HEADER_BYTES + payload.len();
        let buffered = self.buffered_bytes();
        if buffered + size + SEGMENT_HEADER_BYTES > self.config.buffer_bytes_max {
            self.stats.busy_rejections += 1;
            return Err(WalError::Busy {
                buffered_bytes: buffered,
                buffer_bytes_max: self.config.buffer_bytes_max,
            });
        }
        let lsn = self.next_lsn;
        let synced_lsn = self.durable_lsn;
        let index = self.batch_for(size, lsn);
        let batch = &mut self.staged[index];
        let written = encode_record_into(
            &mut batch.buf[batch.fill..],
            batch.crc_seed,
            lsn,
            synced_lsn,
            record_type,
            payload,
        );
        debug_assert_eq!(written, size);
        batch.fill += size;
        batch.last_lsn = lsn;
        batch.records += 1;
        self.staged_bytes += size;
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Index of the staged batch that takes a record of `size` bytes, opening one if needed.
    fn batch_for(&mut self, size: usize, lsn: Lsn) -> usize {
        let segment_size = self.config.segment_size_bytes;
        let flush_max = self.config.flush_bytes_max;
        if let Some(last) = self.staged.back_mut() {
            let fits =
                last.record_bytes() + size <= flush_max && last.end() + size as u64 <= segment_size;
            if !last.closed && fits {
                return self.staged.len() - 1;
            }
            last.full |= !fits;
            last.closed = true;
        }
        let (seq, offset) = match self.staged.back() {
            Some(last) => (last.seq, align_up(last.end())),
            None => self.tail,
        };
        // The clock is read once per batch, not per record: only a batch's first record dates it.
        let now = self.clock.monotonic_ns();
        let mut buf = self
            .spare_buffers
            .pop()
            .unwrap_or_else(|| AlignedBuf::zeroed(flush_max + SEGMENT_HEADER_BYTES));
        let batch = if offset + size as u64 <= segment_size {
            Batch {
                seq,
                offset,
                buf,
                fill: 0,
                crc_seed: segment_crc_seed(seq),
                first_lsn: lsn,
                last_lsn: lsn,
                records: 0,
                oldest_ns: now,
                closed: false,
                full: false,
                starts_segment: false,
            }
        } else {
            assert_eq!(
                seq, self.seq,
                "a batch may open at most the segment after the current one"
            );
            let header = SegmentHeader {
                shard_id: self.config.shard_id,
                seq: seq + 1,
                first_lsn: lsn,
                segment_size_bytes: segment_size,
            };
            // The header block is all zero past its used bytes, also in a reused buffer.
            buf[..SEGMENT_HEADER_BYTES].fill(0);
            header.encode_into(&mut buf[..SEGMENT_HEADER_BYTES]);
            self.staged_bytes += SEGMENT_HEADER_BYTES;
            Batch {
                seq: seq + 1,
                offset: 0,
                buf,
                fill: SEGMENT_HEADER_BYTES,
                crc_seed: segment_crc_seed(seq + 1),
                first_lsn: lsn,
                last_lsn: lsn,
                records: 0,
                oldest_ns: now,
                closed: false,
                full: false,
                starts_segment: true,
            }
        };
        self.staged.push_back(batch);
        self.staged.len() - 1
    }

    /// Asks for every record appended so far to be flushed without waiting for the batching
    /// thresholds; `poll` does the work.
    pub fn flush(&mut self) {
        self.flush_requested_lsn = self.next_lsn - 1;
    }

    /// Holds back every record above `lsn`: a flush starts only when all its records are at or
    /// below the gate. The shard uses it to write a record that points into the value log only
    /// after the value it points at is durable. A batch held back stops taking records, so the
    /// records behind the gate wait for one value-log sync, not for a stream of them.
    pub fn set_flush_gate(&mut self, lsn: Lsn) {
        self.flush_gate = lsn;
        if let Some(front) = self.staged.front_mut() {
            if front.last_lsn > lsn {
                front.closed = true;
            }
        }
    }

    /// Whether the gate holds back the oldest staged batch.
    fn gated(&self) -> bool {
        self.staged
            .front()
            .is_some_and(|front| front.last_lsn > self.flush_gate)
    }

    /// Reaps completions, advances the flush in flight and the next segment's preparation, and
    /// starts a flush when one is due. Never blocks (unless the Storage itself does). Returns
    /// the poisoning error once a write or sync has failed.
    pub fn poll(&mut self) -> Result<(), WalError> {
        for _ in 0..POLL_ROUNDS_MAX {
            let mut progressed = self.reap();
            self.check_poisoned()?;
            progressed |= self.advance_spare();
            if self.flight.is_none() && self.flush_due(self.clock.monotonic_ns()) {
                progressed |= self.start_flush();
            }
            self.check_poisoned()?;
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Flushes everything appended so far and blocks until it is durable (written, under
    /// `SyncPolicy::None`). For clean shutdown, tests and tools.
    pub fn flush_and_wait(&mut self) -> Result<Lsn, WalError> {
        self.flush();
        let target = self.next_lsn - 1;
        loop {
            self.poll()?;
            let done = match self.config.sync_policy {
                SyncPolicy::None => self.written_lsn >= target,
                _ => self.durable_lsn >= target,
            };
            if done {
                return Ok(target);
            }
            self.wait_one()?;
        }
    }

    /// Blocks until one operation the writer waits for (the flush in flight, or the next
    /// segment's preparation) completes, then returns; `poll` takes it from there. For owners
    /// with nothing else to do: `flush_and_wait`, tools and benchmarks. Panics if nothing is in
    /// flight ([`Wal::io_in_flight`] is false), which would wait forever.
    pub fn wait_one(&mut self) -> Result<(), WalError> {
        let tag = match &self.flight {
            Some(flight) if flight.stage == Stage::Writing => TAG_WRITE,
            Some(_) => TAG_SYNC,
            None => {
                let waited = segment::wait_one(&mut self.spare).map_err(|e| self.fail_spare(e))?;
                if waited {
                    return Ok(());
                }
                self.check_writable()?;
                assert!(
                    !self.gated(),
                    "flush_and_wait behind a flush gate: open the gate first"
                );
                panic!(
                    "the WAL waits for nothing: no flush in flight and no segment being prepared"
                );
            }
        };
        let completion = self.file.wait(tag);
        self.on_completion(completion);
        self.check_poisoned()
    }

    fn reap(&mut self) -> bool {
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        self.file.poll(&mut completions);
        let progressed = !completions.is_empty();
        for completion in completions.drain(..) {
            self.on_completion(completion);
        }
        self.completions = completions;
        progressed
    }

    fn on_completion(&mut self, mut completion: Completion) {
        if let Some(mut buf) = completion.buf.take() {
            if self.spare_buffers.len() < SPARE_BUFFERS_MAX {
                buf.set_len(buf.capacity());
                self.spare_buffers.push(buf);
            }
        }
        let Some(flight) = self.flight.as_mut() else {
            assert!(
                self.poisoned.is_some(),
                "completion {} with no flush in flight",
                completion.user_data
            );
            return;
        };
        let len = match completion.result {
            Ok(len) => len,
            Err(e) => return self.poison(e),
        };
        match (completion.user_data, &flight.stage) {
            (TAG_WRITE, Stage::Writing) => {
                assert_eq!(len, flight.len, "short WAL write");
                self.bytes_since_sync += len as u64;
                self.written_lsn = flight.last_lsn;
                let dsync = self.config.sync_mode == SyncMode::WriteDsync;
                if !flight.needs_sync {
                    self.flight = None;
                } else if dsync {
                    self.complete_sync();
                } else {
                    flight.stage = Stage::Syncing;
                    if let Err(e) = self.file.submit(TAG_SYNC, Op::SyncData) {
                        self.poison(e);
                    }
                }
            }
            (TAG_SYNC, Stage::Syncing) => self.complete_sync(),
            (tag, stage) => panic!("completion {tag} does not match the flush stage {stage:?}"),
        }
    }

    fn complete_sync(&mut self) {
        let flight = self
            .flight
            .take()
            .expect("a sync completes a flush in flight");
        assert!(flight.last_lsn > self.durable_lsn, "durable LSN must grow");
        self.durable_lsn = flight.last_lsn;
        if flight.starts_segment {
            self.headed_seq = flight.seq;
        }
        self.stats.syncs_count += 1;
        self.stats.bytes_per_sync.record(self.bytes_since_sync);
        self.bytes_since_sync = 0;
    }

    fn poison(&mut self, error: IoError) {
        tracing::error!(%error, "WAL poisoned: a write or sync failed; reopen to recover");
        self.flight = None;
        self.staged.clear();
        self.staged_bytes = 0;
        if self.poisoned.is_none() {
            self.poisoned = Some(error);
        }
    }

    fn fail_spare(&mut self, error: IoError) -> WalError {
        if error.kind == IoErrorKind::NoSpace {
            tracing::warn!(%error, "cannot preallocate the next WAL segment: disk full");
            let name = segment_name(self.seq + 1);
            self.spare = Spare::Idle;
            if self.vfs.remove(&name).is_err() {
                tracing::warn!(name, "could not remove a partly preallocated segment");
            }
            self.no_space = Some(error.clone());
            WalError::NoSpace(error)
        } else {
            self.poison(error.clone());
            WalError::Poisoned(error)
        }
    }

    fn advance_spare(&mut self) -> bool {
        let mut completions = std::mem::take(&mut self.completions);
        let result = segment::advance(
            &mut self.spare,
            self.config.segment_size_bytes,
            &mut completions,
        );
        self.completions = completions;
        match result {
            Ok(progressed) => progressed,
            Err(e) => {
                self.fail_spare(e);
                true
            }
        }
    }

    fn start_spare(&mut self) {
        if self.no_space.is_some() || self.poisoned.is_some() || !self.spare.is_idle() {
            return;
        }
        match segment::start(
            &mut self.vfs,
            &mut self.pool,
            self.seq + 1,
            self.config.segment_size_bytes,
        ) {
            Ok(spare) => {
                if matches!(spare, Spare::Filling { .. }) {
                    self.stats.segments_created += 1;
                } else {
                    self.stats.segments_recycled += 1;
                }
                self.spare = spare;
            }
            Err(e) => {
                self.fail_spare(e);
            }
        }
    }

    fn flush_due(&self, now: u64) -> bool {
        let Some(front) = self.staged.front() else {
            return false;
        };
        if self.gated() {
            return false;
        }
        if front.full || front.first_lsn <= self.flush_requested_lsn {
            return true;
        }
        if self.staged_bytes * 2 >= self.config.buffer_bytes_max {
            return true;
        }
        let delay_max = match self.config.sync_policy {
            SyncPolicy::Always | SyncPolicy::None => self.config.flush_delay_ns_max,
            SyncPolicy::Periodic { interval_ms } => interval_ms.saturating_mul(1_000_000),
        };
        now.saturating_sub(front.oldest_ns) >= delay_max
    }

    /// When `poll` should next be called for a flush to start on time (None: nothing waits on
    /// the clock). While a flush is in flight the next one waits for its completion, not for a
    /// time, so there is no deadline: an owner that polled on a past deadline would spin.
    pub fn flush_deadline_ns(&self) -> Option<u64> {
        if self.flight.is_some() || self.gated() {
            return None;
        }
        let front = self.staged.front()?;
        let delay_max = match self.config.sync_policy {
            SyncPolicy::Always | SyncPolicy::None => self.config.flush_delay_ns_max,
            SyncPolicy::Periodic { interval_ms } => interval_ms.saturating_mul(1_000_000),
        };
        Some(front.oldest_ns.saturating_add(delay_max))
    }

    /// Starts flushing the oldest batch; false if it must wait for the next segment.
    fn start_flush(&mut self) -> bool {
        let batch = self.staged.pop_front().expect("flush_due saw a batch");
        let switched = batch.seq == self.seq || self.switch_segment(&batch);
        if self.poisoned.is_some() {
            // Preparing the next segment failed and poisoned the log, which dropped every
            // staged batch: this one goes with them.
            return false;
        }
        if !switched {
            self.staged.push_front(batch);
            return false;
        }
        self.stalled = false;
        let Batch { mut buf, fill, .. } = batch;
        let len = usize::try_from(align_up(fill as u64)).expect("batch fits in memory");
        // A reused buffer holds old bytes past `fill`: the padding must read as zeroes so that
        // no stale, valid-looking record follows the batch on disk.
        buf[fill..len].fill(0);
        buf.set_len(len);
        let needs_sync = self.config.sync_policy != SyncPolicy::None || batch.starts_segment;
        let op = if needs_sync && self.config.sync_mode == SyncMode::WriteDsync {
            Op::WriteDsync {
                offset: batch.offset,
                buf,
            }
        } else {
            Op::Write {
                offset: batch.offset,
                buf,
            }
        };
        self.tail = (batch.seq, batch.offset + len as u64);
        self.staged_bytes -= fill;
        self.stats.flushes_count += 1;
        self.stats.bytes_written += len as u64;
        self.stats.records_per_commit.record(batch.records);
        self.stats.bytes_per_commit.record(len as u64);
        self.flight = Some(Flight {
            seq: batch.seq,
            last_lsn: batch.last_lsn,
            len,
            needs_sync,
            starts_segment: batch.starts_segment,
            stage: Stage::Writing,
        });
        if let Err(e) = self.file.submit(TAG_WRITE, op) {
            self.poison(e);
        }
        true
    }

    /// Switches to the prepared next segment for `batch`; false if it is not ready yet.
    fn switch_segment(&mut self, batch: &Batch) -> bool {
        assert_eq!(
            batch.seq,
            self.seq + 1,
            "batches may run at most one segment ahead"
        );
        assert!(
            batch.starts_segment,
            "the first batch of a segment carries its header"
        );
        let Some((seq, file)) = self.spare.take_ready() else {
            if !self.stalled {
                self.stalled = true;
                self.stats.rollover_stalls += 1;
            }
            self.start_spare();
            return false;
        };
        assert_eq!(
            seq, batch.seq,
            "the spare was prepared for the next segment"
        );
        self.file = file;
        self.seq = seq;
        self.segments.push_back(SegmentInfo {
            seq,
            first_lsn: batch.first_lsn,
        });
        self.stats.rollovers_count += 1;
        self.start_spare();
        true
    }

    /// After a checkpoint covering every LSN below `lsn` is durable: recycles or deletes the
    /// segments holding only such records, then syncs the directory. Returns how many.
    pub fn release_below(&mut self, lsn: Lsn) -> Result<usize, WalError> {
        self.check_poisoned()?;
        let mut released = 0;
        while let (Some(first), Some(second)) = (self.segments.front(), self.segments.get(1)) {
            if second.first_lsn > lsn || first.seq >= self.headed_seq {
                break;
            }
            let seq = first.seq;
            let result = segment::release(
                &mut self.vfs,
                &mut self.pool,
                seq,
                self.config.free_segments_max,
            );
            let recycled = result.map_err(|e| self.fail_release(e))?;
            if !recycled {
                self.stats.segments_deleted += 1;
            }
            self.segments.pop_front();
            released += 1;
        }
        if released > 0 {
            self.vfs.sync_dir().map_err(|e| self.fail_release(e))?;
        }
        if self.spare.is_idle() {
            self.no_space = None;
            self.start_spare();
        }
        Ok(released)
    }

    fn fail_release(&mut self, error: IoError) -> WalError {
        self.poison(error.clone());
        WalError::Poisoned(error)
    }

    fn check_poisoned(&self) -> Result<(), WalError> {
        match &self.poisoned {
            Some(e) => Err(WalError::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<(), WalError> {
        self.check_poisoned()?;
        match &self.no_space {
            Some(e) => Err(WalError::NoSpace(e.clone())),
            None => Ok(()),
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.staged_bytes + self.flight.as_ref().map_or(0, |f| f.len)
    }

    /// Every record up to this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    /// Every record up to this LSN has been written, synced or not.
    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }

    /// True while a flush or a segment preparation is on the disk: the owner should call `poll`
    /// once some I/O completes. (Records waiting for a flush are announced by
    /// [`Wal::flush_deadline_ns`] instead.)
    pub fn io_in_flight(&self) -> bool {
        self.flight.is_some() || matches!(self.spare, Spare::Filling { .. } | Spare::Syncing { .. })
    }

    /// Bytes written to segments so far, padding and segment headers included (what the log
    /// takes on disk, which a checkpoint lets it release). Cheaper than `stats()`.
    pub fn bytes_written(&self) -> u64 {
        self.stats.bytes_written
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Writes with LSN up to this may be acknowledged to clients, under the sync policy.
    pub fn ack_lsn(&self) -> Lsn {
        match self.config.sync_policy {
            SyncPolicy::Always => self.durable_lsn,
            SyncPolicy::Periodic { .. } | SyncPolicy::None => self.next_lsn - 1,
        }
    }

    /// The poisoning error, if a write or sync failed.
    pub fn poisoned(&self) -> Option<&IoError> {
        self.poisoned.as_ref()
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    pub fn stats(&self) -> WalStats {
        let mut stats = self.stats.clone();
        stats.durable_lsn = self.durable_lsn;
        stats.next_lsn = self.next_lsn;
        stats.segments_count = self.segments.len() as u64;
        stats.segments_bytes = stats.segments_count * self.config.segment_size_bytes;
        stats.free_segments_count =
            self.pool.len() as u64 + u64::from(self.spare.ready_seq().is_some());
        stats
    }
}
