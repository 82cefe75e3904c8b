//! Cross-core mesh tests. Strategy: every core joins one mesh; under load each core sends a
//! numbered stream to every core (itself included) and the receivers check that each lane is FIFO,
//! that nothing is lost or duplicated; under backpressure a receiver stays away until its lane is
//! full, and the sender must see `Full` at exactly the lane capacity and then wait, not drop.
//! Both wakeup paths (MSG_RING and eventfd) run the load test.

use jube_runtime::constants::MESH_QUEUE_CAPACITY;
use jube_runtime::{sleep, spawn, Runtime, TrySendError};
use std::time::Duration;

fn load(rt: &Runtime) {
    const PER_LANE: u64 = 20_000;
    let cores = rt.cores();
    let mesh = rt.mesh::<(usize, u64)>();
    let (tx, rx) = std::sync::mpsc::channel();
    for core in 0..cores {
        let mesh = mesh.clone();
        let tx = tx.clone();
        rt.spawn_on(core, move || async move {
            let endpoint = std::rc::Rc::new(mesh.join());
            let sender = endpoint.clone();
            let sending = spawn(async move {
                for seq in 0..PER_LANE {
                    for to in 0..sender.cores() {
                        sender.send(to, (sender.core(), seq)).await.unwrap();
                    }
                }
            });
            let mut next = vec![0u64; endpoint.cores()];
            let mut batch = Vec::new();
            let total = PER_LANE * endpoint.cores() as u64;
            let mut received = 0;
            while received < total {
                batch.clear();
                received += endpoint.recv_batch(&mut batch, 256).await as u64;
                for &(from, (origin, seq)) in &batch {
                    assert_eq!(from, origin, "message attributed to the wrong sender");
                    assert_eq!(
                        seq,
                        next[from],
                        "lane {from}->{} out of order",
                        endpoint.core()
                    );
                    next[from] += 1;
                }
            }
            sending.await;
            tx.send(received).unwrap();
        })
        .unwrap();
    }
    drop(tx);
    let totals: Vec<u64> = rx.iter().collect();
    assert_eq!(totals, vec![PER_LANE * cores as u64; cores]);
}

#[test]
fn mesh_delivers_everything_in_order_under_load() {
    let rt = Runtime::builder().cores(3).pin(false).build().unwrap();
    load(&rt);
    rt.shutdown().unwrap();
}

#[test]
fn mesh_works_with_eventfd_wakeups() {
    let rt = Runtime::builder()
        .cores(2)
        .pin(false)
        .msg_ring(false)
        .build()
        .unwrap();
    assert!(!rt.features().msg_ring);
    load(&rt);
}

#[test]
fn full_lanes_push_back_without_dropping() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    let mesh = rt.mesh::<u64>();
    let receiver_mesh = mesh.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver_tx = tx.clone();
    rt.spawn_on(1, move || async move {
        let endpoint = receiver_mesh.join();
        // Stay away until the sender has filled the lane and is waiting.
        sleep(Duration::from_millis(50)).await;
        let mut expected = 0u64;
        while expected < 3 * MESH_QUEUE_CAPACITY as u64 {
            let (from, value) = endpoint.recv().await;
            assert_eq!((from, value), (0, expected));
            expected += 1;
        }
        receiver_tx.send(("received", expected)).unwrap();
    })
    .unwrap();
    rt.spawn_on(0, move || async move {
        let endpoint = mesh.join();
        let mut value = 0u64;
        while endpoint.try_send(1, value).is_ok() {
            value += 1;
        }
        assert_eq!(
            value, MESH_QUEUE_CAPACITY as u64,
            "a lane holds exactly its capacity"
        );
        assert_eq!(endpoint.try_send(1, value), Err(TrySendError::Full(value)));
        // send() waits for room instead of failing or dropping.
        while value < 3 * MESH_QUEUE_CAPACITY as u64 {
            endpoint.send(1, value).await.unwrap();
            value += 1;
        }
        tx.send(("sent", value)).unwrap();
    })
    .unwrap();
    let mut results: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    results.sort();
    let total = 3 * MESH_QUEUE_CAPACITY as u64;
    assert_eq!(results, vec![("received", total), ("sent", total)]);
    // Batching: far fewer wakeups than messages.
    assert!(
        rt.wakeups_sent(1) < total / 4,
        "{} wakeups for {total} messages",
        rt.wakeups_sent(1)
    );
}

#[test]
fn a_core_sends_to_itself_and_others() {
    let rt = Runtime::builder().cores(2).pin(false).build().unwrap();
    let mesh = rt.mesh::<u32>();
    let result = rt
        .block_on(0, move || async move {
            let endpoint = mesh.join();
            endpoint.try_send(1, 5).unwrap();
            endpoint.try_send(0, 6).unwrap();
            assert_eq!(endpoint.recv().await, (0, 6));
            endpoint.try_recv()
        })
        .unwrap();
    assert_eq!(result, None);
}
