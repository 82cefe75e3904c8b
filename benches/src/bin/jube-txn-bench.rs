//! jube-txn-bench: transaction throughput and latency, jube against Redis in the same run.
//!
//! Starts its own jubed (release build next to this binary, `--sync always`) and redis-server
//! (`appendonly yes`, `appendfsync always`: the same durability) on free ports of 127.0.0.1 with
//! temporary data directories, then runs each workload on each server, alternating jube and
//! Redis, `--repeats` times, with `--connections` blocking clients (one thread each):
//!
//! - `txn-1shard`: each connection adds 1 to two keys of its own that live on one jube shard,
//!   guarded by an IntCompare assertion (Redis: `MULTI INCR INCR EXEC`);
//! - `txn-2shard`: the same with the two keys on different shards: a two-phase commit in jube
//!   (Redis has one keyspace: the same MULTI/EXEC);
//! - `task-queue`: a pool of tasks; each agent picks an open task near the shared head, reads it,
//!   and claims it with an assert-guarded transaction (jube: assert value "open", put its name,
//!   add 1 to its counter; Redis: `WATCH task`, `GET task`, `MULTI SET task name INCR count
//!   EXEC`, a null EXEC being a conflict). Reported: claims/s, claim latency p50/p99 (from the
//!   first read of a task to the acknowledged claim, conflicts and retries included), duplicate
//!   claims (tasks acknowledged to two agents: must be 0), conflicts per claim, and for jube the
//!   WAL syncs per claim (INFO `wal_syncs`).
//!
//! Prints one markdown table with medians over the repeats and the spread, plus `uptime` before
//! and after. A benchmark, not a test: it asserts nothing but the absence of duplicates.

use hdrhistogram::Histogram;
use jube_benches::load::resp::{encode_command, parse, Parsed, Value};
use jube_protocol::{Client, ClientOptions, CompareOp, Txn, TxnOutcome};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    connections: usize,
    seconds: u64,
    repeats: usize,
    tasks: usize,
}

fn args() -> Args {
    let mut args = Args {
        connections: 50,
        seconds: 5,
        repeats: 3,
        tasks: 200_000,
    };
    let words: Vec<String> = std::env::args().skip(1).collect();
    for pair in words.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| {
            eprintln!("usage: jube-txn-bench [--connections N] [--seconds S] [--repeats R] [--tasks T]");
            std::process::exit(2)
        });
        match pair[0].as_str() {
            "--connections" => args.connections = value as usize,
            "--seconds" => args.seconds = value,
            "--repeats" => args.repeats = value as usize,
            "--tasks" => args.tasks = value as usize,
            other => {
                eprintln!("unknown option {other}");
                std::process::exit(2)
            }
        }
    }
    args
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Servers {
    jube: Child,
    jube_addr: SocketAddr,
    redis: Child,
    redis_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.jube.kill();
        let _ = self.redis.kill();
        let _ = self.jube.wait();
        let _ = self.redis.wait();
    }
}

fn start_servers() -> Servers {
    let dir = tempfile::tempdir().expect("tempdir");
    let jubed: PathBuf = std::env::current_exe()
        .expect("own path")
        .with_file_name("jubed");
    let jube_port = free_port();
    let jube = Command::new(&jubed)
        .args(["--data-dir", &dir.path().join("jube").display().to_string()])
        .args(["--listen", &format!("127.0.0.1:{jube_port}")])
        .args(["--resp-listen", "off", "--sync", "always"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (cargo build --release -p jube-server)",
                jubed.display()
            )
        });
    let redis_port = free_port();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).expect("redis dir");
    let redis = Command::new("redis-server")
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--dir", &redis_dir.display().to_string()])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server (apt-get install redis-server)");
    wait_for(jube_port);
    wait_for(redis_port);
    Servers {
        jube,
        jube_addr: SocketAddr::from(([127, 0, 0, 1], jube_port)),
        redis,
        redis_addr: SocketAddr::from(([127, 0, 0, 1], redis_port)),
        _dir: dir,
    }
}

/// A blocking RESP2 client: one command, one reply.
struct Resp {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A reply, owned.
#[derive(Debug, PartialEq)]
enum Reply {
    Ok,
    Null,
    Bulk(Vec<u8>),
    Other,
}

impl Resp {
    fn connect(addr: SocketAddr) -> Resp {
        let stream = TcpStream::connect(addr).expect("connect to redis");
        stream.set_nodelay(true).expect("nodelay");
        Resp {
            stream,
            buf: Vec::new(),
        }
    }

    fn call(&mut self, words: &[&[u8]]) -> Reply {
        let mut out = Vec::new();
        encode_command(words, &mut out);
        self.stream.write_all(&out).expect("send");
        let mut chunk = [0u8; 4096];
        loop {
            let parsed = parse(&self.buf).expect("RESP reply");
            if let Parsed::Value { len, value } = parsed {
                let reply = match value {
                    Value::Simple(_) | Value::Integer(_) => Reply::Ok,
                    Value::Bulk(None) | Value::Array(None) => Reply::Null,
                    Value::Bulk(Some(bytes)) => Reply::Bulk(bytes.to_vec()),
                    Value::Error(text) => panic!("redis error: {}", String::from_utf8_lossy(text)),
                    Value::Array(Some(_)) => Reply::Other,
                };
                self.buf.drain(..len);
                return reply;
            }
            let count = self.stream.read(&mut chunk).expect("receive");
            assert!(count > 0, "redis closed the connection");
            self.buf.extend_from_slice(&chunk[..count]);
        }
    }
}

fn jube_client(addr: SocketAddr) -> Client {
    let options = ClientOptions {
        io_timeout: Some(Duration::from_secs(60)),
        ..ClientOptions::default()
    };
    Client::connect_with(addr, &options).expect("connect to jube")
}

/// Key `prefix-N` on shard `shard` of jube's 2 (or `cores`) shards.
fn key_on(shard: usize, shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|key| jube_server::routing::shard_of(key.as_bytes(), shards) == shard)
        .expect("a key on every shard")
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Jube,
    Redis,
}

/// One measured run.
#[derive(Default, Clone)]
struct Sample {
    ops_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    duplicates: u64,
    conflicts_per_op: f64,
    syncs_per_op: Option<f64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(60_000_000, 3).expect("histogram bounds")
}

fn wal_syncs(addr: SocketAddr) -> u64 {
    let info = jube_client(addr).info().expect("info");
    info.sections[0]
        .metrics
        .iter()
        .find(|m| m.name == "wal_syncs")
        .map_or(0, |m| m.value)
}

/// Runs `work(connection index, stop) -> (ops, conflicts, histogram, claimed)` on every connection.
fn run_threads<F>(
    connections: usize,
    seconds: u64,
    work: F,
) -> (u64, u64, Histogram<u64>, Vec<Vec<usize>>, Duration)
where
    F: Fn(usize, &AtomicBool) -> (u64, u64, Histogram<u64>, Vec<usize>) + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let work = Arc::new(work);
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let (stop, work) = (stop.clone(), work.clone());
            std::thread::spawn(move || work(c, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = (0, 0, histogram(), Vec::new());
    for thread in threads {
        let (ops, conflicts, hist, claimed) = thread.join().expect("worker");
        total.0 += ops;
        total.1 += conflicts;
        total.2.add(&hist).expect("same bounds");
        total.3.push(claimed);
    }
    (total.0, total.1, total.2, total.3, started.elapsed())
}

fn sample(ops: u64, conflicts: u64, hist: &Histogram<u64>, elapsed: Duration) -> Sample {
    Sample {
        ops_per_s: ops as f64 / elapsed.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        conflicts_per_op: conflicts as f64 / ops.max(1) as f64,
        ..Sample::default()
    }
}

fn counters(target: Target, servers: &Servers, args: &Args, cross: bool, round: usize) -> Sample {
    let shards = 2;
    let (jube, redis) = (servers.jube_addr, servers.redis_addr);
    let syncs_before = (target == Target::Jube).then(|| wal_syncs(jube));
    let (ops, conflicts, hist, _, elapsed) =
        run_threads(args.connections, args.seconds, move |c, stop| {
            let a = key_on(0, shards, &format!("r{round}-c{c}-a"));
            let b = key_on(usize::from(cross), shards, &format!("r{round}-c{c}-b"));
            let mut hist = histogram();
            let mut ops = 0;
            match target {
                Target::Jube => {
                    let mut client = jube_client(jube);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let txn = Txn::new()
                            .assert_int(a.clone(), CompareOp::Ge, 0)
                            .add(a.clone(), 1)
                            .add(b.clone(), 1);
                        // The first add on an absent key: IntCompare is false, so seed it.
                        let txn = if ops == 0 {
                            Txn::new().add(a.clone(), 1).add(b.clone(), 1)
                        } else {
                            txn
                        };
                        let outcome = client.txn(txn).expect("txn");
                        assert!(outcome.is_committed(), "{outcome:?}");
                        hist.saturating_record(started.elapsed().as_micros() as u64);
                        ops += 1;
                    }
                }
                Target::Redis => {
                    let mut client = Resp::connect(redis);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        client.call(&[b"MULTI"]);
                        client.call(&[b"INCR", a.as_bytes()]);
                        client.call(&[b"INCR", b.as_bytes()]);
                        assert_ne!(client.call(&[b"EXEC"]), Reply::Null);
                        hist.saturating_record(started.elapsed().as_micros() as u64);
                        ops += 1;
                    }
                }
            }
            (ops, 0, hist, Vec::new())
        });
    let mut result = sample(ops, conflicts, &hist, elapsed);
    result.syncs_per_op =
        syncs_before.map(|before| (wal_syncs(jube) - before) as f64 / ops.max(1) as f64);
    result
}

fn fill_tasks(target: Target, servers: &Servers, round: usize, tasks: usize) {
    let key = |i: usize| format!("q{round}-task-{i}");
    match target {
        Target::Jube => {
            let mut client = jube_client(servers.jube_addr);
            for chunk in (0..tasks).collect::<Vec<_>>().chunks(512) {
                let txn = chunk
                    .iter()
                    .fold(Txn::new(), |txn, i| txn.put(key(*i), "open"));
                assert!(client.txn(txn).expect("fill").is_committed());
            }
        }
        Target::Redis => {
            let mut client = Resp::connect(servers.redis_addr);
            for chunk in (0..tasks).collect::<Vec<_>>().chunks(512) {
                let pairs: Vec<(String, &str)> = chunk.iter().map(|i| (key(*i), "open")).collect();
                let mut words: Vec<&[u8]> = vec![b"MSET"];
                for (k, v) in &pairs {
                    words.push(k.as_bytes());
                    words.push(v.as_bytes());
                }
                client.call(&words);
            }
        }
    }
}

/// How far ahead of the shared head an agent looks for an open task: a small window makes agents
/// contend for the same tasks, as workers of one queue do.
const QUEUE_WINDOW: usize = 32;

fn task_queue(target: Target, servers: &Servers, args: &Args, round: usize) -> Sample {
    fill_tasks(target, servers, round, args.tasks);
    let (jube, redis, tasks) = (servers.jube_addr, servers.redis_addr, args.tasks);
    let head = Arc::new(AtomicUsize::new(0));
    let syncs_before = (target == Target::Jube).then(|| wal_syncs(jube));
    let head_work = head.clone();
    let (claims, conflicts, hist, claimed, elapsed) =
        run_threads(args.connections, args.seconds, move |agent, stop| {
            let mut hist = histogram();
            let (mut claims, mut conflicts, mut mine) = (0u64, 0u64, Vec::new());
            let name = format!("agent-{agent}");
            let count = format!("q{round}-count-{agent}");
            let mut rng_state = (agent as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move || {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                rng_state
            };
            let mut jube_client = (target == Target::Jube).then(|| jube_client(jube));
            let mut redis_client = (target == Target::Redis).then(|| Resp::connect(redis));
            let mut attempt_started: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let base = head_work.load(Ordering::Relaxed);
                if base >= tasks {
                    break;
                }
                let i = (base + (next() as usize) % QUEUE_WINDOW).min(tasks - 1);
                let task = format!("q{round}-task-{i}");
                let started = *attempt_started.get_or_insert_with(Instant::now);
                let claimed_now = match (&mut jube_client, &mut redis_client) {
                    (Some(client), _) => {
                        let open = client.get(task.as_bytes()).expect("get").as_deref()
                            == Some(&b"open"[..]);
                        open && {
                            let txn = Txn::new()
                                .assert_value(task.clone(), "open")
                                .put(task.clone(), name.clone())
                                .add(count.clone(), 1);
                            match client.txn(txn) {
                                Ok(TxnOutcome::Committed(_)) => true,
                                Ok(_) => false,
                                Err(error)
                                    if error.status() == Some(jube_protocol::Status::Busy) =>
                                {
                                    false
                                }
                                Err(error) => panic!("claim: {error}"),
                            }
                        }
                    }
                    (None, Some(client)) => {
                        client.call(&[b"WATCH", task.as_bytes()]);
                        let open = client.call(&[b"GET", task.as_bytes()])
                            == Reply::Bulk(b"open".to_vec());
                        if open {
                            client.call(&[b"MULTI"]);
                            client.call(&[b"SET", task.as_bytes(), name.as_bytes()]);
                            client.call(&[b"INCR", count.as_bytes()]);
                            client.call(&[b"EXEC"]) != Reply::Null
                        } else {
                            client.call(&[b"UNWATCH"]);
                            false
                        }
                    }
                    _ => unreachable!("one client per target"),
                };
                if claimed_now {
                    hist.saturating_record(started.elapsed().as_micros() as u64);
                    attempt_started = None;
                    claims += 1;
                    mine.push(i);
                    // Advance the head past claimed tasks (a hint: agents re-check every task).
                    let _ =
                        head_work.compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed);
                } else {
                    conflicts += 1;
                    if i == base {
                        let _ = head_work.compare_exchange(
                            base,
                            base + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
            (claims, conflicts, hist, mine)
        });
    let mut seen = vec![false; tasks];
    let mut duplicates = 0;
    for i in claimed.iter().flatten() {
        duplicates += u64::from(std::mem::replace(&mut seen[*i], true));
    }
    let mut result = sample(claims, conflicts, &hist, elapsed);
    result.duplicates = duplicates;
    result.syncs_per_op =
        syncs_before.map(|before| (wal_syncs(jube) - before) as f64 / claims.max(1) as f64);
    result
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let args = args();
    println!("load before: {}", uptime());
    let servers = start_servers();
    let workloads = ["txn-1shard", "txn-2shard", "task-queue"];
    let mut results: Vec<(String, Target, Vec<Sample>)> = Vec::new();
    for workload in workloads {
        for target in [Target::Jube, Target::Redis] {
            results.push((workload.to_string(), target, Vec::new()));
        }
    }
    for round in 0..args.repeats {
        for (w, workload) in workloads.iter().enumerate() {
            // Alternate which server goes first, round by round.
            let order = if round % 2 == 0 {
                [Target::Jube, Target::Redis]
            } else {
                [Target::Redis, Target::Jube]
            };
            for target in order {
                let result = match *workload {
                    "txn-1shard" => counters(target, &servers, &args, false, round),
                    "txn-2shard" => counters(target, &servers, &args, true, round),
                    _ => task_queue(target, &servers, &args, round),
                };
                assert_eq!(result.duplicates, 0, "{workload}: a task was claimed twice");
                let slot = w * 2 + usize::from(target == Target::Redis);
                eprintln!(
                    "round {round} {workload} {}: {:.0} ops/s p50 {} us p99 {} us",
                    if target == Target::Jube {
                        "jube"
                    } else {
                        "redis"
                    },
                    result.ops_per_s,
                    result.p50_us,
                    result.p99_us
                );
                results[slot].2.push(result);
            }
        }
    }
    println!("load after: {}", uptime());
    println!(
        "\n{} connections, {} s per run, median of {} runs (min-max ops/s)\n",
        args.connections, args.seconds, args.repeats
    );
    println!("| workload | server | ops/s (claims/s) | spread | p50 us | p99 us | conflicts/op | duplicates | WAL syncs/op | jube/Redis ops |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pair in results.chunks(2) {
        let jube_ops = median(&mut pair[0].2.iter().map(|s| s.ops_per_s).collect::<Vec<_>>());
        let redis_ops = median(&mut pair[1].2.iter().map(|s| s.ops_per_s).collect::<Vec<_>>());
        for (workload, target, samples) in pair {
            let mut ops: Vec<f64> = samples.iter().map(|s| s.ops_per_s).collect();
            let (min, max) = ops
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let ops_median = median(&mut ops);
            let p50 = median(&mut samples.iter().map(|s| s.p50_us as f64).collect::<Vec<_>>());
            let p99 = median(&mut samples.iter().map(|s| s.p99_us as f64).collect::<Vec<_>>());
            let conflicts = median(
                &mut samples
                    .iter()
                    .map(|s| s.conflicts_per_op)
                    .collect::<Vec<_>>(),
            );
            let duplicates: u64 = samples.iter().map(|s| s.duplicates).sum();
            let syncs = samples
                .iter()
                .filter_map(|s| s.syncs_per_op)
                .collect::<Vec<_>>();
            let syncs = if syncs.is_empty() {
                "n/a".to_string()
            } else {
                format!("{:.3}", median(&mut syncs.clone()))
            };
            let ratio = if *target == Target::Jube {
                format!("{:.2}", jube_ops / redis_ops.max(1.0))
            } else {
                String::new()
            };
            println!(
                "| {workload} | {} | {ops_median:.0} | {min:.0}-{max:.0} | {p50:.0} | {p99:.0} | {conflicts:.2} | {duplicates} | {syncs} | {ratio} |",
                if *target == Target::Jube { "jube" } else { "Redis" }
            );
        }
    }
}
