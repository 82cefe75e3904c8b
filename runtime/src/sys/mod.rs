//! The only module of the runtime that contains `unsafe` code or calls libc.
//!
//! Everything above `sys` is safe Rust. Each `unsafe` block here carries a `// SAFETY:` comment
//! naming the invariant that makes it sound. The central one, for the ring: **the memory an SQE
//! points to is owned by the ring's resource table from the push until the operation's final
//! completion**, and the ring is not freed while the kernel may still write to that memory.

#![allow(unsafe_code)]

pub mod buf_ring;
pub mod fd;
pub mod file;
pub mod memory;
pub mod ring;
pub mod socket;
