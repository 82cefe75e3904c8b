//! The write-ahead log of one shard: segments, records, group commit, recovery, truncation.
//!
//! The WAL is generic over [`Vfs`] (one directory per shard) and [`Clock`], and knows nothing of
//! what its payloads mean. A shard uses it like this:
//! 1. [`Wal::open`] scans the directory from the checkpoint's next LSN, hands every record to a
//!    redo callback, truncates a torn tail, refuses mid-log corruption, and returns a writer that
//!    continues in a fresh segment. [`Wal::open_retained`] hands over every record still
//!    retained (from the oldest segment from which the log is contiguous), for a shard whose
//!    transactions keep records below the checkpoint.
//! 2. [`Wal::append`] buffers a record and returns its LSN; [`Wal::poll`] (called from the event
//!    loop) reaps completions, starts group-commit flushes and prepares the next segment.
//! 3. A write is acknowledged once [`Wal::ack_lsn`] covers its LSN.
//! 4. After a checkpoint is durable, [`Wal::release_below`] recycles the segments it made obsolete.
//!
//! Invariants:
//! - LSNs are contiguous from 1; every record lies in one segment; segment sequence numbers are
//!   never reused, and a record's CRC is seeded with its segment's sequence number.
//! - At most one flush is in flight; its sync is submitted only after its write completed; each
//!   flush starts on a block boundary and ends padded with zeroes, so no block holding durable
//!   records is ever written again (a torn or garbled rewrite could otherwise destroy them).
//! - `durable_lsn` only grows, and only when a sync (or RWF_DSYNC write) covering it completes.
//! - After a failed write or sync the WAL is poisoned: no append succeeds, durable_lsn is frozen.

pub mod constants;
pub mod record;
mod recovery;
mod segment;
pub mod stats;
mod writer;

pub use recovery::RecoveryReport;
pub use stats::{Histogram, WalStats};
pub use writer::Wal;

use crate::storage::{IoError, IO_ALIGN};
use constants::{
    BUFFER_BYTES_MAX_DEFAULT, FLUSH_BYTES_MAX_DEFAULT, FLUSH_DELAY_NS_MAX_DEFAULT,
    FREE_SEGMENTS_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_SIZE_DEFAULT,
    SEGMENT_SIZE_MIN,
};
use std::fmt;

/// Log sequence number: 1 for the first record ever, +1 per record. 0 means "none".
pub type Lsn = u64;

/// When appended records count as acknowledged and how often they are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Acknowledge a record once a sync covering it has completed (the default).
    Always,
    /// Acknowledge at once; flush and sync at least every `interval_ms`. A crash can lose the
    /// records of the last interval (plus the flush in flight).
    Periodic { interval_ms: u64 },
    /// Acknowledge at once; write without syncing and leave durability to the OS (a sync is
    /// still issued once per segment, to make its header durable). Unsafe on power loss.
    None,
}

/// How a flush makes its write durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// A write, then (after it completed) a SyncData: two round trips through io_uring.
    WriteThenSync,
    /// One RWF_DSYNC write: one round trip (the default; docs/benchmarks.md, "WAL group commit").
    WriteDsync,
}

/// Configuration of one shard's WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// Written into every segment header; a segment of another shard is refused.
    pub shard_id: u32,
    pub segment_size_bytes: u64,
    /// Largest single flush (whole blocks).
    pub flush_bytes_max: usize,
    /// Most bytes appended and not yet written and synced; beyond it `append` is `Busy`.
    pub buffer_bytes_max: usize,
    /// Longest a record waits before a flush is started (`Always` and `None`).
    pub flush_delay_ns_max: u64,
    pub sync_policy: SyncPolicy,
    pub sync_mode: SyncMode,
    /// Released segments kept for reuse.
    pub free_segments_max: usize,
}

impl WalConfig {
    pub fn new(shard_id: u32) -> WalConfig {
        WalConfig {
            shard_id,
            segment_size_bytes: SEGMENT_SIZE_DEFAULT,
            flush_bytes_max: FLUSH_BYTES_MAX_DEFAULT,
            buffer_bytes_max: BUFFER_BYTES_MAX_DEFAULT,
            flush_delay_ns_max: FLUSH_DELAY_NS_MAX_DEFAULT,
            sync_policy: SyncPolicy::Always,
            sync_mode: SyncMode::WriteDsync,
            free_segments_max: FREE_SEGMENTS_MAX,
        }
    }

    /// The largest payload one record may carry: a record must fit in one flush.
    pub fn payload_bytes_max(&self) -> usize {
        self.flush_bytes_max - RECORD_HEADER_BYTES
    }

    /// Checks the relations the writer relies on.
    pub fn validate(&self) -> Result<(), WalError> {
        let block = IO_ALIGN as u64;
        let bad = |detail: String| Err(WalError::Config { detail });
        if !self.segment_size_bytes.is_multiple_of(block)
            || self.segment_size_bytes < SEGMENT_SIZE_MIN
        {
            return bad(format!(
                "segment size {} is not a block multiple >= {SEGMENT_SIZE_MIN}",
                self.segment_size_bytes
            ));
        }
        if !self.flush_bytes_max.is_multiple_of(IO_ALIGN) || self.flush_bytes_max < IO_ALIGN {
            return bad(format!(
                "flush_bytes_max {} is not a positive block multiple",
                self.flush_bytes_max
            ));
        }
        let data_bytes = self.segment_size_bytes - SEGMENT_HEADER_BYTES as u64;
        if self.flush_bytes_max as u64 > data_bytes {
            return bad(format!(
                "flush_bytes_max {} exceeds a segment's data area {data_bytes}",
                self.flush_bytes_max
            ));
        }
        if self.buffer_bytes_max < 2 * self.flush_bytes_max
            || self.buffer_bytes_max as u64 > data_bytes
        {
            return bad(format!(
                "buffer_bytes_max {} must be in [2 x flush_bytes_max, segment data area {data_bytes}]",
                self.buffer_bytes_max
            ));
        }
        if let SyncPolicy::Periodic { interval_ms: 0 } = self.sync_policy {
            return bad("a periodic sync policy needs an interval above 0 ms".to_string());
        }
        Ok(())
    }
}

/// What went wrong in the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O operation failed (while opening, recovering, or preparing segments).
    Io(IoError),
    /// An earlier write or sync failed; the WAL accepts nothing until reopened and recovered.
    Poisoned(IoError),
    /// The disk is full: preallocating the next segment failed. Appends are refused until a
    /// checkpoint releases segments.
    NoSpace(IoError),
    /// The buffer of not-yet-durable records is full; poll and retry.
    Busy {
        buffered_bytes: usize,
        buffer_bytes_max: usize,
    },
    RecordTooLarge {
        payload_bytes: usize,
        payload_bytes_max: usize,
    },
    /// The log is damaged before its tail (or otherwise inconsistent): refuse to start.
    Corrupt {
        path: String,
        offset: u64,
        detail: String,
    },
    Config {
        detail: String,
    },
    /// The redo callback failed on a record.
    Redo {
        lsn: Lsn,
        detail: String,
    },
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io(e) => write!(f, "WAL I/O error: {e}"),
            WalError::Poisoned(e) => write!(f, "WAL poisoned by an earlier failure: {e}"),
            WalError::NoSpace(e) => write!(f, "WAL out of disk space: {e}"),
            WalError::Busy {
                buffered_bytes,
                buffer_bytes_max,
            } => {
                write!(
                    f,
                    "WAL busy: {buffered_bytes} of {buffer_bytes_max} buffer bytes in use"
                )
            }
            WalError::RecordTooLarge {
                payload_bytes,
                payload_bytes_max,
            } => {
                write!(
                    f,
                    "WAL record of {payload_bytes} bytes exceeds {payload_bytes_max}"
                )
            }
            WalError::Corrupt {
                path,
                offset,
                detail,
            } => {
                write!(f, "WAL corrupt in {path} at offset {offset}: {detail}")
            }
            WalError::Config { detail } => write!(f, "bad WAL configuration: {detail}"),
            WalError::Redo { lsn, detail } => {
                write!(f, "redo of WAL record {lsn} failed: {detail}")
            }
        }
    }
}

impl std::error::Error for WalError {}

impl From<IoError> for WalError {
    fn from(e: IoError) -> Self {
        WalError::Io(e)
    }
}

/// A record handed to the redo callback during recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedoRecord<'a> {
    pub lsn: Lsn,
    pub record_type: u8,
    pub payload: &'a [u8],
}
