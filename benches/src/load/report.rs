//! Results as people and scripts read them: the table on stdout and, with
//! `--json-dir`, one JSON file per repeat plus a summary.
//!
//! File names are stable, so scripts and `--baseline` find them without
//! listing the directory: `<name>.r<N>.json` for repeat N (from 1) and
//! `<name>.summary.json`. The JSON field names are a format (`schema` says
//! which version); docs/benchmarks.md lists them and a test pins them.
//!
//! Invariants:
//! - latencies in reports are microseconds, throughputs operations per
//!   second of wall time (issue to last reply, per phase);
//! - the coefficient of variation is the sample standard deviation over the
//!   mean (0 for a single repeat); a run whose throughput CV is above
//!   `CV_LIMIT` is flagged unstable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::error::LoadError;
use super::machine::Machine;
use super::run::Settings;
use super::stats::Stats;
use super::workload::OpKind;

/// Version tag of the repeat files.
pub const REPEAT_SCHEMA: &str = "jube-load.repeat/1";
/// Version tag of the summary file.
pub const SUMMARY_SCHEMA: &str = "jube-load.summary/1";
/// Throughput coefficient of variation above which a run is unstable
/// (docs: BENCHMARKING.md, "flag a run whose CV is over 10%").
pub const CV_LIMIT: f64 = 0.10;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyUs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyUs {
    fn of(histogram: &Histogram<u64>) -> LatencyUs {
        let us = |ns: u64| ns as f64 / 1000.0;
        if histogram.is_empty() {
            return LatencyUs {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        LatencyUs {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// One operation kind within a phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpReport {
    pub ops: u64,
    pub throughput_ops_s: f64,
    pub latency_us: LatencyUs,
}

/// One phase (the load, or one repeat).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhaseReport {
    pub phase: String,
    pub ops: u64,
    pub seconds: f64,
    pub throughput_ops_s: f64,
    pub errors: u64,
    pub misses: u64,
    pub latency_us: LatencyUs,
    /// Per operation kind ("get", "set", "insert", "scan", "rmw").
    pub by_op: BTreeMap<String, OpReport>,
    pub error_samples: Vec<String>,
}

impl PhaseReport {
    pub fn new(phase: &str, stats: &Stats, kinds: &[OpKind]) -> PhaseReport {
        let seconds = stats.elapsed.as_secs_f64();
        let rate = |ops: u64| {
            if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            }
        };
        let by_op = kinds
            .iter()
            .map(|kind| {
                let histogram = stats.histogram(*kind);
                let report = OpReport {
                    ops: histogram.len(),
                    throughput_ops_s: rate(histogram.len()),
                    latency_us: LatencyUs::of(histogram),
                };
                (kind.name().to_string(), report)
            })
            .collect();
        let ops = stats.ops();
        PhaseReport {
            phase: phase.to_string(),
            ops,
            seconds,
            throughput_ops_s: rate(ops),
            errors: stats.errors,
            misses: stats.misses,
            latency_us: LatencyUs::of(&stats.total()),
            by_op,
            error_samples: stats.error_samples.clone(),
        }
    }
}

/// Median, mean, extremes and coefficient of variation of one figure
/// across repeats.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spread {
    pub median: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub cv: f64,
}

impl Spread {
    /// Panics on an empty slice: a run has at least one repeat.
    pub fn of(values: &[f64]) -> Spread {
        assert!(!values.is_empty(), "a spread needs at least one value");
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / count as f64;
        let cv = if count < 2 || mean == 0.0 {
            0.0
        } else {
            let variance =
                sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1) as f64;
            variance.sqrt() / mean
        };
        Spread {
            median,
            mean,
            min: sorted[0],
            max: sorted[count - 1],
            cv,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RepeatFile<'a> {
    pub schema: &'static str,
    pub name: &'a str,
    pub repeat: usize,
    pub repeats: usize,
    pub started_unix_s: u64,
    pub parameters: &'a Settings,
    pub machine: &'a Machine,
    pub result: &'a PhaseReport,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub schema: String,
    pub name: String,
    pub repeats: usize,
    pub files: Vec<String>,
    pub throughput_ops_s: Spread,
    pub p50_us: Spread,
    pub p99_us: Spread,
    pub p999_us: Spread,
    pub errors: u64,
    pub cv_limit: f64,
    /// Throughput CV within `cv_limit`.
    pub stable: bool,
    pub load: Option<PhaseReport>,
    pub parameters: serde_json::Value,
    pub machine: Machine,
}

impl Summary {
    pub fn new(
        name: &str,
        settings: &Settings,
        machine: &Machine,
        load: Option<&PhaseReport>,
        repeats: &[PhaseReport],
    ) -> Summary {
        let spread =
            |f: fn(&PhaseReport) -> f64| Spread::of(&repeats.iter().map(f).collect::<Vec<_>>());
        let throughput_ops_s = spread(|r| r.throughput_ops_s);
        Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            name: name.to_string(),
            repeats: repeats.len(),
            files: (1..=repeats.len())
                .map(|n| repeat_file_name(name, n))
                .collect(),
            throughput_ops_s,
            p50_us: spread(|r| r.latency_us.p50),
            p99_us: spread(|r| r.latency_us.p99),
            p999_us: spread(|r| r.latency_us.p999),
            errors: repeats.iter().map(|r| r.errors).sum(),
            cv_limit: CV_LIMIT,
            stable: throughput_ops_s.cv <= CV_LIMIT,
            load: load.cloned(),
            parameters: serde_json::to_value(settings).expect("settings serialize"),
            machine: machine.clone(),
        }
    }
}

#[cfg(test)]
impl Summary {
    /// A summary of `repeats` with placeholder parameters and machine.
    fn new_for_test(repeats: &[PhaseReport]) -> Summary {
        let spread =
            |f: fn(&PhaseReport) -> f64| Spread::of(&repeats.iter().map(f).collect::<Vec<_>>());
        let throughput_ops_s = spread(|r| r.throughput_ops_s);
        Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            name: "test".into(),
            repeats: repeats.len(),
            files: vec![],
            throughput_ops_s,
            p50_us: spread(|r| r.latency_us.p50),
            p99_us: spread(|r| r.latency_us.p99),
            p999_us: spread(|r| r.latency_us.p999),
            errors: repeats.iter().map(|r| r.errors).sum(),
            cv_limit: CV_LIMIT,
            stable: throughput_ops_s.cv <= CV_LIMIT,
            load: None,
            parameters: serde_json::Value::Null,
            machine: Machine::current(),
        }
    }
}

pub fn repeat_file_name(name: &str, repeat: usize) -> String {
    format!("{name}.r{repeat}.json")
}

pub fn summary_file_name(name: &str) -> String {
    format!("{name}.summary.json")
}

/// Writes the repeat files and the summary into `dir` (created if absent);
/// returns the paths written.
pub fn write_json(
    dir: &Path,
    name: &str,
    settings: &Settings,
    machine: &Machine,
    repeats: &[PhaseReport],
    summary: &Summary,
) -> Result<Vec<PathBuf>, LoadError> {
    std::fs::create_dir_all(dir).map_err(|e| LoadError::file(dir, e))?;
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut written = Vec::new();
    let mut write = |file_name: String, json: serde_json::Result<String>| {
        let path = dir.join(file_name);
        let json = json.map_err(|e| LoadError::file(&path, e))?;
        std::fs::write(&path, json + "\n").map_err(|e| LoadError::file(&path, e))?;
        written.push(path);
        Ok::<(), LoadError>(())
    };
    for (index, result) in repeats.iter().enumerate() {
        let file = RepeatFile {
            schema: REPEAT_SCHEMA,
            name,
            repeat: index + 1,
            repeats: repeats.len(),
            started_unix_s,
            parameters: settings,
            machine,
            result,
        };
        write(
            repeat_file_name(name, index + 1),
            serde_json::to_string_pretty(&file),
        )?;
    }
    write(
        summary_file_name(name),
        serde_json::to_string_pretty(summary),
    )?;
    Ok(written)
}

/// Reads a summary written by `write_json`.
pub fn read_summary(dir: &Path, name: &str) -> Result<Summary, LoadError> {
    let path = dir.join(summary_file_name(name));
    let text = std::fs::read_to_string(&path).map_err(|e| LoadError::file(&path, e))?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| LoadError::file(&path, e))?;
    if summary.schema != SUMMARY_SCHEMA {
        return Err(LoadError::file(
            &path,
            format!("schema {:?}, expected {SUMMARY_SCHEMA:?}", summary.schema),
        ));
    }
    Ok(summary)
}

fn row(
    out: &mut String,
    phase: &str,
    op: &str,
    throughput: f64,
    latency: &LatencyUs,
    counts: Option<(u64, u64)>,
) {
    // Errors and misses are counted per phase, not per operation kind.
    let (errors, misses) = match counts {
        Some((errors, misses)) => (errors.to_string(), misses.to_string()),
        None => ("-".to_string(), "-".to_string()),
    };
    let _ = writeln!(
        out,
        "{phase:<8} {op:<6} {throughput:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {errors:>8} {misses:>8}",
        latency.p50, latency.p90, latency.p99, latency.p999, latency.max
    );
}

/// The human table: one row per phase (and per operation kind when there
/// are several), then the medians with the spread.
pub fn table(load: Option<&PhaseReport>, repeats: &[PhaseReport], summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<6} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8}",
        "phase",
        "op",
        "ops/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "errors",
        "misses"
    );
    for report in load.into_iter().chain(repeats) {
        row(
            &mut out,
            &report.phase,
            "all",
            report.throughput_ops_s,
            &report.latency_us,
            Some((report.errors, report.misses)),
        );
        if report.by_op.len() > 1 {
            for (op, by_op) in &report.by_op {
                row(
                    &mut out,
                    "",
                    op,
                    by_op.throughput_ops_s,
                    &by_op.latency_us,
                    None,
                );
            }
        }
    }
    let median =
        |f: fn(&PhaseReport) -> f64| Spread::of(&repeats.iter().map(f).collect::<Vec<_>>()).median;
    let medians = LatencyUs {
        p50: median(|r| r.latency_us.p50),
        p90: median(|r| r.latency_us.p90),
        p99: median(|r| r.latency_us.p99),
        p999: median(|r| r.latency_us.p999),
        max: median(|r| r.latency_us.max),
        mean: median(|r| r.latency_us.mean),
    };
    row(
        &mut out,
        "median",
        "all",
        summary.throughput_ops_s.median,
        &medians,
        Some((summary.errors, repeats.iter().map(|r| r.misses).sum())),
    );
    let _ = writeln!(
        out,
        "(median row: errors and misses are totals over the repeats)"
    );
    let _ = writeln!(
        out,
        "{} repeats: throughput cv {:.1}% ({}), p99 cv {:.1}%",
        summary.repeats,
        summary.throughput_ops_s.cv * 100.0,
        if summary.stable {
            "stable"
        } else {
            "UNSTABLE: cv above 10%"
        },
        summary.p99_us.cv * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spread_median_and_cv() {
        let spread = Spread::of(&[100.0, 110.0, 90.0]);
        assert_eq!(spread.median, 100.0);
        assert_eq!(spread.mean, 100.0);
        assert!((spread.cv - 0.1).abs() < 1e-12, "cv {}", spread.cv);
        assert_eq!(Spread::of(&[1.0, 3.0]).median, 2.0);
        assert_eq!(Spread::of(&[5.0]).cv, 0.0);
    }

    #[test]
    fn phase_report_numbers() {
        let mut stats = Stats::new();
        for i in 1..=100 {
            stats.record(OpKind::Get, i * 1000);
        }
        stats.record(OpKind::Set, 5000);
        stats.record_error("ERR x");
        stats.elapsed = Duration::from_millis(500);
        let report = PhaseReport::new("run 1", &stats, &[OpKind::Get, OpKind::Set]);
        assert_eq!(report.ops, 101);
        assert_eq!(report.throughput_ops_s, 202.0);
        assert_eq!(report.errors, 1);
        assert!((report.by_op["get"].latency_us.p50 - 50.0).abs() < 0.1);
        assert!((report.latency_us.max - 100.0).abs() < 0.1);
        assert_eq!(report.by_op["set"].ops, 1);
    }

    #[test]
    fn table_shows_every_column_and_flags_instability() {
        let report = |phase: &str, ops: u64| {
            let mut stats = Stats::new();
            for _ in 0..ops {
                stats.record(OpKind::Get, 2_000);
            }
            stats.record(OpKind::Set, 4_000);
            stats.misses = 3;
            stats.elapsed = Duration::from_secs(1);
            PhaseReport::new(phase, &stats, &[OpKind::Get, OpKind::Set])
        };
        let repeats = [
            report("run 1", 100),
            report("run 2", 150),
            report("run 3", 100),
        ];
        let settings_json = serde_json::json!({});
        let summary = Summary {
            parameters: settings_json,
            ..Summary::new_for_test(&repeats)
        };
        let text = table(None, &repeats, &summary);
        for column in [
            "ops/s", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "errors", "misses",
        ] {
            assert!(text.contains(column), "no {column} column:\n{text}");
        }
        assert!(text.contains("UNSTABLE"), "{text}");
        assert_eq!(summary.throughput_ops_s.median, 101.0);
        // One "all" row and one per kind for each repeat, then the medians.
        assert_eq!(text.lines().filter(|l| l.contains(" get ")).count(), 3);
        assert!(text
            .lines()
            .any(|l| l.starts_with("median") && l.trim_end().ends_with('9')));
    }
}
