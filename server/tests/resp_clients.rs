//! End-to-end tests of the RESP front end with real Redis clients against a real jubed: redis-cli
//! (Debian's redis-tools), redis-benchmark, and the Python `redis` package (pinned in `.ci/run`).
//!
//! Strategy: each test starts its own jubed (2 cores, so keys spread over two shards and half of
//! the calls cross cores) with an ephemeral RESP port, drives it with a client, and checks the
//! replies against what Redis 7.0 answers for the same commands. A missing client tool fails the
//! test with a message naming the package to install; it never skips.

mod common;

use common::Server;
use std::io::Write;
use std::process::{Command, Stdio};

/// Fails with a clear message unless `tool` runs.
fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "{tool} is missing: install {package} (`apt-get install -y redis-tools`); .ci/run does"
    );
}

fn resp_port(server: &Server) -> String {
    server
        .resp_addr
        .expect("jubed printed its RESP address")
        .port()
        .to_string()
}

/// Runs redis-cli with `args` against `port` and returns its stdout, trimmed.
fn cli(port: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}

#[test]
fn redis_cli_runs_the_string_commands() {
    require("redis-cli", "redis-tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = resp_port(&server);
    let run = |args: &[&str]| cli(&port, args);
    assert_eq!(run(&["PING"]), "PONG");
    assert_eq!(run(&["ECHO", "hi there"]), "hi there");
    assert_eq!(run(&["SET", "counter", "10"]), "OK");
    assert_eq!(run(&["INCR", "counter"]), "11");
    assert_eq!(run(&["DECRBY", "counter", "5"]), "6");
    assert_eq!(run(&["INCRBYFLOAT", "counter", "0.5"]), "6.5");
    assert_eq!(
        run(&["INCR", "counter"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(run(&["APPEND", "s", "hello"]), "5");
    assert_eq!(run(&["SETRANGE", "s", "1", "EY"]), "5");
    assert_eq!(run(&["GETRANGE", "s", "0", "2"]), "hEY");
    assert_eq!(run(&["STRLEN", "s"]), "5");
    assert_eq!(run(&["TYPE", "s"]), "string");
    assert_eq!(run(&["TYPE", "nothing"]), "none");
    assert_eq!(run(&["EXPIRE", "s", "100"]), "1");
    assert_eq!(run(&["EXPIRE", "s", "50", "GT"]), "0");
    let ttl: i64 = run(&["TTL", "s"]).parse().expect("ttl");
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(run(&["PERSIST", "s"]), "1");
    assert_eq!(run(&["TTL", "s"]), "-1");
    assert_eq!(run(&["TTL", "nothing"]), "-2");
    assert_eq!(run(&["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    assert_eq!(run(&["MGET", "a", "b", "nothing", "c"]), "1\n2\n\n3");
    assert_eq!(run(&["MSETNX", "a", "9", "fresh", "1"]), "0");
    assert_eq!(run(&["EXISTS", "a", "a", "fresh", "nothing"]), "2");
    assert_eq!(run(&["DBSIZE"]), "5");
    let mut keys: Vec<String> = run(&["KEYS", "?"]).lines().map(str::to_string).collect();
    keys.sort();
    assert_eq!(keys, ["a", "b", "c", "s"]);
    assert_eq!(run(&["DEL", "a", "b", "nothing"]), "2");
    assert_eq!(run(&["SELECT", "1"]), "ERR DB index is out of range");
    assert_eq!(run(&["EXEC"]), "ERR EXEC without MULTI");
    assert!(run(&["NOSUCH", "x"]).starts_with("ERR unknown command 'NOSUCH'"));
    assert_eq!(
        run(&["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    // RESP3 after HELLO 3: redis-cli -3 prints the map.
    let hello = run(&["-3", "HELLO", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert_eq!(run(&["-3", "SET", "k3", "v"]), "OK");
    assert_eq!(run(&["FLUSHALL"]), "OK");
    assert_eq!(run(&["DBSIZE"]), "0");
    let info = run(&["INFO"]);
    assert!(
        info.contains("redis_version:") && info.contains("# Keyspace"),
        "{info}"
    );
    assert!(info.contains("jube_resp_commands:"), "{info}");
}

#[test]
fn redis_benchmark_runs_without_errors() {
    require("redis-benchmark", "redis-tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = resp_port(&server);
    let output = Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-t",
            "set,get,incr,mset",
            "-P",
            "16",
            "-n",
            "20000",
            "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "redis-benchmark failed: {text}");
    let summary: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|line| line.contains("requests per second"))
        .collect();
    eprintln!("redis-benchmark: {summary:?}");
    assert_eq!(summary.len(), 4, "one summary per test: {text}");
    assert!(!text.to_ascii_lowercase().contains("error"), "{text}");
    let info = cli(&port, &["INFO", "stats"]);
    assert!(info.contains("jube_resp_errors:0"), "{info}");
}

#[test]
fn auth_is_required_when_a_password_is_configured() {
    require("redis-cli", "redis-tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("auth.toml");
    std::fs::write(
        &config,
        "[server]\nresp_password = \"s3cret\"\n[storage]\nwal_segment_bytes = 4194304\n",
    )
    .expect("write config");
    let server = Server::start(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    let port = resp_port(&server);
    assert_eq!(cli(&port, &["GET", "k"]), "NOAUTH Authentication required.");
    assert!(cli(&port, &["AUTH", "wrong"]).starts_with("WRONGPASS"));
    assert_eq!(
        cli(
            &port,
            &["--no-auth-warning", "-a", "s3cret", "SET", "k", "v"]
        ),
        "OK"
    );
    assert_eq!(
        cli(&port, &["--no-auth-warning", "-a", "s3cret", "GET", "k"]),
        "v"
    );
}

/// The Python client: every command family, pipelining, RESP2 and RESP3, errors. The script
/// raises (and the test fails with its traceback) on the first wrong answer.
const PYTHON_SCRIPT: &str = r#"
import sys, time, redis
port = int(sys.argv[1])
for proto in (2, 3):
    r = redis.Redis(port=port, protocol=proto, decode_responses=True)
    r.flushdb()
    assert r.ping() is True
    assert r.echo("x") == "x"
    assert r.set("k", "v") is True
    assert r.get("k") == "v"
    assert r.set("k", "w", nx=True) is None
    assert r.set("k", "w", xx=True, get=True) == "v"
    assert r.setnx("k", "z") is False and r.setnx("n", "1") is True
    assert r.setex("e", 100, "v") is True and 99 <= r.ttl("e") <= 100
    assert r.psetex("pe", 100000, "v") is True and 0 < r.pttl("pe") <= 100000
    assert r.set("kt", "v", ex=100) and r.set("kt", "v2", keepttl=True) and r.ttl("kt") > 0
    assert r.set("px", "v", px=50) is True
    time.sleep(0.2)
    assert r.get("px") is None and r.exists("px") == 0
    assert r.getset("k", "g") == "w"
    assert r.getdel("k") == "g" and r.get("k") is None
    r.set("ge", "v")
    assert r.getex("ge", ex=100) == "v" and r.ttl("ge") > 0
    assert r.getex("ge", persist=True) == "v" and r.ttl("ge") == -1
    assert r.expire("ge", 100, nx=True) is True and r.expire("ge", 200, nx=True) is False
    assert r.expire("ge", 300, gt=True) is True and r.expire("ge", 10, lt=True) is True
    assert r.pexpire("ge", 100000) is True and r.expireat("ge", int(time.time()) + 500)
    assert r.pexpireat("ge", int(time.time() * 1000) + 500000)
    assert r.expiretime("ge") > time.time()
    assert r.persist("ge") is True and r.persist("ge") is False
    assert r.expire("ge", -1) is True and r.get("ge") is None
    assert r.incr("c") == 1 and r.incrby("c", 10) == 11 and r.decr("c") == 10
    assert r.decrby("c", 3) == 7
    assert r.incrbyfloat("f", 10.5) == 10.5 and r.incrbyfloat("f", 0.1) == 10.6
    assert r.append("s", "ab") == 2 and r.append("s", "cd") == 4
    assert r.setrange("s", 6, "x") == 7 and r.get("s") == "abcd\x00\x00x"
    assert r.getrange("s", 1, 2) == "bc" and r.strlen("s") == 7
    assert r.type("s") == "string" and r.type("none") == "none"
    assert r.mset({"m1": "1", "m2": "2", "m3": "3"}) is True
    assert r.mget(["m1", "nope", "m3"]) == ["1", None, "3"]
    assert r.msetnx({"m1": "x", "m9": "9"}) is False and r.get("m9") is None
    assert r.msetnx({"m8": "8", "m9": "9"}) is True and r.get("m9") == "9"
    assert r.exists("m1", "m2", "nope") == 2
    assert r.delete("m1", "nope") == 1 and r.unlink("m2") == 1
    names = {f"scan:{i}" for i in range(300)}
    r.mset({name: "v" for name in names})
    assert set(r.scan_iter(match="scan:*", count=50)) == names
    assert set(r.keys("scan:1?")) == {f"scan:{i}" for i in range(10, 20)}
    assert r.dbsize() >= 300
    try:
        r.incr("s")
        raise AssertionError("INCR on a string must fail")
    except redis.ResponseError as error:
        assert "not an integer" in str(error)
    try:
        r.execute_command("SET", "k")
        raise AssertionError("arity")
    except redis.ResponseError as error:
        assert "wrong number of arguments" in str(error)
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(f"p{i}", i)
        p.incr(f"p{i}")
    p.get("p499")
    results = p.execute()
    assert results[-1] == "500" and all(x is True for x in results[0:-1:2])
    assert r.client_id() > 0 and r.client_setname("me") and r.client_getname() == "me"
    assert r.client_info()["id"] > 0
    assert r.config_get("save") == {"save": ""} and r.config_get("databases") == {"databases": "1"}
    info = r.info()
    assert info["redis_version"] and "db0" in info
    assert r.command_count() > 40
    assert isinstance(r.time()[0], int)
    assert r.flushall() is True and r.dbsize() == 0
    r.close()
print("python redis ok")
"#;

#[test]
fn python_redis_client_works_in_resp2_and_resp3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = resp_port(&server);
    let check = Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "the Python redis package is missing: `python3 -m pip install redis==5.2.1` (.ci/run does)"
    );
    let mut child = Command::new("python3")
        .args(["-", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(PYTHON_SCRIPT.as_bytes())
        .expect("write the script");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "python script failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
