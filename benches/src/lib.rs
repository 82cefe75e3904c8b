//! jube-benches: jube's benchmarks, and `load`, the library behind the
//! `jube-load` load generator.

pub mod load;
