//! jubed's configuration: every setting, its default, the TOML file and the command-line flags.
//!
//! Precedence, lowest first: the embedded defaults, the TOML file given with `--config`, then
//! flags. `--print-config` prints the effective result as TOML, so the defaults are always one
//! command away and a printed config can be fed back as a file.

use jube_engine::constants::VLOG_CACHE_BYTES_DEFAULT;
use jube_protocol::constants::PIPELINE_DEPTH_MAX;
use jube_runtime::constants::CORES_MAX;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// When a write is acknowledged relative to its WAL record reaching the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Acknowledge only once the record is durable (fdatasync or RWF_DSYNC completed). Default.
    Always,
    /// Acknowledge at once; sync at least every `interval_ms`. A crash loses at most the writes
    /// of the last interval.
    Periodic { interval_ms: u64 },
    /// Acknowledge at once and leave syncing to the OS. Unsafe on power loss.
    None,
}

/// The value of `server.resp_listen` (and `--resp-listen`) that disables the RESP listener.
pub const RESP_LISTEN_OFF: &str = "off";

/// The longest accepted periodic interval: a loss window longer than a minute is a mistake.
pub const PERIODIC_INTERVAL_MS_MAX: u64 = 60_000;

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<SyncPolicy, String> {
        match text {
            "always" => Ok(SyncPolicy::Always),
            "none" => Ok(SyncPolicy::None),
            _ => {
                let Some(ms) = text.strip_prefix("periodic:") else {
                    return Err(format!(
                        "sync policy {text:?} is not one of always, periodic:MS, none"
                    ));
                };
                let interval_ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("periodic interval {ms:?} is not a number of ms"))?;
                if interval_ms == 0 || interval_ms > PERIODIC_INTERVAL_MS_MAX {
                    return Err(format!(
                        "periodic interval {interval_ms} ms is outside 1..={PERIODIC_INTERVAL_MS_MAX}"
                    ));
                }
                Ok(SyncPolicy::Periodic { interval_ms })
            }
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => write!(f, "always"),
            SyncPolicy::Periodic { interval_ms } => write!(f, "periodic:{interval_ms}"),
            SyncPolicy::None => write!(f, "none"),
        }
    }
}

impl Serialize for SyncPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How a group commit makes its write durable, in the WAL and in the value log. Both wait for
/// the disk before a write is acknowledged under `sync = always`; they differ in speed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMethod {
    /// One write with RWF_DSYNC: a single io_uring submission per flush. Default.
    Dsync,
    /// A write, then (once it completed) an fdatasync: two submissions per flush.
    Fdatasync,
}

impl FromStr for SyncMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<SyncMethod, String> {
        match text {
            "dsync" => Ok(SyncMethod::Dsync),
            "fdatasync" => Ok(SyncMethod::Fdatasync),
            _ => Err(format!(
                "sync method {text:?} is not one of dsync, fdatasync"
            )),
        }
    }
}

impl fmt::Display for SyncMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMethod::Dsync => "dsync",
            SyncMethod::Fdatasync => "fdatasync",
        })
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
}

/// Listeners, cores and connection limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the MANIFEST and the shard directories live; created if absent.
    pub data_dir: PathBuf,
    /// Address of the native (FlatBuffers) listener.
    pub listen: String,
    /// Address of the RESP (Redis protocol) listener, or `off` to disable it.
    pub resp_listen: String,
    /// Password RESP clients must give with AUTH (or HELLO AUTH) before any other command; no
    /// password when absent. The native protocol does not authenticate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resp_password: Option<String>,
    /// Cores to run on; 0 means every online core.
    pub cores: usize,
    /// Open connections accepted across all cores; more are closed at accept.
    pub connections_max: usize,
    /// Requests one connection may have in flight before the server stops reading from it.
    pub connection_in_flight_max: usize,
    /// Log level when `RUST_LOG` is unset: error, warn, info, debug, trace.
    pub log_level: String,
}

/// Per-shard storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Page size of new data directories (a power of two, 4096..=65536); fixed at creation.
    pub page_size: usize,
    /// Page cache budget of each shard, in bytes.
    pub cache_bytes_per_shard: u64,
    /// Bytes of each shard's cache of values read from or written to the value log (values
    /// above the inline threshold); 0 turns it off.
    pub value_cache_bytes_per_shard: u64,
    /// When writes are acknowledged: always, periodic:MS or none.
    pub sync: SyncPolicy,
    /// How a group commit makes its write durable: dsync (one RWF_DSYNC write) or fdatasync
    /// (a write, then an fdatasync).
    pub sync_method: SyncMethod,
    /// A group commit is flushed once this many bytes of records are waiting.
    pub group_commit_bytes_max: usize,
    /// ...or once the oldest waiting record has waited this long.
    pub group_commit_delay_us: u64,
    /// Size of each preallocated WAL segment file.
    pub wal_segment_bytes: u64,
    /// A checkpoint starts once this many WAL bytes were written since the last one.
    pub checkpoint_wal_bytes: u64,
    /// ...or once the interval has passed with writes pending.
    pub checkpoint_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./jube-data"),
            listen: "127.0.0.1:7878".to_string(),
            resp_listen: "127.0.0.1:7379".to_string(),
            resp_password: None,
            cores: 0,
            connections_max: 10_000,
            connection_in_flight_max: 1_024,
            log_level: "info".to_string(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            page_size: 4096,
            cache_bytes_per_shard: 256 << 20,
            value_cache_bytes_per_shard: VLOG_CACHE_BYTES_DEFAULT as u64,
            sync: SyncPolicy::Always,
            sync_method: SyncMethod::Dsync,
            group_commit_bytes_max: 256 << 10,
            group_commit_delay_us: 0,
            wal_segment_bytes: 64 << 20,
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval_ms: 60_000,
        }
    }
}

impl Config {
    /// Parses a TOML configuration; every field is optional.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, every setting included.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration always serializes")
    }

    /// Checks the relations between settings; the message names the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        let storage = &self.storage;
        if !storage.page_size.is_power_of_two() || !(4096..=65536).contains(&storage.page_size) {
            return Err(format!(
                "storage.page_size {} is not a power of two in 4096..=65536",
                storage.page_size
            ));
        }
        if storage.cache_bytes_per_shard < 16 * storage.page_size as u64 {
            return Err(format!(
                "storage.cache_bytes_per_shard {} holds fewer than 16 pages",
                storage.cache_bytes_per_shard
            ));
        }
        if storage.wal_segment_bytes < 1 << 20 || !storage.wal_segment_bytes.is_multiple_of(4096) {
            return Err(format!(
                "storage.wal_segment_bytes {} must be a multiple of 4096 and at least 1 MiB",
                storage.wal_segment_bytes
            ));
        }
        if storage.group_commit_bytes_max < 4096
            || !storage.group_commit_bytes_max.is_multiple_of(4096)
            || storage.group_commit_bytes_max as u64 > storage.wal_segment_bytes / 4
        {
            return Err(format!(
                "storage.group_commit_bytes_max {} must be a multiple of 4096 in 4096..=wal_segment_bytes/4",
                storage.group_commit_bytes_max
            ));
        }
        let server = &self.server;
        if server.resp_listen != RESP_LISTEN_OFF
            && server.resp_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "server.resp_listen {:?} is neither an IP address and port nor \"{RESP_LISTEN_OFF}\"",
                server.resp_listen
            ));
        }
        if server.connections_max == 0 {
            return Err("server.connections_max must be positive".into());
        }
        // A blocking client keeps up to PIPELINE_DEPTH_MAX requests in flight before it reads;
        // a server that stopped reading earlier could deadlock with it (docs/protocol.md).
        if server.connection_in_flight_max < PIPELINE_DEPTH_MAX {
            return Err(format!(
                "server.connection_in_flight_max {} is below the protocol's pipeline depth {PIPELINE_DEPTH_MAX}",
                server.connection_in_flight_max
            ));
        }
        if server.cores > CORES_MAX {
            return Err(format!(
                "server.cores {} is above {CORES_MAX}",
                server.cores
            ));
        }
        server
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|error| {
                format!(
                    "server.listen {:?} is not an IP address and port: {error}",
                    server.listen
                )
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse_and_print() {
        for text in ["always", "none", "periodic:1000"] {
            let policy: SyncPolicy = text.parse().expect("valid");
            assert_eq!(policy.to_string(), text);
        }
        assert!("sometimes".parse::<SyncPolicy>().is_err());
        assert!("periodic:0".parse::<SyncPolicy>().is_err());
        assert!("periodic:x".parse::<SyncPolicy>().is_err());
        assert!("periodic:60001".parse::<SyncPolicy>().is_err());
    }

    #[test]
    fn sync_methods_parse_print_and_read_from_toml() {
        for text in ["dsync", "fdatasync"] {
            let method: SyncMethod = text.parse().expect("valid");
            assert_eq!(method.to_string(), text);
            let config = Config::from_toml(&format!("[storage]\nsync_method = \"{text}\"\n"))
                .expect("parses");
            assert_eq!(config.storage.sync_method, method);
        }
        assert_eq!(Config::default().storage.sync_method, SyncMethod::Dsync);
        assert!("osync".parse::<SyncMethod>().is_err());
        let err = Config::from_toml("[storage]\nsync_method = \"fsync\"\n").expect_err("bad");
        assert!(err.contains("fsync"), "{err}");
    }

    #[test]
    fn printed_config_reads_back_identically() {
        let mut config = Config::default();
        config.storage.sync = SyncPolicy::Periodic { interval_ms: 250 };
        config.storage.sync_method = SyncMethod::Fdatasync;
        let text = config.to_toml();
        assert_eq!(Config::from_toml(&text).expect("parses"), config);
    }

    #[test]
    fn partial_files_keep_defaults_and_unknown_keys_are_refused() {
        let config = Config::from_toml("[storage]\nsync = \"none\"\n").expect("parses");
        assert_eq!(config.storage.sync, SyncPolicy::None);
        assert_eq!(config.server, ServerConfig::default());
        let err = Config::from_toml("[storage]\npage_sise = 4096\n").expect_err("typo");
        assert!(err.contains("page_sise"), "{err}");
        let err = Config::from_toml("[storage]\npage_size = 3000\n").expect_err("bad size");
        assert!(err.contains("page_size"), "{err}");
    }
}
