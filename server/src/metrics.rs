//! Per-core request metrics (operations, errors, latency histograms) and their merge into INFO.
//!
//! Each core counts the requests of the connections it serves, with no sharing between cores; INFO
//! asks every core for a [`CoreSnapshot`] and merges them. Latencies are measured from the moment a
//! request is decoded to the moment its response is encoded, in microseconds, into one
//! hdrhistogram per operation kind.
//!
//! Invariants: histograms are created with a fixed range ([`LATENCY_US_MAX`]) and values above it
//! are clamped, so recording never fails or allocates; metric names are stable (docs/operations.md
//! lists them).

use crate::constants::{LATENCY_SIGNIFICANT_FIGURES, LATENCY_US_MAX};
use hdrhistogram::Histogram;
use jube_protocol::{OperationKind, Status};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Every operation kind, in wire order; the index of a kind in this table indexes the counters.
pub const KINDS: [OperationKind; 10] = [
    OperationKind::Ping,
    OperationKind::Get,
    OperationKind::Put,
    OperationKind::Delete,
    OperationKind::MultiGet,
    OperationKind::MultiPut,
    OperationKind::Scan,
    OperationKind::Info,
    OperationKind::Checkpoint,
    OperationKind::Txn,
];

/// The metric name of an operation kind.
pub fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Ping => "ping",
        OperationKind::Get => "get",
        OperationKind::Put => "put",
        OperationKind::Delete => "delete",
        OperationKind::MultiGet => "multi_get",
        OperationKind::MultiPut => "multi_put",
        OperationKind::Scan => "scan",
        OperationKind::Info => "info",
        OperationKind::Checkpoint => "checkpoint",
        OperationKind::Txn => "txn",
    }
}

fn kind_index(kind: OperationKind) -> usize {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("KINDS lists every operation kind")
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_max(LATENCY_US_MAX, LATENCY_SIGNIFICANT_FIGURES)
        .expect("the latency histogram bounds are valid")
}

/// One core's counters. Not `Send`: only its core touches it.
pub struct CoreMetrics {
    ops: [Cell<u64>; KINDS.len()],
    errors: [Cell<u64>; KINDS.len()],
    /// Errors by status, including frames rejected before their operation was known.
    statuses: RefCell<Vec<(Status, u64)>>,
    latency_us: RefCell<Vec<Histogram<u64>>>,
    /// RESP front end: commands answered, of which error replies, and connections closed for a
    /// protocol error.
    resp: [Cell<u64>; RESP_COUNTERS.len()],
    /// Large-frame budgets, per side: bytes reserved now, the most ever reserved, and how many
    /// reservations had to wait.
    budget_bytes: [Cell<u64>; 2],
    budget_bytes_peak: [Cell<u64>; 2],
    budget_waits: [Cell<u64>; 2],
    /// Transactions (native Txn, RESP EXEC, cross-shard MSET/MSETNX/MGET) by outcome.
    txn: [Cell<u64>; TXN_COUNTERS.len()],
}

/// The transaction counters' metric names, in the order of `CoreMetrics::txn`.
const TXN_COUNTERS: [&str; 5] = [
    "txn_committed",
    "txn_aborted_assertion",
    "txn_aborted_op",
    "txn_aborted_error",
    "txn_cross_shard",
];

/// Which transaction counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnCounter {
    Committed = 0,
    /// An assertion failed (RESP: a WATCHed key changed).
    AbortedAssertion = 1,
    /// An op could not apply (Add on a non-integer, overflow).
    AbortedOp = 2,
    /// The server could not run it (Busy, NoSpace, a failed shard...).
    AbortedError = 3,
    /// Started across several shards (two-phase commit).
    CrossShard = 4,
}

/// Which large-frame budget (large_frame.rs) a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSide {
    /// Requests being received.
    Input = 0,
    /// Replies being sent.
    Output = 1,
}

/// The budget sides' metric name stems, in the order of `BudgetSide`.
const BUDGET_SIDES: [&str; 2] = ["input", "output"];

/// The RESP counters' metric names, in the order of `CoreMetrics::resp`.
const RESP_COUNTERS: [&str; 3] = ["resp.commands", "resp.errors", "resp.protocol_errors"];

/// Which RESP counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCounter {
    Command = 0,
    Error = 1,
    ProtocolError = 2,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            ops: Default::default(),
            errors: Default::default(),
            statuses: RefCell::new(Vec::new()),
            latency_us: RefCell::new(KINDS.iter().map(|_| new_histogram()).collect()),
            resp: Default::default(),
            txn: Default::default(),
            budget_bytes: Default::default(),
            budget_bytes_peak: Default::default(),
            budget_waits: Default::default(),
        }
    }
}

impl CoreMetrics {
    /// Counts one answered request. `NotFound` is an answer, not an error.
    pub fn record(&self, kind: OperationKind, status: Status, latency: Duration) {
        let index = kind_index(kind);
        self.ops[index].set(self.ops[index].get() + 1);
        if status != Status::Ok && status != Status::NotFound {
            self.errors[index].set(self.errors[index].get() + 1);
            self.record_status(status);
        }
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, LATENCY_US_MAX);
        self.latency_us.borrow_mut()[index].saturating_record(micros);
    }

    /// Counts an error response to a frame that was never decoded into an operation.
    pub fn record_status(&self, status: Status) {
        let mut statuses = self.statuses.borrow_mut();
        match statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += 1,
            // Bounded by the number of statuses (Status::KNOWN plus the rare Unknown code).
            None => statuses.push((status, 1)),
        }
    }

    /// Counts one RESP event.
    pub fn record_resp(&self, counter: RespCounter) {
        let cell = &self.resp[counter as usize];
        cell.set(cell.get() + 1);
    }

    /// Counts one transaction event.
    pub fn record_txn(&self, counter: TxnCounter) {
        let cell = &self.txn[counter as usize];
        cell.set(cell.get() + 1);
    }

    /// Records the bytes a large-frame budget holds now.
    pub fn record_budget(&self, side: BudgetSide, reserved: usize) {
        let index = side as usize;
        let reserved = reserved as u64;
        self.budget_bytes[index].set(reserved);
        if reserved > self.budget_bytes_peak[index].get() {
            self.budget_bytes_peak[index].set(reserved);
        }
    }

    /// Counts a reservation that had to wait for a large-frame budget.
    pub fn record_budget_wait(&self, side: BudgetSide) {
        let cell = &self.budget_waits[side as usize];
        cell.set(cell.get() + 1);
    }

    pub fn snapshot(&self) -> CoreSnapshot {
        CoreSnapshot {
            txn: self.txn.iter().map(Cell::get).collect(),
            budget_bytes: self.budget_bytes.iter().map(Cell::get).collect(),
            budget_bytes_peak: self.budget_bytes_peak.iter().map(Cell::get).collect(),
            budget_waits: self.budget_waits.iter().map(Cell::get).collect(),
            resp: self.resp.iter().map(Cell::get).collect(),
            ops: self.ops.iter().map(Cell::get).collect(),
            errors: self.errors.iter().map(Cell::get).collect(),
            statuses: self.statuses.borrow().clone(),
            latency_us: self.latency_us.borrow().clone(),
        }
    }
}

/// A copy of one core's counters, sent to the core answering INFO.
#[derive(Debug, Clone)]
pub struct CoreSnapshot {
    pub ops: Vec<u64>,
    pub errors: Vec<u64>,
    pub statuses: Vec<(Status, u64)>,
    pub latency_us: Vec<Histogram<u64>>,
    pub resp: Vec<u64>,
    pub txn: Vec<u64>,
    /// Per budget side: bytes reserved now (summed over cores), the largest per-core peak (the
    /// maximum over cores: each core has its own budget), and waits (summed).
    pub budget_bytes: Vec<u64>,
    pub budget_bytes_peak: Vec<u64>,
    pub budget_waits: Vec<u64>,
}

impl CoreSnapshot {
    pub fn empty() -> CoreSnapshot {
        CoreMetrics::default().snapshot()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &CoreSnapshot) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            *mine += theirs;
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            *mine += theirs;
        }
        for (mine, theirs) in self.resp.iter_mut().zip(&other.resp) {
            *mine += theirs;
        }
        for (mine, theirs) in self.txn.iter_mut().zip(&other.txn) {
            *mine += theirs;
        }
        for (mine, theirs) in self.budget_bytes.iter_mut().zip(&other.budget_bytes) {
            *mine += theirs;
        }
        for (mine, theirs) in self.budget_waits.iter_mut().zip(&other.budget_waits) {
            *mine += theirs;
        }
        for (mine, theirs) in self
            .budget_bytes_peak
            .iter_mut()
            .zip(&other.budget_bytes_peak)
        {
            *mine = (*mine).max(*theirs);
        }
        for (status, count) in &other.statuses {
            match self.statuses.iter_mut().find(|(s, _)| s == status) {
                Some((_, mine)) => *mine += count,
                None => self.statuses.push((*status, *count)),
            }
        }
        for (mine, theirs) in self.latency_us.iter_mut().zip(&other.latency_us) {
            // Same bounds on every core, so adding cannot fail; a failure would only lose samples.
            let _ = mine.add(theirs);
        }
    }

    /// The counters as INFO metrics: `ops.KIND`, `errors.KIND`, `status.STATUS`, `resp.commands`,
    /// `resp.errors`, `resp.protocol_errors`, `large_frames.{input,output}_bytes`,
    /// `large_frames.{input,output}_bytes_core_peak`, `large_frames.{input,output}_waits`, and for
    /// each kind
    /// with samples `latency_us.KIND.{p50,p90,p99,p999,max}`.
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let mut metrics = Vec::new();
        for (index, kind) in KINDS.iter().enumerate() {
            let name = kind_name(*kind);
            metrics.push((format!("ops.{name}"), self.ops[index]));
            metrics.push((format!("errors.{name}"), self.errors[index]));
        }
        for (status, count) in &self.statuses {
            metrics.push((format!("status.{status}"), *count));
        }
        for (name, count) in RESP_COUNTERS.iter().zip(&self.resp) {
            metrics.push((name.to_string(), *count));
        }
        for (name, count) in TXN_COUNTERS.iter().zip(&self.txn) {
            metrics.push((name.to_string(), *count));
        }
        for (index, side) in BUDGET_SIDES.iter().enumerate() {
            metrics.push((
                format!("large_frames.{side}_bytes"),
                self.budget_bytes[index],
            ));
            metrics.push((
                format!("large_frames.{side}_bytes_core_peak"),
                self.budget_bytes_peak[index],
            ));
            metrics.push((
                format!("large_frames.{side}_waits"),
                self.budget_waits[index],
            ));
        }
        for (index, kind) in KINDS.iter().enumerate() {
            let histogram = &self.latency_us[index];
            if histogram.is_empty() {
                continue;
            }
            let name = kind_name(*kind);
            for (label, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
                metrics.push((
                    format!("latency_us.{name}.{label}"),
                    histogram.value_at_quantile(quantile),
                ));
            }
            metrics.push((format!("latency_us.{name}.max"), histogram.max()));
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_merge_counts_and_latencies() {
        let a = CoreMetrics::default();
        a.record(OperationKind::Get, Status::Ok, Duration::from_micros(100));
        a.record(
            OperationKind::Get,
            Status::NotFound,
            Duration::from_micros(300),
        );
        let b = CoreMetrics::default();
        b.record(
            OperationKind::Put,
            Status::ShardFailed,
            Duration::from_micros(50),
        );
        b.record_status(Status::MalformedFrame);
        let mut total = a.snapshot();
        total.merge(&b.snapshot());
        let metrics = total.metrics();
        let get = |name: &str| metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(get("ops.get"), Some(2));
        assert_eq!(get("errors.get"), Some(0));
        assert_eq!(get("ops.put"), Some(1));
        assert_eq!(get("errors.put"), Some(1));
        assert_eq!(get("status.ShardFailed"), Some(1));
        assert_eq!(get("status.MalformedFrame"), Some(1));
        let p50 = get("latency_us.get.p50").expect("get latency present");
        assert!((99..=101).contains(&p50), "p50 {p50}");
        assert!(get("latency_us.get.max").expect("max") >= 299);
        assert_eq!(get("latency_us.ping.p50"), None);
    }
}
