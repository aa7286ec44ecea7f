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

use super::actor::{self, Actor, ActorProbe, Addr, Mailbox};
use super::config::Config;
use super::envelope::Envelope;
use super::error::RuntimeError;
use super::executor::{self, Executor, Notifier};
use super::io::worker::{self as io_worker, IoWorkerHandle};
use super::io::{BackendKind, IoCtx, IoWorkerStats};
use super::mesh::{self, ExternalNode, Inbound, MeshShared, NodeEnds, Outbound};
use super::metrics::{MetricsSnapshot, prometheus_text};
use super::partition::Partitioner;
use super::sharded::ShardedAddr;
use super::task::{self, JoinHandle};
use super::time;

struct RtInner {
    mesh: Arc<MeshShared>,
    io_kinds: std::sync::OnceLock<Vec<BackendKind>>,
    io_stats: std::sync::OnceLock<Vec<Arc<IoWorkerStats>>>,
    config: Config,
    stop: AtomicBool,
    rr: AtomicUsize,
    tasks_cancelled: AtomicU64,
}

/// A running percore runtime: `config.app_workers` pinned worker threads, each with its own
/// executor, joined by SPSC rings.
///
/// Dropping it shuts it down with the configured deadline; call [`Runtime::shutdown`] to get
/// the [`ShutdownReport`].
pub struct Runtime {
    inner: Arc<RtInner>,
    threads: Vec<(usize, ThreadHandle<()>)>,
    io: Vec<IoWorkerHandle>,
    done: bool,
}

/// A cheap, cloneable, `Send + Sync` handle to place work on a runtime from any thread.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<RtInner>,
}

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Clone, Default)]
pub struct ShutdownReport {
    /// True when every actor stopped and every thread was joined within the deadline.
    pub clean: bool,
    /// Actors stopped gracefully.
    pub actors_stopped: usize,
    /// Actors still running at the deadline, as "name@workerN".
    pub still_running: Vec<String>,
    /// Tasks cancelled when the workers exited.
    pub tasks_cancelled: u64,
    /// Workers whose threads had not exited by the deadline (left detached).
    pub workers_not_joined: Vec<usize>,
    /// How long shutdown took.
    pub elapsed: Duration,
}

impl Runtime {
    /// Starts a runtime with `config` (validated first).
    pub fn start(config: Config) -> Result<Runtime, RuntimeError> {
        config.validate()?;
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
        });
        let mut threads = Vec::with_capacity(config.app_workers);
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<(usize, Result<Option<BackendKind>, String>)>();
        let colocated_io = if config.io_colocated {
            let (kind, why) = io_worker::resolve_backend(config.io_backend);
            tracing::info!(backend = %kind, reason = %why, "I/O backend: {kind} ({why}); one event loop on every app worker");
            Some((kind, config.io_backend == super::config::IoBackend::Auto))
        } else {
            None
        };
        let colocated_stats: Vec<Arc<IoWorkerStats>> = (0..config.app_workers)
            .map(|_| Arc::new(IoWorkerStats::default()))
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
    fn start_io_workers(&mut self) -> Result<(), RuntimeError> {
        let cfg = &self.inner.config;
        if cfg.io_workers == 0 {
            let _ = self.inner.io_kinds.set(Vec::new());
            let _ = self.inner.io_stats.set(Vec::new());
            return Ok(());
        }
        let (kind, why) = io_worker::resolve_backend(cfg.io_backend);
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
    fn stop_io_workers(&mut self, end: Instant) -> Vec<usize> {
        if self.inner.config.io_colocated {
            for w in 0..self.inner.config.app_workers {
                mesh::send(
                    &self.inner.mesh,
                    w,
                    Envelope::new(io_worker::shutdown_current),
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
        prometheus_text(&self.metrics())
    }

    /// Shuts down with the configured deadline (`shutdown_timeout`).
    pub fn shutdown(mut self) -> ShutdownReport {
        let d = self.inner.config.shutdown_timeout;
        self.shutdown_inner(d)
    }

    /// Shuts down with an explicit deadline.
    ///
    /// Stops intake (no new actors or tasks; new messages to stopping actors fail), then stops
    /// actors in reverse start order, each draining its mailbox first and running
    /// [`Actor::stopping`]; then cancels remaining tasks and joins the worker threads. Whatever
    /// is still running at the deadline is named in the report and left behind.
    pub fn shutdown_with_deadline(mut self, deadline: Duration) -> ShutdownReport {
        self.shutdown_inner(deadline)
    }

    fn shutdown_inner(&mut self, deadline: Duration) -> ShutdownReport {
        if self.done {
            return ShutdownReport {
                clean: true,
                ..Default::default()
            };
        }
        self.done = true;
        let start = Instant::now();
        let end = start + deadline;
        let mesh = &self.inner.mesh;
        mesh.accepting.store(false, Ordering::SeqCst);
        let mut report = ShutdownReport::default();
        // Network intake first: the I/O workers close their listeners and connections.
        let io_not_joined = self.stop_io_workers(end);
        let mesh = &self.inner.mesh;

        // Actors in reverse start order, in runs of consecutive actors on the same worker: each
        // run is stopped by its worker in order, and the next run starts when it is done.
        let actors = mesh.actors.newest_first();
        let mut i = 0;
        let mut timed_out = false;
        while i < actors.len() {
            let node = actors[i].node();
            let mut j = i;
            while j < actors.len() && actors[j].node() == node {
                j += 1;
            }
            let run: Vec<Arc<dyn ActorProbe>> = actors[i..j].to_vec();
            let to_stop = run.clone();
            mesh::send(
                mesh,
                node,
                Envelope::new(move || {
                    for a in to_stop {
                        a.begin_stop();
                    }
                }),
            );
            let left = end.saturating_duration_since(Instant::now());
            let ok = executor::run_until(time::timeout(left, async {
                for a in &run {
                    actor::wait_terminated(&**a).await;
                }
            }))
            .is_ok();
            if !ok {
                timed_out = true;
                for a in &actors[i..] {
                    if !a.is_terminated() {
                        report
                            .still_running
                            .push(format!("{}@worker{}", a.name(), a.node()));
                    }
                }
                break;
            }
            report.actors_stopped += run.len();
            i = j;
        }

        // Then the workers: cancel their tasks, exit, join.
        self.inner.stop.store(true, Ordering::SeqCst);
        for n in &mesh.nodes[..mesh.app_workers] {
            n.notify();
        }
        for (idx, t) in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                report.workers_not_joined.push(idx);
            }
        }
        report.workers_not_joined.extend(io_not_joined);
        report.tasks_cancelled = self.inner.tasks_cancelled.load(Ordering::Relaxed);
        report.elapsed = start.elapsed();
        report.clean = !timed_out && report.workers_not_joined.is_empty();
        if report.clean {
            tracing::info!(elapsed = ?report.elapsed, actors = report.actors_stopped, "percore runtime stopped");
        } else {
            tracing::warn!(
                elapsed = ?report.elapsed,
                still_running = ?report.still_running,
                workers_not_joined = ?report.workers_not_joined,
                "percore runtime shutdown hit its deadline"
            );
        }
        report
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

impl Handle {
    fn check(&self, worker: usize) -> Result<(), RuntimeError> {
        if !self.inner.mesh.accepting.load(Ordering::Acquire) {
            return Err(RuntimeError::ShuttingDown);
        }
        let workers = self.inner.config.app_workers;
        if worker >= workers {
            return Err(RuntimeError::NoSuchWorker { worker, workers });
        }
        Ok(())
    }

    /// Number of app workers.
    pub fn workers(&self) -> usize {
        self.inner.config.app_workers
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Spawns a task on app worker `worker`. `f` is sent there and builds the future on that
    /// worker, so the future itself need not be `Send`.
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
        self.check(worker)?;
        let (handle, slot) = task::join_pair();
        mesh::send(
            &self.inner.mesh,
            worker,
            Envelope::new(move || {
                let body = task::task_with(f(), slot);
                executor::with_current(|e| e.spawn_raw(Box::pin(body)));
            }),
        );
        Ok(handle)
    }

    /// Starts an actor on app worker `worker`: `make` runs there, so the actor need not be
    /// `Send`. The address is usable at once; messages sent before the actor has started wait
    /// in its mailbox. Uses the profile's mailbox capacity.
    pub fn spawn_actor_on<A, F>(&self, worker: usize, make: F) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_actor_on_with_capacity(worker, self.inner.mesh.default_mailbox, make)
    }

    /// Like [`Handle::spawn_actor_on`] with an explicit mailbox capacity (at least 1).
    pub fn spawn_actor_on_with_capacity<A, F>(
        &self,
        worker: usize,
        capacity: usize,
        make: F,
    ) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        self.check(worker)?;
        let mesh = &self.inner.mesh;
        let owner = *mesh.nodes[worker]
            .exec_id
            .get()
            .expect("workers publish their executor id before Runtime::start returns");
        let mb = Mailbox::<A::Msg>::new(mesh.clone(), worker, owner, capacity);
        let addr = Addr::from_mailbox(mb.clone());
        mesh::send(
            mesh,
            worker,
            Envelope::new(move || {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)) {
                    Ok(a) => actor::start_local(a, mb),
                    Err(p) => {
                        tracing::error!(panic = %executor::panic_message(&*p), "actor constructor panicked; the actor was not started");
                        actor::abandon(&mb);
                    }
                }
            }),
        );
        Ok(addr)
    }

    /// Starts an actor on the next app worker, round robin.
    pub fn spawn_actor<A, F>(&self, make: F) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: FnOnce() -> A + Send + 'static,
    {
        let w = self.inner.rr.fetch_add(1, Ordering::Relaxed) % self.workers();
        self.spawn_actor_on(w, make)
    }

    /// Starts one actor per app worker (shard `i` on worker `i`, built by `make(i)` there) and
    /// returns an address that routes keyed messages through `partitioner`.
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
        let make = Arc::new(make);
        let mut shards = Vec::with_capacity(self.workers());
        for w in 0..self.workers() {
            let m = make.clone();
            shards.push(self.spawn_actor_on(w, move || m(w))?);
        }
        Ok(ShardedAddr::new(shards, Arc::new(partitioner)))
    }

    /// Sends a closure to run on mesh node `node` (an app worker, or an external node in its
    /// [`ExternalNode::run_pending`]).
    pub fn run_on_node(
        &self,
        node: usize,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), RuntimeError> {
        let n = self.inner.mesh.nodes.len();
        if node >= n {
            return Err(RuntimeError::NoSuchWorker {
                worker: node,
                workers: n,
            });
        }
        mesh::send(&self.inner.mesh, node, Envelope::new(f));
        Ok(())
    }

    /// Runs `f` on I/O worker `io_worker` with its [`IoCtx`] (register handlers, start
    /// operations). The closure travels over the mesh like any cross-core message.
    pub fn run_on_io<F>(&self, io_worker: usize, f: F) -> Result<(), RuntimeError>
    where
        F: FnOnce(&mut IoCtx<'_>) + Send + 'static,
    {
        let n = self.io_workers();
        if io_worker >= n {
            return Err(RuntimeError::NoIoWorker {
                index: io_worker,
                io_workers: n,
            });
        }
        let node = self.io_node(io_worker);
        if mesh::current_node(self.inner.mesh.id) == Some(node) {
            // Already on that loop's thread (co-located): run it now if the loop is not in the
            // middle of a handler call; else it goes through the injector like any message.
            let mut f = Some(f);
            if io_worker::with_io(|ctx| (f.take().expect("taken once"))(ctx)).is_some() {
                return Ok(());
            }
            let f = f.expect("not taken: with_io did not run it");
            mesh::send(
                &self.inner.mesh,
                node,
                Envelope::new(move || {
                    let _ = io_worker::with_io(f);
                }),
            );
            return Ok(());
        }
        mesh::send(
            &self.inner.mesh,
            node,
            Envelope::new(move || {
                if super::io::worker::with_io(f).is_none() {
                    tracing::warn!(
                        io_worker,
                        "a closure for an I/O worker ran outside its loop; dropped"
                    );
                }
            }),
        );
        Ok(())
    }

    /// Number of I/O event loops: the app workers when `io_colocated`, else the dedicated
    /// I/O workers.
    pub fn io_workers(&self) -> usize {
        if self.inner.config.io_colocated {
            self.inner.config.app_workers
        } else {
            self.inner.config.io_workers
        }
    }

    /// The CPU I/O loop `i` is pinned to (its app worker's when co-located); `None` when
    /// workers are not pinned or the placement names no CPU for it.
    pub fn io_cpu(&self, i: usize) -> Option<usize> {
        let c = &self.inner.config;
        if !c.pin_workers || i >= self.io_workers() {
            return None;
        }
        let plan = if c.io_colocated {
            &c.placement.app
        } else {
            &c.placement.io
        };
        plan.get(i).copied().flatten()
    }

    /// The mesh node running I/O loop `i` (the app worker itself when co-located).
    fn io_node(&self, i: usize) -> usize {
        if self.inner.config.io_colocated {
            i
        } else {
            self.inner.mesh.app_workers + i
        }
    }

    /// The backend I/O worker `i` runs (`None` if there is no such worker).
    pub fn io_backend(&self, i: usize) -> Option<BackendKind> {
        self.inner.io_kinds.get().and_then(|k| k.get(i).copied())
    }

    /// Counters of I/O worker `i`.
    pub fn io_stats(&self, i: usize) -> Option<Arc<IoWorkerStats>> {
        self.inner.io_stats.get().and_then(|k| k.get(i).cloned())
    }

    /// Joins the calling thread to the mesh as external node `index` (0-based among the
    /// `io_workers + accel_workers` nodes the config reserves). See [`ExternalNode`].
    pub fn attach_external(&self, index: usize) -> Result<ExternalNode, RuntimeError> {
        ExternalNode::attach(&self.inner.mesh, index)
    }

    /// Per-node counters (app workers first, then external nodes).
    pub fn metrics(&self) -> Vec<MetricsSnapshot> {
        self.inner
            .mesh
            .nodes
            .iter()
            .map(|n| n.metrics.snapshot())
            .collect()
    }

    /// Counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        prometheus_text(&self.metrics())
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        !self.inner.mesh.accepting.load(Ordering::Acquire)
    }
}

/// Starts `actor` on the current app worker. The actor need not be `Send`.
pub fn spawn_actor<A: Actor>(actor: A) -> Result<Addr<A>, RuntimeError> {
    let (mesh, me) = mesh::current_mesh().ok_or(RuntimeError::NotInRuntime)?;
    let cap = mesh.default_mailbox;
    spawn_actor_with_capacity(actor, cap).inspect(|a| debug_assert_eq!(a.worker(), me))
}

/// Like [`spawn_actor`] with an explicit mailbox capacity.
pub fn spawn_actor_with_capacity<A: Actor>(
    actor: A,
    capacity: usize,
) -> Result<Addr<A>, RuntimeError> {
    let (mesh, me) = mesh::current_mesh().ok_or(RuntimeError::NotInRuntime)?;
    if me >= mesh.app_workers {
        return Err(RuntimeError::NotInRuntime);
    }
    if !mesh.accepting.load(Ordering::Acquire) {
        return Err(RuntimeError::ShuttingDown);
    }
    let owner = executor::current_exec_id();
    let mb = Mailbox::<A::Msg>::new(mesh, me, owner, capacity);
    let addr = Addr::from_mailbox(mb.clone());
    actor::start_local(actor, mb);
    Ok(addr)
}

struct WorkerCfg {
    idx: usize,
    /// Co-located event loop: (backend, may fall back to mio).
    io: Option<(BackendKind, bool)>,
    io_stats: Arc<IoWorkerStats>,
    pin: Option<usize>,
    spin: Duration,
    tasks_per_tick: usize,
}

fn worker_main(
    inner: Arc<RtInner>,
    ends: NodeEnds,
    cfg: WorkerCfg,
    ready: std::sync::mpsc::Sender<(usize, Result<Option<BackendKind>, String>)>,
) {
    let idx = cfg.idx;
    if let Some(cpu) = cfg.pin
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        tracing::warn!(
            worker = idx,
            cpu,
            "could not pin worker to its CPU; running unpinned"
        );
    }
    let span = tracing::info_span!("worker", id = idx);
    let _span = span.enter();
    let mesh = inner.mesh.clone();
    let node = &mesh.nodes[idx];
    // A co-located event loop sleeps in the kernel (io_uring_enter / epoll_wait) instead of
    // parking the thread, so wake-ups go through the loop's eventfd / mio waker.
    let mut io_kind = None;
    let notifier = match cfg.io {
        Some((kind, may_fall_back)) => match io_worker::install(idx, idx, kind, may_fall_back) {
            Ok((k, wake)) => {
                io_kind = Some(k);
                Notifier::custom_handshake(wake)
            }
            Err(e) => {
                let _ = ready.send((idx, Err(e.to_string())));
                return;
            }
        },
        None => Notifier::for_current_thread(),
    };
    let colocated = io_kind.is_some();
    let _ = node.notifier.set(notifier.clone());
    let exec = Executor::new(notifier.clone(), Some(idx), Some((mesh.id, idx)));
    let _ = node.exec_id.set(exec.shared.id);
    let _enter = exec.enter();
    Outbound::new(mesh.clone(), idx, ends.outbound).install();
    let mut inbound = Inbound {
        consumers: ends.inbound,
    };
    let _ = ready.send((idx, Ok(io_kind)));
    drop(ready);
    let budget = cfg.tasks_per_tick.max(32);
    let m = &node.metrics;

    // A busy turn's closing clock read doubles as the next turn's start: one read per turn
    // while work keeps coming (clock reads were ~6 % of a cross-core ask's profile).
    let mut carried: Option<Instant> = None;
    loop {
        let t0 = carried.take().unwrap_or_else(Instant::now);
        let mut did = inbound.drain(node, budget);
        did += exec.drain_remote();
        did += exec.fire_timers(t0);
        did += exec.run_ready(cfg.tasks_per_tick);
        if colocated && io_worker::active() {
            did += io_turn(Some(Duration::ZERO), &cfg.io_stats);
        }
        let overflow = mesh::flush_current();
        if did > 0 {
            let t1 = Instant::now();
            m.busy_ns
                .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
            // Read after every poll of this turn: timers those polls created count from it.
            exec.settle_timers(t1);
            carried = Some(t1);
            m.tasks_polled
                .store(exec.counters.polled.get(), Ordering::Relaxed);
            continue;
        }
        m.tasks_alive
            .store(exec.task_count() as u64, Ordering::Relaxed);
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        let has_work = |inbound: &Inbound| {
            inbound.has_pending(node)
                || exec.shared.has_remote()
                || exec.has_ready()
                || exec.next_deadline().is_some_and(|d| d <= Instant::now())
        };
        // Spin briefly: waking a parked thread from the other core costs tens of microseconds.
        // The checks in the loop read no clock (a clock read per check was 13 % of a worker
        // waiting for an ask's answer, and slowed how soon it saw it): timers cannot be added
        // while this thread spins, so the next deadline is fixed, and the clock is read every
        // 32 checks.
        //
        // A worker whose co-located event loop serves sockets does not spin: its wake-ups come
        // from the kernel either way (a spin sees them only through a poll every ~20 µs), and on
        // a machine shared with clients the spin took their CPU. Measured with wrk on 2 vCPUs
        // (BENCHMARKS.md): 50 µs spin 111-123 k req/s, p99 7.9 ms; no spin 122-126 k, 5.4 ms.
        let spin = if colocated && io_worker::active() {
            Duration::ZERO
        } else {
            cfg.spin
        };
        // This (idle) turn started moments ago: its start stands in for now.
        let spin_end = t0 + spin;
        let deadline = exec.next_deadline();
        let mut found = false;
        let mut spins = 0u32;
        while !spin.is_zero() {
            if inbound.has_pending(node)
                || exec.shared.has_remote()
                || exec.has_ready()
                || inner.stop.load(Ordering::Relaxed)
            {
                found = true;
                break;
            }
            // One PAUSE per check: a PAUSE costs ~40-140 cycles, so work is seen within
            // ~100 ns.
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(32) {
                let now = Instant::now();
                if deadline.is_some_and(|d| d <= now) {
                    found = true;
                    break;
                }
                if now >= spin_end {
                    break;
                }
            }
        }
        if found {
            continue;
        }
        notifier.set_sleeping(true);
        if has_work(&inbound)
            || inner.stop.load(Ordering::SeqCst)
            || (colocated && io_worker::has_ready())
        {
            notifier.set_sleeping(false);
            continue;
        }
        m.parks.fetch_add(1, Ordering::Relaxed);
        let mut wait = exec
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        if overflow > 0 || mesh::current_has_overflow() {
            // A target's ring is full: come back soon to move the overflow.
            wait = Some(wait.map_or(Duration::from_micros(50), |w| {
                w.min(Duration::from_micros(50))
            }));
        }
        if colocated {
            io_turn(wait, &cfg.io_stats);
        } else {
            match wait {
                Some(w) => std::thread::park_timeout(w),
                None => std::thread::park(),
            }
        }
        notifier.set_sleeping(false);
    }

    if colocated {
        io_worker::uninstall();
    }
    // Shutdown: cancel what is left (dropping futures here, on their own thread). Envelopes
    // still waiting are dropped without running: their actors may be gone (see MailboxPtr).
    let cancelled = exec.cancel_all();
    inner
        .tasks_cancelled
        .fetch_add(cancelled as u64, Ordering::Relaxed);
    mesh::flush_current();
    inbound.discard(node);
    let _ = Outbound::uninstall();
}

/// One turn of a co-located event loop; errors are logged (the worker keeps running).
fn io_turn(timeout: Option<Duration>, stats: &IoWorkerStats) -> usize {
    match io_worker::turn(timeout, stats) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(%e, "event loop poll failed");
            0
        }
    }
}
