//! One shard: a B+tree made durable by a write-ahead log, with checkpoints and recovery.
//!
//! The path of a write: [`Shard::put`] checks the input, appends a WAL record (which may be
//! refused with `Busy` while the log's buffer is full, before anything changed), then applies the
//! change to the tree in memory and returns the record's LSN. The caller answers the client once
//! [`Shard::acked_lsn`] reaches that LSN: under `SyncPolicy::Always` that is when a group commit
//! made the record durable. [`Shard::poll`] drives the log's I/O and the checkpoint in slices.
//!
//! A checkpoint writes the tree's dirty pages copy-on-write and flips its superblock with the LSN
//! of the last change it includes; afterwards the WAL segments wholly below that LSN are
//! recycled. Recovery ([`Shard::open`]) is the newest valid superblock, then WAL redo from the
//! checkpoint LSN + 1, then the value log's accounting rebuilt from the tree.
//!
//! Values above the inline threshold (`TreeConfig::value_inline_max`, a quarter page by default)
//! go to the value log ([`vlog`]): the WAL record and the leaf hold a pointer, and the WAL holds
//! that record back until the value is durable. Garbage collection ([`gc`]) moves live values out
//! of mostly-dead segments in slices driven by `poll`; a checkpoint then lets them be deleted.
//! [`Shard::start_get`] (`aget`) is the GET that does not block on a value-log read: the read
//! is submitted, `poll` reaps it, and [`Shard::take_gets`] hands out the answer.
//!
//! Transactions ([`Shard::apply_txn`], two-phase commit through [`Shard::prepare_txn`] and
//! friends) live in `txn.rs`; keys a prepared transaction holds are locked, and every access to
//! them answers `ShardError::Locked`. Recovery also reads the WAL records below the checkpoint
//! that transactions still retain, to rebuild their state.
//!
//! Invariants:
//! - Every change in the tree has a WAL record with an LSN <= `wal.next_lsn() - 1`, and the tree
//!   holds exactly the changes of LSNs 1..next_lsn (after recovery: of the recovered prefix).
//! - A checkpoint's superblock (with checkpoint LSN X) is written only once the WAL holds every
//!   record <= X durably, so the log never restarts below a checkpoint and no LSN is reused.
//! - No read is answered with a value whose write is not yet acknowledged: [`Shard::read_barrier`]
//!   names the LSN a reader of a key must wait for.
//! - After any failed write or sync the shard is failed: every later call returns the first
//!   error until the shard is reopened (which recovers).
//! - No WAL record pointing into the value log is written before the value is durable; every
//!   segment's live bytes equal the bytes of the records the tree, or a prepared and undecided
//!   transaction (`txn.rs`), points at in it.

mod aget;
pub mod datadir;
mod gc;
pub mod record;
mod ttl;
mod txn;
pub mod vlog;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_aget;
#[cfg(test)]
mod tests_vcache;
#[cfg(test)]
mod tests_vlog;

use crate::clock::Clock;
use crate::constants::{VALUE_KIND_POINTER, VALUE_SIZE_MAX};
use crate::storage::Vfs;
use crate::tree::{ScanPage, ShardMeta, Tree, TreeConfig, TreeError, TreeStats, Value};
use crate::wal::{Lsn, RecoveryReport, Wal, WalConfig, WalError, WalStats};
use record::Change;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::rc::Rc;

pub use crate::wal::{SyncMode, SyncPolicy};
pub use aget::{FinishedGet, GetStart, GetTicket};
pub use ttl::{is_expired, SweepStats, CLOCK_DRIFT_LOG_MS};
pub use txn::TxnStats;
use vlog::ValueLog;
pub use vlog::{Pointer, VlogConfig, VlogError, VlogStats};

/// Bytes a record costs in the log beyond its payload (header), for checkpoint accounting.
const RECORD_OVERHEAD_BYTES: u64 = 32;

/// Settings of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    /// The tree; its `value_inline_max` is also the value-log threshold: larger values go to
    /// the value log.
    pub tree: TreeConfig,
    pub wal: WalConfig,
    /// A checkpoint starts once this many WAL bytes were appended since the last one started,
    /// counted as records or as bytes written to the log's segments (padding included),
    /// whichever is more: small flushes under `sync = none` pad each record to a block, and the
    /// segments they fill are released only by a checkpoint.
    pub checkpoint_wal_bytes: u64,
    /// ...or once the tree's dirty pages reach this many bytes.
    pub checkpoint_dirty_bytes: u64,
    /// ...or once this long has passed since the last one, if anything changed.
    pub checkpoint_interval_ms: u64,
    /// Bytes of pages one `poll` writes for a running checkpoint: the slice that bounds how long
    /// foreground requests wait behind it.
    pub checkpoint_slice_bytes: usize,
    /// Keys the expiry sweeper examines per step (0 turns the sweeper off).
    pub sweep_keys_per_step: usize,
    /// Time between two sweeper steps.
    pub sweep_interval_ms: u64,
    /// The value log and its garbage collection.
    pub vlog: VlogConfig,
}

impl ShardConfig {
    /// Defaults for shard `shard_id`.
    pub fn new(shard_id: u32) -> ShardConfig {
        ShardConfig {
            tree: TreeConfig {
                shard_id,
                ..TreeConfig::default()
            },
            wal: WalConfig::new(shard_id),
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_dirty_bytes: 32 << 20,
            checkpoint_interval_ms: 60_000,
            checkpoint_slice_bytes: 256 << 10,
            sweep_keys_per_step: 256,
            sweep_interval_ms: 100,
            vlog: VlogConfig::default(),
        }
    }

    pub fn shard_id(&self) -> u32 {
        self.tree.shard_id
    }
}

/// What went wrong in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardError {
    /// The key is longer than the engine's limit.
    KeyTooLarge { size: usize, max: usize },
    /// The value is larger than the engine's limit.
    ValueTooLarge { size: usize, max: usize },
    /// Too many writes wait for the disk: retry after the next group commit.
    Busy { detail: String },
    /// The disk is full: writes are refused, reads still work.
    NoSpace { detail: String },
    /// An I/O failure or corruption: the shard serves nothing until reopened and recovered.
    Failed { detail: String },
    /// The shard could not be opened: its files are damaged or do not match the configuration.
    Open { detail: String },
    /// The key is locked by a prepared cross-shard transaction: nothing was done. Retry once
    /// `holder` is finished on this shard (the server parks the call per key).
    Locked {
        key: Vec<u8>,
        holder: crate::txn::TxnId,
    },
    /// A transaction is malformed (duplicate indexes, too many items).
    InvalidTxn { detail: String },
    /// A transaction's record would exceed the WAL's record limit, or its values bound for the
    /// value log its buffer (`VlogConfig::buffer_bytes_max`).
    TxnTooLarge { size: usize, max: usize },
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::KeyTooLarge { size, max } => {
                write!(f, "key of {size} bytes exceeds the limit of {max} bytes")
            }
            ShardError::ValueTooLarge { size, max } => {
                write!(f, "value of {size} bytes exceeds the limit of {max} bytes")
            }
            ShardError::Busy { detail } => write!(f, "busy: {detail}"),
            ShardError::NoSpace { detail } => write!(f, "no space: {detail}"),
            ShardError::Failed { detail } => write!(f, "shard failed: {detail}"),
            ShardError::Open { detail } => write!(f, "cannot open shard: {detail}"),
            ShardError::Locked { key, holder } => write!(
                f,
                "key {} is locked by {holder}",
                String::from_utf8_lossy(key)
            ),
            ShardError::InvalidTxn { detail } => write!(f, "invalid transaction: {detail}"),
            ShardError::TxnTooLarge { size, max } => write!(
                f,
                "transaction of {size} bytes exceeds the limit of {max} bytes"
            ),
        }
    }
}

impl std::error::Error for ShardError {}

impl From<TreeError> for ShardError {
    fn from(error: TreeError) -> ShardError {
        match error {
            TreeError::KeyTooLarge { size, max } => ShardError::KeyTooLarge { size, max },
            TreeError::ValueTooLarge { size, max } => ShardError::ValueTooLarge { size, max },
            other => ShardError::Failed {
                detail: other.to_string(),
            },
        }
    }
}

impl From<VlogError> for ShardError {
    fn from(error: VlogError) -> ShardError {
        match error {
            VlogError::Busy { .. } => ShardError::Busy {
                detail: error.to_string(),
            },
            VlogError::NoSpace(_) => ShardError::NoSpace {
                detail: error.to_string(),
            },
            other => ShardError::Failed {
                detail: other.to_string(),
            },
        }
    }
}

impl From<WalError> for ShardError {
    fn from(error: WalError) -> ShardError {
        match error {
            WalError::Busy { .. } => ShardError::Busy {
                detail: error.to_string(),
            },
            WalError::NoSpace(_) => ShardError::NoSpace {
                detail: error.to_string(),
            },
            other => ShardError::Failed {
                detail: other.to_string(),
            },
        }
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// True when the shard was created empty by this open.
    pub created: bool,
    /// The checkpoint LSN of the superblock recovery started from.
    pub checkpoint_lsn: Lsn,
    /// The WAL's account of redo: records replayed, torn tail truncated.
    pub wal: RecoveryReport,
}

/// Counters and gauges of one shard, for INFO.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardStats {
    pub shard_id: u32,
    pub tree: TreeStats,
    pub wal: WalStats,
    pub acked_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub checkpoints: u64,
    /// Duration of the last completed checkpoint, from start to superblock flip.
    pub last_checkpoint_ns: u64,
    pub checkpoint_running: bool,
    pub puts: u64,
    pub deletes: u64,
    /// The expiry sweeper's counters, and the clock drift.
    pub sweep: SweepStats,
    /// The value log: segments, live and dead bytes, garbage collection.
    pub vlog: VlogStats,
    pub gets: u64,
    pub scans: u64,
    /// The transactions' counters and gauges.
    pub txn: TxnStats,
}

#[derive(Debug)]
struct RunningCheckpoint {
    lsn: Lsn,
    started_ns: u64,
}

/// One shard's storage; see the module doc.
pub struct Shard<V: Vfs + Clone> {
    config: ShardConfig,
    clock: Rc<dyn Clock>,
    tree: Tree<V::File>,
    wal: Wal<V, Rc<dyn Clock>>,
    /// Keys written by records not yet acknowledged, with the newest such LSN of each.
    unacked_keys: HashMap<Vec<u8>, Lsn>,
    /// The same writes in LSN order, to forget them as acknowledgements advance.
    unacked_order: VecDeque<(Lsn, Vec<u8>)>,
    checkpoint: Option<RunningCheckpoint>,
    checkpoint_requested: bool,
    wal_bytes_since_checkpoint: u64,
    /// `Wal::bytes_written` when the last checkpoint started.
    wal_disk_bytes_at_checkpoint: u64,
    last_checkpoint_started_ns: u64,
    failed: Option<ShardError>,
    scratch: Vec<u8>,
    stats: ShardStats,
    expiry_clock: ttl::ExpiryClock,
    sweeper: ttl::Sweeper,
    txn: txn::TxnState,
    vlog: ValueLog<V>,
    gc: gc::Collector,
    /// GETs whose value read is in flight (`aget`).
    pending_gets: aget::PendingGets,
}

impl<V: Vfs + Clone> Shard<V> {
    /// Opens the shard stored in `vfs` (its own directory), creating it if the directory holds
    /// no page file, and recovers: newest valid superblock, WAL redo, value-log accounting.
    pub fn open(
        mut vfs: V,
        config: ShardConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<(Shard<V>, OpenReport), ShardError> {
        let open_err = |detail: String| ShardError::Open { detail };
        config.vlog.validate().map_err(open_err)?;
        let created = !vfs.exists(crate::constants::PAGE_FILE_NAME);
        let (mut tree, checkpoint_lsn, meta) = if created {
            let segments = vfs.list().map_err(|e| open_err(e.to_string()))?;
            if segments
                .iter()
                .any(|name| name.starts_with("wal-") || name.starts_with("vlog-"))
            {
                return Err(open_err(format!(
                    "{} holds WAL or value-log segments but no page file: the shard's directory \
                     is damaged",
                    vfs.location()
                )));
            }
            let tree = Tree::create(&mut vfs, config.tree.clone());
            (
                tree.map_err(|e| open_err(e.to_string()))?,
                0,
                ShardMeta::default(),
            )
        } else {
            let (tree, info) =
                Tree::open(&mut vfs, config.tree.clone()).map_err(|e| open_err(e.to_string()))?;
            (tree, info.checkpoint_lsn, info.meta)
        };
        let replay_from = checkpoint_lsn + 1;
        // Records at or below the checkpoint are retained only for the txn state they rebuild.
        let mut txn_state = txn::TxnState::default();
        let mut redo_pointers = false;
        let (wal, wal_report) = Wal::open_retained(
            vfs.clone(),
            clock.clone(),
            config.wal.clone(),
            replay_from,
            |record| {
                if crate::txn::record::is_txn_record(record.record_type) {
                    let decoded =
                        crate::txn::record::TxnRecord::decode(record.record_type, record.payload)
                            .map_err(|e| e.to_string())?;
                    redo_pointers |= decoded.has_pointers();
                    return txn_state.redo(&mut tree, record.lsn, decoded, checkpoint_lsn);
                }
                if record.lsn < replay_from {
                    return Ok(());
                }
                let change = Change::decode(record.record_type, record.payload)
                    .map_err(|e| e.to_string())?;
                redo_pointers |= matches!(change, Change::PutPointer { .. });
                apply(&mut tree, change).map_err(|e| e.to_string())
            },
        )
        .map_err(|e| open_err(e.to_string()))?;
        txn_state.finish_recovery().map_err(open_err)?;
        let (mut vlog, damaged) = ValueLog::open(
            vfs,
            config.vlog.clone(),
            config.shard_id(),
            config.wal.sync_mode,
            meta.vlog_segment_next,
        )
        .map_err(|e| open_err(e.to_string()))?;
        if vlog.has_segments() || redo_pointers || meta.vlog_segment_next > 0 {
            gc::rebuild_accounting(&mut tree, &mut vlog, &damaged).map_err(open_err)?;
        }
        // In-doubt transactions' values are live too, though no leaf points at them yet.
        gc::adopt_prepared(&mut vlog, &damaged, txn_state.prepared_pointers()).map_err(open_err)?;
        let end_lsn = wal.next_lsn() - 1;
        vlog.retire_dead(end_lsn);
        let now = clock.monotonic_ns();
        let expiry_clock = ttl::ExpiryClock::open(clock.as_ref(), &meta, config.shard_id());
        let stats = ShardStats {
            shard_id: config.shard_id(),
            checkpoint_lsn,
            ..ShardStats::default()
        };
        let shard = Shard {
            config,
            clock,
            tree,
            wal,
            unacked_keys: HashMap::new(),
            unacked_order: VecDeque::new(),
            checkpoint: None,
            checkpoint_requested: false,
            wal_bytes_since_checkpoint: 0,
            wal_disk_bytes_at_checkpoint: 0,
            last_checkpoint_started_ns: now,
            failed: None,
            scratch: Vec::new(),
            stats,
            expiry_clock,
            sweeper: ttl::Sweeper::default(),
            txn: txn_state,
            vlog,
            gc: gc::Collector::default(),
            pending_gets: aget::PendingGets::default(),
        };
        let report = OpenReport {
            created,
            checkpoint_lsn,
            wal: wal_report,
        };
        Ok((shard, report))
    }

    /// The value of `key`, if present and not expired. The caller must not answer before
    /// [`Shard::read_barrier`] is acknowledged. A value in the value log costs one read, none
    /// while it is not yet written or while the value cache holds it.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Value>, ShardError> {
        let Some((kind, mut value)) = self.lookup(key)? else {
            return Ok(None);
        };
        if kind == VALUE_KIND_POINTER {
            value.bytes = self.resolve(key, &value.bytes)?;
        }
        Ok(Some(value))
    }

    /// A GET's leaf lookup: the value's kind and the value as the leaf holds it (a pointer for
    /// a value-log value), unless absent or expired.
    fn lookup(&mut self, key: &[u8]) -> Result<Option<(u8, Value)>, ShardError> {
        self.check_failed()?;
        self.check_unlocked_key(key)?;
        self.stats.gets += 1;
        let result = self.tree.get_with(key, |value| {
            (
                value.kind,
                Value {
                    bytes: value.bytes.to_vec(),
                    expiry_ms: value.expiry_ms,
                    version: value.version,
                },
            )
        });
        let Some((kind, value)) = self.check_tree(result)? else {
            return Ok(None);
        };
        Ok(self.unexpired(Some(value)).map(|value| (kind, value)))
    }

    /// The pointer a leaf's pointer bytes hold; malformed bytes fail the shard.
    fn decode_pointer(&mut self, key: &[u8], pointer: &[u8]) -> Result<Pointer, ShardError> {
        Pointer::decode(pointer).ok_or_else(|| {
            let detail = format!("key {key:?} holds a malformed value-log pointer");
            self.classify(ShardError::Failed { detail })
        })
    }

    /// The value a leaf's pointer bytes name.
    fn resolve(&mut self, key: &[u8], pointer: &[u8]) -> Result<Vec<u8>, ShardError> {
        let pointer = self.decode_pointer(key, pointer)?;
        let result = self.vlog.read(key, &pointer);
        result.map_err(|error| self.classify(ShardError::from(error)))
    }

    /// Up to `limit` entries in the range, ascending or descending, resuming after
    /// `continuation`. Every write the entries reflect is acknowledged only once
    /// [`Shard::scan_barrier`] is.
    pub fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
        continuation: Option<&[u8]>,
    ) -> Result<ScanPage, ShardError> {
        self.check_failed()?;
        self.check_unlocked_range(start, end)?;
        self.stats.scans += 1;
        self.scan_unexpired(start, end, limit, reverse, continuation)
    }

    /// Stores `value` under `key` (expiry in wall-clock ms, 0 = none); returns the LSN to wait
    /// for before acknowledging. Values above the inline threshold go to the value log.
    pub fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: u64) -> Result<Lsn, ShardError> {
        self.check_failed()?;
        self.check_sizes(key, value)?;
        self.check_unlocked_key(key)?;
        let old = self.pointer_of(key)?;
        let lsn = if value.len() > self.tree.config().value_inline_max() {
            self.put_large(key, value, expiry_ms)?
        } else {
            let lsn = self.log(Change::Put {
                key,
                value,
                expiry_ms,
            })?;
            let result = self.tree.put(key, value, expiry_ms);
            self.check_tree(result)?;
            lsn
        };
        if let Some(old) = old {
            self.vlog.release(&old, key.len());
        }
        self.stats.puts += 1;
        if expiry_ms != 0 {
            self.sweeper.note_expiring_write();
        }
        self.remember_unacked(key, lsn);
        Ok(lsn)
    }

    /// Appends the value to the value log, logs a pointer record and stores the pointer.
    fn put_large(&mut self, key: &[u8], value: &[u8], expiry_ms: u64) -> Result<Lsn, ShardError> {
        let result = self.vlog.append(key, value, self.wal.next_lsn());
        let pointer = result.map_err(|error| self.classify(ShardError::from(error)))?;
        let encoded = pointer.encode();
        let logged = self.log(Change::PutPointer {
            key,
            pointer: encoded,
            expiry_ms,
        });
        let lsn = match logged {
            Ok(lsn) => lsn,
            Err(error) => {
                self.vlog.unappend(&pointer, key.len());
                return Err(error);
            }
        };
        let result = self
            .tree
            .put_kind(key, VALUE_KIND_POINTER, &encoded, expiry_ms);
        self.check_tree(result)?;
        self.vlog.remember(key, &pointer, value);
        Ok(lsn)
    }

    /// The value-log pointer `key` holds, if any (expired or not). Free when the shard has no
    /// value-log segment: then no key holds one.
    fn pointer_of(&mut self, key: &[u8]) -> Result<Option<Pointer>, ShardError> {
        if !self.vlog.has_segments() {
            return Ok(None);
        }
        let result = self.tree.get_with(key, |value| {
            (value.kind == VALUE_KIND_POINTER)
                .then(|| Pointer::decode(value.bytes))
                .flatten()
        });
        Ok(self.check_tree(result)?.flatten())
    }

    /// Removes `key`; returns whether it was present (and not expired) and the LSN to wait for
    /// before answering (for an absent key: the LSN of the unacknowledged write that made it
    /// absent, if any).
    pub fn delete(&mut self, key: &[u8]) -> Result<(bool, Lsn), ShardError> {
        self.check_failed()?;
        self.check_sizes(key, b"")?;
        self.check_unlocked_key(key)?;
        let result = self.tree.get_with(key, |value| value.expiry_ms);
        let expiry = self.check_tree(result)?;
        let now = self.now_ms();
        if expiry.is_none_or(|expiry_ms| expiry_ms != 0 && expiry_ms <= now) {
            return Ok((false, self.read_barrier(key).unwrap_or(0)));
        }
        let lsn = self.remove(key)?;
        self.stats.deletes += 1;
        Ok((true, lsn))
    }

    /// Logs and applies the removal of `key`, which is in the tree (expired or not).
    fn remove(&mut self, key: &[u8]) -> Result<Lsn, ShardError> {
        let old = self.pointer_of(key)?;
        let lsn = self.log(Change::Delete { key })?;
        let result = self.tree.delete(key);
        self.check_tree(result)?;
        if let Some(old) = old {
            self.vlog.release(&old, key.len());
        }
        self.remember_unacked(key, lsn);
        Ok(lsn)
    }

    /// The LSN a reader of `key` must see acknowledged before answering, if a write of it is
    /// still unacknowledged.
    pub fn read_barrier(&self, key: &[u8]) -> Option<Lsn> {
        self.unacked_keys.get(key).copied()
    }

    /// The LSN a scan must see acknowledged before answering: any unacknowledged write may be
    /// in its range.
    pub fn scan_barrier(&self) -> Option<Lsn> {
        self.unacked_order.back().map(|&(lsn, _)| lsn)
    }

    /// The LSN of the last record logged (writes, sweeper deletes and value-log moves).
    pub fn last_lsn(&self) -> Lsn {
        self.wal.next_lsn() - 1
    }

    /// Writes with an LSN up to this may be acknowledged under the sync policy.
    pub fn acked_lsn(&self) -> Lsn {
        self.wal.ack_lsn()
    }

    /// Drives the log's I/O and a running checkpoint by one slice; never blocks on the disk
    /// (beyond what the Storage itself does). Starts a checkpoint when one is due.
    pub fn poll(&mut self) -> Result<(), ShardError> {
        self.check_failed()?;
        self.drive_logs()?;
        self.forget_acked();
        self.drive_checkpoint()?;
        self.sweep_step()?;
        self.gc_step()
    }

    /// Drives the value log's flushes and the WAL's, the WAL held back to the records whose
    /// values are durable.
    fn drive_logs(&mut self) -> Result<(), ShardError> {
        for _ in 0..4 {
            let result = self.vlog.poll();
            let progressed = result.map_err(|error| self.classify(ShardError::from(error)))?;
            self.wal.set_flush_gate(self.vlog.durable_gate());
            let result = self.wal.poll();
            self.check_wal(result)?;
            if !progressed {
                break;
            }
        }
        Ok(())
    }

    /// Makes every value and record appended so far durable, blocking on the disk.
    fn flush_logs_and_wait(&mut self) -> Result<(), ShardError> {
        let result = self.vlog.flush_and_wait();
        result.map_err(|error| self.classify(ShardError::from(error)))?;
        self.wal.set_flush_gate(self.vlog.durable_gate());
        let result = self.wal.flush_and_wait();
        self.check_wal(result).map(|_| ())
    }

    /// True while the logs' I/O (a flush, a segment preparation) is on the disk: call `poll`
    /// again once some I/O completes.
    pub fn io_in_flight(&self) -> bool {
        self.wal.io_in_flight() || self.vlog.io_in_flight()
    }

    /// The latest monotonic time at which `poll` must run again (a group-commit delay, a
    /// periodic sync, a checkpoint interval, a sweeper step, or now for the next slice of a
    /// running checkpoint); None if nothing is scheduled. A checkpoint waiting for the log to
    /// become durable has no deadline: the log's I/O completion is what it waits for.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let checkpoint = match &self.checkpoint {
            Some(running) => self.checkpoint_covered(running.lsn).then_some(0),
            None => (self.stats.puts + self.stats.deletes > 0).then(|| {
                self.last_checkpoint_started_ns
                    .saturating_add(self.config.checkpoint_interval_ms.saturating_mul(1_000_000))
            }),
        };
        [
            self.wal.flush_deadline_ns(),
            checkpoint,
            self.sweeper.deadline_ns(),
            self.gc_deadline_ns(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Asks for a checkpoint at the next `poll`.
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }

    /// Runs a checkpoint of everything written so far to completion, blocking on the disk.
    pub fn checkpoint(&mut self) -> Result<(), ShardError> {
        self.check_failed()?;
        if self.checkpoint.is_some() {
            self.finish_checkpoint()?;
        }
        self.start_checkpoint()?;
        self.finish_checkpoint()
    }

    /// A final checkpoint, for clean shutdown: a restart then replays nothing.
    pub fn close(mut self) -> Result<(), ShardError> {
        self.checkpoint()
    }

    /// The O(n) integrity check of the tree: key order, fences, fill, page accounting,
    /// checksums.
    pub fn check_integrity(&mut self) -> Result<(), ShardError> {
        let result = self.tree.check_integrity();
        self.check_tree(result)?;
        self.check_vlog_accounting()
    }

    pub fn stats(&self) -> ShardStats {
        let mut stats = self.stats.clone();
        stats.tree = self.tree.stats();
        stats.wal = self.wal.stats();
        stats.acked_lsn = self.wal.ack_lsn();
        stats.checkpoint_running = self.checkpoint.is_some();
        stats.sweep = self.sweeper.stats.clone();
        stats.txn = self.txn_stats();
        stats.vlog = self.vlog.stats();
        stats
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    fn check_sizes(&self, key: &[u8], value: &[u8]) -> Result<(), ShardError> {
        let key_max = crate::constants::KEY_SIZE_MAX;
        if key.len() > key_max {
            return Err(ShardError::KeyTooLarge {
                size: key.len(),
                max: key_max,
            });
        }
        let value_max = VALUE_SIZE_MAX;
        if value.len() > value_max {
            return Err(ShardError::ValueTooLarge {
                size: value.len(),
                max: value_max,
            });
        }
        Ok(())
    }

    fn log(&mut self, change: Change<'_>) -> Result<Lsn, ShardError> {
        change.encode(&mut self.scratch);
        let result = self.wal.append(change.record_type(), &self.scratch);
        let lsn = self.check_wal(result)?;
        self.wal_bytes_since_checkpoint += self.scratch.len() as u64 + RECORD_OVERHEAD_BYTES;
        Ok(lsn)
    }

    fn remember_unacked(&mut self, key: &[u8], lsn: Lsn) {
        if lsn <= self.wal.ack_lsn() {
            return;
        }
        self.unacked_keys.insert(key.to_vec(), lsn);
        self.unacked_order.push_back((lsn, key.to_vec()));
    }

    fn forget_acked(&mut self) {
        let acked = self.wal.ack_lsn();
        while let Some((lsn, _)) = self.unacked_order.front() {
            if *lsn > acked {
                break;
            }
            let (lsn, key) = self.unacked_order.pop_front().expect("front exists");
            if self.unacked_keys.get(&key) == Some(&lsn) {
                self.unacked_keys.remove(&key);
            }
        }
    }

    fn checkpoint_due(&self, now_ns: u64) -> bool {
        if self.checkpoint_requested {
            return true;
        }
        let changed = self.wal.next_lsn() - 1 > self.stats.checkpoint_lsn;
        if !changed {
            return false;
        }
        let interval_ns = self.config.checkpoint_interval_ms.saturating_mul(1_000_000);
        let disk_bytes =
            (self.wal.bytes_written()).saturating_sub(self.wal_disk_bytes_at_checkpoint);
        self.wal_bytes_since_checkpoint.max(disk_bytes) >= self.config.checkpoint_wal_bytes
            || self.tree.stats().dirty_bytes >= self.config.checkpoint_dirty_bytes
            || now_ns.saturating_sub(self.last_checkpoint_started_ns) >= interval_ns
    }

    fn start_checkpoint(&mut self) -> Result<(), ShardError> {
        let lsn = self.wal.next_lsn() - 1;
        let now = self.clock.monotonic_ns();
        let meta = ShardMeta {
            clock_floor_ms: self.now_ms(),
            clock_wall_ms: self.clock.wall_ms(),
            clock_monotonic_ns: now,
            vlog_segment_next: self.vlog.segment_next(),
        };
        let result = self.tree.begin_commit_with(lsn, meta);
        self.check_tree(result)?;
        self.checkpoint = Some(RunningCheckpoint {
            lsn,
            started_ns: now,
        });
        self.checkpoint_requested = false;
        self.wal_bytes_since_checkpoint = 0;
        self.wal_disk_bytes_at_checkpoint = self.wal.bytes_written();
        self.last_checkpoint_started_ns = now;
        tracing::debug!(shard = self.config.shard_id(), lsn, "checkpoint started");
        // The superblock may only name LSNs the log holds durably: ask for a flush now rather
        // than waiting for the batching thresholds.
        self.wal.flush();
        Ok(())
    }

    /// Whether the log holds every record the running checkpoint includes, as the superblock
    /// flip requires (under `SyncPolicy::None`: written, since nothing is ever synced).
    fn checkpoint_covered(&self, lsn: Lsn) -> bool {
        match self.config.wal.sync_policy {
            SyncPolicy::None => self.wal.written_lsn() >= lsn,
            _ => self.wal.durable_lsn() >= lsn,
        }
    }

    fn drive_checkpoint(&mut self) -> Result<(), ShardError> {
        let Some(running) = &self.checkpoint else {
            if self.checkpoint_due(self.clock.monotonic_ns()) {
                self.start_checkpoint()?;
            }
            return Ok(());
        };
        if !self.checkpoint_covered(running.lsn) {
            self.wal.flush();
            return Ok(());
        }
        let result = self.tree.commit_step(self.config.checkpoint_slice_bytes);
        if self.check_tree(result)? {
            self.complete_checkpoint()?;
        }
        Ok(())
    }

    fn finish_checkpoint(&mut self) -> Result<(), ShardError> {
        let Some(running) = &self.checkpoint else {
            return Ok(());
        };
        let lsn = running.lsn;
        self.flush_logs_and_wait()?;
        loop {
            let result = self.tree.commit_step(usize::MAX);
            if self.check_tree(result)? {
                break;
            }
        }
        debug_assert!(self.checkpoint_covered(lsn));
        self.complete_checkpoint()
    }

    fn complete_checkpoint(&mut self) -> Result<(), ShardError> {
        let running = self.checkpoint.take().expect("a checkpoint is running");
        let elapsed = self.clock.monotonic_ns().saturating_sub(running.started_ns);
        self.stats.checkpoints += 1;
        self.stats.checkpoint_lsn = running.lsn;
        self.stats.last_checkpoint_ns = elapsed;
        // Transactions may need older records: an unresolved Prepare, an unforgotten Decision.
        let retain_from = self.txn.retain_from(running.lsn);
        let result = self.wal.release_below(retain_from);
        let released = self.check_wal(result)?;
        let result = self.vlog.delete_retired(running.lsn);
        let deleted = result.map_err(|error| self.classify(ShardError::from(error)))?;
        tracing::debug!(
            shard = self.config.shard_id(),
            deleted,
            "value-log segments deleted"
        );
        tracing::debug!(
            shard = self.config.shard_id(),
            lsn = running.lsn,
            elapsed_us = elapsed / 1_000,
            released,
            "checkpoint done"
        );
        Ok(())
    }

    fn check_failed(&self) -> Result<(), ShardError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Passes input errors through and turns everything else into the shard's failure.
    fn check_tree<T>(&mut self, result: Result<T, TreeError>) -> Result<T, ShardError> {
        result.map_err(|error| self.classify(ShardError::from(error)))
    }

    fn check_wal<T>(&mut self, result: Result<T, WalError>) -> Result<T, ShardError> {
        result.map_err(|error| self.classify(ShardError::from(error)))
    }

    fn classify(&mut self, error: ShardError) -> ShardError {
        if let ShardError::Failed { detail } = &error {
            tracing::error!(shard = self.config.shard_id(), %detail, "shard failed");
            self.failed.get_or_insert_with(|| error.clone());
        }
        error
    }
}

/// Applies one logged change to the tree during redo, as `put` and `delete` did originally.
fn apply<F: crate::storage::Storage>(
    tree: &mut Tree<F>,
    change: Change<'_>,
) -> Result<(), TreeError> {
    match change {
        Change::Put {
            key,
            value,
            expiry_ms,
        } => tree.put(key, value, expiry_ms).map(|_| ()),
        Change::Delete { key } => tree.delete(key).map(|_| ()),
        Change::PutPointer {
            key,
            pointer,
            expiry_ms,
        } => tree
            .put_kind(key, VALUE_KIND_POINTER, &pointer, expiry_ms)
            .map(|_| ()),
        Change::Move { key, from, to } => {
            let holds_from = |value: crate::tree::ValueRef<'_>| {
                value.kind == VALUE_KIND_POINTER && value.bytes == from
            };
            tree.replace_if(key, holds_from, VALUE_KIND_POINTER, &to)
                .map(|_| ())
        }
    }
}
