//! One core's router: sends each call to the core that owns its target, runs the calls other
//! cores send here, and drives this core's shards (the committer).
//!
//! A call to a local shard is a plain method call. A call to another core goes into this core's
//! outbox; the flusher task sends each target core's outbox as one mesh message (so calls made by
//! all connections during one executor tick travel together), and the receiver task runs incoming
//! calls and routes incoming results to their slots by ticket. Results go back the same way.
//!
//! Invariants:
//! - every call gets exactly one result: from its shard, or `ShuttingDown` if the target core
//!   stopped before the call reached it;
//! - outboxes and the ticket table hold only calls in flight, so they are bounded by connections
//!   times `connection_in_flight_max`; mesh lanes are bounded by the runtime, and the flusher waits
//!   (asynchronously) when one is full; the receiver never waits on a send, so two cores sending
//!   to each other cannot deadlock;
//! - the committer polls a shard whenever results wait or its I/O is in flight, and otherwise
//!   sleeps until the engine's next deadline or a new write, so an idle shard costs no CPU.

use crate::call::{Call, CallOutput, CallResult, CoreReport, MeshMessage, Return, ShardOp, Target};
use crate::constants::{
    COMMITTER_BUSY_WAIT_MIN, COMMITTER_IDLE_WAIT_MAX, MESH_BATCH_CALLS_MAX, MESH_RECV_BATCH_MAX,
};
use crate::metrics::CoreMetrics;
use crate::routing::core_of;
use crate::shard_worker::{Delivery, ReplyTo, ShardWorker};
use crate::sync::{race, Notify, Slot};
use jube_protocol::{Failure, Status};
use jube_runtime::Endpoint;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

pub struct Dispatcher {
    core: usize,
    cores: usize,
    endpoint: Endpoint<MeshMessage>,
    /// This core's shards, by shard id.
    shards: HashMap<usize, Rc<ShardWorker>>,
    pending: RefCell<HashMap<u64, Rc<Slot<CallResult>>>>,
    next_ticket: Cell<u64>,
    /// Per target core: calls and results waiting for the flusher.
    outbox_calls: RefCell<Vec<Vec<Call>>>,
    outbox_returns: RefCell<Vec<Vec<Return>>>,
    flush: Notify,
    /// Wakes the committer after a write, so that its group commit starts this tick.
    commit: Notify,
    /// The results a local call makes ready, reused by every call (empty between calls; its
    /// capacity is at most the deliveries of one call, itself bounded by the calls in flight).
    delivered: RefCell<Vec<Delivery>>,
    pub metrics: Rc<CoreMetrics>,
}

impl Dispatcher {
    pub fn new(
        endpoint: Endpoint<MeshMessage>,
        shards: Vec<Rc<ShardWorker>>,
        metrics: Rc<CoreMetrics>,
    ) -> Dispatcher {
        let cores = endpoint.cores();
        Dispatcher {
            core: endpoint.core(),
            cores,
            endpoint,
            shards: shards
                .into_iter()
                .map(|worker| (worker.shard(), worker))
                .collect(),
            pending: RefCell::new(HashMap::new()),
            next_ticket: Cell::new(0),
            outbox_calls: RefCell::new((0..cores).map(|_| Vec::new()).collect()),
            outbox_returns: RefCell::new((0..cores).map(|_| Vec::new()).collect()),
            flush: Notify::default(),
            commit: Notify::default(),
            delivered: RefCell::new(Vec::new()),
            metrics,
        }
    }

    pub fn core(&self) -> usize {
        self.core
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    fn owner(&self, target: Target) -> usize {
        match target {
            Target::Shard(shard) => core_of(shard, self.cores),
            Target::Core(core) => core,
        }
    }

    /// Sends `op` to `target`; the slot receives its result.
    pub fn call(&self, target: Target, op: ShardOp) -> Rc<Slot<CallResult>> {
        let slot = Slot::new();
        let owner = self.owner(target);
        if owner == self.core {
            self.execute(target, op, ReplyTo::Local(slot.clone()));
            return slot;
        }
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket.wrapping_add(1));
        self.pending.borrow_mut().insert(ticket, slot.clone());
        self.outbox_calls.borrow_mut()[owner].push(Call { ticket, target, op });
        self.flush.notify();
        slot
    }

    fn execute(&self, target: Target, op: ShardOp, reply_to: ReplyTo) {
        let result = match target {
            Target::Core(_) => Ok(CallOutput::Report(Box::new(self.report()))),
            Target::Shard(shard) => match self.shards.get(&shard) {
                Some(worker) => {
                    let is_write = op.is_write();
                    // The buffer is reused from call to call; delivering only fills slots and
                    // outboxes (wakers schedule, never run), so `execute` cannot re-enter here.
                    let mut delivered = std::mem::take(&mut *self.delivered.borrow_mut());
                    worker.call(op, reply_to, &mut delivered);
                    if is_write || delivered.is_empty() {
                        self.commit.notify();
                    }
                    for delivery in delivered.drain(..) {
                        self.deliver(delivery);
                    }
                    *self.delivered.borrow_mut() = delivered;
                    return;
                }
                None => Err(Failure::new(
                    Status::Internal,
                    format!("shard {shard} is not on core {}", self.core),
                )),
            },
        };
        self.deliver((reply_to, result));
    }

    fn deliver(&self, (reply_to, result): Delivery) {
        match reply_to {
            ReplyTo::Local(slot) => slot.fill(result),
            ReplyTo::Remote { core, ticket } => {
                self.outbox_returns.borrow_mut()[core].push(Return { ticket, result });
                self.flush.notify();
            }
        }
    }

    fn report(&self) -> CoreReport {
        let mut shards: Vec<_> = self.shards.values().map(|worker| worker.report()).collect();
        shards.sort_by_key(|report| report.shard);
        CoreReport {
            core: self.core,
            shards,
            snapshot: self.metrics.snapshot(),
        }
    }

    /// Sends the outboxes, batched per target core. Runs for the life of the core.
    pub async fn run_flusher(self: Rc<Self>) {
        loop {
            self.flush.notified().await;
            for target in 0..self.cores {
                let calls = std::mem::take(&mut self.outbox_calls.borrow_mut()[target]);
                let returns = std::mem::take(&mut self.outbox_returns.borrow_mut()[target]);
                self.send_calls(target, calls).await;
                self.send_returns(target, returns).await;
            }
        }
    }

    async fn send_calls(&self, target: usize, calls: Vec<Call>) {
        let mut calls = calls.into_iter().peekable();
        while calls.peek().is_some() {
            let batch: Vec<Call> = calls.by_ref().take(MESH_BATCH_CALLS_MAX).collect();
            if let Err(stopped) = self.endpoint.send(target, MeshMessage::Calls(batch)).await {
                let MeshMessage::Calls(batch) = stopped.0 else {
                    unreachable!("a calls message comes back as sent")
                };
                for call in batch {
                    if let Some(slot) = self.pending.borrow_mut().remove(&call.ticket) {
                        slot.fill(Err(Failure::new(
                            Status::ShuttingDown,
                            format!("core {target} is stopping"),
                        )));
                    }
                }
            }
        }
    }

    async fn send_returns(&self, target: usize, returns: Vec<Return>) {
        let mut returns = returns.into_iter().peekable();
        while returns.peek().is_some() {
            let batch: Vec<Return> = returns.by_ref().take(MESH_BATCH_CALLS_MAX).collect();
            if self
                .endpoint
                .send(target, MeshMessage::Returns(batch))
                .await
                .is_err()
            {
                // The caller's core is stopping: nobody waits for these results any more.
                tracing::debug!(target, "results dropped: their core is stopping");
            }
        }
    }

    /// Runs calls from other cores and routes their results back; hands results of this core's
    /// calls to their slots. Runs for the life of the core.
    pub async fn run_receiver(self: Rc<Self>) {
        let mut batch = Vec::with_capacity(MESH_RECV_BATCH_MAX);
        loop {
            self.endpoint
                .recv_batch(&mut batch, MESH_RECV_BATCH_MAX)
                .await;
            for (from, message) in batch.drain(..) {
                match message {
                    MeshMessage::Calls(calls) => {
                        for call in calls {
                            self.execute(
                                call.target,
                                call.op,
                                ReplyTo::Remote {
                                    core: from,
                                    ticket: call.ticket,
                                },
                            );
                        }
                    }
                    MeshMessage::Returns(returns) => {
                        for Return { ticket, result } in returns {
                            let slot = self.pending.borrow_mut().remove(&ticket);
                            match slot {
                                Some(slot) => slot.fill(result),
                                None => tracing::error!(
                                    from,
                                    ticket,
                                    "a result came back for no pending call"
                                ),
                            }
                        }
                    }
                }
            }
        }
    }

    /// Drives this core's shards: polls them while results wait or I/O is in flight (yielding to
    /// other tasks between polls, which lets the ring reap the engine's completions), otherwise
    /// sleeps until the earliest engine deadline or the next write. Runs for the life of the core.
    pub async fn run_committer(self: Rc<Self>) {
        let workers: Vec<Rc<ShardWorker>> = self.shards.values().cloned().collect();
        loop {
            let mut busy = false;
            let mut wait = COMMITTER_IDLE_WAIT_MAX;
            for worker in &workers {
                for delivery in worker.drive() {
                    self.deliver(delivery);
                }
                busy |= worker.io_in_flight();
                if let Some(deadline) = worker.next_deadline() {
                    wait = wait.min(deadline);
                }
            }
            if busy {
                // The engine's I/O is in flight: sleep until the ring completes some of it (or a
                // new write or deadline needs a poll), without spinning the core. This comes
                // before the deadline check: a deadline that passed while a flush is in flight
                // cannot be served before that flush completes anyway.
                let io = jube_runtime::file_io_completed();
                let _ = jube_runtime::timeout(
                    wait.max(COMMITTER_BUSY_WAIT_MIN),
                    race(io, self.commit.notified()),
                )
                .await;
                continue;
            }
            if wait == Duration::ZERO {
                jube_runtime::yield_now().await;
                continue;
            }
            // A timeout here just means "poll again": the engine's deadline or the safety net.
            let _ = jube_runtime::timeout(wait, self.commit.notified()).await;
        }
    }

    /// Whether every call this core made has its result.
    pub fn idle(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// Closes this core's shards (each a final checkpoint), logging each; true if all closed.
    pub fn close_shards(&self) -> bool {
        let mut clean = true;
        let mut ids: Vec<usize> = self.shards.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let worker = &self.shards[&id];
            let started = std::time::Instant::now();
            tracing::info!(shard = id, "closing shard: final checkpoint");
            match worker.close() {
                Ok(()) => tracing::info!(
                    shard = id,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "shard closed"
                ),
                Err(error) => {
                    clean = false;
                    tracing::error!(shard = id, %error, "shard close failed: the next start replays its WAL");
                }
            }
        }
        clean
    }
}
