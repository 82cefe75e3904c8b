//! Regression gate: compare a run's summary with a saved one of the same
//! name, on the medians across repeats.
//!
//! A regression is a throughput drop or a p99 rise beyond its threshold, in
//! percent of the baseline. The comparison also lists parameters that differ
//! and says when either run was unstable, because a gate over unlike or noisy
//! runs proves nothing; those are warnings, the thresholds alone decide.
//!
//! Invariant: the verdict depends only on the two medians and the
//! thresholds; equal values never regress.

use std::fmt::Write as _;

use super::report::Summary;

/// Allowed worsening, in percent of the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Default 5: throughput may drop by 5%.
    pub throughput_drop_pct: f64,
    /// Default 10: p99 may rise by 10%.
    pub p99_rise_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            throughput_drop_pct: 5.0,
            p99_rise_pct: 10.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Change in percent of the baseline (negative = lower now).
    pub throughput_change_pct: f64,
    pub p99_change_pct: f64,
    pub regressions: Vec<String>,
    pub warnings: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        !self.regressions.is_empty()
    }

    /// A few lines for the terminal.
    pub fn describe(&self, baseline: &Summary, current: &Summary) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "baseline {}: throughput {:.0} -> {:.0} ops/s ({:+.1}%), p99 {:.1} -> {:.1} us ({:+.1}%)",
            baseline.name,
            baseline.throughput_ops_s.median,
            current.throughput_ops_s.median,
            self.throughput_change_pct,
            baseline.p99_us.median,
            current.p99_us.median,
            self.p99_change_pct
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning: {warning}");
        }
        for regression in &self.regressions {
            let _ = writeln!(out, "  REGRESSION: {regression}");
        }
        if !self.regressed() {
            let _ = writeln!(out, "  no regression beyond the thresholds");
        }
        out
    }
}

fn change_pct(baseline: f64, current: f64) -> f64 {
    if baseline == 0.0 {
        if current == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (current - baseline) / baseline * 100.0
    }
}

/// Parameters that do not change what is measured, so may differ freely.
const PARAMETERS_IGNORED: [&str; 3] = ["repeats", "timeout_s", "warmup_s"];

pub fn compare(baseline: &Summary, current: &Summary, thresholds: Thresholds) -> Comparison {
    let throughput_change_pct = change_pct(
        baseline.throughput_ops_s.median,
        current.throughput_ops_s.median,
    );
    let p99_change_pct = change_pct(baseline.p99_us.median, current.p99_us.median);
    let mut regressions = Vec::new();
    if throughput_change_pct < -thresholds.throughput_drop_pct {
        regressions.push(format!(
            "throughput fell {:.1}%, more than the {:.1}% allowed",
            -throughput_change_pct, thresholds.throughput_drop_pct
        ));
    }
    if p99_change_pct > thresholds.p99_rise_pct {
        regressions.push(format!(
            "p99 rose {p99_change_pct:.1}%, more than the {:.1}% allowed",
            thresholds.p99_rise_pct
        ));
    }
    let mut warnings = Vec::new();
    if let (Some(old), Some(new)) = (
        baseline.parameters.as_object(),
        current.parameters.as_object(),
    ) {
        for (key, value) in new {
            if PARAMETERS_IGNORED.contains(&key.as_str()) {
                continue;
            }
            if old.get(key) != Some(value) {
                warnings.push(format!(
                    "parameter {key} differs: baseline {}, now {value}",
                    old.get(key)
                        .map_or("absent".to_string(), ToString::to_string)
                ));
            }
        }
    }
    if baseline.machine != current.machine {
        warnings.push("the baseline was measured on another machine".into());
    }
    for (which, summary) in [("baseline", baseline), ("this run", current)] {
        if !summary.stable {
            warnings.push(format!(
                "{which} is unstable (throughput cv {:.1}%)",
                summary.throughput_ops_s.cv * 100.0
            ));
        }
    }
    Comparison {
        throughput_change_pct,
        p99_change_pct,
        regressions,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::machine::Machine;
    use crate::load::report::Spread;

    fn summary(throughput: f64, p99: f64) -> Summary {
        Summary {
            schema: crate::load::report::SUMMARY_SCHEMA.into(),
            name: "t".into(),
            repeats: 3,
            files: vec![],
            throughput_ops_s: Spread::of(&[throughput]),
            p50_us: Spread::of(&[1.0]),
            p99_us: Spread::of(&[p99]),
            p999_us: Spread::of(&[p99]),
            errors: 0,
            cv_limit: 0.1,
            stable: true,
            load: None,
            parameters: serde_json::json!({"connections": 50, "repeats": 3}),
            machine: Machine {
                cpu_model: "cpu".into(),
                cores: 2,
                kernel: "k".into(),
                filesystem: "ext4".into(),
                hostname: "h".into(),
            },
        }
    }

    #[test]
    fn thresholds_decide() {
        let base = summary(100_000.0, 100.0);
        let defaults = Thresholds::default();
        assert!(!compare(&base, &base, defaults).regressed());
        // Within both thresholds, and improvements never regress.
        assert!(!compare(&base, &summary(95_500.0, 109.0), defaults).regressed());
        assert!(!compare(&base, &summary(200_000.0, 50.0), defaults).regressed());
        let slower = compare(&base, &summary(94_000.0, 100.0), defaults);
        assert_eq!(slower.regressions.len(), 1);
        assert!((slower.throughput_change_pct + 6.0).abs() < 1e-9);
        let later = compare(&base, &summary(100_000.0, 111.0), defaults);
        assert_eq!(later.regressions.len(), 1);
        assert!(later.regressions[0].contains("p99"));
        let loose = Thresholds {
            throughput_drop_pct: 10.0,
            p99_rise_pct: 20.0,
        };
        assert!(!compare(&base, &summary(94_000.0, 111.0), loose).regressed());
        assert_eq!(
            compare(&base, &summary(0.0, 1000.0), defaults)
                .regressions
                .len(),
            2
        );
    }

    #[test]
    fn differing_parameters_and_instability_warn() {
        let base = summary(100.0, 1.0);
        let mut current = summary(100.0, 1.0);
        current.parameters = serde_json::json!({"connections": 10, "repeats": 5});
        current.stable = false;
        current.machine.cores = 4;
        let comparison = compare(&base, &current, Thresholds::default());
        assert!(!comparison.regressed());
        let text = comparison.warnings.join("\n");
        assert!(text.contains("connections"), "{text}");
        assert!(!text.contains("repeats"), "{text}");
        assert!(text.contains("another machine"), "{text}");
        assert!(text.contains("this run is unstable"), "{text}");
    }
}
