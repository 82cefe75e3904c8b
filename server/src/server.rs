//! jubed's life: open the data directory, start one runtime core per configured core, open each
//! core's shards there, listen on every core (SO_REUSEPORT), and on the first SIGTERM or SIGINT stop
//! accepting, let connections finish their in-flight requests, close every shard (a final
//! checkpoint) and return. A second signal exits at once.
//!
//! The main thread only orchestrates: it sends jobs to the cores (`Runtime::spawn_on`) and waits on
//! one channel for their reports and for signals (delivered by signal-hook's own thread and
//! self-pipe, so no signal handler code lives here).
//!
//! Invariants:
//! - every core has joined the mesh and opened its shards before any core accepts a connection,
//!   so no call is ever sent to a core that is not ready;
//! - every in-doubt transaction recovery found is resolved to its coordinator's decision, and
//!   that outcome is durable, before any core accepts a connection (`txn::resolve_in_doubt`);
//! - no shard closes while any connection, on any core, is open (up to `SHUTDOWN_DRAIN_TIMEOUT`):
//!   a connection's calls may target every shard;
//! - a data directory that cannot be opened stops the start with the engine's message; a shard
//!   that fails recovery is kept as a failed shard (its keys answer `ShardFailed` with the reason,
//!   INFO shows it) so that the other shards stay available and the operator can read why.

use crate::call::MeshMessage;
use crate::config::{Config, RESP_LISTEN_OFF};
use crate::connection::{serve, ConnectionGuard};
use crate::constants::{
    LARGE_INPUT_BYTES_PER_CORE_MAX, LARGE_OUTPUT_BYTES_PER_CORE_MAX, READ_BUFFER_SIZE_MAX,
    SHARDS_MAX, SHUTDOWN_DRAIN_TIMEOUT, SHUTDOWN_POLL_INTERVAL,
};
use crate::dispatcher::Dispatcher;
use crate::info::InfoContext;
use crate::large_frame::FrameBudget;
use crate::metrics::{BudgetSide, CoreMetrics};
use crate::resp::{self, RespShared};
use crate::routing::shards_of_core;
use crate::shard_host::{open_layout, open_shard, Layout};
use crate::shard_worker::ShardWorker;
use crate::sync::{race, Either, Event};
use jube_engine::clock::{Clock, SystemClock};
use jube_protocol::constants::{FRAME_PREFIX_SIZE, FRAME_SIZE_MAX};
use jube_protocol::{encode_response, Response, ResponseEncoder, Status};
use jube_runtime::{Mesh, Priority, Runtime, TcpListener, TcpStream};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What every core shares: the configuration and the process-wide counters.
pub struct Shared {
    pub config: Config,
    pub cores: usize,
    pub shard_count: usize,
    pub layout: Layout,
    pub started: Instant,
    pub connections: AtomicUsize,
    pub connections_total: AtomicU64,
    pub connections_rejected: AtomicU64,
    /// What the RESP front end shares across cores (client ids, SCAN cursors).
    pub resp: RespShared,
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Native,
    Resp,
}

/// One core's server state, reachable from jobs sent to the core through a thread-local.
pub struct CoreContext {
    pub shared: Arc<Shared>,
    pub dispatcher: Rc<Dispatcher>,
    pub info: InfoContext,
    pub shutdown: Rc<Event>,
    /// This core's budget of bytes for large requests being received.
    pub large_input: Rc<FrameBudget>,
    /// This core's budget of bytes for large replies being sent.
    pub large_output: Rc<FrameBudget>,
    /// Encodes the small native responses of every connection of this core, one at a time
    /// (its builder grows to at most `LARGE_FRAME_SIZE_MIN` and stays that size).
    pub encoder: RefCell<ResponseEncoder>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<CoreContext>>> = const { RefCell::new(None) };
}

fn context() -> Rc<CoreContext> {
    CONTEXT
        .with(|context| context.borrow().clone())
        .expect("the core was started before this job")
}

/// What the main thread hears about.
enum Report {
    Started {
        core: usize,
    },
    Listening {
        core: usize,
        result: Result<SocketAddr, String>,
    },
    Closed {
        core: usize,
        clean: bool,
    },
    Signal(i32),
    /// Start-up resolution of in-doubt transactions finished.
    Resolved(crate::txn::Resolution),
}

/// Why jubed could not run.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs the server until a signal stops it. Ok(true) after a clean shutdown (every shard closed),
/// Ok(false) if a shard failed to close. Prints `listening on ADDR` on stdout once every core
/// listens.
pub fn run(config: Config, cores: usize) -> Result<bool, StartError> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|error| {
        StartError(format!(
            "cannot create the data directory {}: {error}",
            data_dir.display()
        ))
    })?;
    let clock: Rc<dyn Clock> = Rc::new(SystemClock::new());
    let layout = open_layout(&data_dir, cores, &config, clock)
        .map_err(|error| StartError(format!("cannot open {}: {error}", data_dir.display())))?;
    let shard_count = layout.shard_count;
    if shard_count == 0 || shard_count > SHARDS_MAX {
        return Err(StartError(format!(
            "the data directory has {shard_count} shards; 1..={SHARDS_MAX} are supported"
        )));
    }
    tracing::info!(data_dir = %data_dir.display(), shard_count, cores, "data directory open");
    let shared = Arc::new(Shared {
        config,
        cores,
        shard_count,
        layout,
        started: Instant::now(),
        connections: AtomicUsize::new(0),
        connections_total: AtomicU64::new(0),
        connections_rejected: AtomicU64::new(0),
        resp: RespShared::default(),
    });
    let (reports, inbox) = mpsc::channel();
    listen_for_signals(reports.clone())?;
    let runtime = Runtime::builder()
        .cores(cores)
        .build()
        .map_err(|error| StartError(format!("cannot start the runtime: {error}")))?;
    start_cores(&runtime, &shared, &reports, &inbox)?;
    resolve_transactions(&runtime, &reports, &inbox)?;
    let addr = start_listeners(&runtime, &shared, Protocol::Native, &reports, &inbox)?;
    if shared.config.server.resp_listen != RESP_LISTEN_OFF {
        let resp_addr = start_listeners(&runtime, &shared, Protocol::Resp, &reports, &inbox)?;
        shared.resp.set_port(resp_addr.port());
        // Printed before the native line: tests read the native line as "started".
        println!("resp listening on {resp_addr}");
        tracing::info!(%resp_addr, "RESP listening");
    }
    println!("listening on {addr}");
    tracing::info!(%addr, "listening");
    let clean = wait_for_shutdown(&runtime, cores, &reports, &inbox)?;
    if let Err(error) = runtime.shutdown() {
        tracing::error!(%error, "runtime shutdown");
        return Ok(false);
    }
    tracing::info!(clean, "stopped");
    Ok(clean)
}

fn listen_for_signals(reports: mpsc::Sender<Report>) -> Result<(), StartError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|error| StartError(format!("cannot install signal handlers: {error}")))?;
    std::thread::Builder::new()
        .name("jube-signals".to_string())
        .spawn(move || {
            for signal in signals.forever() {
                if reports.send(Report::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(|error| StartError(format!("cannot start the signal thread: {error}")))?;
    Ok(())
}

/// Waits for the next report, treating any signal during start-up as "stop now".
fn next_report(inbox: &mpsc::Receiver<Report>) -> Result<Report, StartError> {
    match inbox.recv() {
        Ok(Report::Signal(signal)) => Err(StartError(format!("signal {signal} during start-up"))),
        Ok(report) => Ok(report),
        Err(_) => Err(StartError("every core stopped during start-up".to_string())),
    }
}

fn start_cores(
    runtime: &Runtime,
    shared: &Arc<Shared>,
    reports: &mpsc::Sender<Report>,
    inbox: &mpsc::Receiver<Report>,
) -> Result<(), StartError> {
    let mesh: Mesh<MeshMessage> = runtime.mesh();
    for core in 0..shared.cores {
        let (shared, mesh, reports) = (shared.clone(), mesh.clone(), reports.clone());
        runtime
            .spawn_on(core, move || start_core(core, shared, mesh, reports))
            .map_err(|error| StartError(format!("cannot start core {core}: {error}")))?;
    }
    for _ in 0..shared.cores {
        match next_report(inbox)? {
            Report::Started { core } => tracing::debug!(core, "core ready"),
            _ => return Err(StartError("unexpected report during start-up".to_string())),
        }
    }
    Ok(())
}

async fn start_core(
    core: usize,
    shared: Arc<Shared>,
    mesh: Mesh<MeshMessage>,
    reports: mpsc::Sender<Report>,
) {
    let clock: Rc<dyn Clock> = Rc::new(SystemClock::new());
    let workers: Vec<Rc<ShardWorker>> = shards_of_core(core, shared.cores, shared.shard_count)
        .into_iter()
        .map(|shard| Rc::new(open_worker(&shared, shard, clock.clone())))
        .collect();
    let dispatcher = Rc::new(Dispatcher::new(
        mesh.join(),
        workers,
        Rc::new(CoreMetrics::default()),
    ));
    let spawned = jube_runtime::try_spawn(Priority::Foreground, dispatcher.clone().run_receiver())
        .and_then(|_| {
            jube_runtime::try_spawn(Priority::Foreground, dispatcher.clone().run_flusher())
        })
        .and_then(|_| {
            jube_runtime::try_spawn(Priority::Foreground, dispatcher.clone().run_committer())
        });
    if let Err(error) = spawned {
        // Only when the runtime is stopping (a signal during start-up): nobody waits for this core.
        tracing::warn!(core, %error, "core not started");
        return;
    }
    let large_input = FrameBudget::new(
        LARGE_INPUT_BYTES_PER_CORE_MAX,
        READ_BUFFER_SIZE_MAX,
        dispatcher.metrics.clone(),
        BudgetSide::Input,
    );
    let large_output = FrameBudget::new(
        LARGE_OUTPUT_BYTES_PER_CORE_MAX,
        FRAME_PREFIX_SIZE + FRAME_SIZE_MAX,
        dispatcher.metrics.clone(),
        BudgetSide::Output,
    );
    let context = Rc::new(CoreContext {
        shared: shared.clone(),
        dispatcher,
        info: InfoContext { shared },
        shutdown: Event::new(),
        large_input,
        large_output,
        encoder: RefCell::new(ResponseEncoder::default()),
    });
    CONTEXT.with(|slot| *slot.borrow_mut() = Some(context));
    let _ = reports.send(Report::Started { core });
}

/// Resolves in-doubt transactions (from core 0, over the mesh) before any core listens: no client
/// may see a key a crashed transaction left locked in doubt.
fn resolve_transactions(
    runtime: &Runtime,
    reports: &mpsc::Sender<Report>,
    inbox: &mpsc::Receiver<Report>,
) -> Result<(), StartError> {
    let reports = reports.clone();
    runtime
        .spawn_on(0, move || async move {
            let context = context();
            let resolution =
                crate::txn::resolve_in_doubt(&context.dispatcher, context.shared.shard_count).await;
            let _ = reports.send(Report::Resolved(resolution));
        })
        .map_err(|error| StartError(format!("cannot resolve transactions: {error}")))?;
    match next_report(inbox)? {
        Report::Resolved(resolution) => {
            tracing::info!(
                committed = resolution.committed,
                aborted = resolution.aborted,
                unresolved = resolution.unresolved,
                decisions_forgotten = resolution.decisions_forgotten,
                "in-doubt transactions resolved"
            );
            Ok(())
        }
        _ => Err(StartError(
            "unexpected report while resolving transactions".to_string(),
        )),
    }
}

fn open_worker(shared: &Shared, shard: usize, clock: Rc<dyn Clock>) -> ShardWorker {
    let shard_id = u32::try_from(shard).expect("SHARDS_MAX fits in u32");
    let started = Instant::now();
    tracing::info!(shard, "opening shard: recovery starts");
    match open_shard(
        &shared.config.server.data_dir,
        shard_id,
        shared.layout,
        &shared.config,
        clock.clone(),
    ) {
        Ok((engine, recovery)) => {
            let steps: Vec<String> = recovery
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let duration_ms = started.elapsed().as_millis() as u64;
            tracing::info!(shard, duration_ms, recovery = %steps.join(" "), "shard open");
            ShardWorker::open(shard, engine, clock)
        }
        Err(error) => {
            tracing::error!(shard, %error, "shard failed to open: its keys answer ShardFailed");
            ShardWorker::failed(shard, error, clock)
        }
    }
}

/// Binds core 0 first (which resolves port 0), then every other core to the same address.
fn start_listeners(
    runtime: &Runtime,
    shared: &Arc<Shared>,
    protocol: Protocol,
    reports: &mpsc::Sender<Report>,
    inbox: &mpsc::Receiver<Report>,
) -> Result<SocketAddr, StartError> {
    let (setting, listen) = match protocol {
        Protocol::Native => ("server.listen", &shared.config.server.listen),
        Protocol::Resp => ("server.resp_listen", &shared.config.server.resp_listen),
    };
    let mut addr: SocketAddr = listen.parse().map_err(|error| {
        StartError(format!(
            "{setting} {listen:?} is not an IP address and port: {error}"
        ))
    })?;
    for core in 0..shared.cores {
        let reports = reports.clone();
        runtime
            .spawn_on(core, move || listen_on(core, addr, protocol, reports))
            .map_err(|error| {
                StartError(format!("cannot start listening on core {core}: {error}"))
            })?;
        match next_report(inbox)? {
            Report::Listening {
                result: Ok(bound), ..
            } => addr = bound,
            Report::Listening {
                core,
                result: Err(error),
            } => {
                return Err(StartError(format!(
                    "core {core} cannot listen on {addr}: {error}"
                )))
            }
            _ => return Err(StartError("unexpected report during start-up".to_string())),
        }
    }
    Ok(addr)
}

async fn listen_on(
    core: usize,
    addr: SocketAddr,
    protocol: Protocol,
    reports: mpsc::Sender<Report>,
) {
    let listener = TcpListener::bind(addr)
        .and_then(|listener| listener.local_addr().map(|bound| (listener, bound)));
    let (listener, bound) = match listener {
        Ok(pair) => pair,
        Err(error) => {
            let _ = reports.send(Report::Listening {
                core,
                result: Err(error.to_string()),
            });
            return;
        }
    };
    let _ = reports.send(Report::Listening {
        core,
        result: Ok(bound),
    });
    accept_loop(listener, protocol, context()).await;
    tracing::info!(core, ?protocol, "listener closed");
}

async fn accept_loop(mut listener: TcpListener, protocol: Protocol, context: Rc<CoreContext>) {
    loop {
        let stream = match race(context.shutdown.wait(), listener.accept()).await {
            Either::Left(()) => return,
            Either::Right(Ok(stream)) => stream,
            Either::Right(Err(error)) => {
                // Out of descriptors or memory: back off rather than spin on the error.
                tracing::warn!(%error, "accept failed");
                jube_runtime::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let connections_max = context.shared.config.server.connections_max;
        let spawned = match (ConnectionGuard::admit(&context.shared), protocol) {
            (Some(guard), Protocol::Native) => {
                jube_runtime::try_spawn(Priority::Foreground, serve(stream, context.clone(), guard))
                    .map(drop)
            }
            (Some(guard), Protocol::Resp) => jube_runtime::try_spawn(
                Priority::Foreground,
                resp::serve(stream, context.clone(), guard),
            )
            .map(drop),
            (None, Protocol::Native) => {
                jube_runtime::try_spawn(Priority::Foreground, reject(stream, connections_max))
                    .map(drop)
            }
            (None, Protocol::Resp) => {
                jube_runtime::try_spawn(Priority::Foreground, resp::reject(stream, connections_max))
                    .map(drop)
            }
        };
        if let Err(error) = spawned {
            tracing::warn!(%error, "connection dropped: no task for it");
        }
    }
}

/// Tells a client over `connections_max` why it is refused, then closes.
async fn reject(stream: TcpStream, connections_max: usize) {
    let response = Response::error(
        0,
        Status::Busy,
        format!("too many connections: the server allows {connections_max}"),
    );
    if let Ok(frame) = encode_response(&response) {
        let _ = stream.send_all(frame).await;
    }
}

/// Waits for the first signal, then drives the graceful shutdown; a second signal exits at once.
fn wait_for_shutdown(
    runtime: &Runtime,
    cores: usize,
    reports: &mpsc::Sender<Report>,
    inbox: &mpsc::Receiver<Report>,
) -> Result<bool, StartError> {
    let mut stopping = false;
    let mut closed = 0;
    let mut clean = true;
    while closed < cores {
        let report = inbox
            .recv()
            .map_err(|_| StartError("the report channel closed".to_string()))?;
        match report {
            Report::Signal(signal) if stopping => {
                tracing::warn!(
                    signal,
                    "second signal: exiting at once (the next start replays the WAL)"
                );
                std::process::exit(1);
            }
            Report::Signal(signal) => {
                stopping = true;
                tracing::info!(
                    signal,
                    "shutdown: no new connections; finishing in-flight requests"
                );
                for core in 0..cores {
                    let reports = reports.clone();
                    if let Err(error) = runtime.spawn_on(core, move || stop_core(core, reports)) {
                        tracing::error!(core, %error, "cannot stop core");
                        closed += 1;
                        clean = false;
                    }
                }
            }
            Report::Closed {
                core,
                clean: core_clean,
            } => {
                tracing::debug!(core, core_clean, "core stopped");
                closed += 1;
                clean &= core_clean;
            }
            Report::Started { .. } | Report::Listening { .. } | Report::Resolved(_) => {}
        }
    }
    Ok(clean)
}

async fn stop_core(core: usize, reports: mpsc::Sender<Report>) {
    let context = context();
    context.shutdown.set();
    let deadline = Instant::now() + SHUTDOWN_DRAIN_TIMEOUT;
    while context.shared.connections.load(Ordering::Acquire) > 0 || !context.dispatcher.idle() {
        if Instant::now() >= deadline {
            tracing::warn!(
                core,
                "connections still open after the drain timeout: closing shards anyway"
            );
            break;
        }
        jube_runtime::sleep(SHUTDOWN_POLL_INTERVAL).await;
    }
    let clean = context.dispatcher.close_shards();
    let _ = reports.send(Report::Closed { core, clean });
}
