//! [`Handle`]: a cheap, cloneable, `Send + Sync` handle to place work on a runtime from any
//! thread (tasks, actors, sharded actors, closures on event loops), plus [`spawn_actor`] for
//! the current worker. Owns placement checks; the workers and the mesh do the rest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::actor::{self, Actor, ActorTypeSnapshot, Addr, DeadLetters, Mailbox, NameError};
use super::config::Config;
use super::envelope::Envelope;
use super::error::RuntimeError;
use super::executor::{self};
use super::io::event_loop;
use super::io::{BackendKind, EventLoopStats, IoCtx};
use super::mesh::{self, ExternalNode};
use super::metrics::MetricsSnapshot;
use super::partition::Partitioner;
use super::rt::RtInner;
use super::sharded::ShardedAddr;
use super::supervision::{SupCore, Supervisor, SupervisorSpec};
use super::task::{self, JoinHandle};
use super::user_metrics::MetricsRegistry;

/// How long one scheduler turn may last before its worker counts as stalled (not turning).
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The answer of [`Handle::readiness`] (the body of `/ready`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// Everything below is fine.
    pub ready: bool,
    /// App workers.
    pub workers: usize,
    /// App workers stuck in one turn for more than [`STALL_LIMIT`].
    pub stalled_workers: Vec<usize>,
    /// An escalation reached the root supervisor.
    pub supervision_degraded: bool,
    /// Shutdown has begun.
    pub shutting_down: bool,
}

/// What [`Handle::spawn_actor_with`] runs on the actor's worker.
pub(crate) type Starter<M> =
    Box<dyn FnOnce(Arc<Mailbox<M>>) -> Result<(), Box<dyn std::any::Any + Send>> + Send>;

/// A cheap, cloneable, `Send + Sync` handle to place work on a runtime from any thread.
#[derive(Clone)]
pub struct Handle {
    pub(super) inner: Arc<RtInner>,
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
        self.spawn_actor_with(worker, Some(capacity), move |_, _| {
            Box::new(move |mb| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(make))
                    .map(|a| actor::start_local(a, mb))
            })
        })
    }

    /// Makes the mailbox of an actor of type `A` on `worker`, lets `prep` see it (and build the
    /// starter), then has the starter run on the worker: it starts the actor or hands back the
    /// constructor's panic (the actor is then abandoned, the panic logged).
    pub(crate) fn spawn_actor_with<A, P>(
        &self,
        worker: usize,
        capacity: Option<usize>,
        prep: P,
    ) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        P: FnOnce(Arc<Mailbox<A::Msg>>, &Addr<A>) -> Starter<A::Msg>,
    {
        self.check(worker)?;
        let mesh = &self.inner.mesh;
        let owner = *mesh.nodes[worker]
            .exec_id
            .get()
            .expect("workers publish their executor id before Runtime::start returns");
        let cap = capacity.unwrap_or(mesh.default_mailbox);
        let mb = Mailbox::<A::Msg>::new(mesh.clone(), worker, owner, cap);
        let addr = Addr::from_mailbox(mb.clone());
        let start = prep(mb.clone(), &addr);
        mesh::send(
            mesh,
            worker,
            Envelope::new(move || {
                if let Err(p) = start(mb.clone()) {
                    tracing::error!(panic = %executor::panic_message(&*p), "actor constructor panicked; the actor was not started");
                    actor::abandon(&mb);
                }
            }),
        );
        Ok(addr)
    }

    /// The next app worker, round robin.
    pub(crate) fn next_worker(&self) -> usize {
        self.inner.rr.fetch_add(1, Ordering::Relaxed) % self.workers()
    }

    /// The root of this runtime's supervision tree (one-for-one, default intensity). An
    /// escalation that reaches it leaves the failing subtree stopped and counts in
    /// [`Supervisor::degraded`] (`/ready` then answers 503).
    pub fn root_supervisor(&self) -> Supervisor {
        let core = self
            .inner
            .root
            .get_or_init(|| SupCore::new(SupervisorSpec::one_for_one("root"), None))
            .clone();
        Supervisor::from_core(core, self.clone())
    }

    /// A new supervisor under the root.
    pub fn supervisor(&self, spec: SupervisorSpec) -> Supervisor {
        self.root_supervisor().supervisor(spec)
    }

    /// True while no escalation has reached the root supervisor.
    pub fn supervision_healthy(&self) -> bool {
        self.inner
            .root
            .get()
            .is_none_or(|r| Supervisor::from_core(r.clone(), self.clone()).degraded() == 0)
    }

    /// Names `addr` in this runtime (names are unique; the entry goes when the actor stops
    /// for good).
    pub fn register<A: Actor>(&self, name: &str, addr: &Addr<A>) -> Result<(), NameError> {
        self.inner.mesh.actors.names.register(name, addr)
    }

    /// The actor named `name`, if it is registered with type `A`.
    pub fn lookup<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        self.inner.mesh.actors.names.lookup(name)
    }

    /// Removes a name; true if it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        self.inner.mesh.actors.names.unregister(name)
    }

    /// Registered names and their actor ids.
    pub fn names(&self) -> Vec<(String, u64)> {
        self.inner.mesh.actors.names.list()
    }

    /// The runtime's dead-letter queue.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.mesh.actors.dead_letters
    }

    /// Per actor type figures (live, started, handled, failures, restarts, mailbox depth,
    /// sampled handler latency). Walks every actor for the mailbox depths, a bounded number
    /// at a time.
    pub fn actor_types(&self) -> Vec<ActorTypeSnapshot> {
        let actors = &self.inner.mesh.actors;
        let mut depth: std::collections::HashMap<&'static str, u64> = Default::default();
        actors.walk(|p| *depth.entry(p.type_name()).or_insert(0) += p.depth());
        actors.types.snapshot(&depth)
    }

    /// Live actors in this runtime.
    pub fn actor_count(&self) -> usize {
        self.inner.mesh.actors.len()
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
        ShardedAddr::build(self.workers(), make, partitioner, |w, m| {
            self.spawn_actor_on(w, move || m(w))
        })
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
            if event_loop::with_io(|ctx| (f.take().expect("taken once"))(ctx)).is_some() {
                return Ok(());
            }
            let f = f.expect("not taken: with_io did not run it");
            mesh::send(
                &self.inner.mesh,
                node,
                Envelope::new(move || {
                    let _ = event_loop::with_io(f);
                }),
            );
            return Ok(());
        }
        mesh::send(
            &self.inner.mesh,
            node,
            Envelope::new(move || {
                if super::io::event_loop::with_io(f).is_none() {
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
    pub fn io_stats(&self, i: usize) -> Option<Arc<EventLoopStats>> {
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

    /// The whole `/metrics` page in the Prometheus text format: workers, event loops, actor
    /// types, supervision, dead letters, readiness and user metrics.
    pub fn prometheus(&self) -> String {
        super::prometheus::render(self)
    }

    /// The registry of user metrics, rendered on `/metrics` after the runtime's own series.
    pub fn metrics_registry(&self) -> &MetricsRegistry {
        &self.inner.user_metrics
    }

    /// Per app worker: inside one scheduler turn for more than [`STALL_LIMIT`]?
    pub fn stalled_workers(&self) -> Vec<bool> {
        self.inner.mesh.nodes[..self.workers()]
            .iter()
            .map(|n| n.metrics.stalled(STALL_LIMIT))
            .collect()
    }

    /// Whether the runtime is ready to serve: every app worker turning (none stuck in one
    /// turn for more than [`STALL_LIMIT`]), no escalation at the root supervisor, not
    /// shutting down.
    pub fn readiness(&self) -> Readiness {
        let stalled: Vec<usize> = self
            .stalled_workers()
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.then_some(i))
            .collect();
        let degraded = !self.supervision_healthy();
        let shutting_down = self.is_shutting_down();
        Readiness {
            ready: stalled.is_empty() && !degraded && !shutting_down,
            workers: self.workers(),
            stalled_workers: stalled,
            supervision_degraded: degraded,
            shutting_down,
        }
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
