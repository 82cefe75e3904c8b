//! The RESP front end: jubed's second listener, for Redis clients, `redis-cli` and
//! `redis-benchmark`. Framing, command parsing and reply encoding are `jube_protocol::resp` (pure);
//! this module does the I/O and runs the commands on the shards through the same dispatcher as
//! the native protocol.
//!
//! Layout: [`connection`] (one client: reader, writer, in-order replies), [`execute`] (a parsed
//! command to its shard calls or its immediate reply), [`keyspace`] (commands over every shard:
//! SCAN, KEYS, DBSIZE, FLUSHDB, MSETNX across shards), [`admin`] (INFO, CONFIG GET, CLIENT,
//! HELLO), [`shard_op`] (what runs on a shard's core). docs/resp.md is the reference.
//!
//! Invariants: a RESP connection obeys the same bounds as a native one (`connections_max`,
//! `connection_in_flight_max`, a read buffer of one maximal request plus one receive, an output
//! buffer of `OUTPUT_BUFFER_SIZE_MAX` plus one reply); the state shared across cores here is only
//! a client-id counter and the bounded SCAN cursor table.

pub mod admin;
pub mod connection;
pub mod execute;
pub mod keyspace;
pub mod multi;
pub mod shard_op;

pub use connection::{reject, serve};

use crate::constants::SCAN_CURSORS_MAX;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;

/// Where a SCAN continues: the shard, and the last key returned from it (None: its start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPosition {
    pub shard: usize,
    pub after: Option<Vec<u8>>,
}

/// The positions of SCANs in progress, by cursor id; at most `SCAN_CURSORS_MAX`, oldest evicted.
#[derive(Debug, Default)]
struct CursorTable {
    positions: HashMap<u64, ScanPosition>,
    order: VecDeque<u64>,
    next_id: u64,
}

/// What RESP connections on every core share.
#[derive(Debug, Default)]
pub struct RespShared {
    next_client_id: AtomicU64,
    cursors: Mutex<CursorTable>,
    /// The RESP listener's port once bound, for INFO and CONFIG GET port.
    port: AtomicU16,
}

impl RespShared {
    /// A new process-unique client id (CLIENT ID), from 1.
    pub fn client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Remembers `position` and returns its cursor id (never 0, which means "done").
    pub fn save_cursor(&self, position: ScanPosition) -> u64 {
        let mut table = self
            .cursors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        table.next_id = table.next_id.wrapping_add(1).max(1);
        let id = table.next_id;
        if table.order.len() >= SCAN_CURSORS_MAX {
            if let Some(oldest) = table.order.pop_front() {
                table.positions.remove(&oldest);
            }
        }
        table.order.push_back(id);
        table.positions.insert(id, position);
        assert!(
            table.positions.len() <= SCAN_CURSORS_MAX,
            "cursor table over its bound"
        );
        id
    }

    /// The position of cursor `id`, if it is still remembered.
    pub fn cursor(&self, id: u64) -> Option<ScanPosition> {
        let table = self
            .cursors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        table.positions.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_table_is_bounded_and_evicts_the_oldest() {
        let shared = RespShared::default();
        let first = shared.save_cursor(ScanPosition {
            shard: 1,
            after: Some(b"k".to_vec()),
        });
        assert_ne!(first, 0);
        assert_eq!(shared.cursor(first).map(|p| p.shard), Some(1));
        for _ in 0..SCAN_CURSORS_MAX {
            shared.save_cursor(ScanPosition {
                shard: 0,
                after: None,
            });
        }
        assert_eq!(shared.cursor(first), None, "the oldest cursor is evicted");
        assert_eq!(shared.client_id() + 1, shared.client_id());
    }
}
