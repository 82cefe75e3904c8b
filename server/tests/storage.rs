//! Storage through the network, end to end: put/get/del/scan across every shard with pipelining,
//! restarts with another core count, kill -9 under a write load (every acknowledged write
//! survives), SIGTERM under load (exit 0, clean restart), and jubectl's data commands.
//!
//! Strategy: a model `BTreeMap` holds what the server acknowledged; after every restart the server
//! must answer exactly the model (for keys whose write was acknowledged; a write in flight at a
//! crash may or may not be there).
//!
//! Servers here use 4 MiB WAL segments (a config file) so that creating a data directory does not
//! zero 64 MiB per shard.

mod common;

use common::Server;
use jube_protocol::{Client, ClientError, Entry, Operation, Reply, Scan, Status};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Starts jubed on `dir` with small WAL segments and `extra` flags.
fn start(dir: &std::path::Path, extra: &[&str]) -> Server {
    let config = dir.join("jubed.toml");
    std::fs::write(
        &config,
        "[storage]\nwal_segment_bytes = 4194304\ngroup_commit_bytes_max = 262144\n",
    )
    .expect("write config");
    let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Server::start(dir, &args)
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(i: usize, round: usize) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat(i % 50)).into_bytes()
}

/// Scans everything with small pages, following continuation tokens.
fn scan_all(client: &mut Client, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut scan = Scan::all();
    scan.limit = 37;
    scan.reverse = reverse;
    let mut found = Vec::new();
    loop {
        let page = client.scan(scan.clone()).expect("scan");
        found.extend(page.entries.into_iter().map(|e| (e.key, e.value)));
        match page.continuation {
            Some(token) => scan.continuation = Some(token),
            None => return found,
        }
    }
}

fn assert_matches_model(client: &mut Client, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(scan_all(client, false), expected, "forward scan");
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(scan_all(client, true), reversed, "reverse scan");
    for (key, value) in model.iter().take(200) {
        assert_eq!(
            client.get(key).expect("get").as_deref(),
            Some(value.as_slice())
        );
    }
}

#[test]
fn pipelined_put_get_delete_scan_across_shards_and_core_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path(), &[]);
    let mut client = server.client();
    let mut model = BTreeMap::new();
    let ops: Vec<Operation> = (0..2000)
        .map(|i| Operation::Put(Entry::new(key(i), value(i, 0))))
        .collect();
    for response in client.pipeline(ops).expect("pipeline") {
        assert_eq!(response.status(), Status::Ok, "{response:?}");
    }
    (0..2000).for_each(|i| {
        model.insert(key(i), value(i, 0));
    });
    let deletes: Vec<Operation> = (0..2000)
        .step_by(3)
        .map(|i| Operation::Delete { key: key(i) })
        .collect();
    for response in client.pipeline(deletes).expect("pipeline") {
        assert!(
            matches!(response.outcome, Ok(Reply::Delete)),
            "{response:?}"
        );
    }
    (0..2000).step_by(3).for_each(|i| {
        model.remove(&key(i));
    });
    assert_eq!(client.get(&key(0)).expect("get"), None);
    let values = client
        .multi_get(&[key(1), key(3), key(4)])
        .expect("multi_get");
    assert_eq!(values, vec![Some(value(1, 0)), None, Some(value(4, 0))]);
    let mut bounded = Scan::all();
    bounded.start = Bound::Included(key(10));
    bounded.end = Bound::Excluded(key(20));
    let page = client.scan(bounded).expect("scan");
    let keys: Vec<Vec<u8>> = page.entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(
        keys,
        model
            .range(key(10)..key(20))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    );
    assert_matches_model(&mut client, &model);
    let info = client.info().expect("info");
    let total = info
        .sections
        .iter()
        .find(|s| s.name == "total")
        .expect("total section");
    let keys_metric = total
        .metrics
        .iter()
        .find(|m| m.name == "keys")
        .map(|m| m.value);
    assert_eq!(keys_metric, Some(model.len() as u64), "INFO keys");
    client.checkpoint().expect("checkpoint");

    // The same directory with one core: both shards on core 0, same data.
    drop(client);
    server.signal("TERM");
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(0)
    );
    let server = start(dir.path(), &["--cores", "1"]);
    assert_matches_model(&mut server.client(), &model);
}

/// Writes distinct keys from `writers` pipelined clients until `stop`; records what was acknowledged.
fn write_load(
    server: &Server,
    writers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<usize>>> {
    (0..writers)
        .map(|writer| {
            let mut client = server.client();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut next = writer * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<usize> = (next..next + 16).collect();
                    next += 16;
                    for i in &batch {
                        if client
                            .send(Operation::Put(Entry::new(key(*i), value(*i, 1))))
                            .is_err()
                        {
                            return acked;
                        }
                    }
                    for i in batch {
                        match client.receive() {
                            Ok(response) if response.status() == Status::Ok => acked.push(i),
                            Ok(_) | Err(ClientError::Server { .. }) => {}
                            Err(_) => return acked,
                        }
                    }
                }
                acked
            })
        })
        .collect()
}

fn assert_all_present(server: &Server, acked: &[usize]) {
    let mut client = server.client();
    for chunk in acked.chunks(500) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|i| key(*i)).collect();
        let values = client.multi_get(&keys).expect("multi_get");
        for (i, found) in chunk.iter().zip(values) {
            assert_eq!(
                found,
                Some(value(*i, 1)),
                "acknowledged write of key {i} lost"
            );
        }
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_load(&server, 3, &stop);
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<usize> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert!(
        acked.len() > 100,
        "the load acknowledged only {} writes",
        acked.len()
    );
    let server = start(dir.path(), &[]);
    // No checkpoint ran (its thresholds are far off), so recovery replayed the WAL.
    let info = server.client().info().expect("info");
    let total = info
        .sections
        .iter()
        .find(|s| s.name == "total")
        .expect("total");
    let replayed = total
        .metrics
        .iter()
        .find(|m| m.name == "records_recovered")
        .map_or(0, |m| m.value);
    assert!(
        replayed >= acked.len() as u64,
        "replayed {replayed} records for {} acknowledged writes",
        acked.len()
    );
    assert_all_present(&server, &acked);
}

#[test]
fn sigterm_under_load_exits_0_and_restarts_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path(), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_load(&server, 3, &stop);
    std::thread::sleep(Duration::from_millis(1000));
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("jubed exits after SIGTERM");
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<usize> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(
        server.log().contains("shard closed"),
        "every shard checkpointed at shutdown"
    );
    let server = start(dir.path(), &[]);
    // The final checkpoint covered everything: the restart replays no WAL record.
    let info = server.client().info().expect("info");
    let total = info
        .sections
        .iter()
        .find(|s| s.name == "total")
        .expect("total");
    let replayed = total
        .metrics
        .iter()
        .find(|m| m.name == "records_recovered")
        .map(|m| m.value);
    assert_eq!(
        replayed,
        Some(0),
        "WAL records replayed after a clean shutdown"
    );
    assert_all_present(&server, &acked);
}

#[test]
fn jubectl_data_commands_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), &[]);
    let jubectl = |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jubectl"));
        command
            .arg("--addr")
            .arg(server.addr.to_string())
            .args(args);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("run jubectl");
        if let Some(bytes) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(bytes)
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("jubectl output")
    };
    assert!(jubectl(&["put", "alpha", "one"], None).status.success());
    assert!(jubectl(&["put", "beta", "-"], Some(b"two"))
        .status
        .success());
    let file = dir.path().join("value");
    std::fs::write(&file, b"three").expect("write");
    assert!(jubectl(
        &["put", "gamma", "--file", file.to_str().expect("utf-8")],
        None
    )
    .status
    .success());
    assert!(jubectl(&["put", "short", "lived", "--ttl", "1h"], None)
        .status
        .success());
    let output = jubectl(&["get", "beta"], None);
    assert_eq!(
        (output.status.code(), output.stdout.as_slice()),
        (Some(0), &b"two\n"[..])
    );
    let output = jubectl(&["get", "missing"], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(jubectl(&["del", "alpha"], None).status.success());
    assert_eq!(jubectl(&["get", "alpha"], None).status.code(), Some(1));
    let output = jubectl(&["scan", "--start", "b", "--limit", "2"], None);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "beta\ttwo\ngamma\tthree\n"
    );
    let output = jubectl(&["scan", "--reverse"], None);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "short\tlived\ngamma\tthree\nbeta\ttwo\n"
    );
    assert!(jubectl(&["checkpoint"], None).status.success());
}
