//! The mesh: one SPSC ring for every ordered pair of nodes (app workers first, then external
//! nodes such as I/O workers), plus a crossbeam MPMC injector per node for threads outside the
//! mesh. Owns message transport between threads and the wake-up of sleeping nodes; knows nothing
//! of what the envelopes do (actors, tasks and transports give it closures). It carries the
//! runtime's actor registry for the actor layer (every mailbox already holds the mesh) but never
//! reads it.
//!
//! Sends from a mesh thread are batched: an envelope is written into the ring without being
//! published, and the node publishes all its rings at once ([`Outbound::flush`]) at the end of
//! each scheduler turn, waking a target only if it sleeps. When a ring is full the envelope waits
//! in a per-target overflow queue owned by the sender, so nothing is dropped and per-sender order
//! holds; the overflow is bounded because every actor message first reserves a mailbox slot.
//!
//! Keyed sends ([`keyed`]) let a sender fold consecutive messages for one key (a mailbox) into the
//! still-unpublished envelope it pushed last, and hold send credits for that key until the end
//! of its turn; the actor layer uses it for cross-core batches (see `actor/batch.rs`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam::queue::SegQueue;

use super::actor::ActorRegistry;
use super::executor::Notifier;
use super::metrics::NodeMetrics;
use super::ring::{Consumer, Producer, ring};

mod external;
mod inbound;
pub(crate) mod keyed;
mod outbound;

pub use external::ExternalNode;
pub(crate) use inbound::Inbound;
use keyed::disarm_cursor;
#[cfg_attr(feature = "trace-context", allow(unused_imports))]
pub(crate) use keyed::{KeyedSink, Kind, SendKey, cursor_send, merge_with_credit, send_keyed};
pub(crate) use outbound::Outbound;

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
    pub(crate) metrics: Arc<NodeMetrics>,
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
    /// The runtime's live actors: the actor layer's, carried here because every mailbox
    /// already holds the mesh. The mesh itself never reads it.
    pub(crate) actors: ActorRegistry,
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
                    metrics: Arc::new(NodeMetrics::new(i)),
                })
                .collect(),
            app_workers: app,
            pending_external: ext_ends.into_iter().map(|e| Mutex::new(Some(e))).collect(),
            accepting: AtomicBool::new(true),
            actors: ActorRegistry::default(),
            default_mailbox: mailbox,
        });
        (mesh, ends)
    }
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

/// Runs `f` on this thread's outbound slot (`None` once the thread's TLS is being torn down).
/// Disarms the streaming cursor first (see `keyed::Cursor`).
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
