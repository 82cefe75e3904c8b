//! The seam between the server and the storage engine: the only module that names
//! `jube_engine`'s shard API, so that changing the engine is a local edit.
//!
//! The server sees a shard as a [`ShardEngine`] trait object whose methods mirror
//! `jube_engine::shard::Shard` one for one (get/put/delete/scan, the non-blocking `poll` that
//! drives group commit and checkpoint slices, `acked_lsn`/`read_barrier`/`scan_barrier` for
//! acknowledgement, `checkpoint`, `close`, `stats`), with stats flattened to named counters for
//! INFO. The engine's files go through the runtime's `UringVfs` on the shard's core; creating a
//! data directory and `jubectl validate` use the engine's blocking `FileVfs`.
//!
//! Invariants: nothing here blocks except `checkpoint`, `close` (on demand and at shutdown) and
//! the offline functions; an engine error is never a panic: it becomes a [`StoreError`] with the
//! engine's message and the status the protocol documents for it.

use crate::config::{Config, SyncMethod, SyncPolicy};
use jube_engine::clock::Clock;
use jube_engine::manifest::Manifest;
use jube_engine::shard::datadir::{prepare, shard_dir_name};
pub use jube_engine::shard::ShardError;
use jube_engine::shard::{GetStart, Shard, ShardConfig, ShardStats};
use jube_engine::storage::file::FileVfs;
use jube_engine::storage::{IoError, Vfs};
pub use jube_engine::txn::{
    value_hash, Assertion as TxnAssertion, AssertionKind, Compare, Coordinator, Feedback, OpKind,
    OpOutput, OpResult, PrepareReply, PrepareRequest, Step, TxnFailure, TxnId,
    TxnOp as EngineTxnOp, TxnOutcome as EngineTxnOutcome, TxnPart, TxnReply,
};
use jube_protocol::Status;
use jube_runtime::UringVfs;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;

/// A WAL position: writes with an LSN at or below the engine's acked LSN may be acknowledged.
pub type Lsn = u64;

/// A stored value as the engine returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    pub bytes: Vec<u8>,
    /// Absolute expiry on the wall clock, in ms since the Unix epoch.
    pub expiry_ms: Option<u64>,
    pub version: u64,
}

/// Why the engine refused an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The shard hit an I/O error or found corruption; it refuses work until restarted.
    Failed(String),
    /// The disk is full; reads still work.
    NoSpace(String),
    /// Too many writes wait for the disk; retry after the next group commit.
    Busy(String),
    /// The request breaks one of the engine's limits (which may be tighter than the protocol's).
    Rejected { status: Status, message: String },
    /// A key is locked by a prepared cross-shard transaction: nothing was done. The shard worker
    /// parks the call until `holder` finishes here (never a client-visible status).
    Locked {
        key: Vec<u8>,
        holder: TxnId,
        message: String,
    },
}

impl StoreError {
    /// The protocol status a client receives for this error.
    pub fn status(&self) -> Status {
        match self {
            StoreError::Failed(_) => Status::ShardFailed,
            StoreError::NoSpace(_) => Status::NoSpace,
            StoreError::Busy(_) => Status::Busy,
            StoreError::Rejected { status, .. } => *status,
            StoreError::Locked { .. } => Status::Busy,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StoreError::Failed(message)
            | StoreError::NoSpace(message)
            | StoreError::Busy(message) => message,
            StoreError::Rejected { message, .. } | StoreError::Locked { message, .. } => message,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl From<ShardError> for StoreError {
    fn from(error: ShardError) -> StoreError {
        let message = error.to_string();
        match error {
            ShardError::KeyTooLarge { .. } => StoreError::Rejected {
                status: Status::KeyTooLarge,
                message,
            },
            ShardError::ValueTooLarge { .. } => StoreError::Rejected {
                status: Status::ValueTooLarge,
                message,
            },
            ShardError::Busy { .. } => StoreError::Busy(message),
            ShardError::NoSpace { .. } => StoreError::NoSpace(message),
            ShardError::Locked { key, holder } => StoreError::Locked {
                key,
                holder,
                message,
            },
            ShardError::InvalidTxn { .. } => StoreError::Rejected {
                status: Status::InvalidRequest,
                message,
            },
            ShardError::TxnTooLarge { .. } => StoreError::Rejected {
                status: Status::TooManyItems,
                message,
            },
            _ => StoreError::Failed(message),
        }
    }
}

impl From<IoError> for StoreError {
    fn from(error: IoError) -> StoreError {
        StoreError::Failed(error.to_string())
    }
}

/// What the committer watches to log checkpoints and WAL rollovers as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub checkpoint_running: bool,
    pub checkpoints: u64,
    pub checkpoint_lsn: Lsn,
    pub last_checkpoint_us: u64,
    pub rollovers: u64,
}

/// What [`ShardEngine::start_get`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetStarted {
    /// The answer, at once.
    Done(Option<StoredValue>),
    /// The value's read is on the disk: the answer comes from `take_gets` under this ticket.
    Pending(u64),
}

/// A GET that finished after `start_get` returned `Pending`: its ticket and its answer.
pub type FinishedGet = (u64, Result<Option<StoredValue>, StoreError>);

/// One shard of the engine, as the server drives it. Mirrors `jube_engine::shard::Shard`.
pub trait ShardEngine {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, StoreError>;
    /// A GET that does not block on the disk: a value-log read that misses the cache is
    /// submitted and finishes in a later `poll` (see `take_gets`). By default, `get`.
    fn start_get(&mut self, key: &[u8]) -> Result<GetStarted, StoreError> {
        self.get(key).map(GetStarted::Done)
    }
    /// Moves the GETs finished since the last call into `out` (after a failure: every pending
    /// one, with the error).
    fn take_gets(&mut self, _out: &mut Vec<FinishedGet>) {}
    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: Option<u64>) -> Result<Lsn, StoreError>;
    /// Whether the key existed, and the LSN to wait for.
    fn delete(&mut self, key: &[u8]) -> Result<(bool, Lsn), StoreError>;
    /// Up to `limit` entries of the range in scan order, and whether the range holds more.
    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<ScanResult, StoreError>;
    /// Non-blocking: drives group-commit I/O and checkpoint slices.
    fn poll(&mut self) -> Result<(), StoreError>;
    /// A WAL flush or checkpoint write is outstanding: call `poll` again soon.
    fn io_in_flight(&self) -> bool;
    /// The latest engine-monotonic time (ns) by which `poll` must run again.
    fn next_deadline_ns(&self) -> Option<u64>;
    fn acked_lsn(&self) -> Lsn;
    /// A read of `key` must not be answered before `acked_lsn` reaches this.
    fn read_barrier(&self, key: &[u8]) -> Option<Lsn>;
    /// A scan must not be answered before `acked_lsn` reaches this (any unacknowledged write may
    /// be in its range).
    fn scan_barrier(&self) -> Option<Lsn>;
    /// A full checkpoint, blocking.
    fn checkpoint(&mut self) -> Result<(), StoreError>;
    /// The final checkpoint of a clean shutdown.
    fn close(self: Box<Self>) -> Result<(), StoreError>;
    /// Engine counters for INFO: keys, pages, cache, WAL, LSNs, checkpoint duration, records/sync.
    fn stats(&self) -> Vec<(String, u64)>;
    fn progress(&self) -> Progress;
    /// The shard's time in wall-clock ms, which expiry is measured against.
    fn now_ms(&self) -> u64;
    /// A transaction whose keys all live on this shard, in one step and at most one WAL record.
    fn apply_txn(&mut self, part: &TxnPart) -> Result<TxnReply, StoreError>;
    /// Two-phase commit, phase one on this shard: check, evaluate, lock, log Prepare.
    fn prepare_txn(&mut self, request: &PrepareRequest) -> Result<PrepareReply, StoreError>;
    /// At the coordinator shard: log the Decision (the commit point) and apply its part.
    fn decide_txn(&mut self, id: TxnId, participants: &[u32]) -> Result<Lsn, StoreError>;
    /// Commit or abort this shard's prepared part of `id`; unlocks its keys.
    fn finish_txn(&mut self, id: TxnId, commit: bool) -> Result<Lsn, StoreError>;
    /// Prepared, unresolved txns (after open: the in-doubt ones recovery found).
    fn in_doubt(&self) -> Vec<TxnId>;
    /// At the coordinator shard: whether `id` committed (false: presumed abort).
    fn decision(&self, id: TxnId) -> bool;
    fn forget_decision(&mut self, id: TxnId);
    fn recovered_decisions(&self) -> Vec<TxnId>;
    /// The prepared txn holding `key` locked, if any.
    fn lock_holder(&self, key: &[u8]) -> Option<TxnId>;
}

/// A scan's entries and whether the range holds more past them.
pub type ScanResult = (Vec<(Vec<u8>, StoredValue)>, bool);

/// What the MANIFEST fixes for a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub shard_count: usize,
    pub page_size: usize,
}

/// The engine settings of shard `shard_id`, from the server's configuration.
pub fn shard_config(shard_id: u32, page_size: usize, config: &Config) -> ShardConfig {
    let storage = &config.storage;
    let mut shard = ShardConfig::new(shard_id);
    shard.tree.page_size = page_size;
    shard.tree.cache_bytes = usize::try_from(storage.cache_bytes_per_shard).unwrap_or(usize::MAX);
    shard.vlog.cache_bytes =
        usize::try_from(storage.value_cache_bytes_per_shard).unwrap_or(usize::MAX);
    shard.wal.segment_size_bytes = storage.wal_segment_bytes;
    shard.wal.flush_bytes_max = storage.group_commit_bytes_max;
    // Room for the next group commit to fill while one is on the disk.
    shard.wal.buffer_bytes_max = storage.group_commit_bytes_max.saturating_mul(4);
    shard.wal.flush_delay_ns_max = storage.group_commit_delay_us.saturating_mul(1000);
    shard.wal.sync_policy = match storage.sync {
        SyncPolicy::Always => jube_engine::shard::SyncPolicy::Always,
        SyncPolicy::Periodic { interval_ms } => {
            jube_engine::shard::SyncPolicy::Periodic { interval_ms }
        }
        SyncPolicy::None => jube_engine::shard::SyncPolicy::None,
    };
    shard.wal.sync_mode = match storage.sync_method {
        SyncMethod::Dsync => jube_engine::shard::SyncMode::WriteDsync,
        SyncMethod::Fdatasync => jube_engine::shard::SyncMode::WriteThenSync,
    };
    shard.checkpoint_wal_bytes = storage.checkpoint_wal_bytes;
    shard.checkpoint_interval_ms = storage.checkpoint_interval_ms;
    shard
}

/// What recovery did, as named counts for the start-up log.
pub type RecoveryCounts = Vec<(String, u64)>;

fn stored(value: jube_engine::tree::Value) -> StoredValue {
    StoredValue {
        bytes: value.bytes,
        expiry_ms: (value.expiry_ms != 0).then_some(value.expiry_ms),
        version: value.version,
    }
}

impl<V: Vfs + Clone> ShardEngine for Shard<V> {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, StoreError> {
        Ok(Shard::get(self, key)?.map(stored))
    }

    fn start_get(&mut self, key: &[u8]) -> Result<GetStarted, StoreError> {
        Ok(match Shard::start_get(self, key)? {
            GetStart::Done(value) => GetStarted::Done(value.map(stored)),
            GetStart::Pending(ticket) => GetStarted::Pending(ticket.0),
        })
    }

    fn take_gets(&mut self, out: &mut Vec<FinishedGet>) {
        let mut finished = Vec::new();
        Shard::take_gets(self, &mut finished);
        out.extend(finished.into_iter().map(|(ticket, result)| {
            (
                ticket.0,
                result.map(|v| v.map(stored)).map_err(StoreError::from),
            )
        }));
    }

    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: Option<u64>) -> Result<Lsn, StoreError> {
        // The engine's 0 means "no expiry"; a real expiry is a wall-clock time, never 0.
        let expiry_ms = match expiry_ms {
            Some(ms) => ms.max(1),
            None => 0,
        };
        Ok(Shard::put(self, key, value, expiry_ms)?)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(bool, Lsn), StoreError> {
        Ok(Shard::delete(self, key)?)
    }

    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<ScanResult, StoreError> {
        let page = Shard::scan(self, start, end, limit, reverse, None)?;
        let more = page.continuation.is_some();
        Ok((
            page.entries
                .into_iter()
                .map(|entry| (entry.key, stored(entry.value)))
                .collect(),
            more,
        ))
    }

    fn poll(&mut self) -> Result<(), StoreError> {
        Ok(Shard::poll(self)?)
    }

    fn io_in_flight(&self) -> bool {
        Shard::io_in_flight(self)
    }

    fn next_deadline_ns(&self) -> Option<u64> {
        Shard::next_deadline_ns(self)
    }

    fn acked_lsn(&self) -> Lsn {
        Shard::acked_lsn(self)
    }

    fn read_barrier(&self, key: &[u8]) -> Option<Lsn> {
        Shard::read_barrier(self, key)
    }

    fn scan_barrier(&self) -> Option<Lsn> {
        Shard::scan_barrier(self)
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        Ok(Shard::checkpoint(self)?)
    }

    fn close(self: Box<Self>) -> Result<(), StoreError> {
        Ok(Shard::close(*self)?)
    }

    fn stats(&self) -> Vec<(String, u64)> {
        let mut metrics = stats_metrics(&Shard::stats(self));
        let txn = Shard::txn_stats(self);
        metrics.extend(
            [
                ("txn_applied", txn.applied),
                ("txn_failed", txn.failed),
                ("txn_prepared", txn.prepared),
                ("txn_parts_committed", txn.committed),
                ("txn_parts_aborted", txn.aborted),
                ("txn_locked_refusals", txn.locked_refusals),
                ("txn_prepared_now", txn.prepared_count),
                ("txn_locked_keys", txn.locked_keys_count),
                ("txn_decisions", txn.decisions_count),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value)),
        );
        metrics
    }

    fn now_ms(&self) -> u64 {
        Shard::now_ms(self)
    }

    fn apply_txn(&mut self, part: &TxnPart) -> Result<TxnReply, StoreError> {
        Ok(Shard::apply_txn(self, part)?)
    }

    fn prepare_txn(&mut self, request: &PrepareRequest) -> Result<PrepareReply, StoreError> {
        Ok(Shard::prepare_txn(self, request)?)
    }

    fn decide_txn(&mut self, id: TxnId, participants: &[u32]) -> Result<Lsn, StoreError> {
        Ok(Shard::decide_txn(self, id, participants)?)
    }

    fn finish_txn(&mut self, id: TxnId, commit: bool) -> Result<Lsn, StoreError> {
        Ok(Shard::finish_txn(self, id, commit)?)
    }

    fn in_doubt(&self) -> Vec<TxnId> {
        Shard::in_doubt(self)
    }

    fn decision(&self, id: TxnId) -> bool {
        Shard::decision(self, id)
    }

    fn forget_decision(&mut self, id: TxnId) {
        Shard::forget_decision(self, id)
    }

    fn recovered_decisions(&self) -> Vec<TxnId> {
        Shard::recovered_decisions(self)
    }

    fn lock_holder(&self, key: &[u8]) -> Option<TxnId> {
        Shard::lock_holder(self, key)
    }

    fn progress(&self) -> Progress {
        let stats = Shard::stats(self);
        Progress {
            checkpoint_running: stats.checkpoint_running,
            checkpoints: stats.checkpoints,
            checkpoint_lsn: stats.checkpoint_lsn,
            last_checkpoint_us: stats.last_checkpoint_ns / 1000,
            rollovers: stats.wal.rollovers_count,
        }
    }
}

/// The engine's stats as INFO metrics (names listed in docs/operations.md).
fn stats_metrics(stats: &ShardStats) -> Vec<(String, u64)> {
    let tree = &stats.tree;
    let wal = &stats.wal;
    let records_per_sync = wal.records_per_commit.mean().round() as u64;
    [
        ("keys", tree.key_count),
        ("pages", tree.page_count),
        ("pages_free", tree.free_pages),
        ("tree_height", tree.tree_height),
        ("cache_hits", tree.cache_hits),
        ("cache_misses", tree.cache_misses),
        ("cache_evictions", tree.cache_evictions),
        ("cache_bytes", tree.resident_bytes),
        ("cache_dirty_bytes", tree.dirty_bytes),
        ("wal_segments", wal.segments_count),
        ("wal_bytes", wal.segments_bytes),
        ("wal_flushes", wal.flushes_count),
        ("wal_syncs", wal.syncs_count),
        ("wal_rollovers", wal.rollovers_count),
        ("wal_rollover_stalls", wal.rollover_stalls),
        ("wal_busy_rejections", wal.busy_rejections),
        ("records_per_sync", records_per_sync),
        ("durable_lsn", wal.durable_lsn),
        ("acked_lsn", stats.acked_lsn),
        ("checkpoint_lsn", stats.checkpoint_lsn),
        ("checkpoints", stats.checkpoints),
        (
            "last_checkpoint_duration_us",
            stats.last_checkpoint_ns / 1000,
        ),
        ("records_recovered", wal.records_recovered),
        ("puts", stats.puts),
        ("deletes", stats.deletes),
        ("gets", stats.gets),
        ("scans", stats.scans),
        ("keys_with_ttl", stats.sweep.keys_with_ttl),
        ("expired_swept", stats.sweep.expired_swept),
        ("sweep_passes", stats.sweep.passes),
        ("sweep_lag_ms", stats.sweep.lag_ms),
        (
            "clock_drift_ms_abs",
            stats.sweep.clock_drift_ms.unsigned_abs(),
        ),
        ("vlog_segments", stats.vlog.segments),
        ("vlog_live_bytes", stats.vlog.live_bytes),
        ("vlog_dead_bytes", stats.vlog.dead_bytes),
        ("vlog_gc_runs", stats.vlog.gc_runs),
        ("vlog_gc_bytes_moved", stats.vlog.gc_bytes_moved),
        ("vlog_segments_deleted", stats.vlog.segments_deleted),
        ("vlog_cache_hits", stats.vlog.cache.hits),
        ("vlog_cache_misses", stats.vlog.cache.misses),
        ("vlog_reads_async", stats.vlog.reads_async),
        ("vlog_reads_async_refused", stats.vlog.reads_async_refused),
        ("vlog_cache_evictions", stats.vlog.cache.evictions),
        ("vlog_cache_bypassed", stats.vlog.cache.bypassed),
        ("vlog_cache_bytes", stats.vlog.cache.bytes),
        ("vlog_cache_entries", stats.vlog.cache.entries),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn open_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(error.to_string())
}

/// Opens the data directory (creating it, with `shard_count` shards, if it has no MANIFEST) with
/// blocking file I/O on the calling thread. The shard count of an existing directory is its own,
/// whatever `shard_count` says; a page size other than the configuration's is refused.
pub fn open_layout(
    data_dir: &Path,
    shard_count: usize,
    config: &Config,
    clock: Rc<dyn Clock>,
) -> Result<Layout, StoreError> {
    let mut root = FileVfs::open(data_dir, false).map_err(open_error)?;
    let page_size = config.storage.page_size;
    let count = u32::try_from(shard_count).map_err(open_error)?;
    let manifest = prepare(
        &mut root,
        count,
        |id| shard_config(id, page_size, config),
        clock,
        &mut rand::thread_rng(),
    )?;
    Ok(Layout {
        shard_count: usize::try_from(manifest.params.shard_count).map_err(open_error)?,
        page_size: usize::try_from(manifest.params.page_size).map_err(open_error)?,
    })
}

/// Opens (recovering) shard `shard_id` of the data directory. Must run on the core that will own
/// the shard: its files use that core's ring.
pub fn open_shard(
    data_dir: &Path,
    shard_id: u32,
    layout: Layout,
    config: &Config,
    clock: Rc<dyn Clock>,
) -> Result<(Box<dyn ShardEngine>, RecoveryCounts), StoreError> {
    let mut root = UringVfs::open(data_dir)?;
    let dir = root.subdir(&shard_dir_name(shard_id))?;
    let (shard, report) =
        Shard::open(dir, shard_config(shard_id, layout.page_size, config), clock)?;
    let counts = vec![
        ("created".to_string(), u64::from(report.created)),
        ("checkpoint_lsn".to_string(), report.checkpoint_lsn),
        ("segments_scanned".to_string(), report.wal.segments_scanned),
        ("records_replayed".to_string(), report.wal.records_replayed),
        ("end_lsn".to_string(), report.wal.end_lsn),
        (
            "torn_tail_truncated".to_string(),
            u64::from(report.wal.torn_tail.is_some()),
        ),
        ("segments_created".to_string(), report.wal.segments_created),
    ];
    Ok((Box::new(shard), counts))
}

/// One shard's result of `validate_offline`: a summary, or what is wrong.
pub type ShardCheck = (u32, Result<String, StoreError>);

/// Runs the engine's integrity check over every shard of a stopped server's directory with
/// blocking file I/O; returns one line per shard. Opening a shard runs recovery (WAL redo, and
/// truncation of a torn tail), as a server start would; nothing is checkpointed.
pub fn validate_offline(data_dir: &Path) -> Result<Vec<ShardCheck>, StoreError> {
    let mut root = FileVfs::open(data_dir, false).map_err(open_error)?;
    let manifest = Manifest::read(&mut root).map_err(open_error)?;
    let page_size = usize::try_from(manifest.params.page_size).map_err(open_error)?;
    let clock: Rc<dyn Clock> = Rc::new(jube_engine::clock::SystemClock::new());
    let config = Config::default();
    let mut results = Vec::new();
    for shard_id in 0..manifest.params.shard_count {
        let result = root
            .subdir(&shard_dir_name(shard_id))
            .map_err(StoreError::from)
            .and_then(|dir| {
                let (mut shard, report) = Shard::open(
                    dir,
                    shard_config(shard_id, page_size, &config),
                    clock.clone(),
                )?;
                shard.check_integrity()?;
                let keys = shard.stats().tree.key_count;
                Ok(format!(
                    "{keys} keys, {} WAL records replayed, integrity ok",
                    report.wal.records_replayed
                ))
            });
        results.push((shard_id, result));
    }
    Ok(results)
}
