//! Golden files of every page-file format version, so format changes are deliberate.
//!
//! `fixtures/v1/pages` is a small format-1 database (a two-level tree: a branch root over
//! leaves) built by [`build_v1`] with the code of that time. It must still open with today's
//! code (format 1 has no value log and a zero clock calibration, which format 2 reads as "never
//! used"), pass `check_integrity`, and hold exactly the keys, values, expiries and versions put
//! there. Today's code writes format 2, so [`build_v1`] no longer reproduces its bytes.
//!
//! `fixtures/v2/` is a whole format-2 shard directory (page file, WAL segments, a value-log
//! segment) built by [`build_v2`] through the shard on a fault-free simulated disk with a manual
//! clock: inline and value-log values, expiries, an overwrite and a delete, then a clean close
//! (whose checkpoint persists the clock calibration and the value-log head). It must open with
//! today's code and hold its data, and building it again must give the same bytes. Its page file
//! was rebuilt when same-size updates began to be written in place (the overwrite of key 3 no
//! longer leaves garbage): that changed the bytes written, not the format, and the earlier page
//! file opened, passed `check_integrity` and held its data with the new code before it was
//! replaced.
//!
//! `fixtures/v2-txn/` is a shard directory holding transaction records as they were written
//! before transactions could carry value-log pointers (write kinds 1 and 2 only), built by
//! [`build_v2_txn`] and left without a clean close: a TxnApply below and above the checkpoint, a
//! coordinator's Prepare and Decision (the decision not forgotten), and a participant's Prepare
//! left in doubt below the checkpoint. It must open (WAL redo and the retained records rebuild
//! the txn state), hold its data, and resolve its in-doubt txn; building it again must give the
//! same bytes (inline transaction writes are still encoded exactly as before).
//!
//! After a deliberate format change: bump `FORMAT_VERSION`, keep the old fixtures (and say in
//! docs/format.md whether they still open or are refused), and add the new one by running
//! `JUBE_WRITE_FIXTURE=1 cargo test -p jube-engine --test golden`.

use jube_engine::clock::{Clock, ManualClock};
use jube_engine::shard::{Shard, ShardConfig};
use jube_engine::storage::file::FileVfs;
use jube_engine::storage::sim::{FaultConfig, SimDisk};
use jube_engine::storage::Vfs;
use jube_engine::tree::{Tree, TreeConfig};
use jube_engine::txn::{OpKind, PrepareReply, PrepareRequest, TxnId, TxnOp, TxnPart};
use std::path::PathBuf;
use std::rc::Rc;

fn config() -> TreeConfig {
    TreeConfig {
        page_size: 4096,
        cache_bytes: 16 * 4096,
        value_inline_max: None,
        shard_id: 0,
    }
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/pages")
}

/// Key `i` of the fixture and its value and expiry.
fn entry(i: u32) -> (Vec<u8>, Vec<u8>, u64) {
    let key = format!("golden/{i:03}").into_bytes();
    let value = format!("value {i} ")
        .repeat(1 + (i as usize % 7))
        .into_bytes();
    let expiry = if i.is_multiple_of(5) {
        1_700_000_000_000 + u64::from(i)
    } else {
        0
    };
    (key, value, expiry)
}

const KEYS: u32 = 60;

/// Builds the v1 fixture and returns the page file's durable bytes.
fn build_v1() -> Vec<u8> {
    let disk = SimDisk::new(1, FaultConfig::none());
    let mut vfs = disk.root();
    let mut tree = Tree::create(&mut vfs, config()).expect("create");
    for i in 0..KEYS {
        let (key, value, expiry) = entry(i);
        tree.put(&key, &value, expiry).expect("put");
    }
    tree.commit(7).expect("commit");
    // Overwrite and delete a few, in a second commit, so the file holds freed pages too.
    for i in (0..KEYS).step_by(10) {
        let (key, value, expiry) = entry(i);
        tree.put(&key, &value, expiry).expect("overwrite");
    }
    tree.delete(&entry(KEYS - 1).0).expect("delete");
    tree.commit(8).expect("commit");
    drop(tree);
    disk.durable_image(&vfs.path_of("pages"))
        .expect("page file exists")
}

#[test]
fn v1_fixture_opens_and_holds_its_data() {
    let golden = std::fs::read(fixture_path()).expect("fixtures/v1/pages is checked in");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pages"), &golden).expect("copy fixture");
    let mut vfs = FileVfs::open(dir.path(), false).expect("vfs");
    let (mut tree, info) = Tree::open(&mut vfs, config()).expect("v1 fixture opens");
    assert_eq!(
        (info.generation, info.checkpoint_lsn, info.key_count),
        (3, 8, u64::from(KEYS - 1))
    );
    assert!(info.tree_height >= 2, "the fixture has a branch page");
    tree.check_integrity().expect("fixture integrity");
    for i in 0..KEYS {
        let (key, value, expiry) = entry(i);
        let got = tree.get(&key).expect("get");
        if i == KEYS - 1 {
            assert_eq!(got, None);
            continue;
        }
        let got = got.expect("present");
        assert_eq!((got.bytes, got.expiry_ms), (value, expiry), "key {i}");
        let version = if i.is_multiple_of(10) {
            u64::from(KEYS + i / 10 + 1)
        } else {
            u64::from(i + 1)
        };
        assert_eq!(got.version, version, "version of key {i}");
    }
    // Built today, the same operations write format 2: the v1 bytes are history.
    assert!(build_v1() != golden, "today's code writes format 2");
}

const T0: u64 = 1_700_000_000_000;

fn v2_config() -> ShardConfig {
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 16 * 4096;
    config.wal.segment_size_bytes = 16 * 4096;
    config.wal.flush_bytes_max = 4 * 4096;
    config.wal.buffer_bytes_max = 8 * 4096;
    config
}

/// Key `i` of the v2 fixture: every third value is large (in the value log).
fn v2_entry(i: u32) -> (Vec<u8>, Vec<u8>, u64) {
    let key = format!("v2/{i:03}").into_bytes();
    let len = if i.is_multiple_of(3) {
        1_500 + 97 * i as usize
    } else {
        10 + i as usize
    };
    let value = (0..len).map(|b| (b as u32 * 7 + i) as u8).collect();
    let expiry = if i.is_multiple_of(4) {
        T0 + 3_600_000 + u64::from(i)
    } else {
        0
    };
    (key, value, expiry)
}

const V2_KEYS: u32 = 40;

fn v2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2")
}

/// Builds the v2 fixture: the durable bytes of every file of the shard directory, by name.
fn build_v2() -> Vec<(String, Vec<u8>)> {
    let disk = SimDisk::new(2, FaultConfig::none());
    let clock = ManualClock::new(T0);
    let vfs = disk.root().subdir("shard").expect("subdir");
    let shared: Rc<dyn Clock> = Rc::new(clock.clone());
    let (mut shard, _) = Shard::open(vfs, v2_config(), shared).expect("create");
    for i in 0..V2_KEYS {
        let (key, value, expiry) = v2_entry(i);
        shard.put(&key, &value, expiry).expect("put");
        clock.advance_ns(1_000_000);
        shard.poll().expect("poll");
    }
    shard.checkpoint().expect("checkpoint");
    // An overwrite (large over large) and a delete of a large value after the first checkpoint.
    let (key, value, expiry) = v2_entry(3);
    shard.put(&key, &value[..1_200], expiry).expect("overwrite");
    shard.delete(&v2_entry(6).0).expect("delete");
    clock.advance_ns(5_000_000_000);
    shard.close().expect("close");
    let mut vfs = disk.root().subdir("shard").expect("subdir");
    vfs.list()
        .expect("list")
        .into_iter()
        .map(|name| {
            let image = disk.durable_image(&format!("shard/{name}")).expect("image");
            (name, image)
        })
        .collect()
}

#[test]
fn v2_fixture_opens_holds_its_data_and_is_reproduced() {
    let built = build_v2();
    assert!(built.iter().any(|(name, _)| name.starts_with("vlog-")));
    if std::env::var("JUBE_WRITE_FIXTURE").is_ok() {
        let _ = std::fs::remove_dir_all(v2_dir());
        std::fs::create_dir_all(v2_dir()).expect("fixture dir");
        for (name, bytes) in &built {
            std::fs::write(v2_dir().join(name), bytes).expect("write fixture");
        }
    }
    let mut golden: Vec<(String, Vec<u8>)> = std::fs::read_dir(v2_dir())
        .expect("fixtures/v2 is checked in")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .collect();
    golden.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in &golden {
        std::fs::write(dir.path().join(name), bytes).expect("copy fixture");
    }
    let vfs = FileVfs::open(dir.path(), false).expect("vfs");
    // A wall clock far behind the fixture's: the persisted calibration must hold time up.
    let clock = ManualClock::new(T0 - 86_400_000);
    let shared: Rc<dyn Clock> = Rc::new(clock);
    let (mut shard, report) = Shard::open(vfs, v2_config(), shared).expect("v2 fixture opens");
    assert_eq!(report.wal.records_replayed, 0, "closed cleanly");
    assert!(
        shard.now_ms() >= T0 + 5_000,
        "the calibration persisted at close is the floor: {}",
        shard.now_ms()
    );
    shard.check_integrity().expect("fixture integrity");
    for i in 0..V2_KEYS {
        let (key, value, expiry) = v2_entry(i);
        let got = shard.get(&key).expect("get");
        match i {
            6 => assert_eq!(got, None, "deleted"),
            3 => {
                let got = got.expect("present");
                assert_eq!(
                    (got.bytes, got.expiry_ms),
                    (value[..1_200].to_vec(), expiry)
                );
                assert_eq!(
                    got.version,
                    u64::from(V2_KEYS + 1),
                    "version of the overwrite"
                );
            }
            _ => {
                let got = got.expect("present");
                assert_eq!((got.bytes, got.expiry_ms), (value, expiry), "key {i}");
                assert_eq!(got.version, u64::from(i + 1), "version of key {i}");
            }
        }
    }
    let stats = shard.stats().vlog;
    assert!(stats.live_bytes > 0 && stats.dead_bytes > 0, "{stats:?}");
    assert!(
        built == golden,
        "format v2 encoding changed: the same operations now write other bytes"
    );
}

fn v2_txn_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-txn")
}

/// The v2-txn fixture's shard (id 1, so that it can be a participant of a txn coordinated by
/// shard 0).
fn v2_txn_config() -> ShardConfig {
    let mut config = v2_config();
    config.tree.shard_id = 1;
    config.wal.shard_id = 1;
    config
}

fn txn_puts(puts: &[(&str, Vec<u8>, u64)]) -> TxnPart {
    let ops = puts
        .iter()
        .enumerate()
        .map(|(index, (key, value, expiry_ms))| TxnOp {
            index: index as u32,
            key: key.as_bytes().to_vec(),
            kind: OpKind::Put {
                value: value.clone(),
                expiry_ms: *expiry_ms,
            },
        })
        .collect();
    TxnPart {
        assertions: Vec::new(),
        ops,
    }
}

/// Value `i` of the v2-txn fixture: inline sizes only (at most 300 bytes).
fn v2_txn_value(i: u32) -> Vec<u8> {
    (0..10 + 29 * i as usize)
        .map(|b| (b as u32 * 13 + i) as u8)
        .collect()
}

/// The in-doubt participant txn of the v2-txn fixture.
const V2_TXN_IN_DOUBT: TxnId = TxnId {
    coordinator: 0,
    number: 4_242,
};

fn settle_shard(shard: &mut Shard<jube_engine::storage::sim::SimVfs>, clock: &ManualClock) {
    while shard.acked_lsn() < shard.last_lsn() {
        clock.advance_ns(1_000_000);
        shard.poll().expect("poll");
    }
}

/// Builds the v2-txn fixture: the durable bytes of every file of the shard directory.
fn build_v2_txn() -> Vec<(String, Vec<u8>)> {
    let disk = SimDisk::new(3, FaultConfig::none());
    let clock = ManualClock::new(T0);
    let vfs = disk.root().subdir("shard").expect("subdir");
    let shared: Rc<dyn Clock> = Rc::new(clock.clone());
    let (mut shard, _) = Shard::open(vfs, v2_txn_config(), shared).expect("create");
    // A single-shard txn: ten puts, one with an expiry, and a counter.
    let mut puts: Vec<(String, Vec<u8>, u64)> = (0..10)
        .map(|i| (format!("t/{i}"), v2_txn_value(i), 0))
        .collect();
    puts[4].2 = T0 + 3_600_000;
    puts.push(("t/count".to_string(), b"5".to_vec(), 0));
    let borrowed: Vec<(&str, Vec<u8>, u64)> = puts
        .iter()
        .map(|(k, v, e)| (k.as_str(), v.clone(), *e))
        .collect();
    shard.apply_txn(&txn_puts(&borrowed)).expect("apply");
    settle_shard(&mut shard, &clock);
    // A participant's Prepare that stays in doubt, below the checkpoint.
    let request = PrepareRequest {
        id: Some(V2_TXN_IN_DOUBT),
        read_only: false,
        part: txn_puts(&[("p/0", v2_txn_value(3), 0), ("t/1", v2_txn_value(9), 0)]),
    };
    let reply = shard.prepare_txn(&request).expect("prepare");
    assert!(matches!(reply, PrepareReply::Prepared { .. }), "{reply:?}");
    settle_shard(&mut shard, &clock);
    shard.checkpoint().expect("checkpoint");
    // Above the checkpoint: a txn this shard coordinates, decided and not forgotten...
    let request = PrepareRequest {
        id: None,
        read_only: false,
        part: txn_puts(&[("c/0", v2_txn_value(5), 0)]),
    };
    let PrepareReply::Prepared { id, .. } = shard.prepare_txn(&request).expect("prepare") else {
        panic!("prepared")
    };
    settle_shard(&mut shard, &clock);
    shard.decide_txn(id, &[1, 2]).expect("decide");
    // ...and a TxnApply with an add, a delete and an overwrite.
    let part = TxnPart {
        assertions: Vec::new(),
        ops: vec![
            TxnOp {
                index: 0,
                key: b"t/count".to_vec(),
                kind: OpKind::Add { delta: 37 },
            },
            TxnOp {
                index: 1,
                key: b"t/2".to_vec(),
                kind: OpKind::Delete,
            },
            TxnOp {
                index: 2,
                key: b"t/3".to_vec(),
                kind: OpKind::Put {
                    value: b"overwritten".to_vec(),
                    expiry_ms: 0,
                },
            },
        ],
    };
    shard.apply_txn(&part).expect("apply");
    settle_shard(&mut shard, &clock);
    drop(shard);
    let mut vfs = disk.root().subdir("shard").expect("subdir");
    vfs.list()
        .expect("list")
        .into_iter()
        .map(|name| {
            let image = disk.durable_image(&format!("shard/{name}")).expect("image");
            (name, image)
        })
        .collect()
}

#[test]
fn v2_txn_fixture_opens_resolves_and_is_reproduced() {
    let built = build_v2_txn();
    if std::env::var("JUBE_WRITE_FIXTURE").is_ok() {
        let _ = std::fs::remove_dir_all(v2_txn_dir());
        std::fs::create_dir_all(v2_txn_dir()).expect("fixture dir");
        for (name, bytes) in &built {
            std::fs::write(v2_txn_dir().join(name), bytes).expect("write fixture");
        }
    }
    let mut golden: Vec<(String, Vec<u8>)> = std::fs::read_dir(v2_txn_dir())
        .expect("fixtures/v2-txn is checked in")
        .map(|entry| {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).expect("read"))
        })
        .collect();
    golden.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in &golden {
        std::fs::write(dir.path().join(name), bytes).expect("copy fixture");
    }
    let vfs = FileVfs::open(dir.path(), false).expect("vfs");
    let shared: Rc<dyn Clock> = Rc::new(ManualClock::new(T0));
    let (mut shard, report) =
        Shard::open(vfs, v2_txn_config(), shared).expect("v2-txn fixture opens");
    assert!(report.wal.records_replayed > 0, "{report:?}");
    assert_eq!(shard.in_doubt(), vec![V2_TXN_IN_DOUBT]);
    assert_eq!(shard.lock_holder(b"p/0"), Some(V2_TXN_IN_DOUBT));
    assert_eq!(shard.recovered_decisions().len(), 1);
    shard.check_integrity().expect("fixture integrity");
    let mut get = |key: &str| shard.get(key.as_bytes()).expect("get").map(|v| v.bytes);
    assert_eq!(get("t/0"), Some(v2_txn_value(0)));
    assert_eq!(get("t/2"), None, "deleted above the checkpoint");
    assert_eq!(get("t/3"), Some(b"overwritten".to_vec()));
    assert_eq!(get("t/9"), Some(v2_txn_value(9)));
    assert_eq!(get("t/count"), Some(b"42".to_vec()));
    assert_eq!(get("c/0"), Some(v2_txn_value(5)), "the Decision applied");
    let expiry = shard.get(b"t/4").expect("get").expect("present").expiry_ms;
    assert_eq!(expiry, T0 + 3_600_000);
    // The in-doubt part resolves to commit and applies its (retained) writes.
    shard.finish_txn(V2_TXN_IN_DOUBT, true).expect("commit");
    assert_eq!(shard.lock_holder(b"p/0"), None);
    assert_eq!(
        shard.get(b"t/1").expect("get").map(|v| v.bytes),
        Some(v2_txn_value(9))
    );
    assert_eq!(
        shard.get(b"p/0").expect("get").map(|v| v.bytes),
        Some(v2_txn_value(3))
    );
    shard.check_integrity().expect("integrity after resolution");
    assert!(
        built == golden,
        "transaction record encoding changed: the same operations now write other bytes"
    );
}
