//! Native transactions end to end against a real jubed (2 cores, so 2 shards and half of the
//! cross-shard steps cross cores): every assertion kind holding and failing (the failure names
//! the request's index), every op's result, reads seeing earlier writes, an op failure applying
//! nothing, cross-shard atomicity under concurrent transfers with read-only audits (the total is
//! conserved in every audit), MSET-style cross-shard writes surviving kill -9, the INFO
//! counters, and values above the inline threshold (into the value log) in single- and
//! cross-shard transactions, read inside and after them and across kill -9.

mod common;

use common::Server;
use jube_protocol::message::value_hash;
use jube_protocol::{
    Client, CompareOp, Get, GetReply, Status, Txn, TxnOp, TxnOpResult, TxnOutcome,
};
use jube_server::routing::shard_of;

const SHARDS: usize = 2;

/// A key named `prefix-N` that lives on `shard`.
fn key_on(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|key| shard_of(key.as_bytes(), SHARDS) == shard)
        .expect("some key lands on every shard")
}

fn committed(outcome: TxnOutcome) -> Vec<TxnOpResult> {
    match outcome {
        TxnOutcome::Committed(results) => results,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn assertion_failed(outcome: TxnOutcome) -> u32 {
    match outcome {
        TxnOutcome::AssertionFailed { index, .. } => index,
        other => panic!("expected a failed assertion, got {other:?}"),
    }
}

fn version(client: &mut Client, key: &str) -> u64 {
    client
        .get_with(Get {
            key: key.as_bytes().to_vec(),
            with_version: true,
            with_ttl: false,
        })
        .expect("get")
        .map_or(0, |reply| reply.version.expect("asked for the version"))
}

#[test]
fn every_assertion_kind_holds_or_names_its_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    client.put(b"n", b"10", None).expect("put");
    client.put(b"s", b"text", None).expect("put");
    let v_n = version(&mut client, "n");
    assert!(v_n > 0, "a written key has a version");
    assert_eq!(version(&mut client, "absent"), 0);

    // Every kind holding, on both shards, in one transaction.
    let all_hold = Txn::new()
        .assert_exists("n")
        .assert_absent("absent")
        .assert_value("s", "text")
        .assert_hash("s", value_hash(b"text"))
        .assert_int("n", CompareOp::Eq, 10)
        .assert_int("n", CompareOp::Ne, 11)
        .assert_int("n", CompareOp::Lt, 11)
        .assert_int("n", CompareOp::Le, 10)
        .assert_int("n", CompareOp::Gt, 9)
        .assert_int("n", CompareOp::Ge, 10)
        .assert_version("n", v_n)
        .assert_version("absent", 0)
        .read("n");
    let results = committed(client.txn(all_hold).expect("txn"));
    assert!(
        matches!(&results[..], [TxnOpResult::Read(Some(GetReply { value, .. }))] if value == b"10")
    );

    // Each kind failing alone, placed after a holding one: the reply names index 1.
    let failing = [
        Txn::new().assert_exists("n").assert_exists("absent"),
        Txn::new().assert_exists("n").assert_absent("s"),
        Txn::new().assert_exists("n").assert_value("s", "other"),
        Txn::new().assert_exists("n").assert_value("absent", ""),
        Txn::new()
            .assert_exists("n")
            .assert_hash("s", value_hash(b"other")),
        Txn::new()
            .assert_exists("n")
            .assert_int("n", CompareOp::Gt, 10),
        Txn::new()
            .assert_exists("n")
            .assert_int("s", CompareOp::Ne, 0),
        Txn::new()
            .assert_exists("n")
            .assert_int("absent", CompareOp::Eq, 0),
        Txn::new().assert_exists("n").assert_version("n", v_n + 1),
        Txn::new().assert_exists("n").assert_version("absent", 1),
    ];
    for txn in failing {
        let txn = txn.put("n", "written-by-a-failed-txn");
        let described = format!("{:?}", txn.assertions[1]);
        assert_eq!(
            assertion_failed(client.txn(txn).expect("txn")),
            1,
            "{described}"
        );
    }
    assert_eq!(
        client.get(b"n").unwrap().as_deref(),
        Some(&b"10"[..]),
        "nothing applied"
    );
    assert_eq!(version(&mut client, "n"), v_n, "no write, no new version");
}

#[test]
fn ops_return_results_and_see_earlier_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    client.put(b"gone", b"x", None).expect("put");
    let txn = Txn::new()
        // Assertions see the state before the transaction, even for keys it writes.
        .assert_absent("fresh")
        .put("fresh", "1")
        .read("fresh")
        .add("fresh", 41)
        .add("counter", -2)
        .delete("gone")
        .delete("never")
        .op(TxnOp::Read(Get {
            key: b"gone".to_vec(),
            with_version: true,
            with_ttl: false,
        }))
        .put_ttl("ttl", "t", 60_000)
        .op(TxnOp::Read(Get {
            key: b"ttl".to_vec(),
            with_version: false,
            with_ttl: true,
        }));
    let results = committed(client.txn(txn).expect("txn"));
    assert_eq!(results.len(), 9);
    assert_eq!(results[0], TxnOpResult::Put);
    assert!(matches!(&results[1], TxnOpResult::Read(Some(r)) if r.value == b"1"));
    assert_eq!(results[2], TxnOpResult::Add { value: 42 });
    assert_eq!(results[3], TxnOpResult::Add { value: -2 });
    assert_eq!(results[4], TxnOpResult::Delete { existed: true });
    assert_eq!(results[5], TxnOpResult::Delete { existed: false });
    assert_eq!(results[6], TxnOpResult::Read(None));
    assert_eq!(results[7], TxnOpResult::Put);
    match &results[8] {
        TxnOpResult::Read(Some(reply)) => {
            let ttl = reply.ttl_remaining_ms.expect("asked for the TTL");
            assert!((50_000..=60_000).contains(&ttl), "ttl {ttl}");
        }
        other => panic!("expected the ttl key, got {other:?}"),
    }
    assert_eq!(client.get(b"fresh").unwrap().as_deref(), Some(&b"42"[..]));
    assert_eq!(client.get(b"counter").unwrap().as_deref(), Some(&b"-2"[..]));
    assert_eq!(client.get(b"gone").unwrap(), None);

    // An Add on a value that is not an integer fails the whole transaction at its index.
    client.put(b"word", b"abc", None).expect("put");
    let txn = Txn::new().put("side", "effect").add("word", 1);
    match client.txn(txn).expect("txn") {
        TxnOutcome::OpFailed { index, .. } => assert_eq!(index, 1),
        other => panic!("expected an op failure, got {other:?}"),
    }
    client
        .put(b"max", i64::MAX.to_string().as_bytes(), None)
        .expect("put");
    match client.txn(Txn::new().add("max", 1)).expect("txn") {
        TxnOutcome::OpFailed { index: 0, .. } => {}
        other => panic!("expected an overflow failure, got {other:?}"),
    }
    assert_eq!(
        client.get(b"side").unwrap(),
        None,
        "nothing of a failed txn applies"
    );
    // Limits are checked by the server too: an empty transaction is refused by the client first.
    assert_eq!(
        client.txn(Txn::new()).unwrap_err().status(),
        Some(Status::InvalidRequest)
    );
}

#[test]
fn cross_shard_transactions_are_atomic_under_concurrency_and_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    let a = key_on(0, "acct");
    let b = key_on(1, "acct");
    let mut client = server.client();
    committed(
        client
            .txn(Txn::new().put(a.clone(), "1000").put(b.clone(), "1000"))
            .unwrap(),
    );

    // Two movers transfer between the shards while an auditor reads both in one transaction.
    let addr = server.addr;
    let movers: Vec<_> = (0..2)
        .map(|m| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr).expect("connect");
                let mut moved = 0;
                for i in 0..150i64 {
                    let amount = (i % 7) + 1;
                    let (from, to) = if (i + m) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let txn = Txn::new()
                        .assert_int(from.clone(), CompareOp::Ge, amount)
                        .add(from.clone(), -amount)
                        .add(to.clone(), amount);
                    match client.txn(txn) {
                        Ok(TxnOutcome::Committed(_)) => moved += 1,
                        Ok(TxnOutcome::AssertionFailed { .. }) => {}
                        Ok(other) => panic!("unexpected outcome {other:?}"),
                        Err(error) if error.status() == Some(Status::Busy) => {}
                        Err(error) => panic!("transfer failed: {error}"),
                    }
                }
                moved
            })
        })
        .collect();
    let mut audits = 0;
    while !movers.iter().all(|mover| mover.is_finished()) {
        let results = committed(
            client
                .txn(Txn::new().read(a.clone()).read(b.clone()))
                .unwrap(),
        );
        let total: i64 = results
            .iter()
            .map(|result| match result {
                TxnOpResult::Read(Some(reply)) => std::str::from_utf8(&reply.value)
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
                other => panic!("audit read {other:?}"),
            })
            .sum();
        assert_eq!(total, 2000, "an audit saw half a transfer");
        audits += 1;
    }
    let moved: i32 = movers.into_iter().map(|m| m.join().unwrap()).sum();
    assert!(moved > 0 && audits > 0, "moved {moved}, audits {audits}");

    // Cross-shard writes acknowledged before kill -9 are all there after it, and the pairs that
    // were written together are equal (no half transaction recovered).
    let mut acked = Vec::new();
    for i in 0..40 {
        let (x, y) = (
            key_on(0, &format!("pair{i}")),
            key_on(1, &format!("pair{i}")),
        );
        let value = format!("v{i}");
        committed(
            client
                .txn(
                    Txn::new()
                        .put(x.clone(), value.clone())
                        .put(y.clone(), value),
                )
                .unwrap(),
        );
        acked.push((x, y));
    }
    server.kill9();
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    for (i, (x, y)) in acked.iter().enumerate() {
        let want = format!("v{i}").into_bytes();
        assert_eq!(client.get(x.as_bytes()).unwrap(), Some(want.clone()), "{x}");
        assert_eq!(client.get(y.as_bytes()).unwrap(), Some(want), "{y}");
    }
    let sum: i64 = [&a, &b]
        .iter()
        .map(|key| {
            let value = client.get(key.as_bytes()).unwrap().expect("account");
            std::str::from_utf8(&value).unwrap().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(sum, 2000, "transfers conserve the total across kill -9");
    assert!(
        server.log().contains("in-doubt transactions resolved"),
        "start-up resolves in-doubt transactions before listening"
    );

    // Counters start at zero with the process: one transaction, then INFO.
    committed(client.txn(Txn::new().read(a.clone())).unwrap());
    let info = client.info().expect("info");
    let total = &info.sections[0];
    let metric = |name: &str| {
        total
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
            .unwrap_or_else(|| panic!("INFO has no {name}"))
    };
    assert!(metric("txn_committed") >= 1);
    for name in [
        "txn_aborted_assertion",
        "txn_aborted_op",
        "txn_aborted_error",
        "txn_cross_shard",
        "txn_lock_waits",
        "txn_busy",
        "ops.txn",
    ] {
        metric(name);
    }
}

/// A value whose bytes depend on `seed` and position, so a misplaced byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 10) as u8)
        .collect()
}

#[test]
fn large_values_in_single_and_cross_shard_transactions_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    // One shard: a 100 KiB value and a 1 MiB one, read back inside the same transaction (from
    // its overlay) and after it.
    let one = key_on(0, "one");
    let big = key_on(0, "big");
    let (v100k, v1m) = (pattern(100 << 10, 1), pattern(1 << 20, 2));
    let results = committed(
        client
            .txn(
                Txn::new()
                    .assert_absent(one.clone())
                    .put(one.clone(), v100k.clone())
                    .put(big.clone(), v1m.clone())
                    .read(one.clone()),
            )
            .expect("txn"),
    );
    assert!(matches!(&results[2], TxnOpResult::Read(Some(r)) if r.value == v100k));
    assert_eq!(client.get(one.as_bytes()).unwrap(), Some(v100k.clone()));
    assert_eq!(client.get(big.as_bytes()).unwrap(), Some(v1m.clone()));
    // Across shards: 64 KiB values on both, guarded by a value assertion on the large value.
    let pairs: Vec<(String, Vec<u8>)> = (0..2)
        .flat_map(|shard| (0..3).map(move |i| (shard, i)))
        .map(|(shard, i)| {
            let key = key_on(shard, &format!("wide{i}"));
            (key, pattern(64 << 10, 10 + shard as u8 * 3 + i as u8))
        })
        .collect();
    let txn = pairs.iter().fold(
        Txn::new().assert_value(one.clone(), v100k.clone()),
        |txn, (key, value)| txn.put(key.clone(), value.clone()),
    );
    committed(client.txn(txn).expect("cross-shard txn"));
    // A failed assertion applies none of them.
    let doomed = pairs.iter().fold(
        Txn::new().assert_value(one.clone(), v1m.clone()),
        |txn, (key, _)| txn.put(key.clone(), pattern(70_000, 99)),
    );
    assert_eq!(assertion_failed(client.txn(doomed).expect("txn")), 0);
    for (key, value) in &pairs {
        assert_eq!(client.get(key.as_bytes()).unwrap().as_ref(), Some(value));
    }
    server.kill9();
    let server = Server::start(dir.path(), &[]);
    let mut client = server.client();
    assert_eq!(client.get(one.as_bytes()).unwrap(), Some(v100k));
    assert_eq!(client.get(big.as_bytes()).unwrap(), Some(v1m));
    for (key, value) in &pairs {
        assert_eq!(
            client.get(key.as_bytes()).unwrap().as_ref(),
            Some(value),
            "{key} after kill -9"
        );
    }
}
