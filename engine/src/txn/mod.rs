//! Transactions: what a client asks for (assertions, then ops), what a shard answers, the WAL
//! records that make them durable, and the two-phase-commit driver.
//!
//! A transaction ([`TxnPart`] per shard) is a list of [`Assertion`]s, all checked against the
//! state *before* the transaction, then an ordered list of [`TxnOp`]s, each seeing the writes of
//! the ops before it (a private overlay over the shard's tree). Either every assertion holds and
//! every op succeeds and all writes apply atomically, or nothing changes and the answer names
//! the first failed assertion or op by its index in the client's request.
//!
//! - All keys on one shard: [`crate::shard::Shard::apply_txn`] does everything in one call on the
//!   shard's core and logs at most one WAL record (TxnApply) holding the *resolved* writes.
//! - Keys on several shards: two-phase commit driven by the sans-IO [`Coordinator`]; the
//!   coordinator shard is the lowest participant. See docs/architecture.md, "Transactions".
//!
//! Invariants:
//! - Every [`Assertion`] and [`TxnOp`] carries the index the client gave it; indexes are unique
//!   within one transaction (checked by [`TxnPart::validate`]).
//! - A shard locks a prepared transaction's keys until its outcome is applied; a locked key is
//!   neither read nor written by anyone else (`ShardError::Locked`), so no reader sees half a
//!   transaction.
//! - A [`TxnId`] of a transaction with writes is (coordinator shard, LSN of the coordinator's
//!   Prepare record), unique across restarts; a read-only cross-shard transaction gets a volatile
//!   id with [`TxnId::VOLATILE_BIT`] set that never reaches the disk.

mod coordinator;
pub mod eval;
pub mod record;

pub use coordinator::{Coordinator, Feedback, Step};
pub use eval::{evaluate, parse_int, Evaluation, ResolvedWrite};

use crate::tree::Value;
use crate::wal::Lsn;
use std::fmt;

/// Most assertions plus ops one transaction part may hold on one shard. Bounds the work of one
/// call on the shard's core and the size of its records; the server's protocol limit must not
/// exceed it.
pub const TXN_ITEMS_MAX: usize = 1024;

/// Most prepared (locked, undecided) cross-shard transactions one shard holds at once; past it
/// `prepare_txn` answers `Busy`. Bounds the lock table and the prepared writes kept in memory.
pub const TXN_PREPARED_MAX: usize = 4096;

/// Name of the value hash recorded in the MANIFEST (`value_hash`): XXH3-64 with seed 0.
pub const VALUE_HASH_NAME: &str = "xxh3-64";

/// The stable hash of a value used by [`AssertionKind::HashEquals`]: XXH3-64, seed 0, over the
/// value bytes. It must never change for an existing data directory (the MANIFEST records it).
pub fn value_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Identifies a cross-shard transaction: its coordinator shard and a number unique there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId {
    /// The coordinator: the lowest participant shard.
    pub coordinator: u32,
    /// The LSN of the coordinator's Prepare record, or a volatile number (with
    /// [`TxnId::VOLATILE_BIT`]) for a read-only transaction that logs nothing.
    pub number: u64,
}

impl TxnId {
    /// Set in `number` for the ids of read-only transactions, which are never logged.
    pub const VOLATILE_BIT: u64 = 1 << 63;

    pub fn is_volatile(&self) -> bool {
        self.number & TxnId::VOLATILE_BIT != 0
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "txn {}:{}", self.coordinator, self.number)
    }
}

/// An integer comparison: `value OP operand`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    pub fn holds(self, value: i64, operand: i64) -> bool {
        match self {
            Compare::Eq => value == operand,
            Compare::Ne => value != operand,
            Compare::Lt => value < operand,
            Compare::Le => value <= operand,
            Compare::Gt => value > operand,
            Compare::Ge => value >= operand,
        }
    }
}

/// What an assertion checks about one key (expired keys are absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertionKind {
    Exists,
    Absent,
    /// The value's bytes equal these (false if absent).
    ValueEquals(Vec<u8>),
    /// [`value_hash`] of the value equals this (false if absent).
    HashEquals(u64),
    /// The value is a decimal-ASCII i64 and `value op operand` holds (false if absent or not
    /// an integer).
    IntCompare {
        op: Compare,
        operand: i64,
    },
    /// The key's version equals this; an absent key has version 0.
    VersionEquals(u64),
}

/// One assertion of a transaction, checked against the state before the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// Index in the client's request, named in the reply if it fails.
    pub index: u32,
    pub key: Vec<u8>,
    pub kind: AssertionKind,
}

/// What an op does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Returns the value (as the txn's earlier ops left it). `with_version` tells the server
    /// whether the client wants the version; the engine always fills it.
    Read { with_version: bool },
    /// Stores `value`; `expiry_ms` is an absolute wall-clock time in ms, 0 = none.
    Put { value: Vec<u8>, expiry_ms: u64 },
    /// Removes the key; the result says whether it existed.
    Delete,
    /// Adds `delta` to the decimal-ASCII i64 value (absent = 0) and stores the result, keeping
    /// the key's expiry. A value that is not an integer, or an overflow, fails the whole txn
    /// (`TxnFailure::OpFailed`).
    Add { delta: i64 },
}

impl OpKind {
    pub fn is_write(&self) -> bool {
        !matches!(self, OpKind::Read { .. })
    }
}

/// One op of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOp {
    /// Index in the client's request, named in its result and in a failure.
    pub index: u32,
    pub key: Vec<u8>,
    pub kind: OpKind,
}

/// The part of a transaction that touches one shard: its assertions and ops on that shard's
/// keys, in the client's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnPart {
    pub assertions: Vec<Assertion>,
    pub ops: Vec<TxnOp>,
}

impl TxnPart {
    /// True when no op writes: the part takes locks (cross-shard) but logs nothing.
    pub fn is_read_only(&self) -> bool {
        !self.ops.iter().any(|op| op.kind.is_write())
    }

    /// Every key the part touches (assertions and ops), sorted and deduplicated: the keys a
    /// prepare locks.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .assertions
            .iter()
            .map(|a| a.key.clone())
            .chain(self.ops.iter().map(|o| o.key.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Checks the shape limits: at most [`TXN_ITEMS_MAX`] items, unique indexes.
    pub fn validate(&self) -> Result<(), String> {
        let count = self.assertions.len() + self.ops.len();
        if count > TXN_ITEMS_MAX {
            return Err(format!(
                "{count} assertions and ops on one shard exceed the limit of {TXN_ITEMS_MAX}"
            ));
        }
        let mut indexes: Vec<u32> = self
            .assertions
            .iter()
            .map(|a| a.index)
            .chain(self.ops.iter().map(|o| o.index))
            .collect();
        indexes.sort_unstable();
        if let Some(pair) = indexes.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!("index {} is used twice", pair[0]));
        }
        Ok(())
    }
}

/// The result of one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutput {
    /// The value, if present. A key written earlier in the same txn reads with version 0 (its
    /// version is assigned when the txn applies).
    Read(Option<Value>),
    Put,
    Deleted {
        existed: bool,
    },
    Added {
        value: i64,
    },
}

/// One op's result, tagged with its index in the client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpResult {
    pub index: u32,
    pub output: OpOutput,
}

/// Why a transaction did not commit (it changed nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnFailure {
    /// The assertion with this index did not hold.
    AssertionFailed { index: u32, detail: String },
    /// The op with this index could not run (Add on a non-integer, overflow).
    OpFailed { index: u32, detail: String },
}

impl fmt::Display for TxnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnFailure::AssertionFailed { index, detail } => {
                write!(f, "assertion {index} failed: {detail}")
            }
            TxnFailure::OpFailed { index, detail } => write!(f, "op {index} failed: {detail}"),
        }
    }
}

/// What a transaction did. Errors that are not the transaction's fault (Busy, Locked, NoSpace,
/// Failed) are `ShardError`s instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Every write applied; results of every op, ascending by index.
    Committed {
        results: Vec<OpResult>,
    },
    Failed(TxnFailure),
}

/// The answer of [`crate::shard::Shard::apply_txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnReply {
    pub outcome: TxnOutcome,
    /// Answer the client only once `Shard::acked_lsn() >= wait_lsn`: the LSN of the TxnApply
    /// record, or for a txn that wrote nothing the read barrier of its keys (0: none).
    pub wait_lsn: Lsn,
}

/// A request to prepare one shard's part of a cross-shard transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareRequest {
    /// None at the coordinator (the lowest participant), which allocates the id; the id it
    /// returned at every other participant.
    pub id: Option<TxnId>,
    /// True when no part of the whole transaction writes: the coordinator then allocates a
    /// volatile id and nobody logs anything (locks only).
    pub read_only: bool,
    pub part: TxnPart,
}

/// The answer of [`crate::shard::Shard::prepare_txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareReply {
    /// The part's keys are locked and (if it writes, or at the coordinator of a writing txn) its
    /// Prepare record is logged. `results` are the part's op results, ascending by index.
    Prepared {
        id: TxnId,
        results: Vec<OpResult>,
        /// Wait for `acked_lsn() >= wait_lsn` before deciding: the Prepare record's LSN, or the
        /// read barrier of the part's keys if nothing was logged.
        wait_lsn: Lsn,
    },
    /// An assertion or op failed: nothing was locked or logged on this shard. The failure may
    /// reveal data, so answer the client only once `acked_lsn() >= wait_lsn`.
    Failed { failure: TxnFailure, wait_lsn: Lsn },
}
