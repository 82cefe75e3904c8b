//! INFO: every core's report merged into a `"total"` section and one `"shard.N"` section per
//! shard. Metric names are listed in docs/operations.md.
//!
//! Invariants: sections come in a fixed order (total, then shards by id); a shard metric appears in
//! the total as a sum, except LSNs, durations and ratios, whose total is the maximum over shards
//! (a sum of LSNs means nothing).

use crate::call::{wrong_output, CallOutput, CoreReport};
use crate::metrics::CoreSnapshot;
use crate::server::Shared;
use jube_protocol::{Failure, InfoReply, InfoSection, Metric};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What INFO needs besides the cores' reports.
#[derive(Clone)]
pub struct InfoContext {
    pub shared: Arc<Shared>,
}

/// Whether the total of a shard metric is its maximum rather than its sum.
fn totals_as_max(name: &str) -> bool {
    name.ends_with("_lsn")
        || name.contains("duration")
        || name.contains("per_sync")
        || name.ends_with("_us")
}

fn metric(name: impl Into<String>, value: u64) -> Metric {
    Metric {
        name: name.into(),
        value,
    }
}

/// Builds the INFO reply from one `Report` output per core. Err if an output is not a report.
pub fn build_info(context: &InfoContext, outputs: Vec<CallOutput>) -> Result<InfoReply, Failure> {
    let shared = &context.shared;
    let mut reports: Vec<CoreReport> = Vec::with_capacity(outputs.len());
    for output in outputs {
        let CallOutput::Report(report) = output else {
            return Err(wrong_output("Info"));
        };
        reports.push(*report);
    }
    let mut snapshot = CoreSnapshot::empty();
    for report in &reports {
        snapshot.merge(&report.snapshot);
    }
    let (shard_sections, shard_totals, shards_failed) = shard_sections(&reports);
    let mut total = vec![
        metric("uptime_ms", uptime_ms(shared)),
        metric(
            "connections",
            shared.connections.load(Ordering::Relaxed) as u64,
        ),
        metric(
            "connections_total",
            shared.connections_total.load(Ordering::Relaxed),
        ),
        metric(
            "connections_rejected",
            shared.connections_rejected.load(Ordering::Relaxed),
        ),
        metric("shards_failed", shards_failed),
    ];
    total.extend(
        snapshot
            .metrics()
            .into_iter()
            .map(|(name, value)| metric(name, value)),
    );
    total.extend(
        shard_totals
            .into_iter()
            .map(|(name, value)| metric(name, value)),
    );
    let mut sections = vec![InfoSection {
        name: "total".to_string(),
        metrics: total,
    }];
    sections.extend(shard_sections);
    Ok(InfoReply {
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: uptime_ms(shared),
        shard_count: u32::try_from(shared.shard_count).unwrap_or(u32::MAX),
        core_count: u32::try_from(shared.cores).unwrap_or(u32::MAX),
        sections,
    })
}

/// One section per shard, by id, with the totals of their metrics and the count of failed shards.
fn shard_sections(reports: &[CoreReport]) -> (Vec<InfoSection>, BTreeMap<String, u64>, u64) {
    let mut shard_reports: Vec<_> = reports
        .iter()
        .flat_map(|report| report.shards.iter())
        .collect();
    shard_reports.sort_by_key(|report| report.shard);
    let mut sections = Vec::new();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = 0u64;
    for shard in shard_reports {
        let mut metrics = vec![metric("failed", u64::from(shard.failure.is_some()))];
        failed += u64::from(shard.failure.is_some());
        for (name, value) in &shard.metrics {
            let total = totals.entry(name.clone()).or_insert(0);
            *total = if totals_as_max(name) {
                (*total).max(*value)
            } else {
                total.saturating_add(*value)
            };
            metrics.push(metric(name.clone(), *value));
        }
        sections.push(InfoSection {
            name: format!("shard.{}", shard.shard),
            metrics,
        });
    }
    (sections, totals, failed)
}

fn uptime_ms(shared: &Shared) -> u64 {
    u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
