//! jube-load: the load generator for jube and its peers (issue 6).
//!
//! - `workload`, `zipf`: what to send (mixes, YCSB presets, key choice);
//! - `wire`, `resp`: how to say it (jube's native protocol or RESP2);
//! - `driver`: worker threads, each an event loop over many connections;
//! - `stats`: latency histograms and counts;
//! - `run`: the phases of a run (load, warm-up, repeats) over the workers;
//! - `report`, `machine`, `baseline`: the table, the JSON files, and the
//!   comparison against saved JSON.
//!
//! docs/benchmarks.md (`## jube-load`) documents the CLI and the JSON format.

pub mod baseline;
pub mod cli;
pub mod driver;
pub mod error;
pub mod machine;
pub mod report;
pub mod resp;
pub mod run;
pub mod stats;
pub mod wire;
pub mod workload;
pub mod zipf;

#[cfg(test)]
mod e2e_tests;
#[cfg(test)]
mod test_servers;
