//! Starting and stopping the cores: one pinned thread per core, each owning its ring and executor.
//!
//! Invariants: `Runtime::new` returns only when every core's ring exists (so every core's MSG_RING
//! target descriptor is known before any message is sent) or returns the first failure, with every
//! started core stopped again; dropping the runtime stops and joins every core.

use crate::constants::{
    CORES_MAX, FIXED_FILES_MAX, IDLE_SPIN, RECV_BUFFER_COUNT, RECV_BUFFER_SIZE,
};
use crate::error::RuntimeError;
use crate::executor::{self, Core, CoreShared, Job, SpawnError};
use crate::mesh::Mesh;
use crate::reactor::{Reactor, ReactorOptions};
use crate::sys::fd::duplicate;
use crate::sys::ring::{Ring, RingFeatures, RingOptions};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    cores: usize,
    pin: bool,
    reactor: ReactorOptions,
    idle_spin: std::time::Duration,
}

impl Builder {
    /// The number of cores (threads, rings, shards) to run; default 1.
    pub fn cores(mut self, cores: usize) -> Builder {
        self.cores = cores;
        self
    }

    /// Pin core `i` to CPU `i % cpus` (default true). Tests on a shared machine may turn it off.
    pub fn pin(mut self, pin: bool) -> Builder {
        self.pin = pin;
        self
    }

    /// Use IORING_OP_MSG_RING for cross-core wakeups when the kernel has it (default true);
    /// false forces the eventfd path.
    pub fn msg_ring(mut self, enabled: bool) -> Builder {
        self.reactor.msg_ring = enabled;
        self
    }

    /// Try SINGLE_ISSUER / DEFER_TASKRUN / COOP_TASKRUN (default true); false forces a plain ring.
    pub fn taskrun_flags(mut self, enabled: bool) -> Builder {
        self.reactor.taskrun_flags = enabled;
        self
    }

    /// Operations in flight per core (default [`crate::constants::OPS_IN_FLIGHT_MAX`]); tests lower
    /// it to reach `QueueFull`.
    pub fn ops_in_flight_max(mut self, slots: usize) -> Builder {
        self.reactor.slots = slots;
        self
    }

    /// Receive with multishot recv and provided buffers where the kernel has them (default true);
    /// false forces one recv submission per read, the fallback path.
    pub fn multishot_recv(mut self, enabled: bool) -> Builder {
        self.reactor.recv_buffers = if enabled {
            (RECV_BUFFER_COUNT, RECV_BUFFER_SIZE)
        } else {
            (0, 0)
        };
        self
    }

    /// The provided receive buffers of each core (default [`RECV_BUFFER_COUNT`] of
    /// [`RECV_BUFFER_SIZE`] bytes); tests shrink them to exhaust the ring. `count` must be a power
    /// of two (the kernel's rule).
    pub fn recv_buffers(mut self, count: u16, size: usize) -> Builder {
        self.reactor.recv_buffers = (count, size);
        self
    }

    /// Register a fixed-file table per core (default true); false makes files use plain
    /// descriptors.
    pub fn fixed_files(mut self, enabled: bool) -> Builder {
        self.reactor.fixed_files = if enabled { FIXED_FILES_MAX } else { 0 };
        self
    }

    /// How long an idle core polls before sleeping in the ring (default
    /// [`crate::constants::IDLE_SPIN`]; zero sleeps at once). Benchmarks compare the two.
    pub fn idle_spin(mut self, spin: std::time::Duration) -> Builder {
        self.idle_spin = spin;
        self
    }

    /// Starts the cores.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        Runtime::start(self)
    }
}

/// A set of cores, each a pinned thread running one executor on one io_uring.
pub struct Runtime {
    shared: Arc<[Arc<CoreShared>]>,
    threads: Vec<Option<thread::JoinHandle<()>>>,
    features: RingFeatures,
}

impl Runtime {
    pub fn builder() -> Builder {
        Builder {
            cores: 1,
            pin: true,
            reactor: ReactorOptions::default(),
            idle_spin: IDLE_SPIN,
        }
    }

    /// Starts `cores` cores with default settings.
    pub fn new(cores: usize) -> Result<Runtime, RuntimeError> {
        Runtime::builder().cores(cores).build()
    }

    fn start(config: Builder) -> Result<Runtime, RuntimeError> {
        if config.cores == 0 || config.cores > CORES_MAX {
            return Err(RuntimeError::InvalidConfig(format!(
                "cores must be in 1..={CORES_MAX}, got {}",
                config.cores
            )));
        }
        check_io_uring()?;
        let mut shared = Vec::with_capacity(config.cores);
        for core in 0..config.cores {
            let core_shared = CoreShared::new(core).map_err(|err| RuntimeError::CoreStart {
                core,
                detail: format!("eventfd: {err}"),
            })?;
            shared.push(Arc::new(core_shared));
        }
        let shared: Arc<[Arc<CoreShared>]> = shared.into();
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let mut runtime = Runtime {
            shared: shared.clone(),
            threads: Vec::new(),
            features: placeholder_features(),
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(config.cores);
        for core in 0..config.cores {
            let cpu = if config.pin && !cpus.is_empty() {
                Some(cpus[core % cpus.len()])
            } else {
                None
            };
            let all = shared.clone();
            let ready = ready_tx.clone();
            let options = config.reactor;
            let idle_spin = config.idle_spin;
            let spawned = thread::Builder::new()
                .name(format!("jube-core-{core}"))
                .spawn(move || core_main(core, cpu, all, options, idle_spin, ready));
            match spawned {
                Ok(handle) => runtime.threads.push(Some(handle)),
                Err(err) => {
                    return Err(RuntimeError::CoreStart {
                        core,
                        detail: format!("thread: {err}"),
                    })
                }
            }
        }
        drop(ready_tx);
        for _ in 0..config.cores {
            match ready_rx.recv() {
                Ok(Ok(features)) => runtime.features = features,
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    return Err(RuntimeError::CoreStart {
                        core: 0,
                        detail: "a core exited during start".into(),
                    })
                }
            }
        }
        tracing::info!(
            cores = config.cores,
            setup = runtime.features.setup_flags,
            msg_ring = runtime.features.msg_ring,
            recv_buffers = runtime.features.recv_buffers,
            fixed_files = runtime.features.fixed_files,
            "runtime started"
        );
        Ok(runtime)
    }

    /// The number of cores.
    pub fn cores(&self) -> usize {
        self.shared.len()
    }

    /// What the kernel granted the rings (setup flags, MSG_RING).
    pub fn features(&self) -> RingFeatures {
        self.features
    }

    /// Runs `make` on core `core` and spawns the future it returns there as a foreground task. The
    /// closure crosses threads; the future it makes need not be `Send`.
    pub fn spawn_on<F, Fut>(&self, core: usize, make: F) -> Result<(), SpawnError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.inject(
            core,
            Box::new(move || {
                if let Err(err) = executor::try_spawn(executor::Priority::Foreground, make()) {
                    tracing::error!(%err, "spawn_on: task dropped");
                }
            }),
        )
    }

    /// Runs the future `make` returns on core `core` and blocks the calling thread until it is
    /// done. For setup, tests and tools; never call it from a core.
    pub fn block_on<F, Fut, T>(&self, core: usize, make: F) -> Result<T, SpawnError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        assert!(
            executor::current_core().is_none(),
            "Runtime::block_on called from a core would deadlock it"
        );
        let (tx, rx) = mpsc::sync_channel(1);
        self.spawn_on(core, move || async move {
            let _ = tx.send(make().await);
        })?;
        rx.recv().map_err(|_| SpawnError::Stopped { core })
    }

    fn inject(&self, core: usize, job: Job) -> Result<(), SpawnError> {
        let Some(shared) = self.shared.get(core) else {
            return Err(SpawnError::NoSuchCore {
                core,
                cores: self.shared.len(),
            });
        };
        if shared.stopping.load(Ordering::Acquire) {
            return Err(SpawnError::Stopped { core });
        }
        shared
            .inject
            .push(job)
            .map_err(|_| SpawnError::InjectQueueFull { core })?;
        shared.sleeping.store(false, Ordering::SeqCst);
        shared.wake_by_eventfd();
        Ok(())
    }

    /// A new mesh of bounded queues between every pair of cores, carrying messages of type `M`.
    /// Each core takes its endpoint with [`Mesh::join`].
    pub fn mesh<M: Send + 'static>(&self) -> Mesh<M> {
        Mesh::new(self.shared.clone())
    }

    /// Cross-core wakeups each core has been sent so far (for benchmarks and tests of batching).
    pub fn wakeups_sent(&self, core: usize) -> u64 {
        self.shared[core].wakeups_sent.load(Ordering::Relaxed)
    }

    /// Stops every core: cancels its tasks, drains its in-flight I/O, joins its thread.
    pub fn shutdown(mut self) -> Result<(), RuntimeError> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(), RuntimeError> {
        for shared in self.shared.iter() {
            shared.stopping.store(true, Ordering::Release);
            shared.wake_by_eventfd();
        }
        let mut result = Ok(());
        for (core, thread) in self.threads.iter_mut().enumerate() {
            if let Some(handle) = thread.take() {
                if handle.join().is_err() && result.is_ok() {
                    result = Err(RuntimeError::CorePanicked { core });
                }
            }
        }
        result
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(err) = self.stop_all() {
            tracing::error!(%err, "runtime shutdown");
        }
    }
}

fn placeholder_features() -> RingFeatures {
    RingFeatures {
        setup_flags: "none",
        msg_ring: false,
        recv_buffers: false,
        fixed_files: false,
    }
}

/// Creates and drops a tiny ring: the clearest place to report that io_uring is unavailable.
fn check_io_uring() -> Result<(), RuntimeError> {
    let options = RingOptions {
        sq_entries: 4,
        cq_entries: 8,
        taskrun_flags: false,
        msg_ring: false,
        recv_buffers: (0, 0),
        fixed_files: 0,
    };
    Ring::new(1, options)
        .map(drop)
        .map_err(|err| RuntimeError::from_setup_error(&err))
}

type Ready = mpsc::SyncSender<Result<RingFeatures, RuntimeError>>;

fn core_main(
    core: usize,
    cpu: Option<core_affinity::CoreId>,
    all: Arc<[Arc<CoreShared>]>,
    options: ReactorOptions,
    idle_spin: std::time::Duration,
    ready: Ready,
) {
    if let Some(cpu) = cpu {
        if !core_affinity::set_for_current(cpu) {
            tracing::warn!(core, cpu = cpu.id, "could not pin core thread");
        }
    }
    let reactor = match Reactor::new(options) {
        Ok(reactor) => Rc::new(reactor),
        Err(err) => {
            let _ = ready.send(Err(RuntimeError::CoreStart {
                core,
                detail: format!("io_uring setup: {err}"),
            }));
            return;
        }
    };
    let features = reactor.features();
    let ring_fd = if features.msg_ring {
        duplicate(reactor.ring_fd()).ok()
    } else {
        None
    };
    let shared = all[core].clone();
    let _ = shared.ring_fd.set(ring_fd);
    let _ = ready.send(Ok(features));
    let core_state = Rc::new(Core::new(shared, all, reactor, idle_spin));
    executor::enter(core_state, |core| core.run());
}
