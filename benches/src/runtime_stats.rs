//! Shared helpers of the runtime benchmarks: medians, spread and percentiles of repeated runs.
//! Included by each `runtime_*` binary with `#[path]`, so the crate's `lib.rs` stays untouched.

#![allow(dead_code)]

/// The median, minimum, maximum and coefficient of variation of repeated measurements.
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub cv: f64,
}

pub fn summarize(samples: &[f64]) -> Summary {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let variance = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / sorted.len() as f64;
    Summary {
        median: sorted[sorted.len() / 2],
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        cv: if mean > 0.0 {
            variance.sqrt() / mean
        } else {
            0.0
        },
    }
}

/// The `p`-th percentile (0..=100) of `samples`, by nearest rank.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A flag for unstable rows (coefficient of variation over 10%, see shared/BENCHMARKING.md).
pub fn stability(summary: &Summary) -> &'static str {
    if summary.cv > 0.10 {
        " (unstable)"
    } else {
        ""
    }
}
