//! The shard mesh: a bounded single-producer single-consumer queue for every ordered pair of
//! cores, with wakeups through the rings.
//!
//! Core `a` sends to core `b` by pushing into lane `(a, b)`; only `a`'s endpoint pushes and only
//! `b`'s endpoint pops, so each lane has one producer and one consumer. Invariants:
//! - a lane holds at most [`MESH_QUEUE_CAPACITY`] messages; a full lane makes `try_send` return the
//!   message and `send` wait (asynchronously: the core keeps running other tasks) until the
//!   receiver makes room. No message is ever dropped, and no core ever blocks on another;
//! - a sender wakes the receiving core only if it sleeps (its `sleeping` flag, see
//!   [`crate::executor`]), so a burst of messages to a busy or spinning core costs no syscall, and
//!   a burst to a sleeping core costs one wakeup (MSG_RING through the sender's ring, or an eventfd
//!   write);
//! - a receiver that pops from a lane whose sender waits for room wakes the sender the same way.
//!
//! Every core checks its endpoint's lanes every tick and before sleeping (the [`Inbox`] trait), so a
//! message pushed while the receiver was awake is never left unseen.

use crate::constants::MESH_QUEUE_CAPACITY;
use crate::executor::{self, CoreShared, Inbox};
use crossbeam_queue::ArrayQueue;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

struct Lane<M> {
    queue: ArrayQueue<M>,
    /// The sender found the lane full and waits for room.
    sender_waiting: AtomicBool,
}

struct MeshInner<M> {
    cores: Arc<[Arc<CoreShared>]>,
    /// Lane `(from, to)` is at `from * cores + to`.
    lanes: Box<[Lane<M>]>,
    joined: Box<[AtomicBool]>,
}

impl<M> MeshInner<M> {
    fn lane(&self, from: usize, to: usize) -> &Lane<M> {
        &self.lanes[from * self.cores.len() + to]
    }
}

/// A mesh of queues between every pair of cores. Cheap to clone and `Send`: create it once with
/// [`crate::Runtime::mesh`], hand a clone to each core, and [`Mesh::join`] it there.
pub struct Mesh<M> {
    inner: Arc<MeshInner<M>>,
}

impl<M> Clone for Mesh<M> {
    fn clone(&self) -> Self {
        Mesh {
            inner: self.inner.clone(),
        }
    }
}

/// Why a send did not happen; the message comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<M> {
    /// The lane is full: the receiver is behind. Retry later or use `send`.
    Full(M),
    /// The receiving core is shutting down.
    Stopped(M),
}

/// The receiving core is shutting down; the message comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<M>(pub M);

impl<M: Send + 'static> Mesh<M> {
    pub(crate) fn new(cores: Arc<[Arc<CoreShared>]>) -> Mesh<M> {
        let count = cores.len();
        let lanes = (0..count * count)
            .map(|_| Lane {
                queue: ArrayQueue::new(MESH_QUEUE_CAPACITY),
                sender_waiting: AtomicBool::new(false),
            })
            .collect();
        let joined = (0..count).map(|_| AtomicBool::new(false)).collect();
        Mesh {
            inner: Arc::new(MeshInner {
                cores,
                lanes,
                joined,
            }),
        }
    }

    /// This core's endpoint. Panics outside a core, or if this core already joined this mesh
    /// (two endpoints on one core would break the single-consumer rule).
    pub fn join(&self) -> Endpoint<M> {
        let core = executor::current();
        let id = core.shared.id;
        assert!(
            !self.inner.joined[id].swap(true, Ordering::AcqRel),
            "core {id} joined the same mesh twice"
        );
        let state = Rc::new(EndpointState {
            inner: self.inner.clone(),
            core: id,
            recv_waker: RefCell::new(None),
            space_waiters: RefCell::new(Vec::new()),
            next_source: Cell::new(0),
        });
        let weak: std::rc::Weak<EndpointState<M>> = Rc::downgrade(&state);
        core.register_inbox(weak);
        Endpoint { state }
    }
}

struct EndpointState<M> {
    inner: Arc<MeshInner<M>>,
    core: usize,
    recv_waker: RefCell<Option<Waker>>,
    /// Senders of this core waiting for room in lane (self, to): (to, waker).
    space_waiters: RefCell<Vec<(usize, Waker)>>,
    next_source: Cell<usize>,
}

impl<M> EndpointState<M> {
    fn has_incoming(&self) -> bool {
        (0..self.inner.cores.len()).any(|from| !self.inner.lane(from, self.core).queue.is_empty())
    }

    fn has_room(&self, to: usize) -> bool {
        !self.inner.lane(self.core, to).queue.is_full()
            || self.inner.cores[to].stopping.load(Ordering::Acquire)
    }
}

impl<M> Inbox for EndpointState<M> {
    fn ready(&self) -> bool {
        (self.recv_waker.borrow().is_some() && self.has_incoming())
            || self
                .space_waiters
                .borrow()
                .iter()
                .any(|(to, _)| self.has_room(*to))
    }

    fn wake(&self) {
        let mut woken = Vec::new();
        if self.has_incoming() {
            woken.extend(self.recv_waker.borrow_mut().take());
        }
        self.space_waiters.borrow_mut().retain(|(to, waker)| {
            if self.has_room(*to) {
                woken.push(waker.clone());
                false
            } else {
                true
            }
        });
        for waker in woken {
            waker.wake();
        }
    }
}

impl<M> Drop for EndpointState<M> {
    fn drop(&mut self) {
        self.inner.joined[self.core].store(false, Ordering::Release);
    }
}

/// One core's end of a [`Mesh`]: sends to any core, receives from all. Not `Send`.
pub struct Endpoint<M> {
    state: Rc<EndpointState<M>>,
}

impl<M> Endpoint<M> {
    /// The core this endpoint belongs to.
    pub fn core(&self) -> usize {
        self.state.core
    }

    /// The number of cores in the mesh.
    pub fn cores(&self) -> usize {
        self.state.inner.cores.len()
    }

    /// Sends without waiting; on a full lane the message comes back.
    pub fn try_send(&self, to: usize, message: M) -> Result<(), TrySendError<M>> {
        let inner = &self.state.inner;
        let target = &inner.cores[to];
        if target.stopping.load(Ordering::Acquire) {
            return Err(TrySendError::Stopped(message));
        }
        inner
            .lane(self.state.core, to)
            .queue
            .push(message)
            .map_err(TrySendError::Full)?;
        target.notify();
        Ok(())
    }

    /// Sends, waiting while the lane is full (other tasks of this core keep running).
    pub fn send(&self, to: usize, message: M) -> SendFuture<'_, M> {
        SendFuture {
            endpoint: self,
            to,
            message: Some(message),
        }
    }

    /// Takes one message from any lane into this core, fairly (round robin over senders).
    pub fn try_recv(&self) -> Option<(usize, M)> {
        let state = &self.state;
        let count = state.inner.cores.len();
        let start = state.next_source.get();
        for step in 0..count {
            let from = (start + step) % count;
            let lane = state.inner.lane(from, state.core);
            if let Some(message) = lane.queue.pop() {
                state.next_source.set((from + 1) % count);
                if lane.sender_waiting.load(Ordering::SeqCst)
                    && lane.sender_waiting.swap(false, Ordering::SeqCst)
                {
                    state.inner.cores[from].notify();
                }
                return Some((from, message));
            }
        }
        None
    }

    /// Waits for one message; returns (sender core, message).
    pub fn recv(&self) -> RecvFuture<'_, M> {
        RecvFuture { endpoint: self }
    }

    /// Waits for at least one message, then moves up to `max` into `out` (a batch per wakeup).
    pub async fn recv_batch(&self, out: &mut Vec<(usize, M)>, max: usize) -> usize {
        let first = self.recv().await;
        out.push(first);
        let mut count = 1;
        while count < max {
            let Some(message) = self.try_recv() else {
                break;
            };
            out.push(message);
            count += 1;
        }
        count
    }
}

/// The future of [`Endpoint::send`].
pub struct SendFuture<'a, M> {
    endpoint: &'a Endpoint<M>,
    to: usize,
    message: Option<M>,
}

impl<M> Unpin for SendFuture<'_, M> {}

impl<M> Future for SendFuture<'_, M> {
    type Output = Result<(), SendError<M>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let to = self.to;
        let message = self.message.take().expect("Send polled after completion");
        let message = match self.endpoint.try_send(to, message) {
            Ok(()) => return Poll::Ready(Ok(())),
            Err(TrySendError::Stopped(message)) => return Poll::Ready(Err(SendError(message))),
            Err(TrySendError::Full(message)) => message,
        };
        let state = &self.endpoint.state;
        // Announce that we wait, then retry: a receiver that popped between the failed push and
        // the announcement did not see the flag, so the retry is what catches its room.
        state
            .inner
            .lane(state.core, to)
            .sender_waiting
            .store(true, Ordering::SeqCst);
        match self.endpoint.try_send(to, message) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(TrySendError::Stopped(message)) => Poll::Ready(Err(SendError(message))),
            Err(TrySendError::Full(message)) => {
                state
                    .space_waiters
                    .borrow_mut()
                    .push((to, cx.waker().clone()));
                self.message = Some(message);
                Poll::Pending
            }
        }
    }
}

/// The future of [`Endpoint::recv`].
pub struct RecvFuture<'a, M> {
    endpoint: &'a Endpoint<M>,
}

impl<M> Future for RecvFuture<'_, M> {
    type Output = (usize, M);
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(message) = self.endpoint.try_recv() {
            return Poll::Ready(message);
        }
        *self.endpoint.state.recv_waker.borrow_mut() = Some(cx.waker().clone());
        // The executor checks every inbox each tick, so a message pushed after this check is seen
        // at the latest when this core next idles.
        match self.endpoint.try_recv() {
            Some(message) => {
                self.endpoint.state.recv_waker.borrow_mut().take();
                Poll::Ready(message)
            }
            None => Poll::Pending,
        }
    }
}
