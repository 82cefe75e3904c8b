//! jube-server: the pieces of `jubed` and `jubectl` that tests can reach.

#![forbid(unsafe_code)]

pub mod config;
