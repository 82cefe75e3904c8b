//! The command table: one row per supported command and subcommand, the
//! single source for arity checks in `command`, and for the replies to
//! `COMMAND`, `COMMAND COUNT`, `COMMAND INFO` and `COMMAND DOCS`.
//!
//! The rows were taken from Redis 7.0's own `COMMAND INFO` and `COMMAND DOCS`
//! (CLIENT SETINFO from 7.2), so clients that read key positions at connect
//! (cluster-aware clients, redis-cli's hints) see what they expect. Subcommand
//! rows are named `container|sub` and follow their container.
//!
//! Invariants (checked by tests): names are lowercase and unique; every
//! subcommand's container is in the table; a key-taking command has
//! `first_key >= 1` and `step >= 1`; `last_key` is -1 (to the end) or at
//! least `first_key`.

use super::reply::Reply;

/// One row of the command table, as Redis describes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase name; `container|sub` for a subcommand.
    pub name: &'static str,
    /// Redis's arity: `n > 0` exactly n words (name included), `-n` at least n.
    pub arity: i64,
    /// Flags such as `readonly`, `write`, `fast`.
    pub flags: &'static [&'static str],
    /// Position of the first key argument (0: none).
    pub first_key: i64,
    /// Position of the last key argument; -1 means the last argument.
    pub last_key: i64,
    /// Step between keys (2 for MSET's key, value pairs).
    pub key_step: i64,
    /// ACL categories, `@`-prefixed.
    pub acl_categories: &'static [&'static str],
    /// Group in Redis's documentation (`string`, `generic`, `connection`, ...).
    pub group: &'static str,
    /// Redis version that introduced the command.
    pub since: &'static str,
    /// Time complexity as Redis documents it.
    pub complexity: &'static str,
    /// One-line summary.
    pub summary: &'static str,
}

impl CommandSpec {
    /// True if `word_count` words (name included) satisfy the arity.
    pub fn arity_accepts(&self, word_count: usize) -> bool {
        let count = i64::try_from(word_count).unwrap_or(i64::MAX);
        if self.arity >= 0 {
            count == self.arity
        } else {
            count >= -self.arity
        }
    }

    /// The container of a subcommand (`client` for `client|id`).
    pub fn container(&self) -> Option<&'static str> {
        self.name.split_once('|').map(|(container, _)| container)
    }

    /// The entry `COMMAND INFO` gives for this command: name, arity, flags,
    /// first key, last key, step, ACL categories, tips, key specs,
    /// subcommands.
    pub fn info_reply(&self) -> Reply {
        let statuses = |items: &[&'static str]| {
            Reply::Set(
                items
                    .iter()
                    .map(|item| Reply::Simple((*item).into()))
                    .collect(),
            )
        };
        let subcommands = subcommands(self.name).map(|sub| sub.info_reply()).collect();
        Reply::Array(Some(vec![
            Reply::bulk(self.name),
            Reply::Integer(self.arity),
            statuses(self.flags),
            Reply::Integer(self.first_key),
            Reply::Integer(self.last_key),
            Reply::Integer(self.key_step),
            statuses(self.acl_categories),
            Reply::Set(Vec::new()),
            Reply::Array(Some(Vec::new())),
            Reply::Array(Some(subcommands)),
        ]))
    }

    /// The map `COMMAND DOCS` gives for this command (without argument
    /// descriptions, which jube does not carry).
    pub fn docs_reply(&self) -> Reply {
        let text = |key: &str, value: &str| (Reply::bulk(key), Reply::bulk(value));
        let mut fields = vec![
            text("summary", self.summary),
            text("since", self.since),
            text("group", self.group),
            text("complexity", self.complexity),
        ];
        let subcommands: Vec<(Reply, Reply)> = subcommands(self.name)
            .map(|sub| (Reply::bulk(sub.name), sub.docs_reply()))
            .collect();
        if !subcommands.is_empty() {
            fields.push((Reply::bulk("subcommands"), Reply::Map(subcommands)));
        }
        Reply::Map(fields)
    }
}

/// The row for `name` (case-insensitive; `container|sub` for subcommands).
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Top-level commands (no subcommand rows).
pub fn top_level() -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter().filter(|spec| spec.container().is_none())
}

/// The subcommand rows of `container`.
pub fn subcommands(container: &str) -> impl Iterator<Item = &'static CommandSpec> + '_ {
    COMMANDS
        .iter()
        .filter(move |spec| spec.container() == Some(container))
}

/// `COMMAND`: every top-level command's info entry.
pub fn command_reply() -> Reply {
    Reply::Array(Some(top_level().map(CommandSpec::info_reply).collect()))
}

/// `COMMAND COUNT`: the number of top-level commands.
pub fn count_reply() -> Reply {
    Reply::Integer(i64::try_from(top_level().count()).unwrap_or(i64::MAX))
}

/// `COMMAND INFO [name ...]`: all commands when `names` is empty, otherwise
/// one entry per name, null for a name jube does not know.
pub fn info_reply(names: &[Vec<u8>]) -> Reply {
    if names.is_empty() {
        return command_reply();
    }
    let entries = names
        .iter()
        .map(|name| lookup(name).map_or(Reply::Array(None), CommandSpec::info_reply))
        .collect();
    Reply::Array(Some(entries))
}

/// `COMMAND DOCS [name ...]`: a map from name to docs, all top-level commands
/// when `names` is empty; unknown names are left out, as in Redis.
pub fn docs_reply(names: &[Vec<u8>]) -> Reply {
    let specs: Vec<&CommandSpec> = if names.is_empty() {
        top_level().collect()
    } else {
        names.iter().filter_map(|name| lookup(name)).collect()
    };
    Reply::Map(
        specs
            .into_iter()
            .map(|spec| (Reply::bulk(spec.name), spec.docs_reply()))
            .collect(),
    )
}

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    acl_categories: &'static [&'static str],
    group: &'static str,
    since: &'static str,
    complexity: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        key_step: keys.2,
        acl_categories,
        group,
        since,
        complexity,
        summary,
    }
}

/// Every command jube's RESP front end knows, in Redis's words.
#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    spec("ping", -1, &["fast"], (0, 0, 0), &["@fast", "@connection"], "connection", "1.0.0", "O(1)",
        "Ping the server"),
    spec("echo", 2, &["loading", "stale", "fast"], (0, 0, 0), &["@fast", "@connection"], "connection", "1.0.0", "O(1)",
        "Echo the given string"),
    spec("hello", -1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], (0, 0, 0), &["@fast", "@connection"], "connection", "6.0.0", "O(1)",
        "Handshake with Redis"),
    spec("auth", -2, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], (0, 0, 0), &["@fast", "@connection"], "connection", "1.0.0", "O(N) where N is the number of passwords defined for the user",
        "Authenticate to the server"),
    spec("select", 2, &["loading", "stale", "fast"], (0, 0, 0), &["@fast", "@connection"], "connection", "1.0.0", "O(1)",
        "Change the selected database for the current connection"),
    spec("quit", -1, &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], (0, 0, 0), &["@fast", "@connection"], "connection", "1.0.0", "O(1)",
        "Close the connection"),
    spec("get", 2, &["readonly", "fast"], (1, 1, 1), &["@read", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Get the value of a key"),
    spec("set", -3, &["write", "denyoom"], (1, 1, 1), &["@write", "@string", "@slow"], "string", "1.0.0", "O(1)",
        "Set the string value of a key"),
    spec("setnx", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Set the value of a key, only if the key does not exist"),
    spec("setex", 4, &["write", "denyoom"], (1, 1, 1), &["@write", "@string", "@slow"], "string", "2.0.0", "O(1)",
        "Set the value and expiration of a key"),
    spec("psetex", 4, &["write", "denyoom"], (1, 1, 1), &["@write", "@string", "@slow"], "string", "2.6.0", "O(1)",
        "Set the value and expiration in milliseconds of a key"),
    spec("getset", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Set the string value of a key and return its old value"),
    spec("getdel", 2, &["write", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "6.2.0", "O(1)",
        "Get the value of a key and delete the key"),
    spec("getex", -2, &["write", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "6.2.0", "O(1)",
        "Get the value of a key and optionally set its expiration"),
    spec("mget", -2, &["readonly", "fast"], (1, -1, 1), &["@read", "@string", "@fast"], "string", "1.0.0", "O(N) where N is the number of keys to retrieve.",
        "Get the values of all the given keys"),
    spec("mset", -3, &["write", "denyoom"], (1, -1, 2), &["@write", "@string", "@slow"], "string", "1.0.1", "O(N) where N is the number of keys to set.",
        "Set multiple keys to multiple values"),
    spec("msetnx", -3, &["write", "denyoom"], (1, -1, 2), &["@write", "@string", "@slow"], "string", "1.0.1", "O(N) where N is the number of keys to set.",
        "Set multiple keys to multiple values, only if none of the keys exist"),
    spec("del", -2, &["write"], (1, -1, 1), &["@keyspace", "@write", "@slow"], "generic", "1.0.0", "O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1).",
        "Delete a key"),
    spec("unlink", -2, &["write", "fast"], (1, -1, 1), &["@keyspace", "@write", "@fast"], "generic", "4.0.0", "O(1) for each key removed regardless of its size. Then the command does O(N) work in a different thread in order to reclaim memory, where N is the number of allocations the deleted objects where composed of.",
        "Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking."),
    spec("exists", -2, &["readonly", "fast"], (1, -1, 1), &["@keyspace", "@read", "@fast"], "generic", "1.0.0", "O(N) where N is the number of keys to check.",
        "Determine if a key exists"),
    spec("incr", 2, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Increment the integer value of a key by one"),
    spec("decr", 2, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Decrement the integer value of a key by one"),
    spec("incrby", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Increment the integer value of a key by the given amount"),
    spec("decrby", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "1.0.0", "O(1)",
        "Decrement the integer value of a key by the given number"),
    spec("incrbyfloat", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "2.6.0", "O(1)",
        "Increment the float value of a key by the given amount"),
    spec("append", 3, &["write", "denyoom", "fast"], (1, 1, 1), &["@write", "@string", "@fast"], "string", "2.0.0", "O(1). The amortized time complexity is O(1) assuming the appended value is small and the already present value is of any size, since the dynamic string library used by Redis will double the free space available on every reallocation.",
        "Append a value to a key"),
    spec("strlen", 2, &["readonly", "fast"], (1, 1, 1), &["@read", "@string", "@fast"], "string", "2.2.0", "O(1)",
        "Get the length of the value stored in a key"),
    spec("getrange", 4, &["readonly"], (1, 1, 1), &["@read", "@string", "@slow"], "string", "2.4.0", "O(N) where N is the length of the returned string. The complexity is ultimately determined by the returned length, but because creating a substring from an existing string is very cheap, it can be considered O(1) for small strings.",
        "Get a substring of the string stored at a key"),
    spec("setrange", 4, &["write", "denyoom"], (1, 1, 1), &["@write", "@string", "@slow"], "string", "2.2.0", "O(1), not counting the time taken to copy the new string in place. Usually, this string is very small so the amortized complexity is O(1). Otherwise, complexity is O(M) with M being the length of the value argument.",
        "Overwrite part of a string at key starting at the specified offset"),
    spec("expire", -3, &["write", "fast"], (1, 1, 1), &["@keyspace", "@write", "@fast"], "generic", "1.0.0", "O(1)",
        "Set a key's time to live in seconds"),
    spec("pexpire", -3, &["write", "fast"], (1, 1, 1), &["@keyspace", "@write", "@fast"], "generic", "2.6.0", "O(1)",
        "Set a key's time to live in milliseconds"),
    spec("expireat", -3, &["write", "fast"], (1, 1, 1), &["@keyspace", "@write", "@fast"], "generic", "1.2.0", "O(1)",
        "Set the expiration for a key as a UNIX timestamp"),
    spec("pexpireat", -3, &["write", "fast"], (1, 1, 1), &["@keyspace", "@write", "@fast"], "generic", "2.6.0", "O(1)",
        "Set the expiration for a key as a UNIX timestamp specified in milliseconds"),
    spec("ttl", 2, &["readonly", "fast"], (1, 1, 1), &["@keyspace", "@read", "@fast"], "generic", "1.0.0", "O(1)",
        "Get the time to live for a key in seconds"),
    spec("pttl", 2, &["readonly", "fast"], (1, 1, 1), &["@keyspace", "@read", "@fast"], "generic", "2.6.0", "O(1)",
        "Get the time to live for a key in milliseconds"),
    spec("persist", 2, &["write", "fast"], (1, 1, 1), &["@keyspace", "@write", "@fast"], "generic", "2.2.0", "O(1)",
        "Remove the expiration from a key"),
    spec("expiretime", 2, &["readonly", "fast"], (1, 1, 1), &["@keyspace", "@read", "@fast"], "generic", "7.0.0", "O(1)",
        "Get the expiration Unix timestamp for a key"),
    spec("pexpiretime", 2, &["readonly", "fast"], (1, 1, 1), &["@keyspace", "@read", "@fast"], "generic", "7.0.0", "O(1)",
        "Get the expiration Unix timestamp for a key in milliseconds"),
    spec("type", 2, &["readonly", "fast"], (1, 1, 1), &["@keyspace", "@read", "@fast"], "generic", "1.0.0", "O(1)",
        "Determine the type stored at key"),
    spec("scan", -2, &["readonly"], (0, 0, 0), &["@keyspace", "@read", "@slow"], "generic", "2.8.0", "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
        "Incrementally iterate the keys space"),
    spec("keys", 2, &["readonly"], (0, 0, 0), &["@keyspace", "@read", "@slow", "@dangerous"], "generic", "1.0.0", "O(N) with N being the number of keys in the database, under the assumption that the key names in the database and the given pattern have limited length.",
        "Find all keys matching the given pattern"),
    spec("dbsize", 1, &["readonly", "fast"], (0, 0, 0), &["@keyspace", "@read", "@fast"], "server", "1.0.0", "O(1)",
        "Return the number of keys in the selected database"),
    spec("flushdb", -1, &["write"], (0, 0, 0), &["@keyspace", "@write", "@slow", "@dangerous"], "server", "1.0.0", "O(N) where N is the number of keys in the selected database",
        "Remove all keys from the current database"),
    spec("flushall", -1, &["write"], (0, 0, 0), &["@keyspace", "@write", "@slow", "@dangerous"], "server", "1.0.0", "O(N) where N is the total number of keys in all databases",
        "Remove all keys from all databases"),
    spec("info", -1, &["loading", "stale"], (0, 0, 0), &["@slow", "@dangerous"], "server", "1.0.0", "O(1)",
        "Get information and statistics about the server"),
    spec("config", -2, &[], (0, 0, 0), &["@slow"], "server", "2.0.0", "Depends on subcommand.",
        "A container for server configuration commands"),
    spec("config|get", -3, &["admin", "noscript", "loading", "stale"], (0, 0, 0), &["@admin", "@slow", "@dangerous"], "server", "2.0.0", "O(N) when N is the number of configuration parameters provided",
        "Get the values of configuration parameters"),
    spec("command", -1, &["loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "server", "2.8.13", "O(N) where N is the total number of Redis commands",
        "Get array of Redis command details"),
    spec("command|count", 2, &["loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "server", "2.8.13", "O(1)",
        "Get total number of Redis commands"),
    spec("command|docs", -2, &["loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "server", "7.0.0", "O(N) where N is the number of commands to look up",
        "Get array of specific Redis command documentation"),
    spec("command|info", -2, &["loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "server", "2.8.13", "O(N) where N is the number of commands to look up",
        "Get array of specific Redis command details, or all when no argument is given."),
    spec("client", -2, &[], (0, 0, 0), &["@slow"], "connection", "2.4.0", "Depends on subcommand.",
        "A container for client connection commands"),
    spec("client|setname", 3, &["noscript", "loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "connection", "2.6.9", "O(1)",
        "Set the current connection name"),
    spec("client|getname", 2, &["noscript", "loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "connection", "2.6.9", "O(1)",
        "Get the current connection name"),
    spec("client|id", 2, &["noscript", "loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "connection", "5.0.0", "O(1)",
        "Returns the client ID for the current connection"),
    spec("client|info", 2, &["noscript", "loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "connection", "6.2.0", "O(1)",
        "Returns information about the current client connection."),
    spec("client|setinfo", 4, &["noscript", "loading", "stale"], (0, 0, 0), &["@slow", "@connection"], "connection", "7.2.0", "O(1)",
        "Set client or connection specific info"),
    spec("time", 1, &["loading", "stale", "fast"], (0, 0, 0), &["@fast"], "server", "2.6.0", "O(1)",
        "Return the current server time"),
    spec("multi", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], (0, 0, 0), &["@fast", "@transaction"], "transactions", "1.2.0", "O(1)",
        "Mark the start of a transaction block"),
    spec("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], (0, 0, 0), &["@slow", "@transaction"], "transactions", "1.2.0", "Depends on commands in the transaction",
        "Execute all commands issued after MULTI"),
    spec("discard", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], (0, 0, 0), &["@fast", "@transaction"], "transactions", "2.0.0", "O(N), when N is the number of queued commands",
        "Discard all commands issued after MULTI"),
    spec("watch", -2, &["noscript", "loading", "stale", "fast", "allow_busy"], (1, -1, 1), &["@fast", "@transaction"], "transactions", "2.2.0", "O(1) for every key.",
        "Watch the given keys to determine execution of the MULTI/EXEC block"),
    spec("unwatch", 1, &["noscript", "loading", "stale", "fast", "allow_busy"], (0, 0, 0), &["@fast", "@transaction"], "transactions", "2.2.0", "O(1)",
        "Forget about all watched keys"),
];
