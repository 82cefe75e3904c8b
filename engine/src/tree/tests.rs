//! Unit tests of the tree on a fault-free simulated disk: operations, superblock choice, errors.

use super::*;
use crate::constants::SUPERBLOCK_SIZE;
use crate::storage::sim::{FaultConfig, SimDisk, SimStorage, SimVfs};
use std::ops::Bound;

fn small_config() -> TreeConfig {
    TreeConfig {
        page_size: 4096,
        cache_bytes: 8 * 4096,
        value_inline_max: None,
        shard_id: 3,
    }
}

fn new_tree(seed: u64) -> (SimDisk, SimVfs, Tree<SimStorage>) {
    let disk = SimDisk::new(seed, FaultConfig::none());
    let mut vfs = disk.root();
    let tree = Tree::create(&mut vfs, small_config()).expect("create");
    (disk, vfs, tree)
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:08}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 20 + (i as usize * 7) % 200]
}

/// Long keys make branches hold few separators, so a few thousand keys give a 3-level tree.
fn long_key(i: u32) -> Vec<u8> {
    let mut k = key(i);
    k.resize(200, b'.');
    k
}

#[test]
fn put_get_delete_through_splits_and_merges() {
    let (_disk, _vfs, mut tree) = new_tree(1);
    let n = 3000;
    for i in 0..n {
        let outcome = tree
            .put(&long_key(i * 7919 % n), &value(i), 0)
            .expect("put");
        assert!(outcome.inserted);
    }
    assert!(
        tree.stats().tree_height >= 3,
        "3000 keys need a 3-level tree"
    );
    assert!(tree.stats().cache_spills > 0, "an 8-page cache must spill");
    tree.check_integrity().expect("integrity after inserts");
    for i in 0..n {
        assert_eq!(
            tree.get(&long_key(i)).expect("get").map(|v| v.bytes),
            Some(value(
                (0..n).find(|j| j * 7919 % n == i).expect("permutation")
            ))
        );
    }
    for i in (0..n).filter(|i| i % 3 != 0) {
        assert!(tree.delete(&long_key(i)).expect("delete"));
    }
    assert!(!tree.delete(&long_key(1)).expect("delete again"));
    tree.check_integrity().expect("integrity after deletes");
    assert_eq!(tree.key_count(), u64::from(n.div_ceil(3)));
    for i in (0..n).filter(|i| i % 3 == 0) {
        assert!(tree.delete(&long_key(i)).expect("delete rest"));
    }
    assert_eq!(
        tree.stats().tree_height,
        1,
        "an empty tree is a single leaf"
    );
    tree.check_integrity().expect("integrity when empty");
}

#[test]
fn versions_increase_and_survive_reopen() {
    let (disk, mut vfs, mut tree) = new_tree(2);
    let first = tree.put(b"k", b"v1", 0).expect("put");
    let second = tree.put(b"k", b"v2", 77).expect("put");
    assert!(first.inserted && !second.inserted && second.version > first.version);
    tree.commit(42).expect("commit");
    drop(tree);
    disk.crash();
    let (mut tree, info) = Tree::open(&mut vfs, small_config()).expect("open");
    assert_eq!(info.checkpoint_lsn, 42);
    let got = tree.get(b"k").expect("get").expect("present");
    assert_eq!(
        (got.bytes.as_slice(), got.expiry_ms, got.version),
        (&b"v2"[..], 77, second.version)
    );
    assert!(tree.put(b"k", b"v3", 0).expect("put").version > second.version);
}

#[test]
fn uncommitted_changes_vanish_at_a_crash() {
    let (disk, mut vfs, mut tree) = new_tree(3);
    tree.put(b"kept", b"1", 0).expect("put");
    tree.commit(1).expect("commit");
    for i in 0..500 {
        tree.put(&key(i), &value(i), 0).expect("put");
    }
    tree.begin_commit(2).expect("begin");
    assert!(
        !tree.commit_step(4096).expect("one page"),
        "500 keys are more than one page"
    );
    drop(tree);
    disk.crash();
    let (mut tree, info) = Tree::open(&mut vfs, small_config()).expect("open");
    assert_eq!((info.checkpoint_lsn, info.key_count), (1, 1));
    tree.check_integrity().expect("integrity");
    assert!(tree.get(&key(3)).expect("get").is_none());
}

#[test]
fn sliced_commit_allows_writes_between_steps() {
    let (disk, mut vfs, mut tree) = new_tree(4);
    for i in 0..800 {
        tree.put(&key(i), &value(i), 0).expect("put");
    }
    tree.begin_commit(10).expect("begin");
    let mut steps = 0;
    let mut i = 800;
    while !tree.commit_step(2 * 4096).expect("step") {
        steps += 1;
        tree.put(&key(i), &value(i), 0).expect("put between steps");
        tree.delete(&key(i - 700)).expect("delete between steps");
        i += 1;
        tree.check_integrity().expect("integrity mid-commit");
    }
    assert!(steps > 2, "the commit took several slices");
    assert!(matches!(
        tree.commit_step(1),
        Err(TreeError::CommitState { .. })
    ));
    drop(tree);
    disk.crash();
    let (mut tree, info) = Tree::open(&mut vfs, small_config()).expect("open");
    assert_eq!(
        info.key_count, 800,
        "the commit holds the state at begin_commit"
    );
    for j in 0..800 {
        assert_eq!(
            tree.get(&key(j)).expect("get").map(|v| v.bytes),
            Some(value(j))
        );
    }
    tree.check_integrity().expect("integrity");
}

#[test]
fn scans_forward_reverse_bounded_and_resumed() {
    let (_disk, _vfs, mut tree) = new_tree(5);
    for i in 0..1000 {
        tree.put(&key(i), &value(i), 0).expect("put");
    }
    let (lo, hi) = (key(100), key(200));
    let page = tree
        .scan(
            Bound::Included(&lo),
            Bound::Excluded(&hi),
            1000,
            false,
            None,
        )
        .expect("scan");
    let keys: Vec<Vec<u8>> = page.entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, (100..200).map(key).collect::<Vec<_>>());
    assert_eq!(page.continuation, None);
    let page = tree
        .scan(Bound::Excluded(&lo), Bound::Included(&hi), 1000, true, None)
        .expect("scan");
    let keys: Vec<Vec<u8>> = page.entries.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys, (101..=200).rev().map(key).collect::<Vec<_>>());
    // Resume in pages of 7, in both directions, over everything.
    for reverse in [false, true] {
        let mut all = Vec::new();
        let mut cont: Option<Vec<u8>> = None;
        loop {
            let page = tree
                .scan(
                    Bound::Unbounded,
                    Bound::Unbounded,
                    7,
                    reverse,
                    cont.as_deref(),
                )
                .expect("scan");
            all.extend(page.entries.into_iter().map(|e| e.key));
            match page.continuation {
                Some(c) => cont = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<Vec<u8>> = (0..1000).map(key).collect();
        if reverse {
            expected.reverse();
        }
        assert_eq!(all, expected);
    }
}

#[test]
fn limits_are_named_errors() {
    let (_disk, _vfs, mut tree) = new_tree(6);
    let long_key = vec![b'k'; crate::constants::KEY_SIZE_MAX + 1];
    let err = tree.put(&long_key, b"v", 0).expect_err("key too large");
    assert!(err.to_string().contains("KEY_SIZE_MAX"), "{err}");
    let big = vec![0u8; 1025];
    let err = tree.put(b"k", &big, 0).expect_err("value too large");
    assert!(
        matches!(
            err,
            TreeError::ValueTooLarge {
                size: 1025,
                max: 1024
            }
        ),
        "{err}"
    );
    tree.put(b"k", &big[..1024], 0)
        .expect("a quarter page fits");
    let max_key = vec![b'z'; crate::constants::KEY_SIZE_MAX];
    for i in 0..50u8 {
        let mut k = max_key.clone();
        k[0] = i;
        tree.put(&k, &big[..1024], 0)
            .expect("maximum records split fine");
    }
    tree.check_integrity()
        .expect("integrity with maximum records");
}

fn committed_disk() -> (SimDisk, SimVfs) {
    let (disk, vfs, mut tree) = new_tree(7);
    tree.put(b"a", b"1", 0).expect("put");
    tree.commit(5).expect("commit gen 2");
    tree.put(b"b", b"2", 0).expect("put");
    tree.commit(6).expect("commit gen 3");
    (disk, vfs)
}

#[test]
fn superblock_choice_falls_back_when_the_newest_slot_is_torn() {
    // Generation 3 is in slot B (offset 4096), generation 2 in slot A.
    for (slot_offset, expected_lsn) in [(SUPERBLOCK_SIZE as u64, 5), (0, 6)] {
        let (disk, mut vfs) = committed_disk();
        assert!(disk.flip_byte(&vfs.path_of("pages"), slot_offset + 100));
        let (mut tree, info) = Tree::open(&mut vfs, small_config()).expect("one slot is intact");
        assert_eq!(info.checkpoint_lsn, expected_lsn);
        tree.check_integrity().expect("integrity");
    }
}

#[test]
fn both_superblocks_bad_names_file_and_offsets() {
    let (disk, mut vfs) = committed_disk();
    assert!(disk.flip_byte(&vfs.path_of("pages"), 10));
    assert!(disk.flip_byte(&vfs.path_of("pages"), SUPERBLOCK_SIZE as u64 + 10));
    let err = Tree::open(&mut vfs, small_config()).expect_err("no valid superblock");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            TreeError::NoValidSuperblock {
                offset_a: 0,
                offset_b: 4096,
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("pages") && text.contains("offset 0") && text.contains("offset 4096"),
        "{text}"
    );
}

#[test]
fn corrupt_page_is_reported_with_its_location() {
    let (disk, mut vfs) = committed_disk();
    let (mut tree, _) = Tree::open(&mut vfs, small_config()).expect("open");
    tree.check_integrity().expect("integrity");
    drop(tree);
    // Corrupt every data page: whichever the root is, reading it fails with a located error.
    for id in 0..8u64 {
        disk.flip_byte(
            &vfs.path_of("pages"),
            crate::constants::PAGES_OFFSET + id * 4096 + 50,
        );
    }
    let err = match Tree::open(&mut vfs, small_config()) {
        Ok((mut tree, _)) => tree.get(b"a").expect_err("corrupt root"),
        Err(err) => err,
    };
    assert!(matches!(err, TreeError::CorruptPage { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn open_refuses_a_different_page_size_or_shard() {
    let (_disk, mut vfs) = committed_disk();
    let err = Tree::open(
        &mut vfs,
        TreeConfig {
            page_size: 8192,
            ..small_config()
        },
    )
    .expect_err("page size");
    assert!(err.to_string().contains("page size 4096 on disk"), "{err}");
    let err = Tree::open(
        &mut vfs,
        TreeConfig {
            shard_id: 9,
            ..small_config()
        },
    )
    .expect_err("shard");
    assert!(err.to_string().contains("shard id 3 on disk"), "{err}");
}

#[test]
fn a_failed_write_poisons_the_tree() {
    let (disk, mut vfs, mut tree) = new_tree(8);
    for i in 0..300 {
        tree.put(&key(i), &value(i), 0).expect("put");
    }
    disk.set_faults(FaultConfig {
        write_eio_ppm: 1_000_000,
        ..FaultConfig::none()
    });
    let err = tree.commit(1).expect_err("every write fails");
    assert!(matches!(err, TreeError::Io { .. }), "{err}");
    assert!(matches!(tree.get(&key(1)), Err(TreeError::Poisoned { .. })));
    assert!(matches!(
        tree.put(b"x", b"y", 0),
        Err(TreeError::Poisoned { .. })
    ));
    disk.set_faults(FaultConfig::none());
    drop(tree);
    let (mut tree, info) = Tree::open(&mut vfs, small_config()).expect("reopen");
    assert_eq!(info.key_count, 0);
    tree.check_integrity().expect("integrity");
}

#[test]
fn larger_page_sizes_work() {
    for page_size in [8192, 65536] {
        let disk = SimDisk::new(9, FaultConfig::none());
        let mut vfs = disk.root();
        let config = TreeConfig {
            page_size,
            cache_bytes: 8 * page_size,
            ..small_config()
        };
        let mut tree = Tree::create(&mut vfs, config.clone()).expect("create");
        for i in 0..2000 {
            tree.put(&key(i), &value(i), 0).expect("put");
        }
        tree.commit(1).expect("commit");
        drop(tree);
        let (mut tree, _) = Tree::open(&mut vfs, config).expect("open");
        tree.check_integrity().expect("integrity");
        assert_eq!(
            tree.get(&key(1999)).expect("get").map(|v| v.bytes),
            Some(value(1999))
        );
    }
}
