//! The `jube-load` command line: arguments, the run, the table, the JSON
//! files, the baseline gate and the exit status. The binary is a thin
//! wrapper over `main`, so tests drive the very same path with `run`.
//!
//! Exit status: 0 ok; 1 the server answered more errors than --max-errors;
//! 2 the run could not be done (bad arguments, server unreachable, protocol
//! broken, stalled); 3 a regression against --baseline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::baseline::{compare, Comparison, Thresholds};
use super::error::LoadError;
use super::machine::Machine;
use super::report::{read_summary, table, write_json, Summary};
use super::run::{execute, Progress, RunResult, Settings};
use super::wire::Protocol;
use super::workload::{DistributionName, Preset, SizeRange};
use super::zipf::Distribution;

/// Exit status: the server answered more errors than `--max-errors`.
pub const EXIT_ERRORS: u8 = 1;
/// Exit status: the run could not be done.
pub const EXIT_FAILED: u8 = 2;
/// Exit status: a regression against `--baseline`.
pub const EXIT_REGRESSION: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "jube-load",
    version,
    about = "Load generator for jube and RESP servers",
    // A later flag overrides an earlier one, so scripts can append overrides.
    args_override_self = true
)]
pub struct Cli {
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "native")]
    protocol: Protocol,
    /// Server address [default: 127.0.0.1:7878 native, 127.0.0.1:6379 resp].
    #[arg(long)]
    addr: Option<String>,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (closed loop: always this many).
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Worker threads, each driving its share of the connections.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Workload: set, get, mix (--get-ratio) or a YCSB preset.
    #[arg(short = 'w', long, value_enum, default_value = "mix")]
    workload: Preset,
    /// Share of GETs for --workload mix.
    #[arg(long, default_value_t = 0.5)]
    get_ratio: f64,
    /// Key distribution [default: the workload's; uniform for set/get/mix].
    #[arg(long, value_enum)]
    distribution: Option<DistributionName>,
    /// Zipfian constant for zipfian and latest.
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Keys in the key space.
    #[arg(short = 'k', long, default_value_t = 100_000)]
    keys: u64,
    /// Key size in bytes: N or MIN-MAX.
    #[arg(long, default_value = "16")]
    key_size: SizeRange,
    /// Value size in bytes: N or MIN-MAX.
    #[arg(short = 'd', long, default_value = "100")]
    value_size: SizeRange,
    /// Longest scan (YCSB E), in entries; lengths are uniform in 1..=this.
    #[arg(long, default_value_t = 100)]
    scan_length_max: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every key once before the warm-up (YCSB's load phase).
    #[arg(long)]
    load: bool,
    /// Seconds per repeat.
    #[arg(long, conflicts_with = "ops")]
    duration: Option<f64>,
    /// Operations per repeat, instead of --duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Seconds of warm-up before the first repeat (not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Measured repeats.
    #[arg(long, default_value_t = 3)]
    repeats: u32,
    /// Open loop: total target rate in ops/s, Poisson arrivals.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds without any reply before the run is declared stalled.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Error replies tolerated before exiting with status 1.
    #[arg(long, default_value_t = 0)]
    max_errors: u64,
    /// Write <name>.r<N>.json per repeat and <name>.summary.json here.
    #[arg(long)]
    json_dir: Option<PathBuf>,
    /// Name of the JSON files [default: derived from the parameters].
    #[arg(long)]
    name: Option<String>,
    /// Compare with <DIR>/<name>.summary.json; exit 3 on a regression.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Largest throughput drop tolerated against --baseline, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_throughput_drop_pct: f64,
    /// Largest p99 rise tolerated against --baseline, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_p99_rise_pct: f64,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
}

/// Default seconds per repeat when neither --duration nor --ops is given.
const DURATION_DEFAULT_S: f64 = 10.0;

impl Cli {
    pub fn settings(&self) -> Settings {
        let addr = self.addr.clone().unwrap_or_else(|| {
            match self.protocol {
                Protocol::Native => "127.0.0.1:7878",
                Protocol::Resp => "127.0.0.1:6379",
            }
            .to_string()
        });
        let theta = self.zipf_theta;
        let distribution = match self
            .distribution
            .unwrap_or(self.workload.default_distribution())
        {
            DistributionName::Uniform => Distribution::Uniform,
            DistributionName::Zipfian => Distribution::Zipfian { theta },
            DistributionName::Latest => Distribution::Latest { theta },
        };
        Settings {
            protocol: self.protocol,
            addr,
            connections: self.connections,
            pipeline: self.pipeline,
            threads: self.threads,
            workload: self.workload,
            mix: self.workload.mix(self.get_ratio.clamp(0.0, 1.0)),
            distribution,
            key_count: self.keys,
            key_size: self.key_size,
            value_size: self.value_size,
            scan_length_max: self.scan_length_max,
            seed: self.seed,
            load: self.load,
            duration_s: match self.ops {
                Some(_) => None,
                None => Some(self.duration.unwrap_or(DURATION_DEFAULT_S)),
            },
            ops: self.ops,
            warmup_s: self.warmup,
            repeats: self.repeats,
            rate_per_s: self.rate,
            timeout_s: self.timeout,
        }
    }

    /// `<protocol>-<workload>-c<C>-p<P>-d<value size>`, plus `-rate<R>`
    /// for open loop: stable for the same parameters, so baselines match.
    fn name(&self, settings: &Settings) -> String {
        self.name.clone().unwrap_or_else(|| {
            let mut name = format!(
                "{}-{}-c{}-p{}-d{}",
                settings.protocol.name(),
                settings.workload.name(),
                settings.connections,
                settings.pipeline,
                settings.value_size
            );
            if let Some(rate) = settings.rate_per_s {
                name.push_str(&format!("-rate{rate:.0}"));
            }
            name
        })
    }
}

/// What a completed run produced, and the exit status it calls for.
#[derive(Debug)]
pub struct Verdict {
    pub exit_code: u8,
    pub name: String,
    pub result: RunResult,
    pub summary: Summary,
    pub comparison: Option<Comparison>,
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(verdict) => ExitCode::from(verdict.exit_code),
        Err(error) => {
            eprintln!("jube-load: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Runs what `cli` asks, printing the table (and progress unless quiet).
pub fn run(cli: &Cli) -> Result<Verdict, LoadError> {
    if !(0.0..=1.0).contains(&cli.get_ratio) {
        return Err(LoadError::Usage("--get-ratio must be in [0, 1]".into()));
    }
    let settings = cli.settings();
    let name = cli.name(&settings);
    if settings.workload == Preset::Get && !settings.load {
        eprintln!("jube-load: note: without --load, GETs of keys never written count as misses");
    }
    println!(
        "jube-load {name}: {} {} | {} connections x pipeline {} on {} threads | {} | {} keys, key {} B, value {} B",
        settings.protocol.name(),
        settings.addr,
        settings.connections,
        settings.pipeline,
        settings.worker_count(),
        match settings.rate_per_s {
            Some(rate) => format!("open loop {rate:.0} ops/s"),
            None => "closed loop".to_string(),
        },
        settings.key_count,
        settings.key_size,
        settings.value_size,
    );
    let progress = Progress::new();
    let result = execute(&settings, (!cli.quiet).then_some(&progress))?;
    let machine = Machine::current();
    let summary = Summary::new(
        &name,
        &settings,
        &machine,
        result.load.as_ref(),
        &result.repeats,
    );
    print!("{}", table(result.load.as_ref(), &result.repeats, &summary));
    let errors = summary.errors + result.load.as_ref().map_or(0, |l| l.errors);
    let samples = result
        .load
        .iter()
        .chain(&result.repeats)
        .flat_map(|r| &r.error_samples);
    for sample in samples.take(5) {
        println!("server error: {sample}");
    }
    if let Some(dir) = &cli.json_dir {
        let written = write_json(dir, &name, &settings, &machine, &result.repeats, &summary)?;
        println!("wrote {} JSON files to {}", written.len(), dir.display());
    }
    let mut exit_code = 0;
    let mut comparison = None;
    if let Some(dir) = &cli.baseline {
        let baseline = read_summary(dir, &name)?;
        let thresholds = Thresholds {
            throughput_drop_pct: cli.max_throughput_drop_pct,
            p99_rise_pct: cli.max_p99_rise_pct,
        };
        let compared = compare(&baseline, &summary, thresholds);
        print!("{}", compared.describe(&baseline, &summary));
        if compared.regressed() {
            exit_code = EXIT_REGRESSION;
        }
        comparison = Some(compared);
    }
    if errors > cli.max_errors {
        eprintln!(
            "jube-load: the server answered {errors} errors (more than --max-errors {})",
            cli.max_errors
        );
        exit_code = EXIT_ERRORS;
    }
    Ok(Verdict {
        exit_code,
        name,
        result,
        summary,
        comparison,
    })
}
