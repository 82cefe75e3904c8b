//! jube-load: drives a jube server (native protocol) or any RESP server
//! (Redis, jube's RESP listener) with a closed- or open-loop workload and
//! reports throughput and latency percentiles. The code is in
//! `jube_benches::load`; docs/benchmarks.md (`## jube-load`) is the manual.

fn main() -> std::process::ExitCode {
    jube_benches::load::cli::main()
}
