//! Counters and fixed-bucket histograms the WAL keeps for INFO and for tests.
//!
//! Invariant: histogram bucket `i > 0` counts values in `[2^(i-1), 2^i)`; bucket 0 counts zero;
//! the last bucket also counts everything larger. No allocation after construction.

use super::constants::HISTOGRAM_BUCKETS;
use super::Lsn;

/// A power-of-two histogram with [`HISTOGRAM_BUCKETS`] buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; HISTOGRAM_BUCKETS],
    pub total_count: u64,
    pub sum: u64,
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        let bucket = (64 - value.leading_zeros()) as usize;
        let index = bucket.min(HISTOGRAM_BUCKETS - 1);
        self.counts[index] += 1;
        self.total_count += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// The inclusive lower bound of bucket `index`.
    pub fn bucket_floor(index: usize) -> u64 {
        if index == 0 {
            0
        } else {
            1u64 << (index - 1)
        }
    }

    /// The mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total_count == 0 {
            0.0
        } else {
            self.sum as f64 / self.total_count as f64
        }
    }
}

/// What the WAL has done since it was opened (recovery figures included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalStats {
    /// Every record up to this LSN is durable.
    pub durable_lsn: Lsn,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// Live segment files (including the one being written) and their bytes on disk.
    pub segments_count: u64,
    pub segments_bytes: u64,
    /// Released segments kept for reuse.
    pub free_segments_count: u64,
    /// Records made durable (or written, under `SyncPolicy::None`) per flush.
    pub records_per_commit: Histogram,
    /// Bytes written per flush (whole blocks, padding included).
    pub bytes_per_commit: Histogram,
    /// Bytes made durable per sync (covering every write since the previous sync).
    pub bytes_per_sync: Histogram,
    pub flushes_count: u64,
    pub syncs_count: u64,
    pub bytes_written: u64,
    /// Appends refused because the buffer was full.
    pub busy_rejections: u64,
    /// Flushes that had to wait because the next segment was not yet preallocated.
    pub rollover_stalls: u64,
    pub rollovers_count: u64,
    pub segments_recycled: u64,
    pub segments_created: u64,
    pub segments_deleted: u64,
    /// Torn or partially written tails truncated by recovery.
    pub torn_tails_truncated: u64,
    /// Records replayed by the last recovery.
    pub records_recovered: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        let mut h = Histogram::default();
        for v in [0, 1, 2, 3, 4, 1000, u64::MAX] {
            h.record(v);
        }
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[2], 2);
        assert_eq!(h.counts[3], 1);
        assert_eq!(h.counts[10], 1);
        assert_eq!(h.counts[HISTOGRAM_BUCKETS - 1], 1);
        assert_eq!(h.total_count, 7);
        assert_eq!(Histogram::bucket_floor(10), 512);
    }
}
