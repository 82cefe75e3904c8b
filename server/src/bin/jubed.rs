//! jubed: the jube server. With no arguments it serves `./jube-data` on 127.0.0.1:7878 with one
//! shard per online core, creating the directory if needed. `--print-config` shows every setting.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT: every shard checkpointed and closed);
//! 1 if a shard failed to close, or on a second signal (the next start replays the WAL); 2 if the
//! server could not start (bad configuration, unusable data directory, io_uring unavailable).

#![forbid(unsafe_code)]

use clap::Parser;
use jube_runtime::constants::CORES_MAX;
use jube_server::config::{Config, SyncMethod, SyncPolicy};
use std::path::PathBuf;
use std::process::ExitCode;

/// The jube key-value server.
#[derive(Debug, Parser)]
#[command(name = "jubed", version, about)]
struct Args {
    /// Data directory (MANIFEST and shards); created if absent. Default ./jube-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7878 (port 0 picks a free port; the chosen address is
    /// printed on stdout as `listening on ADDR`).
    #[arg(long)]
    listen: Option<String>,
    /// Address of the RESP (Redis protocol) listener, e.g. 127.0.0.1:7379, or `off` (port 0 picks
    /// a free port, printed on stdout as `resp listening on ADDR`).
    #[arg(long)]
    resp_listen: Option<String>,
    /// Cores to run on (default: every online core).
    #[arg(long)]
    cores: Option<usize>,
    /// TOML configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// When writes are acknowledged: always, periodic:MS or none.
    #[arg(long)]
    sync: Option<SyncPolicy>,
    /// How a group commit makes its write durable: dsync (one RWF_DSYNC write) or fdatasync.
    #[arg(long)]
    sync_method: Option<SyncMethod>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn effective_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            Config::from_toml(&text).map_err(|error| format!("{}: {error}", path.display()))?
        }
        None => Config::default(),
    };
    if let Some(data_dir) = &args.data_dir {
        config.server.data_dir = data_dir.clone();
    }
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(resp_listen) = &args.resp_listen {
        config.server.resp_listen = resp_listen.clone();
    }
    if let Some(cores) = args.cores {
        if cores == 0 {
            return Err("--cores must be at least 1".to_string());
        }
        config.server.cores = cores;
    }
    if let Some(sync) = args.sync {
        config.storage.sync = sync;
    }
    if let Some(method) = args.sync_method {
        config.storage.sync_method = method;
    }
    config.validate()?;
    Ok(config)
}

/// Logs go to stderr; `RUST_LOG` wins over `server.log_level`.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.server.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match effective_config(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("jubed: {error}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    let cores = match config.server.cores {
        0 => std::thread::available_parallelism()
            .map_or(1, |count| count.get())
            .min(CORES_MAX),
        cores => cores,
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), cores, config = %config.to_toml().replace('\n', "; "), "starting");
    match jube_server::server::run(config, cores) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            tracing::error!(%error, "cannot start");
            eprintln!("jubed: {error}");
            ExitCode::from(2)
        }
    }
}
