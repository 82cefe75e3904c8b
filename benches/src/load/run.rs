//! A whole run: check the server answers, start the workers, then run the
//! phases (load, warm-up, each repeat) one after the other on the same
//! connections, printing a progress line to stderr once a second.
//!
//! Invariants:
//! - `Settings` is validated before anything connects, so a bad combination
//!   (RESP with YCSB E, a pipeline deeper than the native protocol allows)
//!   fails with a usage error, not mid-run;
//! - work is split between workers in proportion to their connections:
//!   connections, `--ops`, `--rate` and the load phase's key range;
//! - if one worker fails, the others are told to stop (`Shared::abort`) and
//!   the first real error is returned.

use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jube_protocol::constants::{KEY_SIZE_MAX, PIPELINE_DEPTH_MAX, SCAN_LIMIT_MAX, VALUE_SIZE_MAX};

use super::driver::{Keys, Pace, Phase, Shared, Stop, Worker, WorkerConfig, CONNECT_TIMEOUT};
use super::error::LoadError;
use super::report::PhaseReport;
use super::stats::Stats;
use super::wire::{Codec, Command, Outcome, Protocol};
use super::workload::{Mix, OpKind, Preset, SizeRange};
use super::zipf::{Distribution, KeyChooser};

/// Longest wait for the PING that checks the server before a run.
const PING_TIMEOUT_MAX: Duration = Duration::from_secs(3);

/// Deepest RESP pipeline accepted: beyond this the generator only fills
/// socket buffers.
pub const RESP_PIPELINE_MAX: usize = 1024;

/// Everything that defines a run; serialized as `parameters` in the JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Settings {
    pub protocol: Protocol,
    pub addr: String,
    pub connections: usize,
    pub pipeline: usize,
    pub threads: usize,
    pub workload: Preset,
    pub mix: Mix,
    pub distribution: Distribution,
    pub key_count: u64,
    pub key_size: SizeRange,
    pub value_size: SizeRange,
    pub scan_length_max: u32,
    pub seed: u64,
    /// Write every key once before the warm-up.
    pub load: bool,
    /// Each repeat lasts this long ...
    pub duration_s: Option<f64>,
    /// ... or issues this many operations.
    pub ops: Option<u64>,
    pub warmup_s: f64,
    pub repeats: u32,
    /// Open loop at this total rate; `None` is closed loop.
    pub rate_per_s: Option<f64>,
    pub timeout_s: f64,
}

fn usage(message: impl Into<String>) -> LoadError {
    LoadError::Usage(message.into())
}

impl Settings {
    /// Rejects combinations that cannot run.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.connections == 0 || self.threads == 0 || self.repeats == 0 {
            return Err(usage("connections, threads and repeats must be at least 1"));
        }
        let pipeline_max = match self.protocol {
            Protocol::Native => PIPELINE_DEPTH_MAX,
            Protocol::Resp => RESP_PIPELINE_MAX,
        };
        if !(1..=pipeline_max).contains(&self.pipeline) {
            return Err(usage(format!(
                "pipeline must be 1..={pipeline_max} for the {} protocol",
                self.protocol.name()
            )));
        }
        if self.key_count == 0 {
            return Err(usage("the key count must be at least 1"));
        }
        if self.key_size.min == 0 || self.key_size.max > KEY_SIZE_MAX {
            return Err(usage(format!("key size must be in 1..={KEY_SIZE_MAX}")));
        }
        if self.value_size.max > VALUE_SIZE_MAX {
            return Err(usage(format!(
                "value size must be at most {VALUE_SIZE_MAX}"
            )));
        }
        if !(1..=SCAN_LIMIT_MAX).contains(&self.scan_length_max) {
            return Err(usage(format!(
                "scan length max must be in 1..={SCAN_LIMIT_MAX}"
            )));
        }
        if self.mix.scan > 0.0 && self.protocol == Protocol::Resp {
            return Err(usage(
                "YCSB E needs range scans, which RESP does not have (SCAN walks hash slots \
                 with a cursor: not comparable); run E with --protocol native",
            ));
        }
        if let Distribution::Zipfian { theta } | Distribution::Latest { theta } = self.distribution
        {
            if !(theta > 0.0 && theta < 1.0) {
                return Err(usage("zipfian theta must be in (0, 1)"));
            }
        }
        match (self.duration_s, self.ops) {
            (Some(seconds), None) if seconds > 0.0 => {}
            (None, Some(ops)) if ops > 0 => {}
            _ => {
                return Err(usage(
                    "give either a positive --duration or a positive --ops",
                ))
            }
        }
        if self
            .rate_per_s
            .is_some_and(|rate| rate <= 0.0 || !rate.is_finite())
        {
            return Err(usage("--rate must be positive"));
        }
        if !(self.warmup_s >= 0.0 && self.timeout_s > 0.0) {
            return Err(usage("--warmup must be >= 0 and --timeout > 0"));
        }
        Ok(())
    }

    /// Worker threads actually used: never more than connections.
    pub fn worker_count(&self) -> usize {
        self.threads.min(self.connections)
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub load: Option<PhaseReport>,
    pub repeats: Vec<PhaseReport>,
}

/// Resolves `addr` to one socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, LoadError> {
    addr.to_socket_addrs()
        .map_err(|e| LoadError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| LoadError::Resolve {
            addr: addr.to_string(),
            reason: "no address".into(),
        })
}

/// One PING round trip, so an absent server or the wrong protocol fails
/// with a clear message before any load starts.
pub fn check_server(
    addr: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
) -> Result<(), LoadError> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|source| LoadError::Connect { addr, source })?;
    let io = |context| {
        move |source| LoadError::Io {
            addr,
            context,
            source,
        }
    };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    let mut codec = Codec::new(protocol);
    let mut request = Vec::new();
    let sent = codec
        .encode(Command::Ping, &mut request)
        .map_err(|e| usage(e.0))?;
    stream.write_all(&request).map_err(io("sending PING"))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let wrong_protocol = |reason: String| LoadError::Protocol {
        addr,
        reason: format!(
            "{reason} (is this a {} server? see --protocol)",
            protocol.name()
        ),
    };
    loop {
        let count = match stream.read(&mut chunk) {
            Ok(count) => count,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(wrong_protocol(format!(
                    "no reply to PING within {:.1} s",
                    timeout.as_secs_f64()
                )))
            }
            Err(source) => return Err(io("waiting for the PING reply")(source)),
        };
        if count == 0 {
            return Err(wrong_protocol("closed the connection after PING".into()));
        }
        reply.extend_from_slice(&chunk[..count]);
        match codec.decode(&reply, sent) {
            Ok(None) => {}
            Ok(Some((_, Outcome::Ok))) => return Ok(()),
            Ok(Some((_, other))) => return Err(wrong_protocol(format!("PING answered {other:?}"))),
            Err(e) => return Err(wrong_protocol(e.0)),
        }
    }
}

/// Splits `total` in proportion to `weights` (which sum to a positive
/// number); the parts add up to `total`.
pub fn split(total: u64, weights: &[usize]) -> Vec<u64> {
    let weight_sum: u64 = weights.iter().map(|w| *w as u64).sum();
    assert!(weight_sum > 0, "split needs a positive weight");
    let mut parts: Vec<u64> = weights
        .iter()
        .map(|w| (u128::from(total) * *w as u128 / u128::from(weight_sum)) as u64)
        .collect();
    let remainder = total - parts.iter().sum::<u64>();
    parts[0] += remainder;
    parts
}

type WorkerReply = Result<Stats, LoadError>;

struct WorkerHandle {
    phases: mpsc::Sender<Phase>,
    thread: thread::JoinHandle<()>,
}

/// The running workers and the channel their replies come back on.
struct Pool {
    workers: Vec<WorkerHandle>,
    replies: mpsc::Receiver<(usize, WorkerReply)>,
    connections: Vec<usize>,
    shared: Arc<Shared>,
}

impl Pool {
    fn start(settings: &Settings, addr: SocketAddr) -> Result<Pool, LoadError> {
        let worker_count = settings.worker_count();
        let connections = split(settings.connections as u64, &vec![1; worker_count])
            .into_iter()
            .map(|c| c as usize)
            .collect::<Vec<_>>();
        let shared = Arc::new(Shared::default());
        shared
            .live_keys
            .store(settings.key_count, Ordering::Relaxed);
        // Zeta costs O(key count): compute it once and clone it per worker.
        let chooser = KeyChooser::new(settings.distribution, settings.key_count);
        let (reply_tx, replies) = mpsc::channel();
        let mut workers = Vec::new();
        for (index, conns) in connections.iter().enumerate() {
            let config = WorkerConfig {
                addr,
                protocol: settings.protocol,
                connections: *conns,
                pipeline: settings.pipeline,
                mix: settings.mix,
                chooser: chooser.clone(),
                key_size: settings.key_size,
                value_size: settings.value_size,
                scan_length_max: settings.scan_length_max,
                seed: settings.seed,
                timeout: Duration::from_secs_f64(settings.timeout_s),
            };
            let (phase_tx, phase_rx) = mpsc::channel::<Phase>();
            let reply_tx = reply_tx.clone();
            let shared = Arc::clone(&shared);
            let thread = thread::Builder::new()
                .name(format!("jube-load-{index}"))
                .spawn(move || worker_main(index, &config, &phase_rx, &reply_tx, &shared))
                .map_err(|e| usage(format!("cannot start a worker thread: {e}")))?;
            workers.push(WorkerHandle {
                phases: phase_tx,
                thread,
            });
        }
        let pool = Pool {
            workers,
            replies,
            connections,
            shared,
        };
        // Each worker first reports whether its connections opened.
        pool.collect(None, "connect")?;
        Ok(pool)
    }

    /// Waits for one reply per worker, printing progress; merges the stats.
    fn collect(&self, progress: Option<&Progress>, label: &str) -> Result<Stats, LoadError> {
        let mut merged = Stats::new();
        let mut first_error = None;
        let mut waiting = self.workers.len();
        let started = Instant::now();
        let mut last_print = (started, 0u64);
        while waiting > 0 {
            let deadline = last_print.0 + Duration::from_secs(1);
            match self
                .replies
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((_, Ok(stats))) => {
                    merged.merge(&stats);
                    waiting -= 1;
                }
                Ok((_, Err(error))) => {
                    self.shared.abort.store(true, Ordering::Relaxed);
                    // Keep the error that caused the abort, not an echo of it.
                    if first_error.is_none() || matches!(first_error, Some(LoadError::Aborted)) {
                        first_error = Some(error);
                    }
                    waiting -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    let ops = self.shared.ops.load(Ordering::Relaxed);
                    if let Some(progress) = progress {
                        progress.print(
                            label,
                            now - started,
                            ops,
                            ops - last_print.1,
                            now - last_print.0,
                            &self.shared,
                        );
                    }
                    last_print = (now, ops);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(usage("a worker thread died"));
                }
            }
        }
        if let Some(progress) = progress {
            progress.finish();
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(merged),
        }
    }

    fn run_phase(
        &self,
        phases: &[Phase],
        progress: Option<&Progress>,
        label: &str,
    ) -> Result<Stats, LoadError> {
        self.shared.ops.store(0, Ordering::Relaxed);
        self.shared.errors.store(0, Ordering::Relaxed);
        for (worker, phase) in self.workers.iter().zip(phases) {
            worker
                .phases
                .send(*phase)
                .map_err(|_| usage("a worker thread died"))?;
        }
        self.collect(progress, label)
    }

    /// The same phase for every worker, with ops and rate split by
    /// connections.
    fn phases(&self, stop: Stop, pace: Pace) -> Vec<Phase> {
        let ops_shares = match stop {
            Stop::Ops(total) => split(total, &self.connections),
            Stop::After(_) => vec![0; self.connections.len()],
        };
        let total_conns: usize = self.connections.iter().sum();
        self.connections
            .iter()
            .zip(ops_shares)
            .map(|(conns, ops)| Phase {
                stop: match stop {
                    Stop::Ops(_) => Stop::Ops(ops),
                    after => after,
                },
                pace: match pace {
                    Pace::Open { rate_per_s } => Pace::Open {
                        rate_per_s: rate_per_s * *conns as f64 / total_conns as f64,
                    },
                    Pace::Closed => Pace::Closed,
                },
                keys: Keys::Workload,
            })
            .collect()
    }

    /// The load phase: each worker writes its slice of the key range once.
    fn load_phases(&self, key_count: u64) -> Vec<Phase> {
        let mut start = 0;
        split(key_count, &self.connections)
            .into_iter()
            .map(|count| {
                let phase = Phase {
                    stop: Stop::Ops(count),
                    pace: Pace::Closed,
                    keys: Keys::Load {
                        start,
                        end: start + count,
                    },
                };
                start += count;
                phase
            })
            .collect()
    }

    fn stop(self) {
        for worker in self.workers {
            drop(worker.phases);
            // A worker that panicked has already reported through the
            // disconnected channel; nothing more to do with it here.
            let _ = worker.thread.join();
        }
    }
}

fn worker_main(
    index: usize,
    config: &WorkerConfig,
    phases: &mpsc::Receiver<Phase>,
    replies: &mpsc::Sender<(usize, WorkerReply)>,
    shared: &Shared,
) {
    let mut worker = match Worker::connect(config, index as u64) {
        Ok(worker) => {
            let _ = replies.send((index, Ok(Stats::new())));
            worker
        }
        Err(error) => {
            let _ = replies.send((index, Err(error)));
            return;
        }
    };
    while let Ok(phase) = phases.recv() {
        let result = worker.run(&phase, shared);
        if result.is_err() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        if replies.send((index, result)).is_err() {
            return;
        }
    }
}

/// The once-a-second progress line on stderr: rewritten in place on a
/// terminal, one line per second otherwise (logs).
pub struct Progress {
    terminal: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn print(
        &self,
        label: &str,
        elapsed: Duration,
        ops: u64,
        recent_ops: u64,
        recent: Duration,
        shared: &Shared,
    ) {
        let rate = recent_ops as f64 / recent.as_secs_f64().max(1e-9);
        let line = format!(
            "jube-load {label}: {:>5.1} s  {:>10.0} ops/s  {ops} ops  {} errors",
            elapsed.as_secs_f64(),
            rate,
            shared.errors.load(Ordering::Relaxed)
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
    }

    fn finish(&self) {
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Runs every phase of `settings`; `progress` prints to stderr if given.
pub fn execute(settings: &Settings, progress: Option<&Progress>) -> Result<RunResult, LoadError> {
    settings.validate()?;
    let addr = resolve(&settings.addr)?;
    // A server that is up answers PING in microseconds; one that does not
    // speak the protocol may wait for more bytes forever, so do not make the
    // user wait the whole --timeout to learn that.
    let ping_timeout = Duration::from_secs_f64(settings.timeout_s).min(PING_TIMEOUT_MAX);
    check_server(addr, settings.protocol, ping_timeout)?;
    let pool = Pool::start(settings, addr)?;
    let result = run_phases(settings, &pool, progress);
    pool.stop();
    result
}

fn run_phases(
    settings: &Settings,
    pool: &Pool,
    progress: Option<&Progress>,
) -> Result<RunResult, LoadError> {
    let load = if settings.load {
        let stats = pool.run_phase(&pool.load_phases(settings.key_count), progress, "load")?;
        Some(PhaseReport::new("load", &stats, &[OpKind::Set]))
    } else {
        None
    };
    let pace = match settings.rate_per_s {
        Some(rate_per_s) => Pace::Open { rate_per_s },
        None => Pace::Closed,
    };
    if settings.warmup_s > 0.0 {
        let warmup = Stop::After(Duration::from_secs_f64(settings.warmup_s));
        pool.run_phase(&pool.phases(warmup, pace), progress, "warm-up")?;
    }
    // validate() made sure exactly one of the two is set.
    let stop = match settings.ops {
        Some(ops) => Stop::Ops(ops),
        None => Stop::After(Duration::from_secs_f64(settings.duration_s.unwrap_or(0.0))),
    };
    let kinds = settings.mix.kinds();
    let mut repeats = Vec::new();
    for repeat in 1..=settings.repeats {
        let label = format!("run {repeat}/{}", settings.repeats);
        let stats = pool.run_phase(&pool.phases(stop, pace), progress, &label)?;
        repeats.push(PhaseReport::new(&format!("run {repeat}"), &stats, &kinds));
    }
    Ok(RunResult { load, repeats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_proportional_and_exact() {
        assert_eq!(split(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split(100, &[25, 25]), vec![50, 50]);
        assert_eq!(split(7, &[3, 1]), vec![6, 1]);
        assert_eq!(split(0, &[2, 2]), vec![0, 0]);
        assert_eq!(split(u64::MAX, &[1, 1]).iter().sum::<u64>(), u64::MAX);
    }
}
