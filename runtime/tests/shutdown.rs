//! Clean shutdown with I/O in flight. Strategy: a core submits 64 writes of 64 KiB through the
//! Storage trait and never reaps them, parks a connection in recv and a task on an hour-long timer,
//! then the runtime shuts down. Shutdown must return promptly (cancellable operations cancelled),
//! without panicking, and only after the uncancellable writes finished: every block is on disk
//! when it returns.

use jube_engine::storage::{AlignedBuf, Op, OpenMode, Storage, Vfs};
use jube_runtime::{sleep, spawn, Runtime, TcpListener, UringVfs};
use std::time::{Duration, Instant};

const BLOCK: usize = 64 * 1024;
const BLOCKS: u64 = 64;

#[test]
fn shutdown_drains_writes_and_cancels_the_rest() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().to_path_buf();
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn_on(0, move || async move {
        let mut vfs = UringVfs::open(&path).unwrap();
        let mut file = vfs.open("log", OpenMode::CreateNew).unwrap();
        for block in 0..BLOCKS {
            let mut buf = AlignedBuf::zeroed(BLOCK);
            buf.fill(block as u8 + 1);
            file.submit(
                block,
                Op::Write {
                    offset: block * BLOCK as u64,
                    buf,
                },
            )
            .unwrap();
        }
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        spawn(sleep(Duration::from_secs(3600)));
        tx.send(addr).unwrap();
        let stream = listener.accept().await.unwrap();
        let _ = stream.recv(vec![0u8; 16]).await;
        // Keep the file (and its writes) alive in this task until shutdown drops it.
        drop(file);
    })
    .unwrap();
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    rt.shutdown().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "shutdown hung: {:?}",
        start.elapsed()
    );
    let data = std::fs::read(dir.path().join("log")).unwrap();
    assert_eq!(
        data.len(),
        BLOCK * BLOCKS as usize,
        "writes in flight at shutdown were not drained"
    );
    for block in 0..BLOCKS as usize {
        let chunk = &data[block * BLOCK..(block + 1) * BLOCK];
        assert!(
            chunk.iter().all(|&b| b == block as u8 + 1),
            "block {block} incomplete"
        );
    }
}
