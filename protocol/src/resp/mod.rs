//! RESP, the Redis protocol: jube's second front end, for Redis clients and
//! tools. Everything here is pure: no I/O, no storage. The server reads bytes
//! into a buffer, calls `frame::decode`, turns the arguments into a typed
//! `Command` with `Command::parse`, routes it by `Command::keys`, runs it on
//! the shards, and encodes the `Reply` in the connection's `RespVersion`.
//!
//! - `constants`: every limit, with its reason.
//! - `frame`: the incremental request parser (arrays and inline commands).
//! - `reply`: replies and their RESP2 / RESP3 encodings.
//! - `command`: typed commands with Redis's argument validation and errors.
//! - `table`: the command table behind `COMMAND`, `COMMAND INFO`, `COMMAND DOCS`.
//! - `glob`: Redis's glob matching for `KEYS` and `SCAN MATCH`.
//! - `number`: integers and floats parsed and printed exactly as Redis does.
//! - `range`: `GETRANGE` / `SETRANGE` index arithmetic.
//!
//! docs/resp.md is the reference: supported commands, limits, differences
//! from Redis.

pub mod command;
pub mod constants;
pub mod frame;
pub mod glob;
pub mod number;
pub mod range;
pub mod reply;
pub mod table;

pub use command::{Command, CommandError};
pub use frame::{
    decode, decode_with, encode_command, size_hint, size_hint_with, Decoded, Limits, RespError,
};
pub use reply::{Reply, RespVersion};
