//! Parsing of the connection and server commands: PING, ECHO, HELLO, AUTH,
//! SELECT, QUIT, DBSIZE, FLUSHDB, FLUSHALL, INFO, CONFIG GET, COMMAND,
//! CLIENT, TIME and the transaction words.
//!
//! Wording follows Redis 7.0's `networking.c` and `server.c`; CLIENT SETINFO
//! (new in Redis 7.2) follows 7.2. Client names and SETINFO values obey
//! Redis's rule: printable ASCII without spaces (`!` to `~`).

use super::string::rest;
use super::{is, take, word, Command, CommandError};
use crate::resp::constants::DATABASE_COUNT;
use crate::resp::number::parse_i64;
use crate::resp::reply::RespVersion;

/// AUTH's or HELLO AUTH's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user; `None` for `AUTH password` (the default user).
    pub username: Option<Vec<u8>>,
    /// The password.
    pub password: Vec<u8>,
}

/// FLUSHDB / FLUSHALL's mode. jube flushes the same way in both; the mode
/// is kept so the server can report or honour it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// No option.
    Default,
    /// SYNC.
    Sync,
    /// ASYNC.
    Async,
}

/// COMMAND and its subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: every command's info (`table::command_reply`).
    List,
    /// `COMMAND COUNT` (`table::count_reply`).
    Count,
    /// `COMMAND INFO [name...]` (`table::info_reply`).
    Info(Vec<Vec<u8>>),
    /// `COMMAND DOCS [name...]` (`table::docs_reply`).
    Docs(Vec<Vec<u8>>),
}

/// CLIENT SETINFO's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAttribute {
    /// `lib-name`.
    LibraryName,
    /// `lib-ver`.
    LibraryVersion,
}

/// CLIENT subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientQuery {
    /// `CLIENT SETNAME name` (empty removes the name).
    SetName(Vec<u8>),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT SETINFO attribute value`.
    SetInfo(ClientAttribute, Vec<u8>),
}

const CLIENT_NAME_INVALID: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Redis's `validateClientName`: printable ASCII, no spaces.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|byte| (b'!'..=b'~').contains(byte))
}

/// Parses the commands of this family; `name` is a table name.
pub(super) fn parse(name: &str, args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let command = match name {
        "ping" => match args.len() {
            1 => Command::Ping { message: None },
            2 => Command::Ping {
                message: Some(take(args, 1)),
            },
            _ => return Err(CommandError::arity("ping")),
        },
        "echo" => Command::Echo {
            message: take(args, 1),
        },
        "hello" => hello(args)?,
        "auth" => match args.len() {
            2 => Command::Auth(Credentials {
                username: None,
                password: take(args, 1),
            }),
            3 => Command::Auth(Credentials {
                username: Some(take(args, 1)),
                password: take(args, 2),
            }),
            _ => return Err(CommandError::syntax()),
        },
        "select" => {
            let index = parse_i64(word(args, 1)).ok_or(CommandError::from_static(
                crate::resp::number::NOT_AN_INTEGER,
            ))?;
            if u64::try_from(index).map_or(true, |index| index >= DATABASE_COUNT) {
                return Err(CommandError::from_static("ERR DB index is out of range"));
            }
            Command::Select
        }
        "quit" => Command::Quit,
        "dbsize" => Command::DbSize,
        "flushdb" => Command::FlushDb {
            mode: flush_mode(args)?,
        },
        "flushall" => Command::FlushAll {
            mode: flush_mode(args)?,
        },
        "info" => {
            let mut sections = rest(args, 1);
            sections
                .iter_mut()
                .for_each(|section| section.make_ascii_lowercase());
            Command::Info { sections }
        }
        "config|get" => Command::ConfigGet {
            patterns: rest(args, 2),
        },
        "command" => Command::Command(CommandQuery::List),
        "command|count" => Command::Command(CommandQuery::Count),
        "command|info" => Command::Command(CommandQuery::Info(rest(args, 2))),
        "command|docs" => Command::Command(CommandQuery::Docs(rest(args, 2))),
        "client|setname" => {
            let name = take(args, 2);
            if !valid_client_name(&name) {
                return Err(CommandError::from_static(CLIENT_NAME_INVALID));
            }
            Command::Client(ClientQuery::SetName(name))
        }
        "client|getname" => Command::Client(ClientQuery::GetName),
        "client|id" => Command::Client(ClientQuery::Id),
        "client|info" => Command::Client(ClientQuery::Info),
        "client|setinfo" => client_setinfo(args)?,
        "time" => Command::Time,
        "multi" => Command::Multi,
        "exec" => Command::Exec,
        "discard" => Command::Discard,
        "unwatch" => Command::Unwatch,
        // A container called without a subcommand that its arity allows
        // (only COMMAND, handled above), or a table row with no parser: the
        // test `every_table_row_parses` keeps this unreachable.
        other => {
            return Err(CommandError(
                format!("ERR command '{other}' is not supported").into(),
            ))
        }
    };
    Ok(command)
}

fn flush_mode(args: &[Vec<u8>]) -> Result<FlushMode, CommandError> {
    match args {
        [_] => Ok(FlushMode::Default),
        [_, mode] if is(mode, "sync") => Ok(FlushMode::Sync),
        [_, mode] if is(mode, "async") => Ok(FlushMode::Async),
        _ => Err(CommandError::syntax()),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
fn hello(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let version = match args.get(1) {
        None => None,
        Some(word) => match parse_i64(word) {
            None => {
                return Err(CommandError::from_static(
                    "ERR Protocol version is not an integer or out of range",
                ))
            }
            Some(2) => Some(RespVersion::Resp2),
            Some(3) => Some(RespVersion::Resp3),
            Some(_) => {
                return Err(CommandError::from_static(
                    "NOPROTO unsupported protocol version",
                ))
            }
        },
    };
    let (mut auth, mut client_name) = (None, None);
    let mut index = 2;
    while let Some(option) = args.get(index) {
        let more = args.len() - 1 - index;
        if is(option, "auth") && more >= 2 {
            auth = Some(Credentials {
                username: Some(take(args, index + 1)),
                password: take(args, index + 2),
            });
            index += 3;
        } else if is(option, "setname") && more >= 1 {
            let name = take(args, index + 1);
            if !valid_client_name(&name) {
                return Err(CommandError::from_static(CLIENT_NAME_INVALID));
            }
            client_name = Some(name);
            index += 2;
        } else {
            let option = String::from_utf8_lossy(option);
            return Err(CommandError(
                format!("ERR Syntax error in HELLO option '{option}'").into(),
            ));
        }
    }
    Ok(Command::Hello {
        version,
        auth,
        client_name,
    })
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value`, as Redis 7.2.
fn client_setinfo(args: &mut [Vec<u8>]) -> Result<Command, CommandError> {
    let attribute_word = word(args, 2);
    let attribute = if is(attribute_word, "lib-name") {
        ClientAttribute::LibraryName
    } else if is(attribute_word, "lib-ver") {
        ClientAttribute::LibraryVersion
    } else {
        let attribute = String::from_utf8_lossy(attribute_word);
        return Err(CommandError(
            format!("ERR Unrecognized option '{attribute}'").into(),
        ));
    };
    if !valid_client_name(word(args, 3)) {
        let attribute = String::from_utf8_lossy(attribute_word);
        return Err(CommandError(
            format!("ERR {attribute} cannot contain spaces, newlines or special characters.")
                .into(),
        ));
    }
    Ok(Command::Client(ClientQuery::SetInfo(
        attribute,
        take(args, 3),
    )))
}
