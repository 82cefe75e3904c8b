//! End-to-end tests: the whole command line (`cli::run`) against the fake
//! native server and a real redis-server on 127.0.0.1, with short op counts
//! so each test takes well under a second of load.
//!
//! What they check is what the server saw and what the reports say (counts,
//! misses, errors, files, exit codes), never how fast anything was: timing
//! is the benchmark's business, not the test's. Open-loop counts are exact
//! because arrivals come from the seeded schedule, not from the clock.

use std::path::Path;
use std::sync::atomic::Ordering;

use clap::Parser;

use super::cli::{run, Cli, Verdict, EXIT_ERRORS, EXIT_REGRESSION};
use super::error::LoadError;
use super::report::{read_summary, summary_file_name};
use super::test_servers::{free_port, Behaviour, FakeServer, Redis};

fn cli(addr: &str, protocol: &str, extra: &[&str]) -> Cli {
    let mut args = vec![
        "jube-load",
        "--quiet",
        "--addr",
        addr,
        "--protocol",
        protocol,
        "--warmup",
        "0",
        "--timeout",
        "5",
    ];
    args.extend_from_slice(extra);
    Cli::try_parse_from(args).expect("valid arguments")
}

fn run_ok(addr: &str, protocol: &str, extra: &[&str]) -> Verdict {
    match run(&cli(addr, protocol, extra)) {
        Ok(verdict) => verdict,
        Err(error) => panic!("run {extra:?} failed: {error}"),
    }
}

fn run_err(addr: &str, protocol: &str, extra: &[&str]) -> LoadError {
    match run(&cli(addr, protocol, extra)) {
        Ok(verdict) => panic!("run {extra:?} succeeded: {:?}", verdict.summary),
        Err(error) => error,
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("JSON file exists");
    serde_json::from_str(&text).expect("valid JSON")
}

fn keys_of(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn native_ycsb_a_loads_runs_writes_json_and_gates_on_a_baseline() {
    let server = FakeServer::start(Behaviour::Normal);
    let addr = server.addr.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let json_dir = dir.path().to_str().expect("utf-8 path");
    let args = [
        "-w",
        "ycsb-a",
        "-c",
        "4",
        "-P",
        "8",
        "--threads",
        "2",
        "--keys",
        "1000",
        "--load",
        "--ops",
        "2000",
        "--repeats",
        "2",
        "--json-dir",
        json_dir,
        "--name",
        "a",
    ];
    let verdict = run_ok(&addr, "native", &args);
    assert_eq!(verdict.exit_code, 0);
    assert_eq!(server.key_count(), 1000, "the load phase writes every key");
    let load = verdict.result.load.as_ref().expect("a load phase");
    assert_eq!((load.ops, load.errors), (1000, 0));
    for repeat in &verdict.result.repeats {
        assert_eq!(repeat.ops, 2000);
        assert_eq!((repeat.errors, repeat.misses), (0, 0));
        let gets = repeat.by_op["get"].ops;
        assert!(
            (800..=1200).contains(&gets),
            "{gets} gets of 2000 in ycsb-a"
        );
        assert_eq!(gets + repeat.by_op["set"].ops, 2000);
    }
    // PING, the load, two repeats: the server saw exactly these requests.
    assert_eq!(
        server.seen.requests.load(Ordering::Relaxed),
        1 + 1000 + 4000
    );

    // Stable names and fields.
    let repeat = json(&dir.path().join("a.r2.json"));
    assert_eq!(
        keys_of(&repeat),
        [
            "machine",
            "name",
            "parameters",
            "repeat",
            "repeats",
            "result",
            "schema",
            "started_unix_s"
        ]
    );
    assert_eq!(repeat["schema"], "jube-load.repeat/1");
    assert_eq!(repeat["repeat"], 2);
    assert_eq!(
        keys_of(&repeat["result"]),
        [
            "by_op",
            "error_samples",
            "errors",
            "latency_us",
            "misses",
            "ops",
            "phase",
            "seconds",
            "throughput_ops_s"
        ]
    );
    assert_eq!(
        keys_of(&repeat["result"]["latency_us"]),
        ["max", "mean", "p50", "p90", "p99", "p999"]
    );
    assert_eq!(
        keys_of(&repeat["parameters"]),
        [
            "addr",
            "connections",
            "distribution",
            "duration_s",
            "key_count",
            "key_size",
            "load",
            "mix",
            "ops",
            "pipeline",
            "protocol",
            "rate_per_s",
            "repeats",
            "scan_length_max",
            "seed",
            "threads",
            "timeout_s",
            "value_size",
            "warmup_s",
            "workload"
        ]
    );
    assert_eq!(repeat["parameters"]["distribution"]["kind"], "zipfian");
    assert_eq!(repeat["parameters"]["workload"], "ycsb-a");
    assert_eq!(
        keys_of(&repeat["machine"]),
        ["cores", "cpu_model", "filesystem", "hostname", "kernel"]
    );
    let summary = json(&dir.path().join("a.summary.json"));
    assert_eq!(
        keys_of(&summary),
        [
            "cv_limit",
            "errors",
            "files",
            "load",
            "machine",
            "name",
            "p50_us",
            "p999_us",
            "p99_us",
            "parameters",
            "repeats",
            "schema",
            "stable",
            "throughput_ops_s"
        ]
    );
    assert_eq!(
        keys_of(&summary["throughput_ops_s"]),
        ["cv", "max", "mean", "median", "min"]
    );
    assert_eq!(
        summary["files"],
        serde_json::json!(["a.r1.json", "a.r2.json"])
    );

    // The same run against itself passes with loose thresholds ...
    let mut gated = args.to_vec();
    gated.truncate(gated.len() - 4);
    gated.extend(["--name", "a", "--baseline", json_dir]);
    gated.extend([
        "--max-throughput-drop-pct",
        "99",
        "--max-p99-rise-pct",
        "1e9",
    ]);
    let verdict = run_ok(&addr, "native", &gated);
    assert_eq!(verdict.exit_code, 0);
    assert!(verdict.comparison.is_some_and(|c| !c.regressed()));
    // ... and fails against a baseline that was impossibly fast.
    let mut fast = read_summary(dir.path(), "a").expect("summary reads back");
    fast.throughput_ops_s.median = 1e15;
    let path = dir.path().join(summary_file_name("a"));
    std::fs::write(&path, serde_json::to_string(&fast).expect("serialize")).expect("write");
    let verdict = run_ok(&addr, "native", &gated);
    assert_eq!(verdict.exit_code, EXIT_REGRESSION);
    // A missing baseline is an error, not a pass.
    let mut missing = gated.clone();
    let name_index = missing.len() - 7;
    missing[name_index] = "no-such-name";
    assert!(matches!(
        run_err(&addr, "native", &missing),
        LoadError::File { .. }
    ));
}

#[test]
fn native_scans_inserts_and_read_modify_writes() {
    let server = FakeServer::start(Behaviour::Normal);
    let addr = server.addr.to_string();
    let base = [
        "-c",
        "3",
        "-P",
        "4",
        "--keys",
        "500",
        "--load",
        "--ops",
        "600",
        "--repeats",
        "1",
    ];
    let e = run_ok(&addr, "native", &[&base[..], &["-w", "ycsb-e"]].concat());
    let report = &e.result.repeats[0];
    assert_eq!(report.errors, 0);
    assert!(report.by_op["scan"].ops > 500 && report.by_op["insert"].ops > 0);
    assert_eq!(
        server.seen.scans.load(Ordering::Relaxed),
        report.by_op["scan"].ops
    );
    assert_eq!(server.key_count() as u64, 500 + report.by_op["insert"].ops);

    let puts_before = server.seen.puts.load(Ordering::Relaxed);
    let f = run_ok(&addr, "native", &[&base[..], &["-w", "ycsb-f"]].concat());
    let report = &f.result.repeats[0];
    let rmw = report.by_op["rmw"].ops;
    assert!(rmw > 200, "{rmw} read-modify-writes");
    assert_eq!(report.ops, 600);
    // Each read-modify-write is a get and then a put; the load adds 500.
    assert_eq!(
        server.seen.puts.load(Ordering::Relaxed) - puts_before,
        500 + rmw
    );

    let keys_before = server.key_count() as u64;
    let d = run_ok(&addr, "native", &[&base[..], &["-w", "ycsb-d"]].concat());
    let inserts = d.result.repeats[0].by_op["insert"].ops;
    assert!(inserts > 0);
    assert_eq!(d.result.repeats[0].errors, 0);
    // Inserts of this run start again after the key count, over keys an
    // earlier run inserted: the store grows by at most the inserts.
    assert!(server.key_count() as u64 <= keys_before + inserts);
}

#[test]
fn open_loop_arrivals_follow_the_seed_not_the_clock() {
    let server = FakeServer::start(Behaviour::Normal);
    let addr = server.addr.to_string();
    let args = [
        "-w",
        "mix",
        "-c",
        "4",
        "--threads",
        "2",
        "--rate",
        "4000",
        "--duration",
        "0.5",
        "--repeats",
        "1",
        "--seed",
        "9",
    ];
    let first = run_ok(&addr, "native", &args).result.repeats[0].ops;
    let second = run_ok(&addr, "native", &args).result.repeats[0].ops;
    assert_eq!(first, second, "the same seed gives the same arrivals");
    // Poisson with mean 2000: 4.5 standard deviations either side.
    assert!((1800..=2200).contains(&first), "{first} arrivals");
}

#[test]
fn error_replies_count_and_set_the_exit_status() {
    let server = FakeServer::start(Behaviour::FailEveryNthPut(10));
    let addr = server.addr.to_string();
    let args = [
        "-w",
        "set",
        "-c",
        "2",
        "-P",
        "4",
        "--ops",
        "500",
        "--repeats",
        "1",
    ];
    let verdict = run_ok(&addr, "native", &args);
    assert_eq!(verdict.exit_code, EXIT_ERRORS);
    let report = &verdict.result.repeats[0];
    assert_eq!(report.errors, 50);
    assert_eq!(
        report.ops, 450,
        "failed operations are counted as errors, not ops"
    );
    assert!(
        report.error_samples[0].contains("Busy"),
        "{:?}",
        report.error_samples
    );
    let tolerant = run_ok(
        &addr,
        "native",
        &[&args[..], &["--max-errors", "50"]].concat(),
    );
    assert_eq!(tolerant.exit_code, 0);
}

#[test]
fn unreachable_wrong_protocol_and_silent_servers_fail_clearly() {
    let nobody = format!("127.0.0.1:{}", free_port());
    let error = run_err(&nobody, "resp", &["--ops", "10"]);
    assert!(matches!(error, LoadError::Connect { .. }), "{error}");
    assert!(error.to_string().contains("cannot connect"), "{error}");

    let server = FakeServer::start(Behaviour::Normal);
    // The fake server cannot frame RESP bytes and stays silent; a real jube
    // server would answer MalformedFrame, which fails the same check.
    let error = run_err(
        &server.addr.to_string(),
        "resp",
        &["--ops", "10", "--timeout", "0.3"],
    );
    assert!(
        error.to_string().contains("is this a resp server"),
        "{error}"
    );

    // Answers the PING, then nothing: the run stalls and says so.
    let silent = FakeServer::start(Behaviour::SilentAfter(1));
    let error = run_err(
        &silent.addr.to_string(),
        "native",
        &["--ops", "100", "-c", "1", "--timeout", "0.3"],
    );
    assert!(matches!(error, LoadError::Stalled { .. }), "{error}");
}

#[test]
fn impossible_settings_are_usage_errors() {
    let server = FakeServer::start(Behaviour::Normal);
    let addr = server.addr.to_string();
    let error = run_err(&addr, "resp", &["-w", "ycsb-e", "--ops", "10"]);
    assert!(error.to_string().contains("native"), "{error}");
    let error = run_err(&addr, "native", &["-P", "65", "--ops", "10"]);
    assert!(matches!(error, LoadError::Usage(_)), "{error}");
    let error = run_err(&addr, "native", &["--get-ratio", "2", "--ops", "10"]);
    assert!(matches!(error, LoadError::Usage(_)), "{error}");
    // Settings are checked before anything connects: the server saw nothing.
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 0);
}

#[test]
fn resp_against_a_real_redis() {
    let redis = Redis::start();
    let addr = redis.addr.to_string();
    let base = [
        "-c",
        "8",
        "-P",
        "16",
        "--threads",
        "2",
        "--keys",
        "2000",
        "--repeats",
        "2",
    ];
    let set = run_ok(
        &addr,
        "resp",
        &[
            &base[..],
            &["-w", "set", "--load", "--ops", "5000", "--repeats", "2"],
        ]
        .concat(),
    );
    assert_eq!(set.exit_code, 0);
    assert_eq!(set.result.load.as_ref().map(|l| l.ops), Some(2000));
    assert_eq!(redis.command(&[b"DBSIZE"]), "2000");
    for repeat in &set.result.repeats {
        assert_eq!((repeat.ops, repeat.errors), (5000, 0));
    }

    let get = run_ok(
        &addr,
        "resp",
        &[
            &base[..],
            &[
                "-w",
                "get",
                "--ops",
                "5000",
                "-d",
                "10-200",
                "--repeats",
                "1",
            ],
        ]
        .concat(),
    );
    let repeat = &get.result.repeats[0];
    assert_eq!((repeat.ops, repeat.misses, repeat.errors), (5000, 0, 0));

    let f = run_ok(
        &addr,
        "resp",
        &[
            &base[..],
            &["-w", "ycsb-f", "--ops", "1000", "--repeats", "1"],
        ]
        .concat(),
    );
    assert!(f.result.repeats[0].by_op["rmw"].ops > 300);
    let open = run_ok(
        &addr,
        "resp",
        &[
            &base[..],
            &[
                "-w",
                "mix",
                "--distribution",
                "zipfian",
                "--rate",
                "3000",
                "--duration",
                "0.3",
            ],
        ]
        .concat(),
    );
    assert!(open.result.repeats[0].ops > 500);
    assert_eq!(
        redis.command(&[b"DBSIZE"]),
        "2000",
        "no run wrote outside the key space"
    );

    // Redis refuses writes past maxmemory: RESP error replies are counted.
    assert_eq!(
        redis.command(&[b"CONFIG", b"SET", b"maxmemory", b"1"]),
        "OK"
    );
    let full = run_ok(
        &addr,
        "resp",
        &[&base[..], &["-w", "set", "--ops", "100", "--repeats", "1"]].concat(),
    );
    assert_eq!(full.exit_code, EXIT_ERRORS);
    assert_eq!(full.result.repeats[0].errors, 100);
    assert!(full.result.repeats[0].error_samples[0].contains("OOM"));
}
