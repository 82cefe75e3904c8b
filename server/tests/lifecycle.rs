//! jubed's command line, start-up and signals, and jubectl's plumbing, against the real binaries.
//! Strategy: start jubed in a temporary directory, act on it from outside (signals through kill(1),
//! jubectl as a subprocess), and check exit codes, stdout and the log. Nothing here needs storage.

mod common;

use common::Server;
use jube_server::config::Config;
use std::process::Command;
use std::time::{Duration, Instant};

fn jubectl(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jubectl"))
        .arg("--addr")
        .arg(server.addr.to_string())
        .args(args)
        .output()
        .expect("run jubectl")
}

#[test]
fn print_config_shows_every_setting_with_flags_applied() {
    let output = Command::new(env!("CARGO_BIN_EXE_jubed"))
        .args([
            "--print-config",
            "--sync",
            "periodic:250",
            "--cores",
            "3",
            "--listen",
            "127.0.0.1:9999",
        ])
        .output()
        .expect("run jubed");
    assert!(output.status.success(), "{output:?}");
    let config =
        Config::from_toml(&String::from_utf8_lossy(&output.stdout)).expect("printed config parses");
    assert_eq!(config.storage.sync.to_string(), "periodic:250");
    assert_eq!(config.server.cores, 3);
    assert_eq!(config.server.listen, "127.0.0.1:9999");
}

#[test]
fn bad_configuration_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nconnection_in_flight_max = 8\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_jubed"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run jubed");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connection_in_flight_max"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_jubed"))
        .args(["--sync", "sometimes"])
        .output()
        .expect("run jubed");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn sigterm_stops_the_server_cleanly_even_with_idle_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    client.ping().expect("ping");
    let started = Instant::now();
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("jubed exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the drain waited for an idle client"
    );
    let log = server.log();
    assert!(log.contains("shutdown") && log.contains("stopped"), "{log}");
    // The data directory is reusable at once.
    let server = Server::start(dir.path(), &[]);
    server.client().ping().expect("ping after restart");
}

#[test]
fn sigint_stops_the_server_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &["--cores", "1"]);
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("jubed exits after SIGINT");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
}

#[test]
fn jubectl_ping_info_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let output = jubectl(&server, &["ping"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "PONG");

    let output = jubectl(&server, &["info", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("info --json is JSON");
    assert_eq!(info["core_count"], 2);
    let total = &info["sections"]["total"];
    assert!(total["uptime_ms"].is_u64(), "{info}");
    assert_eq!(total["connections"], 1, "jubectl's own connection: {info}");
    assert!(total["ops.ping"].as_u64().is_some(), "{info}");
    let shard_count = info["shard_count"].as_u64().expect("shard_count");
    for shard in 0..shard_count {
        assert!(
            info["sections"][format!("shard.{shard}")].is_object(),
            "{info}"
        );
    }

    let output = jubectl(&server, &["info"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("total.ops.ping "),
        "{output:?}"
    );

    // A key too large is refused before sending, with exit code 2 and the reason.
    let long_key = "k".repeat(2000);
    let output = jubectl(&server, &["get", &long_key]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("KeyTooLarge"),
        "{output:?}"
    );

    // Nothing listens here: exit code 2.
    let output = Command::new(env!("CARGO_BIN_EXE_jubectl"))
        .args(["--addr", "127.0.0.1:1", "ping"])
        .output()
        .expect("run jubectl");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(!output.stderr.is_empty());
}
