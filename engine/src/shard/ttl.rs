//! Expiry: the shard's notion of "now", expired keys reading as absent, and the sweeper.
//!
//! A key's expiry is an absolute wall-clock time in ms (0 = none), stored in its leaf record and
//! logged with its put, so it survives restarts and crashes unchanged. What "now" is needs care:
//! the wall clock can jump. The shard reads the wall clock once at open and from then on
//! advances its own time by the *monotonic* clock ([`ExpiryClock`]), so a wall clock set back
//! does not resurrect keys and one set forward does not expire them early; the difference
//! between the wall clock and the shard's time is reported as drift, and logged when it passes
//! [`CLOCK_DRIFT_LOG_MS`]. The shard's time also never goes below `floor_ms`, the newest time
//! it has known: every checkpoint persists the calibration (the shard's time, the raw wall
//! clock and the monotonic clock at that instant) in the superblock, and open starts from
//! `max(wall clock, persisted shard time)` ([`ExpiryClock::open`]), so a restart under a wall
//! clock set back keeps what had expired by the last checkpoint expired. A wall clock ahead of
//! the persisted time at open is adopted (downtime and a jump look the same from here) and the
//! gap is logged; while running, a forward jump changes nothing (the shard follows the
//! monotonic clock) and only shows as drift.
//!
//! An expired key reads as absent everywhere from the moment it expires, swept or not: `get`,
//! `scan` and `delete` filter it. The sweeper then removes expired keys for good, a bounded
//! number of keys per step, writing ordinary WAL delete records, so space comes back without
//! any read touching the key.

use super::{Shard, ShardError};
use crate::clock::Clock;
use crate::constants::VALUE_KIND_POINTER;
use crate::storage::Vfs;
use crate::tree::{ScanEntry, ShardMeta, Value};
use std::ops::Bound;

/// Drift between the wall clock and the shard's time beyond which the shard logs a warning.
pub const CLOCK_DRIFT_LOG_MS: u64 = 1_000;

/// Whether `value` has expired at `now_ms`.
pub fn is_expired(value: &Value, now_ms: u64) -> bool {
    value.expiry_ms != 0 && value.expiry_ms <= now_ms
}

/// The shard's wall-clock time, advanced by the monotonic clock since open.
#[derive(Debug, Clone)]
pub struct ExpiryClock {
    wall_base_ms: u64,
    monotonic_base_ns: u64,
    floor_ms: u64,
    drift_logged: bool,
}

impl ExpiryClock {
    /// Calibrates against `clock` now; time never goes below `floor_ms`.
    pub fn new(clock: &dyn Clock, floor_ms: u64) -> ExpiryClock {
        let wall = clock.wall_ms();
        if wall < floor_ms {
            tracing::warn!(
                wall_ms = wall,
                floor_ms,
                "the wall clock is behind the newest time this shard has known: using the latter"
            );
        }
        ExpiryClock {
            wall_base_ms: wall.max(floor_ms),
            monotonic_base_ns: clock.monotonic_ns(),
            floor_ms,
            drift_logged: false,
        }
    }

    /// Calibrates at open from the superblock's persisted calibration `meta` (all zero for a
    /// new shard or a format-1 file): time starts at the wall clock, but never below the
    /// shard's time at its last checkpoint.
    pub fn open(clock: &dyn Clock, meta: &ShardMeta, shard_id: u32) -> ExpiryClock {
        let floor = meta.clock_floor_ms;
        let wall = clock.wall_ms();
        if floor != 0 && wall >= floor {
            let gap_ms = wall - floor;
            let drift_then_ms = i128::from(meta.clock_wall_ms) - i128::from(floor);
            tracing::info!(
                shard = shard_id,
                gap_ms,
                drift_at_checkpoint_ms = i64::try_from(drift_then_ms).unwrap_or(i64::MAX),
                "expiry clock resumes at the wall clock, ahead of the last checkpoint's time"
            );
        }
        ExpiryClock::new(clock, floor)
    }

    /// The shard's time in wall-clock ms.
    pub fn now_ms(&self, clock: &dyn Clock) -> u64 {
        let elapsed_ms = clock.monotonic_ns().saturating_sub(self.monotonic_base_ns) / 1_000_000;
        (self.wall_base_ms + elapsed_ms).max(self.floor_ms)
    }

    /// The wall clock minus the shard's time, in ms (negative: the wall clock is behind).
    pub fn drift_ms(&self, clock: &dyn Clock) -> i64 {
        let wall = i128::from(clock.wall_ms());
        let now = i128::from(self.now_ms(clock));
        i64::try_from(wall - now).unwrap_or(i64::MAX)
    }

    /// Logs the drift once when it first passes [`CLOCK_DRIFT_LOG_MS`].
    fn check_drift(&mut self, clock: &dyn Clock, shard_id: u32) {
        let drift = self.drift_ms(clock);
        if !self.drift_logged && drift.unsigned_abs() > CLOCK_DRIFT_LOG_MS {
            self.drift_logged = true;
            tracing::warn!(
                shard = shard_id,
                drift_ms = drift,
                "the wall clock jumped: expiry keeps following the monotonic clock"
            );
        }
    }
}

/// The sweeper's position and counters.
#[derive(Debug, Clone, Default)]
pub struct Sweeper {
    /// The last key examined; None at the start of a pass.
    cursor: Option<Vec<u8>>,
    next_step_ns: u64,
    pass_started_ns: u64,
    /// Keys with an expiry seen so far in the current pass.
    pass_keys_with_ttl: u64,
    /// A write with an expiry happened since the last complete pass.
    expiring_writes: bool,
    pub stats: SweepStats,
}

impl Sweeper {
    /// Records a write with an expiry, which gives the sweeper work.
    pub fn note_expiring_write(&mut self) {
        self.expiring_writes = true;
    }

    /// Whether a pass may find anything: the first pass after open always runs (the shard does
    /// not know its keys yet); later ones only while keys with an expiry exist.
    fn active(&self) -> bool {
        self.stats.passes == 0 || self.stats.keys_with_ttl > 0 || self.expiring_writes
    }

    /// When the next step is due, if the sweeper has work.
    pub fn deadline_ns(&self) -> Option<u64> {
        self.active().then_some(self.next_step_ns)
    }
}

/// What the sweeper reports to INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Keys with an expiry counted by the last complete pass (an estimate between passes).
    pub keys_with_ttl: u64,
    /// Expired keys the sweeper deleted since open.
    pub expired_swept: u64,
    /// Complete passes over the keyspace since open.
    pub passes: u64,
    /// Duration of the last complete pass: how long an expired key can wait to be swept.
    pub lag_ms: u64,
    /// Wall clock minus the shard's time, at the last sweep step.
    pub clock_drift_ms: i64,
}

impl<V: Vfs + Clone> Shard<V> {
    /// The shard's time in wall-clock ms: what expiry is measured against.
    pub fn now_ms(&self) -> u64 {
        self.expiry_clock.now_ms(self.clock.as_ref())
    }

    /// `value` unless it has expired.
    pub(super) fn unexpired(&self, value: Option<Value>) -> Option<Value> {
        let now = self.now_ms();
        value.filter(|v| !is_expired(v, now))
    }

    /// Scans like the tree, without expired entries, still returning up to `limit` of them,
    /// with values in the value log read back (one read each).
    pub(super) fn scan_unexpired(
        &mut self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        limit: usize,
        reverse: bool,
        continuation: Option<&[u8]>,
    ) -> Result<crate::tree::ScanPage, ShardError> {
        let now = self.now_ms();
        let mut entries: Vec<(u8, ScanEntry)> = Vec::new();
        let mut resume = continuation.map(<[u8]>::to_vec);
        let continuation = loop {
            let wanted = limit - entries.len();
            let result = self.tree.scan_visit(
                start,
                end,
                wanted,
                reverse,
                resume.as_deref(),
                |key, value| {
                    if value.expiry_ms != 0 && value.expiry_ms <= now {
                        return;
                    }
                    let entry = ScanEntry {
                        key: key.to_vec(),
                        value: Value {
                            bytes: value.bytes.to_vec(),
                            expiry_ms: value.expiry_ms,
                            version: value.version,
                        },
                    };
                    entries.push((value.kind, entry));
                },
            );
            resume = self.check_tree(result)?;
            if resume.is_none() || entries.len() >= limit {
                break resume;
            }
        };
        let mut page = crate::tree::ScanPage {
            entries: Vec::with_capacity(entries.len()),
            continuation,
        };
        for (kind, mut entry) in entries {
            if kind == VALUE_KIND_POINTER {
                entry.value.bytes = self.resolve(&entry.key, &entry.value.bytes)?;
            }
            page.entries.push(entry);
        }
        Ok(page)
    }

    /// One bounded step of the sweeper, at most every `sweep_interval_ms`: examines up to
    /// `sweep_keys_per_step` keys from its cursor and deletes the expired ones.
    pub(super) fn sweep_step(&mut self) -> Result<(), ShardError> {
        let now_ns = self.clock.monotonic_ns();
        if now_ns < self.sweeper.next_step_ns
            || self.config.sweep_keys_per_step == 0
            || !self.sweeper.active()
        {
            return Ok(());
        }
        self.sweeper.next_step_ns =
            now_ns.saturating_add(self.config.sweep_interval_ms.saturating_mul(1_000_000));
        let shard_id = self.config.shard_id();
        self.expiry_clock.check_drift(self.clock.as_ref(), shard_id);
        self.sweeper.stats.clock_drift_ms = self.expiry_clock.drift_ms(self.clock.as_ref());
        if self.sweeper.cursor.is_none() {
            self.sweeper.pass_started_ns = now_ns;
            self.sweeper.pass_keys_with_ttl = 0;
            self.sweeper.expiring_writes = false;
        }
        let cursor = self.sweeper.cursor.take();
        let limit = self.config.sweep_keys_per_step;
        let result = self.tree.scan(
            Bound::Unbounded,
            Bound::Unbounded,
            limit,
            false,
            cursor.as_deref(),
        );
        let page = self.check_tree(result)?;
        let now = self.now_ms();
        let mut last = None;
        for entry in page.entries {
            if entry.value.expiry_ms != 0 {
                self.sweeper.pass_keys_with_ttl += 1;
            }
            if is_expired(&entry.value, now) {
                match self.remove(&entry.key) {
                    Ok(_) => self.sweeper.stats.expired_swept += 1,
                    // The log is full: resume from this key at the next step.
                    Err(ShardError::Busy { .. } | ShardError::NoSpace { .. }) => {
                        self.sweeper.cursor = last;
                        return Ok(());
                    }
                    Err(other) => return Err(other),
                }
            }
            last = Some(entry.key);
        }
        match page.continuation {
            Some(next) => self.sweeper.cursor = Some(next),
            None => {
                let stats = &mut self.sweeper.stats;
                stats.passes += 1;
                stats.keys_with_ttl = self.sweeper.pass_keys_with_ttl;
                stats.lag_ms = now_ns.saturating_sub(self.sweeper.pass_started_ns) / 1_000_000;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
