//! End-to-end tests of the RESP front end with the Rust `redis` crate (sync API, `redis::Client`
//! and `redis::Connection`) against a real jubed.
//!
//! Covered: connection setup as the crate does it (its pipelined `CLIENT SETINFO`), PING, ECHO,
//! SET and GET (EX, PX, NX, XX, GET, binary values), SETEX, PSETEX, MSET, MGET, DEL, EXISTS, INCR,
//! INCRBY, DECR, DECRBY, INCRBYFLOAT, APPEND, STRLEN, GETRANGE, SETRANGE, EXPIRE, PEXPIRE, TTL,
//! PTTL, PERSIST, SCAN through the crate's `scan_match` iterator over a few hundred keys, a
//! pipeline of 500 commands, error replies surfacing as `RedisError` with Redis's code and
//! message (alone and inside a pipeline), and RESP3: a connection opened with `protocol=resp3`,
//! for which the crate sends `HELLO 3`, getting RESP3 maps, nulls and verbatim strings.
//!
//! Strategy: each test starts its own jubed (2 cores, so keys spread over two shards) with an
//! ephemeral RESP port; keys carry a prefix unique to this file and test. Expected values are what
//! Redis 7.0 answers for the same commands.

mod common;

use common::Server;
use redis::{
    Commands, ErrorKind, ExistenceCheck, RedisResult, ServerErrorKind, SetExpiry, SetOptions,
    Value, VerbatimFormat,
};
use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

/// Opens a crate connection to the server's RESP listener; `protocol` is the crate's URL
/// parameter (`resp2` or `resp3`).
fn connect(server: &Server, protocol: &str) -> redis::Connection {
    let addr = server.resp_addr.expect("jubed printed its RESP address");
    let client =
        redis::Client::open(format!("redis://{addr}/?protocol={protocol}")).expect("client URL");
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .expect("connect to the RESP listener");
    con.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    con.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    con
}

/// A key unique to this file and `test`.
fn key(test: &str, name: &str) -> String {
    format!("rustclient:{test}:{name}")
}

/// Asserts that `result` is a server error reply `-{code} {detail}`.
fn assert_server_error<T: Debug>(result: RedisResult<T>, code: &str, detail: &str) {
    let error = result.expect_err("an error reply");
    assert_eq!(error.code(), Some(code), "{error:?}");
    assert_eq!(error.detail(), Some(detail), "{error:?}");
    if code == "ERR" {
        assert_eq!(
            error.kind(),
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "{error:?}"
        );
    }
}

#[test]
fn strings_and_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut con = connect(&server, "resp2");
    let k = |name: &str| key("strings", name);

    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = redis::cmd("PING").arg("hi there").query(&mut con).unwrap();
    assert_eq!(echoed, "hi there");
    let echoed: String = redis::cmd("ECHO").arg("a\r\nb").query(&mut con).unwrap();
    assert_eq!(echoed, "a\r\nb");

    // SET/GET, and a binary value with every byte.
    let reply: String = con.set(k("a"), "alpha").unwrap();
    assert_eq!(reply, "OK");
    let value: Option<String> = con.get(k("a")).unwrap();
    assert_eq!(value.as_deref(), Some("alpha"));
    let value: Option<String> = con.get(k("missing")).unwrap();
    assert_eq!(value, None);
    let bytes: Vec<u8> = (0..=255).collect();
    let () = con.set(k("bin"), &bytes[..]).unwrap();
    let back: Vec<u8> = con.get(k("bin")).unwrap();
    assert_eq!(back, bytes);

    // SET NX / XX / GET.
    let nx = SetOptions::default().conditional_set(ExistenceCheck::NX);
    let xx = SetOptions::default().conditional_set(ExistenceCheck::XX);
    let reply: Option<String> = con.set_options(k("a"), "other", nx.clone()).unwrap();
    assert_eq!(reply, None, "NX on an existing key does not set");
    let reply: Option<String> = con.set_options(k("nx"), "fresh", nx.clone()).unwrap();
    assert_eq!(reply.as_deref(), Some("OK"));
    let reply: Option<String> = con.set_options(k("xx"), "never", xx.clone()).unwrap();
    assert_eq!(reply, None, "XX on a missing key does not set");
    let exists: bool = con.exists(k("xx")).unwrap();
    assert!(!exists);
    let reply: Option<String> = con.set_options(k("nx"), "again", xx).unwrap();
    assert_eq!(reply.as_deref(), Some("OK"));
    let value: Option<String> = con.get(k("nx")).unwrap();
    assert_eq!(value.as_deref(), Some("again"));
    let get = SetOptions::default().get(true);
    let old: Option<String> = con.set_options(k("nx"), "third", get.clone()).unwrap();
    assert_eq!(old.as_deref(), Some("again"));
    let old: Option<String> = con.set_options(k("getnew"), "first", get).unwrap();
    assert_eq!(old, None);
    let value: Option<String> = con.get(k("nx")).unwrap();
    assert_eq!(value.as_deref(), Some("third"));
    // NX with GET (Redis 7.0): the old value back, nothing written.
    let old: Option<String> = con.set_options(k("nx"), "fourth", nx.get(true)).unwrap();
    assert_eq!(old.as_deref(), Some("third"));
    let value: Option<String> = con.get(k("nx")).unwrap();
    assert_eq!(value.as_deref(), Some("third"));

    // MSET/MGET (keys on both shards), DEL/EXISTS.
    let pairs: Vec<(String, String)> = (0..20)
        .map(|i| (k(&format!("m{i}")), format!("value-{i}")))
        .collect();
    let () = con.mset(&pairs).unwrap();
    let mut keys: Vec<String> = pairs.iter().map(|(key, _)| key.clone()).collect();
    keys.insert(5, k("missing"));
    let values: Vec<Option<String>> = con.mget(&keys).unwrap();
    let mut expected: Vec<Option<String>> =
        pairs.iter().map(|(_, value)| Some(value.clone())).collect();
    expected.insert(5, None);
    assert_eq!(values, expected);
    let count: i64 = con
        .exists(&[k("m0"), k("m1"), k("m0"), k("missing")])
        .unwrap();
    assert_eq!(count, 3, "a repeated key counts each time");
    let deleted: i64 = con.del(&[k("m0"), k("m1"), k("missing")]).unwrap();
    assert_eq!(deleted, 2);
    let count: i64 = con.exists(&[k("m0"), k("m1"), k("m2")]).unwrap();
    assert_eq!(count, 1);
    let deleted: i64 = con.del(k("m0")).unwrap();
    assert_eq!(deleted, 0);

    // Counters.
    let n: i64 = redis::cmd("INCR").arg(k("n")).query(&mut con).unwrap();
    assert_eq!(n, 1, "INCR on a missing key starts at 0");
    let n: i64 = con.incr(k("n"), 41).unwrap();
    assert_eq!(n, 42);
    let n: i64 = redis::cmd("DECR").arg(k("n")).query(&mut con).unwrap();
    assert_eq!(n, 41);
    let n: i64 = con.decr(k("n"), 50).unwrap();
    assert_eq!(n, -9);
    let n: i64 = con.incr(k("n"), -1).unwrap();
    assert_eq!(n, -10);
    let value: String = con.get(k("n")).unwrap();
    assert_eq!(value, "-10");
    let () = con.set(k("big"), i64::MAX - 1).unwrap();
    let n: i64 = redis::cmd("INCR").arg(k("big")).query(&mut con).unwrap();
    assert_eq!(n, i64::MAX);
    assert_server_error(
        redis::cmd("INCR").arg(k("big")).query::<i64>(&mut con),
        "ERR",
        "increment or decrement would overflow",
    );
    let () = con.set(k("f"), "10.5").unwrap();
    let f: String = con.incr(k("f"), 0.25f64).unwrap();
    assert_eq!(f, "10.75");
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg(k("f"))
        .arg("5.0e3")
        .query(&mut con)
        .unwrap();
    assert_eq!(f, "5010.75");
    let f: String = con.incr(k("f"), -5010.75f64).unwrap();
    assert_eq!(f, "0");
    let f: String = con.incr(k("fnew"), 3.0f64).unwrap();
    assert_eq!(f, "3");

    // APPEND/STRLEN/GETRANGE/SETRANGE.
    let len: i64 = con.append(k("s"), "Hello").unwrap();
    assert_eq!(len, 5, "APPEND creates a missing key");
    let len: i64 = con.append(k("s"), " World").unwrap();
    assert_eq!(len, 11);
    let len: i64 = con.strlen(k("s")).unwrap();
    assert_eq!(len, 11);
    let len: i64 = con.strlen(k("missing")).unwrap();
    assert_eq!(len, 0);
    let range: String = con.getrange(k("s"), 0, 4).unwrap();
    assert_eq!(range, "Hello");
    let range: String = con.getrange(k("s"), -5, -1).unwrap();
    assert_eq!(range, "World");
    let range: String = con.getrange(k("s"), 6, 100).unwrap();
    assert_eq!(range, "World");
    let range: String = con.getrange(k("s"), 5, 3).unwrap();
    assert_eq!(range, "");
    let range: String = con.getrange(k("missing"), 0, -1).unwrap();
    assert_eq!(range, "");
    let len: i64 = con.setrange(k("s"), 6, "Redis").unwrap();
    assert_eq!(len, 11);
    let value: String = con.get(k("s")).unwrap();
    assert_eq!(value, "Hello Redis");
    let len: i64 = con.setrange(k("pad"), 3, "abc").unwrap();
    assert_eq!(len, 6, "SETRANGE past the end pads with zero bytes");
    let value: Vec<u8> = con.get(k("pad")).unwrap();
    assert_eq!(value, b"\0\0\0abc");
}

#[test]
fn expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut con = connect(&server, "resp2");
    let k = |name: &str| key("expiry", name);

    let ex = SetOptions::default().with_expiration(SetExpiry::EX(100));
    let reply: Option<String> = con.set_options(k("ex"), "v", ex).unwrap();
    assert_eq!(reply.as_deref(), Some("OK"));
    let ttl: i64 = con.ttl(k("ex")).unwrap();
    assert!((99..=100).contains(&ttl), "TTL {ttl}");
    let px = SetOptions::default().with_expiration(SetExpiry::PX(50_000));
    let reply: Option<String> = con.set_options(k("px"), "v", px).unwrap();
    assert_eq!(reply.as_deref(), Some("OK"));
    let pttl: i64 = con.pttl(k("px")).unwrap();
    assert!((45_000..=50_000).contains(&pttl), "PTTL {pttl}");
    let () = con.set_ex(k("setex"), "v", 30).unwrap();
    let ttl: i64 = con.ttl(k("setex")).unwrap();
    assert!((29..=30).contains(&ttl), "TTL {ttl}");
    let () = con.pset_ex(k("psetex"), "v", 30_000).unwrap();
    let pttl: i64 = con.pttl(k("psetex")).unwrap();
    assert!((25_000..=30_000).contains(&pttl), "PTTL {pttl}");

    // No TTL, missing key.
    let () = con.set(k("plain"), "v").unwrap();
    let ttl: i64 = con.ttl(k("plain")).unwrap();
    assert_eq!(ttl, -1);
    let pttl: i64 = con.pttl(k("plain")).unwrap();
    assert_eq!(pttl, -1);
    let ttl: i64 = con.ttl(k("missing")).unwrap();
    assert_eq!(ttl, -2);
    let pttl: i64 = con.pttl(k("missing")).unwrap();
    assert_eq!(pttl, -2);

    // EXPIRE/PERSIST.
    let set: bool = con.expire(k("plain"), 200).unwrap();
    assert!(set);
    let ttl: i64 = con.ttl(k("plain")).unwrap();
    assert!((199..=200).contains(&ttl), "TTL {ttl}");
    let set: bool = con.expire(k("missing"), 200).unwrap();
    assert!(!set, "EXPIRE on a missing key");
    let persisted: bool = con.persist(k("plain")).unwrap();
    assert!(persisted);
    let ttl: i64 = con.ttl(k("plain")).unwrap();
    assert_eq!(ttl, -1);
    let persisted: bool = con.persist(k("plain")).unwrap();
    assert!(!persisted, "PERSIST without a TTL");
    let persisted: bool = con.persist(k("missing")).unwrap();
    assert!(!persisted, "PERSIST on a missing key");
    let value: Option<String> = con.get(k("plain")).unwrap();
    assert_eq!(value.as_deref(), Some("v"), "PERSIST keeps the value");

    // A plain SET drops the TTL.
    let () = con.set(k("ex"), "w").unwrap();
    let ttl: i64 = con.ttl(k("ex")).unwrap();
    assert_eq!(ttl, -1);

    // Keys do expire: PX, PEXPIRE, and EXPIRE with a deadline already past.
    let short = SetOptions::default().with_expiration(SetExpiry::PX(150));
    let _: Option<String> = con.set_options(k("short"), "v", short).unwrap();
    let () = con.set(k("short2"), "v").unwrap();
    let set: bool = con.pexpire(k("short2"), 150).unwrap();
    assert!(set);
    let value: Option<String> = con.get(k("short")).unwrap();
    assert_eq!(value.as_deref(), Some("v"), "not expired yet");
    std::thread::sleep(Duration::from_millis(400));
    let values: Vec<Option<String>> = con.mget(&[k("short"), k("short2")]).unwrap();
    assert_eq!(values, vec![None, None]);
    let count: i64 = con.exists(&[k("short"), k("short2")]).unwrap();
    assert_eq!(count, 0);
    let ttl: i64 = con.ttl(k("short")).unwrap();
    assert_eq!(ttl, -2);
    let set: bool = con.expire(k("plain"), -1).unwrap();
    assert!(set, "EXPIRE with a past deadline deletes the key");
    let value: Option<String> = con.get(k("plain")).unwrap();
    assert_eq!(value, None);
}

#[test]
fn scan_match_and_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut con = connect(&server, "resp2");
    let k = |name: &str| key("scan", name);

    // 300 keys the pattern matches and 50 it does not, spread over both shards.
    let wanted: Vec<String> = (0..300).map(|i| k(&format!("in:{i:03}"))).collect();
    let others: Vec<String> = (0..50).map(|i| k(&format!("out:{i:03}"))).collect();
    for chunk in wanted.chunks(100).chain(others.chunks(100)) {
        let pairs: Vec<(&str, &str)> = chunk.iter().map(|key| (key.as_str(), "x")).collect();
        let () = con.mset(&pairs).unwrap();
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let iter: redis::Iter<String> = con.scan_match(k("in:*")).unwrap();
    for found in iter {
        *seen.entry(found.unwrap()).or_default() += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &count)| count != 1).collect();
    assert!(repeated.is_empty(), "returned more than once: {repeated:?}");
    let mut found: Vec<String> = seen.into_keys().collect();
    found.sort();
    assert_eq!(found, wanted, "every matching key exactly once, no other");

    // A pipeline of 500 commands on keys of both shards; replies in order.
    let mut pipe = redis::pipe();
    for i in 0..125 {
        let key = k(&format!("p:{i}"));
        pipe.cmd("SET").arg(&key).arg(i);
        pipe.cmd("INCRBY").arg(&key).arg(i);
        pipe.cmd("APPEND").arg(&key).arg("x");
        pipe.cmd("GET").arg(&key);
    }
    let replies: Vec<Value> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 500);
    for (i, replies) in replies.chunks(4).enumerate() {
        let doubled = (2 * i).to_string();
        let text = format!("{doubled}x");
        let expected = [
            Value::Okay,
            Value::Int(2 * i as i64),
            Value::Int(text.len() as i64),
            Value::BulkString(text.into_bytes()),
        ];
        assert_eq!(replies, expected, "replies to key p:{i}");
    }
}

#[test]
fn errors_surface_as_redis_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut con = connect(&server, "resp2");
    let k = |name: &str| key("errors", name);

    let () = con.set(k("text"), "abc").unwrap();
    assert_server_error(
        redis::cmd("INCR").arg(k("text")).query::<i64>(&mut con),
        "ERR",
        "value is not an integer or out of range",
    );
    assert_server_error(
        con.incr::<_, _, i64>(k("text"), 5),
        "ERR",
        "value is not an integer or out of range",
    );
    assert_server_error(
        con.incr::<_, _, String>(k("text"), 1.5f64),
        "ERR",
        "value is not a valid float",
    );
    assert_server_error(
        redis::cmd("SET")
            .arg(k("text"))
            .arg("v")
            .arg("NX")
            .arg("XX")
            .query::<()>(&mut con),
        "ERR",
        "syntax error",
    );
    assert_server_error(
        redis::cmd("GET").query::<Option<String>>(&mut con),
        "ERR",
        "wrong number of arguments for 'get' command",
    );
    assert_server_error(
        redis::cmd("NOSUCHCOMMAND")
            .arg("a")
            .arg("b")
            .query::<()>(&mut con),
        "ERR",
        "unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b' ",
    );
    // The connection is still usable, and the failed commands wrote nothing.
    let value: Option<String> = con.get(k("text")).unwrap();
    assert_eq!(value.as_deref(), Some("abc"));

    // An error inside a pipeline is that command's reply; the others are answered.
    let results: Vec<RedisResult<Value>> = redis::pipe()
        .cmd("INCRBY")
        .arg(k("n"))
        .arg(2)
        .cmd("INCR")
        .arg(k("text"))
        .cmd("INCRBY")
        .arg(k("n"))
        .arg(3)
        .ignore_errors()
        .query(&mut con)
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().ok(), Some(&Value::Int(2)));
    let error = results[1].as_ref().expect_err("INCR on text fails");
    assert_eq!(error.code(), Some("ERR"), "{error:?}");
    assert_eq!(
        error.detail(),
        Some("value is not an integer or out of range")
    );
    assert_eq!(results[2].as_ref().ok(), Some(&Value::Int(5)));
    // Without ignore_errors the whole pipeline reports the failure.
    let result: RedisResult<Vec<Value>> = redis::pipe()
        .cmd("INCR")
        .arg(k("n"))
        .cmd("INCR")
        .arg(k("text"))
        .query(&mut con);
    let error = result.expect_err("the pipeline fails");
    assert!(
        error
            .to_string()
            .contains("value is not an integer or out of range"),
        "{error}"
    );
    let n: i64 = con.get(k("n")).unwrap();
    assert_eq!(n, 6, "the pipeline's other command ran");
}

#[test]
fn resp3_after_hello_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let k = |name: &str| key("resp3", name);

    // RESP2 first, for contrast: CONFIG GET is a flat array.
    let mut con2 = connect(&server, "resp2");
    let config: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut con2)
        .unwrap();
    assert_eq!(
        config,
        Value::Array(vec![
            Value::BulkString(b"maxmemory".to_vec()),
            Value::BulkString(b"0".to_vec()),
        ])
    );

    // `protocol=resp3` makes the crate open the connection with HELLO 3 (its setup fails
    // unless the reply is a RESP3 map).
    let mut con = connect(&server, "resp3");
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    let Value::Map(fields) = hello else {
        panic!("HELLO 3 replies with a map, got {hello:?}");
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == Value::BulkString(name.as_bytes().to_vec()))
            .map(|(_, value)| value.clone())
    };
    assert_eq!(field("proto"), Some(Value::Int(3)));
    assert_eq!(field("server"), Some(Value::BulkString(b"jube".to_vec())));
    assert_eq!(
        field("mode"),
        Some(Value::BulkString(b"standalone".to_vec()))
    );

    let config: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        config,
        Value::Map(vec![(
            Value::BulkString(b"maxmemory".to_vec()),
            Value::BulkString(b"0".to_vec()),
        )])
    );
    let info: Value = redis::cmd("CLIENT").arg("INFO").query(&mut con).unwrap();
    let Value::VerbatimString { format, text } = info else {
        panic!("CLIENT INFO in RESP3 is a verbatim string, got {info:?}");
    };
    assert_eq!(format, VerbatimFormat::Text);
    assert!(text.contains(" resp=3 "), "{text}");
    assert!(text.contains(" lib-name=redis-rs "), "{text}");

    // The string commands answer as in RESP2, a missing key is the RESP3 null.
    let reply: Value = redis::cmd("GET").arg(k("missing")).query(&mut con).unwrap();
    assert_eq!(reply, Value::Nil);
    let () = con.set(k("a"), "1").unwrap();
    let n: i64 = con.incr(k("a"), 9).unwrap();
    assert_eq!(n, 10);
    let values: Vec<Option<String>> = con.mget(&[k("a"), k("missing")]).unwrap();
    assert_eq!(values, vec![Some("10".to_string()), None]);
    let f: String = con.incr(k("a"), 0.5f64).unwrap();
    assert_eq!(f, "10.5");
    assert_server_error(
        redis::cmd("INCR").arg(k("a")).query::<i64>(&mut con),
        "ERR",
        "value is not an integer or out of range",
    );
    let replies: Vec<Value> = redis::pipe()
        .cmd("SET")
        .arg(k("b"))
        .arg("x")
        .cmd("APPEND")
        .arg(k("b"))
        .arg("yz")
        .cmd("GET")
        .arg(k("b"))
        .cmd("GET")
        .arg(k("missing"))
        .query(&mut con)
        .unwrap();
    assert_eq!(
        replies,
        vec![
            Value::Okay,
            Value::Int(3),
            Value::BulkString(b"xyz".to_vec()),
            Value::Nil,
        ]
    );
    // The RESP2 connection is not affected by the other's HELLO 3.
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut con2).unwrap();
    assert!(info.contains(" resp=2 "), "{info}");
}
