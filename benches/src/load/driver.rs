//! One worker thread: many non-blocking connections driven by a mio event
//! loop, closed or open loop, recording latencies into `Stats`.
//!
//! Why mio and not tokio or a thread per connection: a load generator on a
//! 2-core machine shared with the server must spend as little CPU as
//! possible per request. A mio loop is one epoll set per worker, no task
//! scheduling, no wakers and no allocation per request on the RESP path; a
//! thread per connection would put 50 threads on 2 cores and measure the
//! scheduler. Each worker owns its connections outright, so the hot path has
//! no locks; workers share only a few atomic counters (`Shared`).
//!
//! Closed loop: every connection keeps `pipeline` requests in flight and
//! sends a new one as each reply arrives. Open loop: arrivals are a Poisson
//! process at the worker's share of `--rate`; each arrival goes to a
//! connection with a free pipeline slot, or waits in a backlog, and its
//! latency is measured from its *intended* send time, so a slow server shows
//! in the percentiles instead of silently slowing the arrivals (no
//! coordinated omission). mio's epoll timeouts have millisecond resolution,
//! so when the next arrival is under a millisecond away the loop polls
//! without sleeping.
//!
//! Invariants:
//! - a connection never has more than `pipeline` operations in flight (a
//!   read-modify-write's put replaces its get in the same slot);
//! - replies are matched to requests in order (both protocols answer in
//!   request order on a connection);
//! - a phase ends only when every issued operation has completed, so open
//!   loop overload is measured, not dropped; no reply for `timeout` while
//!   requests are in flight ends the run with `Stalled`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error::LoadError;
use super::stats::Stats;
use super::wire::{Codec, Command, Outcome, Protocol, Sent};
use super::workload::{write_key, Mix, OpKind, SizeRange, ValuePool};
use super::zipf::KeyChooser;

/// Counters the workers share with the main thread.
#[derive(Debug, Default)]
pub struct Shared {
    /// Operations completed in the current phase (for the progress line).
    pub ops: AtomicU64,
    /// Error replies in the current phase.
    pub errors: AtomicU64,
    /// Set by a failing worker so the others stop too.
    pub abort: AtomicBool,
    /// Keys that exist: the key count plus inserts issued so far.
    pub live_keys: AtomicU64,
}

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Open loop: most arrivals waiting for a free slot before the run is called
/// overloaded (16 M arrivals is 128 MiB of timestamps).
const BACKLOG_MAX: usize = 16 * 1024 * 1024;
/// Longest sleep in poll, so stop conditions and stalls are noticed.
const POLL_SLEEP_MAX: Duration = Duration::from_millis(100);
/// Read buffer a connection starts with; grows for larger replies.
const READ_BUFFER_SIZE: usize = 64 * 1024;

/// What every worker of a run shares.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub connections: usize,
    pub pipeline: usize,
    pub mix: Mix,
    pub chooser: KeyChooser,
    pub key_size: SizeRange,
    pub value_size: SizeRange,
    pub scan_length_max: u32,
    pub seed: u64,
    pub timeout: Duration,
}

/// When a phase stops issuing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    After(Duration),
    /// After this many operations (this worker's share).
    Ops(u64),
}

/// Closed loop, or open loop at this worker's share of the rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Closed,
    Open { rate_per_s: f64 },
}

/// Which keys a phase touches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keys {
    /// The workload's mix and distribution.
    Workload,
    /// SET each key of `start..end` once, in order (the load phase).
    Load { start: u64, end: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub stop: Stop,
    pub pace: Pace,
    pub keys: Keys,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    sent: Sent,
    kind: OpKind,
    /// When the operation was sent (closed) or meant to be (open), in ns
    /// since the phase started.
    start_ns: u64,
    key: u64,
    /// A read-modify-write whose get is done and whose put is in flight.
    rmw_put: bool,
}

struct Conn {
    stream: TcpStream,
    codec: Codec,
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    write_buf: Vec<u8>,
    write_start: usize,
    in_flight: VecDeque<Pending>,
}

/// Makes operations: kinds, keys and values.
struct Generator {
    rng: ChaCha8Rng,
    /// Open-loop arrival times only: kept apart from `rng` so the schedule
    /// does not depend on how many operations were generated when.
    arrivals_rng: ChaCha8Rng,
    mix: Mix,
    chooser: KeyChooser,
    key_size: SizeRange,
    values: ValuePool,
    scan_length_max: u32,
    key_buf: Vec<u8>,
    load_next: u64,
}

pub struct Worker {
    addr: SocketAddr,
    pipeline: usize,
    timeout: Duration,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    generator: Generator,
}

fn io_error(addr: SocketAddr, context: &'static str) -> impl FnOnce(io::Error) -> LoadError {
    move |source| LoadError::Io {
        addr,
        context,
        source,
    }
}

impl Worker {
    /// Opens this worker's connections. `index` makes its random stream
    /// differ from the other workers' for the same seed.
    pub fn connect(config: &WorkerConfig, index: u64) -> Result<Worker, LoadError> {
        let addr = config.addr;
        let poll = Poll::new().map_err(io_error(addr, "creating the poller"))?;
        let mut conns = Vec::with_capacity(config.connections);
        for i in 0..config.connections {
            let std_stream = std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .map_err(|source| LoadError::Connect { addr, source })?;
            std_stream
                .set_nodelay(true)
                .map_err(io_error(addr, "setting TCP_NODELAY"))?;
            std_stream
                .set_nonblocking(true)
                .map_err(io_error(addr, "making the socket non-blocking"))?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(io_error(addr, "registering the socket"))?;
            conns.push(Conn {
                stream,
                codec: Codec::new(config.protocol),
                read_buf: vec![0; READ_BUFFER_SIZE],
                read_start: 0,
                read_end: 0,
                write_buf: Vec::with_capacity(READ_BUFFER_SIZE),
                write_start: 0,
                in_flight: VecDeque::with_capacity(config.pipeline + 1),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(2 * index);
        let mut arrivals_rng = ChaCha8Rng::seed_from_u64(config.seed);
        arrivals_rng.set_stream(2 * index + 1);
        let values = ValuePool::new(config.value_size, &mut rng);
        Ok(Worker {
            addr,
            pipeline: config.pipeline,
            timeout: config.timeout,
            poll,
            events: Events::with_capacity(1024),
            conns,
            generator: Generator {
                rng,
                arrivals_rng,
                mix: config.mix,
                chooser: config.chooser.clone(),
                key_size: config.key_size,
                values,
                scan_length_max: config.scan_length_max,
                key_buf: Vec::new(),
                load_next: 0,
            },
        })
    }

    /// Runs one phase to its end: stops issuing at `phase.stop`, then waits
    /// for every operation in flight.
    pub fn run(&mut self, phase: &Phase, shared: &Shared) -> Result<Stats, LoadError> {
        let start = Instant::now();
        let mut loop_state = LoopState {
            start,
            phase: *phase,
            issued: 0,
            stopped: false,
            backlog: VecDeque::new(),
            next_arrival_ns: 0.0,
            round_robin: 0,
            last_progress: start,
            stats: Stats::new(),
        };
        if let Keys::Load { start, .. } = phase.keys {
            self.generator.load_next = start;
        }
        if let Pace::Open { rate_per_s } = phase.pace {
            loop_state.next_arrival_ns = self.generator.interarrival_ns(rate_per_s);
        }
        loop {
            if shared.abort.load(Ordering::Relaxed) {
                return Err(LoadError::Aborted);
            }
            let now_ns = elapsed_ns(start);
            loop_state.update_stop(now_ns);
            self.arrive(&mut loop_state, now_ns)?;
            self.dispatch(&mut loop_state, now_ns, shared)?;
            self.flush_all()?;
            let in_flight: usize = self.conns.iter().map(|c| c.in_flight.len()).sum();
            if loop_state.stopped && loop_state.backlog.is_empty() && in_flight == 0 {
                break;
            }
            let timeout = loop_state.poll_timeout(elapsed_ns(start));
            self.poll
                .poll(&mut self.events, Some(timeout))
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::Interrupted {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(io_error(self.addr, "polling"))?;
            let completed = self.handle_events(&mut loop_state, shared)?;
            let now = Instant::now();
            if completed > 0 || in_flight == 0 {
                loop_state.last_progress = now;
            } else if now.duration_since(loop_state.last_progress) > self.timeout {
                return Err(LoadError::Stalled {
                    addr: self.addr,
                    seconds: self.timeout.as_secs_f64(),
                });
            }
        }
        loop_state.stats.elapsed = start.elapsed();
        Ok(loop_state.stats)
    }

    /// Open loop: turns arrivals due by `now_ns` into backlog entries.
    fn arrive(&mut self, state: &mut LoopState, now_ns: u64) -> Result<(), LoadError> {
        let Pace::Open { rate_per_s } = state.phase.pace else {
            return Ok(());
        };
        let deadline_ns = match state.phase.stop {
            Stop::After(duration) => duration.as_nanos() as f64,
            Stop::Ops(_) => f64::INFINITY,
        };
        // Arrivals stop at the first one past the deadline, however late
        // this loop runs, so the count depends only on the seed and rate.
        while !state.stopped && state.next_arrival_ns <= now_ns as f64 {
            if state.next_arrival_ns >= deadline_ns {
                state.stopped = true;
                break;
            }
            state.backlog.push_back(state.next_arrival_ns as u64);
            state.next_arrival_ns += self.generator.interarrival_ns(rate_per_s);
            state.issued += 1;
            state.update_stop(now_ns);
        }
        if now_ns as f64 >= deadline_ns {
            state.stopped = true;
        }
        if state.backlog.len() > BACKLOG_MAX {
            return Err(LoadError::Overloaded {
                backlog: state.backlog.len(),
            });
        }
        Ok(())
    }

    /// Fills free pipeline slots: closed loop with new operations, open loop
    /// from the backlog.
    fn dispatch(
        &mut self,
        state: &mut LoopState,
        now_ns: u64,
        shared: &Shared,
    ) -> Result<(), LoadError> {
        let pipeline = self.pipeline;
        let addr = self.addr;
        match state.phase.pace {
            Pace::Closed => {
                for conn in &mut self.conns {
                    while conn.in_flight.len() < pipeline && !state.stopped {
                        self.generator
                            .issue(conn, state.phase.keys, now_ns, shared)
                            .map_err(|reason| LoadError::Protocol { addr, reason })?;
                        state.issued += 1;
                        state.update_stop(now_ns);
                    }
                }
            }
            Pace::Open { .. } => {
                let count = self.conns.len();
                while let Some(&intended_ns) = state.backlog.front() {
                    let free = (0..count)
                        .map(|k| (state.round_robin + k) % count)
                        .find(|i| self.conns[*i].in_flight.len() < pipeline);
                    let Some(index) = free else { break };
                    self.generator
                        .issue(
                            &mut self.conns[index],
                            state.phase.keys,
                            intended_ns,
                            shared,
                        )
                        .map_err(|reason| LoadError::Protocol { addr, reason })?;
                    state.backlog.pop_front();
                    state.round_robin = index + 1;
                }
            }
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), LoadError> {
        for conn in &mut self.conns {
            conn.flush(self.addr)?;
        }
        Ok(())
    }

    /// Reads replies on every ready connection; returns how many operations
    /// completed.
    fn handle_events(&mut self, state: &mut LoopState, shared: &Shared) -> Result<u64, LoadError> {
        let mut completed = 0;
        for event in self.events.iter() {
            let Some(conn) = self.conns.get_mut(event.token().0) else {
                continue;
            };
            if event.is_writable() {
                conn.flush(self.addr)?;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                completed += conn.receive(self.addr, &mut self.generator, state, shared)?;
            }
        }
        if completed > 0 {
            shared.ops.fetch_add(completed, Ordering::Relaxed);
        }
        Ok(completed)
    }
}

struct LoopState {
    start: Instant,
    phase: Phase,
    issued: u64,
    stopped: bool,
    backlog: VecDeque<u64>,
    next_arrival_ns: f64,
    round_robin: usize,
    last_progress: Instant,
    stats: Stats,
}

impl LoopState {
    fn update_stop(&mut self, now_ns: u64) {
        if self.stopped {
            return;
        }
        self.stopped = match (self.phase.stop, self.phase.pace) {
            (Stop::After(duration), Pace::Closed) => u128::from(now_ns) >= duration.as_nanos(),
            // Open loop: `arrive` stops at the first arrival past the end.
            (Stop::After(_), Pace::Open { .. }) => false,
            (Stop::Ops(count), _) => self.issued >= count,
        };
    }

    fn poll_timeout(&self, now_ns: u64) -> Duration {
        let mut timeout = POLL_SLEEP_MAX;
        if self.stopped {
            return timeout;
        }
        if let Stop::After(duration) = self.phase.stop {
            timeout = timeout.min(duration.saturating_sub(Duration::from_nanos(now_ns)));
        }
        if let Pace::Open { .. } = self.phase.pace {
            let wait = Duration::from_nanos((self.next_arrival_ns - now_ns as f64).max(0.0) as u64);
            timeout = timeout.min(wait);
        }
        // epoll rounds a sub-millisecond timeout up to 1 ms: round down to
        // whole milliseconds, and poll without sleeping under one.
        Duration::from_millis(timeout.as_millis() as u64)
    }
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Conn {
    fn flush(&mut self, addr: SocketAddr) -> Result<(), LoadError> {
        while self.write_start < self.write_buf.len() {
            match self.stream.write(&self.write_buf[self.write_start..]) {
                Ok(0) => return Err(LoadError::Closed { addr }),
                Ok(written) => self.write_start += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LoadError::Io {
                        addr,
                        context: "writing requests",
                        source,
                    })
                }
            }
        }
        self.write_buf.clear();
        self.write_start = 0;
        Ok(())
    }

    /// Reads until the socket is drained, completing operations as replies
    /// arrive. Returns how many operations completed.
    fn receive(
        &mut self,
        addr: SocketAddr,
        generator: &mut Generator,
        state: &mut LoopState,
        shared: &Shared,
    ) -> Result<u64, LoadError> {
        let mut completed = 0;
        loop {
            if self.read_end == self.read_buf.len() {
                self.make_room();
            }
            match self.stream.read(&mut self.read_buf[self.read_end..]) {
                Ok(0) => return Err(LoadError::Closed { addr }),
                Ok(count) => {
                    self.read_end += count;
                    completed += self.complete_replies(addr, generator, state, shared)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(LoadError::Io {
                        addr,
                        context: "reading replies",
                        source,
                    })
                }
            }
        }
        // A read-modify-write may have queued its put.
        self.flush(addr)?;
        Ok(completed)
    }

    /// Moves unread bytes to the front, or grows the buffer if it is full of
    /// one partial reply.
    fn make_room(&mut self) {
        if self.read_start > 0 {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
        } else {
            let size = self.read_buf.len() * 2;
            self.read_buf.resize(size, 0);
        }
    }

    fn complete_replies(
        &mut self,
        addr: SocketAddr,
        generator: &mut Generator,
        state: &mut LoopState,
        shared: &Shared,
    ) -> Result<u64, LoadError> {
        let now_ns = elapsed_ns(state.start);
        let mut completed = 0;
        while self.read_start < self.read_end {
            let Some(pending) = self.in_flight.front().copied() else {
                return Err(LoadError::Protocol {
                    addr,
                    reason: "a reply arrived with no request in flight".into(),
                });
            };
            let bytes = &self.read_buf[self.read_start..self.read_end];
            let decoded = self
                .codec
                .decode(bytes, pending.sent)
                .map_err(|e| LoadError::Protocol { addr, reason: e.0 })?;
            let Some((len, outcome)) = decoded else {
                break;
            };
            self.read_start += len;
            self.in_flight.pop_front();
            if pending.kind == OpKind::Rmw && !pending.rmw_put {
                match &outcome {
                    Outcome::Error(message) => {
                        // The get failed: the operation ends here, as an error.
                        state.stats.record_error(message);
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        completed += 1;
                        continue;
                    }
                    Outcome::Miss => state.stats.misses += 1,
                    Outcome::Ok => {}
                }
                generator
                    .issue_rmw_put(self, pending)
                    .map_err(|reason| LoadError::Protocol { addr, reason })?;
                continue;
            }
            let latency_ns = now_ns.saturating_sub(pending.start_ns);
            match outcome {
                Outcome::Ok => state.stats.record(pending.kind, latency_ns),
                Outcome::Miss => {
                    state.stats.misses += 1;
                    state.stats.record(pending.kind, latency_ns);
                }
                Outcome::Error(message) => {
                    state.stats.record_error(&message);
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            completed += 1;
        }
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        }
        Ok(completed)
    }
}

impl Generator {
    fn interarrival_ns(&mut self, rate_per_s: f64) -> f64 {
        // Exponential gaps make a Poisson process; 1 - u avoids ln(0).
        let u: f64 = self.arrivals_rng.gen();
        -(1.0 - u).ln() / rate_per_s * 1e9
    }

    /// Queues one new operation on `conn`.
    fn issue(
        &mut self,
        conn: &mut Conn,
        keys: Keys,
        start_ns: u64,
        shared: &Shared,
    ) -> Result<(), String> {
        let (kind, key) = match keys {
            Keys::Load { end, .. } => {
                let key = self.load_next;
                assert!(key < end, "the load phase issued past its key range");
                self.load_next += 1;
                (OpKind::Set, key)
            }
            Keys::Workload => {
                let kind = self.mix.pick(&mut self.rng);
                let key = if kind == OpKind::Insert {
                    shared.live_keys.fetch_add(1, Ordering::Relaxed)
                } else {
                    let live = shared.live_keys.load(Ordering::Relaxed);
                    self.chooser.next(&mut self.rng, live)
                };
                (kind, key)
            }
        };
        write_key(self.key_size, key, &mut self.key_buf);
        let key_bytes = self.key_buf.as_slice();
        let command = match kind {
            OpKind::Get | OpKind::Rmw => Command::Get { key: key_bytes },
            OpKind::Set | OpKind::Insert => Command::Set {
                key: key_bytes,
                value: self.values.value(&mut self.rng),
            },
            OpKind::Scan => Command::Scan {
                start: key_bytes,
                count: self.rng.gen_range(1..=self.scan_length_max),
            },
        };
        let sent = conn
            .codec
            .encode(command, &mut conn.write_buf)
            .map_err(|e| e.0)?;
        conn.in_flight.push_back(Pending {
            sent,
            kind,
            start_ns,
            key,
            rmw_put: false,
        });
        Ok(())
    }

    /// Queues the put of a read-modify-write whose get has returned; it keeps
    /// the operation's start time and pipeline slot.
    fn issue_rmw_put(&mut self, conn: &mut Conn, get: Pending) -> Result<(), String> {
        write_key(self.key_size, get.key, &mut self.key_buf);
        let command = Command::Set {
            key: &self.key_buf,
            value: self.values.value(&mut self.rng),
        };
        let sent = conn
            .codec
            .encode(command, &mut conn.write_buf)
            .map_err(|e| e.0)?;
        conn.in_flight.push_back(Pending {
            sent,
            rmw_put: true,
            ..get
        });
        Ok(())
    }
}
