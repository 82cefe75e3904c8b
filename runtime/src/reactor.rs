//! The reactor: one core's ring plus the state of every operation in flight on it.
//!
//! Operations are named by an [`OpId`] (a slot of a table of [`OPS_IN_FLIGHT_MAX`] entries fixed at
//! start). A slot is `Free`, `Active` (submitted; a waker may wait on it) or `Done` (its result and
//! buffer wait for the owner to take them). Invariants:
//! - a slot is freed exactly once: by its owner taking the result, or, for an abandoned (orphaned)
//!   operation, by its final completion;
//! - an abandoned network read, accept or timer is cancelled in the kernel; abandoned file I/O is
//!   left to finish (a write is never silently skipped); either way its buffer stays held by the
//!   ring until the kernel is done with it;
//! - wakers are called only after every borrow of the reactor is released, so a woken task may use
//!   the reactor again;
//! - a multishot recv's bytes are copied, in completion order, into its slot's queue at the reap
//!   that delivers them (so the provided buffer goes back to the kernel at once), and leave the
//!   queue only through [`Reactor::poll_recv`], in order; a queue past
//!   [`RECV_QUEUED_BYTES_MAX`] cancels its multishot (the socket buffer holds the rest), and bytes
//!   already delivered are never dropped while the owner lives.
//!
//! The reactor is used both by async tasks (through [`Reactor::poll_op`]) and by the engine's
//! synchronous `Storage` calls (through [`Reactor::take_done`] and [`Reactor::turn`]), on the same
//! thread: a blocking `wait` drives the ring and wakes the tasks whose I/O finished meanwhile.

use crate::constants::{
    ACCEPT_BACKLOG_MAX, FIXED_FILES_MAX, OPS_IN_FLIGHT_MAX, RECV_BUFFER_COUNT, RECV_BUFFER_SIZE,
    RECV_QUEUED_BYTES_MAX, RING_CQ_ENTRIES, RING_ENTRIES,
};
use crate::sys::ring::{
    FdHandle, OpSpec, Payload, PushError, Reaped, Ring, RingFeatures, RingOptions,
};
use crate::sys::ring::{TOKEN_INTERNAL, TOKEN_WAKE};
use jube_engine::storage::AlignedBuf;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::task::{Context, Poll, Waker};

/// Names one operation in flight on one reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(u32);

/// The reactor has no free slot, or the submission queue stayed full: reap and retry.
#[derive(Debug)]
pub struct QueueFull(pub OpSpec);

enum State {
    Free,
    Active(Active),
    Done(i32, Payload),
}

struct Active {
    waker: Option<Waker>,
    orphaned: bool,
    /// For multishot operations: results not yet taken, and whether the final CQE arrived.
    stream: Option<Stream>,
}

struct Stream {
    results: VecDeque<i32>,
    /// Bytes a multishot recv delivered and its owner has not taken yet (empty for accepts).
    received: VecDeque<u8>,
    ended: bool,
    cancel_requested: bool,
}

/// What [`Reactor::poll_recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvEvent {
    /// This many bytes were copied into the caller's buffer.
    Data(usize),
    /// A result without data (0: the peer closed; negative: -errno). `ended`: it was the
    /// multishot's final completion and its slot is now free.
    Result { result: i32, ended: bool },
    /// The multishot ended without a result to report (cancelled at the queue bound): its slot is
    /// free; re-arm to read on.
    Ended,
}

/// Counters of the receive paths on one core, for tests and diagnostics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvStats {
    /// Multishot receives armed.
    pub multishot_arms: u64,
    /// Completions that carried bytes in a provided buffer.
    pub multishot_completions: u64,
    /// Multishots ended by an empty buffer ring (ENOBUFS) and re-armed.
    pub buffer_exhaustions: u64,
    /// Multishots cancelled because the connection's queue reached its bound.
    pub queue_full_cancels: u64,
    /// One-shot recv submissions (the fallback path, and the read after an exhaustion).
    pub oneshot_recvs: u64,
}

struct Slots {
    states: Vec<State>,
    free: Vec<u32>,
}

/// Tunables of one reactor; tests lower them to reach fallbacks.
#[derive(Debug, Clone, Copy)]
pub struct ReactorOptions {
    pub taskrun_flags: bool,
    pub msg_ring: bool,
    pub slots: usize,
    /// Provided receive buffers (count, bytes each); count 0 forces one recv per call.
    pub recv_buffers: (u16, usize),
    /// Entries of the fixed-file table; 0 forces plain descriptors.
    pub fixed_files: u32,
}

impl Default for ReactorOptions {
    fn default() -> Self {
        ReactorOptions {
            taskrun_flags: true,
            msg_ring: true,
            slots: OPS_IN_FLIGHT_MAX,
            recv_buffers: (RECV_BUFFER_COUNT, RECV_BUFFER_SIZE),
            fixed_files: FIXED_FILES_MAX,
        }
    }
}

/// One core's ring and operation table. Not `Send`: it lives and dies on its core's thread.
pub struct Reactor {
    ring: RefCell<Ring>,
    slots: RefCell<Slots>,
    /// Completions of operations nobody awaits (the engine's synchronous `Storage` ops, which
    /// the engine reaps by polling): a count, and the tasks to wake when it grows.
    unawaited_completions: std::cell::Cell<u64>,
    unawaited_waiters: RefCell<Vec<Waker>>,
    /// Multishot recv is usable: buffers registered, and the kernel has not refused the flag.
    multishot_recv: Cell<bool>,
    /// A multishot recv has delivered data here, so the kernel supports it (an EINVAL after that
    /// is the socket's error, not a missing feature).
    multishot_recv_confirmed: Cell<bool>,
    recv_stats: Cell<RecvStats>,
}

impl Reactor {
    pub fn new(options: ReactorOptions) -> io::Result<Reactor> {
        let ring_options = RingOptions {
            sq_entries: RING_ENTRIES,
            cq_entries: RING_CQ_ENTRIES,
            taskrun_flags: options.taskrun_flags,
            msg_ring: options.msg_ring,
            recv_buffers: options.recv_buffers,
            fixed_files: options.fixed_files,
        };
        let ring = Ring::new(options.slots, ring_options)?;
        let multishot_recv = ring.features().recv_buffers;
        let slots = Slots {
            states: (0..options.slots).map(|_| State::Free).collect(),
            free: (0..options.slots as u32).rev().collect(),
        };
        Ok(Reactor {
            ring: RefCell::new(ring),
            slots: RefCell::new(slots),
            unawaited_completions: std::cell::Cell::new(0),
            unawaited_waiters: RefCell::new(Vec::new()),
            multishot_recv: Cell::new(multishot_recv),
            multishot_recv_confirmed: Cell::new(false),
            recv_stats: Cell::new(RecvStats::default()),
        })
    }

    /// Whether receives use multishot recv with provided buffers.
    pub fn multishot_recv(&self) -> bool {
        self.multishot_recv.get()
    }

    /// Whether a multishot recv has delivered data on this reactor.
    pub fn multishot_recv_confirmed(&self) -> bool {
        self.multishot_recv_confirmed.get()
    }

    /// Turns multishot recv off for this reactor (the kernel refused it).
    pub fn disable_multishot_recv(&self) {
        self.multishot_recv.set(false);
    }

    pub fn recv_stats(&self) -> RecvStats {
        self.recv_stats.get()
    }

    pub fn count_recv(&self, update: impl FnOnce(&mut RecvStats)) {
        let mut stats = self.recv_stats.get();
        update(&mut stats);
        self.recv_stats.set(stats);
    }

    /// Puts `fd` in the ring's fixed-file table; None if there is no room or no table.
    pub fn register_file(&self, fd: RawFd) -> Option<u32> {
        self.ring.borrow_mut().register_file(fd)
    }

    /// Registers `bufs` as this ring's fixed buffers; the kernel's error if it refuses.
    pub fn register_buffers(&self, bufs: &[AlignedBuf]) -> io::Result<()> {
        self.ring.borrow_mut().register_buffers(bufs)
    }

    /// Frees a fixed-file entry (in-flight requests keep their own file reference).
    pub fn unregister_file(&self, index: u32) {
        self.ring.borrow_mut().unregister_file(index);
    }

    pub fn features(&self) -> RingFeatures {
        self.ring.borrow().features()
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.borrow().raw_fd()
    }

    /// Operations submitted and not yet finished (including abandoned ones).
    pub fn outstanding(&self) -> usize {
        self.ring.borrow().outstanding()
    }

    /// Submits a one-shot operation.
    pub fn submit(&self, op: OpSpec) -> Result<OpId, QueueFull> {
        self.submit_with(op, false)
    }

    /// Submits a multishot operation, whose results are read with [`Reactor::poll_stream`].
    pub fn submit_stream(&self, op: OpSpec) -> Result<OpId, QueueFull> {
        self.submit_with(op, true)
    }

    fn submit_with(&self, op: OpSpec, stream: bool) -> Result<OpId, QueueFull> {
        let Some(slot) = self.allocate(stream) else {
            return Err(QueueFull(op));
        };
        let mut op = op;
        for attempt in 0..2 {
            match self.ring.borrow_mut().push(slot, op) {
                Ok(()) => return Ok(OpId(slot)),
                Err(PushError::Full(back)) => op = back,
            }
            if attempt == 0 {
                self.turn(false);
            }
        }
        self.release(slot);
        Err(QueueFull(op))
    }

    /// Submits a write linked to an fdatasync; returns (write, sync) ids.
    pub fn submit_write_then_sync(
        &self,
        fd: FdHandle,
        fixed: Option<u32>,
        offset: u64,
        buf: AlignedBuf,
    ) -> Result<(OpId, OpId), QueueFull> {
        let Some(write_slot) = self.allocate(false) else {
            return Err(QueueFull(OpSpec::Write {
                fd,
                fixed: None,
                offset,
                buf,
                dsync: false,
            }));
        };
        let Some(sync_slot) = self.allocate(false) else {
            self.release(write_slot);
            return Err(QueueFull(OpSpec::Write {
                fd,
                fixed: None,
                offset,
                buf,
                dsync: false,
            }));
        };
        let pushed = self
            .ring
            .borrow_mut()
            .push_write_then_sync(write_slot, sync_slot, fd, fixed, offset, buf);
        match pushed {
            Ok(()) => Ok((OpId(write_slot), OpId(sync_slot))),
            Err(PushError::Full(op)) => {
                self.release(write_slot);
                self.release(sync_slot);
                Err(QueueFull(op))
            }
        }
    }

    /// Queues a wakeup completion for the ring with descriptor `target` (another core's).
    pub fn send_wake(&self, target: RawFd) -> bool {
        self.ring.borrow_mut().push_msg_ring(target)
    }

    fn allocate(&self, stream: bool) -> Option<u32> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.free.pop()?;
        let stream = stream.then(|| Stream {
            results: VecDeque::new(),
            received: VecDeque::new(),
            ended: false,
            cancel_requested: false,
        });
        slots.states[slot as usize] = State::Active(Active {
            waker: None,
            orphaned: false,
            stream,
        });
        Some(slot)
    }

    fn release(&self, slot: u32) {
        let mut slots = self.slots.borrow_mut();
        slots.states[slot as usize] = State::Free;
        slots.free.push(slot);
    }

    /// Takes a finished one-shot operation's result, or registers `cx`'s waker.
    pub fn poll_op(&self, id: OpId, cx: &mut Context<'_>) -> Poll<(i32, Payload)> {
        if let Some(done) = self.take_done(id) {
            return Poll::Ready(done);
        }
        let mut slots = self.slots.borrow_mut();
        if let State::Active(active) = &mut slots.states[id.0 as usize] {
            set_waker(&mut active.waker, cx.waker());
        }
        Poll::Pending
    }

    /// Takes a finished one-shot operation's result and frees its slot; None while it runs.
    pub fn take_done(&self, id: OpId) -> Option<(i32, Payload)> {
        let mut slots = self.slots.borrow_mut();
        let state = &mut slots.states[id.0 as usize];
        if !matches!(state, State::Done(..)) {
            assert!(
                matches!(state, State::Active(_)),
                "op {id:?} polled after it was taken"
            );
            return None;
        }
        let State::Done(result, payload) = std::mem::replace(state, State::Free) else {
            unreachable!("checked just above")
        };
        slots.free.push(id.0);
        Some((result, payload))
    }

    /// The next result of a multishot operation; `None` once it has ended (the slot is then free).
    pub fn poll_stream(&self, id: OpId, cx: &mut Context<'_>) -> Poll<Option<i32>> {
        let mut slots = self.slots.borrow_mut();
        let State::Active(active) = &mut slots.states[id.0 as usize] else {
            panic!("stream {id:?} polled after it ended");
        };
        let stream = active
            .stream
            .as_mut()
            .expect("poll_stream on a one-shot operation");
        if let Some(result) = stream.results.pop_front() {
            return Poll::Ready(Some(result));
        }
        if stream.ended {
            slots.states[id.0 as usize] = State::Free;
            slots.free.push(id.0);
            return Poll::Ready(None);
        }
        set_waker(&mut active.waker, cx.waker());
        Poll::Pending
    }

    /// Copies the next bytes of a multishot recv into `buf` (at most its length), or reports its
    /// next result or its end, or registers `cx`'s waker. Bytes come before results, in order.
    pub fn poll_recv(&self, id: OpId, buf: &mut [u8], cx: &mut Context<'_>) -> Poll<RecvEvent> {
        let mut slots = self.slots.borrow_mut();
        let State::Active(active) = &mut slots.states[id.0 as usize] else {
            panic!("recv stream {id:?} polled after it ended");
        };
        let stream = active
            .stream
            .as_mut()
            .expect("poll_recv on a one-shot operation");
        if !stream.received.is_empty() {
            let count = buf.len().min(stream.received.len());
            let (front, back) = stream.received.as_slices();
            let from_front = count.min(front.len());
            buf[..from_front].copy_from_slice(&front[..from_front]);
            buf[from_front..count].copy_from_slice(&back[..count - from_front]);
            stream.received.drain(..count);
            if stream.received.is_empty() && stream.received.capacity() > 4 * RECV_BUFFER_SIZE {
                // A burst grew the queue: give its memory back rather than keep the peak.
                stream.received = VecDeque::new();
            }
            return Poll::Ready(RecvEvent::Data(count));
        }
        if let Some(result) = stream.results.pop_front() {
            let ended = stream.ended && stream.results.is_empty();
            if ended {
                slots.states[id.0 as usize] = State::Free;
                slots.free.push(id.0);
            }
            return Poll::Ready(RecvEvent::Result { result, ended });
        }
        if stream.ended {
            slots.states[id.0 as usize] = State::Free;
            slots.free.push(id.0);
            return Poll::Ready(RecvEvent::Ended);
        }
        set_waker(&mut active.waker, cx.waker());
        Poll::Pending
    }

    /// Abandons an operation: frees it if finished, otherwise cancels it in the kernel and lets
    /// its final completion free it. For operations that may never complete on their own
    /// (timeouts, accepts, receives, sends).
    pub fn cancel(&self, id: OpId) {
        self.abandon(id, true);
    }

    /// Abandons an operation without cancelling it: it runs to completion and its result is
    /// discarded. For file I/O, which always completes, and where a write the caller gave up on
    /// must still either happen or fail, never be silently skipped.
    pub fn forget(&self, id: OpId) {
        self.abandon(id, false);
    }

    fn abandon(&self, id: OpId, cancel: bool) {
        let mut slots = self.slots.borrow_mut();
        let state = &mut slots.states[id.0 as usize];
        match state {
            State::Free => panic!("cancel of free slot {id:?}"),
            State::Done(..) => {
                *state = State::Free;
                slots.free.push(id.0);
            }
            State::Active(active) => {
                if active.stream.as_ref().is_some_and(|s| s.ended) {
                    *state = State::Free;
                    slots.free.push(id.0);
                    return;
                }
                active.orphaned = true;
                active.waker = None;
                drop(slots);
                if cancel {
                    self.ring.borrow_mut().push_cancel(id.0);
                }
            }
        }
    }

    /// Submits queued operations, then reaps completions, sleeping for one first if `block`.
    /// Returns how many completions were reaped.
    pub fn turn(&self, block: bool) -> usize {
        let entered = if block {
            self.ring.borrow_mut().submit_and_wait()
        } else {
            self.ring.borrow_mut().submit_nowait()
        };
        if let Err(err) = entered {
            // io_uring_enter fails only for a broken ring (EBADF, EFAULT) or a kernel bug: nothing
            // this core does afterwards could be trusted.
            panic!("io_uring_enter failed: {err}");
        }
        self.reap()
    }

    /// Submits, waits up to `timeout` for a completion, and reaps.
    pub fn turn_timeout(&self, timeout: std::time::Duration) -> usize {
        if let Err(err) = self.ring.borrow_mut().submit_and_wait_timeout(timeout) {
            panic!("io_uring_enter failed: {err}");
        }
        self.reap()
    }

    fn reap(&self) -> usize {
        let mut wakers = Vec::new();
        let mut cancels = Vec::new();
        let count = {
            let mut slots = self.slots.borrow_mut();
            self.ring
                .borrow_mut()
                .reap(|reaped| self.dispatch(&mut slots, reaped, &mut wakers, &mut cancels))
        };
        for slot in cancels {
            self.ring.borrow_mut().push_cancel(slot);
        }
        for waker in wakers {
            waker.wake();
        }
        count
    }

    fn dispatch(
        &self,
        slots: &mut Slots,
        reaped: Reaped<'_>,
        wakers: &mut Vec<Waker>,
        cancels: &mut Vec<u32>,
    ) {
        match reaped.user_data {
            // A wakeup from another core: its only job was to end the sleep in io_uring_enter.
            TOKEN_WAKE => return,
            TOKEN_INTERNAL => {
                if !matches!(
                    -reaped.result,
                    libc::ECANCELED | libc::ENOENT | libc::EALREADY
                ) {
                    tracing::warn!(
                        errno = -reaped.result,
                        "io_uring internal operation (cancel or MSG_RING) failed"
                    );
                }
                return;
            }
            _ => {}
        }
        let slot = reaped.user_data as u32;
        let state = &mut slots.states[slot as usize];
        let State::Active(active) = state else {
            panic!("completion for slot {slot} which is not active");
        };
        if let Some(stream) = active.stream.as_mut() {
            match reaped.data {
                // Bytes of a multishot recv: queue them (unless nobody will read them).
                Some(data) if reaped.result > 0 => {
                    if !active.orphaned {
                        stream.received.extend(data.iter());
                    }
                    let mut stats = self.recv_stats.get();
                    stats.multishot_completions += 1;
                    self.recv_stats.set(stats);
                    self.multishot_recv_confirmed.set(true);
                }
                // The final -ECANCELED of a cancelled multishot only says "ended".
                _ if reaped.result == -libc::ECANCELED && !reaped.more => {}
                _ => stream.results.push_back(reaped.result),
            }
            stream.ended = !reaped.more;
            let full = stream.results.len() >= ACCEPT_BACKLOG_MAX
                || stream.received.len() >= RECV_QUEUED_BYTES_MAX;
            if !stream.ended && !stream.cancel_requested && full {
                stream.cancel_requested = true;
                cancels.push(slot);
                if !stream.received.is_empty() {
                    let mut stats = self.recv_stats.get();
                    stats.queue_full_cancels += 1;
                    self.recv_stats.set(stats);
                }
            }
            let free = active.orphaned && stream.ended;
            if let Some(waker) = active.waker.take() {
                wakers.push(waker);
            }
            if free {
                *state = State::Free;
                slots.free.push(slot);
            }
            return;
        }
        let payload = reaped.payload.expect("a one-shot completion is final");
        if active.orphaned {
            *state = State::Free;
            slots.free.push(slot);
            return;
        }
        match active.waker.take() {
            Some(waker) => wakers.push(waker),
            None => {
                // Nobody awaits this operation: its owner polls for it (the engine). Wake the
                // tasks that drive such owners.
                self.unawaited_completions
                    .set(self.unawaited_completions.get() + 1);
                wakers.append(&mut self.unawaited_waiters.borrow_mut());
            }
        }
        *state = State::Done(reaped.result, payload);
    }

    /// How many operations nobody awaited have completed on this reactor so far.
    pub fn unawaited_completions(&self) -> u64 {
        self.unawaited_completions.get()
    }

    /// Wakes `waker` at the next completion of an operation nobody awaits.
    pub fn wake_on_unawaited_completion(&self, waker: &Waker) {
        let mut waiters = self.unawaited_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }
}

/// Resolves once an operation submitted without a waker (the engine's synchronous file I/O)
/// has completed on this core after the future was created. See [`file_io_completed`].
pub struct FileIoCompleted {
    reactor: std::rc::Rc<Reactor>,
    seen: u64,
}

impl std::future::Future for FileIoCompleted {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.reactor.unawaited_completions() != self.seen {
            return Poll::Ready(());
        }
        self.reactor.wake_on_unawaited_completion(cx.waker());
        Poll::Pending
    }
}

/// Waits until an operation submitted without a waker (a `UringFile` operation of the engine,
/// which the engine reaps by polling) completes on this core. The task that drives a shard's
/// `poll` awaits this while the shard's I/O is in flight, instead of spinning: the core then
/// sleeps in its ring until the disk answers. Must be called on a core.
pub fn file_io_completed() -> FileIoCompleted {
    let reactor = crate::executor::current().reactor.clone();
    let seen = reactor.unawaited_completions();
    FileIoCompleted { reactor, seen }
}

fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(existing) if existing.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// A future for one one-shot operation: resolves to its result and buffer. Dropping it before
/// completion cancels the operation (its buffer stays with the ring until the kernel is done).
pub struct OpFuture {
    reactor: std::rc::Rc<Reactor>,
    id: Option<OpId>,
}

impl OpFuture {
    pub fn new(reactor: std::rc::Rc<Reactor>, id: OpId) -> OpFuture {
        OpFuture {
            reactor,
            id: Some(id),
        }
    }
}

impl std::future::Future for OpFuture {
    type Output = (i32, Payload);
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id.expect("OpFuture polled after completion");
        let polled = self.reactor.poll_op(id, cx);
        if polled.is_ready() {
            self.id = None;
        }
        polled
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.reactor.cancel(id);
        }
    }
}

/// Submits `op` on `reactor`, waiting (by yielding to other tasks and the ring) while the reactor
/// is full. Returns the future of the operation.
pub async fn submit_async(reactor: &std::rc::Rc<Reactor>, op: OpSpec) -> OpFuture {
    let mut op = op;
    loop {
        match reactor.submit(op) {
            Ok(id) => return OpFuture::new(reactor.clone(), id),
            Err(QueueFull(back)) => {
                op = back;
                crate::executor::yield_now().await;
            }
        }
    }
}
