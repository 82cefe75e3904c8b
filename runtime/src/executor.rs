//! The single-threaded executor of one core: task queues, spawning, yielding, and the loop that
//! alternates between running tasks and driving the core's ring.
//!
//! Invariants:
//! - a core's tasks run only on its thread; a waker called from another thread hands the task to
//!   the core through its `remote` queue and an eventfd wakeup, never runs it there;
//! - every tick runs at most [`FOREGROUND_BATCH_MAX`] foreground tasks, then at least one and at
//!   most [`BACKGROUND_PER_BUSY_TICK_MAX`] background tasks, then reaps the ring: background work
//!   can delay a request by at most that many polls, and is itself never starved;
//! - before sleeping in `io_uring_enter` the core sets `sleeping`, then re-checks every source of
//!   work (remote queue, injected jobs, mesh inboxes); senders clear the flag and wake it, so no
//!   wakeup is lost (see docs/architecture.md, `## Runtime`).
//! - at shutdown every task is cancelled (its future dropped on this thread), then the ring is
//!   drained: no buffer is freed while the kernel may still use it.

use crate::constants::{
    BACKGROUND_PER_BUSY_TICK_MAX, DRAIN_TIMEOUT, FOREGROUND_BATCH_MAX, INJECT_QUEUE_CAPACITY,
    TASKS_PER_CORE_MAX,
};
use crate::reactor::{submit_async, Reactor};
use crate::sys::fd::{eventfd, eventfd_signal};
use crate::sys::ring::OpSpec;
use async_task::{Runnable, Task};
use crossbeam_queue::ArrayQueue;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// A closure sent to a core from another thread; it runs on the core (usually to spawn a task).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The scheduling class of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Request handling: runs first.
    Foreground,
    /// Checkpoints, sweeps, GC: gets a bounded share of every busy tick and all of an idle one.
    Background,
}

/// Why a spawn failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpawnError {
    /// The core already runs [`TASKS_PER_CORE_MAX`] tasks.
    TooManyTasks { core: usize },
    /// The core's queue of jobs from other threads is full: retry later.
    InjectQueueFull { core: usize },
    /// The core is shutting down or gone.
    Stopped { core: usize },
    /// No such core.
    NoSuchCore { core: usize, cores: usize },
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::TooManyTasks { core } => {
                write!(f, "core {core} already runs {TASKS_PER_CORE_MAX} tasks")
            }
            SpawnError::InjectQueueFull { core } => {
                write!(f, "core {core}'s queue of {INJECT_QUEUE_CAPACITY} jobs from other threads is full")
            }
            SpawnError::Stopped { core } => write!(f, "core {core} is shutting down"),
            SpawnError::NoSuchCore { core, cores } => {
                write!(f, "no core {core}: the runtime has {cores}")
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// What other threads may touch of a core: its wakeup means and its inbound queues.
pub(crate) struct CoreShared {
    pub id: usize,
    /// Set by the core just before it sleeps in the ring; cleared by whoever wakes it.
    pub sleeping: AtomicBool,
    pub stopping: AtomicBool,
    pub stopped: AtomicBool,
    eventfd: OwnedFd,
    /// A duplicate of the core's ring descriptor, for other cores' MSG_RING; None without MSG_RING.
    pub ring_fd: OnceLock<Option<OwnedFd>>,
    pub inject: ArrayQueue<Job>,
    /// Tasks woken from other threads. Holds each task at most once (async-task schedules a task
    /// once per wake cycle), so it is bounded by [`TASKS_PER_CORE_MAX`].
    remote: Mutex<Vec<(Runnable, Priority)>>,
    pub wakeups_sent: AtomicU64,
}

impl CoreShared {
    pub fn new(id: usize) -> std::io::Result<CoreShared> {
        Ok(CoreShared {
            id,
            sleeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            eventfd: eventfd()?,
            ring_fd: OnceLock::new(),
            inject: ArrayQueue::new(INJECT_QUEUE_CAPACITY),
            remote: Mutex::new(Vec::new()),
            wakeups_sent: AtomicU64::new(0),
        })
    }

    /// Wakes the core if it sleeps (or is about to). From a core, the wakeup goes through that
    /// core's ring (MSG_RING) when available; otherwise through the eventfd.
    pub fn notify(&self) {
        if !self.sleeping.load(Ordering::SeqCst) || !self.sleeping.swap(false, Ordering::SeqCst) {
            return;
        }
        self.wakeups_sent.fetch_add(1, Ordering::Relaxed);
        if let (Some(Some(target)), Some(reactor)) = (self.ring_fd.get(), try_current_reactor()) {
            if reactor.send_wake(target.as_raw_fd()) {
                return;
            }
        }
        self.wake_by_eventfd();
    }

    /// Wakes the core through its eventfd, whether or not it sleeps (used for shutdown).
    pub fn wake_by_eventfd(&self) {
        if let Err(err) = eventfd_signal(&self.eventfd) {
            tracing::error!(core = self.id, %err, "eventfd wakeup failed");
        }
    }

    fn has_remote_work(&self) -> bool {
        !self.inject.is_empty()
            || !self
                .remote
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }
}

/// Something a core must check every tick and before sleeping: a mesh endpoint's inbound queues.
pub(crate) trait Inbox {
    /// Whether a waiting receiver or sender of this inbox could make progress now.
    fn ready(&self) -> bool;
    /// Wakes the receivers and senders that can make progress.
    fn wake(&self);
}

/// One core's executor, owned by its thread.
pub(crate) struct Core {
    pub shared: Arc<CoreShared>,
    pub all: Arc<[Arc<CoreShared>]>,
    pub reactor: Rc<Reactor>,
    foreground: RefCell<VecDeque<Runnable>>,
    background: RefCell<VecDeque<Runnable>>,
    tasks: RefCell<HashMap<u64, Task<()>>>,
    next_task_id: Cell<u64>,
    inboxes: RefCell<Vec<Weak<dyn Inbox>>>,
    idle_spin: std::time::Duration,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

pub(crate) fn try_current() -> Option<Rc<Core>> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
}

pub(crate) fn current() -> Rc<Core> {
    try_current()
        .expect("this must be called on a runtime core (inside Runtime::spawn_on or a task)")
}

/// The reactor of the core this thread runs, if it is a core.
pub(crate) fn try_current_reactor() -> Option<Rc<Reactor>> {
    try_current().map(|core| core.reactor.clone())
}

/// The index of the core this code runs on, or None outside the runtime.
pub fn current_core() -> Option<usize> {
    try_current().map(|core| core.shared.id)
}

/// Ring operations in flight on the current core (including abandoned ones still draining).
/// Panics outside a core.
pub fn ops_in_flight() -> usize {
    current().reactor.outstanding()
}

/// How many cores the runtime of the current core has. Panics outside a core.
pub fn core_count() -> usize {
    current().all.len()
}

fn schedule(shared: &Arc<CoreShared>, priority: Priority, runnable: Runnable) {
    if let Some(core) = try_current().filter(|core| Arc::ptr_eq(&core.shared, shared)) {
        core.queue(priority).borrow_mut().push_back(runnable);
        return;
    }
    shared
        .remote
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((runnable, priority));
    shared.notify_eventfd_if_sleeping();
}

impl CoreShared {
    fn notify_eventfd_if_sleeping(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wakeups_sent.fetch_add(1, Ordering::Relaxed);
            self.wake_by_eventfd();
        }
    }
}

/// A handle to a spawned task's result. Dropping it detaches the task (it keeps running).
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

struct JoinState<T> {
    output: Option<T>,
    finished: bool,
    waker: Option<Waker>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.state.borrow_mut();
        if let Some(output) = state.output.take() {
            return Poll::Ready(output);
        }
        assert!(
            !state.finished,
            "JoinHandle polled after it returned the output"
        );
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Spawns a foreground task on the current core. Panics outside a core or past
/// [`TASKS_PER_CORE_MAX`] tasks (use [`try_spawn`] where the task count comes from input).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    try_spawn(Priority::Foreground, future).unwrap_or_else(|err| panic!("spawn failed: {err}"))
}

/// Spawns a background task on the current core (see [`Priority::Background`]).
pub fn spawn_background<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    try_spawn(Priority::Background, future).unwrap_or_else(|err| panic!("spawn failed: {err}"))
}

/// Spawns a task on the current core with the given priority.
pub fn try_spawn<F>(priority: Priority, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    current().spawn(priority, future)
}

impl Core {
    pub fn new(
        shared: Arc<CoreShared>,
        all: Arc<[Arc<CoreShared>]>,
        reactor: Rc<Reactor>,
        idle_spin: std::time::Duration,
    ) -> Core {
        Core {
            shared,
            all,
            reactor,
            foreground: RefCell::new(VecDeque::new()),
            background: RefCell::new(VecDeque::new()),
            tasks: RefCell::new(HashMap::new()),
            next_task_id: Cell::new(0),
            inboxes: RefCell::new(Vec::new()),
            idle_spin,
        }
    }

    fn queue(&self, priority: Priority) -> &RefCell<VecDeque<Runnable>> {
        match priority {
            Priority::Foreground => &self.foreground,
            Priority::Background => &self.background,
        }
    }

    pub fn register_inbox(&self, inbox: Weak<dyn Inbox>) {
        self.inboxes.borrow_mut().push(inbox);
    }

    fn spawn<F>(&self, priority: Priority, future: F) -> Result<JoinHandle<F::Output>, SpawnError>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let core = self.shared.id;
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(SpawnError::Stopped { core });
        }
        if self.tasks.borrow().len() >= TASKS_PER_CORE_MAX {
            return Err(SpawnError::TooManyTasks { core });
        }
        let id = self.next_task_id.get();
        self.next_task_id.set(id + 1);
        let state = Rc::new(RefCell::new(JoinState {
            output: None,
            finished: false,
            waker: None,
        }));
        let task_state = state.clone();
        let wrapped = async move {
            let output = future.await;
            let waker = {
                let mut state = task_state.borrow_mut();
                state.output = Some(output);
                state.finished = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            if let Some(core) = try_current() {
                let finished = core.tasks.borrow_mut().remove(&id);
                // Dropped outside the borrow: dropping a task handle may schedule.
                drop(finished);
            }
        };
        let shared = self.shared.clone();
        let (runnable, task) = async_task::spawn_local(wrapped, move |runnable| {
            schedule(&shared, priority, runnable)
        });
        self.tasks.borrow_mut().insert(id, task);
        runnable.schedule();
        Ok(JoinHandle { state })
    }

    /// Runs the core until shutdown is requested, then cancels every task and drains the ring.
    pub fn run(self: &Rc<Self>) {
        self.spawn_eventfd_reader();
        loop {
            self.reactor.turn(false);
            self.take_remote_work();
            self.poll_inboxes();
            let ran = self.run_tasks();
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            if ran == 0 {
                self.idle();
            }
        }
        self.shutdown();
    }

    /// Keeps one read of the core's eventfd in flight, so a signal from another thread completes
    /// it and wakes the ring.
    fn spawn_eventfd_reader(self: &Rc<Self>) {
        let reactor = self.reactor.clone();
        let fd: Rc<OwnedFd> = Rc::new(match self.shared.eventfd.try_clone() {
            Ok(fd) => fd,
            Err(err) => panic!("cannot duplicate the core's eventfd: {err}"),
        });
        let reader = async move {
            loop {
                let op = submit_async(&reactor, OpSpec::ReadEventfd { fd: fd.clone() }).await;
                let (result, _) = op.await;
                if result < 0 && result != -libc::EINTR {
                    tracing::error!(
                        errno = -result,
                        "eventfd read failed; cross-thread wakeups now rely on MSG_RING"
                    );
                    return;
                }
            }
        };
        if let Err(err) = self.spawn(Priority::Foreground, reader) {
            panic!("cannot start the eventfd reader: {err}");
        }
    }

    fn take_remote_work(&self) {
        self.take_remote_runnables();
        while let Some(job) = self.shared.inject.pop() {
            job();
        }
    }

    fn take_remote_runnables(&self) {
        let remote =
            std::mem::take(&mut *self.shared.remote.lock().unwrap_or_else(|e| e.into_inner()));
        for (runnable, priority) in remote {
            self.queue(priority).borrow_mut().push_back(runnable);
        }
    }

    fn poll_inboxes(&self) {
        let inboxes: Vec<Rc<dyn Inbox>> = {
            let mut list = self.inboxes.borrow_mut();
            list.retain(|inbox| inbox.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for inbox in inboxes {
            if inbox.ready() {
                inbox.wake();
            }
        }
    }

    fn inboxes_ready(&self) -> bool {
        let inboxes: Vec<Rc<dyn Inbox>> = self
            .inboxes
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        inboxes.iter().any(|inbox| inbox.ready())
    }

    /// One tick of task running: a foreground batch, then a bounded background share.
    fn run_tasks(&self) -> usize {
        let mut ran = 0;
        for _ in 0..FOREGROUND_BATCH_MAX {
            let Some(runnable) = self.foreground.borrow_mut().pop_front() else {
                break;
            };
            runnable.run();
            ran += 1;
        }
        let background_max = if ran == 0 {
            FOREGROUND_BATCH_MAX
        } else {
            BACKGROUND_PER_BUSY_TICK_MAX
        };
        for _ in 0..background_max {
            let Some(runnable) = self.background.borrow_mut().pop_front() else {
                break;
            };
            runnable.run();
            ran += 1;
        }
        ran
    }

    fn has_local_work(&self) -> bool {
        !self.foreground.borrow().is_empty() || !self.background.borrow().is_empty()
    }

    fn has_any_work(&self) -> bool {
        self.has_local_work()
            || self.shared.has_remote_work()
            || self.inboxes_ready()
            || self.shared.stopping.load(Ordering::Acquire)
    }

    /// Spins on the ring and the inbound queues for the idle spin (default
    /// [`crate::constants::IDLE_SPIN`]), then sleeps in the ring.
    fn idle(&self) {
        let spin_until = Instant::now() + self.idle_spin;
        loop {
            if self.reactor.turn(false) > 0 || self.has_any_work() {
                return;
            }
            if Instant::now() >= spin_until {
                break;
            }
            std::hint::spin_loop();
        }
        self.shared.sleeping.store(true, Ordering::SeqCst);
        if self.has_any_work() {
            self.shared.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        self.reactor.turn(true);
        self.shared.sleeping.store(false, Ordering::SeqCst);
    }

    fn shutdown(&self) {
        let tasks: Vec<Task<()>> = self
            .tasks
            .borrow_mut()
            .drain()
            .map(|(_, task)| task)
            .collect();
        // Dropping a task handle cancels it; an idle task is scheduled so that its future is
        // dropped by running its runnable below, on this thread.
        drop(tasks);
        self.take_remote_runnables();
        while self.has_local_work() {
            self.run_tasks();
            self.take_remote_runnables();
        }
        // Jobs sent from other threads after shutdown began are dropped unrun: they would spawn.
        while self.shared.inject.pop().is_some() {}
        // Cancels were queued for abandoned network reads and timers; writes and syncs finish on
        // their own. Wait for all of them; past the deadline the ring's drop leaks what is left.
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.reactor.outstanding() > 0 && Instant::now() < deadline {
            self.reactor
                .turn_timeout(std::time::Duration::from_millis(100));
        }
        self.shared.stopped.store(true, Ordering::Release);
    }
}

/// Installs `core` as this thread's current core for the duration of `run`.
pub(crate) fn enter<R>(core: Rc<Core>, run: impl FnOnce(&Rc<Core>) -> R) -> R {
    CURRENT.with(|current| *current.borrow_mut() = Some(core.clone()));
    let result = run(&core);
    CURRENT.with(|current| *current.borrow_mut() = None);
    result
}

/// Yields to the other tasks of this core once.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
