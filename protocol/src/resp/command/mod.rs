//! Typed commands: the words of a request checked and turned into a
//! `Command`, or refused with the error reply Redis 7 gives for the same
//! words (tests record the strings observed from a real Redis).
//!
//! Order of checks, as in Redis: unknown command, unknown subcommand, arity
//! (from `table`), then the command's own options left to right, then the
//! values of the options. Everything here is pure; checks that need the
//! store (types, current values, whether a password is configured) belong to
//! the server, which finds their Redis wording in `errors`.
//!
//! Invariants: `parse` never panics on any words; a parsed command owns its
//! bytes (the request's buffers are moved, not copied); `keys()` lists every
//! key the command reads or writes, in argument order, for shard routing.

mod server;
mod string;

use std::borrow::Cow;

use super::constants::ERROR_ARG_ECHO_SIZE_MAX;
use super::reply::{Reply, RespVersion};
use super::table;

pub use server::{ClientAttribute, ClientQuery, CommandQuery, Credentials, FlushMode};
pub use string::{
    ttl_value, Condition, ExpireCondition, Expiry, GetExExpiry, Scan, Set, SetTtl, TimeUnit,
};

/// Error texts the server needs for checks that depend on the store or the
/// configuration, in Redis 7's words.
pub mod errors {
    /// A command on a key that holds another type.
    pub const WRONG_TYPE: &str =
        "WRONGTYPE Operation against a key holding the wrong kind of value";
    /// AUTH when no password is configured.
    pub const AUTH_NOT_CONFIGURED: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
    /// AUTH with a wrong password.
    pub const AUTH_FAILED: &str = "WRONGPASS invalid username-password pair or user is disabled.";
    /// Any command but AUTH, HELLO and QUIT before authenticating.
    pub const NO_AUTH: &str = "NOAUTH Authentication required.";
    /// EXEC without MULTI.
    pub const EXEC_WITHOUT_MULTI: &str = "ERR EXEC without MULTI";
    /// DISCARD without MULTI.
    pub const DISCARD_WITHOUT_MULTI: &str = "ERR DISCARD without MULTI";
    /// MULTI inside MULTI.
    pub const MULTI_NESTED: &str = "ERR MULTI calls can not be nested";
    /// A value longer than the engine accepts (jube-specific wording).
    pub const VALUE_TOO_LARGE: &str = "ERR value is larger than this server accepts";
    /// A key longer than the engine accepts (jube-specific wording).
    pub const KEY_TOO_LARGE: &str = "ERR key is larger than this server accepts";
}

/// A request refused before it ran; its text starts with the error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub Cow<'static, str>);

impl CommandError {
    /// The error reply for this error.
    pub fn to_reply(&self) -> Reply {
        Reply::Error(self.0.clone())
    }

    /// `ERR syntax error`.
    pub fn syntax() -> CommandError {
        CommandError(Cow::Borrowed("ERR syntax error"))
    }

    /// `ERR wrong number of arguments for '<name>' command`.
    pub fn arity(name: &str) -> CommandError {
        CommandError(format!("ERR wrong number of arguments for '{name}' command").into())
    }

    /// `ERR invalid expire time in '<name>' command`.
    pub fn expire_time(name: &str) -> CommandError {
        CommandError(format!("ERR invalid expire time in '{name}' command").into())
    }

    fn from_static(text: &'static str) -> CommandError {
        CommandError(Cow::Borrowed(text))
    }
}

impl From<CommandError> for Reply {
    fn from(error: CommandError) -> Reply {
        Reply::Error(error.0)
    }
}

/// One parsed command. Keys and values are the client's bytes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// `PING [message]`.
    Ping { message: Option<Vec<u8>> },
    /// `ECHO message`.
    Echo { message: Vec<u8> },
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello {
        version: Option<RespVersion>,
        auth: Option<Credentials>,
        client_name: Option<Vec<u8>>,
    },
    /// `AUTH [user] password`.
    Auth(Credentials),
    /// `SELECT 0`, the only database.
    Select,
    /// `QUIT`: reply OK, then close.
    Quit,
    /// `GET key`.
    Get { key: Vec<u8> },
    /// `SET`, and `SETEX`, `PSETEX`, `GETSET`, which are SETs with options.
    Set(Set),
    /// `SETNX key value`: replies 1 or 0, unlike `SET NX`.
    SetNx { key: Vec<u8>, value: Vec<u8> },
    /// `GETDEL key`.
    GetDel { key: Vec<u8> },
    /// `GETEX key [EX|PX|EXAT|PXAT t | PERSIST]`.
    GetEx {
        key: Vec<u8>,
        expiry: Option<GetExExpiry>,
    },
    /// `MGET key...`.
    MGet { keys: Vec<Vec<u8>> },
    /// `MSET key value ...`: all or nothing.
    MSet { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// `MSETNX key value ...`: all or nothing, only if no key exists.
    MSetNx { pairs: Vec<(Vec<u8>, Vec<u8>)> },
    /// `DEL key...`.
    Del { keys: Vec<Vec<u8>> },
    /// `UNLINK key...` (same as DEL in jube).
    Unlink { keys: Vec<Vec<u8>> },
    /// `EXISTS key...`: counts repeated keys each time.
    Exists { keys: Vec<Vec<u8>> },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY` as one signed delta.
    IncrBy { key: Vec<u8>, delta: i64 },
    /// `INCRBYFLOAT key increment`.
    IncrByFloat { key: Vec<u8>, increment: f64 },
    /// `APPEND key value`.
    Append { key: Vec<u8>, value: Vec<u8> },
    /// `STRLEN key`.
    StrLen { key: Vec<u8> },
    /// `GETRANGE key start end` (see `range::getrange`).
    GetRange { key: Vec<u8>, start: i64, end: i64 },
    /// `SETRANGE key offset value` (see `range::setrange_length`).
    SetRange {
        key: Vec<u8>,
        offset: u64,
        value: Vec<u8>,
    },
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`. A deadline in the past
    /// deletes the key.
    Expire {
        key: Vec<u8>,
        expiry: Expiry,
        condition: ExpireCondition,
    },
    /// `TTL` (seconds) or `PTTL` (milliseconds).
    Ttl { key: Vec<u8>, unit: TimeUnit },
    /// `EXPIRETIME` (seconds) or `PEXPIRETIME` (milliseconds).
    ExpireTime { key: Vec<u8>, unit: TimeUnit },
    /// `PERSIST key`.
    Persist { key: Vec<u8> },
    /// `TYPE key`.
    Type { key: Vec<u8> },
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
    Scan(Scan),
    /// `KEYS pattern`.
    Keys { pattern: Vec<u8> },
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHDB [ASYNC|SYNC]`.
    FlushDb { mode: FlushMode },
    /// `FLUSHALL [ASYNC|SYNC]`.
    FlushAll { mode: FlushMode },
    /// `INFO [section...]`, sections lowercased; empty means the default set.
    Info { sections: Vec<Vec<u8>> },
    /// `CONFIG GET pattern...`.
    ConfigGet { patterns: Vec<Vec<u8>> },
    /// `COMMAND` and its subcommands.
    Command(CommandQuery),
    /// `CLIENT` subcommands.
    Client(ClientQuery),
    /// `TIME`.
    Time,
    /// `MULTI` (parsed only: transactions come later).
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key...`.
    Watch { keys: Vec<Vec<u8>> },
    /// `UNWATCH`.
    Unwatch,
}

impl Command {
    /// Parses the words of one request (as `frame::decode` returns them).
    /// `args` must not be empty: an empty request is skipped, not parsed.
    pub fn parse(mut args: Vec<Vec<u8>>) -> Result<Command, CommandError> {
        let Some(name) = args.first() else {
            return Err(CommandError::from_static("ERR empty command"));
        };
        let Some(spec) = table::lookup(name).filter(|spec| spec.container().is_none()) else {
            return Err(unknown_command(&args));
        };
        let spec = match (table::subcommands(spec.name).next(), args.get(1)) {
            (Some(_), Some(sub)) => {
                let mut full = spec.name.as_bytes().to_vec();
                full.push(b'|');
                full.extend_from_slice(sub);
                table::lookup(&full).ok_or_else(|| unknown_subcommand(spec.name, sub))?
            }
            _ => spec,
        };
        if !spec.arity_accepts(args.len()) {
            return Err(CommandError::arity(spec.name));
        }
        let name = spec.name;
        if let Some(command) = string::parse(name, &mut args)? {
            return Ok(command);
        }
        server::parse(name, &mut args)
    }

    /// Every key this command reads or writes, in argument order (repeats
    /// kept). Commands with no key give none; SCAN, KEYS, DBSIZE, FLUSHDB and
    /// FLUSHALL touch every shard and are routed by the server as such.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Get { key }
            | Command::SetNx { key, .. }
            | Command::GetDel { key }
            | Command::GetEx { key, .. }
            | Command::IncrBy { key, .. }
            | Command::IncrByFloat { key, .. }
            | Command::Append { key, .. }
            | Command::StrLen { key }
            | Command::GetRange { key, .. }
            | Command::SetRange { key, .. }
            | Command::Expire { key, .. }
            | Command::Ttl { key, .. }
            | Command::ExpireTime { key, .. }
            | Command::Persist { key }
            | Command::Type { key } => vec![key.as_slice()],
            Command::Set(set) => vec![set.key.as_slice()],
            Command::MGet { keys }
            | Command::Del { keys }
            | Command::Unlink { keys }
            | Command::Exists { keys }
            | Command::Watch { keys } => keys.iter().map(Vec::as_slice).collect(),
            Command::MSet { pairs } | Command::MSetNx { pairs } => {
                pairs.iter().map(|(key, _)| key.as_slice()).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Moves word `index` out of `args` (it must exist: arity was checked).
pub(crate) fn take(args: &mut [Vec<u8>], index: usize) -> Vec<u8> {
    args.get_mut(index).map(std::mem::take).unwrap_or_default()
}

/// Word `index` of `args`, or empty.
pub(crate) fn word(args: &[Vec<u8>], index: usize) -> &[u8] {
    args.get(index).map(Vec::as_slice).unwrap_or_default()
}

/// True if `word` equals `option` ignoring ASCII case.
pub(crate) fn is(word: &[u8], option: &str) -> bool {
    word.eq_ignore_ascii_case(option.as_bytes())
}

/// Redis's `unknown command '%.128s', with args beginning with: 'a' 'b' `:
/// arguments are echoed while the list is shorter than 128 bytes, each cut
/// to what is left of those 128.
fn unknown_command(args: &[Vec<u8>]) -> CommandError {
    let name = String::from_utf8_lossy(cut(word(args, 0), ERROR_ARG_ECHO_SIZE_MAX));
    let mut echoed = String::new();
    for arg in args.iter().skip(1) {
        if echoed.len() >= ERROR_ARG_ECHO_SIZE_MAX {
            break;
        }
        let room = ERROR_ARG_ECHO_SIZE_MAX - echoed.len();
        echoed.push('\'');
        echoed.push_str(&String::from_utf8_lossy(cut(arg, room)));
        echoed.push_str("' ");
    }
    CommandError(format!("ERR unknown command '{name}', with args beginning with: {echoed}").into())
}

/// Redis's `unknown subcommand '%.128s'. Try CONTAINER HELP.`
fn unknown_subcommand(container: &str, sub: &[u8]) -> CommandError {
    let sub = String::from_utf8_lossy(cut(sub, ERROR_ARG_ECHO_SIZE_MAX));
    let container = container.to_ascii_uppercase();
    CommandError(format!("ERR unknown subcommand '{sub}'. Try {container} HELP.").into())
}

fn cut(bytes: &[u8], size_max: usize) -> &[u8] {
    bytes.get(..size_max.min(bytes.len())).unwrap_or_default()
}
