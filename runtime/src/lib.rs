//! jube-runtime.
