//! jubectl: talk to a running jubed, or check a stopped server's data directory.
//!
//! Exit codes: 0 on success; 1 when `get` finds no such key; 2 on any error, with the message on
//! stderr. Values print as raw bytes followed by a newline (`get --out FILE` writes them without
//! one); values up to `VALUE_SIZE_MAX` go in from a file or stdin (`put KEY --value-file FILE`,
//! `put KEY -`), and a larger one is refused before it is read whole; scan prints `KEY<TAB>VALUE` lines with
//! non-printable bytes escaped (`\xNN`).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use jube_protocol::constants::VALUE_SIZE_MAX;
use jube_protocol::{Client, ClientError, InfoReply, Scan, Status};
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Operator CLI for jube.
#[derive(Debug, Parser)]
#[command(name = "jubectl", version, about)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7878", global = true)]
    addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the server answers.
    Ping,
    /// Store a value: from VALUE, from --value-file F (`-`: stdin), or from stdin with `-`. Values
    /// may be up to the protocol's VALUE_SIZE_MAX (16 MiB).
    Put {
        key: String,
        /// The value; `-` reads it from stdin.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (`-`: stdin), byte for byte.
        #[arg(long, visible_alias = "value-file")]
        file: Option<PathBuf>,
        /// Time to live: 500ms, 30s, 5m, 2h, 1d (a bare number is seconds).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Print a key's value followed by a newline, or write it to --out (exit 1 if there is none).
    Get {
        key: String,
        /// Write the value, byte for byte and without a newline, to this file (`-`: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete a key (deleting a missing key succeeds).
    Del { key: String },
    /// List keys and values in key order.
    Scan {
        /// First key (inclusive).
        #[arg(long)]
        start: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Most entries to print (default: all).
        #[arg(long)]
        limit: Option<u64>,
        /// Largest keys first.
        #[arg(long)]
        reverse: bool,
    },
    /// Server and shard statistics.
    Info {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint every shard now.
    Checkpoint,
    /// Check a stopped server's data directory with the engine's integrity checks.
    Validate {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s or 5m"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ))
        }
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if millis == 0 {
        return Err("a TTL must be positive".to_string());
    }
    Ok(Duration::from_millis(millis))
}

/// A failure to report: the message and the exit code.
struct Failure(String, u8);

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure(error.to_string(), 2)
    }
}

/// Reads a value from `reader`, refusing one above `VALUE_SIZE_MAX` without reading more than
/// one byte past it.
fn read_limited(reader: impl Read, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    reader
        .take(VALUE_SIZE_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Failure(format!("cannot read {what}: {error}"), 2))?;
    if bytes.len() > VALUE_SIZE_MAX {
        return Err(value_too_large(what, None));
    }
    Ok(bytes)
}

fn value_too_large(what: &str, size: Option<u64>) -> Failure {
    let size = size.map_or("more than that".to_string(), |size| format!("{size} bytes"));
    Failure(
        format!("the value in {what} is too large: {size}, the maximum is {VALUE_SIZE_MAX} bytes"),
        2,
    )
}

fn read_value(value: Option<String>, file: Option<PathBuf>) -> Result<Vec<u8>, Failure> {
    match (value, file) {
        (_, Some(path)) if path.as_os_str() == "-" => read_limited(std::io::stdin(), "stdin"),
        (_, Some(path)) => {
            let what = path.display().to_string();
            let file = std::fs::File::open(&path)
                .map_err(|error| Failure(format!("cannot read {what}: {error}"), 2))?;
            // A regular file says its size: refuse a large one before reading it.
            if let Ok(metadata) = file.metadata() {
                if metadata.is_file() && metadata.len() > VALUE_SIZE_MAX as u64 {
                    return Err(value_too_large(&what, Some(metadata.len())));
                }
            }
            read_limited(file, &what)
        }
        (Some(value), None) if value == "-" => read_limited(std::io::stdin(), "stdin"),
        (Some(value), None) => Ok(value.into_bytes()),
        (None, None) => Err(Failure(
            "no value: give VALUE, - for stdin, or --value-file".to_string(),
            2,
        )),
    }
}

/// Writes a value to `path` (`-`: stdout), byte for byte.
fn write_value(path: &std::path::Path, value: &[u8]) -> Result<(), Failure> {
    if path.as_os_str() == "-" {
        return write_out(value);
    }
    std::fs::write(path, value)
        .map_err(|error| Failure(format!("cannot write {}: {error}", path.display()), 2))
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure(format!("cannot write to stdout: {error}"), 2))
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn scan(
    client: &mut Client,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u64>,
    reverse: bool,
) -> Result<(), Failure> {
    let mut request = Scan::all();
    request.start = start.map_or(Bound::Unbounded, |key| Bound::Included(key.into_bytes()));
    request.end = end.map_or(Bound::Unbounded, |key| Bound::Excluded(key.into_bytes()));
    request.reverse = reverse;
    let mut remaining = limit.unwrap_or(u64::MAX);
    while remaining > 0 {
        request.limit =
            u32::try_from(remaining.min(u64::from(jube_protocol::constants::SCAN_LIMIT_MAX)))
                .unwrap_or(0);
        let page = client.scan(request.clone())?;
        let mut text = String::new();
        for entry in &page.entries {
            text.push_str(&format!(
                "{}\t{}\n",
                escaped(&entry.key),
                escaped(&entry.value)
            ));
        }
        write_out(text.as_bytes())?;
        remaining = remaining.saturating_sub(page.entries.len() as u64);
        match page.continuation {
            Some(token) if !page.entries.is_empty() => request.continuation = Some(token),
            _ => break,
        }
    }
    Ok(())
}

fn info_json(info: &InfoReply) -> serde_json::Value {
    let sections: serde_json::Map<String, serde_json::Value> = info
        .sections
        .iter()
        .map(|section| {
            let metrics: serde_json::Map<String, serde_json::Value> = section
                .metrics
                .iter()
                .map(|metric| (metric.name.clone(), metric.value.into()))
                .collect();
            (section.name.clone(), metrics.into())
        })
        .collect();
    serde_json::json!({
        "server_version": info.server_version,
        "uptime_ms": info.uptime_ms,
        "shard_count": info.shard_count,
        "core_count": info.core_count,
        "sections": sections,
    })
}

fn info_text(info: &InfoReply) -> String {
    let mut text = format!(
        "server_version {}\nuptime_ms {}\nshard_count {}\ncore_count {}\n",
        info.server_version, info.uptime_ms, info.shard_count, info.core_count
    );
    for section in &info.sections {
        for metric in &section.metrics {
            text.push_str(&format!(
                "{}.{} {}\n",
                section.name, metric.name, metric.value
            ));
        }
    }
    text
}

fn validate(data_dir: &std::path::Path) -> Result<(), Failure> {
    let results = jube_server::shard_host::validate_offline(data_dir)
        .map_err(|error| Failure(format!("{}: {error}", data_dir.display()), 2))?;
    let mut failed = 0;
    for (shard, result) in &results {
        match result {
            Ok(summary) => println!("shard {shard}: {summary}"),
            Err(error) => {
                failed += 1;
                println!("shard {shard}: FAILED: {error}");
            }
        }
    }
    if failed > 0 {
        return Err(Failure(
            format!(
                "{}: {failed} of {} shards failed the check",
                data_dir.display(),
                results.len()
            ),
            2,
        ));
    }
    Ok(())
}

fn run(args: Args) -> Result<(), Failure> {
    let mut client = match args.command {
        Command::Validate { data_dir } => return validate(&data_dir),
        _ => Client::connect(args.addr.as_str())?,
    };
    match args.command {
        Command::Ping => {
            client.ping()?;
            println!("PONG");
        }
        Command::Put {
            key,
            value,
            file,
            ttl,
        } => {
            let value = read_value(value, file)?;
            client.put(key.as_bytes(), &value, ttl)?;
        }
        Command::Get { key, out } => match client.get(key.as_bytes()) {
            Ok(Some(value)) => match out {
                Some(path) => write_value(&path, &value)?,
                None => {
                    write_out(&value)?;
                    write_out(b"\n")?;
                }
            },
            Ok(None) => return Err(Failure(format!("{key}: not found"), 1)),
            Err(error) if error.status() == Some(Status::NotFound) => {
                return Err(Failure(format!("{key}: not found"), 1))
            }
            Err(error) => return Err(error.into()),
        },
        Command::Del { key } => client.delete(key.as_bytes())?,
        Command::Scan {
            start,
            end,
            limit,
            reverse,
        } => scan(&mut client, start, end, limit, reverse)?,
        Command::Info { json } => {
            let info = client.info()?;
            let text = if json {
                format!("{:#}\n", info_json(&info))
            } else {
                info_text(&info)
            };
            write_out(text.as_bytes())?;
        }
        Command::Checkpoint => {
            let reply = client.checkpoint()?;
            println!("checkpoint done in {} us", reply.duration_us);
        }
        Command::Validate { .. } => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("jubectl: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }
}
