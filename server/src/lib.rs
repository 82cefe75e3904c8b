//! jube-server: `jubed`, the jube server, and the pieces `jubectl` and the tests reach.
//!
//! Layout: [`config`] (settings), [`server`] (start-up, listeners, shutdown), [`connection`] (one
//! client), [`request`] (a request's calls and how their results combine), [`dispatcher`] (routing
//! calls between cores, the committer), [`shard_worker`] (one shard on its core, durability waits),
//! [`shard_host`] (the seam to the storage engine), [`routing`] (key to shard to core), [`scan`],
//! [`info`], [`metrics`], [`txn`] (transactions: single-shard calls and the two-phase-commit
//! driver), [`large_frame`] (budgets and buffers for large values), [`sync`] (single-core task
//! synchronisation), [`constants`] (limits), and
//! [`resp`] (the RESP front end for Redis clients).

#![forbid(unsafe_code)]

pub mod call;
pub mod config;
pub mod connection;
pub mod constants;
pub mod dispatcher;
pub mod info;
pub mod large_frame;
pub mod metrics;
pub mod request;
pub mod resp;
pub mod routing;
pub mod scan;
pub mod server;
pub mod shard_host;
pub mod shard_worker;
pub mod sync;
pub mod txn;
