//! Conformance of the io_uring `Storage`/`Vfs` to the engine's trait semantics, on a real ext4
//! directory under /tmp, both off the runtime (private ring) and on a core; plus the buffered
//! fallback on /dev/shm. Each check states the trait rule it exercises.

use jube_engine::storage::{AlignedBuf, IoErrorKind, Op, OpenMode, Storage, Vfs, IO_ALIGN};
use jube_runtime::{DirectIo, Runtime, UringFile, UringVfs};
use std::collections::HashSet;

fn pattern(seed: u8, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = seed.wrapping_add((i % 251) as u8);
    }
    buf
}

/// The whole conformance suite, run against one open Vfs.
fn conformance(vfs: &mut UringVfs) {
    let mut file = vfs.open("data", OpenMode::CreateNew).unwrap();
    assert_eq!(
        vfs.open("data", OpenMode::CreateNew).err().map(|e| e.kind),
        Some(IoErrorKind::AlreadyExists)
    );
    assert_eq!(
        vfs.open("missing", OpenMode::Existing)
            .err()
            .map(|e| e.kind),
        Some(IoErrorKind::NotFound)
    );
    assert_eq!(file.size(), 0);

    // Blocking helpers: write, read back, sync.
    file.write_at(0, pattern(1, 2 * IO_ALIGN)).unwrap();
    assert_eq!(file.size(), 2 * IO_ALIGN as u64);
    let (back, n) = file.read_at(0, AlignedBuf::zeroed(2 * IO_ALIGN)).unwrap();
    assert_eq!(n, 2 * IO_ALIGN);
    assert_eq!(&back[..], &pattern(1, 2 * IO_ALIGN)[..]);
    file.sync_data().unwrap();

    // Reads past the end: the result counts the bytes inside the file, the rest reads as zero
    // even if the buffer held data before.
    let (tail, n) = file
        .read_at(IO_ALIGN as u64, pattern(9, 3 * IO_ALIGN))
        .unwrap();
    assert_eq!(n, IO_ALIGN);
    assert_eq!(&tail[..IO_ALIGN], &pattern(1, 2 * IO_ALIGN)[IO_ALIGN..]);
    assert!(
        tail[IO_ALIGN..].iter().all(|&b| b == 0),
        "bytes past EOF must read as zero"
    );

    // Misaligned offsets and lengths are rejected at submit, and nothing is left in flight.
    let err = file
        .submit(
            1,
            Op::Write {
                offset: 100,
                buf: AlignedBuf::zeroed(IO_ALIGN),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind, IoErrorKind::InvalidInput);
    let err = file
        .submit(
            1,
            Op::Read {
                offset: 512,
                buf: AlignedBuf::zeroed(IO_ALIGN),
            },
        )
        .unwrap_err();
    assert_eq!(err.kind, IoErrorKind::InvalidInput);
    assert_eq!(file.in_flight(), 0);

    // Many operations in flight: wait() for one leaves the others for poll(), each completion is
    // delivered exactly once and carries its buffer back.
    for tag in 0..16u64 {
        let op = Op::Write {
            offset: (tag + 4) * IO_ALIGN as u64,
            buf: pattern(tag as u8, IO_ALIGN),
        };
        file.submit(tag, op).unwrap();
    }
    file.submit(
        100,
        Op::WriteDsync {
            offset: 30 * IO_ALIGN as u64,
            buf: pattern(100, IO_ALIGN),
        },
    )
    .unwrap();
    assert_eq!(file.in_flight(), 17);
    let waited = file.wait(7);
    assert_eq!(waited.user_data, 7);
    assert_eq!(waited.result.as_ref().copied().unwrap(), IO_ALIGN);
    assert_eq!(waited.buf.as_ref().map(|b| b.len()), Some(IO_ALIGN));
    let mut seen = HashSet::from([7u64]);
    let mut out = Vec::new();
    while file.in_flight() > 0 {
        file.poll(&mut out);
        for completion in out.drain(..) {
            assert!(completion.result.is_ok(), "{:?}", completion.result);
            assert!(completion.buf.is_some());
            assert!(
                seen.insert(completion.user_data),
                "completion {} delivered twice",
                completion.user_data
            );
        }
    }
    assert_eq!(seen.len(), 17);
    file.poll(&mut out);
    assert!(
        out.is_empty(),
        "poll after everything was reaped returned {} completions",
        out.len()
    );
    assert_eq!(file.size(), 31 * IO_ALIGN as u64);

    // A sync submitted after the writes completed; then everything reads back.
    file.submit(200, Op::SyncData).unwrap();
    let sync = file.wait(200);
    assert!(sync.result.is_ok() && sync.buf.is_none());
    for tag in 0..16u64 {
        let (block, _) = file
            .read_at((tag + 4) * IO_ALIGN as u64, AlignedBuf::zeroed(IO_ALIGN))
            .unwrap();
        assert_eq!(&block[..], &pattern(tag as u8, IO_ALIGN)[..], "block {tag}");
    }

    // The linked write -> fdatasync pair: two completions, the sync's after the write's.
    file.submit_write_then_sync(300, 301, 40 * IO_ALIGN as u64, pattern(3, 4 * IO_ALIGN))
        .unwrap();
    let sync = file.wait(301);
    assert!(sync.result.is_ok(), "{:?}", sync.result);
    let write = file.wait(300);
    assert_eq!(write.result.unwrap(), 4 * IO_ALIGN);
    let (block, _) = file
        .read_at(40 * IO_ALIGN as u64, AlignedBuf::zeroed(4 * IO_ALIGN))
        .unwrap();
    assert_eq!(&block[..], &pattern(3, 4 * IO_ALIGN)[..]);

    // set_size shrinks and grows (zero-filled).
    file.set_size(IO_ALIGN as u64).unwrap();
    assert_eq!(file.size(), IO_ALIGN as u64);
    file.set_size(3 * IO_ALIGN as u64).unwrap();
    let (grown, n) = file.read_at(IO_ALIGN as u64, pattern(5, IO_ALIGN)).unwrap();
    assert_eq!(n, IO_ALIGN);
    assert!(grown.iter().all(|&b| b == 0));
    drop(file);

    // Directory operations.
    let reopened: UringFile = vfs.open("data", OpenMode::Existing).unwrap();
    assert_eq!(reopened.size(), 3 * IO_ALIGN as u64);
    drop(reopened);
    vfs.rename("data", "renamed").unwrap();
    assert!(!vfs.exists("data") && vfs.exists("renamed"));
    vfs.open("another", OpenMode::CreateNew).unwrap();
    vfs.sync_dir().unwrap();
    assert_eq!(
        vfs.list().unwrap(),
        vec!["another".to_string(), "renamed".to_string()]
    );
    vfs.remove("another").unwrap();
    assert_eq!(vfs.list().unwrap(), vec!["renamed".to_string()]);
    assert_eq!(
        vfs.open("../escape", OpenMode::CreateNew)
            .err()
            .map(|e| e.kind),
        Some(IoErrorKind::InvalidInput)
    );
    let mut sub = vfs.subdir("shard-0").unwrap();
    sub.open("wal", OpenMode::CreateNew).unwrap();
    assert_eq!(sub.list().unwrap(), vec!["wal".to_string()]);
    assert_eq!(
        vfs.list().unwrap(),
        vec!["renamed".to_string()],
        "list shows files, not directories"
    );
}

#[test]
fn storage_conforms_off_the_runtime_on_a_real_directory() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let mut vfs = UringVfs::open(dir.path()).unwrap();
    let probe = vfs.open("probe", OpenMode::CreateNew).unwrap();
    assert!(
        probe.is_direct(),
        "/tmp is ext4 here and must take O_DIRECT"
    );
    drop(probe);
    vfs.remove("probe").unwrap();
    conformance(&mut vfs);
}

/// On a core, with files in the ring's fixed-file table (the default) and with plain
/// descriptors (the table turned off, as on a kernel that refuses it).
#[test]
fn storage_conforms_on_a_core() {
    for fixed_files in [true, false] {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let path = dir.path().to_path_buf();
        let rt = Runtime::builder()
            .cores(1)
            .pin(false)
            .fixed_files(fixed_files)
            .build()
            .unwrap();
        assert_eq!(rt.features().fixed_files, fixed_files);
        rt.block_on(0, move || async move {
            let mut vfs = UringVfs::open(&path).unwrap();
            let probe = vfs.open("probe", OpenMode::CreateNew).unwrap();
            assert_eq!(probe.is_fixed(), fixed_files);
            drop(probe);
            vfs.remove("probe").unwrap();
            conformance(&mut vfs);
        })
        .unwrap();
    }
}

/// Registered buffers, and the fallback when registration is refused. The first registration on
/// a core succeeds; a second one is refused by the kernel (EBUSY: a ring has one buffer table),
/// and a request past REGISTERED_BUFFER_BYTES_MAX is refused before asking the kernel. (ENOMEM
/// past RLIMIT_MEMLOCK cannot be provoked portably: a process with CAP_IPC_LOCK is not charged.)
/// Every kind of buffer must write the same bytes.
#[test]
fn registered_buffers_write_and_refused_registration_falls_back() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().to_path_buf();
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    rt.block_on(0, move || async move {
        let mut vfs = UringVfs::open(&path).unwrap();
        let mut file = vfs.open("log", OpenMode::CreateNew).unwrap();
        let registered = vfs.io_buffers(4, 8192);
        assert!(registered.iter().all(|b| b.is_registered()));
        let refused = vfs.io_buffers(4, 8192);
        assert!(refused.iter().all(|b| !b.is_registered()));
        let over_budget = vfs.io_buffers(2, 3 * 1024 * 1024);
        assert!(over_budget.iter().all(|b| !b.is_registered()));
        let mut writes = Vec::new();
        for (index, mut buf) in registered.into_iter().chain(refused).enumerate() {
            buf.fill(index as u8 + 1);
            writes.push((index as u64 * 8192, buf));
        }
        let back = file.write_batch(writes).unwrap();
        assert_eq!(back.len(), 8);
        assert_eq!(back.iter().filter(|b| b.is_registered()).count(), 4);
        // Reuse the registered buffers for a second batch (how a WAL would cycle them).
        let again: Vec<_> = back
            .into_iter()
            .filter(|b| b.is_registered())
            .enumerate()
            .map(|(index, mut buf)| {
                buf.fill(0xa0 + index as u8);
                (65536 + index as u64 * 8192, buf)
            })
            .collect();
        let mut kept = file.write_batch(again).unwrap();
        file.sync_data().unwrap();
        let (read, _) = file.read_at(0, AlignedBuf::zeroed(98304)).unwrap();
        for index in 0..8 {
            let block = &read[index * 8192..(index + 1) * 8192];
            assert!(block.iter().all(|&b| b == index as u8 + 1), "block {index}");
        }
        for index in 0..4 {
            let start = 65536 + index * 8192;
            let block = &read[start..start + 8192];
            assert!(
                block.iter().all(|&b| b == 0xa0 + index as u8),
                "block {index} again"
            );
        }
        // Prefixes: a registered and a plain 8 KiB buffer each writing only their first 4 KiB.
        let mut registered_buf = kept.pop().unwrap();
        assert!(registered_buf.is_registered());
        let mut plain_buf = vfs.io_buffers(1, 8192).pop().unwrap();
        assert!(!plain_buf.is_registered());
        for (index, buf) in [&mut registered_buf, &mut plain_buf]
            .into_iter()
            .enumerate()
        {
            buf.fill(0x55);
            buf.set_len(4096);
            buf.fill(0x60 + index as u8);
        }
        let prefixes = vec![(131072, registered_buf), (139264, plain_buf)];
        let back = file.write_batch(prefixes).unwrap();
        assert!(back.iter().all(|b| b.len() == 4096));
        let (read, _) = file.read_at(131072, AlignedBuf::zeroed(16384)).unwrap();
        assert!(read[..4096].iter().all(|&b| b == 0x60));
        assert!(
            read[4096..8192].iter().all(|&b| b == 0),
            "a prefix write wrote past its length"
        );
        assert!(read[8192..12288].iter().all(|&b| b == 0x61));
        assert!(
            read[12288..].iter().all(|&b| b == 0),
            "a prefix write wrote past its length"
        );
        let misaligned = vec![(100, vfs.io_buffers(1, 4096).pop().unwrap())];
        assert_eq!(
            file.write_batch(misaligned).unwrap_err().kind,
            IoErrorKind::InvalidInput
        );
    })
    .unwrap();
}

/// Buffered fallback: forced (DirectIo::Never), and on /dev/shm (tmpfs; kernels before 6.6 refuse
/// O_DIRECT there, newer ones accept it — either way the data must round-trip).
#[test]
fn buffered_fallback_on_tmpfs_conforms() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut forced = UringVfs::open_with(dir.path(), DirectIo::Never).unwrap();
    let file = forced.open("probe", OpenMode::CreateNew).unwrap();
    assert!(!file.is_direct());
    drop(file);
    forced.remove("probe").unwrap();
    conformance(&mut forced);

    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut preferred = UringVfs::open(dir.path()).unwrap();
    conformance(&mut preferred);
}

#[test]
fn blocking_wait_inside_a_task_keeps_other_tasks_io_moving() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().to_path_buf();
    let rt = Runtime::builder().cores(1).pin(false).build().unwrap();
    let fired = rt
        .block_on(0, move || async move {
            let timer = jube_runtime::spawn(async {
                jube_runtime::sleep(std::time::Duration::from_millis(1)).await;
                true
            });
            jube_runtime::yield_now().await;
            let mut vfs = UringVfs::open(&path).unwrap();
            let mut file = vfs.open("f", OpenMode::CreateNew).unwrap();
            for i in 0..50u64 {
                file.write_at(i * IO_ALIGN as u64, pattern(i as u8, IO_ALIGN))
                    .unwrap();
                file.sync_data().unwrap();
            }
            timer.await
        })
        .unwrap();
    assert!(fired);
}
