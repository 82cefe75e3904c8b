//! jube-protocol.
