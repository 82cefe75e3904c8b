//! RESP transactions end to end with real clients against a real jubed (2 cores, 2 shards):
//! MULTI/EXEC/DISCARD/WATCH/UNWATCH with redis-cli and the Python `redis` package (5.2.1):
//! queued replies, EXEC's reply array (errors inside it, the rest applied), EXECABORT after a
//! refused command, a WATCH conflict answered with a null array (raw `*-1` in RESP2, `_` in
//! RESP3, `WatchError` in redis-py), redis-py's `pipeline(transaction=True)` and `transaction()`
//! helper, and concurrent WATCH-guarded increments from several threads that lose no update.
//! Cross-shard MSET/MSETNX/MGET atomicity is checked by a reader that must never see half an MSET.
//! Values above the inline threshold (into the value log) go through MULTI/EXEC and a
//! cross-shard MSET with the Rust `redis` crate.

mod common;

use common::Server;
use jube_server::routing::shard_of;
use redis::Commands;
use std::io::Write;
use std::process::{Command, Stdio};

const PYTHON_SCRIPT: &str = r#"
import socket, sys, threading
import redis

port = int(sys.argv[1])

def raw(sock, *words):
    out = b"*%d\r\n" % len(words)
    for w in words:
        w = w.encode() if isinstance(w, str) else w
        out += b"$%d\r\n%s\r\n" % (len(w), w)
    sock.sendall(out)

def read_line(f):
    return f.readline()

def read_value(f):
    """Reads one whole RESP2/RESP3 value; returns its first line."""
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"$", b"=", b"!") and rest != b"-1":
        f.read(int(rest) + 2)
    elif kind in (b"*", b"~", b">") and rest != b"-1":
        for _ in range(int(rest)):
            read_value(f)
    elif kind in (b"%", b"|"):
        for _ in range(2 * int(rest)):
            read_value(f)
    return line

# Raw RESP: a WATCH conflict answers a null array (*-1 in RESP2, _ in RESP3).
for proto in (2, 3):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    if proto == 3:
        raw(s, "HELLO", "3")
        assert read_value(f).startswith(b"%")
    other = redis.Redis(port=port)
    other.set("w", "0")
    raw(s, "WATCH", "w"); assert read_line(f) == b"+OK\r\n"
    other.set("w", "1")
    raw(s, "MULTI"); assert read_line(f) == b"+OK\r\n"
    raw(s, "SET", "w", "2"); assert read_line(f) == b"+QUEUED\r\n"
    raw(s, "EXEC")
    line = read_line(f)
    assert line == (b"*-1\r\n" if proto == 2 else b"_\r\n"), line
    assert other.get("w") == b"1", "nothing of the aborted EXEC applied"
    s.close()
    other.close()

for protocol in (2, 3):
    r = redis.Redis(port=port, decode_responses=True, protocol=protocol)
    r.flushall()
    # MULTI / EXEC with replies of every kind, an error inside, the rest applied.
    p = r.pipeline(transaction=True)
    p.set("a", "1").incr("a").get("a").set("s", "text").incr("s").append("s", "!").mget("a", "s", "none")
    p.delete("a", "none").exists("a", "s").setnx("n", "x").setnx("n", "y").get("n")
    results = p.execute(raise_on_error=False)
    assert results[0] is True and results[1] == 2 and results[2] == "2", results
    assert results[3] is True and isinstance(results[4], redis.ResponseError), results
    assert results[5] == 5 and results[6] == ["2", "text!", None], results
    assert results[7] == 1 and results[8] == 1 and results[9] is True and results[10] is False
    assert results[11] == "x", results
    assert r.get("s") == "text!" and r.get("a") is None

    # DISCARD, nested MULTI and WATCH inside MULTI (errors that do not abort the block).
    c = r.connection_pool.get_connection("MULTI")
    c.send_command("MULTI"); assert c.read_response() in (b"OK", "OK")
    c.send_command("SET", "d", "1"); assert c.read_response() in (b"QUEUED", "QUEUED")
    for command, text in ((("MULTI",), "nested"), (("WATCH", "d"), "WATCH inside MULTI")):
        c.send_command(*command)
        try:
            c.read_response()
            raise AssertionError(command)
        except redis.ResponseError as error:
            assert text in str(error), error
    c.send_command("DISCARD"); assert c.read_response() in (b"OK", "OK")
    r.connection_pool.release(c)
    assert r.get("d") is None
    for command, text in (("EXEC", "EXEC without MULTI"), ("DISCARD", "DISCARD without MULTI")):
        try:
            r.execute_command(command)
            raise AssertionError(command)
        except redis.ResponseError as error:
            assert text in str(error), error

    # A command refused while queueing aborts the block: EXECABORT, nothing applied.
    c = r.connection_pool.get_connection("MULTI")
    c.send_command("MULTI"); assert c.read_response() in (b"OK", "OK")
    c.send_command("SET", "x", "1"); assert c.read_response() in (b"QUEUED", "QUEUED")
    c.send_command("SET", "x"); 
    try:
        c.read_response()
        raise AssertionError("arity")
    except redis.ResponseError as error:
        assert "wrong number of arguments" in str(error)
    c.send_command("KEYS", "*")
    try:
        c.read_response()
        raise AssertionError("KEYS inside MULTI")
    except redis.ResponseError:
        pass
    c.send_command("EXEC")
    try:
        c.read_response()
        raise AssertionError("EXECABORT")
    except redis.ResponseError as error:
        # redis-py turns the EXECABORT code into ExecAbortError.
        assert isinstance(error, redis.exceptions.ExecAbortError) or "EXECABORT" in str(error), error
    r.connection_pool.release(c)
    assert r.get("x") is None

    # WATCH conflict through redis-py's helpers: WatchError, nothing applied.
    r.set("balance", "10")
    with r.pipeline() as pipe:
        pipe.watch("balance")
        current = int(pipe.get("balance"))
        r.set("balance", "99")
        pipe.multi()
        pipe.set("balance", current - 1)
        try:
            pipe.execute()
            raise AssertionError("the watched key changed")
        except redis.WatchError:
            pass
    assert r.get("balance") == "99"
    # UNWATCH forgets: the same sequence then commits.
    with r.pipeline() as pipe:
        pipe.watch("balance")
        r.set("balance", "50")
        pipe.unwatch()
        pipe.multi()
        pipe.set("balance", 7)
        assert pipe.execute() == [True]
    assert r.get("balance") == "7"
    # WATCH of an absent key that stays absent commits.
    with r.pipeline() as pipe:
        pipe.watch("ghost")
        pipe.multi()
        pipe.set("other", "o")
        assert pipe.execute() == [True]

    # Concurrent WATCH-guarded increments via r.transaction(): no lost update.
    r.set("counter", "0")
    THREADS, EACH = 4, 25
    def bump(_):
        def body(pipe):
            value = int(pipe.get("counter"))
            pipe.multi()
            pipe.set("counter", value + 1)
        local = redis.Redis(port=port, decode_responses=True, protocol=protocol)
        for _ in range(EACH):
            local.transaction(body, "counter")
        local.close()
    threads = [threading.Thread(target=bump, args=(i,)) for i in range(THREADS)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert r.get("counter") == str(THREADS * EACH), r.get("counter")

    # Cross-shard MSET is atomic: a reader never sees half of one.
    stop = threading.Event()
    keys = [f"pair:{i}" for i in range(8)]
    def writer():
        w = redis.Redis(port=port, decode_responses=True)
        for n in range(150):
            w.mset({k: str(n) for k in keys})
        stop.set()
    t = threading.Thread(target=writer); t.start()
    reads = 0
    while not stop.is_set():
        values = r.mget(keys)
        if values[0] is not None:
            assert len(set(values)) == 1, values
        reads += 1
    t.join()
    assert reads > 0
    assert r.msetnx({"pair:0": "x", "fresh:1": "y"}) is False and r.get("fresh:1") is None
    assert r.msetnx({"fresh:1": "y", "fresh:2": "z"}) is True and r.mget(["fresh:1", "fresh:2"]) == ["y", "z"]
    r.close()

info = redis.Redis(port=port, decode_responses=True).info("jube")
assert info["total.txn_committed"] > 0 and info["total.txn_aborted_assertion"] > 0, info
print("python redis transactions ok")
"#;

fn resp_port(server: &Server) -> String {
    server
        .resp_addr
        .expect("jubed printed its RESP address")
        .port()
        .to_string()
}

#[test]
fn python_redis_transactions_work_in_resp2_and_resp3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = resp_port(&server);
    let mut child = Command::new("python3")
        .args(["-", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (with `python3 -m pip install redis==5.2.1`)");
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

#[test]
fn redis_cli_runs_multi_exec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let port = resp_port(&server);
    let mut child = Command::new("redis-cli")
        .args(["-p", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run redis-cli (apt-get install -y redis-tools)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"MULTI\nSET k 1\nINCR k\nGET k\nEXEC\nGET k\n")
        .expect("write commands");
    let output = child.wait_with_output().expect("redis-cli finishes");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["OK", "QUEUED", "QUEUED", "QUEUED", "OK", "2", "2", "2"],
        "{text}"
    );
}

/// A value whose bytes depend on `seed` and position, so a misplaced byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

#[test]
fn multi_exec_and_mset_take_large_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let addr = server.resp_addr.expect("jubed printed its RESP address");
    let client = redis::Client::open(format!("redis://{addr}/")).expect("client URL");
    let mut con = client
        .get_connection_with_timeout(std::time::Duration::from_secs(10))
        .expect("connect");
    con.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    // MULTI / SET of a 100 KiB value / GET of it / EXEC: one transaction.
    let big = pattern(100 << 10, 1);
    let (ok, got): (String, Vec<u8>) = redis::pipe()
        .atomic()
        .set("big", &big)
        .get("big")
        .query(&mut con)
        .expect("MULTI/EXEC");
    assert_eq!((ok.as_str(), &got), ("OK", &big));
    let read: Vec<u8> = con.get("big").expect("GET");
    assert_eq!(read, big);
    // MSET of 64 KiB values whose keys span both shards: one cross-shard transaction.
    let pairs: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("wide:{i}"), pattern(64 << 10, 10 + i as u8)))
        .collect();
    let shards: std::collections::BTreeSet<usize> = pairs
        .iter()
        .map(|(key, _)| shard_of(key.as_bytes(), 2))
        .collect();
    assert_eq!(shards.len(), 2, "the keys span both shards");
    let () = con.mset(&pairs).expect("MSET");
    let keys: Vec<&str> = pairs.iter().map(|(key, _)| key.as_str()).collect();
    let values: Vec<Vec<u8>> = con.mget(&keys).expect("MGET");
    for ((key, want), got) in pairs.iter().zip(&values) {
        assert!(got == want, "{key}: {} bytes back", got.len());
    }
}
