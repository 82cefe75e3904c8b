//! Checks of the simulated disk's own model: what survives a crash, what a sync covers, how the
//! namespace behaves, and that every run is a pure function of its seed.

use super::*;

fn block(byte: u8) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(super::super::IO_ALIGN);
    buf.fill(byte);
    buf
}

fn only(fate: &str) -> FaultConfig {
    let mut faults = FaultConfig::none();
    faults.crash_keep_weight = u32::from(fate == "keep");
    faults.crash_drop_weight = u32::from(fate == "drop");
    faults.crash_torn_weight = u32::from(fate == "torn");
    faults.crash_garble_weight = u32::from(fate == "garble");
    faults
}

fn create(disk: &SimDisk, name: &str) -> SimStorage {
    let mut root = disk.root();
    let file = root.open(name, OpenMode::CreateNew).expect("create");
    root.sync_dir().expect("sync dir");
    file
}

fn read_block(disk: &SimDisk, name: &str, offset: u64) -> Vec<u8> {
    let mut file = disk.root().open(name, OpenMode::Existing).expect("open");
    let (buf, _) = file
        .read_at(offset, AlignedBuf::zeroed(super::super::IO_ALIGN))
        .expect("read");
    buf.to_vec()
}

#[test]
fn synced_writes_survive_and_unsynced_are_dropped() {
    let disk = SimDisk::new(1, only("drop"));
    let mut file = create(&disk, "f");
    file.write_at(0, block(1)).expect("write");
    file.sync_data().expect("sync");
    file.write_at(4096, block(2)).expect("write");
    disk.crash();
    assert_eq!(read_block(&disk, "f", 0), vec![1; 4096]);
    assert_eq!(
        read_block(&disk, "f", 4096),
        vec![0; 4096],
        "the unsynced block was dropped"
    );
    assert_eq!(
        disk.root()
            .open("f", OpenMode::Existing)
            .expect("open")
            .size(),
        4096
    );
}

#[test]
fn a_sync_covers_only_writes_completed_before_it_was_submitted() {
    let disk = SimDisk::new(2, only("drop"));
    let mut file = create(&disk, "f");
    file.submit(
        1,
        Op::Write {
            offset: 0,
            buf: block(7),
        },
    )
    .expect("submit write");
    file.submit(2, Op::SyncData).expect("submit sync");
    assert!(file.wait(2).result.is_ok());
    assert_eq!(file.wait(1).result, Ok(4096));
    disk.crash();
    assert_eq!(
        read_block(&disk, "f", 0),
        vec![0; 4096],
        "the sync did not cover the write"
    );
}

#[test]
fn dsync_writes_are_durable_on_completion() {
    let disk = SimDisk::new(3, only("drop"));
    let mut file = create(&disk, "f");
    file.submit(
        1,
        Op::Write {
            offset: 0,
            buf: block(1),
        },
    )
    .expect("submit");
    file.wait(1).result.expect("write");
    file.submit(
        2,
        Op::WriteDsync {
            offset: 0,
            buf: block(9),
        },
    )
    .expect("submit");
    file.wait(2).result.expect("dsync write");
    disk.crash();
    assert_eq!(
        read_block(&disk, "f", 0),
        vec![9; 4096],
        "the older unsynced write must not win"
    );
    assert_eq!(disk.stats().dsync_writes, 1);
}

#[test]
fn stale_handles_fail_after_a_crash() {
    let disk = SimDisk::new(4, FaultConfig::none());
    let mut file = create(&disk, "f");
    disk.crash();
    let err = file.submit(1, Op::SyncData).expect_err("stale");
    assert_eq!(err.kind, IoErrorKind::Stale);
}

#[test]
fn unsynced_directory_changes_may_be_lost_but_synced_ones_stay() {
    let mut lost = 0;
    for seed in 0..64 {
        let disk = SimDisk::new(seed, FaultConfig::none());
        let mut root = disk.root();
        root.open("synced", OpenMode::CreateNew).expect("create");
        root.sync_dir().expect("sync");
        root.open("unsynced", OpenMode::CreateNew).expect("create");
        disk.crash();
        let mut root = disk.root();
        assert!(root.exists("synced"));
        lost += usize::from(!root.exists("unsynced"));
    }
    assert!(
        lost > 0 && lost < 64,
        "a random prefix of unsynced changes survives ({lost}/64 lost)"
    );
}

#[test]
fn rename_replaces_the_target_and_is_durable_after_sync_dir() {
    let disk = SimDisk::new(5, FaultConfig::none());
    let mut root = disk.root();
    let mut tmp = root
        .open("MANIFEST.tmp", OpenMode::CreateNew)
        .expect("create");
    tmp.write_at(0, block(3)).expect("write");
    tmp.sync_data().expect("sync");
    root.rename("MANIFEST.tmp", "MANIFEST").expect("rename");
    root.sync_dir().expect("sync dir");
    disk.crash();
    assert_eq!(
        disk.root().list().expect("list"),
        vec!["MANIFEST".to_string()]
    );
    assert_eq!(read_block(&disk, "MANIFEST", 0), vec![3; 4096]);
}

#[test]
fn torn_writes_keep_a_sector_prefix() {
    let mut saw_partial = false;
    for seed in 0..32 {
        let disk = SimDisk::new(seed, only("torn"));
        let mut file = create(&disk, "f");
        file.write_at(0, block(5)).expect("write");
        disk.crash();
        let data = read_block(&disk, "f", 0);
        let kept = data.iter().take_while(|&&b| b == 5).count();
        assert_eq!(kept % SECTOR_SIZE, 0, "tears fall on sector boundaries");
        assert!(data[kept..].iter().all(|&b| b == 0));
        saw_partial |= kept > 0;
    }
    assert!(saw_partial);
}

#[test]
fn garbled_writes_differ_in_one_sector() {
    let disk = SimDisk::new(6, only("garble"));
    let mut file = create(&disk, "f");
    file.write_at(0, block(5)).expect("write");
    disk.crash();
    let data = read_block(&disk, "f", 0);
    let bad: Vec<usize> = (0..4096 / SECTOR_SIZE)
        .filter(|s| {
            data[s * SECTOR_SIZE..(s + 1) * SECTOR_SIZE]
                .iter()
                .any(|&b| b != 5)
        })
        .collect();
    assert_eq!(bad.len(), 1, "exactly one sector is garbled");
}

#[test]
fn no_space_rejects_writes_and_changes_nothing() {
    let mut faults = FaultConfig::none();
    faults.capacity_bytes = 8192;
    let disk = SimDisk::new(7, faults);
    let mut file = create(&disk, "f");
    file.write_at(0, block(1)).expect("fits");
    file.write_at(4096, block(2)).expect("fits");
    let err = file.write_at(8192, block(3)).expect_err("disk full");
    assert_eq!(err.kind, IoErrorKind::NoSpace);
    assert_eq!(file.size(), 8192);
    assert_eq!(
        file.set_size(1 << 20).expect_err("full").kind,
        IoErrorKind::NoSpace
    );
    file.write_at(0, block(4))
        .expect("overwriting needs no space");
}

#[test]
fn injected_errors_are_reported() {
    let mut faults = FaultConfig::none();
    faults.write_eio_ppm = 1_000_000;
    faults.sync_eio_ppm = 1_000_000;
    faults.read_corrupt_ppm = 1_000_000;
    let disk = SimDisk::new(8, FaultConfig::none());
    let mut file = create(&disk, "f");
    file.write_at(0, block(1)).expect("write before faults");
    disk.set_faults(faults);
    assert_eq!(
        file.write_at(0, block(2)).expect_err("eio").kind,
        IoErrorKind::Io
    );
    assert_eq!(file.sync_data().expect_err("eio").kind, IoErrorKind::Io);
    let (buf, _) = file.read_at(0, AlignedBuf::zeroed(4096)).expect("read");
    let stats = disk.stats();
    assert_eq!(stats.injected_read_corruptions, 1);
    assert!(
        buf.iter().any(|&b| b != 1 && b != 2),
        "one byte of the read was flipped"
    );
}

#[test]
fn misaligned_io_is_rejected() {
    let disk = SimDisk::new(9, FaultConfig::none());
    let mut file = create(&disk, "f");
    let err = file
        .submit(
            1,
            Op::Write {
                offset: 100,
                buf: block(1),
            },
        )
        .expect_err("misaligned");
    assert_eq!(err.kind, IoErrorKind::InvalidInput);
}

#[test]
fn poll_completes_everything_eventually_in_a_seeded_order() {
    let run = |seed| {
        let disk = SimDisk::new(seed, FaultConfig::crashes());
        let mut file = create(&disk, "f");
        for i in 0..16u64 {
            file.submit(
                i,
                Op::Write {
                    offset: i * 4096,
                    buf: block(i as u8),
                },
            )
            .expect("submit");
        }
        let mut order = Vec::new();
        let mut out = Vec::new();
        while file.in_flight() > 0 {
            file.poll(&mut out);
            order.extend(out.drain(..).map(|c| c.user_data));
        }
        order
    };
    assert_eq!(run(10), run(10), "same seed, same order");
    let mut sorted = run(10);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..16).collect::<Vec<_>>());
}

#[test]
fn flip_byte_corrupts_both_images() {
    let disk = SimDisk::new(11, FaultConfig::none());
    let mut file = create(&disk, "f");
    file.write_at(0, block(1)).expect("write");
    file.sync_data().expect("sync");
    assert!(disk.flip_byte("f", 10));
    assert_eq!(read_block(&disk, "f", 0)[10], !1u8);
    assert_eq!(disk.durable_image("f").expect("exists")[10], !1u8);
}

#[test]
fn subdirectories_are_separate_namespaces() {
    let disk = SimDisk::new(12, FaultConfig::none());
    let mut shard = disk.root().subdir("shard-0").expect("subdir");
    shard.open("pages", OpenMode::CreateNew).expect("create");
    shard.sync_dir().expect("sync");
    assert!(!disk.root().exists("pages"));
    disk.crash();
    let mut shard = disk.root().subdir("shard-0").expect("subdir");
    assert!(shard.exists("pages"));
    assert_eq!(shard.path_of("pages"), "shard-0/pages");
}

#[test]
fn a_power_cut_fails_everything_until_the_crash() {
    let disk = SimDisk::new(13, only("keep"));
    let mut file = create(&disk, "f");
    disk.cut_power_after(1);
    file.write_at(0, block(1))
        .expect("the last operation before the cut");
    assert!(disk.power_is_out());
    assert_eq!(
        file.sync_data().expect_err("power out").kind,
        IoErrorKind::Stale
    );
    assert_eq!(
        disk.root().sync_dir().expect_err("power out").kind,
        IoErrorKind::Stale
    );
    disk.crash();
    assert!(!disk.power_is_out());
    assert_eq!(
        read_block(&disk, "f", 0),
        vec![1; 4096],
        "unsynced, but kept by this fate"
    );
}

/// Regression: a failed write that landed no sector at all, then torn or garbled at the crash,
/// used to panic sampling an empty range of sectors.
#[test]
fn a_crash_after_a_failed_empty_write_does_not_panic() {
    for seed in 0..64 {
        let mut faults = only("torn");
        faults.crash_garble_weight = 1;
        let disk = SimDisk::new(seed, faults.clone());
        let mut file = create(&disk, "f");
        faults.write_eio_ppm = 1_000_000;
        disk.set_faults(faults);
        let _ = file.write_at(0, block(1));
        disk.crash();
    }
}
