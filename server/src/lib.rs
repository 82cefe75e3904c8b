//! jube-server.
