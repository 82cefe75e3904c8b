//! Executor tests: spawning and joining, yielding, priorities, cross-thread spawning, timers,
//! shutdown and the start-up error. Strategy: each test starts a small runtime (unpinned, since the
//! machine is shared), runs its scenario through `block_on`, and checks observable order or counts.

use jube_runtime::{
    core_count, current_core, ops_in_flight, sleep, spawn, spawn_background, timeout, yield_now,
    Elapsed, Runtime, RuntimeError,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn runtime(cores: usize) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .pin(false)
        .build()
        .expect("io_uring runtime starts")
}

#[test]
fn spawn_and_join_return_outputs_on_the_right_core() {
    let rt = runtime(2);
    for core in 0..2 {
        let (id, sum) = rt
            .block_on(core, || async {
                let handles: Vec<_> = (0..10u64).map(|i| spawn(async move { i * i })).collect();
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await;
                }
                (current_core(), sum)
            })
            .unwrap();
        assert_eq!(id, Some(core));
        assert_eq!(sum, (0..10u64).map(|i| i * i).sum::<u64>());
    }
    assert_eq!(rt.block_on(1, || async { core_count() }).unwrap(), 2);
    rt.shutdown().unwrap();
}

#[test]
fn yield_interleaves_tasks() {
    let rt = runtime(1);
    let order = rt
        .block_on(0, || async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let tasks: Vec<_> = (0..2)
                .map(|task| {
                    let log = log.clone();
                    spawn(async move {
                        for step in 0..3 {
                            log.borrow_mut().push((task, step));
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            let order = log.borrow().clone();
            order
        })
        .unwrap();
    assert_eq!(order, vec![(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]);
}

/// A background task that never stops yielding must not delay foreground tasks by more than a
/// bounded number of polls, and must itself keep making progress while foreground work runs.
#[test]
fn background_work_neither_starves_nor_is_starved() {
    let rt = runtime(1);
    let (background_polls, foreground_done) = rt
        .block_on(0, || async {
            let polls = Rc::new(RefCell::new(0u64));
            let stop = Rc::new(RefCell::new(false));
            let (p, s) = (polls.clone(), stop.clone());
            let background = spawn_background(async move {
                while !*s.borrow() {
                    *p.borrow_mut() += 1;
                    yield_now().await;
                }
            });
            // 1000 foreground tasks, each yielding 10 times: 10,000 foreground polls.
            let foreground: Vec<_> = (0..1000)
                .map(|_| {
                    spawn(async {
                        for _ in 0..10 {
                            yield_now().await;
                        }
                    })
                })
                .collect();
            let polls_before = *polls.borrow();
            for task in foreground {
                task.await;
            }
            let during = *polls.borrow() - polls_before;
            *stop.borrow_mut() = true;
            background.await;
            (during, true)
        })
        .unwrap();
    assert!(foreground_done);
    // One background poll per busy tick of 64 foreground polls: about 10,000 / 64 = 156.
    assert!(
        background_polls >= 50,
        "background starved: {background_polls} polls"
    );
    assert!(
        background_polls <= 1000,
        "background took too large a share: {background_polls} polls"
    );
}

#[test]
fn timers_fire_after_their_duration_and_timeouts_cancel() {
    let rt = runtime(1);
    rt.block_on(0, || async {
        let start = Instant::now();
        sleep(Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));

        // Many concurrent timers complete in deadline order.
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.borrow_mut().push(ms);
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        assert_eq!(*order.borrow(), vec![10, 20, 30]);

        let slow = timeout(Duration::from_millis(5), sleep(Duration::from_secs(3600))).await;
        assert_eq!(slow, Err(Elapsed));
        let fast = timeout(Duration::from_secs(3600), async { 7 }).await;
        assert_eq!(fast, Ok(7));
        // The abandoned hour-long timers were cancelled in the kernel: only the eventfd read
        // remains in flight once the cancellations have completed.
        for _ in 0..100 {
            if ops_in_flight() == 1 {
                break;
            }
            yield_now().await;
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(ops_in_flight(), 1, "cancelled timers still in the ring");
    })
    .unwrap();
}

#[test]
fn spawn_on_runs_jobs_from_other_threads() {
    let rt = runtime(2);
    let (tx, rx) = std::sync::mpsc::channel();
    for core in 0..2 {
        for i in 0..100 {
            let tx = tx.clone();
            rt.spawn_on(core, move || async move {
                tx.send((current_core(), i)).unwrap();
            })
            .unwrap();
        }
    }
    drop(tx);
    let received: Vec<_> = rx.iter().collect();
    assert_eq!(received.len(), 200);
    assert_eq!(
        received.iter().filter(|(core, _)| *core == Some(0)).count(),
        100
    );
    assert!(rt.spawn_on(7, || async {}).is_err());
}

#[test]
fn shutdown_cancels_parked_tasks_quickly() {
    let rt = runtime(2);
    for core in 0..2 {
        rt.spawn_on(core, || async {
            for _ in 0..10 {
                spawn(sleep(Duration::from_secs(3600)));
            }
            sleep(Duration::from_secs(3600)).await;
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    rt.shutdown().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown waited for parked timers"
    );
}

#[test]
fn plain_ring_and_eventfd_fallbacks_work() {
    let rt = Runtime::builder()
        .cores(2)
        .pin(false)
        .taskrun_flags(false)
        .msg_ring(false)
        .build()
        .unwrap();
    assert!(!rt.features().msg_ring);
    assert_eq!(rt.features().setup_flags, "none");
    let value = rt
        .block_on(1, || async {
            sleep(Duration::from_millis(1)).await;
            41 + 1
        })
        .unwrap();
    assert_eq!(value, 42);
}

#[test]
fn unavailable_io_uring_explains_what_to_do() {
    let denied = RuntimeError::from_setup_error(&std::io::Error::from_raw_os_error(libc::EPERM));
    let text = denied.to_string();
    assert!(text.contains("io_uring is unavailable"), "{text}");
    assert!(
        text.contains("io_uring_disabled") && text.contains("seccomp"),
        "{text}"
    );
    let missing = RuntimeError::from_setup_error(&std::io::Error::from_raw_os_error(libc::ENOSYS))
        .to_string();
    assert!(missing.contains("Linux 6.1"), "{missing}");
    assert!(matches!(
        Runtime::new(0),
        Err(RuntimeError::InvalidConfig(_))
    ));
}
