//! The RESP connection and server commands that need the server's state: HELLO, AUTH, CLIENT,
//! CONFIG GET, TIME and INFO (in Redis's section format, with jube's figures).
//!
//! Invariants: passwords are compared in constant time for equal lengths; INFO's figures come
//! from the same per-core reports as native INFO (`info::build_info`), so both agree; CONFIG GET
//! reports the settings that exist in jube with their real values, and Redis settings that have
//! no jube counterpart only where a client needs them (`save`, `appendonly`, `databases`).

use super::execute::{call_reply, Session};
use crate::call::{CallOutput, ShardOp, Target};
use crate::config::SyncPolicy;
use crate::info::build_info;
use crate::server::CoreContext;
use jube_protocol::resp::command::{errors, ClientAttribute, ClientQuery, Credentials};
use jube_protocol::resp::constants::{BULK_SIZE_MAX, DATABASE_COUNT};
use jube_protocol::resp::glob::glob_match;
use jube_protocol::resp::{Reply, RespVersion};
use jube_protocol::InfoReply;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The Redis version jube reports (`redis_version`, HELLO's `version`): the Redis whose command
/// semantics and error texts the RESP front end follows, so clients enable matching features.
pub const REDIS_COMPATIBLE_VERSION: &str = "7.0.0";

fn error(text: &'static str) -> Reply {
    Reply::Error(Cow::Borrowed(text))
}

/// Whether `credentials` match the configured password (user `default` or none).
fn password_matches(expected: &str, credentials: &Credentials) -> bool {
    let user_ok = credentials
        .username
        .as_deref()
        .is_none_or(|user| user == b"default");
    let given = credentials.password.as_slice();
    let expected = expected.as_bytes();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
    user_ok && same
}

/// `AUTH [user] password`.
pub fn auth(context: &CoreContext, session: &mut Session, credentials: &Credentials) -> Reply {
    let Some(password) = &context.shared.config.server.resp_password else {
        return error(errors::AUTH_NOT_CONFIGURED);
    };
    if password_matches(password, credentials) {
        session.authenticated = true;
        Reply::OK
    } else {
        error(errors::AUTH_FAILED)
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub fn hello(
    context: &CoreContext,
    session: &mut Session,
    version: Option<RespVersion>,
    credentials: Option<Credentials>,
    client_name: Option<Vec<u8>>,
) -> Reply {
    let password = context.shared.config.server.resp_password.as_deref();
    if let (Some(credentials), Some(password)) = (&credentials, password) {
        if !password_matches(password, credentials) {
            return error(errors::AUTH_FAILED);
        }
        session.authenticated = true;
    }
    if password.is_some() && !session.authenticated {
        return error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(version) = version {
        session.version = version;
    }
    if let Some(name) = client_name {
        session.name = (!name.is_empty()).then_some(name);
    }
    let proto = match session.version {
        RespVersion::Resp2 => 2,
        RespVersion::Resp3 => 3,
    };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("jube")),
        (
            Reply::bulk("version"),
            Reply::bulk(REDIS_COMPATIBLE_VERSION),
        ),
        (
            Reply::bulk("jube_version"),
            Reply::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Reply::bulk("proto"), Reply::Integer(proto)),
        (
            Reply::bulk("id"),
            Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Some(Vec::new()))),
    ])
}

/// `CLIENT SETNAME/GETNAME/ID/INFO/SETINFO`.
pub fn client(session: &mut Session, query: ClientQuery) -> Reply {
    match query {
        ClientQuery::SetName(name) => {
            session.name = (!name.is_empty()).then_some(name);
            Reply::OK
        }
        ClientQuery::GetName => Reply::Bulk(session.name.clone()),
        ClientQuery::Id => Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ClientQuery::Info => {
            let text = client_info_line(session);
            Reply::Verbatim {
                format: *b"txt",
                text: text.into_bytes(),
            }
        }
        ClientQuery::SetInfo(attribute, value) => {
            match attribute {
                ClientAttribute::LibraryName => session.library_name = Some(value),
                ClientAttribute::LibraryVersion => session.library_version = Some(value),
            }
            Reply::OK
        }
    }
}

fn client_info_line(session: &Session) -> String {
    let text = |value: &Option<Vec<u8>>| {
        value
            .as_deref()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    };
    let resp = match session.version {
        RespVersion::Resp2 => 2,
        RespVersion::Resp3 => 3,
    };
    // Redis's memory and buffer fields are not tracked per client: 0, present because client
    // libraries parse them as integers.
    format!(
        "id={} addr={} age={} idle=0 name={} db=0 sub=0 psub=0 multi=-1 qbuf=0 qbuf-free=0 \
         argv-mem=0 obl=0 oll=0 omem=0 tot-mem=0 resp={resp} lib-name={} lib-ver={}\n",
        session.id,
        session.peer,
        session.started.elapsed().as_secs(),
        text(&session.name),
        text(&session.library_name),
        text(&session.library_version),
    )
}

/// The settings CONFIG GET knows, as (name, value).
fn config_table(context: &CoreContext) -> Vec<(&'static str, String)> {
    let config = &context.shared.config;
    let appendfsync = match config.storage.sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Periodic { .. } => "everysec",
        SyncPolicy::None => "no",
    };
    let bind = config
        .server
        .resp_listen
        .rsplit_once(':')
        .map_or("", |(host, _)| host)
        .to_string();
    vec![
        // jube persists through its WAL, not snapshots: no RDB save points.
        ("save", String::new()),
        // Every write goes to the WAL before it is acknowledged: the AOF's role.
        ("appendonly", "yes".to_string()),
        ("appendfsync", appendfsync.to_string()),
        ("databases", DATABASE_COUNT.to_string()),
        // No memory limit and no eviction: data lives on disk, the cache is bounded per shard.
        ("maxmemory", "0".to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        ("maxclients", config.server.connections_max.to_string()),
        ("port", context.shared.resp.port().to_string()),
        ("bind", bind),
        ("timeout", "0".to_string()),
        ("proto-max-bulk-len", BULK_SIZE_MAX.to_string()),
        ("dir", config.server.data_dir.display().to_string()),
    ]
}

/// `CONFIG GET pattern...`: every known setting matching any pattern, once.
pub fn config_get(context: &CoreContext, patterns: &[Vec<u8>]) -> Reply {
    let pairs = config_table(context)
        .into_iter()
        .filter(|(name, _)| {
            patterns
                .iter()
                .any(|pattern| glob_match(&pattern.to_ascii_lowercase(), name.as_bytes()))
        })
        .map(|(name, value)| (Reply::bulk(name), Reply::bulk(value)))
        .collect();
    Reply::Map(pairs)
}

/// `TIME`: Unix seconds and microseconds.
pub fn time() -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::bulks([now.as_secs().to_string(), now.subsec_micros().to_string()])
}

/// `INFO [section...]`.
pub async fn info(context: &CoreContext, sections: &[Vec<u8>]) -> Reply {
    let mut outputs = Vec::with_capacity(context.dispatcher.cores());
    for core in 0..context.dispatcher.cores() {
        match context
            .dispatcher
            .call(Target::Core(core), ShardOp::Report)
            .wait()
            .await
        {
            Ok(output @ CallOutput::Report(_)) => outputs.push(output),
            other => return call_reply(other),
        }
    }
    let report = match build_info(&context.info, outputs) {
        Ok(report) => report,
        Err(failure) => return super::execute::failure_reply(&failure),
    };
    Reply::Verbatim {
        format: *b"txt",
        text: format_info(context, &report, sections).into_bytes(),
    }
}

/// The section names INFO prints, in order; `jube` is not in Redis's default set.
const SECTIONS: [&str; 6] = [
    "server",
    "clients",
    "persistence",
    "stats",
    "keyspace",
    "jube",
];

fn wanted(sections: &[Vec<u8>], name: &str) -> bool {
    if sections.is_empty() {
        return name != "jube";
    }
    sections.iter().any(|section| {
        matches!(section.as_slice(), b"all" | b"everything")
            || (section.as_slice() == b"default" && name != "jube")
            || section.as_slice() == name.as_bytes()
    })
}

fn format_info(context: &CoreContext, report: &InfoReply, sections: &[Vec<u8>]) -> String {
    let total = |name: &str| {
        report
            .sections
            .first()
            .and_then(|section| section.metrics.iter().find(|m| m.name == name))
            .map_or(0, |metric| metric.value)
    };
    let shared = &context.shared;
    let uptime_s = report.uptime_ms / 1000;
    let native_ops: u64 = report
        .sections
        .first()
        .map(|section| {
            section
                .metrics
                .iter()
                .filter(|m| m.name.starts_with("ops."))
                .map(|m| m.value)
                .sum()
        })
        .unwrap_or(0);
    let mut out = String::new();
    for name in SECTIONS.into_iter().filter(|name| wanted(sections, name)) {
        let title = match name {
            "server" => "Server",
            "clients" => "Clients",
            "persistence" => "Persistence",
            "stats" => "Stats",
            "keyspace" => "Keyspace",
            _ => "Jube",
        };
        let _ = write!(out, "# {title}\r\n");
        let lines: Vec<(String, String)> = match name {
            "server" => vec![
                ("redis_version".into(), REDIS_COMPATIBLE_VERSION.into()),
                ("redis_mode".into(), "standalone".into()),
                ("jube_version".into(), report.server_version.clone()),
                ("arch_bits".into(), (usize::BITS).to_string()),
                ("process_id".into(), std::process::id().to_string()),
                ("tcp_port".into(), shared.resp.port().to_string()),
                ("uptime_in_seconds".into(), uptime_s.to_string()),
                ("uptime_in_days".into(), (uptime_s / 86_400).to_string()),
                ("jube_cores".into(), report.core_count.to_string()),
                ("jube_shards".into(), report.shard_count.to_string()),
            ],
            "clients" => vec![
                (
                    "connected_clients".into(),
                    shared.connections.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "maxclients".into(),
                    shared.config.server.connections_max.to_string(),
                ),
            ],
            "persistence" => vec![
                ("loading".into(), "0".into()),
                ("aof_enabled".into(), "1".into()),
                ("jube_sync".into(), shared.config.storage.sync.to_string()),
                (
                    "jube_sync_method".into(),
                    shared.config.storage.sync_method.to_string(),
                ),
                ("jube_durable_lsn".into(), total("durable_lsn").to_string()),
                ("jube_checkpoints".into(), total("checkpoints").to_string()),
                ("jube_wal_syncs".into(), total("wal_syncs").to_string()),
                (
                    "jube_shards_failed".into(),
                    total("shards_failed").to_string(),
                ),
            ],
            "stats" => vec![
                (
                    "total_connections_received".into(),
                    total("connections_total").to_string(),
                ),
                (
                    "total_commands_processed".into(),
                    (total("resp.commands") + native_ops).to_string(),
                ),
                (
                    "rejected_connections".into(),
                    total("connections_rejected").to_string(),
                ),
                (
                    "jube_resp_commands".into(),
                    total("resp.commands").to_string(),
                ),
                ("jube_resp_errors".into(), total("resp.errors").to_string()),
                (
                    "jube_resp_protocol_errors".into(),
                    total("resp.protocol_errors").to_string(),
                ),
                ("jube_native_ops".into(), native_ops.to_string()),
            ],
            // Keys with a TTL as the expiry sweeper counted them in its last pass; avg_ttl is
            // not tracked.
            "keyspace" => vec![(
                "db0".into(),
                format!(
                    "keys={},expires={},avg_ttl=0",
                    total("keys"),
                    total("keys_with_ttl")
                ),
            )],
            _ => report
                .sections
                .iter()
                .flat_map(|section| {
                    section.metrics.iter().map(move |metric| {
                        (
                            format!("{}.{}", section.name, metric.name),
                            metric.value.to_string(),
                        )
                    })
                })
                .collect(),
        };
        for (key, value) in lines {
            let _ = write!(out, "{key}:{value}\r\n");
        }
        out.push_str("\r\n");
    }
    out
}
