//! The seam between the server and the storage engine: the only module that names
//! `jube_engine`'s shard API, so that wiring (or changing) the engine is a local edit.
//!
//! The server sees a shard as a [`ShardEngine`] trait object whose methods mirror
//! `jube_engine::shard::Shard` one for one (get/put/delete/scan, the non-blocking `poll` that
//! drives group commit and checkpoint slices, `acked_lsn`/`read_barrier` for acknowledgement,
//! `checkpoint`, `close`, `stats`), with stats flattened to named counters for INFO.
//!
//! Interim state: `jube_engine::shard` has not landed on main yet, so [`open_layout`],
//! [`open_shard`] and [`validate_offline`] answer [`StoreError::Unavailable`]. jubed then runs
//! with every shard failed (storage operations answer `ShardFailed` naming this reason) and
//! everything else works. When the Shard lands: implement `ShardEngine` for `Shard<UringVfs>`
//! here, make the three functions call `Manifest::open_or_create`, `Shard::open` and
//! `check_integrity`, and delete the `Unavailable` variant.
//!
//! Invariants: nothing here blocks except `checkpoint` and `close` (on demand and at shutdown);
//! an engine error is never a panic: it becomes a [`StoreError`] with the engine's message.

use crate::config::{Config, SyncPolicy};
use jube_engine::clock::Clock;
use jube_protocol::Status;
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
    /// This build has no storage engine (see the module docs).
    Unavailable(String),
}

impl StoreError {
    /// The protocol status a client receives for this error.
    pub fn status(&self) -> Status {
        match self {
            StoreError::Failed(_) | StoreError::Unavailable(_) => Status::ShardFailed,
            StoreError::NoSpace(_) => Status::NoSpace,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            StoreError::Failed(message)
            | StoreError::NoSpace(message)
            | StoreError::Unavailable(message) => message,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// One shard of the engine, as the server drives it. Mirrors `jube_engine::shard::Shard`.
pub trait ShardEngine {
    fn get(&mut self, key: &[u8]) -> Result<Option<StoredValue>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8], expiry_ms: Option<u64>) -> Result<Lsn, StoreError>;
    /// Whether the key existed, and the LSN to wait for.
    fn delete(&mut self, key: &[u8]) -> Result<(bool, Lsn), StoreError>;
    fn scan(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, StoredValue)>, StoreError>;
    /// Non-blocking: drives group-commit I/O and checkpoint slices.
    fn poll(&mut self) -> Result<(), StoreError>;
    /// A WAL flush or checkpoint write is outstanding: call `poll` again soon.
    fn io_in_flight(&self) -> bool;
    /// The latest engine-monotonic time (ns) by which `poll` must run again.
    fn next_deadline_ns(&self) -> Option<u64>;
    fn acked_lsn(&self) -> Lsn;
    /// A read of `key` must not be answered before `acked_lsn` reaches this.
    fn read_barrier(&self, key: &[u8]) -> Option<Lsn>;
    /// A full checkpoint, blocking.
    fn checkpoint(&mut self) -> Result<(), StoreError>;
    /// The final checkpoint of a clean shutdown.
    fn close(self: Box<Self>) -> Result<(), StoreError>;
    /// Engine counters for INFO: keys, pages, cache, WAL, LSNs, checkpoint duration, records/sync.
    fn stats(&self) -> Vec<(String, u64)>;
}

/// What the MANIFEST fixes for a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub shard_count: usize,
    pub page_size: usize,
}

/// The engine settings of one shard, from the server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSettings {
    pub shard_id: u32,
    pub page_size: usize,
    pub cache_bytes: u64,
    pub sync: SyncPolicy,
    pub group_commit_bytes_max: usize,
    pub group_commit_delay_us: u64,
    pub wal_segment_bytes: u64,
    pub checkpoint_wal_bytes: u64,
    pub checkpoint_interval_ms: u64,
}

impl ShardSettings {
    pub fn from_config(shard_id: u32, layout: Layout, config: &Config) -> ShardSettings {
        let storage = &config.storage;
        ShardSettings {
            shard_id,
            page_size: layout.page_size,
            cache_bytes: storage.cache_bytes_per_shard,
            sync: storage.sync,
            group_commit_bytes_max: storage.group_commit_bytes_max,
            group_commit_delay_us: storage.group_commit_delay_us,
            wal_segment_bytes: storage.wal_segment_bytes,
            checkpoint_wal_bytes: storage.checkpoint_wal_bytes,
            checkpoint_interval_ms: storage.checkpoint_interval_ms,
        }
    }
}

/// What recovery did, as named counts for the start-up log.
pub type RecoveryCounts = Vec<(String, u64)>;

/// The reason every engine entry point fails in this build.
const ENGINE_MISSING: &str =
    "this build has no storage engine yet (jube_engine::shard::Shard has not landed): storage operations are unavailable";

/// The directory of shard `shard_id` under the data directory.
pub fn shard_dir(data_dir: &Path, shard_id: usize) -> std::path::PathBuf {
    data_dir.join(format!("shard-{shard_id:03}"))
}

/// Opens the MANIFEST at the data directory's root, creating it with `shard_count` shards and
/// `page_size` if the directory is new; refuses a directory whose MANIFEST does not match.
pub fn open_layout(
    data_dir: &Path,
    shard_count: usize,
    page_size: usize,
) -> Result<Layout, StoreError> {
    let _ = (data_dir, shard_count, page_size);
    Err(StoreError::Unavailable(ENGINE_MISSING.to_string()))
}

/// Opens (recovering) or creates one shard in `shard_dir(data_dir, settings.shard_id)`. Must run on
/// the core that will own the shard: its files use that core's ring.
pub fn open_shard(
    data_dir: &Path,
    settings: &ShardSettings,
    clock: Rc<dyn Clock>,
) -> Result<(Box<dyn ShardEngine>, RecoveryCounts), StoreError> {
    let _ = (data_dir, settings, clock);
    Err(StoreError::Unavailable(ENGINE_MISSING.to_string()))
}

/// Runs the engine's integrity check over every shard of a stopped server's directory, with plain
/// blocking file I/O; returns one line per finding (empty: the directory is sound).
pub fn validate_offline(data_dir: &Path) -> Result<Vec<String>, StoreError> {
    let _ = data_dir;
    Err(StoreError::Unavailable(ENGINE_MISSING.to_string()))
}
