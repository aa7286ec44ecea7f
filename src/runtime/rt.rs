//! [`Runtime`] and [`Handle`]: starting the pinned app workers, the worker loop (drain rings,
//! run tasks, fire timers, flush, spin, park), placing tasks and actors on chosen workers, and
//! graceful shutdown. Owns the worker threads; the executor, mesh and actor modules own the rest.
//!
//! ```
//! use percore::runtime::Runtime;
//!
//! let rt = Runtime::testing(2).unwrap();
//! let h = rt.spawn_on(1, || async { percore::runtime::current_worker() }).unwrap();
//! assert_eq!(rt.block_on(h).unwrap(), Some(1));
//! let report = rt.shutdown();
//! assert!(report.clean);
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use super::actor::{Actor, Addr};
use super::config::Config;
use super::envelope::Envelope;
use super::error::RuntimeError;
use super::executor::{self};
use super::handle::Handle;
use super::io::event_loop;
use super::io::select::resolve_backend;
use super::io::worker::{self as io_worker, IoWorkerHandle};
use super::io::{BackendKind, EventLoopStats};
use super::mesh::{self, MeshShared};
use super::metrics::MetricsSnapshot;
use super::partition::Partitioner;
use super::sharded::ShardedAddr;
use super::task::JoinHandle;
use super::worker::{WorkerCfg, worker_main};

pub(super) struct RtInner {
    pub(super) mesh: Arc<MeshShared>,
    pub(super) io_kinds: std::sync::OnceLock<Vec<BackendKind>>,
    pub(super) io_stats: std::sync::OnceLock<Vec<Arc<EventLoopStats>>>,
    pub(super) config: Config,
    pub(super) stop: AtomicBool,
    pub(super) rr: AtomicUsize,
    pub(super) tasks_cancelled: AtomicU64,
    /// The root of the supervision tree, made at first use.
    pub(super) root: std::sync::OnceLock<Arc<super::supervision::SupCore>>,
    /// The user's metrics, rendered on `/metrics` after the runtime's own.
    pub(super) user_metrics: super::user_metrics::MetricsRegistry,
}

/// A running percore runtime: `config.app_workers` pinned worker threads, each with its own
/// executor, joined by SPSC rings.
///
/// Dropping it shuts it down with the configured deadline; call [`Runtime::shutdown`] to get
/// the [`ShutdownReport`](super::ShutdownReport).
pub struct Runtime {
    pub(super) inner: Arc<RtInner>,
    pub(super) threads: Vec<(usize, ThreadHandle<()>)>,
    pub(super) io: Vec<IoWorkerHandle>,
    pub(super) done: bool,
}

impl Runtime {
    /// Starts a runtime with `config` (validated first).
    pub fn start(config: Config) -> Result<Runtime, RuntimeError> {
        config.validate()?;
        warn_if_oversubscribed(config.app_workers);
        let external = config.io_workers + config.accel_workers;
        let (mesh, ends) = MeshShared::new(
            config.app_workers,
            external,
            config.ring_capacity,
            config.mailbox_capacity,
        );
        let inner = Arc::new(RtInner {
            mesh: mesh.clone(),
            io_kinds: std::sync::OnceLock::new(),
            io_stats: std::sync::OnceLock::new(),
            config: config.clone(),
            stop: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            tasks_cancelled: AtomicU64::new(0),
            root: std::sync::OnceLock::new(),
            user_metrics: Default::default(),
        });
        let mut threads = Vec::with_capacity(config.app_workers);
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<(usize, Result<Option<BackendKind>, String>)>();
        let colocated_io = if config.io_colocated {
            let (kind, why) = resolve_backend(config.io_backend);
            tracing::info!(backend = %kind, reason = %why, "I/O backend: {kind} ({why}); one event loop on every app worker");
            Some((kind, config.io_backend == super::config::IoBackend::Auto))
        } else {
            None
        };
        let colocated_stats: Vec<Arc<EventLoopStats>> = (0..config.app_workers)
            .map(|_| Arc::new(EventLoopStats::default()))
            .collect();
        for (i, ends) in ends.into_iter().enumerate() {
            let pin = if config.pin_workers {
                config.placement.app.get(i).copied().flatten()
            } else {
                None
            };
            let wcfg = WorkerCfg {
                idx: i,
                io: colocated_io,
                io_stats: colocated_stats[i].clone(),
                pin,
                spin: config.spin_before_park,
                tasks_per_tick: config.tasks_per_tick.max(1),
            };
            let inner2 = inner.clone();
            let tx = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("percore-worker-{i}"))
                .spawn(move || worker_main(inner2, ends, wcfg, tx))
                .map_err(|source| RuntimeError::ThreadSpawn { worker: i, source })?;
            threads.push((i, t));
        }
        drop(ready_tx);
        let mut kinds = vec![None; config.app_workers];
        let mut failed = None;
        for _ in 0..config.app_workers {
            let (i, r) = ready_rx
                .recv()
                .expect("worker threads report ready before anything else can fail");
            match r {
                Ok(k) => kinds[i] = k,
                Err(e) => failed = Some((i, e)),
            }
        }
        let mut rt = Runtime {
            inner,
            threads,
            io: Vec::new(),
            done: false,
        };
        if let Some((index, e)) = failed {
            return Err(RuntimeError::IoWorker {
                index,
                backend: colocated_io.map_or("?".into(), |k| k.0.to_string()),
                source: std::io::Error::other(e),
            });
        }
        if config.io_colocated {
            let _ = rt.inner.io_kinds.set(kinds.into_iter().flatten().collect());
            let _ = rt.inner.io_stats.set(colocated_stats);
        } else {
            rt.start_io_workers()?;
        }
        tracing::info!(
            profile = ?config.profile,
            app_workers = config.app_workers,
            io_loops = if config.io_colocated { config.app_workers } else { config.io_workers },
            io_colocated = config.io_colocated,
            external_nodes = external,
            ring_capacity = config.ring_capacity,
            mailbox_capacity = config.mailbox_capacity,
            "percore runtime started"
        );
        Ok(rt)
    }

    /// Starts the I/O workers (one event loop each) on the backend the config asks for.
    pub(super) fn start_io_workers(&mut self) -> Result<(), RuntimeError> {
        let cfg = &self.inner.config;
        if cfg.io_workers == 0 {
            let _ = self.inner.io_kinds.set(Vec::new());
            let _ = self.inner.io_stats.set(Vec::new());
            return Ok(());
        }
        let (kind, why) = resolve_backend(cfg.io_backend);
        tracing::info!(backend = %kind, reason = %why, io_workers = cfg.io_workers, "I/O backend: {kind} ({why})");
        let may_fall_back = cfg.io_backend == super::config::IoBackend::Auto;
        for i in 0..cfg.io_workers {
            let pin = if cfg.pin_workers {
                cfg.placement.io.get(i).copied().flatten()
            } else {
                None
            };
            let h =
                io_worker::spawn(self.handle(), i, kind, may_fall_back, pin).map_err(|source| {
                    RuntimeError::IoWorker {
                        index: i,
                        backend: kind.to_string(),
                        source,
                    }
                })?;
            self.io.push(h);
        }
        let _ = self
            .inner
            .io_kinds
            .set(self.io.iter().map(|h| h.kind).collect());
        let _ = self
            .inner
            .io_stats
            .set(self.io.iter().map(|h| h.stats.clone()).collect());
        Ok(())
    }

    /// Stops the I/O workers: each closes what its handlers own; then joins them.
    pub(super) fn stop_io_workers(&mut self, end: Instant) -> Vec<usize> {
        if self.inner.config.io_colocated {
            for w in 0..self.inner.config.app_workers {
                mesh::send(
                    &self.inner.mesh,
                    w,
                    Envelope::new(event_loop::shutdown_current),
                );
            }
        }
        for h in &self.io {
            h.stop.store(true, Ordering::SeqCst);
            (h.wake)();
        }
        let mut not_joined = Vec::new();
        for (i, h) in self.io.drain(..).enumerate() {
            while !h.thread.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            if h.thread.is_finished() {
                let _ = h.thread.join();
            } else {
                not_joined.push(self.inner.config.app_workers + i);
            }
        }
        not_joined
    }

    /// Starts with the profile chosen by the environment (`PERCORE_PROFILE`, else Production)
    /// plus file and environment overrides.
    pub fn auto() -> Result<Runtime, RuntimeError> {
        Runtime::start(Config::auto()?)
    }

    /// Runs `fut` to completion on the calling thread and returns its output. The future need
    /// not be `Send`; tasks it spawns with [`spawn_local`](crate::runtime::spawn_local) run on
    /// this thread too, and it reaches the workers through the runtime's injectors.
    ///
    /// # Panics
    /// If called on one of this runtime's worker threads (that would block the worker).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        assert!(
            mesh::current_node(self.inner.mesh.id).is_none(),
            "Runtime::block_on called on a worker of the same runtime; spawn a task instead"
        );
        executor::run_until(fut)
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            inner: self.inner.clone(),
        }
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Number of app workers.
    pub fn workers(&self) -> usize {
        self.inner.config.app_workers
    }

    /// See [`Handle::spawn_on`].
    pub fn spawn_on<F, Fut>(
        &self,
        worker: usize,
        f: F,
    ) -> Result<JoinHandle<Fut::Output>, RuntimeError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        self.handle().spawn_on(worker, f)
    }

    /// See [`Handle::spawn_actor_on`].
    pub fn spawn_actor_on<A, F>(&self, worker: usize, make: F) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        self.handle().spawn_actor_on(worker, make)
    }

    /// See [`Handle::spawn_actor`].
    pub fn spawn_actor<A, F>(&self, make: F) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        self.handle().spawn_actor(make)
    }

    /// See [`Handle::spawn_sharded`].
    pub fn spawn_sharded<A, K, F, P>(
        &self,
        make: F,
        partitioner: P,
    ) -> Result<ShardedAddr<A, K>, RuntimeError>
    where
        A: Actor,
        K: ?Sized + 'static,
        F: Fn(usize) -> A + Send + Sync + 'static,
        P: Partitioner<K>,
    {
        self.handle().spawn_sharded(make, partitioner)
    }

    /// Per-worker counters.
    pub fn metrics(&self) -> Vec<MetricsSnapshot> {
        self.handle().metrics()
    }

    /// Counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        self.handle().prometheus()
    }

    /// A deterministic small runtime for tests and examples: the Testing profile with
    /// `workers` app workers (at least 1).
    pub fn testing(workers: usize) -> Result<Runtime, RuntimeError> {
        super::builder::Builder::new()
            .profile(super::config::Profile::Testing)
            .app_workers(
                std::num::NonZeroUsize::new(workers).unwrap_or(std::num::NonZeroUsize::MIN),
            )
            .build()
    }

    /// The type-state builder: `Runtime::builder().profile(..)...build()`.
    pub fn builder() -> super::builder::Builder<super::builder::NeedsProfile> {
        super::builder::Builder::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.done {
            let d = self.inner.config.shutdown_timeout;
            self.shutdown_inner(d);
        }
    }
}

/// Warns once per process when more app workers are asked for than CPUs are available to the
/// process (its CPU affinity and cgroup quota, as `std::thread::available_parallelism` reads
/// them): workers then share CPUs and every hand-off between them waits for a time slice.
fn warn_if_oversubscribed(workers: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let Ok(cpus) = std::thread::available_parallelism() else {
        return;
    };
    if workers > cpus.get() {
        ONCE.call_once(|| {
            tracing::warn!(
                app_workers = workers,
                cpus = cpus.get(),
                "{workers} app workers on {cpus} CPUs available to this process: workers share CPUs, \
                 and a message between two of them waits for the other's time slice (64 workers \
                 on 2 CPUs ran the demo about 150x slower). Use at most {cpus} (PERCORE_WORKERS)."
            );
        });
    }
}
