//! jube-engine: the storage of one shard.
//!
//! The engine depends on no runtime: every byte it reads or writes goes through the
//! [`storage::Storage`] trait, and time comes from [`clock::Clock`]. That is what lets the whole
//! shard run inside the deterministic simulator in [`storage::sim`].

#![forbid(unsafe_code)]

pub mod clock;
pub mod constants;
pub mod manifest;
pub mod shard;
pub mod storage;
pub mod tree;
pub mod txn;
pub mod wal;
