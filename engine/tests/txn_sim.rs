//! Deterministic simulation of cross-shard transactions: several shards on one simulated disk,
//! a simulated mesh, the real two-phase-commit driver (`txn::Coordinator`), power cuts anywhere,
//! recovery and in-doubt resolution exactly as the server does them, and an independent checker.
//!
//! Strategy. Each seed builds 3 or 4 shards (tiny pages, tiny WAL segments, frequent
//! checkpoints, so WAL retention and recovery from below the checkpoint are exercised) in
//! subdirectories of one `SimDisk` with crash faults. Keys name their shard (`s2:acct1`). A few
//! clients run concurrently, each with one request in flight:
//! - bank transfers between accounts on different shards (assertion: enough balance), and on
//!   one shard (`apply_txn`);
//! - register read-modify-writes over one to three shards (each read value is unique, so the
//!   history's version order per key is known);
//! - task claims guarded by `ValueEquals(task, "open")`, which also count the claim on another
//!   shard;
//! - read-only cross-shard reads (volatile ids, locks only) and plain single-key gets.
//!
//! A register or task value names the txn that wrote it (`t<tag>`); one in four also carries a
//! filler derived from the tag that takes them above the inline threshold, so they go to the
//! value log, in small segments whose garbage collection runs at every poll: GC moves committed
//! txn values, must leave prepared ones alone, and crashes land between a txn's values and its
//! record. The checker verifies every filler byte.
//!
//! Every writing txn also puts a marker key on each participant shard. Messages between the
//! clients (which drive `Coordinator`s) and the shards' workers travel through a mesh that
//! delays each by a random number of ticks and delivers what is due in random order. Workers
//! behave like the server's ShardWorker: a call refused with `Locked` is parked (bounded) and
//! re-run when the holder is decided or finished on that shard; durability waits are answered
//! once the shard's `acked_lsn` covers them. Power cuts are scheduled a random number of disk
//! operations ahead, so they land before, during and after prepares and decisions, inside
//! group commits and checkpoints, and during recovery and resolution. After a cut: every shard
//! is reopened, every in-doubt txn is resolved with the decision its coordinator shard holds
//! (`decision`), the resolution records are waited for, and decisions are forgotten.
//!
//! Invariants checked after every recovery and at the end:
//! - no txn stays in doubt and no key stays locked after resolution;
//! - the total balance is conserved and no balance is negative;
//! - atomicity: a writing txn's markers are on all its participant shards or on none; every
//!   acknowledged commit's markers are present; a txn answered with a failure or a non-`Failed`
//!   error left none;
//! - claims: the claim counters add up to the number of claimed tasks; a claimed task names an
//!   applied claim of that task; no two acknowledged claims of one task;
//! - every value naming a txn holds exactly the bytes that txn wrote (filler included), the
//!   value log's live-byte counts match the tree and the prepared txns (`check_integrity`), and
//!   GC never met a live value it could not move (a prepared one);
//! - serializability of the register history: values are unique per write, so each read names
//!   the write it saw and each read-modify-write the write it replaced; no value is replaced
//!   twice (lost update), no acknowledged read saw a write that was never applied (dirty read),
//!   and the graph of write-read, write-write and read-write (anti-)dependencies is acyclic;
//!   the final value of each register was never replaced.
//!
//! A failure prints its seed; `JUBE_SEED=N` replays one seed, `JUBE_SEEDS=N` runs N seeds from
//! `JUBE_SEED_START` (default 0).

use jube_engine::clock::{Clock, ManualClock};
use jube_engine::shard::{Shard, ShardConfig, ShardError};
use jube_engine::storage::sim::{FaultConfig, SimDisk, SimVfs};
use jube_engine::storage::Vfs;
use jube_engine::tree::TreeConfig;
use jube_engine::txn::{
    Assertion, AssertionKind, Compare, Coordinator, Feedback, OpKind, OpOutput, Step, TxnFailure,
    TxnId, TxnOp, TxnOutcome, TxnPart, TxnReply,
};
use jube_engine::wal::{Lsn, SyncMode};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

const ACCOUNTS_PER_SHARD: usize = 4;
const REGISTERS_PER_SHARD: usize = 3;
const TASKS_PER_SHARD: usize = 5;
const BALANCE_INITIAL: i64 = 100;
const CLIENTS: usize = 6;
const TICKS: usize = 2_500;
/// Calls one worker parks for locks at most; past it the call is answered `Busy`.
const LOCK_WAITERS_MAX: usize = 8;
/// Mesh delay, in ticks, at most.
const DELAY_TICKS_MAX: usize = 3;
/// Sizes of the values that go to the value log (above the 1 KiB inline threshold of 4 KiB
/// pages).
const LARGE_VALUE_BYTES: std::ops::RangeInclusive<usize> = 1_100..=3_000;

/// The value txn `tag` writes to a register or task: `t<tag>`, and for large ones `|` and a
/// filler derived from the tag up to `len` bytes.
fn tagged_value(tag: u64, len: Option<usize>) -> Vec<u8> {
    let mut value = format!("t{tag}").into_bytes();
    if let Some(len) = len {
        value.push(b'|');
        let start = value.len();
        value.extend((start..len).map(|i| (tag as u8).wrapping_mul(7).wrapping_add(i as u8)));
    }
    value
}

/// The tag a register or task value names, if it is exactly a value `tagged_value` makes.
fn tag_of(value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(b"t")?;
    let digits = rest.split(|&b| b == b'|').next()?;
    let tag: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let len = (digits.len() + 1 < rest.len()).then_some(value.len());
    (tagged_value(tag, len) == value).then_some(tag)
}

fn shard_of(key: &[u8]) -> u32 {
    let text = std::str::from_utf8(key).expect("ascii keys");
    let end = text.find(':').expect("keys name their shard");
    text[1..end].parse().expect("shard number")
}

fn key(shard: u32, name: &str) -> Vec<u8> {
    format!("s{shard}:{name}").into_bytes()
}

fn config(shard_id: u32, sync_mode: SyncMode) -> ShardConfig {
    let mut config = ShardConfig::new(shard_id);
    config.wal.sync_mode = sync_mode;
    config.tree = TreeConfig {
        page_size: 4096,
        cache_bytes: 8 * 4096,
        shard_id,
        ..TreeConfig::default()
    };
    config.wal.segment_size_bytes = 8 * 4096;
    config.wal.flush_bytes_max = 2 * 4096;
    config.wal.buffer_bytes_max = 4 * 4096;
    config.wal.free_segments_max = 2;
    config.checkpoint_wal_bytes = 12 * 4096;
    config.checkpoint_dirty_bytes = 6 * 4096;
    config.checkpoint_interval_ms = 20;
    config.checkpoint_slice_bytes = 2 * 4096;
    config.vlog.segment_bytes = 16 * 1024;
    config.vlog.gc_slice_bytes = 8 * 1024;
    config.vlog.gc_interval_ms = 0;
    config.vlog.gc_garbage_percent = 30;
    config
}

/// A request from a client to a shard's worker.
#[derive(Debug, Clone)]
enum Call {
    Step(Step),
    Apply(TxnPart),
    Get(Vec<u8>),
}

/// A worker's answer to a client.
#[derive(Debug, Clone)]
enum Answer {
    Feedback(Feedback),
    Applied(Result<TxnReply, ShardError>),
    Got(Result<Option<Vec<u8>>, ShardError>),
}

#[derive(Debug)]
enum Message {
    ToShard {
        shard: u32,
        client: usize,
        call: Call,
    },
    ToClient {
        client: usize,
        answer: Answer,
    },
}

/// The server's ShardWorker in miniature: one shard, its parked calls and durability waits.
struct Worker {
    shard: Shard<SimVfs>,
    parked: Vec<(TxnId, usize, Call)>,
    waiting: Vec<(Lsn, usize, Answer)>,
}

/// How a txn or read ended, as its client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// No answer (a crash came first), or an error after which the outcome is unknown.
    Unknown,
    Committed(Vec<jube_engine::txn::OpResult>),
    Failed(TxnFailure),
    /// An error before anything could apply.
    Refused(ShardError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transfer,
    Registers,
    Claim,
    ReadOnly,
    Get,
}

/// One txn (or plain get) of the history.
#[derive(Debug, Clone)]
struct Record {
    tag: u64,
    kind: Kind,
    shards: Vec<u32>,
    writes: bool,
    /// Op index -> (key, kind), to interpret results.
    ops: BTreeMap<u32, (Vec<u8>, OpKind)>,
    task: Option<Vec<u8>>,
    outcome: Outcome,
}

impl Record {
    fn marker(&self, shard: u32) -> Vec<u8> {
        key(shard, &format!("mark{}", self.tag))
    }
}

enum InFlight {
    Cross {
        coordinator: Box<Coordinator>,
        record: usize,
    },
    Single {
        record: usize,
    },
    Get {
        record: usize,
        key: Vec<u8>,
    },
}

struct Sim {
    seed: u64,
    rng: ChaCha8Rng,
    disk: SimDisk,
    clock: ManualClock,
    shard_count: u32,
    workers: Vec<Worker>,
    mesh: Vec<(usize, u64, Message)>,
    mesh_seq: u64,
    tick: usize,
    clients: Vec<Option<InFlight>>,
    history: Vec<Record>,
    next_tag: u64,
    crashes: u64,
    probes: Probes,
}

/// Rare paths the run must reach (summed over seeds).
#[derive(Debug, Default, Clone)]
struct Probes {
    committed_cross: u64,
    committed_single: u64,
    failed_assertions: u64,
    parked: u64,
    resolved_commit: u64,
    resolved_abort: u64,
    recoveries: u64,
    /// Acknowledged commits that wrote a value-log value, and GC collections finished.
    committed_large: u64,
    gc_runs: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a5_5eed);
        let shard_count = rng.gen_range(3..=4);
        let mut sim = Sim {
            seed,
            rng,
            disk: SimDisk::new(seed, FaultConfig::crashes()),
            clock: ManualClock::new(1_700_000_000_000),
            shard_count,
            workers: Vec::new(),
            mesh: Vec::new(),
            mesh_seq: 0,
            tick: 0,
            clients: (0..CLIENTS).map(|_| None).collect(),
            history: Vec::new(),
            next_tag: 1,
            crashes: 0,
            probes: Probes::default(),
        };
        sim.open_all().expect("no faults at creation");
        sim.populate();
        sim
    }

    /// Half the seeds flush with one RWF_DSYNC write, half write then sync.
    fn sync_mode(&self) -> SyncMode {
        if self.seed.is_multiple_of(2) {
            SyncMode::WriteDsync
        } else {
            SyncMode::WriteThenSync
        }
    }

    fn open_all(&mut self) -> Result<(), ShardError> {
        self.workers.clear();
        for shard_id in 0..self.shard_count {
            let vfs = self
                .disk
                .root()
                .subdir(&format!("shard-{shard_id:03}"))
                .map_err(|e| ShardError::Failed {
                    detail: e.to_string(),
                })?;
            let clock: Rc<dyn Clock> = Rc::new(self.clock.clone());
            let (shard, report) = Shard::open(vfs, config(shard_id, self.sync_mode()), clock)?;
            self.trace(format!(
                "opened shard {shard_id}: checkpoint {} wal {:?} in doubt {:?} decisions {:?}",
                report.checkpoint_lsn,
                report.wal,
                shard.in_doubt(),
                shard.recovered_decisions()
            ));
            self.workers.push(Worker {
                shard,
                parked: Vec::new(),
                waiting: Vec::new(),
            });
        }
        Ok(())
    }

    /// The initial state, written and made durable before any fault.
    fn populate(&mut self) {
        for shard in 0..self.shard_count {
            let mut part = TxnPart::default();
            let mut put = |name: String, value: &str| {
                let index = part.ops.len() as u32;
                part.ops.push(TxnOp {
                    index,
                    key: key(shard, &name),
                    kind: OpKind::Put {
                        value: value.as_bytes().to_vec(),
                        expiry_ms: 0,
                    },
                });
            };
            let balance = BALANCE_INITIAL.to_string();
            for a in 0..ACCOUNTS_PER_SHARD {
                put(format!("acct{a}"), &balance);
            }
            for r in 0..REGISTERS_PER_SHARD {
                put(format!("reg{r}"), "init");
            }
            for t in 0..TASKS_PER_SHARD {
                put(format!("task{t}"), "open");
            }
            put("claims".to_string(), "0");
            let worker = &mut self.workers[shard as usize];
            let reply = worker.shard.apply_txn(&part).expect("populate");
            while worker.shard.acked_lsn() < reply.wait_lsn {
                self.clock.advance_ns(1_000_000);
                worker.shard.poll().expect("poll");
            }
        }
    }

    fn send(&mut self, message: Message) {
        let due = self.tick + self.rng.gen_range(0..=DELAY_TICKS_MAX);
        self.mesh_seq += 1;
        self.mesh.push((due, self.mesh_seq, message));
    }

    // ----- the workload -----

    fn new_record(&mut self, kind: Kind, parts: &BTreeMap<u32, TxnPart>) -> usize {
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut ops = BTreeMap::new();
        for part in parts.values() {
            for op in &part.ops {
                ops.insert(op.index, (op.key.clone(), op.kind.clone()));
            }
        }
        let writes = parts.values().any(|p| !p.is_read_only());
        self.history.push(Record {
            tag,
            kind,
            shards: parts.keys().copied().collect(),
            writes,
            ops,
            task: None,
            outcome: Outcome::Unknown,
        });
        self.history.len() - 1
    }

    /// The length of a large value one time in four, else None (a small value).
    fn large_len(&mut self) -> Option<usize> {
        self.rng
            .gen_bool(0.25)
            .then(|| self.rng.gen_range(LARGE_VALUE_BYTES))
    }

    fn random_shard(&mut self) -> u32 {
        self.rng.gen_range(0..self.shard_count)
    }

    fn other_shard(&mut self, not: u32) -> u32 {
        (not + self.rng.gen_range(1..self.shard_count)) % self.shard_count
    }

    /// Builds a txn's parts; `items` are (key, assertion or op) in request order.
    fn build(items: Vec<(Vec<u8>, Item)>) -> BTreeMap<u32, TxnPart> {
        let mut parts: BTreeMap<u32, TxnPart> = BTreeMap::new();
        for (index, (key, item)) in items.into_iter().enumerate() {
            let index = index as u32;
            let part = parts.entry(shard_of(&key)).or_default();
            match item {
                Item::Assert(kind) => part.assertions.push(Assertion { index, key, kind }),
                Item::Op(kind) => part.ops.push(TxnOp { index, key, kind }),
            }
        }
        parts
    }

    fn start_request(&mut self, client: usize) {
        let tag = self.next_tag;
        let mut items = Vec::new();
        let kind = match self.rng.gen_range(0..100) {
            0..=34 => {
                let a = self.random_shard();
                let b = if self.rng.gen_bool(0.25) {
                    a
                } else {
                    self.other_shard(a)
                };
                let from = key(
                    a,
                    &format!("acct{}", self.rng.gen_range(0..ACCOUNTS_PER_SHARD)),
                );
                let mut to = key(
                    b,
                    &format!("acct{}", self.rng.gen_range(0..ACCOUNTS_PER_SHARD)),
                );
                if to == from {
                    to = key(b, "acct-spare");
                }
                let amount = self.rng.gen_range(1..60);
                let cmp = AssertionKind::IntCompare {
                    op: Compare::Ge,
                    operand: amount,
                };
                items.push((from.clone(), Item::Assert(cmp)));
                items.push((from, Item::Op(OpKind::Add { delta: -amount })));
                items.push((to, Item::Op(OpKind::Add { delta: amount })));
                Kind::Transfer
            }
            35..=59 => {
                for _ in 0..self.rng.gen_range(1..=3) {
                    let shard = self.random_shard();
                    let reg = key(
                        shard,
                        &format!("reg{}", self.rng.gen_range(0..REGISTERS_PER_SHARD)),
                    );
                    if items.iter().any(|(k, _)| *k == reg) {
                        continue;
                    }
                    let read = OpKind::Read { with_version: true };
                    items.push((reg.clone(), Item::Op(read)));
                    let value = tagged_value(tag, self.large_len());
                    let put = OpKind::Put {
                        value,
                        expiry_ms: 0,
                    };
                    items.push((reg, Item::Op(put)));
                }
                Kind::Registers
            }
            60..=74 => {
                let shard = self.random_shard();
                let task = key(
                    shard,
                    &format!("task{}", self.rng.gen_range(0..TASKS_PER_SHARD)),
                );
                let counter_shard = self.other_shard(shard);
                let open = AssertionKind::ValueEquals(b"open".to_vec());
                items.push((task.clone(), Item::Assert(open)));
                let claim = OpKind::Put {
                    value: tagged_value(tag, self.large_len()),
                    expiry_ms: 0,
                };
                items.push((task, Item::Op(claim)));
                items.push((
                    key(counter_shard, "claims"),
                    Item::Op(OpKind::Add { delta: 1 }),
                ));
                Kind::Claim
            }
            75..=84 => {
                let a = self.random_shard();
                let b = self.other_shard(a);
                for shard in [a, b] {
                    let reg = key(
                        shard,
                        &format!("reg{}", self.rng.gen_range(0..REGISTERS_PER_SHARD)),
                    );
                    items.push((
                        reg,
                        Item::Op(OpKind::Read {
                            with_version: false,
                        }),
                    ));
                }
                Kind::ReadOnly
            }
            _ => {
                let shard = self.random_shard();
                let reg = key(
                    shard,
                    &format!("reg{}", self.rng.gen_range(0..REGISTERS_PER_SHARD)),
                );
                let parts = Sim::build(vec![(
                    reg.clone(),
                    Item::Op(OpKind::Read {
                        with_version: false,
                    }),
                )]);
                let record = self.new_record(Kind::Get, &parts);
                self.clients[client] = Some(InFlight::Get {
                    record,
                    key: reg.clone(),
                });
                let message = Message::ToShard {
                    shard,
                    client,
                    call: Call::Get(reg),
                };
                self.send(message);
                return;
            }
        };
        let task = (kind == Kind::Claim).then(|| items[0].0.clone());
        let mut parts = Sim::build(items);
        if kind != Kind::ReadOnly {
            // Markers: the proof of which txns applied, one per participant shard.
            for (&shard, part) in parts.iter_mut() {
                let index = 1_000 + shard;
                part.ops.push(TxnOp {
                    index,
                    key: key(shard, &format!("mark{tag}")),
                    kind: OpKind::Put {
                        value: b"1".to_vec(),
                        expiry_ms: 0,
                    },
                });
            }
        }
        let record = self.new_record(kind, &parts);
        self.history[record].task = task;
        self.trace(format!(
            "client {client} starts txn {}: {parts:?}",
            self.history[record].tag
        ));
        if parts.len() == 1 {
            let (shard, part) = parts.into_iter().next().expect("one part");
            self.clients[client] = Some(InFlight::Single { record });
            let message = Message::ToShard {
                shard,
                client,
                call: Call::Apply(part),
            };
            self.send(message);
            return;
        }
        let mut coordinator = Box::new(Coordinator::new(parts.into_iter().collect()));
        let steps = coordinator.take_steps();
        self.clients[client] = Some(InFlight::Cross {
            coordinator,
            record,
        });
        self.issue(client, steps);
    }

    /// Sends a coordinator's steps; a `Reply` is the client's answer.
    fn issue(&mut self, client: usize, steps: Vec<Step>) {
        for step in steps {
            let shard = match &step {
                Step::Reply(reply) => {
                    let Some(InFlight::Cross { record, .. }) = &self.clients[client] else {
                        unreachable!("only coordinators reply")
                    };
                    let record = *record;
                    self.history[record].outcome = match reply.clone() {
                        Ok(TxnOutcome::Committed { results }) => {
                            self.probes.committed_cross += 1;
                            self.note_large(record);
                            Outcome::Committed(results)
                        }
                        Ok(TxnOutcome::Failed(failure)) => {
                            self.probes.failed_assertions += 1;
                            Outcome::Failed(failure)
                        }
                        Err(ShardError::Failed { .. }) => Outcome::Unknown,
                        Err(error) => Outcome::Refused(error),
                    };
                    continue;
                }
                Step::Prepare { shard, .. }
                | Step::AwaitDurable { shard, .. }
                | Step::Decide { shard, .. }
                | Step::Finish { shard, .. }
                | Step::Forget { shard, .. } => *shard,
            };
            let message = Message::ToShard {
                shard,
                client,
                call: Call::Step(step),
            };
            self.send(message);
        }
        let done = matches!(&self.clients[client], Some(InFlight::Cross { coordinator, .. }) if coordinator.is_done());
        if done {
            self.clients[client] = None;
        }
    }

    /// Counts an acknowledged commit of `record` that put a value into the value log.
    fn note_large(&mut self, record: usize) {
        let large = self.history[record].ops.values().any(|(_, kind)| {
            matches!(kind, OpKind::Put { value, .. } if value.len() >= *LARGE_VALUE_BYTES.start())
        });
        if large {
            self.probes.committed_large += 1;
        }
    }

    fn trace(&self, what: String) {
        if std::env::var("JUBE_TRACE").is_ok() {
            eprintln!("[tick {}] {what}", self.tick);
        }
    }

    fn on_answer(&mut self, client: usize, answer: Answer) {
        self.trace(format!("client {client} <- {answer:?}"));
        let Some(in_flight) = self.clients[client].take() else {
            panic!("seed {}: an answer for an idle client", self.seed)
        };
        match (in_flight, answer) {
            (
                InFlight::Cross {
                    mut coordinator,
                    record,
                },
                Answer::Feedback(feedback),
            ) => {
                coordinator.feed(feedback);
                let steps = coordinator.take_steps();
                self.clients[client] = Some(InFlight::Cross {
                    coordinator,
                    record,
                });
                self.issue(client, steps);
            }
            (InFlight::Single { record }, Answer::Applied(result)) => {
                self.history[record].outcome = match result {
                    Ok(TxnReply {
                        outcome: TxnOutcome::Committed { results },
                        ..
                    }) => {
                        self.probes.committed_single += 1;
                        self.note_large(record);
                        Outcome::Committed(results)
                    }
                    Ok(TxnReply {
                        outcome: TxnOutcome::Failed(failure),
                        ..
                    }) => {
                        self.probes.failed_assertions += 1;
                        Outcome::Failed(failure)
                    }
                    Err(ShardError::Failed { .. }) => Outcome::Unknown,
                    Err(error) => Outcome::Refused(error),
                };
            }
            (InFlight::Get { record, key }, Answer::Got(result)) => {
                self.history[record].outcome = match result {
                    Ok(value) => {
                        let index = *self.history[record].ops.keys().next().expect("one op");
                        let value = value.map(|bytes| jube_engine::tree::Value {
                            bytes,
                            expiry_ms: 0,
                            version: 0,
                        });
                        let _ = key;
                        Outcome::Committed(vec![jube_engine::txn::OpResult {
                            index,
                            output: OpOutput::Read(value),
                        }])
                    }
                    Err(ShardError::Failed { .. }) => Outcome::Unknown,
                    Err(error) => Outcome::Refused(error),
                };
            }
            (_, answer) => panic!("seed {}: mismatched answer {answer:?}", self.seed),
        }
    }

    // ----- the workers -----

    fn on_call(&mut self, shard: u32, client: usize, call: Call) {
        self.trace(format!("shard {shard} <- client {client}: {call:?}"));
        let worker = &mut self.workers[shard as usize];
        let (answer, unpark) = match call.clone() {
            Call::Step(Step::Prepare { request, .. }) => match worker.shard.prepare_txn(&request) {
                Err(ShardError::Locked { holder, .. }) => {
                    self.park(shard, holder, client, call);
                    return;
                }
                reply => (
                    Some(Answer::Feedback(Feedback::Prepared { shard, reply })),
                    None,
                ),
            },
            Call::Step(Step::AwaitDurable { lsn, .. }) => {
                let answer = Answer::Feedback(Feedback::Durable {
                    shard,
                    lsn,
                    result: Ok(()),
                });
                worker.waiting.push((lsn, client, answer));
                return;
            }
            Call::Step(Step::Decide {
                id, participants, ..
            }) => {
                let result = worker.shard.decide_txn(id, &participants);
                let answer = Answer::Feedback(Feedback::Decided { shard, result });
                (Some(answer), Some(id))
            }
            Call::Step(Step::Finish { id, commit, .. }) => {
                let result = worker.shard.finish_txn(id, commit);
                let answer = Answer::Feedback(Feedback::Finished { shard, result });
                (Some(answer), Some(id))
            }
            Call::Step(Step::Forget { id, .. }) => {
                worker.shard.forget_decision(id);
                (None, None)
            }
            Call::Step(Step::Reply(_)) => unreachable!("replies stay with the client"),
            Call::Apply(part) => match worker.shard.apply_txn(&part) {
                Err(ShardError::Locked { holder, .. }) => {
                    self.park(shard, holder, client, call);
                    return;
                }
                Ok(reply) => {
                    let lsn = reply.wait_lsn;
                    worker
                        .waiting
                        .push((lsn, client, Answer::Applied(Ok(reply))));
                    return;
                }
                Err(error) => (Some(Answer::Applied(Err(error))), None),
            },
            Call::Get(key) => match worker.shard.get(&key) {
                Err(ShardError::Locked { holder, .. }) => {
                    self.park(shard, holder, client, call);
                    return;
                }
                Ok(value) => {
                    let lsn = worker.shard.read_barrier(&key).unwrap_or(0);
                    let answer = Answer::Got(Ok(value.map(|v| v.bytes)));
                    worker.waiting.push((lsn, client, answer));
                    return;
                }
                Err(error) => (Some(Answer::Got(Err(error))), None),
            },
        };
        if let Some(answer) = answer {
            self.send(Message::ToClient { client, answer });
        }
        if let Some(id) = unpark {
            let worker = &mut self.workers[shard as usize];
            let (ready, parked): (Vec<_>, Vec<_>) = worker
                .parked
                .drain(..)
                .partition(|(holder, _, _)| *holder == id);
            worker.parked = parked;
            for (_, client, call) in ready {
                self.on_call(shard, client, call);
            }
        }
    }

    fn park(&mut self, shard: u32, holder: TxnId, client: usize, call: Call) {
        let worker = &mut self.workers[shard as usize];
        if worker.parked.len() >= LOCK_WAITERS_MAX {
            let busy = ShardError::Busy {
                detail: "too many calls wait for locks".to_string(),
            };
            let answer = match call {
                Call::Step(Step::Prepare { .. }) => Answer::Feedback(Feedback::Prepared {
                    shard,
                    reply: Err(busy),
                }),
                Call::Apply(_) => Answer::Applied(Err(busy)),
                Call::Get(_) => Answer::Got(Err(busy)),
                Call::Step(_) => unreachable!("only prepares, applies and gets park"),
            };
            self.send(Message::ToClient { client, answer });
            return;
        }
        self.probes.parked += 1;
        worker.parked.push((holder, client, call));
    }

    /// Polls every shard and answers the durability waits it covers; false on a failure.
    fn poll_workers(&mut self) -> bool {
        for index in 0..self.workers.len() {
            let worker = &mut self.workers[index];
            if worker.shard.poll().is_err() {
                return false;
            }
            let acked = worker.shard.acked_lsn();
            let (ready, waiting): (Vec<_>, Vec<_>) = worker
                .waiting
                .drain(..)
                .partition(|(lsn, _, _)| *lsn <= acked);
            worker.waiting = waiting;
            for (_, client, answer) in ready {
                self.send(Message::ToClient { client, answer });
            }
        }
        true
    }

    // ----- the run -----

    fn tick(&mut self) {
        self.tick += 1;
        self.clock.advance_ns(self.rng.gen_range(0..400_000));
        for client in 0..CLIENTS {
            if self.clients[client].is_none() && self.rng.gen_bool(0.3) {
                self.start_request(client);
            }
        }
        let now = self.tick;
        let (mut due, later): (Vec<_>, Vec<_>) =
            self.mesh.drain(..).partition(|(at, _, _)| *at <= now);
        self.mesh = later;
        due.sort_by_key(|(_, seq, _)| *seq);
        due.shuffle(&mut self.rng);
        for (_, _, message) in due {
            match message {
                Message::ToShard {
                    shard,
                    client,
                    call,
                } => self.on_call(shard, client, call),
                Message::ToClient { client, answer } => self.on_answer(client, answer),
            }
        }
        let polled = self.poll_workers();
        let roll = self.rng.gen_range(0..10_000);
        if roll < 25 && !self.disk.power_is_out() {
            let ops = self.rng.gen_range(0..150);
            self.disk.cut_power_after(ops);
        }
        if !polled || self.disk.power_is_out() || roll >= 9_995 {
            self.crash_and_recover();
        }
    }

    fn crash_and_recover(&mut self) {
        self.trace("CRASH".to_string());
        self.crashes += 1;
        self.note_gc();
        self.workers.clear();
        self.mesh.clear();
        for client in &mut self.clients {
            *client = None;
        }
        self.disk.crash();
        loop {
            if self.rng.gen_bool(0.25) {
                let ops = self.rng.gen_range(0..80);
                self.disk.cut_power_after(ops);
            }
            match self.recover_and_resolve() {
                Ok(()) if !self.disk.power_is_out() => break,
                Ok(()) => {}
                Err(error) => assert!(
                    self.disk.power_is_out(),
                    "seed {}: recovery failed without a power cut: {error}",
                    self.seed
                ),
            }
            self.note_gc();
            self.workers.clear();
            self.disk.crash();
        }
        self.disk.cancel_power_cut();
        self.probes.recoveries += 1;
        self.check();
    }

    /// Counts the GC collections of the shards' current incarnations (before they are dropped).
    fn note_gc(&mut self) {
        for worker in &self.workers {
            self.probes.gc_runs += worker.shard.stats().vlog.gc_runs;
        }
    }

    /// Opens every shard and resolves every in-doubt txn, as the server does before it listens.
    fn recover_and_resolve(&mut self) -> Result<(), ShardError> {
        self.open_all()?;
        let mut waits = Vec::new();
        for shard in 0..self.workers.len() {
            for id in self.workers[shard].shard.in_doubt() {
                let commit = self.workers[id.coordinator as usize].shard.decision(id);
                self.trace(format!("resolve {id} on shard {shard}: commit {commit}"));
                if commit {
                    self.probes.resolved_commit += 1;
                } else {
                    self.probes.resolved_abort += 1;
                }
                let lsn = loop {
                    match self.workers[shard].shard.finish_txn(id, commit) {
                        Err(ShardError::Busy { .. }) => {
                            self.clock.advance_ns(200_000);
                            self.workers[shard].shard.poll()?;
                        }
                        other => break other?,
                    }
                };
                waits.push((shard, lsn));
            }
        }
        for (shard, lsn) in waits {
            while self.workers[shard].shard.acked_lsn() < lsn {
                self.clock.advance_ns(200_000);
                self.workers[shard].shard.poll()?;
            }
        }
        for worker in &mut self.workers {
            for id in worker.shard.recovered_decisions() {
                worker.shard.forget_decision(id);
            }
        }
        Ok(())
    }

    // ----- the checker -----

    fn read_all(&mut self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut state = BTreeMap::new();
        for worker in &mut self.workers {
            let page = worker
                .shard
                .scan(
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    usize::MAX,
                    false,
                    None,
                )
                .unwrap_or_else(|e| panic!("full scan: {e}"));
            for entry in page.entries {
                state.insert(entry.key, entry.value.bytes);
            }
        }
        state
    }

    fn check(&mut self) {
        let seed = self.seed;
        for (index, worker) in self.workers.iter_mut().enumerate() {
            assert!(
                worker.shard.in_doubt().is_empty(),
                "seed {seed}: shard {index} still has txns in doubt"
            );
            let stats = worker.shard.txn_stats();
            assert_eq!(stats.locked_keys_count, 0, "seed {seed}: keys stay locked");
            if let Err(error) = worker.shard.check_integrity() {
                panic!("seed {seed}: shard {index} integrity: {error}");
            }
            let vlog = worker.shard.stats().vlog;
            assert_eq!(
                vlog.gc_failures, 0,
                "seed {seed}: shard {index}: GC met live values it could not account for"
            );
        }
        let state = self.read_all();
        let applied = self.check_atomicity(&state);
        self.check_bank(&state);
        self.check_claims(&state, &applied);
        self.check_registers(&state, &applied);
    }

    /// Markers all-or-nothing; acknowledged outcomes respected. Returns the applied tags.
    fn check_atomicity(&self, state: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeSet<u64> {
        let seed = self.seed;
        let mut applied = BTreeSet::new();
        for record in self.history.iter().filter(|r| r.writes) {
            let present: Vec<bool> = record
                .shards
                .iter()
                .map(|&shard| state.contains_key(&record.marker(shard)))
                .collect();
            let all = present.iter().all(|&p| p);
            let none = present.iter().all(|&p| !p);
            assert!(
                all || none,
                "seed {seed}: txn {} applied on some shards only: {:?} -> {present:?} ({:?})",
                record.tag,
                record.shards,
                record.outcome
            );
            match &record.outcome {
                Outcome::Committed(_) => assert!(
                    all,
                    "seed {seed}: acknowledged txn {} ({:?}) is lost",
                    record.tag, record.kind
                ),
                Outcome::Failed(_) | Outcome::Refused(_) => assert!(
                    none,
                    "seed {seed}: txn {} answered {:?} was applied",
                    record.tag, record.outcome
                ),
                Outcome::Unknown => {}
            }
            if all {
                applied.insert(record.tag);
            }
        }
        applied
    }

    fn check_bank(&self, state: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let seed = self.seed;
        let mut total = 0i64;
        for (key, value) in state {
            let text = std::str::from_utf8(key).expect("ascii");
            if text.contains(":acct") {
                let balance: i64 = std::str::from_utf8(value)
                    .expect("ascii")
                    .parse()
                    .unwrap_or_else(|_| panic!("seed {seed}: {text} holds {value:?}"));
                assert!(balance >= 0, "seed {seed}: {text} is overdrawn: {balance}");
                total += balance;
            }
        }
        let expected = BALANCE_INITIAL * (ACCOUNTS_PER_SHARD as i64) * i64::from(self.shard_count);
        assert_eq!(
            total, expected,
            "seed {seed}: money was created or destroyed"
        );
    }

    fn check_claims(&self, state: &BTreeMap<Vec<u8>, Vec<u8>>, applied: &BTreeSet<u64>) {
        let seed = self.seed;
        let claims_by_tag: HashMap<u64, &Record> = self
            .history
            .iter()
            .filter(|r| r.kind == Kind::Claim)
            .map(|r| (r.tag, r))
            .collect();
        let mut claimed = 0i64;
        let mut acked_claims: HashMap<Vec<u8>, u64> = HashMap::new();
        for record in claims_by_tag.values() {
            if matches!(record.outcome, Outcome::Committed(_)) {
                let task = record.task.clone().expect("claims name their task");
                if let Some(other) = acked_claims.insert(task.clone(), record.tag) {
                    panic!(
                        "seed {seed}: task {} claimed twice, by {other} and {}",
                        String::from_utf8_lossy(&task),
                        record.tag
                    );
                }
            }
        }
        for (key, value) in state {
            let text = std::str::from_utf8(key).expect("ascii");
            if !text.contains(":task") || value == b"open" {
                continue;
            }
            claimed += 1;
            let tag =
                tag_of(value).unwrap_or_else(|| panic!("seed {seed}: {text} holds {value:?}"));
            let record = claims_by_tag
                .get(&tag)
                .unwrap_or_else(|| panic!("seed {seed}: {text} names unknown claim {tag}"));
            assert!(
                applied.contains(&tag),
                "seed {seed}: {text} names unapplied {tag}"
            );
            assert_eq!(record.task.as_deref(), Some(key.as_slice()), "seed {seed}");
            if let Some(&acked) = acked_claims.get(key) {
                assert_eq!(
                    acked, tag,
                    "seed {seed}: {text}: acknowledged claim overwritten"
                );
            }
        }
        for (task, tag) in &acked_claims {
            assert_eq!(
                state.get(task).and_then(|value| tag_of(value)),
                Some(*tag),
                "seed {seed}: acknowledged claim {tag} is not on its task"
            );
        }
        let counted: i64 = state
            .iter()
            .filter(|(k, _)| k.ends_with(b":claims"))
            .map(|(_, v)| {
                std::str::from_utf8(v)
                    .expect("ascii")
                    .parse::<i64>()
                    .expect("int")
            })
            .sum();
        assert_eq!(
            counted, claimed,
            "seed {seed}: claim counters disagree with the tasks"
        );
    }

    /// The register history: values name their writer, so reads and overwrites give a
    /// dependency graph that must be acyclic.
    fn check_registers(&self, state: &BTreeMap<Vec<u8>, Vec<u8>>, applied: &BTreeSet<u64>) {
        let seed = self.seed;
        const INIT: u64 = 0;
        let writer = |value: &[u8]| -> u64 {
            if value == b"init" {
                return INIT;
            }
            tag_of(value).unwrap_or_else(|| panic!("seed {seed}: register holds {value:?}"))
        };
        // (register, writer replaced) -> the txn that replaced it; reads per (register, writer).
        let mut replaced: HashMap<(Vec<u8>, u64), u64> = HashMap::new();
        let mut reads: Vec<(Vec<u8>, u64, u64)> = Vec::new();
        let mut edges: BTreeSet<(u64, u64)> = BTreeSet::new();
        for record in &self.history {
            let Outcome::Committed(results) = &record.outcome else {
                continue;
            };
            for result in results {
                let Some((key, OpKind::Read { .. })) = record.ops.get(&result.index) else {
                    continue;
                };
                if !std::str::from_utf8(key).expect("ascii").contains(":reg") {
                    continue;
                }
                let OpOutput::Read(Some(value)) = &result.output else {
                    panic!("seed {seed}: register {key:?} read as absent")
                };
                let from = writer(&value.bytes);
                assert!(
                    from == INIT || applied.contains(&from),
                    "seed {seed}: txn {} read the value of txn {from}, which never applied",
                    record.tag
                );
                edges.insert((from, record.tag));
                reads.push((key.clone(), from, record.tag));
                if record.kind == Kind::Registers {
                    if let Some(other) = replaced.insert((key.clone(), from), record.tag) {
                        panic!(
                            "seed {seed}: lost update: txns {other} and {} both replaced the value \
                             of {from} in {}",
                            record.tag,
                            String::from_utf8_lossy(key)
                        );
                    }
                }
            }
        }
        for (key, from, reader) in &reads {
            if let Some(&next) = replaced.get(&(key.clone(), *from)) {
                if next != *reader {
                    edges.insert((*reader, next));
                }
            }
        }
        for (key, value) in state {
            if std::str::from_utf8(key).expect("ascii").contains(":reg") {
                let last = writer(value);
                assert!(last == INIT || applied.contains(&last), "seed {seed}");
                if let Some(next) = replaced.get(&(key.clone(), last)) {
                    panic!(
                        "seed {seed}: {} holds the value of {last}, which txn {next} replaced",
                        String::from_utf8_lossy(key)
                    );
                }
            }
        }
        assert_acyclic(seed, &edges);
    }
}

enum Item {
    Assert(AssertionKind),
    Op(OpKind),
}

/// Kahn's algorithm over the dependency edges; a cycle means the history is not serializable.
fn assert_acyclic(seed: u64, edges: &BTreeSet<(u64, u64)>) {
    let mut indegree: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(a, b) in edges {
        indegree.entry(a).or_default();
        *indegree.entry(b).or_default() += 1;
        out.entry(a).or_default().push(b);
    }
    let mut ready: Vec<u64> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&n, _)| n)
        .collect();
    let mut seen = 0;
    while let Some(node) = ready.pop() {
        seen += 1;
        for next in out.get(&node).into_iter().flatten() {
            let degree = indegree.get_mut(next).expect("known node");
            *degree -= 1;
            if *degree == 0 {
                ready.push(*next);
            }
        }
    }
    let stuck: Vec<u64> = indegree
        .iter()
        .filter(|(_, &d)| d > 0)
        .map(|(&n, _)| n)
        .collect();
    assert_eq!(
        seen,
        indegree.len(),
        "seed {seed}: the register history has a dependency cycle among txns {stuck:?}"
    );
}

fn run_seed(seed: u64) -> Probes {
    let mut sim = Sim::new(seed);
    for tick in 0..TICKS {
        if tick == TICKS / 2 && sim.crashes == 0 {
            // Every seed crashes mid-run at least once, wherever the next I/O lands.
            let ops = sim.rng.gen_range(0..150);
            sim.disk.cut_power_after(ops);
        }
        sim.tick();
    }
    sim.crash_and_recover();
    sim.probes
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("JUBE_SEED") {
        return vec![seed.parse().expect("JUBE_SEED is a number")];
    }
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let start = var("JUBE_SEED_START", 0);
    (start..start + var("JUBE_SEEDS", 16)).collect()
}

#[test]
fn cross_shard_transactions_survive_power_cuts() {
    let mut total = Probes::default();
    let seeds = seeds();
    for &seed in &seeds {
        eprintln!("txn simulation: seed {seed} (replay with JUBE_SEED={seed})");
        let probes = run_seed(seed);
        total.committed_cross += probes.committed_cross;
        total.committed_single += probes.committed_single;
        total.failed_assertions += probes.failed_assertions;
        total.parked += probes.parked;
        total.resolved_commit += probes.resolved_commit;
        total.resolved_abort += probes.resolved_abort;
        total.recoveries += probes.recoveries;
        total.committed_large += probes.committed_large;
        total.gc_runs += probes.gc_runs;
    }
    let seed_count = seeds.len() as u64;
    eprintln!("txn simulation probes: {total:?}");
    if seeds.len() >= 8 {
        assert!(
            total.committed_cross > 100,
            "too few cross-shard commits: {total:?}"
        );
        assert!(
            total.committed_single > 50,
            "too few single-shard commits: {total:?}"
        );
        assert!(
            total.parked > 0,
            "no call ever waited for a lock: {total:?}"
        );
        assert!(
            total.failed_assertions > 0,
            "no assertion ever failed: {total:?}"
        );
        assert!(
            total.recoveries >= 3 * seed_count,
            "too few crashes: {total:?}"
        );
        assert!(
            total.resolved_commit > 0,
            "no in-doubt txn resolved to commit: {total:?}"
        );
        assert!(
            total.resolved_abort > 0,
            "no in-doubt txn resolved to abort: {total:?}"
        );
        assert!(
            total.committed_large > 100,
            "too few commits of value-log values: {total:?}"
        );
        assert!(total.gc_runs > 0, "value-log GC never ran: {total:?}");
    }
}
