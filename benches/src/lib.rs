//! jube-benches.
