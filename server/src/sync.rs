//! Single-core synchronisation between tasks: a one-shot result slot, a wakeup flag, a one-time
//! broadcast event, and a race of two futures. The runtime offers none of these (it has spawn,
//! timers and the mesh), and every server task lives on one core, so these are `Rc`/`RefCell`
//! based and never cross threads.
//!
//! Invariants: each holds at most one value or flag and a bounded set of wakers (one per waiting
//! task, and a task waits on one of them at a time), so none is an unbounded queue; a wakeup is
//! never lost, because the flag or value is set before wakers are woken and every future checks
//! the state before registering its waker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A value set once by a producer and taken once by a consumer.
pub struct Slot<T> {
    value: RefCell<Option<T>>,
    waker: RefCell<Option<Waker>>,
}

impl<T> Slot<T> {
    pub fn new() -> Rc<Slot<T>> {
        Rc::new(Slot {
            value: RefCell::new(None),
            waker: RefCell::new(None),
        })
    }

    /// A slot that already holds `value`.
    pub fn ready(value: T) -> Rc<Slot<T>> {
        Rc::new(Slot {
            value: RefCell::new(Some(value)),
            waker: RefCell::new(None),
        })
    }

    /// Stores the value and wakes the consumer. Panics if a value is already there: each slot has
    /// exactly one producer that fills it once.
    pub fn fill(&self, value: T) {
        let previous = self.value.borrow_mut().replace(value);
        assert!(previous.is_none(), "a result slot was filled twice");
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn is_filled(&self) -> bool {
        self.value.borrow().is_some()
    }

    /// Takes the value if it is there.
    pub fn take(&self) -> Option<T> {
        self.value.borrow_mut().take()
    }

    /// Waits for the value and takes it.
    pub fn wait(self: &Rc<Self>) -> SlotWait<T> {
        SlotWait { slot: self.clone() }
    }
}

/// The future of [`Slot::wait`].
pub struct SlotWait<T> {
    slot: Rc<Slot<T>>,
}

impl<T> Future for SlotWait<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(value) = self.slot.take() {
            return Poll::Ready(value);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A wakeup flag for one waiting task: `notify` sets it, `notified` waits for it and clears it.
/// Several notifies before the wait count as one.
#[derive(Default)]
pub struct Notify {
    flag: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn new() -> Rc<Notify> {
        Rc::new(Notify::default())
    }

    pub fn notify(&self) {
        self.flag.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until notified since the last wait returned.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self }
    }
}

/// The future of [`Notify::notified`].
pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.flag.replace(false) {
            return Poll::Ready(());
        }
        *self.notify.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A flag set once that any number of tasks wait for (shutdown).
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    /// Waiting futures by id; a future removes its entry when dropped, so the map holds one entry
    /// per live waiting future.
    wakers: RefCell<HashMap<u64, Waker>>,
    next_id: Cell<u64>,
}

impl Event {
    pub fn new() -> Rc<Event> {
        Rc::new(Event::default())
    }

    pub fn set(&self) {
        self.set.set(true);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub fn wait(&self) -> EventWait<'_> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        EventWait { event: self, id }
    }
}

/// The future of [`Event::wait`].
pub struct EventWait<'a> {
    event: &'a Event,
    id: u64,
}

impl Future for EventWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.set.get() {
            return Poll::Ready(());
        }
        self.event
            .wakers
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        self.event.wakers.borrow_mut().remove(&self.id);
    }
}

/// Which future of a [`race`] finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Runs two futures until the first completes; the other is dropped (cancelled). `left` is polled
/// first, so it wins a tie.
pub async fn race<A: Future, B: Future>(left: A, right: B) -> Either<A::Output, B::Output> {
    let mut left = std::pin::pin!(left);
    let mut right = std::pin::pin!(right);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(value) = left.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(value));
        }
        if let Poll::Ready(value) = right.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(value));
        }
        Poll::Pending
    })
    .await
}
