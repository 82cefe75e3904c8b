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
//! After a deliberate format change: bump `FORMAT_VERSION`, keep the old fixtures (and say in
//! docs/format.md whether they still open or are refused), and add the new one by running
//! `JUBE_WRITE_FIXTURE=1 cargo test -p jube-engine --test golden`.

use jube_engine::clock::{Clock, ManualClock};
use jube_engine::shard::{Shard, ShardConfig};
use jube_engine::storage::file::FileVfs;
use jube_engine::storage::sim::{FaultConfig, SimDisk};
use jube_engine::storage::Vfs;
use jube_engine::tree::{Tree, TreeConfig};
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
