//! Owned Rust types for requests and responses: what the server and clients
//! work with instead of FlatBuffers tables.
//!
//! Invariants:
//! - A decoded `Request` has passed `Request::validate`: keys, values,
//!   batches, scan limits, TTLs and tokens are within `constants`.
//! - A `Response` is either a `Reply` (status `Ok`) or a `Failure` whose
//!   status is not `Ok`; the type makes the two exclusive.
//! - The `Reply` variant answering an `Operation` has the same
//!   `OperationKind`.

use std::fmt;
use std::ops::Bound;

use crate::constants::{
    BATCH_ITEMS_MAX, CONTINUATION_SIZE_MAX, KEY_SIZE_MAX, MESSAGE_SIZE_MAX, SCAN_LIMIT_MAX,
    TTL_MS_MAX, TXN_ITEMS_MAX, TXN_SIZE_MAX, VALUE_SIZE_MAX,
};

/// The status of a response. Codes are the schema's `Status` enum
/// (protocol/schema/jube.fbs); `Unknown` holds a code this build does not
/// know, sent by a newer peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    NotFound,
    InvalidRequest,
    KeyTooLarge,
    ValueTooLarge,
    FrameTooLarge,
    TooManyItems,
    UnsupportedVersion,
    UnknownOperation,
    MalformedFrame,
    Busy,
    NoSpace,
    ShardFailed,
    ShuttingDown,
    Internal,
    Unknown(u16),
}

impl Status {
    /// Every known status, in code order (code = index).
    pub const KNOWN: [Status; 15] = [
        Status::Ok,
        Status::NotFound,
        Status::InvalidRequest,
        Status::KeyTooLarge,
        Status::ValueTooLarge,
        Status::FrameTooLarge,
        Status::TooManyItems,
        Status::UnsupportedVersion,
        Status::UnknownOperation,
        Status::MalformedFrame,
        Status::Busy,
        Status::NoSpace,
        Status::ShardFailed,
        Status::ShuttingDown,
        Status::Internal,
    ];

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            Status::Unknown(code) => code,
            known => {
                let index = Status::KNOWN
                    .iter()
                    .position(|s| *s == known)
                    .expect("every named status is in KNOWN");
                u16::try_from(index).expect("KNOWN has fewer than 65536 entries")
            }
        }
    }

    /// The status for a wire code; codes this build does not know become
    /// `Unknown(code)`.
    pub fn from_code(code: u16) -> Status {
        Status::KNOWN
            .get(usize::from(code))
            .copied()
            .unwrap_or(Status::Unknown(code))
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Status::Busy | Status::ShuttingDown)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Unknown(code) => write!(f, "Unknown({code})"),
            known => fmt::Debug::fmt(known, f),
        }
    }
}

/// A request: the id the client chose and the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub op: Operation,
}

/// What a request asks for. Adding a variant is a protocol change: append it
/// to the schema's `Operation` union (docs/protocol.md, "Versioning").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Ping,
    Get(Get),
    Put(Entry),
    Delete { key: Vec<u8> },
    MultiGet { keys: Vec<Vec<u8>> },
    MultiPut { entries: Vec<Entry> },
    Scan(Scan),
    Info,
    Checkpoint,
    Txn(Txn),
}

/// Get one key, optionally with its version and remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    pub key: Vec<u8>,
    pub with_version: bool,
    pub with_ttl: bool,
}

impl Get {
    /// A plain get of `key`.
    pub fn new(key: impl Into<Vec<u8>>) -> Get {
        Get {
            key: key.into(),
            with_version: false,
            with_ttl: false,
        }
    }
}

/// A key and value: a Put, an item of MultiPut, or an item of a scan page
/// (which leaves `ttl_ms` as `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Time to live in milliseconds; `None` never expires. Never `Some(0)`.
    pub ttl_ms: Option<u64>,
}

impl Entry {
    /// An entry that never expires.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            ttl_ms: None,
        }
    }
}

/// A range scan. See the schema's `Scan` table for the semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    /// Most entries to return; 0 means `SCAN_LIMIT_MAX`.
    pub limit: u32,
    pub reverse: bool,
    /// Token from the previous page's `ScanReply::continuation`.
    pub continuation: Option<Vec<u8>>,
}

impl Scan {
    /// The whole key space, forwards, with the largest page.
    pub fn all() -> Scan {
        Scan {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            limit: 0,
            reverse: false,
            continuation: None,
        }
    }

    /// The page size the server uses: `limit`, or `SCAN_LIMIT_MAX` for 0.
    pub fn limit_effective(&self) -> u32 {
        if self.limit == 0 {
            SCAN_LIMIT_MAX
        } else {
            self.limit
        }
    }
}

/// An atomic transaction: assertions checked against the state before it,
/// then ops applied in order (docs/protocol.md, "Transactions"). An
/// assertion's or op's position in its vector is its index, which a failed
/// outcome names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    pub assertions: Vec<Assertion>,
    pub ops: Vec<TxnOp>,
}

impl Txn {
    /// Every key the transaction names (assertions first, then ops, repeats
    /// kept).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        let asserted = self.assertions.iter().map(|a| a.key.as_slice());
        asserted.chain(self.ops.iter().map(TxnOp::key))
    }

    /// Bytes of keys and values the transaction carries: what `TXN_SIZE_MAX`
    /// bounds.
    pub fn size_bytes(&self) -> usize {
        let assertions: usize = self
            .assertions
            .iter()
            .map(|a| {
                let value = match &a.check {
                    Check::ValueEquals(value) => value.len(),
                    _ => 0,
                };
                a.key.len() + value
            })
            .sum();
        let ops: usize = self
            .ops
            .iter()
            .map(|op| match op {
                TxnOp::Put(entry) => entry.key.len() + entry.value.len(),
                other => other.key().len(),
            })
            .sum();
        assertions + ops
    }

    /// Whether the transaction writes anything (a read-only one needs no log
    /// record).
    pub fn has_writes(&self) -> bool {
        self.ops.iter().any(|op| !matches!(op, TxnOp::Read { .. }))
    }
}

/// The value hash of `Check::HashEquals`: XXH3-64 with seed 0 of the value
/// bytes (docs/protocol.md, "Value hash"). Fixed forever: the data
/// directory's MANIFEST records it as `value_hash = "xxh3-64"`.
pub fn value_hash(value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(value)
}

/// Building a transaction step by step: each method appends one assertion
/// or op (its index is the count before it) and returns the transaction.
impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Appends an assertion on `key`.
    pub fn assert(mut self, key: impl Into<Vec<u8>>, check: Check) -> Txn {
        self.assertions.push(Assertion::new(key, check));
        self
    }

    pub fn assert_exists(self, key: impl Into<Vec<u8>>) -> Txn {
        self.assert(key, Check::Exists)
    }

    pub fn assert_absent(self, key: impl Into<Vec<u8>>) -> Txn {
        self.assert(key, Check::Absent)
    }

    pub fn assert_value(self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Txn {
        self.assert(key, Check::ValueEquals(value.into()))
    }

    /// The value's hash (`value_hash`) equals `hash`.
    pub fn assert_hash(self, key: impl Into<Vec<u8>>, hash: u64) -> Txn {
        self.assert(key, Check::HashEquals(hash))
    }

    pub fn assert_int(self, key: impl Into<Vec<u8>>, op: CompareOp, operand: i64) -> Txn {
        self.assert(key, Check::IntCompare { op, operand })
    }

    /// The key's version equals `version` (0: the key is absent).
    pub fn assert_version(self, key: impl Into<Vec<u8>>, version: u64) -> Txn {
        self.assert(key, Check::VersionEquals(version))
    }

    /// Appends an op.
    pub fn op(mut self, op: TxnOp) -> Txn {
        self.ops.push(op);
        self
    }

    /// Reads `key` with its version.
    pub fn read(self, key: impl Into<Vec<u8>>) -> Txn {
        self.op(TxnOp::Read(Get {
            key: key.into(),
            with_version: true,
            with_ttl: false,
        }))
    }

    pub fn put(self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Txn {
        self.op(TxnOp::Put(Entry::new(key, value)))
    }

    /// Puts with a time to live of `ttl_ms` milliseconds (not 0).
    pub fn put_ttl(self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, ttl_ms: u64) -> Txn {
        self.op(TxnOp::Put(Entry {
            key: key.into(),
            value: value.into(),
            ttl_ms: Some(ttl_ms),
        }))
    }

    pub fn delete(self, key: impl Into<Vec<u8>>) -> Txn {
        self.op(TxnOp::Delete { key: key.into() })
    }

    pub fn add(self, key: impl Into<Vec<u8>>, delta: i64) -> Txn {
        self.op(TxnOp::Add {
            key: key.into(),
            delta,
        })
    }
}

/// One condition of a transaction, on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub key: Vec<u8>,
    pub check: Check,
}

impl Assertion {
    pub fn new(key: impl Into<Vec<u8>>, check: Check) -> Assertion {
        Assertion {
            key: key.into(),
            check,
        }
    }
}

/// What an assertion checks, against the state before the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The key has a live value.
    Exists,
    /// The key has no live value.
    Absent,
    /// The value is exactly these bytes (false for an absent key).
    ValueEquals(Vec<u8>),
    /// XXH3-64 (seed 0) of the value is this (false for an absent key).
    HashEquals(u64),
    /// The value is a decimal-ASCII i64 `v` and `v <op> operand` (false for an
    /// absent key or a value that is not an integer).
    IntCompare { op: CompareOp, operand: i64 },
    /// The key's version is this; an absent key has version 0.
    VersionEquals(u64),
}

/// The comparison of `Check::IntCompare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    /// Whether `left <self> right`.
    pub fn holds(self, left: i64, right: i64) -> bool {
        match self {
            CompareOp::Eq => left == right,
            CompareOp::Ne => left != right,
            CompareOp::Lt => left < right,
            CompareOp::Le => left <= right,
            CompareOp::Gt => left > right,
            CompareOp::Ge => left >= right,
        }
    }
}

/// One step of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Reads the key as the transaction sees it here (its earlier writes
    /// included).
    Read(Get),
    /// Writes the entry (`ttl_ms` as for Put).
    Put(Entry),
    /// Deletes the key; the result says whether it existed.
    Delete { key: Vec<u8> },
    /// Adds `delta` to the decimal-ASCII i64 value (absent = 0), keeping the
    /// key's expiry; not an integer or an overflow fails the transaction.
    Add { key: Vec<u8>, delta: i64 },
}

impl TxnOp {
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Read(get) => &get.key,
            TxnOp::Put(entry) => &entry.key,
            TxnOp::Delete { key } | TxnOp::Add { key, .. } => key,
        }
    }
}

/// How a transaction ended (`Reply::Txn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied and durable; one result per op, in request order.
    Committed(Vec<TxnOpResult>),
    /// Assertion `index` did not hold; nothing was applied.
    AssertionFailed { index: u32, detail: String },
    /// Op `index` could not be applied; nothing was applied.
    OpFailed { index: u32, detail: String },
}

impl TxnOutcome {
    pub fn is_committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed(_))
    }
}

/// The result of one op of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// `None`: the key had no live value.
    Read(Option<GetReply>),
    Put,
    Delete {
        existed: bool,
    },
    /// The new value.
    Add {
        value: i64,
    },
}

/// The operation a request or reply is about, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Ping,
    Get,
    Put,
    Delete,
    MultiGet,
    MultiPut,
    Scan,
    Info,
    Checkpoint,
    Txn,
}

impl Operation {
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::Ping => OperationKind::Ping,
            Operation::Get(_) => OperationKind::Get,
            Operation::Put(_) => OperationKind::Put,
            Operation::Delete { .. } => OperationKind::Delete,
            Operation::MultiGet { .. } => OperationKind::MultiGet,
            Operation::MultiPut { .. } => OperationKind::MultiPut,
            Operation::Scan(_) => OperationKind::Scan,
            Operation::Info => OperationKind::Info,
            Operation::Checkpoint => OperationKind::Checkpoint,
            Operation::Txn(_) => OperationKind::Txn,
        }
    }
}

impl Request {
    /// Checks every limit of `constants` and the field rules of the schema.
    /// Decoding runs this on every request; the client runs it before
    /// sending, so a bad request fails locally with the status the server
    /// would have answered.
    pub fn validate(&self) -> Result<(), Failure> {
        match &self.op {
            Operation::Ping | Operation::Info | Operation::Checkpoint => Ok(()),
            Operation::Get(get) => validate_key(&get.key),
            Operation::Put(entry) => validate_entry(entry),
            Operation::Delete { key } => validate_key(key),
            Operation::MultiGet { keys } => {
                validate_batch(keys.len())?;
                keys.iter().try_for_each(|key| validate_key(key))
            }
            Operation::MultiPut { entries } => {
                validate_batch(entries.len())?;
                entries.iter().try_for_each(validate_entry)
            }
            Operation::Scan(scan) => validate_scan(scan),
            Operation::Txn(txn) => validate_txn(txn),
        }
    }
}

fn validate_txn(txn: &Txn) -> Result<(), Failure> {
    if txn.ops.is_empty() && txn.assertions.is_empty() {
        return Err(Failure::new(
            Status::InvalidRequest,
            "transaction has neither assertions nor ops",
        ));
    }
    let items = txn.assertions.len() + txn.ops.len();
    if items > TXN_ITEMS_MAX {
        return Err(Failure::new(
            Status::TooManyItems,
            format!(
                "transaction has {} assertions and {} ops, the maximum is {TXN_ITEMS_MAX} in all",
                txn.assertions.len(),
                txn.ops.len()
            ),
        ));
    }
    for (index, assertion) in txn.assertions.iter().enumerate() {
        validate_key(&assertion.key).map_err(|f| at("assertion", index, f))?;
        if let Check::ValueEquals(value) = &assertion.check {
            validate_value(value).map_err(|f| at("assertion", index, f))?;
        }
    }
    for (index, op) in txn.ops.iter().enumerate() {
        match op {
            TxnOp::Put(entry) => validate_entry(entry),
            other => validate_key(other.key()),
        }
        .map_err(|f| at("op", index, f))?;
    }
    let size = txn.size_bytes();
    if size > TXN_SIZE_MAX {
        return Err(Failure::new(
            Status::TooManyItems,
            format!("transaction carries {size} bytes of keys and values, the maximum is {TXN_SIZE_MAX}"),
        ));
    }
    Ok(())
}

/// `failure` with the transaction item it is about in front of its message.
fn at(what: &str, index: usize, failure: Failure) -> Failure {
    Failure::new(
        failure.status,
        format!("{what} {index}: {}", failure.message),
    )
}

fn validate_value(value: &[u8]) -> Result<(), Failure> {
    if value.len() > VALUE_SIZE_MAX {
        return Err(Failure::new(
            Status::ValueTooLarge,
            format!(
                "value is {} bytes, the maximum is {VALUE_SIZE_MAX}",
                value.len()
            ),
        ));
    }
    Ok(())
}

fn validate_key(key: &[u8]) -> Result<(), Failure> {
    if key.is_empty() {
        return Err(Failure::new(Status::InvalidRequest, "key is empty"));
    }
    if key.len() > KEY_SIZE_MAX {
        return Err(Failure::new(
            Status::KeyTooLarge,
            format!("key is {} bytes, the maximum is {KEY_SIZE_MAX}", key.len()),
        ));
    }
    Ok(())
}

fn validate_entry(entry: &Entry) -> Result<(), Failure> {
    validate_key(&entry.key)?;
    validate_value(&entry.value)?;
    match entry.ttl_ms {
        Some(0) => Err(Failure::new(
            Status::InvalidRequest,
            "ttl_ms is 0: omit it for no expiry",
        )),
        Some(ttl_ms) if ttl_ms > TTL_MS_MAX => Err(Failure::new(
            Status::InvalidRequest,
            format!("ttl_ms is {ttl_ms}, the maximum is {TTL_MS_MAX}"),
        )),
        _ => Ok(()),
    }
}

fn validate_batch(count: usize) -> Result<(), Failure> {
    if count > BATCH_ITEMS_MAX {
        return Err(Failure::new(
            Status::TooManyItems,
            format!("batch has {count} items, the maximum is {BATCH_ITEMS_MAX}"),
        ));
    }
    Ok(())
}

fn validate_scan(scan: &Scan) -> Result<(), Failure> {
    for bound in [&scan.start, &scan.end] {
        if let Bound::Included(key) | Bound::Excluded(key) = bound {
            validate_key(key)?;
        }
    }
    if scan.limit > SCAN_LIMIT_MAX {
        return Err(Failure::new(
            Status::TooManyItems,
            format!(
                "scan limit is {}, the maximum is {SCAN_LIMIT_MAX}",
                scan.limit
            ),
        ));
    }
    if let Some(token) = &scan.continuation {
        if token.len() > CONTINUATION_SIZE_MAX {
            return Err(Failure::new(
                Status::InvalidRequest,
                format!(
                    "continuation token is {} bytes, the maximum is {CONTINUATION_SIZE_MAX}",
                    token.len()
                ),
            ));
        }
    }
    Ok(())
}

/// A response: the request's id and either a reply or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's id; 0 when the request was too broken to read it.
    pub request_id: u64,
    pub outcome: Result<Reply, Failure>,
}

impl Response {
    pub fn ok(request_id: u64, reply: Reply) -> Response {
        Response {
            request_id,
            outcome: Ok(reply),
        }
    }

    /// A failed response. Panics if `status` is `Ok` (a bug in the caller).
    pub fn error(request_id: u64, status: Status, message: impl Into<String>) -> Response {
        Response {
            request_id,
            outcome: Err(Failure::new(status, message)),
        }
    }

    /// An upper bound on the size of this response's frame (prefix
    /// included), as `encode_response` builds it: the bytes of its keys,
    /// values and strings plus a generous allowance for each FlatBuffers
    /// table (vtable, fields, alignment) and vector (length, padding). A
    /// server reserves this much of its reply budget before it encodes a
    /// large response, and the encoder sizes its buffer with it so that a
    /// 16 MiB value is copied once, not regrown. A test checks the bound
    /// against encoded responses.
    pub fn encoded_size_max(&self) -> usize {
        /// Frame prefix, root offset, identifier, the `Response` table and
        /// its vtable, and the result table: all fixed-size fields.
        const ENVELOPE_SIZE_MAX: usize = 256;
        /// One table with its vtable and alignment padding.
        const TABLE_SIZE_MAX: usize = 96;
        /// One vector or string's length, terminator and padding.
        const VECTOR_OVERHEAD_MAX: usize = 16;
        let body = match &self.outcome {
            Err(failure) => failure.message.len().min(MESSAGE_SIZE_MAX) + VECTOR_OVERHEAD_MAX,
            Ok(Reply::Ping | Reply::Put | Reply::Delete | Reply::MultiPut) => 0,
            Ok(Reply::Checkpoint(_)) => 0,
            Ok(Reply::Get(reply)) => reply.value.len() + VECTOR_OVERHEAD_MAX,
            Ok(Reply::Txn(TxnOutcome::Committed(results))) => {
                VECTOR_OVERHEAD_MAX
                    + results
                        .iter()
                        .map(|result| {
                            TABLE_SIZE_MAX
                                + 4
                                + match result {
                                    TxnOpResult::Read(Some(reply)) => {
                                        TABLE_SIZE_MAX + reply.value.len() + VECTOR_OVERHEAD_MAX
                                    }
                                    _ => 0,
                                }
                        })
                        .sum::<usize>()
            }
            Ok(Reply::Txn(
                TxnOutcome::AssertionFailed { detail, .. } | TxnOutcome::OpFailed { detail, .. },
            )) => TABLE_SIZE_MAX + detail.len().min(MESSAGE_SIZE_MAX) + VECTOR_OVERHEAD_MAX,
            Ok(Reply::MultiGet { values }) => {
                VECTOR_OVERHEAD_MAX
                    + values
                        .iter()
                        .map(|value| {
                            TABLE_SIZE_MAX
                                + 4
                                + value
                                    .as_ref()
                                    .map_or(0, |value| value.len() + VECTOR_OVERHEAD_MAX)
                        })
                        .sum::<usize>()
            }
            Ok(Reply::Scan(reply)) => {
                2 * VECTOR_OVERHEAD_MAX
                    + reply.continuation.as_ref().map_or(0, Vec::len)
                    + reply
                        .entries
                        .iter()
                        .map(|entry| {
                            TABLE_SIZE_MAX
                                + 4
                                + entry.key.len()
                                + entry.value.len()
                                + 2 * VECTOR_OVERHEAD_MAX
                        })
                        .sum::<usize>()
            }
            Ok(Reply::Info(reply)) => {
                2 * VECTOR_OVERHEAD_MAX
                    + reply.server_version.len()
                    + reply
                        .sections
                        .iter()
                        .map(|section| {
                            TABLE_SIZE_MAX
                                + 4
                                + 2 * VECTOR_OVERHEAD_MAX
                                + section.name.len()
                                + section
                                    .metrics
                                    .iter()
                                    .map(|metric| {
                                        TABLE_SIZE_MAX + 4 + VECTOR_OVERHEAD_MAX + metric.name.len()
                                    })
                                    .sum::<usize>()
                        })
                        .sum::<usize>()
            }
        };
        ENVELOPE_SIZE_MAX + body
    }

    /// `Status::Ok` for a reply, else the failure's status.
    pub fn status(&self) -> Status {
        match &self.outcome {
            Ok(_) => Status::Ok,
            Err(failure) => failure.status,
        }
    }
}

/// Why a request failed: a status other than `Ok` and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

impl Failure {
    /// Panics if `status` is `Ok`: a failure with status Ok is a bug.
    pub fn new(status: Status, message: impl Into<String>) -> Failure {
        assert!(status != Status::Ok, "a Failure cannot have status Ok");
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

/// The result of a successful operation; one variant per `Operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ping,
    Get(GetReply),
    Put,
    Delete,
    /// One per requested key, in request order; `None` for a missing key.
    MultiGet {
        values: Vec<Option<Vec<u8>>>,
    },
    MultiPut,
    Scan(ScanReply),
    Info(InfoReply),
    Checkpoint(CheckpointReply),
    Txn(TxnOutcome),
}

impl Reply {
    pub fn kind(&self) -> OperationKind {
        match self {
            Reply::Ping => OperationKind::Ping,
            Reply::Get(_) => OperationKind::Get,
            Reply::Put => OperationKind::Put,
            Reply::Delete => OperationKind::Delete,
            Reply::MultiGet { .. } => OperationKind::MultiGet,
            Reply::MultiPut => OperationKind::MultiPut,
            Reply::Scan(_) => OperationKind::Scan,
            Reply::Info(_) => OperationKind::Info,
            Reply::Checkpoint(_) => OperationKind::Checkpoint,
            Reply::Txn(_) => OperationKind::Txn,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReply {
    pub value: Vec<u8>,
    /// Only if asked for and known.
    pub version: Option<u64>,
    /// Only if asked for and the key has a TTL.
    pub ttl_remaining_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReply {
    pub entries: Vec<Entry>,
    /// `Some` if the range may hold more: pass it in the next `Scan`.
    pub continuation: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoReply {
    pub server_version: String,
    pub uptime_ms: u64,
    pub shard_count: u32,
    pub core_count: u32,
    pub sections: Vec<InfoSection>,
}

/// A named group of metrics: "total", "shard.0", ...
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoSection {
    pub name: String,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointReply {
    pub duration_us: u64,
}
