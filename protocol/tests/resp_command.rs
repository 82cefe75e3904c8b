//! Command parsing: arity and option errors compared with the replies of a
//! real redis-server 7.0.15 (recorded beside each input; CLIENT SETINFO from
//! Redis 7.2's source), successful parses of every option, `keys()` for
//! routing, and the command table's invariants.

use jube_protocol::resp::command::{
    ClientQuery, Command, CommandQuery, Condition, ExpireCondition, Expiry, GetExExpiry, SetTtl,
    TimeUnit,
};
use jube_protocol::resp::constants::EXPIRE_IN_MS_MAX;
use jube_protocol::resp::table::{self, COMMANDS};
use jube_protocol::resp::{frame::split_inline, RespVersion};

fn parse(line: &str) -> Result<Command, String> {
    let args = split_inline(line.as_bytes()).expect("test lines are well quoted");
    Command::parse(args).map_err(|error| error.0.into_owned())
}

fn ok(line: &str) -> Command {
    parse(line).unwrap_or_else(|error| panic!("{line}: {error}"))
}

/// Each request with the error Redis 7.0.15 replied (`redis-cli` input).
#[test]
fn errors_match_redis() {
    let cases: &[(&str, &str)] = &[
        ("get", "ERR wrong number of arguments for 'get' command"),
        ("GET a b", "ERR wrong number of arguments for 'get' command"),
        (
            "foo",
            "ERR unknown command 'foo', with args beginning with: ",
        ),
        (
            "FOO a b",
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' ",
        ),
        ("set k v ex 0", "ERR invalid expire time in 'set' command"),
        ("set k v ex -1", "ERR invalid expire time in 'set' command"),
        (
            "set k v ex abc",
            "ERR value is not an integer or out of range",
        ),
        ("set k v px 0", "ERR invalid expire time in 'set' command"),
        ("set k v nx xx", "ERR syntax error"),
        ("set k v ex 10 px 10", "ERR syntax error"),
        ("set k v keepttl ex 10", "ERR syntax error"),
        ("set k v bogus", "ERR syntax error"),
        ("set k v ex", "ERR syntax error"),
        ("set k v exat 0", "ERR invalid expire time in 'set' command"),
        (
            "set k v ex 9223372036854775807",
            "ERR invalid expire time in 'set' command",
        ),
        (
            "set k v px 9223372036854775807",
            "ERR invalid expire time in 'set' command",
        ),
        (
            "set k v ex 9223372036854775",
            "ERR invalid expire time in 'set' command",
        ),
        ("setex k 0 v", "ERR invalid expire time in 'setex' command"),
        ("setex k -5 v", "ERR invalid expire time in 'setex' command"),
        (
            "setex k abc v",
            "ERR value is not an integer or out of range",
        ),
        (
            "psetex k 0 v",
            "ERR invalid expire time in 'psetex' command",
        ),
        (
            "incrby k abc",
            "ERR value is not an integer or out of range",
        ),
        (
            "incrby k 99999999999999999999",
            "ERR value is not an integer or out of range",
        ),
        (
            "decrby n -9223372036854775808",
            "ERR decrement would overflow",
        ),
        ("incrbyfloat k abc", "ERR value is not a valid float"),
        (
            "getrange s a b",
            "ERR value is not an integer or out of range",
        ),
        (
            "getrange s 0",
            "ERR wrong number of arguments for 'getrange' command",
        ),
        ("setrange s -1 x", "ERR offset is out of range"),
        (
            "setrange s a x",
            "ERR value is not an integer or out of range",
        ),
        (
            "expire k abc",
            "ERR value is not an integer or out of range",
        ),
        (
            "expire k 10 nx xx",
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        (
            "expire k 10 gt lt",
            "ERR GT and LT options at the same time are not compatible",
        ),
        (
            "expire k 10 nx gt",
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ),
        ("expire k 10 foo", "ERR Unsupported option foo"),
        (
            "expire k 9223372036854775807",
            "ERR invalid expire time in 'expire' command",
        ),
        (
            "pexpire k 9223372036854775807",
            "ERR invalid expire time in 'pexpire' command",
        ),
        (
            "expireat k 9223372036854775807",
            "ERR invalid expire time in 'expireat' command",
        ),
        ("getex k ex 0", "ERR invalid expire time in 'getex' command"),
        ("getex k ex 10 px 10", "ERR syntax error"),
        ("getex k persist ex 10", "ERR syntax error"),
        ("getex k foo", "ERR syntax error"),
        ("getex k ex", "ERR syntax error"),
        ("getex k nx", "ERR syntax error"),
        ("select abc", "ERR value is not an integer or out of range"),
        ("select 16", "ERR DB index is out of range"),
        ("select -1", "ERR DB index is out of range"),
        ("echo", "ERR wrong number of arguments for 'echo' command"),
        (
            "echo a b",
            "ERR wrong number of arguments for 'echo' command",
        ),
        (
            "ping a b",
            "ERR wrong number of arguments for 'ping' command",
        ),
        ("hello 4", "NOPROTO unsupported protocol version"),
        (
            "hello abc",
            "ERR Protocol version is not an integer or out of range",
        ),
        ("hello 3 foo", "ERR Syntax error in HELLO option 'foo'"),
        ("hello 3 auth a", "ERR Syntax error in HELLO option 'auth'"),
        (
            "hello 3 setname",
            "ERR Syntax error in HELLO option 'setname'",
        ),
        (
            "hello 3 setname \"a b\"",
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        ("auth a b c", "ERR syntax error"),
        ("scan abc", "ERR invalid cursor"),
        ("scan 0 count 0", "ERR syntax error"),
        ("scan 0 count -1", "ERR syntax error"),
        ("scan 0 match", "ERR syntax error"),
        ("scan 0 foo bar", "ERR syntax error"),
        ("scan 0 type", "ERR syntax error"),
        ("mset a", "ERR wrong number of arguments for 'mset' command"),
        (
            "mset a b c",
            "ERR wrong number of arguments for 'mset' command",
        ),
        (
            "msetnx a",
            "ERR wrong number of arguments for 'msetnx' command",
        ),
        ("mget", "ERR wrong number of arguments for 'mget' command"),
        ("del", "ERR wrong number of arguments for 'del' command"),
        (
            "exists",
            "ERR wrong number of arguments for 'exists' command",
        ),
        ("keys", "ERR wrong number of arguments for 'keys' command"),
        (
            "keys a b",
            "ERR wrong number of arguments for 'keys' command",
        ),
        (
            "dbsize x",
            "ERR wrong number of arguments for 'dbsize' command",
        ),
        ("flushdb foo", "ERR syntax error"),
        ("flushall bar", "ERR syntax error"),
        (
            "config get",
            "ERR wrong number of arguments for 'config|get' command",
        ),
        (
            "config foo",
            "ERR unknown subcommand 'foo'. Try CONFIG HELP.",
        ),
        (
            "command foo",
            "ERR unknown subcommand 'foo'. Try COMMAND HELP.",
        ),
        (
            "command count x",
            "ERR wrong number of arguments for 'command|count' command",
        ),
        (
            "client foo",
            "ERR unknown subcommand 'foo'. Try CLIENT HELP.",
        ),
        (
            "client setname \"a b\"",
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ),
        (
            "client setname a b",
            "ERR wrong number of arguments for 'client|setname' command",
        ),
        (
            "client getname x",
            "ERR wrong number of arguments for 'client|getname' command",
        ),
        (
            "client id x",
            "ERR wrong number of arguments for 'client|id' command",
        ),
        ("client setinfo foo bar", "ERR Unrecognized option 'foo'"),
        (
            "client setinfo lib-name \"a b\"",
            "ERR lib-name cannot contain spaces, newlines or special characters.",
        ),
        ("time x", "ERR wrong number of arguments for 'time' command"),
        (
            "multi x",
            "ERR wrong number of arguments for 'multi' command",
        ),
        (
            "discard x",
            "ERR wrong number of arguments for 'discard' command",
        ),
        ("watch", "ERR wrong number of arguments for 'watch' command"),
        (
            "unwatch x",
            "ERR wrong number of arguments for 'unwatch' command",
        ),
        ("type", "ERR wrong number of arguments for 'type' command"),
        ("ttl", "ERR wrong number of arguments for 'ttl' command"),
        (
            "persist",
            "ERR wrong number of arguments for 'persist' command",
        ),
        (
            "expiretime",
            "ERR wrong number of arguments for 'expiretime' command",
        ),
        (
            "strlen",
            "ERR wrong number of arguments for 'strlen' command",
        ),
        (
            "append a",
            "ERR wrong number of arguments for 'append' command",
        ),
        (
            "getset a",
            "ERR wrong number of arguments for 'getset' command",
        ),
        (
            "getdel",
            "ERR wrong number of arguments for 'getdel' command",
        ),
        (
            "client",
            "ERR wrong number of arguments for 'client' command",
        ),
        (
            "config",
            "ERR wrong number of arguments for 'config' command",
        ),
    ];
    for (line, redis) in cases {
        assert_eq!(parse(line).err().as_deref(), Some(*redis), "{line}");
    }
}

#[test]
fn unknown_command_echo_is_cut_at_128_bytes() {
    let long = "x".repeat(200);
    let error = parse(&format!("FOO {long} b")).expect_err("unknown");
    // As Redis: the first argument cut to 128 bytes, then nothing more.
    assert_eq!(
        error,
        format!(
            "ERR unknown command 'FOO', with args beginning with: '{}' ",
            "x".repeat(128)
        )
    );
}

#[test]
fn set_options() {
    let set = |line: &str| match ok(line) {
        Command::Set(set) => set,
        other => panic!("{line}: {other:?}"),
    };
    let plain = set("SET k v");
    assert_eq!(
        (plain.key.as_slice(), plain.value.as_slice()),
        (&b"k"[..], &b"v"[..])
    );
    assert_eq!(
        (plain.ttl, plain.condition, plain.get),
        (SetTtl::Clear, Condition::Always, false)
    );
    assert_eq!(
        set("set k v ex 10").ttl,
        SetTtl::Expire(Expiry::InMs(10_000))
    );
    assert_eq!(set("set k v PX 10").ttl, SetTtl::Expire(Expiry::InMs(10)));
    assert_eq!(
        set("set k v exat 10").ttl,
        SetTtl::Expire(Expiry::AtUnixMs(10_000))
    );
    assert_eq!(
        set("set k v pxat 10").ttl,
        SetTtl::Expire(Expiry::AtUnixMs(10))
    );
    assert_eq!(
        set("set k v ex 5 ex 10").ttl,
        SetTtl::Expire(Expiry::InMs(10_000))
    );
    assert_eq!(set("set k v keepttl").ttl, SetTtl::Keep);
    assert_eq!(set("set k v nx").condition, Condition::IfAbsent);
    assert_eq!(set("set k v xx get").condition, Condition::IfPresent);
    // Redis 7.0 accepts GET with NX.
    let get_nx = set("set k v get nx");
    assert!(get_nx.get && get_nx.condition == Condition::IfAbsent);
    assert_eq!(
        set("setex k 10 v").ttl,
        SetTtl::Expire(Expiry::InMs(10_000))
    );
    assert_eq!(set("psetex k 10 v").ttl, SetTtl::Expire(Expiry::InMs(10)));
    assert!(set("getset k v").get);
    let too_long = format!("set k v px {}", EXPIRE_IN_MS_MAX + 1);
    assert_eq!(
        parse(&too_long).err().as_deref(),
        Some("ERR invalid expire time in 'set' command")
    );
}

#[test]
fn other_string_commands() {
    assert_eq!(
        ok("incr k"),
        Command::IncrBy {
            key: b"k".to_vec(),
            delta: 1
        }
    );
    assert_eq!(
        ok("decr k"),
        Command::IncrBy {
            key: b"k".to_vec(),
            delta: -1
        }
    );
    assert_eq!(
        ok("decrby k 5"),
        Command::IncrBy {
            key: b"k".to_vec(),
            delta: -5
        }
    );
    assert_eq!(
        ok("incrbyfloat k 1.5"),
        Command::IncrByFloat {
            key: b"k".to_vec(),
            increment: 1.5
        }
    );
    assert_eq!(
        ok("getrange k -3 -1"),
        Command::GetRange {
            key: b"k".to_vec(),
            start: -3,
            end: -1
        }
    );
    assert_eq!(
        ok("setrange k 3 ab"),
        Command::SetRange {
            key: b"k".to_vec(),
            offset: 3,
            value: b"ab".to_vec()
        }
    );
    assert_eq!(
        ok("getex k persist"),
        Command::GetEx {
            key: b"k".to_vec(),
            expiry: Some(GetExExpiry::Persist)
        }
    );
    assert_eq!(
        ok("getex k pxat 99"),
        Command::GetEx {
            key: b"k".to_vec(),
            expiry: Some(GetExExpiry::Expire(Expiry::AtUnixMs(99)))
        }
    );
    assert_eq!(
        ok("getex k"),
        Command::GetEx {
            key: b"k".to_vec(),
            expiry: None
        }
    );
    assert_eq!(
        ok("mset a 1 b 2"),
        Command::MSet {
            pairs: vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        }
    );
}

#[test]
fn expire_family() {
    let expire = |line: &str| match ok(line) {
        Command::Expire {
            expiry, condition, ..
        } => (expiry, condition),
        other => panic!("{line}: {other:?}"),
    };
    assert_eq!(
        expire("expire k 10"),
        (Expiry::InMs(10_000), ExpireCondition::default())
    );
    assert_eq!(expire("pexpire k -5").0, Expiry::InMs(-5));
    assert_eq!(expire("expireat k 100").0, Expiry::AtUnixMs(100_000));
    assert_eq!(expire("pexpireat k 100").0, Expiry::AtUnixMs(100));
    let xx_gt = expire("expire k 10 XX gt").1;
    assert!(xx_gt.xx && xx_gt.gt && !xx_gt.nx && !xx_gt.lt);
    assert_eq!(
        ok("pttl k"),
        Command::Ttl {
            key: b"k".to_vec(),
            unit: TimeUnit::Milliseconds
        }
    );
    assert_eq!(
        ok("expiretime k"),
        Command::ExpireTime {
            key: b"k".to_vec(),
            unit: TimeUnit::Seconds
        }
    );
    assert_eq!(Expiry::InMs(5).deadline_unix_ms(1000), 1005);
    assert_eq!(Expiry::AtUnixMs(5).deadline_unix_ms(1000), 5);
}

#[test]
fn scan_options() {
    let scan = |line: &str| match ok(line) {
        Command::Scan(scan) => scan,
        other => panic!("{line}: {other:?}"),
    };
    let plain = scan("scan 0");
    assert_eq!(
        (plain.cursor, plain.pattern, plain.count, plain.type_name),
        (0, None, 10, None)
    );
    let full = scan("SCAN 17 MATCH k* COUNT 100 TYPE string");
    assert_eq!(full.cursor, 17);
    assert_eq!(full.pattern.as_deref(), Some(&b"k*"[..]));
    assert_eq!(full.count, 100);
    assert_eq!(full.type_name.as_deref(), Some(&b"string"[..]));
    assert_eq!(scan("scan 0 match *").pattern, None);
    // Redis reads the cursor with strtoul: -1 wraps.
    assert_eq!(scan("scan -1").cursor, u64::MAX);
}

#[test]
fn connection_and_server_commands() {
    assert_eq!(ok("PING"), Command::Ping { message: None });
    assert_eq!(
        ok("ping hi"),
        Command::Ping {
            message: Some(b"hi".to_vec())
        }
    );
    match ok("HELLO 3 AUTH u p SETNAME me") {
        Command::Hello {
            version,
            auth,
            client_name,
        } => {
            assert_eq!(version, Some(RespVersion::Resp3));
            let auth = auth.expect("auth");
            assert_eq!(
                (auth.username.as_deref(), auth.password.as_slice()),
                (Some(&b"u"[..]), &b"p"[..])
            );
            assert_eq!(client_name.as_deref(), Some(&b"me"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(ok("hello"), Command::Hello { version: None, .. }));
    assert_eq!(ok("select 0"), Command::Select);
    assert_eq!(ok("quit x"), Command::Quit);
    assert_eq!(
        ok("info Server CLIENTS"),
        Command::Info {
            sections: vec![b"server".to_vec(), b"clients".to_vec()]
        }
    );
    assert_eq!(
        ok("config get save appendonly"),
        Command::ConfigGet {
            patterns: vec![b"save".to_vec(), b"appendonly".to_vec()]
        }
    );
    assert_eq!(ok("command"), Command::Command(CommandQuery::List));
    assert_eq!(ok("command count"), Command::Command(CommandQuery::Count));
    assert_eq!(
        ok("command docs get"),
        Command::Command(CommandQuery::Docs(vec![b"get".to_vec()]))
    );
    assert_eq!(
        ok("command info"),
        Command::Command(CommandQuery::Info(vec![]))
    );
    assert_eq!(
        ok("client setname \"\""),
        Command::Client(ClientQuery::SetName(vec![]))
    );
    assert_eq!(
        ok("client setname me"),
        Command::Client(ClientQuery::SetName(b"me".to_vec()))
    );
    assert_eq!(ok("client id"), Command::Client(ClientQuery::Id));
    assert_eq!(
        ok("flushall async"),
        Command::FlushAll {
            mode: jube_protocol::resp::command::FlushMode::Async
        }
    );
}

#[test]
fn keys_for_routing() {
    let keys =
        |line: &str| -> Vec<Vec<u8>> { ok(line).keys().into_iter().map(<[u8]>::to_vec).collect() };
    let words =
        |list: &[&str]| -> Vec<Vec<u8>> { list.iter().map(|w| w.as_bytes().to_vec()).collect() };
    assert_eq!(keys("get a"), words(&["a"]));
    assert_eq!(keys("set a v ex 5"), words(&["a"]));
    assert_eq!(keys("mset a 1 b 2"), words(&["a", "b"]));
    assert_eq!(keys("del a b a"), words(&["a", "b", "a"]));
    assert_eq!(keys("expire a 5"), words(&["a"]));
    assert_eq!(keys("watch a b"), words(&["a", "b"]));
    assert!(keys("ping").is_empty() && keys("scan 0").is_empty() && keys("dbsize").is_empty());
}

/// The table's invariants, and that every row parses with minimal words.
#[test]
fn table_is_consistent() {
    let mut names: Vec<&str> = COMMANDS.iter().map(|spec| spec.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), COMMANDS.len(), "names are unique");
    for spec in COMMANDS {
        assert_eq!(spec.name, spec.name.to_ascii_lowercase());
        if let Some(container) = spec.container() {
            assert!(
                table::lookup(container.as_bytes()).is_some(),
                "{}",
                spec.name
            );
        }
        if spec.first_key != 0 {
            assert!(spec.first_key >= 1 && spec.key_step >= 1, "{}", spec.name);
            assert!(
                spec.last_key == -1 || spec.last_key >= spec.first_key,
                "{}",
                spec.name
            );
        }
    }
    assert_eq!(table::lookup(b"GeT").map(|spec| spec.arity), Some(2));
    assert_eq!(
        table::lookup(b"mset").map(|spec| (spec.first_key, spec.last_key, spec.key_step)),
        Some((1, -1, 2))
    );
}

#[test]
fn every_table_row_parses() {
    for spec in COMMANDS {
        let mut words: Vec<String> = spec.name.split('|').map(str::to_owned).collect();
        let needed = usize::try_from(spec.arity.unsigned_abs()).expect("small");
        if needed >= 2 && table::subcommands(spec.name).next().is_some() {
            // A container such as CONFIG is only ever run with a subcommand.
            continue;
        }
        // Numbers satisfy every argument that must be numeric; MSET needs pairs.
        while words.len() < needed
            || (spec.name.starts_with("mset") && words.len().is_multiple_of(2))
        {
            words.push("1".to_owned());
        }
        if spec.name == "select" {
            words[1] = "0".to_owned();
        }
        if spec.name == "client|setinfo" {
            words[2] = "lib-name".to_owned();
        }
        let line = words.join(" ");
        assert!(parse(&line).is_ok(), "{line}: {:?}", parse(&line));
    }
}

#[test]
fn table_replies() {
    use jube_protocol::resp::{Reply, RespVersion};
    let info = table::info_reply(&[b"get".to_vec(), b"nope".to_vec()]);
    let bytes = String::from_utf8(info.to_bytes(RespVersion::Resp2)).expect("utf-8");
    // The first seven fields as Redis 7.0.15 sent them for GET.
    assert!(bytes.starts_with("*2\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n"), "{bytes}");
    assert!(bytes.ends_with("*-1\r\n"));
    match table::count_reply() {
        Reply::Integer(count) => assert_eq!(
            usize::try_from(count).ok(),
            Some(table::top_level().count())
        ),
        other => panic!("{other:?}"),
    }
    let docs = table::docs_reply(&[b"get".to_vec()]).to_bytes(RespVersion::Resp2);
    let docs = String::from_utf8(docs).expect("utf-8");
    assert!(
        docs.starts_with(
            "*2\r\n$3\r\nget\r\n*8\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n"
        ),
        "{docs}"
    );
}
