//! [`Supervisor`]: owns child specs and restarts children by strategy, counts restart
//! intensity, escalates to its parent when it is exceeded, and nests into a tree whose root the
//! runtime holds. Decisions are made synchronously, in the failed child's own task on its own
//! worker, under the supervisor's lock (no message hop: a same-core restart takes
//! microseconds); group restarts reach siblings on other workers as exit signals.
//!
//! Lock order: a supervisor never calls into another supervisor while holding its own lock;
//! it decides under the lock, releases it, then acts (signals, escalation, subtree restarts).
//! Owns restart decisions; the actor's task does the restarting (`actor/run.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::spec::{ChildSpec, RestartPolicy, Strategy, SupervisorSpec};
use crate::runtime::actor::{
    ActorProbe, ChildHooks, Decision, ExitReason, SupervisedStart, start_supervised,
};
use crate::runtime::error::RuntimeError;
use crate::runtime::handle::Handle;
use crate::runtime::partition::Partitioner;
use crate::runtime::{Actor, Addr, ShardedAddr};

/// Ids of supervisors (for reports), runtime-independent.
static NEXT_SUPERVISOR: AtomicU64 = AtomicU64::new(1);

enum ChildKind {
    /// Filled in once the actor's mailbox exists.
    Actor(Option<Arc<dyn ActorProbe>>),
    Supervisor(Arc<SupCore>),
}

struct Child {
    key: u64,
    name: String,
    policy: RestartPolicy,
    kind: ChildKind,
    worker: Option<usize>,
    restarts: u64,
    /// Asked to restart as part of a group: its next exit restarts it without counting.
    group_restart: bool,
}

struct SupState {
    children: Vec<Child>,
    /// Restart times within the intensity period.
    window: VecDeque<Instant>,
    restarts: u64,
    escalations: u64,
    /// Stopped for good (gave up and its parent did not restart it, or stopped by request).
    stopped: bool,
    next_key: u64,
    /// Jitter source (splitmix64 state; no need for more than decorrelation here).
    rng: u64,
}

/// The shared core of one supervisor.
pub(crate) struct SupCore {
    id: u64,
    spec: SupervisorSpec,
    parent: Option<(Weak<SupCore>, u64)>,
    state: Mutex<SupState>,
    /// Set on the root when an escalation reached it (the runtime is degraded).
    degraded: AtomicU64,
}

/// What to do after deciding under the lock.
enum Act {
    Restart(Arc<dyn ActorProbe>),
    StopForGood(Arc<dyn ActorProbe>),
    RestartTree(Arc<SupCore>),
    StopTree(Arc<SupCore>),
}

/// What restarting `children` as a group takes: temporary actors stop for good, the other
/// actors restart without counting it as their failure, child supervisors restart their
/// subtrees.
fn group_restart<'a>(children: impl Iterator<Item = &'a mut Child>) -> Vec<Act> {
    let mut acts = Vec::new();
    for c in children {
        match &c.kind {
            ChildKind::Actor(Some(p)) if c.policy == RestartPolicy::Temporary => {
                acts.push(Act::StopForGood(p.clone()))
            }
            ChildKind::Actor(Some(p)) => {
                c.group_restart = true;
                acts.push(Act::Restart(p.clone()));
            }
            ChildKind::Actor(None) => {}
            ChildKind::Supervisor(s) => acts.push(Act::RestartTree(s.clone())),
        }
    }
    acts
}

fn run(acts: Vec<Act>) {
    for a in acts {
        match a {
            Act::Restart(p) => p.signal_restart(),
            Act::StopForGood(p) => p.kill_for_good(),
            Act::RestartTree(s) => s.restart_all(None),
            Act::StopTree(s) => s.stop_all(),
        }
    }
}

impl SupCore {
    pub(crate) fn new(spec: SupervisorSpec, parent: Option<(Weak<SupCore>, u64)>) -> Arc<Self> {
        let id = NEXT_SUPERVISOR.fetch_add(1, Ordering::Relaxed);
        Arc::new(SupCore {
            id,
            spec,
            parent,
            state: Mutex::new(SupState {
                children: Vec::new(),
                window: VecDeque::new(),
                restarts: 0,
                escalations: 0,
                stopped: false,
                next_key: 1,
                rng: id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
            }),
            degraded: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SupState> {
        // Decisions update plain counters and lists; a panic cannot leave them half-written
        // in a way later decisions misread, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_child(&self, name: String, policy: RestartPolicy, kind: ChildKind) -> Option<u64> {
        let mut st = self.lock();
        if st.stopped {
            return None;
        }
        let key = st.next_key;
        st.next_key += 1;
        st.children.push(Child {
            key,
            name,
            policy,
            kind,
            worker: None,
            restarts: 0,
            group_restart: false,
        });
        Some(key)
    }

    fn set_probe(&self, key: u64, probe: Arc<dyn ActorProbe>, worker: usize) {
        let mut st = self.lock();
        if let Some(c) = st.children.iter_mut().find(|c| c.key == key) {
            c.kind = ChildKind::Actor(Some(probe));
            c.worker = Some(worker);
        }
    }

    fn remove_child(&self, key: u64) {
        self.lock().children.retain(|c| c.key != key);
    }

    /// Records a restart in the window; false when the intensity is exceeded.
    fn count_restart(&self, st: &mut SupState) -> Option<usize> {
        let now = Instant::now();
        let period = self.spec.intensity.period;
        while st
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > period)
        {
            st.window.pop_front();
        }
        st.window.push_back(now);
        if st.window.len() > self.spec.intensity.max_restarts as usize {
            return None;
        }
        st.restarts += 1;
        Some(st.window.len())
    }

    fn jitter(st: &mut SupState) -> f64 {
        st.rng = st.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = st.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The siblings a failure of child `idx` takes down with it, as actions.
    fn group(&self, st: &mut SupState, idx: usize) -> Vec<Act> {
        let range = match self.spec.strategy {
            Strategy::OneForOne => return Vec::new(),
            Strategy::OneForAll => 0..st.children.len(),
            Strategy::RestForOne => idx + 1..st.children.len(),
        };
        group_restart(
            st.children
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| *i != idx && range.contains(i))
                .map(|(_, c)| c),
        )
    }

    /// Child `key` (an actor) ended an incarnation with `reason`.
    fn child_exited(self: &Arc<Self>, key: u64, reason: &ExitReason) -> Decision {
        let (decision, acts, escalate) = {
            let mut st = self.lock();
            if st.stopped {
                return Decision::Stop;
            }
            let Some(idx) = st.children.iter().position(|c| c.key == key) else {
                return Decision::Stop;
            };
            let c = &mut st.children[idx];
            if c.group_restart {
                c.group_restart = false;
                c.restarts += 1;
                return Decision::Restart {
                    delay: Duration::ZERO,
                    restarts: c.restarts,
                };
            }
            let restart = match c.policy {
                RestartPolicy::Permanent => true,
                RestartPolicy::Transient => reason.is_failure(),
                RestartPolicy::Temporary => false,
            };
            if !restart {
                return Decision::Stop;
            }
            match self.count_restart(&mut st) {
                None => (Decision::Stop, Vec::new(), true),
                Some(k) => {
                    let unit = Self::jitter(&mut st);
                    let delay = self.spec.backoff.delay(k, unit);
                    let c = &mut st.children[idx];
                    c.restarts += 1;
                    let restarts = c.restarts;
                    let acts = self.group(&mut st, idx);
                    (Decision::Restart { delay, restarts }, acts, false)
                }
            }
        };
        run(acts);
        if !escalate {
            return decision;
        }
        // Intensity exceeded: give up, let the parent decide about this whole subtree.
        if self.escalate(reason) {
            // Restarted by the parent: every other child restarts with this one.
            self.restart_all(Some(key));
            let mut st = self.lock();
            match st.children.iter_mut().find(|c| c.key == key) {
                Some(c) => {
                    c.restarts += 1;
                    Decision::Restart {
                        delay: Duration::ZERO,
                        restarts: c.restarts,
                    }
                }
                None => Decision::Stop,
            }
        } else {
            Decision::Stop
        }
    }

    /// This supervisor exceeded its intensity: true when its parent restarts it (its restart
    /// window is then cleared); false when it is stopped for good (its children are stopped).
    fn escalate(self: &Arc<Self>, reason: &ExitReason) -> bool {
        {
            let mut st = self.lock();
            st.escalations += 1;
        }
        let parent = self
            .parent
            .as_ref()
            .and_then(|(p, k)| Some((p.upgrade()?, *k)));
        let restarted = match parent {
            Some((p, key)) => {
                tracing::error!(supervisor = %self.spec.name, parent = %p.spec.name, max_restarts = self.spec.intensity.max_restarts, period_ms = self.spec.intensity.period.as_millis() as u64, last = %reason, "supervisor exceeded its restart intensity; escalating to its parent");
                p.child_supervisor_failed(key)
            }
            None => {
                // The root gives up on the failing child only: the rest of the runtime keeps
                // serving, and the runtime reports itself degraded.
                tracing::error!(supervisor = %self.spec.name, max_restarts = self.spec.intensity.max_restarts, last = %reason, "the root supervisor exceeded its restart intensity; the failing subtree stays stopped and the runtime reports itself degraded");
                self.degraded.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        if restarted {
            self.lock().window.clear();
        } else {
            self.stop_all();
        }
        restarted
    }

    /// Child supervisor `key` gave up: restart it (true) or stop it for good.
    fn child_supervisor_failed(self: &Arc<Self>, key: u64) -> bool {
        let (restart, acts, escalate) = {
            let mut st = self.lock();
            if st.stopped {
                return false;
            }
            let Some(idx) = st.children.iter().position(|c| c.key == key) else {
                return false;
            };
            if st.children[idx].policy == RestartPolicy::Temporary {
                (false, Vec::new(), false)
            } else {
                match self.count_restart(&mut st) {
                    None => (false, Vec::new(), true),
                    Some(_) => {
                        st.children[idx].restarts += 1;
                        let acts = self.group(&mut st, idx);
                        (true, acts, false)
                    }
                }
            }
        };
        run(acts);
        if escalate {
            let name = self
                .lock()
                .children
                .iter()
                .find(|c| c.key == key)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if self.escalate(&ExitReason::Failed(format!(
                "child supervisor {name} gave up"
            ))) {
                // This supervisor restarts everything, the failed child supervisor included.
                return true;
            }
            return false;
        }
        restart
    }

    /// Restarts every child (skipping actor child `except`), recursively; clears the window.
    fn restart_all(&self, except: Option<u64>) {
        let acts: Vec<Act> = {
            let mut st = self.lock();
            if st.stopped {
                return;
            }
            st.window.clear();
            group_restart(st.children.iter_mut().filter(|c| Some(c.key) != except))
        };
        run(acts);
    }

    /// Stops every child for good, recursively, and this supervisor with them.
    pub(crate) fn stop_all(&self) {
        let acts: Vec<Act> = {
            let mut st = self.lock();
            st.stopped = true;
            st.children
                .iter()
                .filter_map(|c| match &c.kind {
                    ChildKind::Actor(Some(p)) => Some(Act::StopForGood(p.clone())),
                    ChildKind::Actor(None) => None,
                    ChildKind::Supervisor(s) => Some(Act::StopTree(s.clone())),
                })
                .collect()
        };
        run(acts);
    }

    fn report(&self) -> SupervisorReport {
        let st = self.lock();
        let children = st
            .children
            .iter()
            .map(|c| ChildReport {
                name: c.name.clone(),
                policy: c.policy,
                restarts: c.restarts,
                worker: c.worker,
                actor_id: match &c.kind {
                    ChildKind::Actor(Some(p)) => Some(p.id()),
                    _ => None,
                },
                alive: match &c.kind {
                    ChildKind::Actor(Some(p)) => !p.is_terminated(),
                    ChildKind::Actor(None) => true,
                    ChildKind::Supervisor(s) => !s.lock().stopped,
                },
                supervisor: match &c.kind {
                    ChildKind::Supervisor(s) => Some(Box::new(s.report())),
                    _ => None,
                },
            })
            .collect();
        SupervisorReport {
            id: self.id,
            name: self.spec.name.clone(),
            strategy: self.spec.strategy,
            max_restarts: self.spec.intensity.max_restarts,
            period_ms: self.spec.intensity.period.as_millis() as u64,
            restarts: st.restarts,
            escalations: st.escalations,
            stopped: st.stopped,
            children,
        }
    }
}

/// The hooks of one supervised actor: its supervisor and its key there.
struct ActorChild {
    core: Arc<SupCore>,
    key: u64,
}

impl ChildHooks for ActorChild {
    fn exited(&self, reason: &ExitReason) -> Decision {
        self.core.child_exited(self.key, reason)
    }
    fn gone(&self) {
        self.core.remove_child(self.key);
    }
}

/// A supervisor: spawn children under it, nest supervisors, read its report.
///
/// ```
/// use percore::runtime::{Actor, Context, Runtime};
/// use percore::runtime::supervision::{ChildSpec, SupervisorSpec};
///
/// struct Worker;
/// impl Actor for Worker {
///     type Msg = u32;
///     async fn handle(&mut self, n: u32, _ctx: &mut Context<Self>) {
///         assert!(n != 13, "poison message");
///     }
/// }
///
/// let rt = Runtime::testing(2).unwrap();
/// let sup = rt.handle().supervisor(SupervisorSpec::one_for_one("workers"));
/// let w = sup.spawn_on(1, ChildSpec::permanent(), || Worker).unwrap();
/// rt.block_on(async {
///     w.tell(13).await.unwrap(); // panics: restarted with a fresh Worker, same address
///     w.tell(1).await.unwrap();
/// });
/// ```
#[derive(Clone)]
pub struct Supervisor {
    core: Arc<SupCore>,
    handle: Handle,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.core.spec.name)
            .field("id", &self.core.id)
            .finish()
    }
}

impl Supervisor {
    pub(crate) fn from_core(core: Arc<SupCore>, handle: Handle) -> Self {
        Supervisor { core, handle }
    }

    /// A supervisor under this one, restarted by this one's strategy per `spec.restart`.
    pub fn supervisor(&self, spec: SupervisorSpec) -> Supervisor {
        let policy = spec.restart;
        let name = spec.name.clone();
        // The child's core needs its key in the parent, and the parent's entry needs the
        // child's core: reserve the key first.
        let key = {
            let mut st = self.core.lock();
            let k = st.next_key;
            st.next_key += 1;
            k
        };
        let core = SupCore::new(spec, Some((Arc::downgrade(&self.core), key)));
        {
            let mut st = self.core.lock();
            if st.stopped {
                drop(st);
                core.stop_all();
            } else {
                st.children.push(Child {
                    key,
                    name,
                    policy,
                    kind: ChildKind::Supervisor(core.clone()),
                    worker: None,
                    restarts: 0,
                    group_restart: false,
                });
            }
        }
        Supervisor {
            core,
            handle: self.handle.clone(),
        }
    }

    /// Starts a supervised actor on app worker `worker`. `factory` runs there, once now and
    /// again at every restart (a restarted actor gets a fresh state and keeps its address);
    /// the actor need not be `Send`, the factory must be.
    ///
    /// If the first construction panics, the actor is not started (its address reports it
    /// stopped) and it leaves the supervisor; a panic in a later construction counts as one
    /// more failure.
    pub fn spawn_on<A, F>(
        &self,
        worker: usize,
        child: ChildSpec,
        factory: F,
    ) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: Fn() -> A + Send + 'static,
    {
        let name = child
            .name
            .clone()
            .unwrap_or_else(|| std::any::type_name::<A>().to_string());
        let Some(key) = self
            .core
            .add_child(name, child.restart, ChildKind::Actor(None))
        else {
            return Err(RuntimeError::SupervisorStopped(self.core.spec.name.clone()));
        };
        let core = self.core.clone();
        let capacity = child.capacity;
        let res = self
            .handle
            .spawn_actor_with(worker, capacity, move |mb, addr: &Addr<A>| {
                let probe: Arc<dyn ActorProbe> = mb;
                core.set_probe(key, probe, addr.worker());
                let hooks: Arc<dyn ChildHooks> = Arc::new(ActorChild {
                    core: core.clone(),
                    key,
                });
                Box::new(move |mb| {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&factory)) {
                        Ok(a) => {
                            start_supervised(
                                a,
                                mb,
                                SupervisedStart {
                                    factory: Box::new(factory),
                                    hooks,
                                },
                            );
                            Ok(())
                        }
                        Err(p) => {
                            hooks.gone();
                            Err(p)
                        }
                    }
                })
            });
        if res.is_err() {
            self.core.remove_child(key);
        }
        res
    }

    /// [`Supervisor::spawn_on`] on the next app worker, round robin.
    pub fn spawn<A, F>(&self, child: ChildSpec, factory: F) -> Result<Addr<A>, RuntimeError>
    where
        A: Actor,
        F: Fn() -> A + Send + 'static,
    {
        let w = self.handle.next_worker();
        self.spawn_on(w, child, factory)
    }

    /// A supervised sharded actor: shard `i` on worker `i`, built by `make(i)` there, each a
    /// child of this supervisor. A failed shard restarts on its own core; messages for it wait
    /// in its (bounded) mailbox meanwhile and messages for the other shards keep flowing.
    pub fn spawn_sharded<A, K, F, P>(
        &self,
        child: ChildSpec,
        make: F,
        partitioner: P,
    ) -> Result<ShardedAddr<A, K>, RuntimeError>
    where
        A: Actor,
        K: ?Sized + 'static,
        F: Fn(usize) -> A + Send + Sync + 'static,
        P: Partitioner<K>,
    {
        ShardedAddr::build(self.handle.workers(), make, partitioner, |w, m| {
            let spec = match &child.name {
                Some(n) => child.clone().name(format!("{n}[{w}]")),
                None => child.clone(),
            };
            self.spawn_on(w, spec, move || m(w))
        })
    }

    /// Stops every child for good (recursively) and this supervisor with them.
    pub fn stop(&self) {
        self.core.stop_all();
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.core.spec.name
    }

    /// This supervisor and its subtree: children, restarts, escalations.
    pub fn report(&self) -> SupervisorReport {
        self.core.report()
    }

    /// True once it has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.core.lock().stopped
    }

    /// Escalations that reached this supervisor as the root (only the root counts them).
    pub fn degraded(&self) -> u64 {
        self.core.degraded.load(Ordering::Relaxed)
    }
}

/// A supervisor's state, for reports, `/dashboard` and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SupervisorReport {
    /// Runtime-independent supervisor id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its strategy.
    pub strategy: Strategy,
    /// Intensity: restarts allowed …
    pub max_restarts: u32,
    /// … within this many milliseconds.
    pub period_ms: u64,
    /// Restarts it has made.
    pub restarts: u64,
    /// Times it exceeded its intensity.
    pub escalations: u64,
    /// Stopped for good.
    pub stopped: bool,
    /// Its children, in start order.
    pub children: Vec<ChildReport>,
}

/// One child in a [`SupervisorReport`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildReport {
    /// The child's name.
    pub name: String,
    /// Its restart policy.
    pub policy: RestartPolicy,
    /// Times it was restarted.
    pub restarts: u64,
    /// Its worker (actors).
    pub worker: Option<usize>,
    /// Its actor id (actors).
    pub actor_id: Option<u64>,
    /// Still running.
    pub alive: bool,
    /// Its subtree (supervisors).
    pub supervisor: Option<Box<SupervisorReport>>,
}
