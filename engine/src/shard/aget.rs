//! Asynchronous single-key GETs: a value-log read that misses the cache does not block the core.
//!
//! [`Shard::start_get`] looks the key up like [`Shard::get`] and answers at once (absent,
//! expired, inline, not yet written, cached), or submits the value's read and returns a
//! [`GetTicket`]. [`Shard::poll`] reaps the reads (the value log checks every record against
//! its pointer, as the synchronous read does); [`Shard::take_gets`] hands out each finished GET
//! with its ticket. The pointer, expiry and version are taken at the start, and a record's bytes
//! never change while a read is in flight on it (the value log pins its segment), so a finished
//! GET returns the value the key held when it started.
//!
//! The caller still answers only once [`Shard::read_barrier`], taken at the start, is
//! acknowledged.
//!
//! Invariants:
//! - every ticket is handed out by `take_gets` exactly once: with its value, with the read's
//!   error, or (once the shard failed) with the shard's error;
//! - `pending_gets` holds exactly the tickets of the value log's reads not yet taken.

use super::vlog::ReadStart;
use super::{Shard, ShardError};
use crate::constants::VALUE_KIND_POINTER;
use crate::storage::Vfs;
use crate::tree::Value;
use std::collections::HashMap;

/// Names a GET whose value read is in flight (unique per shard since open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GetTicket(pub u64);

/// What [`Shard::start_get`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum GetStart {
    /// The answer, at once.
    Done(Option<Value>),
    /// The value's read is in flight: the answer comes from [`Shard::take_gets`].
    Pending(GetTicket),
}

/// A finished GET: its ticket and its answer.
pub type FinishedGet = (GetTicket, Result<Option<Value>, ShardError>);

/// GETs waiting for their value's read: the value's expiry and version, by ticket.
#[derive(Debug, Default)]
pub(super) struct PendingGets {
    gets: HashMap<u64, Value>,
    /// Scratch for the value log's finished reads.
    reads: Vec<(u64, Result<Vec<u8>, super::VlogError>)>,
}

impl<V: Vfs + Clone> Shard<V> {
    /// Starts a GET of `key`; see the module doc.
    pub fn start_get(&mut self, key: &[u8]) -> Result<GetStart, ShardError> {
        let Some((kind, mut value)) = self.lookup(key)? else {
            return Ok(GetStart::Done(None));
        };
        if kind != VALUE_KIND_POINTER {
            return Ok(GetStart::Done(Some(value)));
        }
        let pointer = self.decode_pointer(key, &value.bytes)?;
        let result = self.vlog.start_read(key, &pointer);
        match result.map_err(|error| self.classify(ShardError::from(error)))? {
            ReadStart::Ready(bytes) => {
                value.bytes = bytes;
                Ok(GetStart::Done(Some(value)))
            }
            ReadStart::Pending(ticket) => {
                value.bytes = Vec::new();
                let old = self.pending_gets.gets.insert(ticket, value);
                assert!(old.is_none(), "value-log read tickets are unique");
                Ok(GetStart::Pending(GetTicket(ticket)))
            }
        }
    }

    /// GETs started and not yet taken.
    pub fn gets_pending(&self) -> usize {
        self.pending_gets.gets.len()
    }

    /// Moves every finished GET into `out`. Once the shard has failed, that is every pending
    /// GET, answered with the failure (their reads may still finish inside the Storage).
    pub fn take_gets(&mut self, out: &mut Vec<FinishedGet>) {
        let mut reads = std::mem::take(&mut self.pending_gets.reads);
        self.vlog.take_reads(&mut reads);
        for (ticket, result) in reads.drain(..) {
            let mut value = self
                .pending_gets
                .gets
                .remove(&ticket)
                .expect("a finished read of a pending GET");
            let answer = match result {
                Ok(bytes) => {
                    value.bytes = bytes;
                    Ok(Some(value))
                }
                Err(error) => Err(self.classify(ShardError::from(error))),
            };
            out.push((GetTicket(ticket), answer));
        }
        self.pending_gets.reads = reads;
        if let Some(error) = &self.failed {
            for ticket in self.vlog.abandon_reads() {
                let removed = self.pending_gets.gets.remove(&ticket);
                assert!(removed.is_some(), "an abandoned read of a pending GET");
                out.push((GetTicket(ticket), Err(error.clone())));
            }
            assert!(
                self.pending_gets.gets.is_empty(),
                "every pending GET answered"
            );
        }
    }
}
