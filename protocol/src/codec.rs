//! Conversion between the owned types of `message` and the FlatBuffers
//! tables of `generated`: building a finished, size-prefixed buffer from a
//! `Request`/`Response`, and reading one back from a verified table.
//!
//! Invariants: readers here only ever see tables that `frame` has verified,
//! so every accessor is in bounds; they still check the schema's rules that
//! the verifier cannot (unknown union tags, bound kinds, the status/result
//! pairing) and turn violations into a `Failure` rather than a panic.

use std::ops::Bound;

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, UnionWIPOffset, Vector, WIPOffset};

use crate::constants::{FILE_IDENTIFIER, MESSAGE_SIZE_MAX};
use crate::generated::jube::wire as fb;
use crate::message::{
    Assertion, Check, CheckpointReply, CompareOp, Entry, Failure, Get, GetReply, InfoReply,
    InfoSection, Metric, Operation, Reply, Request, Response, Scan, ScanReply, Status, Txn, TxnOp,
    TxnOpResult, TxnOutcome,
};

type Builder<'b> = FlatBufferBuilder<'b>;

/// Builds `request` as a size-prefixed FlatBuffer claiming `version`.
pub(crate) fn build_request(fbb: &mut Builder<'_>, request: &Request, version: u16) {
    let (op_type, op) = build_operation(fbb, &request.op);
    let root = fb::Request::create(
        fbb,
        &fb::RequestArgs {
            version,
            request_id: request.id,
            op_type,
            op: Some(op),
        },
    );
    fbb.finish_size_prefixed(root, Some(FILE_IDENTIFIER));
}

fn bytes<'b>(fbb: &mut Builder<'b>, data: &[u8]) -> WIPOffset<Vector<'b, u8>> {
    fbb.create_vector(data)
}

fn build_entry<'b>(fbb: &mut Builder<'b>, entry: &Entry) -> WIPOffset<fb::Entry<'b>> {
    let key = bytes(fbb, &entry.key);
    let value = bytes(fbb, &entry.value);
    fb::Entry::create(
        fbb,
        &fb::EntryArgs {
            key: Some(key),
            value: Some(value),
            ttl_ms: entry.ttl_ms,
        },
    )
}

fn build_entries<'b>(
    fbb: &mut Builder<'b>,
    entries: &[Entry],
) -> WIPOffset<Vector<'b, ForwardsUOffset<fb::Entry<'b>>>> {
    let offsets: Vec<_> = entries
        .iter()
        .map(|entry| build_entry(fbb, entry))
        .collect();
    fbb.create_vector(&offsets)
}

fn build_bound<'b>(
    fbb: &mut Builder<'b>,
    bound: &Bound<Vec<u8>>,
) -> Option<WIPOffset<fb::Bound<'b>>> {
    let (kind, key) = match bound {
        // An absent Bound table means Unbounded: the smallest encoding.
        Bound::Unbounded => return None,
        Bound::Included(key) => (fb::BoundKind::Included, key),
        Bound::Excluded(key) => (fb::BoundKind::Excluded, key),
    };
    let key = bytes(fbb, key);
    Some(fb::Bound::create(
        fbb,
        &fb::BoundArgs {
            kind,
            key: Some(key),
        },
    ))
}

fn build_operation(
    fbb: &mut Builder<'_>,
    op: &Operation,
) -> (fb::Operation, WIPOffset<UnionWIPOffset>) {
    match op {
        Operation::Ping => (
            fb::Operation::Ping,
            fb::Ping::create(fbb, &fb::PingArgs {}).as_union_value(),
        ),
        Operation::Get(get) => {
            let key = bytes(fbb, &get.key);
            let args = fb::GetArgs {
                key: Some(key),
                with_version: get.with_version,
                with_ttl: get.with_ttl,
            };
            (
                fb::Operation::Get,
                fb::Get::create(fbb, &args).as_union_value(),
            )
        }
        Operation::Put(entry) => {
            let key = bytes(fbb, &entry.key);
            let value = bytes(fbb, &entry.value);
            let args = fb::PutArgs {
                key: Some(key),
                value: Some(value),
                ttl_ms: entry.ttl_ms,
            };
            (
                fb::Operation::Put,
                fb::Put::create(fbb, &args).as_union_value(),
            )
        }
        Operation::Delete { key } => {
            let key = bytes(fbb, key);
            let op = fb::Delete::create(fbb, &fb::DeleteArgs { key: Some(key) });
            (fb::Operation::Delete, op.as_union_value())
        }
        Operation::MultiGet { keys } => {
            let offsets: Vec<_> = keys
                .iter()
                .map(|key| {
                    let key = bytes(fbb, key);
                    fb::Key::create(fbb, &fb::KeyArgs { key: Some(key) })
                })
                .collect();
            let keys = fbb.create_vector(&offsets);
            let op = fb::MultiGet::create(fbb, &fb::MultiGetArgs { keys: Some(keys) });
            (fb::Operation::MultiGet, op.as_union_value())
        }
        Operation::MultiPut { entries } => {
            let entries = build_entries(fbb, entries);
            let op = fb::MultiPut::create(
                fbb,
                &fb::MultiPutArgs {
                    entries: Some(entries),
                },
            );
            (fb::Operation::MultiPut, op.as_union_value())
        }
        Operation::Scan(scan) => {
            let start = build_bound(fbb, &scan.start);
            let end = build_bound(fbb, &scan.end);
            let continuation = scan.continuation.as_ref().map(|token| bytes(fbb, token));
            let args = fb::ScanArgs {
                start,
                end,
                limit: scan.limit,
                reverse: scan.reverse,
                continuation,
            };
            (
                fb::Operation::Scan,
                fb::Scan::create(fbb, &args).as_union_value(),
            )
        }
        Operation::Info => (
            fb::Operation::Info,
            fb::Info::create(fbb, &fb::InfoArgs {}).as_union_value(),
        ),
        Operation::Checkpoint => {
            let op = fb::Checkpoint::create(fbb, &fb::CheckpointArgs {});
            (fb::Operation::Checkpoint, op.as_union_value())
        }
        Operation::Txn(txn) => (fb::Operation::Txn, build_txn(fbb, txn).as_union_value()),
    }
}

fn compare_op_wire(op: CompareOp) -> fb::CompareOp {
    match op {
        CompareOp::Eq => fb::CompareOp::Eq,
        CompareOp::Ne => fb::CompareOp::Ne,
        CompareOp::Lt => fb::CompareOp::Lt,
        CompareOp::Le => fb::CompareOp::Le,
        CompareOp::Gt => fb::CompareOp::Gt,
        CompareOp::Ge => fb::CompareOp::Ge,
    }
}

fn build_assertion<'b>(
    fbb: &mut Builder<'b>,
    assertion: &Assertion,
) -> WIPOffset<fb::Assertion<'b>> {
    let key = bytes(fbb, &assertion.key);
    let mut args = fb::AssertionArgs {
        key: Some(key),
        ..Default::default()
    };
    match &assertion.check {
        Check::Exists => args.kind = fb::AssertionKind::Exists,
        Check::Absent => args.kind = fb::AssertionKind::Absent,
        Check::ValueEquals(value) => {
            args.kind = fb::AssertionKind::ValueEquals;
            args.value = Some(bytes(fbb, value));
        }
        Check::HashEquals(hash) => {
            args.kind = fb::AssertionKind::HashEquals;
            args.number = *hash;
        }
        Check::IntCompare { op, operand } => {
            args.kind = fb::AssertionKind::IntCompare;
            args.compare = compare_op_wire(*op);
            args.operand = *operand;
        }
        Check::VersionEquals(version) => {
            args.kind = fb::AssertionKind::VersionEquals;
            args.number = *version;
        }
    }
    fb::Assertion::create(fbb, &args)
}

fn build_txn_op<'b>(fbb: &mut Builder<'b>, op: &TxnOp) -> WIPOffset<fb::TxnOp<'b>> {
    let key = bytes(fbb, op.key());
    let mut args = fb::TxnOpArgs {
        key: Some(key),
        ..Default::default()
    };
    match op {
        TxnOp::Read(get) => {
            args.kind = fb::TxnOpKind::Read;
            args.with_version = get.with_version;
            args.with_ttl = get.with_ttl;
        }
        TxnOp::Put(entry) => {
            args.kind = fb::TxnOpKind::Put;
            args.value = Some(bytes(fbb, &entry.value));
            args.ttl_ms = entry.ttl_ms;
        }
        TxnOp::Delete { .. } => args.kind = fb::TxnOpKind::Delete,
        TxnOp::Add { delta, .. } => {
            args.kind = fb::TxnOpKind::Add;
            args.delta = *delta;
        }
    }
    fb::TxnOp::create(fbb, &args)
}

fn build_txn<'b>(fbb: &mut Builder<'b>, txn: &Txn) -> WIPOffset<fb::Txn<'b>> {
    let assertions: Vec<_> = txn
        .assertions
        .iter()
        .map(|assertion| build_assertion(fbb, assertion))
        .collect();
    let assertions = fbb.create_vector(&assertions);
    let ops: Vec<_> = txn.ops.iter().map(|op| build_txn_op(fbb, op)).collect();
    let ops = fbb.create_vector(&ops);
    fb::Txn::create(
        fbb,
        &fb::TxnArgs {
            assertions: Some(assertions),
            ops: Some(ops),
        },
    )
}

fn read_compare_op(op: fb::CompareOp, index: usize) -> Result<CompareOp, Failure> {
    Ok(match op {
        fb::CompareOp::Eq => CompareOp::Eq,
        fb::CompareOp::Ne => CompareOp::Ne,
        fb::CompareOp::Lt => CompareOp::Lt,
        fb::CompareOp::Le => CompareOp::Le,
        fb::CompareOp::Gt => CompareOp::Gt,
        fb::CompareOp::Ge => CompareOp::Ge,
        unknown => {
            return Err(Failure::new(
                Status::UnknownOperation,
                format!(
                    "assertion {index}: comparison {} is unknown to this server",
                    unknown.0
                ),
            ))
        }
    })
}

fn read_assertion(assertion: &fb::Assertion<'_>, index: usize) -> Result<Assertion, Failure> {
    let value = assertion.value().map(|value| value.bytes().to_vec());
    let check = match assertion.kind() {
        fb::AssertionKind::Exists => Check::Exists,
        fb::AssertionKind::Absent => Check::Absent,
        fb::AssertionKind::ValueEquals => Check::ValueEquals(value.ok_or_else(|| {
            Failure::new(
                Status::InvalidRequest,
                format!("assertion {index}: ValueEquals has no value"),
            )
        })?),
        fb::AssertionKind::HashEquals => Check::HashEquals(assertion.number()),
        fb::AssertionKind::IntCompare => Check::IntCompare {
            op: read_compare_op(assertion.compare(), index)?,
            operand: assertion.operand(),
        },
        fb::AssertionKind::VersionEquals => Check::VersionEquals(assertion.number()),
        unknown => {
            return Err(Failure::new(
                Status::UnknownOperation,
                format!(
                    "assertion {index}: kind {} is unknown to this server",
                    unknown.0
                ),
            ))
        }
    };
    Ok(Assertion {
        key: assertion.key().bytes().to_vec(),
        check,
    })
}

fn read_txn_op(op: &fb::TxnOp<'_>, index: usize) -> Result<TxnOp, Failure> {
    let key = op.key().bytes().to_vec();
    Ok(match op.kind() {
        fb::TxnOpKind::Read => TxnOp::Read(Get {
            key,
            with_version: op.with_version(),
            with_ttl: op.with_ttl(),
        }),
        fb::TxnOpKind::Put => TxnOp::Put(Entry {
            key,
            value: op
                .value()
                .ok_or_else(|| {
                    Failure::new(
                        Status::InvalidRequest,
                        format!("op {index}: Put has no value"),
                    )
                })?
                .bytes()
                .to_vec(),
            ttl_ms: op.ttl_ms(),
        }),
        fb::TxnOpKind::Delete => TxnOp::Delete { key },
        fb::TxnOpKind::Add => TxnOp::Add {
            key,
            delta: op.delta(),
        },
        unknown => {
            return Err(Failure::new(
                Status::UnknownOperation,
                format!("op {index}: kind {} is unknown to this server", unknown.0),
            ))
        }
    })
}

fn read_txn(txn: &fb::Txn<'_>) -> Result<Txn, Failure> {
    let assertions = match txn.assertions() {
        Some(assertions) => assertions
            .iter()
            .enumerate()
            .map(|(index, assertion)| read_assertion(&assertion, index))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let ops = match txn.ops() {
        Some(ops) => ops
            .iter()
            .enumerate()
            .map(|(index, op)| read_txn_op(&op, index))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(Txn { assertions, ops })
}

/// Reads the operation of a verified request whose version was accepted.
/// The caller validates limits afterwards (`Request::validate`).
pub(crate) fn read_operation(request: &fb::Request<'_>) -> Result<Operation, Failure> {
    let op_type = request.op_type();
    let missing = || {
        Failure::new(
            Status::InvalidRequest,
            format!("operation {op_type:?} has its tag but no table"),
        )
    };
    let op = match op_type {
        fb::Operation::NONE => {
            return Err(Failure::new(
                Status::InvalidRequest,
                "request has no operation",
            ))
        }
        fb::Operation::Ping => Operation::Ping,
        fb::Operation::Get => {
            let get = request.op_as_get().ok_or_else(missing)?;
            Operation::Get(Get {
                key: get.key().bytes().to_vec(),
                with_version: get.with_version(),
                with_ttl: get.with_ttl(),
            })
        }
        fb::Operation::Put => {
            let put = request.op_as_put().ok_or_else(missing)?;
            Operation::Put(Entry {
                key: put.key().bytes().to_vec(),
                value: put.value().bytes().to_vec(),
                ttl_ms: put.ttl_ms(),
            })
        }
        fb::Operation::Delete => {
            let delete = request.op_as_delete().ok_or_else(missing)?;
            Operation::Delete {
                key: delete.key().bytes().to_vec(),
            }
        }
        fb::Operation::MultiGet => {
            let multi_get = request.op_as_multi_get().ok_or_else(missing)?;
            let keys = multi_get
                .keys()
                .iter()
                .map(|key| key.key().bytes().to_vec())
                .collect();
            Operation::MultiGet { keys }
        }
        fb::Operation::MultiPut => {
            let multi_put = request.op_as_multi_put().ok_or_else(missing)?;
            Operation::MultiPut {
                entries: read_entries(multi_put.entries()),
            }
        }
        fb::Operation::Scan => {
            let scan = request.op_as_scan().ok_or_else(missing)?;
            Operation::Scan(read_scan(&scan)?)
        }
        fb::Operation::Info => Operation::Info,
        fb::Operation::Checkpoint => Operation::Checkpoint,
        fb::Operation::Txn => {
            let txn = request.op_as_txn().ok_or_else(missing)?;
            Operation::Txn(read_txn(&txn)?)
        }
        unknown => {
            return Err(Failure::new(
                Status::UnknownOperation,
                format!("operation tag {} is unknown to this server", unknown.0),
            ))
        }
    };
    Ok(op)
}

fn read_entries(entries: Vector<'_, ForwardsUOffset<fb::Entry<'_>>>) -> Vec<Entry> {
    entries
        .iter()
        .map(|entry| Entry {
            key: entry.key().bytes().to_vec(),
            value: entry.value().bytes().to_vec(),
            ttl_ms: entry.ttl_ms(),
        })
        .collect()
}

fn read_bound(bound: Option<fb::Bound<'_>>, side: &str) -> Result<Bound<Vec<u8>>, Failure> {
    let Some(bound) = bound else {
        return Ok(Bound::Unbounded);
    };
    let key = bound.key().map(|key| key.bytes().to_vec());
    match (bound.kind(), key) {
        (fb::BoundKind::Unbounded, None) => Ok(Bound::Unbounded),
        (fb::BoundKind::Included, Some(key)) => Ok(Bound::Included(key)),
        (fb::BoundKind::Excluded, Some(key)) => Ok(Bound::Excluded(key)),
        (fb::BoundKind::Unbounded, Some(_)) => Err(Failure::new(
            Status::InvalidRequest,
            format!("scan {side} bound is Unbounded but has a key"),
        )),
        (fb::BoundKind::Included | fb::BoundKind::Excluded, None) => Err(Failure::new(
            Status::InvalidRequest,
            format!("scan {side} bound is {:?} but has no key", bound.kind()),
        )),
        (kind, _) => Err(Failure::new(
            Status::InvalidRequest,
            format!("scan {side} bound kind {} is unknown", kind.0),
        )),
    }
}

fn read_scan(scan: &fb::Scan<'_>) -> Result<Scan, Failure> {
    Ok(Scan {
        start: read_bound(scan.start(), "start")?,
        end: read_bound(scan.end(), "end")?,
        limit: scan.limit(),
        reverse: scan.reverse(),
        continuation: scan.continuation().map(|token| token.bytes().to_vec()),
    })
}

/// Cuts `message` to at most `MESSAGE_SIZE_MAX` bytes at a char boundary.
fn message_truncated(message: &str) -> &str {
    if message.len() <= MESSAGE_SIZE_MAX {
        return message;
    }
    let mut end = MESSAGE_SIZE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.get(..end).unwrap_or_default()
}

/// Builds `response` as a size-prefixed FlatBuffer claiming `version`.
pub(crate) fn build_response(fbb: &mut Builder<'_>, response: &Response, version: u16) {
    let (status, message, result_type, result) = match &response.outcome {
        Ok(reply) => {
            let (result_type, result) = build_reply(fbb, reply);
            (fb::Status::Ok, None, result_type, Some(result))
        }
        Err(failure) => {
            let message = fbb.create_string(message_truncated(&failure.message));
            let status = fb::Status(failure.status.code());
            (status, Some(message), fb::OperationResult::NONE, None)
        }
    };
    let args = fb::ResponseArgs {
        version,
        request_id: response.request_id,
        status,
        message,
        result_type,
        result,
    };
    let root = fb::Response::create(fbb, &args);
    fbb.finish_size_prefixed(root, Some(FILE_IDENTIFIER));
}

fn build_reply(
    fbb: &mut Builder<'_>,
    reply: &Reply,
) -> (fb::OperationResult, WIPOffset<UnionWIPOffset>) {
    use fb::OperationResult as R;
    match reply {
        Reply::Ping => (
            R::PingResult,
            fb::PingResult::create(fbb, &fb::PingResultArgs {}).as_union_value(),
        ),
        Reply::Get(get) => {
            let value = bytes(fbb, &get.value);
            let args = fb::GetResultArgs {
                value: Some(value),
                version: get.version,
                ttl_remaining_ms: get.ttl_remaining_ms,
            };
            (
                R::GetResult,
                fb::GetResult::create(fbb, &args).as_union_value(),
            )
        }
        Reply::Put => (
            R::PutResult,
            fb::PutResult::create(fbb, &fb::PutResultArgs {}).as_union_value(),
        ),
        Reply::Delete => {
            let result = fb::DeleteResult::create(fbb, &fb::DeleteResultArgs {});
            (R::DeleteResult, result.as_union_value())
        }
        Reply::MultiGet { values } => {
            let offsets: Vec<_> = values
                .iter()
                .map(|value| {
                    let value = value.as_ref().map(|value| bytes(fbb, value));
                    fb::Lookup::create(fbb, &fb::LookupArgs { value })
                })
                .collect();
            let values = fbb.create_vector(&offsets);
            let result = fb::MultiGetResult::create(
                fbb,
                &fb::MultiGetResultArgs {
                    values: Some(values),
                },
            );
            (R::MultiGetResult, result.as_union_value())
        }
        Reply::MultiPut => {
            let result = fb::MultiPutResult::create(fbb, &fb::MultiPutResultArgs {});
            (R::MultiPutResult, result.as_union_value())
        }
        Reply::Scan(scan) => {
            let entries = build_entries(fbb, &scan.entries);
            let continuation = scan.continuation.as_ref().map(|token| bytes(fbb, token));
            let args = fb::ScanResultArgs {
                entries: Some(entries),
                continuation,
            };
            (
                R::ScanResult,
                fb::ScanResult::create(fbb, &args).as_union_value(),
            )
        }
        Reply::Info(info) => (R::InfoResult, build_info(fbb, info).as_union_value()),
        Reply::Txn(outcome) => (
            R::TxnResult,
            build_txn_result(fbb, outcome).as_union_value(),
        ),
        Reply::Checkpoint(checkpoint) => {
            let args = fb::CheckpointResultArgs {
                duration_us: checkpoint.duration_us,
            };
            (
                R::CheckpointResult,
                fb::CheckpointResult::create(fbb, &args).as_union_value(),
            )
        }
    }
}

fn build_txn_op_result<'b>(
    fbb: &mut Builder<'b>,
    result: &TxnOpResult,
) -> WIPOffset<fb::TxnOpResult<'b>> {
    let mut args = fb::TxnOpResultArgs::default();
    match result {
        TxnOpResult::Read(None) => args.kind = fb::TxnOpKind::Read,
        TxnOpResult::Read(Some(get)) => {
            args.kind = fb::TxnOpKind::Read;
            args.found = true;
            args.value = Some(bytes(fbb, &get.value));
            args.version = get.version;
            args.ttl_remaining_ms = get.ttl_remaining_ms;
        }
        TxnOpResult::Put => args.kind = fb::TxnOpKind::Put,
        TxnOpResult::Delete { existed } => {
            args.kind = fb::TxnOpKind::Delete;
            args.found = *existed;
        }
        TxnOpResult::Add { value } => {
            args.kind = fb::TxnOpKind::Add;
            args.number = *value;
        }
    }
    fb::TxnOpResult::create(fbb, &args)
}

fn build_txn_result<'b>(
    fbb: &mut Builder<'b>,
    outcome: &TxnOutcome,
) -> WIPOffset<fb::TxnResult<'b>> {
    let (kind, index, detail, results) = match outcome {
        TxnOutcome::Committed(results) => (fb::TxnOutcome::Committed, 0, None, &results[..]),
        TxnOutcome::AssertionFailed { index, detail } => (
            fb::TxnOutcome::AssertionFailed,
            *index,
            Some(detail),
            &[][..],
        ),
        TxnOutcome::OpFailed { index, detail } => {
            (fb::TxnOutcome::OpFailed, *index, Some(detail), &[][..])
        }
    };
    let results: Vec<_> = results
        .iter()
        .map(|result| build_txn_op_result(fbb, result))
        .collect();
    let results = fbb.create_vector(&results);
    let detail = detail.map(|detail| fbb.create_string(message_truncated(detail)));
    fb::TxnResult::create(
        fbb,
        &fb::TxnResultArgs {
            outcome: kind,
            failed_index: index,
            detail,
            results: Some(results),
        },
    )
}

/// Reads a TxnResult.
fn read_txn_result(result: &fb::TxnResult<'_>) -> Result<TxnOutcome, String> {
    let detail = result.detail().unwrap_or_default().to_owned();
    let index = result.failed_index();
    Ok(match result.outcome() {
        fb::TxnOutcome::Committed => TxnOutcome::Committed(
            result
                .results()
                .map(|results| {
                    results
                        .iter()
                        .map(|r| read_txn_op_result(&r))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
        ),
        fb::TxnOutcome::AssertionFailed => TxnOutcome::AssertionFailed { index, detail },
        fb::TxnOutcome::OpFailed => TxnOutcome::OpFailed { index, detail },
        unknown => {
            return Err(format!(
                "txn outcome {} is unknown to this client",
                unknown.0
            ))
        }
    })
}

fn read_txn_op_result(result: &fb::TxnOpResult<'_>) -> Result<TxnOpResult, String> {
    Ok(match (result.kind(), result.found(), result.value()) {
        (fb::TxnOpKind::Read, true, Some(value)) => TxnOpResult::Read(Some(GetReply {
            value: value.bytes().to_vec(),
            version: result.version(),
            ttl_remaining_ms: result.ttl_remaining_ms(),
        })),
        (fb::TxnOpKind::Read, false, None) => TxnOpResult::Read(None),
        (fb::TxnOpKind::Read, _, _) => {
            return Err("a Read result's found flag and value disagree".to_owned())
        }
        (fb::TxnOpKind::Put, _, _) => TxnOpResult::Put,
        (fb::TxnOpKind::Delete, existed, _) => TxnOpResult::Delete { existed },
        (fb::TxnOpKind::Add, _, _) => TxnOpResult::Add {
            value: result.number(),
        },
        (unknown, _, _) => {
            return Err(format!(
                "txn op result kind {} is unknown to this client",
                unknown.0
            ))
        }
    })
}

fn build_info<'b>(fbb: &mut Builder<'b>, info: &InfoReply) -> WIPOffset<fb::InfoResult<'b>> {
    let sections: Vec<_> = info
        .sections
        .iter()
        .map(|section| {
            let metrics: Vec<_> = section
                .metrics
                .iter()
                .map(|metric| {
                    let name = fbb.create_string(&metric.name);
                    fb::Metric::create(
                        fbb,
                        &fb::MetricArgs {
                            name: Some(name),
                            value: metric.value,
                        },
                    )
                })
                .collect();
            let metrics = fbb.create_vector(&metrics);
            let name = fbb.create_string(&section.name);
            fb::InfoSection::create(
                fbb,
                &fb::InfoSectionArgs {
                    name: Some(name),
                    metrics: Some(metrics),
                },
            )
        })
        .collect();
    let sections = fbb.create_vector(&sections);
    let server_version = fbb.create_string(&info.server_version);
    let args = fb::InfoResultArgs {
        server_version: Some(server_version),
        uptime_ms: info.uptime_ms,
        shard_count: info.shard_count,
        core_count: info.core_count,
        sections: Some(sections),
    };
    fb::InfoResult::create(fbb, &args)
}

/// Reads the outcome of a verified response. A non-Ok status becomes a
/// `Failure` (any result attached to it is ignored, as the schema allows); an
/// Ok status must carry a result of a known type. The `Err` string says why
/// the response itself is malformed.
pub(crate) fn read_outcome(response: &fb::Response<'_>) -> Result<Result<Reply, Failure>, String> {
    let status = Status::from_code(response.status().0);
    if status != Status::Ok {
        let message = response.message().unwrap_or_default().to_owned();
        return Ok(Err(Failure { status, message }));
    }
    let result_type = response.result_type();
    let missing = || format!("status Ok but result {result_type:?} has no table");
    use fb::OperationResult as R;
    let reply = match result_type {
        R::NONE => return Err("status Ok but no result".to_owned()),
        R::PingResult => Reply::Ping,
        R::GetResult => {
            let get = response.result_as_get_result().ok_or_else(missing)?;
            Reply::Get(GetReply {
                value: get.value().bytes().to_vec(),
                version: get.version(),
                ttl_remaining_ms: get.ttl_remaining_ms(),
            })
        }
        R::PutResult => Reply::Put,
        R::DeleteResult => Reply::Delete,
        R::MultiGetResult => {
            let multi_get = response.result_as_multi_get_result().ok_or_else(missing)?;
            let values = multi_get
                .values()
                .iter()
                .map(|lookup| lookup.value().map(|value| value.bytes().to_vec()))
                .collect();
            Reply::MultiGet { values }
        }
        R::MultiPutResult => Reply::MultiPut,
        R::ScanResult => {
            let scan = response.result_as_scan_result().ok_or_else(missing)?;
            Reply::Scan(ScanReply {
                entries: read_entries(scan.entries()),
                continuation: scan.continuation().map(|token| token.bytes().to_vec()),
            })
        }
        R::InfoResult => {
            let info = response.result_as_info_result().ok_or_else(missing)?;
            Reply::Info(read_info(&info))
        }
        R::CheckpointResult => {
            let checkpoint = response.result_as_checkpoint_result().ok_or_else(missing)?;
            Reply::Checkpoint(CheckpointReply {
                duration_us: checkpoint.duration_us(),
            })
        }
        R::TxnResult => {
            let txn = response.result_as_txn_result().ok_or_else(missing)?;
            Reply::Txn(read_txn_result(&txn)?)
        }
        unknown => {
            return Err(format!(
                "result tag {} is unknown to this client",
                unknown.0
            ))
        }
    };
    Ok(Ok(reply))
}

fn read_info(info: &fb::InfoResult<'_>) -> InfoReply {
    let sections = info
        .sections()
        .iter()
        .map(|section| InfoSection {
            name: section.name().to_owned(),
            metrics: section
                .metrics()
                .iter()
                .map(|metric| Metric {
                    name: metric.name().to_owned(),
                    value: metric.value(),
                })
                .collect(),
        })
        .collect();
    InfoReply {
        server_version: info.server_version().to_owned(),
        uptime_ms: info.uptime_ms(),
        shard_count: info.shard_count(),
        core_count: info.core_count(),
        sections,
    }
}
