//! Large frames: a per-core budget of bytes buffered for them, the connection read buffer that
//! reserves from it, and sends and receives that give up on a stalled peer.
//!
//! A frame (native request or response, RESP request or reply) above [`LARGE_FRAME_SIZE_MIN`] is
//! *large*. A connection buffers a large request only after reserving its bytes from its core's
//! input budget ([`LARGE_INPUT_BYTES_PER_CORE_MAX`]), and encodes a large reply only after
//! reserving from the output budget ([`LARGE_OUTPUT_BYTES_PER_CORE_MAX`]); past the budget it
//! waits (backpressure: a reader that waits does not read its socket, so the client's sends block
//! in TCP). Small frames never touch the budgets, so a flood of large values cannot delay small
//! requests on other connections.
//!
//! Invariants:
//! - waiters are served in arrival order (FIFO): a 17 MiB frame is not starved by a stream of
//!   1 MiB ones;
//! - `reserved <= limit + largest reservation`: a new reservation or a growth is granted only
//!   within the limit, except that the oldest holder may always grow (to at most one maximal
//!   frame). Only RESP requests grow (their total size is not known up front); native frames
//!   announce their size in the prefix, so with native traffic alone `reserved <= limit`. Letting
//!   the oldest holder grow is what makes waiting deadlock-free: the oldest holder never waits,
//!   so it finishes and releases, and every waiter eventually becomes the oldest or fits;
//! - a reservation is released when its frame leaves the buffer (the reader consumed it) or its
//!   reply was sent, or when its connection drops; a waiter that is cancelled leaves the queue;
//! - a connection's read buffer capacity is its reservation while it holds one, and shrinks back
//!   to [`INPUT_BUFFER_RETAINED_SIZE`] once its large frame is consumed; it grows geometrically
//!   when a RESP request's size is learned piecemeal, so arrival is O(bytes), never O(bytes²);
//! - a connection that holds budget and moves no byte for [`LARGE_FRAME_STALL_TIMEOUT`] is
//!   closed, so a stalled peer cannot pin the budget for longer.

use crate::constants::{
    INPUT_BUFFER_RETAINED_SIZE, LARGE_FRAME_SIZE_MIN, LARGE_FRAME_STALL_TIMEOUT,
    READ_BUFFER_SIZE_MAX, RECV_CHUNK_SIZE,
};
use crate::metrics::{BudgetSide, CoreMetrics};
use crate::sync::Notify;
use jube_runtime::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::rc::Rc;

/// One core's budget of bytes for large frames on one side (input or output).
pub struct FrameBudget {
    limit: usize,
    /// The largest single reservation: the bound on the oldest holder's overdraft.
    reservation_max: usize,
    reserved: Cell<usize>,
    /// Reservations waiting, oldest first.
    waiters: RefCell<VecDeque<Waiter>>,
    /// Tickets of the reservations held; the smallest is the oldest holder.
    holders: RefCell<BTreeSet<u64>>,
    ticket_next: Cell<u64>,
    metrics: Rc<CoreMetrics>,
    side: BudgetSide,
}

struct Waiter {
    ticket: u64,
    wake: Rc<Notify>,
}

/// Bytes reserved from a [`FrameBudget`]; released when dropped.
pub struct Reservation {
    budget: Rc<FrameBudget>,
    ticket: u64,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.holders.borrow_mut().remove(&self.ticket);
        self.budget.release(self.bytes);
    }
}

/// Removes a cancelled waiter from the queue.
struct WaitGuard<'a> {
    budget: &'a FrameBudget,
    ticket: u64,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = self.budget.waiters.borrow_mut();
        if let Some(index) = waiters.iter().position(|w| w.ticket == self.ticket) {
            waiters.remove(index);
            drop(waiters);
            // The next waiter may fit now that this one no longer blocks the head.
            self.budget.wake_all();
        }
    }
}

impl FrameBudget {
    /// A budget of `limit` bytes whose reservations are each at most `reservation_max`.
    pub fn new(
        limit: usize,
        reservation_max: usize,
        metrics: Rc<CoreMetrics>,
        side: BudgetSide,
    ) -> Rc<FrameBudget> {
        assert!(
            reservation_max <= limit,
            "a reservation of {reservation_max} bytes could never fit a budget of {limit}"
        );
        Rc::new(FrameBudget {
            limit,
            reservation_max,
            reserved: Cell::new(0),
            waiters: RefCell::new(VecDeque::new()),
            holders: RefCell::new(BTreeSet::new()),
            ticket_next: Cell::new(0),
            metrics,
            side,
        })
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> usize {
        self.reserved.get()
    }

    /// Reserves `bytes`, waiting behind earlier waiters until they fit.
    pub async fn reserve(self: &Rc<Self>, bytes: usize) -> Reservation {
        let ticket = self.ticket_next.get();
        self.ticket_next.set(ticket + 1);
        let mut reservation = Reservation {
            budget: self.clone(),
            ticket,
            bytes: 0,
        };
        self.holders.borrow_mut().insert(ticket);
        self.grow(&mut reservation, bytes).await;
        reservation
    }

    /// Grows `reservation` to `bytes` in total (no-op if it holds that much), waiting behind
    /// earlier waiters unless it is the oldest holder.
    pub async fn grow(&self, reservation: &mut Reservation, bytes: usize) {
        assert!(
            bytes <= self.reservation_max,
            "a reservation of {bytes} bytes is above the largest frame, {}",
            self.reservation_max
        );
        if bytes <= reservation.bytes {
            return;
        }
        let extra = bytes - reservation.bytes;
        if !self.grantable(reservation.ticket, extra, true) {
            self.metrics.record_budget_wait(self.side);
            let wake = Rc::new(Notify::default());
            self.waiters.borrow_mut().push_back(Waiter {
                ticket: reservation.ticket,
                wake: wake.clone(),
            });
            let guard = WaitGuard {
                budget: self,
                ticket: reservation.ticket,
            };
            while !self.grantable(reservation.ticket, extra, false) {
                wake.notified().await;
            }
            // Leaves the queue (the guard's job on cancel) and lets the next waiter look.
            drop(guard);
        }
        reservation.bytes = bytes;
        let reserved = self.reserved.get() + extra;
        self.reserved.set(reserved);
        assert!(
            reserved <= self.limit + self.reservation_max,
            "frame budget over its bound: {reserved} > {} + {}",
            self.limit,
            self.reservation_max
        );
        self.metrics.record_budget(self.side, reserved);
    }

    /// Whether `extra` bytes may go to reservation `ticket` now. A newcomer (not yet queued) must
    /// also find the queue empty, so that it does not overtake waiters; a queued waiter must be at
    /// the head. The oldest holder is always granted.
    fn grantable(&self, ticket: u64, extra: usize, newcomer: bool) -> bool {
        if self.holders.borrow().first() == Some(&ticket) {
            return true;
        }
        let waiters = self.waiters.borrow();
        let first_in_line = match waiters.front() {
            None => newcomer,
            Some(head) => !newcomer && head.ticket == ticket,
        };
        first_in_line && self.reserved.get() + extra <= self.limit
    }

    fn release(&self, bytes: usize) {
        let reserved = self
            .reserved
            .get()
            .checked_sub(bytes)
            .expect("released more than reserved");
        self.reserved.set(reserved);
        self.metrics.record_budget(self.side, reserved);
        self.wake_all();
    }

    /// Wakes every waiter to check again (the head, and a holder that became the oldest). The
    /// queue is bounded by the core's connections, and this runs once per large frame.
    fn wake_all(&self) {
        for waiter in self.waiters.borrow().iter() {
            waiter.wake.notify();
        }
    }
}

/// A connection's unread input: whole frames are decoded from its front, and a large frame's
/// bytes are reserved from the core's input budget before they are awaited.
#[derive(Default)]
pub struct InputBuffer {
    bytes: Vec<u8>,
    /// Held while the frame at the front is large; its bytes are the buffer's capacity.
    reservation: Option<Reservation>,
}

impl InputBuffer {
    /// The bytes received and not yet consumed.
    pub fn unread(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the buffer holds budget (and so must not stall).
    pub fn holds_budget(&self) -> bool {
        self.reservation.is_some()
    }

    /// Drops `count` bytes of decoded frames from the front. The reservation was for the first of
    /// them, so it is released: the next frame queues for its own.
    pub fn consume(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        self.bytes.drain(..count);
        self.reservation = None;
    }

    /// Appends received bytes.
    pub fn extend(&mut self, received: &[u8]) {
        self.bytes.extend_from_slice(received);
        assert!(
            self.bytes.len() < READ_BUFFER_SIZE_MAX,
            "the read buffer outgrew one frame: {} bytes",
            self.bytes.len()
        );
    }

    /// Makes room for the frame at the front, which needs `needed` bytes in all (as far as the
    /// decoder knows), before more bytes are received: a small frame shrinks the buffer back to
    /// its retained size; a large one reserves budget (waiting for it) and grows the buffer once.
    pub async fn prepare(&mut self, needed: usize, budget: &Rc<FrameBudget>) {
        assert!(
            needed > self.bytes.len(),
            "prepare for {needed} bytes with {} buffered",
            self.bytes.len()
        );
        if needed <= LARGE_FRAME_SIZE_MIN && self.reservation.is_none() {
            if self.bytes.capacity() > INPUT_BUFFER_RETAINED_SIZE {
                self.bytes.shrink_to(INPUT_BUFFER_RETAINED_SIZE);
            }
            return;
        }
        // The frame and one receive past it; when the size is learned piecemeal (RESP), at least
        // double the capacity, so that growing to a 16 MiB request copies O(size) bytes.
        let mut capacity = needed + RECV_CHUNK_SIZE;
        if let Some(reservation) = &self.reservation {
            if capacity > reservation.bytes() {
                capacity = capacity.max(2 * reservation.bytes());
            }
        }
        let capacity = capacity.min(READ_BUFFER_SIZE_MAX);
        match &mut self.reservation {
            Some(reservation) => budget.grow(reservation, capacity).await,
            None => self.reservation = Some(budget.reserve(capacity).await),
        }
        if self.bytes.capacity() < capacity {
            self.bytes.reserve_exact(capacity - self.bytes.len());
        }
    }
}

/// Receives into `chunk`; while the caller holds budget, gives up (Err) after
/// [`LARGE_FRAME_STALL_TIMEOUT`] without a byte.
pub async fn receive(
    stream: &TcpStream,
    chunk: Vec<u8>,
    holds_budget: bool,
) -> Result<(io::Result<usize>, Vec<u8>), jube_runtime::Elapsed> {
    if holds_budget {
        jube_runtime::timeout(LARGE_FRAME_STALL_TIMEOUT, stream.recv(chunk)).await
    } else {
        Ok(stream.recv(chunk).await)
    }
}

/// Sends `frame[offset..]`, failing if one send moves no byte for [`LARGE_FRAME_STALL_TIMEOUT`]
/// (the caller holds budget for it).
pub async fn send_large(stream: &TcpStream, frame: Vec<u8>, offset: usize) -> io::Result<()> {
    let mut frame = frame;
    let mut offset = offset;
    while offset < frame.len() {
        let sent = jube_runtime::timeout(LARGE_FRAME_STALL_TIMEOUT, stream.send(frame, offset))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing of a large reply for too long",
                )
            })?;
        let (result, back) = sent;
        frame = back;
        match result? {
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            count => offset += count,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The budget's rules, polled by hand (no runtime): grants within the limit are immediate,
    //! waiters are served in arrival order, the oldest holder's growth never waits, and a
    //! cancelled waiter leaves the queue.

    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    fn poll<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    fn budget(limit: usize, reservation_max: usize) -> Rc<FrameBudget> {
        FrameBudget::new(
            limit,
            reservation_max,
            Rc::new(CoreMetrics::default()),
            BudgetSide::Input,
        )
    }

    fn ready<T>(poll: Poll<T>) -> T {
        match poll {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("expected the reservation to be granted"),
        }
    }

    #[test]
    fn grants_within_the_limit_and_queues_past_it_in_order() {
        let budget = budget(100, 60);
        let first = ready(poll(std::pin::pin!(budget.reserve(60))));
        assert_eq!(budget.reserved(), 60);
        let mut second = Box::pin(budget.reserve(50));
        assert!(poll(second.as_mut()).is_pending(), "60 + 50 is past 100");
        // A small newcomer does not overtake the waiter even though it would fit.
        let mut third = Box::pin(budget.reserve(10));
        assert!(
            poll(third.as_mut()).is_pending(),
            "the queue is first come, first served"
        );
        drop(first);
        let second = ready(poll(second.as_mut()));
        let third = ready(poll(third.as_mut()));
        assert_eq!(budget.reserved(), 60);
        drop((second, third));
        assert_eq!(budget.reserved(), 0);
        let snapshot = budget.metrics.snapshot();
        assert_eq!(snapshot.budget_waits[0], 2);
        assert_eq!(snapshot.budget_bytes_peak[0], 60);
    }

    #[test]
    fn the_oldest_holder_grows_past_the_limit_so_growth_cannot_deadlock() {
        let budget = budget(100, 80);
        let mut old = ready(poll(std::pin::pin!(budget.reserve(50))));
        let mut young = ready(poll(std::pin::pin!(budget.reserve(50))));
        // Both want to grow to 80: the young one waits, the oldest goes over the limit.
        {
            let mut young_grows = Box::pin(budget.grow(&mut young, 80));
            assert!(poll(young_grows.as_mut()).is_pending());
            ready(poll(std::pin::pin!(budget.grow(&mut old, 80))));
            assert_eq!(budget.reserved(), 130);
            assert!(poll(young_grows.as_mut()).is_pending());
            drop(old);
            // The young one is now the oldest holder: granted.
            ready(poll(young_grows.as_mut()));
        }
        assert_eq!(budget.reserved(), 80);
        assert_eq!(young.bytes(), 80);
    }

    #[test]
    fn a_cancelled_waiter_leaves_the_queue() {
        let budget = budget(100, 100);
        let first = ready(poll(std::pin::pin!(budget.reserve(100))));
        let mut waiting = Box::pin(budget.reserve(100));
        assert!(poll(waiting.as_mut()).is_pending());
        drop(waiting);
        assert!(budget.waiters.borrow().is_empty());
        drop(first);
        ready(poll(std::pin::pin!(budget.reserve(100))));
        assert_eq!(budget.reserved(), 0);
    }

    #[test]
    fn the_input_buffer_reserves_a_large_frame_once_and_shrinks_after_it() {
        let budget = budget(64 << 20, READ_BUFFER_SIZE_MAX);
        let mut input = InputBuffer::default();
        input.extend(&[7; 100]);
        ready(poll(std::pin::pin!(input.prepare(200, &budget))));
        assert!(!input.holds_budget(), "a small frame needs no budget");
        let frame_size = 4 << 20;
        ready(poll(std::pin::pin!(input.prepare(frame_size, &budget))));
        assert!(input.holds_budget());
        assert_eq!(budget.reserved(), frame_size + RECV_CHUNK_SIZE);
        let capacity = input.bytes.capacity();
        assert!(capacity >= frame_size + RECV_CHUNK_SIZE);
        let chunk = vec![1; RECV_CHUNK_SIZE];
        while input.unread().len() + RECV_CHUNK_SIZE <= frame_size {
            input.extend(&chunk);
        }
        assert_eq!(
            input.bytes.capacity(),
            capacity,
            "no regrowth while the frame arrives"
        );
        input.consume(input.unread().len());
        assert_eq!(budget.reserved(), 0, "released with its frame");
        ready(poll(std::pin::pin!(input.prepare(10, &budget))));
        assert!(input.bytes.capacity() <= INPUT_BUFFER_RETAINED_SIZE);
    }
}
