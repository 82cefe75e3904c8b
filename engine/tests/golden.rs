//! Golden file of page-file format version 1, so format changes are deliberate.
//!
//! `fixtures/v1/pages` is a small database (a two-level tree: a branch root over leaves) built by
//! [`build_v1`] on a fault-free simulated disk. Two checks:
//! - the checked-in file opens with today's code, passes `check_integrity`, and holds exactly the
//!   keys, values, expiries and versions `build_v1` put there;
//! - building it again today gives the same bytes, so any change to the encoding shows up here
//!   even when the reader would still accept the old file.
//!
//! After a deliberate format change: bump `FORMAT_VERSION`, keep `fixtures/v1` (and say in
//! docs/format.md whether v1 still opens or is refused), and add `fixtures/v2` by running
//! `JUBE_WRITE_FIXTURE=1 cargo test -p jube-engine --test golden`.

use jube_engine::storage::file::FileVfs;
use jube_engine::storage::sim::{FaultConfig, SimDisk};
use jube_engine::tree::{Tree, TreeConfig};
use std::path::PathBuf;

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
    let built = build_v1();
    if std::env::var("JUBE_WRITE_FIXTURE").is_ok() {
        std::fs::write(fixture_path(), &built).expect("write fixture");
    }
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
    assert!(
        built == golden,
        "format v1 encoding changed: the same operations now write other bytes"
    );
}
