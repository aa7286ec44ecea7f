//! The mesh: one SPSC ring for every ordered pair of nodes (app workers first, then external
//! nodes such as I/O workers), plus a crossbeam MPMC injector per node for threads outside the
//! mesh. Owns message transport between threads and the wake-up of sleeping nodes; knows nothing
//! of what the envelopes do (actors, tasks and transports give it closures).
//!
//! Sends from a mesh thread are batched: an envelope is written into the ring without being
//! published, and the node publishes all its rings at once ([`Outbound::flush`]) at the end of
//! each scheduler turn, waking a target only if it sleeps. When a ring is full the envelope waits
//! in a per-target overflow queue owned by the sender, so nothing is dropped and per-sender order
//! holds; the overflow is bounded because every actor message first reserves a mailbox slot.
//!
//! [`send_keyed`] lets a sender fold consecutive messages for one key (a mailbox) into the
//! still-unpublished envelope it pushed last, and hold send credits for that key until the end
//! of its turn; the actor layer uses it for cross-core batches (see `actor.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crossbeam::queue::SegQueue;

use super::actor::ActorProbe;
use super::executor::Notifier;
use super::metrics::WorkerMetrics;
use super::ring::{Consumer, Producer, ring};

/// What travels on rings and injectors: a closure run on the target node's thread, inline in
/// the ring slot when small (see [`Envelope`]).
pub(crate) use super::envelope::Envelope;

static NEXT_MESH_ID: AtomicU64 = AtomicU64::new(1);

/// Shared per-node state reachable from any thread.
pub(crate) struct NodeShared {
    pub(crate) injector: SegQueue<Envelope>,
    pub(crate) notifier: OnceLock<Arc<Notifier>>,
    /// Executor identity of an app worker (owner id of its actors' mailboxes).
    pub(crate) exec_id: OnceLock<u64>,
    pub(crate) metrics: Arc<WorkerMetrics>,
}

impl NodeShared {
    pub(crate) fn notify(&self) {
        if let Some(n) = self.notifier.get() {
            n.notify();
        }
    }
}

/// The ends of the rings one node owns, handed to its thread when it starts.
pub(crate) struct NodeEnds {
    pub(crate) outbound: Vec<Option<Producer<Envelope>>>,
    pub(crate) inbound: Vec<Consumer<Envelope>>,
}

/// Everything about the mesh that all threads share.
pub(crate) struct MeshShared {
    pub(crate) id: u64,
    pub(crate) nodes: Vec<NodeShared>,
    pub(crate) app_workers: usize,
    /// Ring ends of external nodes, waiting to be claimed by `attach_external`.
    pub(crate) pending_external: Vec<Mutex<Option<NodeEnds>>>,
    pub(crate) accepting: AtomicBool,
    /// Next actor id (= start order).
    pub(crate) next_actor: AtomicU64,
    /// Live actors by start order, for graceful shutdown in reverse order and reports.
    /// Slab rather than a map: 32 bytes an actor, O(1) insert and remove; shutdown sorts by id.
    pub(crate) actor_index: Mutex<slab::Slab<(u64, Weak<dyn ActorProbe>)>>,
    /// Default mailbox bound for actors spawned without one.
    pub(crate) default_mailbox: usize,
}

impl MeshShared {
    /// Builds the mesh: `app` app workers and `external` external nodes, every ordered pair
    /// joined by a ring of `capacity` slots. Returns the app workers' ring ends.
    pub(crate) fn new(
        app: usize,
        external: usize,
        capacity: usize,
        mailbox: usize,
    ) -> (Arc<Self>, Vec<NodeEnds>) {
        let n = app + external;
        let mut ends: Vec<NodeEnds> = (0..n)
            .map(|_| NodeEnds {
                outbound: (0..n).map(|_| None).collect(),
                inbound: Vec::new(),
            })
            .collect();
        for from in 0..n {
            for to in 0..n {
                if from == to {
                    continue;
                }
                let (p, c) = ring::<Envelope>(capacity);
                ends[from].outbound[to] = Some(p);
                ends[to].inbound.push(c);
            }
        }
        let ext_ends: Vec<NodeEnds> = ends.split_off(app);
        let mesh = Arc::new(MeshShared {
            id: NEXT_MESH_ID.fetch_add(1, Ordering::Relaxed),
            nodes: (0..n)
                .map(|i| NodeShared {
                    injector: SegQueue::new(),
                    notifier: OnceLock::new(),
                    exec_id: OnceLock::new(),
                    metrics: Arc::new(WorkerMetrics::new(i)),
                })
                .collect(),
            app_workers: app,
            pending_external: ext_ends.into_iter().map(|e| Mutex::new(Some(e))).collect(),
            accepting: AtomicBool::new(true),
            next_actor: AtomicU64::new(1),
            actor_index: Mutex::new(slab::Slab::new()),
            default_mailbox: mailbox,
        });
        (mesh, ends)
    }
}

/// The sending side a node's thread owns: producers to every other node, overflow queues.
pub(crate) struct Outbound {
    pub(crate) mesh: Arc<MeshShared>,
    pub(crate) me: usize,
    producers: Vec<Option<Producer<Envelope>>>,
    overflow: Vec<VecDeque<Envelope>>,
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Per target: the key and kind of the last envelope pushed to it, while it is still the
    /// most recent push and unpublished, and the send credits held for that key. See
    /// [`send_keyed`].
    last: Vec<Last>,
    sent: u64,
}

thread_local! {
    static OUTBOUND: RefCell<Option<Outbound>> = const { RefCell::new(None) };
    /// `(mesh id, node)` of this thread while its ring ends are installed (node `u32::MAX`:
    /// none). Kept apart from `OUTBOUND` so it can be read while that is borrowed.
    static OWN_NODE: Cell<(u64, u32)> = const { Cell::new((0, u32::MAX)) };
}

/// The `(mesh id, node)` this thread is (an app worker or an attached external node), if any.
/// Readable anywhere, also from inside a send.
#[inline]
pub(crate) fn own_node() -> Option<(u64, usize)> {
    let (mesh, node) = OWN_NODE.try_with(|n| n.get()).ok()?;
    (node != u32::MAX).then_some((mesh, node as usize))
}

/// Where a streaming sender appends its next message without touching the [`Outbound`]: the
/// key (a mailbox address, 0 for none) whose unpublished batch envelope sits at `payload`, and
/// the send credits this thread holds for it.
///
/// Invariant (why the pointers are valid when used): the cursor is armed by [`send_keyed`]
/// while it holds this thread's `Outbound` borrowed, pointing into that `Outbound` (`credits`:
/// its `last` entry for the target) and into the unpublished ring slot or overflow entry of the
/// batch (`payload`). Every later access to the `Outbound` goes through [`with_outbound`], which
/// disarms the cursor first, and so do `install`/`uninstall` and dropping an `Outbound` (also by
/// the thread's TLS teardown); so while the cursor is armed
/// nothing else has touched, moved, published or freed what it points at. Only this thread
/// reads it.
#[derive(Clone, Copy)]
struct Cursor {
    key: usize,
    payload: *mut (),
    credits: *mut u32,
}

const NO_CURSOR: Cursor = Cursor {
    key: 0,
    payload: std::ptr::null_mut(),
    credits: std::ptr::null_mut(),
};

thread_local! {
    static CURSOR: Cell<Cursor> = const { Cell::new(NO_CURSOR) };
}

/// The first-tier fast path of a sender streaming to one key: when this thread's cursor is
/// armed for `key` (its last send, this turn, went into a batch envelope for `key` through
/// [`send_keyed`], and nothing has touched its rings since) and a send credit is left, `push`
/// gets the batch payload and `v`, and on success one credit is spent. No borrow, no lookup.
///
/// # Safety
/// `push` must treat the pointer as the payload type that `send_keyed`'s `arm` returned for
/// `key` (the caller's own batch type: one key, one payload type).
#[inline(always)]
pub(crate) unsafe fn cursor_send<V>(
    key: usize,
    v: V,
    push: impl FnOnce(*mut (), V) -> Result<(), V>,
) -> Result<(), V> {
    let c = CURSOR.with(Cell::get);
    if c.key != key {
        return Err(v);
    }
    // SAFETY: armed cursor: see `Cursor`'s invariant.
    let credits = unsafe { &mut *c.credits };
    if *credits == 0 {
        return Err(v);
    }
    push(c.payload, v)?;
    *credits -= 1;
    Ok(())
}

fn disarm_cursor() {
    let _ = CURSOR.try_with(|c| c.set(NO_CURSOR));
}

/// Runs `f` on this thread's outbound slot (`None` once the thread's TLS is being torn down).
/// Disarms the streaming cursor first (see [`Cursor`]).
///
/// Why not `OUTBOUND.with(f)`: with a large `f`, `LocalKey::with` is not inlined and reaches
/// the slot through an indirect call per access (perf: 12-27 % of a streaming sender); taking
/// the address in a tiny closure keeps the access a plain thread-local load.
#[inline(always)]
fn with_outbound<R>(f: impl FnOnce(Option<&RefCell<Option<Outbound>>>) -> R) -> R {
    disarm_cursor();
    let p = OUTBOUND
        .try_with(|o| o as *const RefCell<Option<Outbound>>)
        .ok();
    // SAFETY: `try_with` succeeded, so the slot is alive and stays alive until this thread's
    // TLS destructors run, which cannot happen while this thread is inside `f`; the reference
    // is used on this thread only and does not outlive `f`.
    f(p.map(|p| unsafe { &*p }))
}

impl Outbound {
    pub(crate) fn new(
        mesh: Arc<MeshShared>,
        me: usize,
        producers: Vec<Option<Producer<Envelope>>>,
    ) -> Self {
        let n = producers.len();
        Outbound {
            mesh,
            me,
            producers,
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            dirty: Vec::with_capacity(n),
            is_dirty: vec![false; n],
            last: (0..n).map(|_| Last::NONE).collect(),
            sent: 0,
        }
    }

    /// Installs this outbound as the current thread's; returns the previous one.
    pub(crate) fn install(self) {
        let me = (self.mesh.id, u32::try_from(self.me).unwrap_or(u32::MAX));
        OWN_NODE.with(|n| n.set(me));
        disarm_cursor();
        OUTBOUND.with(|o| *o.borrow_mut() = Some(self));
    }

    pub(crate) fn uninstall() -> Option<Outbound> {
        let _ = OWN_NODE.try_with(|n| n.set((0, u32::MAX)));
        disarm_cursor();
        OUTBOUND.with(|o| o.borrow_mut().take())
    }

    fn push(&mut self, to: usize, env: Envelope) {
        self.reset_last(to);
        self.push_env(to, env);
    }

    /// Writes `env` (ring, or overflow when the ring is full) without touching `last`.
    fn push_env(&mut self, to: usize, env: Envelope) {
        let q = &mut self.overflow[to];
        if q.is_empty() {
            if let Some(p) = self.producers[to].as_mut() {
                match p.push(env) {
                    Ok(()) => {}
                    Err(full) => q.push_back(full.0),
                }
            }
        } else {
            q.push_back(env);
        }
        self.sent += 1;
        if !self.is_dirty[to] {
            self.is_dirty[to] = true;
            self.dirty.push(to);
        }
    }

    /// Publishes the ring to `to` now (mid-turn) and wakes it if it sleeps: used when a full
    /// batch is ready, so the target works while this thread goes on sending instead of
    /// waiting for the end of the turn.
    fn publish_now(&mut self, to: usize) {
        if !self.overflow[to].is_empty() {
            return; // the overflow must go first, at flush
        }
        if let Some(p) = self.producers[to].as_mut()
            && p.publish() > 0
        {
            self.mesh.nodes[to].notify();
        }
    }

    /// Forgets the last keyed push to `to`, handing unused credits back.
    fn reset_last(&mut self, to: usize) {
        let l = std::mem::replace(&mut self.last[to], Last::NONE);
        if l.credits > 0
            && let Some(release) = l.release
        {
            // SAFETY: `release` came with `key` from `send_keyed`'s caller, whose contract is
            // that the credits keep the key's object alive until handed back (here).
            unsafe { release(l.key, l.credits as usize) };
        }
    }

    /// Points this thread's streaming cursor at the last envelope pushed to `to` for `key`
    /// when credits are held for it and `arm` says it can take more (a batch: `arm` returns
    /// its payload). See [`Cursor`].
    fn arm_cursor(
        &mut self,
        to: usize,
        key: usize,
        arm: impl FnOnce(&mut Envelope, u8) -> Option<*mut ()>,
    ) {
        if self.last[to].credits == 0 {
            return;
        }
        let Some(payload) = self
            .last_keyed(to, key)
            .and_then(|(env, kind)| arm(env, *kind))
        else {
            return;
        };
        let credits: *mut u32 = &mut self.last[to].credits;
        CURSOR.with(|c| {
            c.set(Cursor {
                key,
                payload,
                credits,
            })
        });
    }

    /// The most recent envelope pushed to `to` if it is still unpublished and was pushed with
    /// `key`; with its kind.
    fn last_keyed(&mut self, to: usize, key: usize) -> Option<(&mut Envelope, &mut u8)> {
        let Last { key: k, kind, .. } = &mut self.last[to];
        if *kind == 0 || *k != key {
            return None;
        }
        let env = match self.overflow[to].back_mut() {
            Some(e) => Some(e),
            None => self.producers[to].as_mut()?.last_unpublished_mut(),
        }?;
        Some((env, kind))
    }

    /// Publishes everything pushed since the last flush and wakes sleeping targets. Envelopes
    /// still in overflow (ring full) stay dirty for the next flush. Returns how many targets
    /// still have overflow.
    pub(crate) fn flush(&mut self) -> usize {
        let mut still = 0;
        let mut i = 0;
        while i < self.dirty.len() {
            let to = self.dirty[i];
            self.reset_last(to);
            let Some(p) = self.producers[to].as_mut() else {
                i += 1;
                continue;
            };
            let q = &mut self.overflow[to];
            while let Some(env) = q.pop_front() {
                if let Err(full) = p.push(env) {
                    q.push_front(full.0);
                    break;
                }
            }
            let published = p.publish();
            if published > 0 {
                self.mesh.nodes[to].notify();
            }
            if self.overflow[to].is_empty() {
                self.is_dirty[to] = false;
                self.dirty.swap_remove(i);
            } else {
                still += 1;
                i += 1;
            }
        }
        if self.sent > 0 {
            self.mesh.nodes[self.me]
                .metrics
                .messages_out
                .fetch_add(self.sent, Ordering::Relaxed);
            self.sent = 0;
        }
        still
    }

    pub(crate) fn has_overflow(&self) -> bool {
        !self.dirty.is_empty()
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // Dropped by this thread's TLS teardown without `uninstall` (e.g. a thread unwinding):
        // the cursor must not outlive what it points into. (Dropped elsewhere, this only costs
        // that thread its next fast path.)
        disarm_cursor();
        for to in 0..self.last.len() {
            self.reset_last(to);
        }
    }
}

/// What [`Outbound`] remembers of the last keyed push to one target.
struct Last {
    key: usize,
    /// 0: nothing to merge into.
    kind: u8,
    /// Send credits held for `key` (e.g. reserved mailbox slots), spent by [`merge_with_credit`] and
    /// handed back through `release` when the entry is reset (next push, flush, drop).
    credits: u32,
    release: Option<unsafe fn(usize, usize)>,
}

impl Last {
    const NONE: Last = Last {
        key: 0,
        kind: 0,
        credits: 0,
        release: None,
    };
}

/// The fast path of [`send_keyed`] for a sender streaming to one key: when this thread holds a
/// send credit for `key` on its ring to `to` (see [`send_keyed`]), one credit is spent, and if
/// the last envelope sent to `to` is still unpublished and carries `key`, `merge` may fold `v`
/// into it (given the envelope and its kind). With the credits spent, `grant` may hand a new
/// chunk (the key's `release` from [`send_keyed`] stays), and `arm` re-arms the streaming
/// cursor as in [`send_keyed`]. Returns `Ok` when merged; `Err((v, true))` when
/// a credit was spent but `v` could not be merged (batch full or published: the caller sends
/// it through [`send_keyed`] without reserving again); `Err((v, false))` when no credit was
/// held. One thread-local access in all.
#[inline]
pub(crate) fn merge_with_credit<V>(
    mesh: &MeshShared,
    to: usize,
    key: usize,
    v: V,
    merge: impl FnOnce(&mut Envelope, u8, V) -> Result<(), V>,
    grant: impl FnOnce() -> u32,
    arm: impl FnOnce(&mut Envelope, u8) -> Option<*mut ()>,
) -> Result<(), (V, bool)> {
    with_outbound(|o| {
        let Some(Ok(mut g)) = o.map(|o| o.try_borrow_mut()) else {
            return Err((v, false));
        };
        let Some(ob) = g.as_mut() else {
            return Err((v, false));
        };
        if ob.mesh.id != mesh.id || to >= ob.last.len() {
            return Err((v, false));
        }
        let l = &mut ob.last[to];
        if l.key != key || l.kind == 0 {
            return Err((v, false));
        }
        if l.credits == 0 {
            // Streaming to `key` with the credits spent: take the next chunk in one step.
            if l.release.is_none() {
                return Err((v, false));
            }
            l.credits = grant();
            if l.credits == 0 {
                return Err((v, false));
            }
        }
        l.credits -= 1;
        let Some((env, kind)) = ob.last_keyed(to, key) else {
            return Err((v, true));
        };
        let kind = *kind;
        merge(env, kind, v).map_err(|v| (v, true))?;
        ob.arm_cursor(to, key, arm);
        Ok(())
    })
}

/// Flushes the current thread's outbound rings, if it has any.
pub(crate) fn flush_current() -> usize {
    with_outbound(|o| match o.map(|o| o.try_borrow_mut()) {
        Some(Ok(mut g)) => g.as_mut().map_or(0, |ob| ob.flush()),
        _ => 0,
    })
}

/// True when the current thread has unflushed overflow.
pub(crate) fn current_has_overflow() -> bool {
    with_outbound(|o| {
        o.and_then(|o| o.try_borrow().ok())
            .is_some_and(|g| g.as_ref().is_some_and(|ob| ob.has_overflow()))
    })
}

/// The mesh node the current thread is, if it belongs to `mesh`.
pub(crate) fn current_node(mesh_id: u64) -> Option<usize> {
    own_node()
        .filter(|&(mesh, _)| mesh == mesh_id)
        .map(|(_, node)| node)
}

/// Sends `env` to node `to`: over this thread's ring if it is a node of the same mesh (published
/// at the next flush), else through the target's injector with an immediate wake-up.
pub(crate) fn send(mesh: &MeshShared, to: usize, env: Envelope) {
    if let Err(env) = push_own(mesh.id, to, env, false) {
        let node = &mesh.nodes[to];
        node.injector.push(env);
        node.notify();
    }
}

/// Sends a signal envelope (e.g. a task wake-up or an answer) to app worker `to` of mesh
/// `mesh_id` over this thread's ring and publishes all of this thread's pending sends with it.
/// Gives the envelope back when this thread is not another node of that mesh, `to` is not one
/// of its app workers (an external node may have nobody draining its ring), or this thread's
/// ring ends are in use (a signal raised from inside a send).
pub(crate) fn send_signal(mesh_id: u64, to: usize, env: Envelope) -> Result<(), Envelope> {
    push_own(mesh_id, to, env, true)
}

/// Like [`send_signal`] but to any node, published with this thread's other sends (end of
/// turn): for housekeeping that nobody waits for, such as a buffer going home.
pub(crate) fn send_deferred(mesh_id: u64, to: usize, env: Envelope) -> Result<(), Envelope> {
    push_own(mesh_id, to, env, false)
}

/// Pushes `env` onto this thread's ring to `to` if this thread is another node of mesh
/// `mesh_id`; `signal`: only to app workers, and published at once.
fn push_own(mesh_id: u64, to: usize, env: Envelope, signal: bool) -> Result<(), Envelope> {
    with_outbound(|o| {
        let Some(Ok(mut g)) = o.map(|o| o.try_borrow_mut()) else {
            return Err(env);
        };
        let limit = |ob: &Outbound| match signal {
            true => ob.mesh.app_workers,
            false => ob.producers.len(),
        };
        match g.as_mut() {
            Some(ob) if ob.mesh.id == mesh_id && ob.me != to && to < limit(ob) => {
                ob.push(to, env);
                if signal {
                    ob.flush();
                }
                Ok(())
            }
            _ => Err(env),
        }
    })
}

/// Sends `v` to node `to` under `key` (e.g. a mailbox address): when the last envelope this
/// thread sent to `to` is still unpublished and was sent under the same key, `merge` folds `v`
/// into it (it gets the envelope and its kind, and may change the kind); otherwise, or when
/// `merge` hands `v` back, `make` wraps `v` in a new envelope and names its kind (non-zero);
/// its flag is true when the previous envelope for `key` was just filled (more will likely
/// follow: a batch may be started at once).
///
/// Credits: after a merge, when the thread holds no credits for `key`, `grant` may hand it some
/// (e.g. mailbox slots reserved in one atomic step instead of one per message); [`merge_with_credit`]
/// spends them and they go back through `release(key, n)` when this entry is reset (the next
/// push to `to`, the end of the scheduler turn, or the thread leaving the mesh). While credits
/// are held and the envelope for `key` can take more, `arm` hands its payload to this thread's
/// streaming cursor ([`cursor_send`]), so the next sends skip this function altogether.
///
/// Contract for callers: every envelope sent under one key is built by the same code, so
/// `merge` knows each kind's payload type; merging keeps order, as only the most recent push to
/// a target is ever extended. `release` must be safe to call with `key` while the credits are
/// held (held credits keep the key's object alive).
#[inline]
pub(crate) fn send_keyed<V>(
    mesh: &MeshShared,
    to: usize,
    key: usize,
    v: V,
    merge: impl FnOnce(&mut Envelope, &mut u8, V) -> Result<(), V>,
    make: impl Fn(V, bool) -> (Envelope, u8),
    (grant, release, arm): (
        impl FnOnce() -> u32,
        unsafe fn(usize, usize),
        impl FnOnce(&mut Envelope, u8) -> Option<*mut ()>,
    ),
) {
    let rest = with_outbound(|o| {
        let Some(Ok(mut g)) = o.map(|o| o.try_borrow_mut()) else {
            return Some(v);
        };
        match g.as_mut() {
            Some(ob) if ob.mesh.id == mesh.id && ob.me != to => {
                let (v, streaming) = match ob.last_keyed(to, key) {
                    Some((env, kind)) => match merge(env, kind, v) {
                        Ok(()) => {
                            let l = &mut ob.last[to];
                            if l.credits == 0 {
                                l.credits = grant();
                                l.release = Some(release);
                            }
                            ob.arm_cursor(to, key, arm);
                            return None;
                        }
                        Err(v) => {
                            // The batch is full: let the target start on it now.
                            ob.publish_now(to);
                            (v, true)
                        }
                    },
                    // Published mid-turn while this thread streams to `key` (it holds credits).
                    None => (v, ob.last[to].key == key && ob.last[to].credits > 0),
                };
                let (env, kind) = make(v, streaming);
                debug_assert!(kind != 0, "kind 0 means none");
                // Credits held for this key survive a new envelope for the same key.
                if ob.last[to].key != key {
                    ob.reset_last(to);
                }
                ob.push_env(to, env);
                let l = &mut ob.last[to];
                l.key = key;
                l.kind = kind;
                ob.arm_cursor(to, key, arm);
                None
            }
            _ => Some(v),
        }
    });
    if let Some(v) = rest {
        let node = &mesh.nodes[to];
        node.injector.push(make(v, false).0);
        node.notify();
    }
}

/// Runs one envelope; a panic inside is logged and contained (it never unwinds the worker loop).
fn run_envelope(env: Envelope) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.run())) {
        tracing::error!(panic = %super::executor::panic_message(&*p), "a cross-core envelope panicked");
    }
}

/// The current thread's mesh and node index, if it is a node of some runtime.
pub(crate) fn current_mesh() -> Option<(Arc<MeshShared>, usize)> {
    with_outbound(|o| {
        o.and_then(|o| o.try_borrow().ok())
            .and_then(|g| g.as_ref().map(|ob| (ob.mesh.clone(), ob.me)))
    })
}

/// The receiving side a node's thread owns.
pub(crate) struct Inbound {
    pub(crate) consumers: Vec<Consumer<Envelope>>,
}

impl Inbound {
    /// Runs up to `budget` envelopes from the injector and each ring. Returns how many ran.
    pub(crate) fn drain(&mut self, node: &NodeShared, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            match node.injector.pop() {
                Some(env) => {
                    run_envelope(env);
                    n += 1;
                }
                None => break,
            }
        }
        // The depth gauge: what waited in the rings when this turn began draining them (one
        // more load of each tail, whose line the batch pop reads next anyway).
        let mut depth = 0;
        for c in &mut self.consumers {
            depth += c.len();
            n += c.pop_batch(budget, run_envelope);
        }
        node.metrics
            .ring_depth
            .store(depth as u64, Ordering::Relaxed);
        if n > 0 {
            node.metrics
                .messages_in
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Drops every waiting envelope without running it (worker exit).
    pub(crate) fn discard(&mut self, node: &NodeShared) {
        while node.injector.pop().is_some() {}
        for c in &mut self.consumers {
            c.pop_batch(usize::MAX, drop);
        }
    }

    /// True when any envelope is waiting.
    pub(crate) fn has_pending(&self, node: &NodeShared) -> bool {
        !node.injector.is_empty() || self.consumers.iter().any(|c| !c.is_empty())
    }
}

/// A thread outside the app workers (an I/O or accelerator worker) that has joined the mesh.
///
/// While attached, [`Addr::try_tell`](crate::runtime::Addr::try_tell) and friends called on this
/// thread go over this node's rings, unpublished until [`ExternalNode::flush`]: call it once per
/// event-loop iteration. Closures other threads send with
/// [`Handle::run_on_node`](crate::runtime::Handle::run_on_node) run in
/// [`ExternalNode::run_pending`]. Not `Send`: it belongs to the thread that attached it.
pub struct ExternalNode {
    id: usize,
    mesh: Arc<MeshShared>,
    inbound: Inbound,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ExternalNode {
    pub(crate) fn attach(
        mesh: &Arc<MeshShared>,
        index: usize,
    ) -> Result<Self, super::RuntimeError> {
        let slot = mesh
            .pending_external
            .get(index)
            .ok_or(super::RuntimeError::ExternalNode {
                index,
                reason: "index out of range (the config reserves io_workers + accel_workers external nodes)",
            })?;
        let ends = slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(super::RuntimeError::ExternalNode {
                index,
                reason: "already attached by another thread",
            })?;
        let id = mesh.app_workers + index;
        if current_node(mesh.id).is_some() {
            return Err(super::RuntimeError::ExternalNode {
                index,
                reason: "this thread is already a node of this runtime",
            });
        }
        Outbound::new(mesh.clone(), id, ends.outbound).install();
        Ok(ExternalNode {
            id,
            mesh: mesh.clone(),
            inbound: Inbound {
                consumers: ends.inbound,
            },
            _not_send: std::marker::PhantomData,
        })
    }

    /// This node's index in the mesh (app workers are `0..workers`, external nodes follow).
    pub fn id(&self) -> usize {
        self.id
    }

    /// Sets the function other threads call to wake this node's loop when they publish to it
    /// (e.g. write an eventfd or a `mio::Waker`).
    pub fn set_wake(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.mesh.nodes[self.id]
            .notifier
            .set(Notifier::custom(wake));
    }

    /// Publishes every envelope pushed since the last flush and wakes the targets.
    pub fn flush(&self) {
        flush_current();
    }

    /// Runs up to `max` closures sent to this node. Returns how many ran.
    pub fn run_pending(&mut self, max: usize) -> usize {
        self.inbound.drain(&self.mesh.nodes[self.id], max)
    }

    /// True when closures are waiting for [`ExternalNode::run_pending`].
    pub fn has_pending(&self) -> bool {
        self.inbound.has_pending(&self.mesh.nodes[self.id])
    }
}

impl Drop for ExternalNode {
    fn drop(&mut self) {
        flush_current();
        if let Some(mut ob) = Outbound::uninstall() {
            // Envelopes still waiting for ring room go through the injectors instead.
            for (to, q) in ob.overflow.iter_mut().enumerate() {
                for env in q.drain(..) {
                    self.mesh.nodes[to].injector.push(env);
                    self.mesh.nodes[to].notify();
                }
            }
            // Give the ring ends back so another thread may attach later.
            let idx = self.id - self.mesh.app_workers;
            let inbound = std::mem::take(&mut self.inbound.consumers);
            *self.mesh.pending_external[idx]
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(NodeEnds {
                outbound: std::mem::take(&mut ob.producers),
                inbound,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The streaming cursor against a real ring, on one thread (runs under Miri).

    use super::*;

    thread_local! {
        static SEEN: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
        static RELEASED: Cell<usize> = const { Cell::new(0) };
    }

    /// A batch of values for one key, inline in the envelope (24 bytes).
    struct Acc {
        key: usize,
        items: Vec<u64>,
    }

    impl Payload for Acc {
        fn run(self) {
            SEEN.with(|s| {
                s.borrow_mut()
                    .extend(self.items.iter().map(|&v| (self.key, v)))
            });
        }
    }

    use super::super::envelope::Payload;

    const MAX: usize = 4;
    const GRANT: u32 = 3;

    fn push(acc: &mut Acc, v: u64) -> Result<(), u64> {
        if acc.items.len() >= MAX {
            return Err(v);
        }
        acc.items.push(v);
        Ok(())
    }

    unsafe fn release(_key: usize, n: usize) {
        RELEASED.with(|r| r.set(r.get() + n));
    }

    fn arm(env: &mut Envelope, _kind: u8) -> Option<*mut ()> {
        // SAFETY: every envelope in this test is an `Acc`.
        let a: *mut Acc = unsafe { env.payload_mut::<Acc>() };
        Some(a.cast())
    }

    /// One send the way the actor layer does it: cursor, then credit merge, then `send_keyed`.
    /// Returns how many credits were granted and whether the send spent one.
    fn send(mesh: &MeshShared, key: usize, v: u64) -> (u32, bool) {
        let mut granted = 0;
        // SAFETY: the payload under every key is an `Acc`.
        let append = |p: *mut (), v| {
            // SAFETY: as above.
            push(unsafe { &mut *p.cast::<Acc>() }, v)
        };
        // SAFETY: as above.
        let r = unsafe { cursor_send(key, v, append) };
        let Err(v) = r else { return (0, true) };
        let merge = |env: &mut Envelope, _kind: u8, v| {
            // SAFETY: as above.
            push(unsafe { env.payload_mut::<Acc>() }, v)
        };
        let (v, spent) = match merge_with_credit(
            mesh,
            1,
            key,
            v,
            merge,
            || {
                granted += GRANT;
                GRANT
            },
            arm,
        ) {
            Ok(()) => return (granted, true),
            // A credit spent, the batch full: a new envelope without reserving.
            Err((v, spent)) => (v, spent),
        };
        send_keyed(
            mesh,
            1,
            key,
            v,
            |env, _kind, v| {
                // SAFETY: as above.
                push(unsafe { env.payload_mut::<Acc>() }, v)
            },
            |v, _| {
                let acc = Acc {
                    key,
                    items: vec![v],
                };
                (Envelope::with_payload(acc), 1)
            },
            (
                || {
                    granted += GRANT;
                    GRANT
                },
                release,
                arm,
            ),
        );
        (granted, spent)
    }

    #[test]
    fn cursor_appends_in_order_and_spends_only_held_credits() {
        let (mesh, mut ends) = MeshShared::new(2, 0, 64, 64);
        let mut inbound = std::mem::take(&mut ends[1].inbound);
        let out = std::mem::take(&mut ends[0].outbound);
        Outbound::new(mesh.clone(), 0, out).install();
        let (ka, kb) = (0x1000usize, 0x2000usize);
        let (mut granted, mut spent) = (0u32, 0u32);
        let mut expect = Vec::new();
        for i in 0..60u64 {
            // Runs of five per key; a flush (end of turn) every 13 sends.
            let key = if (i / 5) % 2 == 0 { ka } else { kb };
            let (g, s) = send(&mesh, key, i);
            granted += g;
            spent += u32::from(s);
            expect.push((key, i));
            if i % 13 == 12 {
                flush_current();
            }
        }
        flush_current();
        let ob = Outbound::uninstall().expect("installed above");
        drop(ob);
        while let Some(env) = inbound[0].pop() {
            env.run();
        }
        let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
        assert_eq!(seen, expect);
        // Credits: every one granted was either spent on a send or handed back.
        let released = RELEASED.with(Cell::get) as u32;
        assert!(spent > 0, "streams of five spend credits");
        assert_eq!(granted, spent + released, "granted = spent + handed back");
    }
}
