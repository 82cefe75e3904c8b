//! One shard on its core: runs calls against the engine and holds each result back until the
//! engine says it may be acknowledged.
//!
//! Invariants:
//! - a write's result (Put, Delete, MultiPut) is released only once `acked_lsn() >= lsn` of its
//!   last record, so no client hears of a write the sync policy does not yet cover;
//! - a read's result is released only once `acked_lsn()` reaches the engine's `read_barrier` for
//!   the keys it read (for a scan: the engine's `scan_barrier`, the newest unacknowledged write,
//!   which covers deletes of keys the scan no longer sees), so no client reads an unacknowledged
//!   write;
//! - after the engine fails (an I/O error, corruption) the shard is `Failed`: every waiting and
//!   later call gets `ShardFailed` with the engine's message, until the server restarts;
//! - waiting results are bounded by the calls in flight, themselves bounded by connections times
//!   `connection_in_flight_max`;
//! - a call naming a key that a prepared cross-shard transaction holds locked is parked in that
//!   key's wait queue (at most `TXN_LOCK_WAITERS_MAX`; past it the call is answered `Busy`) and
//!   run again, in arrival order, as soon as a Decide or Finish on this shard unlocks the key; a
//!   call parked longer than `TXN_LOCK_WAIT_MAX` is answered `Busy`, so nothing waits forever.
//!   Two-phase-commit steps other than Prepare name no key and never wait for a lock.
//! - a single-key GET (native or RESP) whose value must be read from the value log does not
//!   block the core: the engine submits the read (`start_get`) and the result is built when a
//!   later `drive` collects it (`take_gets`), then waits for the read barrier taken at the start
//!   like any read. `reading` holds those GETs; it is bounded by the calls in flight, and the
//!   engine's own bound (`VLOG_READS_IN_FLIGHT_MAX`, past it a synchronous read). Once the shard
//!   fails or closes, every GET in `reading` is answered with the failure.

use crate::call::{CallOutput, CallResult, PutItem, ShardOp, ShardReport};
use crate::constants::{TXN_LOCK_WAITERS_MAX, TXN_LOCK_WAIT_MAX};
use crate::resp::shard_op::{RespOp, RespOutput};
use crate::shard_host::{
    FinishedGet, GetStarted, Lsn, OpKind, Progress, ShardEngine, StoreError, StoredValue, TxnPart,
};
use crate::sync::Slot;
use jube_engine::clock::Clock;
use jube_protocol::resp::Reply;
use jube_protocol::{Failure, GetReply, Status};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

/// Where a call's result goes: a slot on this core, or a ticket of another core.
pub enum ReplyTo {
    Local(Rc<Slot<CallResult>>),
    Remote { core: usize, ticket: u64 },
}

/// A result ready to deliver.
pub type Delivery = (ReplyTo, CallResult);

enum State {
    Open(Box<dyn ShardEngine>),
    Failed(StoreError),
    Closed,
}

/// A call's result, possibly waiting for an LSN to be acknowledged.
enum Outcome {
    Ready(CallResult),
    After(Lsn, CallResult),
    /// The engine refused: `key` is locked by a prepared transaction (nothing was done).
    Locked(Vec<u8>),
    /// A GET whose value read is on the disk, under the engine's ticket.
    Reading(u64, PendingGet),
}

/// How a GET's answer is shaped, kept while its value read is on the disk.
enum GetShape {
    Native { with_version: bool, with_ttl: bool },
    Resp,
}

/// A GET waiting for its value read: what its answer needs besides the value.
struct PendingGet {
    shape: GetShape,
    /// The read barrier of the key when the GET started (the write it observed).
    barrier: Option<Lsn>,
    wall_ms: u64,
}

impl PendingGet {
    /// The call's output for `value` (None: absent).
    fn output(&self, value: Option<StoredValue>) -> CallOutput {
        let value = value.and_then(|value| live(value, self.wall_ms));
        match self.shape {
            GetShape::Native {
                with_version,
                with_ttl,
            } => CallOutput::Get(get_reply(value, with_version, with_ttl, self.wall_ms)),
            GetShape::Resp => CallOutput::Resp(RespOutput::Reply(Reply::Bulk(
                value.map(|value| value.bytes),
            ))),
        }
    }
}

/// A call waiting for a key's lock to go.
struct Parked {
    op: ShardOp,
    reply_to: ReplyTo,
    /// When it was first parked (engine-monotonic ns), for `TXN_LOCK_WAIT_MAX`.
    since_ns: u64,
}

pub struct ShardWorker {
    shard: usize,
    state: RefCell<State>,
    clock: Rc<dyn Clock>,
    /// Results waiting for `acked_lsn`, by (LSN, arrival) so that they leave in LSN order.
    waiters: RefCell<BTreeMap<(Lsn, u64), Delivery>>,
    arrivals: Cell<u64>,
    calls: Cell<u64>,
    call_errors: Cell<u64>,
    /// What the engine reported at the last drive, to log checkpoints and rollovers.
    progress: Cell<Progress>,
    /// Calls waiting for a locked key, per key, oldest first.
    parked: RefCell<BTreeMap<Vec<u8>, VecDeque<Parked>>>,
    parked_count: Cell<usize>,
    /// Calls parked behind a lock (each time), and calls answered Busy for a lock (queue full or
    /// waited too long).
    lock_waits: Cell<u64>,
    lock_busy: Cell<u64>,
    /// GETs whose value read is on the disk, by the engine's ticket.
    reading: RefCell<HashMap<u64, (ReplyTo, PendingGet)>>,
    /// Scratch for the engine's finished GETs.
    finished: RefCell<Vec<FinishedGet>>,
}

fn failure(error: &StoreError) -> Failure {
    Failure::new(error.status(), error.message())
}

impl ShardWorker {
    pub fn open(shard: usize, engine: Box<dyn ShardEngine>, clock: Rc<dyn Clock>) -> ShardWorker {
        ShardWorker::with_state(shard, State::Open(engine), clock)
    }

    /// A shard that could not be opened: it answers every call with `error`.
    pub fn failed(shard: usize, error: StoreError, clock: Rc<dyn Clock>) -> ShardWorker {
        ShardWorker::with_state(shard, State::Failed(error), clock)
    }

    fn with_state(shard: usize, state: State, clock: Rc<dyn Clock>) -> ShardWorker {
        ShardWorker {
            shard,
            state: RefCell::new(state),
            clock,
            waiters: RefCell::new(BTreeMap::new()),
            arrivals: Cell::new(0),
            calls: Cell::new(0),
            call_errors: Cell::new(0),
            progress: Cell::new(Progress::default()),
            parked: RefCell::new(BTreeMap::new()),
            parked_count: Cell::new(0),
            lock_waits: Cell::new(0),
            lock_busy: Cell::new(0),
            reading: RefCell::new(HashMap::new()),
            finished: RefCell::new(Vec::new()),
        }
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Runs `op`; returns the results that may be delivered now: its own unless it waits for its
    /// LSN to be acknowledged (see [`ShardWorker::drive`]) or for a locked key, plus those of
    /// parked calls that a Decide or Finish let run.
    /// `ready` is the caller's buffer (appended to, never cleared), so a call allocates nothing
    /// for its delivery.
    pub fn call(&self, op: ShardOp, reply_to: ReplyTo, ready: &mut Vec<Delivery>) {
        self.calls.set(self.calls.get() + 1);
        self.submit(op, reply_to, self.clock.monotonic_ns(), ready);
    }

    /// Runs `op` unless one of its keys is locked (then parks it); appends what is ready.
    fn submit(&self, op: ShardOp, reply_to: ReplyTo, since_ns: u64, ready: &mut Vec<Delivery>) {
        if let Some(key) = self.locked_key(&op) {
            self.park(
                key,
                Parked {
                    op,
                    reply_to,
                    since_ns,
                },
                ready,
            );
            return;
        }
        let unlocks = matches!(op, ShardOp::DecideTxn { .. } | ShardOp::FinishTxn { .. });
        // Only scans can meet a lock without naming the key: keep a copy to park them.
        let retry = op.names_no_key().then(|| op.clone());
        match self.run(op) {
            Outcome::Ready(result) => ready.push(self.counted((reply_to, result))),
            Outcome::After(lsn, result) => self.after(lsn, (reply_to, result), ready),
            Outcome::Reading(ticket, pending) => {
                let old = self
                    .reading
                    .borrow_mut()
                    .insert(ticket, (reply_to, pending));
                assert!(old.is_none(), "the engine's GET tickets are unique");
            }
            Outcome::Locked(key) => match retry {
                Some(op) => self.park(
                    key,
                    Parked {
                        op,
                        reply_to,
                        since_ns,
                    },
                    ready,
                ),
                None => ready.push(self.counted((
                    reply_to,
                    Err(Failure::new(
                        Status::Busy,
                        "a key is locked by a transaction: retry",
                    )),
                ))),
            },
        }
        if unlocks {
            self.wake(ready);
        }
    }

    /// Delivers `delivery` now if `lsn` is acknowledged, else once it is.
    fn after(&self, lsn: Lsn, delivery: Delivery, ready: &mut Vec<Delivery>) {
        if self.acked_lsn().is_some_and(|acked| acked >= lsn) {
            ready.push(self.counted(delivery));
        } else {
            let arrival = self.arrivals.get();
            self.arrivals.set(arrival + 1);
            self.waiters.borrow_mut().insert((lsn, arrival), delivery);
        }
    }

    /// Collects the engine's finished GETs: each waits for its read barrier like any read.
    fn collect_gets(&self, ready: &mut Vec<Delivery>) {
        let mut finished = std::mem::take(&mut *self.finished.borrow_mut());
        if let State::Open(engine) = &mut *self.state.borrow_mut() {
            engine.take_gets(&mut finished);
        }
        for (ticket, result) in finished.drain(..) {
            let entry = self.reading.borrow_mut().remove(&ticket);
            let (reply_to, pending) = entry.expect("a finished GET was started here");
            match result {
                Ok(value) => {
                    let output = Ok(pending.output(value));
                    let lsn = pending.barrier.unwrap_or(0);
                    self.after(lsn, (reply_to, output), ready);
                }
                Err(error) => {
                    ready.push(self.counted((reply_to, Err(failure(&error)))));
                    if matches!(error, StoreError::Failed(_)) {
                        self.fail(error);
                    }
                }
            }
        }
        *self.finished.borrow_mut() = finished;
    }

    /// Starts a GET of `key`; answers at once, or leaves it to `collect_gets`.
    fn start_get(
        engine: &mut dyn ShardEngine,
        key: &[u8],
        shape: GetShape,
        wall_ms: u64,
    ) -> Result<Outcome, StoreError> {
        let pending = PendingGet {
            shape,
            barrier: engine.read_barrier(key),
            wall_ms,
        };
        Ok(match engine.start_get(key)? {
            GetStarted::Done(value) => {
                let output = Ok(pending.output(value));
                match pending.barrier {
                    Some(lsn) => Outcome::After(lsn, output),
                    None => Outcome::Ready(output),
                }
            }
            GetStarted::Pending(ticket) => Outcome::Reading(ticket, pending),
        })
    }

    /// The first key of `op` held by a prepared transaction.
    fn locked_key(&self, op: &ShardOp) -> Option<Vec<u8>> {
        let state = self.state.borrow();
        let State::Open(engine) = &*state else {
            return None;
        };
        // The common single-key op looks its key up without collecting the keys into a Vec.
        if let Some(key) = op.single_key() {
            return engine.lock_holder(key).is_some().then(|| key.to_vec());
        }
        op.keys()
            .into_iter()
            .find(|key| engine.lock_holder(key).is_some())
            .map(<[u8]>::to_vec)
    }

    fn park(&self, key: Vec<u8>, parked: Parked, ready: &mut Vec<Delivery>) {
        let mut queues = self.parked.borrow_mut();
        let queue = queues.entry(key).or_default();
        if queue.len() >= TXN_LOCK_WAITERS_MAX {
            drop(queues);
            self.lock_busy.set(self.lock_busy.get() + 1);
            let failure = Failure::new(
                Status::Busy,
                format!(
                    "{TXN_LOCK_WAITERS_MAX} calls already wait for a key locked by a transaction: retry"
                ),
            );
            ready.push(self.counted((parked.reply_to, Err(failure))));
            return;
        }
        queue.push_back(parked);
        self.parked_count.set(self.parked_count.get() + 1);
        self.lock_waits.set(self.lock_waits.get() + 1);
    }

    /// Runs again, oldest first, every parked call whose key is no longer locked.
    fn wake(&self, ready: &mut Vec<Delivery>) {
        let free: Vec<Vec<u8>> = {
            let state = self.state.borrow();
            let queues = self.parked.borrow();
            match &*state {
                State::Open(engine) => queues
                    .keys()
                    .filter(|key| engine.lock_holder(key).is_none())
                    .cloned()
                    .collect(),
                // Failed or closed: `drive` answers every parked call.
                _ => Vec::new(),
            }
        };
        for key in free {
            let queue = self.parked.borrow_mut().remove(&key).unwrap_or_default();
            self.parked_count
                .set(self.parked_count.get().saturating_sub(queue.len()));
            for parked in queue {
                self.submit(parked.op, parked.reply_to, parked.since_ns, ready);
            }
        }
    }

    /// Answers `Busy` to parked calls that waited longer than `TXN_LOCK_WAIT_MAX`, or every
    /// parked call with `failure` if the shard no longer serves.
    fn expire_parked(&self, failure: Option<&Failure>, ready: &mut Vec<Delivery>) {
        if self.parked_count.get() == 0 {
            return;
        }
        let now_ns = self.clock.monotonic_ns();
        let wait_ns = u64::try_from(TXN_LOCK_WAIT_MAX.as_nanos()).unwrap_or(u64::MAX);
        let mut queues = self.parked.borrow_mut();
        let mut expired = Vec::new();
        for queue in queues.values_mut() {
            while queue.front().is_some_and(|parked| {
                failure.is_some() || now_ns.saturating_sub(parked.since_ns) > wait_ns
            }) {
                if let Some(parked) = queue.pop_front() {
                    expired.push(parked);
                }
            }
        }
        queues.retain(|_, queue| !queue.is_empty());
        drop(queues);
        self.parked_count
            .set(self.parked_count.get().saturating_sub(expired.len()));
        for parked in expired {
            let result = match failure {
                Some(failure) => Err(failure.clone()),
                None => {
                    self.lock_busy.set(self.lock_busy.get() + 1);
                    Err(Failure::new(
                        Status::Busy,
                        format!(
                            "a key stayed locked by a transaction for over {} ms: retry",
                            TXN_LOCK_WAIT_MAX.as_millis()
                        ),
                    ))
                }
            };
            ready.push(self.counted((parked.reply_to, result)));
        }
    }

    fn counted(&self, delivery: Delivery) -> Delivery {
        if delivery.1.is_err() {
            self.call_errors.set(self.call_errors.get() + 1);
        }
        delivery
    }

    fn acked_lsn(&self) -> Option<Lsn> {
        match &*self.state.borrow() {
            State::Open(engine) => Some(engine.acked_lsn()),
            _ => None,
        }
    }

    /// Whether results wait for acknowledgement or for a value read.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.borrow().is_empty() || !self.reading.borrow().is_empty()
    }

    fn run(&self, op: ShardOp) -> Outcome {
        let mut state = self.state.borrow_mut();
        let engine = match &mut *state {
            State::Open(engine) => engine,
            State::Failed(error) => return Outcome::Ready(Err(failure(error))),
            State::Closed => {
                return Outcome::Ready(Err(Failure::new(
                    Status::ShuttingDown,
                    "the shard is closed: the server is stopping",
                )))
            }
        };
        // The engine's time, not the wall clock: expiry follows the monotonic clock from the
        // shard's open, so a wall clock set back or forward neither resurrects nor expires keys.
        let wall_ms = engine.now_ms();
        // Single-key GETs may leave their value read on the disk.
        let started = match &op {
            ShardOp::Get {
                key,
                with_version,
                with_ttl,
            } => {
                let shape = GetShape::Native {
                    with_version: *with_version,
                    with_ttl: *with_ttl,
                };
                Some(Self::start_get(engine.as_mut(), key, shape, wall_ms))
            }
            ShardOp::Resp(RespOp::Get { key }) => Some(Self::start_get(
                engine.as_mut(),
                key,
                GetShape::Resp,
                wall_ms,
            )),
            _ => None,
        };
        let result = match (started, op) {
            (Some(Ok(outcome)), _) => return outcome,
            (Some(Err(error)), _) => Err(error),
            (None, op) => self.run_op(engine.as_mut(), op, wall_ms),
        };
        drop(state);
        self.outcome(result)
    }

    /// Runs every op but the single-key GETs `run` starts.
    fn run_op(&self, engine: &mut dyn ShardEngine, op: ShardOp, wall_ms: u64) -> Read<CallOutput> {
        match op {
            ShardOp::Get { .. } => unreachable!("`run` starts single-key GETs"),
            ShardOp::Put { key, value, ttl_ms } => {
                let expiry_ms = ttl_ms.map(|ttl| wall_ms.saturating_add(ttl));
                engine
                    .put(&key, &value, expiry_ms)
                    .map(|lsn| (Some(lsn), CallOutput::Done))
            }
            ShardOp::Delete { key } => engine
                .delete(&key)
                .map(|(_, lsn)| (Some(lsn), CallOutput::Done)),
            ShardOp::MultiGet { items } => multi_get(engine, items, wall_ms),
            ShardOp::MultiPut { entries } => multi_put(engine, entries, wall_ms),
            ShardOp::Scan {
                start,
                end,
                limit,
                reverse,
            } => scan(engine, &start, &end, limit, reverse, wall_ms)
                .map(|output| (Some(engine.scan_barrier().unwrap_or(0)), output)),
            ShardOp::Checkpoint => engine
                .checkpoint()
                .map(|()| (None, CallOutput::Checkpointed)),
            ShardOp::Report => Ok((None, CallOutput::Done)),
            ShardOp::Resp(op) => crate::resp::shard_op::run(engine, op, wall_ms),
            ShardOp::ApplyTxn(mut part) => {
                resolve_ttls(&mut part, wall_ms);
                engine.apply_txn(&part).map(|reply| {
                    let output = CallOutput::Txn {
                        outcome: reply.outcome,
                        now_ms: wall_ms,
                    };
                    (Some(reply.wait_lsn), output)
                })
            }
            ShardOp::PrepareTxn(mut request) => {
                resolve_ttls(&mut request.part, wall_ms);
                engine.prepare_txn(&request).map(|reply| {
                    // A prepared part waits in the coordinator (AwaitDurable); a failed one may
                    // reveal data, so its answer waits for what it read.
                    let wait = match &reply {
                        crate::shard_host::PrepareReply::Failed { wait_lsn, .. } => Some(*wait_lsn),
                        crate::shard_host::PrepareReply::Prepared { .. } => None,
                    };
                    let output = CallOutput::Prepared {
                        reply,
                        now_ms: wall_ms,
                    };
                    (wait, output)
                })
            }
            ShardOp::DecideTxn { id, participants } => engine
                .decide_txn(id, &participants)
                .map(|lsn| (None, CallOutput::Logged(lsn))),
            ShardOp::FinishTxn { id, commit } => engine
                .finish_txn(id, commit)
                .map(|lsn| (None, CallOutput::Logged(lsn))),
            ShardOp::ForgetDecision { id } => {
                engine.forget_decision(id);
                Ok((None, CallOutput::Done))
            }
            ShardOp::AwaitLsn { lsn } => Ok((Some(lsn), CallOutput::Done)),
            ShardOp::TxnRecovery => Ok((
                None,
                CallOutput::Recovery {
                    in_doubt: engine.in_doubt(),
                    decisions: engine.recovered_decisions(),
                },
            )),
            ShardOp::Decision { id } => Ok((None, CallOutput::Decision(engine.decision(id)))),
        }
    }

    /// What a call's result means for its delivery; fails the shard on an engine failure (the
    /// shard's state must not be borrowed).
    fn outcome(&self, result: Read<CallOutput>) -> Outcome {
        match result {
            Ok((Some(lsn), output)) => Outcome::After(lsn, Ok(output)),
            Ok((None, output)) => Outcome::Ready(Ok(output)),
            Err(StoreError::Locked { key, .. }) => Outcome::Locked(key),
            Err(error) => {
                let response = Err(failure(&error));
                if matches!(error, StoreError::Failed(_)) {
                    self.fail(error);
                }
                Outcome::Ready(response)
            }
        }
    }

    /// Poisons the shard: waiting results become `ShardFailed`.
    fn fail(&self, error: StoreError) {
        tracing::error!(shard = self.shard, %error, "shard failed: it refuses work until the server restarts");
        *self.state.borrow_mut() = State::Failed(error);
    }

    /// Polls the engine, then returns every waiting result whose LSN is acknowledged (all of them,
    /// as failures, if the engine failed).
    pub fn drive(&self) -> Vec<Delivery> {
        let polled = match &mut *self.state.borrow_mut() {
            State::Open(engine) => engine.poll().map(|()| Some(engine.acked_lsn())),
            _ => Ok(None),
        };
        let acked = match polled {
            Ok(acked) => acked,
            Err(error) => {
                self.fail(error);
                None
            }
        };
        self.log_progress();
        let mut gets = Vec::new();
        self.collect_gets(&mut gets);
        let acked = acked.and(self.acked_lsn());
        let ready: Vec<Delivery> = {
            let mut waiters = self.waiters.borrow_mut();
            let keep = match acked {
                Some(acked) => waiters.split_off(&(acked.saturating_add(1), 0)),
                None => BTreeMap::new(),
            };
            std::mem::replace(&mut *waiters, keep)
                .into_values()
                .collect()
        };
        let error = match &*self.state.borrow() {
            State::Open(_) => None,
            State::Failed(error) => Some(failure(error)),
            State::Closed => Some(Failure::new(
                Status::ShuttingDown,
                "the shard closed before the write was acknowledged",
            )),
        };
        if let Some(failure) = &error {
            let reading = std::mem::take(&mut *self.reading.borrow_mut());
            for (_, (reply_to, _)) in reading {
                gets.push(self.counted((reply_to, Err(failure.clone()))));
            }
        }
        let mut delivered: Vec<Delivery> = ready
            .into_iter()
            .map(|(to, result)| match &error {
                Some(failure) => self.counted((to, Err(failure.clone()))),
                None => (to, result),
            })
            .collect();
        delivered.append(&mut gets);
        self.expire_parked(error.as_ref(), &mut delivered);
        delivered
    }

    /// Logs checkpoint starts and ends and WAL rollovers the last poll made.
    fn log_progress(&self) {
        let now = match &*self.state.borrow() {
            State::Open(engine) => engine.progress(),
            _ => return,
        };
        let before = self.progress.replace(now);
        let shard = self.shard;
        if now.checkpoint_running && !before.checkpoint_running {
            tracing::info!(shard, "checkpoint started");
        }
        if now.checkpoints > before.checkpoints {
            tracing::info!(
                shard,
                checkpoint_lsn = now.checkpoint_lsn,
                duration_us = now.last_checkpoint_us,
                "checkpoint finished"
            );
        }
        if now.rollovers > before.rollovers {
            tracing::info!(
                shard,
                rollovers = now.rollovers,
                "WAL rollover to a new segment"
            );
        }
    }

    /// Whether the engine has a WAL flush or checkpoint write outstanding.
    pub fn io_in_flight(&self) -> bool {
        match &*self.state.borrow() {
            State::Open(engine) => engine.io_in_flight(),
            // GETs still reading are answered with the failure at the next drive.
            _ => !self.reading.borrow().is_empty(),
        }
    }

    /// How long until the engine wants `poll` again, if it has a deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        let deadline_ns = match &*self.state.borrow() {
            State::Open(engine) => engine.next_deadline_ns()?,
            _ => return None,
        };
        Some(Duration::from_nanos(
            deadline_ns.saturating_sub(self.clock.monotonic_ns()),
        ))
    }

    pub fn report(&self) -> ShardReport {
        let (failure, mut metrics) = match &*self.state.borrow() {
            State::Open(engine) => (None, engine.stats()),
            State::Failed(error) => (Some(error.to_string()), Vec::new()),
            State::Closed => (Some("closed".to_string()), Vec::new()),
        };
        metrics.push(("calls".to_string(), self.calls.get()));
        metrics.push(("call_errors".to_string(), self.call_errors.get()));
        metrics.push((
            "results_waiting".to_string(),
            self.waiters.borrow().len() as u64,
        ));
        metrics.push((
            "gets_reading".to_string(),
            self.reading.borrow().len() as u64,
        ));
        metrics.push(("txn_lock_waits".to_string(), self.lock_waits.get()));
        metrics.push(("txn_busy".to_string(), self.lock_busy.get()));
        metrics.push(("calls_parked".to_string(), self.parked_count.get() as u64));
        ShardReport {
            shard: self.shard,
            failure,
            metrics,
        }
    }

    /// Closes the engine (its final checkpoint). Results still waiting are answered
    /// `ShuttingDown`; there are none after a clean drain.
    pub fn close(&self) -> Result<(), StoreError> {
        let state = std::mem::replace(&mut *self.state.borrow_mut(), State::Closed);
        match state {
            State::Open(engine) => engine.close(),
            other => {
                *self.state.borrow_mut() = other;
                Ok(())
            }
        }
    }
}

/// Turns the TTLs (ms) that transaction parts carry in their Put ops' `expiry_ms` into absolute
/// deadlines on the shard's clock (`ShardOp::ApplyTxn`).
fn resolve_ttls(part: &mut TxnPart, wall_ms: u64) {
    for op in &mut part.ops {
        if let OpKind::Put { expiry_ms, .. } = &mut op.kind {
            if *expiry_ms != 0 {
                *expiry_ms = wall_ms.saturating_add(*expiry_ms);
            }
        }
    }
}

/// `value` unless its expiry has passed at `wall_ms`.
pub(crate) fn live(value: StoredValue, wall_ms: u64) -> Option<StoredValue> {
    match value.expiry_ms {
        Some(expiry_ms) if expiry_ms <= wall_ms => None,
        _ => Some(value),
    }
}

pub(crate) type Read<T> = Result<(Option<Lsn>, T), StoreError>;

/// A native GET's reply for `value` (already filtered by `live`).
fn get_reply(
    value: Option<StoredValue>,
    with_version: bool,
    with_ttl: bool,
    wall_ms: u64,
) -> Option<GetReply> {
    value.map(|value| GetReply {
        version: with_version.then_some(value.version),
        ttl_remaining_ms: if with_ttl {
            value.expiry_ms.map(|expiry| expiry - wall_ms)
        } else {
            None
        },
        value: value.bytes,
    })
}

fn multi_get(
    engine: &mut dyn ShardEngine,
    items: Vec<(usize, Vec<u8>)>,
    wall_ms: u64,
) -> Read<CallOutput> {
    let mut barrier: Option<Lsn> = None;
    let mut values = Vec::with_capacity(items.len());
    for (position, key) in items {
        let value = engine.get(&key)?.and_then(|value| live(value, wall_ms));
        barrier = barrier.max(engine.read_barrier(&key));
        values.push((position, value.map(|value| value.bytes)));
    }
    Ok((barrier, CallOutput::Values(values)))
}

fn multi_put(
    engine: &mut dyn ShardEngine,
    entries: Vec<PutItem>,
    wall_ms: u64,
) -> Read<CallOutput> {
    let mut lsn = None;
    for (key, value, ttl_ms) in entries {
        let expiry_ms = ttl_ms.map(|ttl| wall_ms.saturating_add(ttl));
        lsn = lsn.max(Some(engine.put(&key, &value, expiry_ms)?));
    }
    Ok((lsn, CallOutput::Done))
}

fn scan(
    engine: &mut dyn ShardEngine,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
    limit: usize,
    reverse: bool,
    wall_ms: u64,
) -> Result<CallOutput, StoreError> {
    let (found, more) = engine.scan(as_slice(start), as_slice(end), limit, reverse)?;
    let entries = found
        .into_iter()
        .filter_map(|(key, value)| live(value, wall_ms).map(|value| (key, value.bytes)))
        .collect();
    Ok(CallOutput::Entries { entries, more })
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
