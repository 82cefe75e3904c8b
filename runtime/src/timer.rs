//! Timers as io_uring timeouts: `sleep` and `timeout`.
//!
//! Invariant: a timer that is dropped before it fires is cancelled in the kernel (the reactor's
//! abandon path), so abandoned timers do not accumulate in the ring.

use crate::executor;
use crate::reactor::{submit_async, OpFuture};
use crate::sys::ring::OpSpec;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Completes after `duration` (an IORING_OP_TIMEOUT on the current core's ring). Must be awaited on
/// a core.
pub async fn sleep(duration: Duration) {
    let reactor = executor::current().reactor.clone();
    let op: OpFuture = submit_async(&reactor, OpSpec::Timeout { after: duration }).await;
    let (result, _) = op.await;
    debug_assert!(
        result == -libc::ETIME || result == 0,
        "timeout completed with {result}"
    );
}

/// The deadline of [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` until it completes or `duration` passes, whichever is first; the loser is
/// dropped (cancelled).
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(sleep(duration));
    Race { future, timer }.await
}

struct Race<'a, F: Future, T: Future<Output = ()>> {
    future: Pin<&'a mut F>,
    timer: Pin<&'a mut T>,
}

impl<F: Future, T: Future<Output = ()>> Future for Race<'_, F, T> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    }
}
