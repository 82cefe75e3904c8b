//! What a phase measured: one latency histogram per operation kind, error and
//! miss counts, a few error messages, and how long the phase took.
//!
//! Invariants:
//! - latencies are recorded in nanoseconds, at least 1, saturating at
//!   `LATENCY_NS_MAX` (an hour) rather than failing;
//! - merging the stats of several workers gives the same histograms as if
//!   one worker had recorded everything (hdrhistogram addition is exact).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::workload::OpKind;

/// Highest latency a histogram tracks exactly: an hour.
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits the histograms keep (0.1% resolution).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Error messages kept per phase, to show what the server said.
pub const ERROR_SAMPLES_MAX: usize = 5;

/// A phase's measurements (of one worker, or merged).
#[derive(Debug, Clone)]
pub struct Stats {
    histograms: Vec<Histogram<u64>>,
    pub errors: u64,
    pub misses: u64,
    pub error_samples: Vec<String>,
    /// Wall time of the phase (for merged stats: the slowest worker's).
    pub elapsed: Duration,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            histograms: OpKind::ALL.iter().map(|_| new_histogram()).collect(),
            errors: 0,
            misses: 0,
            error_samples: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Records one completed operation of `kind` that took `latency_ns`.
    pub fn record(&mut self, kind: OpKind, latency_ns: u64) {
        self.histograms[kind.index()].saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
    }

    pub fn record_error(&mut self, message: &str) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES_MAX {
            self.error_samples.push(message.to_string());
        }
    }

    /// Adds `other` (another worker's stats for the same phase).
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.histograms.iter_mut().zip(&other.histograms) {
            mine.add(theirs)
                .expect("histograms with the same bounds always add");
        }
        self.errors += other.errors;
        self.misses += other.misses;
        for sample in &other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES_MAX {
                self.error_samples.push(sample.clone());
            }
        }
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn histogram(&self, kind: OpKind) -> &Histogram<u64> {
        &self.histograms[kind.index()]
    }

    /// All kinds in one histogram.
    pub fn total(&self) -> Histogram<u64> {
        let mut total = new_histogram();
        for histogram in &self.histograms {
            total
                .add(histogram)
                .expect("histograms with the same bounds always add");
        }
        total
    }

    /// Operations completed (of every kind).
    pub fn ops(&self) -> u64 {
        self.histograms.iter().map(Histogram::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_the_slowest_elapsed() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record(OpKind::Get, 1_000);
        a.record(OpKind::Set, 0);
        b.record(OpKind::Get, 9_000_000);
        b.record(OpKind::Get, u64::MAX);
        for i in 0..10 {
            b.record_error(&format!("e{i}"));
        }
        a.elapsed = Duration::from_secs(1);
        b.elapsed = Duration::from_secs(2);
        a.merge(&b);
        assert_eq!(a.ops(), 4);
        assert_eq!(a.histogram(OpKind::Get).len(), 3);
        assert_eq!(a.errors, 10);
        assert_eq!(a.error_samples.len(), ERROR_SAMPLES_MAX);
        assert_eq!(a.elapsed, Duration::from_secs(2));
        let total = a.total();
        assert_eq!(total.min(), 1);
        assert!(total.max() >= LATENCY_NS_MAX);
    }
}
