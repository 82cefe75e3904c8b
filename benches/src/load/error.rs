//! Why a load run stopped early. Each variant says what failed and where, in
//! words a person running a benchmark can act on.
//!
//! A server's error *replies* are not here: they are counted in `Stats` and
//! judged against `--max-errors` after the run, so the table still prints.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot connect to {addr}: {source} (is the server running and listening there?)")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("cannot resolve {addr:?}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("connection to {addr}: {context}: {source}")]
    Io {
        addr: SocketAddr,
        context: &'static str,
        source: io::Error,
    },
    #[error("{addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("{addr} broke the protocol: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error(
        "{addr} sent no reply for {seconds:.1} s while requests were in flight (see --timeout)"
    )]
    Stalled { addr: SocketAddr, seconds: f64 },
    #[error(
        "open loop: {backlog} arrivals are waiting to be sent; the server cannot sustain \
         the target rate (lower --rate)"
    )]
    Overloaded { backlog: usize },
    #[error("another worker failed")]
    Aborted,
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

impl LoadError {
    pub fn file(path: impl Into<PathBuf>, reason: impl ToString) -> LoadError {
        LoadError::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
