//! From a decoded request to its response: which calls it makes (one shard for a single key; the
//! owning shards of a batch; every shard for Scan and Checkpoint; every core for Info) and how their
//! results combine (gather by position, k-way merge, sums).
//!
//! Invariants: a request's calls are all made when it is planned, so its shards work on it while
//! earlier responses of the same connection are still being written; combining only reads results,
//! so responses leave in request order without holding later ones back from their shards.

use crate::call::{wrong_output as internal, CallOutput, CallResult, PutItem, ShardOp, Target};
use crate::dispatcher::Dispatcher;
use crate::info::{build_info, InfoContext};
use crate::metrics::CoreMetrics;
use crate::routing::shard_of;
use crate::scan::{merge_pages, plan_scan};
use crate::sync::Slot;
use crate::txn::{self, OpsMeta};
use jube_protocol::{
    CheckpointReply, Entry, Failure, Operation, OperationKind, Reply, Request, Response, Scan,
    Status,
};
use std::rc::Rc;
use std::time::Instant;

/// How the results of a request's calls become its reply.
enum Combine {
    Ready(Response),
    Get,
    /// Put, Delete, MultiPut: the reply to give once every call succeeded.
    Write(Reply),
    MultiGet {
        count: usize,
    },
    Scan {
        limit: usize,
        reverse: bool,
    },
    Info(InfoContext),
    Checkpoint,
    /// A transaction: its one result (a shard's or its driver's) becomes the outcome.
    Txn {
        meta: OpsMeta,
        metrics: Rc<CoreMetrics>,
    },
}

/// A request whose calls are under way.
pub struct InFlight {
    pub id: u64,
    pub kind: Option<OperationKind>,
    pub started: Instant,
    parts: Vec<Rc<Slot<CallResult>>>,
    combine: Combine,
}

impl InFlight {
    /// An answer known at once (Ping, or a frame rejected by the decoder).
    pub fn ready(kind: Option<OperationKind>, response: Response) -> InFlight {
        InFlight {
            id: response.request_id,
            kind,
            started: Instant::now(),
            parts: Vec::new(),
            combine: Combine::Ready(response),
        }
    }

    /// Whether every call has its result (the response can be built without waiting).
    pub fn is_ready(&self) -> bool {
        self.parts.iter().all(|part| part.is_filled())
    }

    /// As [`InFlight::finish`], counting the request and its latency in `metrics`.
    pub async fn finish_recorded(self, metrics: &CoreMetrics) -> Response {
        let (kind, started) = (self.kind, self.started);
        let response = self.finish().await;
        if let Some(kind) = kind {
            metrics.record(kind, response.status(), started.elapsed());
        }
        response
    }

    /// Waits for every call's result and builds the response.
    pub async fn finish(self) -> Response {
        let outcome = match (self.parts.as_slice(), &self.combine) {
            // The common single-key request: no Vec of results.
            ([part], Combine::Get | Combine::Write(_)) => {
                let result = part.wait().await;
                combine_one(self.combine, result)
            }
            _ => {
                let mut results = Vec::with_capacity(self.parts.len());
                for part in &self.parts {
                    results.push(part.wait().await);
                }
                combine(self.combine, results, self.started)
            }
        };
        match outcome {
            Ok(Outcome::Response(response)) => response,
            Ok(Outcome::Reply(reply)) => Response::ok(self.id, reply),
            Err(failure) => Response {
                request_id: self.id,
                outcome: Err(failure),
            },
        }
    }
}

enum Outcome {
    Response(Response),
    Reply(Reply),
}

/// Makes the calls of `request` and returns what to wait for.
pub fn plan(
    dispatcher: &Rc<Dispatcher>,
    info: &InfoContext,
    shard_count: usize,
    request: Request,
) -> InFlight {
    let kind = request.op.kind();
    let id = request.id;
    // The shard is picked before the key moves into the op: no copy of the key per request.
    let call = |shard: usize, op| dispatcher.call(Target::Shard(shard), op);
    let (parts, combine) = match request.op {
        Operation::Ping => (Vec::new(), Combine::Ready(Response::ok(id, Reply::Ping))),
        Operation::Get(get) => {
            let shard = shard_of(&get.key, shard_count);
            let part = call(
                shard,
                ShardOp::Get {
                    key: get.key,
                    with_version: get.with_version,
                    with_ttl: get.with_ttl,
                },
            );
            (vec![part], Combine::Get)
        }
        Operation::Put(entry) => {
            let shard = shard_of(&entry.key, shard_count);
            let part = call(
                shard,
                ShardOp::Put {
                    key: entry.key,
                    value: entry.value,
                    ttl_ms: entry.ttl_ms,
                },
            );
            (vec![part], Combine::Write(Reply::Put))
        }
        Operation::Delete { key } => (
            vec![call(shard_of(&key, shard_count), ShardOp::Delete { key })],
            Combine::Write(Reply::Delete),
        ),
        Operation::MultiGet { keys } => {
            let count = keys.len();
            (
                plan_multi_get(dispatcher, shard_count, keys),
                Combine::MultiGet { count },
            )
        }
        Operation::MultiPut { entries } => (
            plan_multi_put(dispatcher, shard_count, entries),
            Combine::Write(Reply::MultiPut),
        ),
        Operation::Scan(scan) => plan_scan_parts(dispatcher, shard_count, id, &scan),
        Operation::Info => {
            let parts = (0..dispatcher.cores())
                .map(|core| dispatcher.call(Target::Core(core), ShardOp::Report))
                .collect();
            (parts, Combine::Info(info.clone()))
        }
        Operation::Checkpoint => (
            every_shard(dispatcher, shard_count, &ShardOp::Checkpoint),
            Combine::Checkpoint,
        ),
        Operation::Txn(request) => {
            let started = txn::start(dispatcher, shard_count, request);
            (
                vec![started.slot],
                Combine::Txn {
                    meta: started.meta,
                    metrics: dispatcher.metrics.clone(),
                },
            )
        }
    };
    InFlight {
        id,
        kind: Some(kind),
        started: Instant::now(),
        parts,
        combine,
    }
}

type Parts = Vec<Rc<Slot<CallResult>>>;

/// Sends `op` to every shard.
fn every_shard(dispatcher: &Dispatcher, shard_count: usize, op: &ShardOp) -> Parts {
    (0..shard_count)
        .map(|shard| dispatcher.call(Target::Shard(shard), op.clone()))
        .collect()
}

fn plan_scan_parts(
    dispatcher: &Dispatcher,
    shard_count: usize,
    id: u64,
    scan: &Scan,
) -> (Parts, Combine) {
    match plan_scan(scan) {
        Ok(op) => (
            every_shard(dispatcher, shard_count, &op),
            Combine::Scan {
                limit: scan.limit_effective() as usize,
                reverse: scan.reverse,
            },
        ),
        Err(failure) => (
            Vec::new(),
            Combine::Ready(Response {
                request_id: id,
                outcome: Err(failure),
            }),
        ),
    }
}

fn plan_multi_get(
    dispatcher: &Dispatcher,
    shard_count: usize,
    keys: Vec<Vec<u8>>,
) -> Vec<Rc<Slot<CallResult>>> {
    let mut by_shard: Vec<Vec<(usize, Vec<u8>)>> = (0..shard_count).map(|_| Vec::new()).collect();
    for (position, key) in keys.into_iter().enumerate() {
        by_shard[shard_of(&key, shard_count)].push((position, key));
    }
    by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, items)| !items.is_empty())
        .map(|(shard, items)| dispatcher.call(Target::Shard(shard), ShardOp::MultiGet { items }))
        .collect()
}

fn plan_multi_put(
    dispatcher: &Dispatcher,
    shard_count: usize,
    entries: Vec<Entry>,
) -> Vec<Rc<Slot<CallResult>>> {
    let mut by_shard: Vec<Vec<PutItem>> = (0..shard_count).map(|_| Vec::new()).collect();
    for entry in entries {
        by_shard[shard_of(&entry.key, shard_count)].push((entry.key, entry.value, entry.ttl_ms));
    }
    by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(shard, entries)| {
            dispatcher.call(Target::Shard(shard), ShardOp::MultiPut { entries })
        })
        .collect()
}

/// [`combine`] of a Get or a write with its one call's result.
fn combine_one(combine: Combine, result: CallResult) -> Result<Outcome, Failure> {
    let reply = match (combine, result?) {
        (Combine::Get, CallOutput::Get(Some(reply))) => Reply::Get(reply),
        (Combine::Get, CallOutput::Get(None)) => {
            return Err(Failure::new(Status::NotFound, "no such key"))
        }
        (Combine::Get, _) => return Err(internal("Get")),
        (Combine::Write(reply), _) => reply,
        _ => return Err(internal("single call")),
    };
    Ok(Outcome::Reply(reply))
}

fn combine(
    combine: Combine,
    results: Vec<CallResult>,
    started: Instant,
) -> Result<Outcome, Failure> {
    if let Combine::Txn { meta, metrics } = combine {
        let result = results
            .into_iter()
            .next()
            .map_or_else(|| Err(internal("Txn")), |result| txn::finish(result, &meta));
        txn::record(&metrics, &result);
        return result.map(|outcome| Outcome::Reply(Reply::Txn(outcome)));
    }
    // The first failing call fails the request (a batch is not atomic: docs/protocol.md).
    let outputs: Vec<CallOutput> = results.into_iter().collect::<Result<_, _>>()?;
    let reply = match combine {
        Combine::Ready(response) => return Ok(Outcome::Response(response)),
        Combine::Get => match outputs.into_iter().next() {
            Some(CallOutput::Get(Some(reply))) => Reply::Get(reply),
            Some(CallOutput::Get(None)) => {
                return Err(Failure::new(Status::NotFound, "no such key"))
            }
            _ => return Err(internal("Get")),
        },
        Combine::Write(reply) => reply,
        Combine::MultiGet { count } => {
            let mut values = vec![None; count];
            for output in outputs {
                let CallOutput::Values(found) = output else {
                    return Err(internal("MultiGet"));
                };
                for (position, value) in found {
                    if let Some(slot) = values.get_mut(position) {
                        *slot = value;
                    }
                }
            }
            Reply::MultiGet { values }
        }
        Combine::Scan { limit, reverse } => Reply::Scan(merge_pages(outputs, limit, reverse)?),
        Combine::Info(context) => Reply::Info(build_info(&context, outputs)?),
        Combine::Checkpoint => {
            let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            Reply::Checkpoint(CheckpointReply { duration_us })
        }
        Combine::Txn { .. } => unreachable!("handled above"),
    };
    Ok(Outcome::Reply(reply))
}
