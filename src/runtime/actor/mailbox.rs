//! The mailbox: the bound every sender sees (an atomic count of reserved slots), the actor's
//! state word, the senders waiting for room, and the owner-local queue. Owns reservation,
//! delivery on the owner worker, the room waiters and termination; the cross-core batch format
//! and send credits are `batch.rs`'s, the task that drains the queue is `run.rs`'s.
//!
//! Reservation protocol: see `slots.rs` (and its loom models): a sender reserves a slot with
//! one `fetch_add` on `len`, then delivers; the owner releases slots after handling; a sender
//! finding the mailbox full registers its waker and re-checks, so it never sleeps while room
//! exists.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Poll, Waker};

use super::dead_letters::DeadLetterReason;
use super::item::{Queued, queued};
use super::owner_cell::OwnerCell;
use super::slots::{Full, Slots};
use super::stats::TypeStats;
use crate::runtime::envelope::Envelope;
use crate::runtime::executor::current_exec_id;
use crate::runtime::mesh::{self, MeshShared};
use crate::runtime::sync::{AtomicU32, AtomicUsize, Mutex};

pub(super) const OPEN: u8 = 0;
pub(super) const DRAINING: u8 = 1;
pub(super) const STOP_NOW: u8 = 2;
pub(super) const TERMINATED: u8 = 3;

/// Exit signals in [`LocalQueue::exit`] (owner-local; the detailed reason of `SIG_EXIT`, if
/// any, waits in the runtime's [`Watch`](super::watch::Watch) table).
pub(super) const SIG_NONE: u8 = 0;
/// Stop now: killed, a linked actor failed, or [`Context::fail`](super::Context::fail).
pub(super) const SIG_EXIT: u8 = 1;
/// Stop now because the supervisor restarts this actor's group (not its own failure).
pub(super) const SIG_RESTART: u8 = 2;
/// [`Context::stop`](super::Context::stop): a normal exit.
pub(super) const SIG_SELF_STOP: u8 = 3;

/// Most send credits one sender holds for one mailbox (see [`Mailbox::grant_credits`]).
const CREDIT_CHUNK: usize = 64;

pub(super) struct LocalQueue<M> {
    pub(super) queue: VecDeque<Queued<M>>,
    /// The actor task's waker, kept between wake-ups (no clone and drop per message).
    pub(super) waker: Option<Waker>,
    /// The task has been woken since it last found the queue empty: further deliveries need
    /// not wake it again.
    pub(super) notified: bool,
    /// Owner-side copies of the two states the owner checks per message, so the owner never
    /// reads the sender-written cache line (see [`Mailbox`]'s layout).
    pub(super) stop_now: bool,
    pub(super) terminated: bool,
    /// A pending exit signal (`SIG_*`); `stop_now` is set with it.
    pub(super) exit: u8,
    /// Run by a supervisor: exits decide about a restart instead of closing the mailbox.
    pub(super) supervised: bool,
}

impl<M> LocalQueue<M> {
    /// Wakes the actor task after a delivery, unless it was already woken.
    fn notify(&mut self) {
        if !self.notified
            && let Some(w) = &self.waker
        {
            self.notified = true;
            w.wake_by_ref();
        }
    }
}

/// The shared part of an actor: capacity accounting, state, and the owner-local queue.
///
/// Layout (`repr(C)`, measured, see BENCHMARKS.md): the fields every sender reads or writes
/// per message come first; the queue the owner writes per message comes last, with at least
/// 64 bytes of rarely touched fields between them, so the two never share a cache line
/// whatever the allocation's alignment. Sharing one cost 45 % of cross-core `tell` throughput.
/// The whole struct stays at 184 bytes: the "1 M idle actors < 512 MiB" target depends on it.
#[repr(C)]
pub(crate) struct Mailbox<M> {
    // --- sender side: touched by every send ---
    /// Reserved slots: messages queued or in flight.
    pub(super) len: AtomicUsize,
    pub(super) capacity: usize,
    /// Executor id of the owner worker.
    pub(super) owner: u64,
    pub(crate) mesh: Arc<MeshShared>,
    pub(super) room_waiters: AtomicU32,
    pub(super) node: u32,
    /// Key in the runtime's actor index.
    pub(super) index_key: u32,
    pub(super) state: AtomicU8,
    // --- cold: touched on blocking, start, stop and in reports ---
    pub(super) room: Mutex<Vec<Waker>>,
    pub(crate) seq: u64,
    /// Set once when the actor starts (it comes from the actor value).
    pub(super) name: std::sync::OnceLock<ActorName>,
    // --- owner side: touched per message on the owner worker only ---
    pub(super) local: OwnerCell<LocalQueue<M>>,
}

impl<M: Send + 'static> Mailbox<M> {
    pub(crate) fn new(
        mesh: Arc<MeshShared>,
        node: usize,
        owner: u64,
        capacity: usize,
    ) -> Arc<Self> {
        let registry = mesh.clone();
        registry.actors.register(|seq, index_key| {
            Arc::new(Mailbox {
                len: AtomicUsize::new(0),
                capacity: capacity.max(1),
                owner,
                mesh,
                room_waiters: AtomicU32::new(0),
                node: node as u32,
                index_key,
                state: AtomicU8::new(OPEN),
                room: Mutex::new(Vec::new()),
                seq,
                name: std::sync::OnceLock::new(),
                local: OwnerCell::new(LocalQueue {
                    queue: VecDeque::new(),
                    waker: None,
                    notified: false,
                    stop_now: false,
                    terminated: false,
                    exit: SIG_NONE,
                    supervised: false,
                }),
            })
        })
    }

    pub(crate) fn node(&self) -> usize {
        self.node as usize
    }

    /// Runs `f` on the owner-local queue; `None` when called off the owner worker (or
    /// re-entrantly).
    #[inline]
    pub(super) fn local<R>(&self, f: impl FnOnce(&mut LocalQueue<M>) -> R) -> Option<R> {
        self.local.with(self.owner, f)
    }

    pub(super) fn unindex(&self) {
        self.mesh.actors.unregister(self.seq, self.index_key);
    }

    /// The reservation fields, as the protocol in `slots.rs` sees them.
    #[inline]
    pub(super) fn slots(&self) -> Slots<'_> {
        Slots {
            len: &self.len,
            capacity: self.capacity,
            waiters: &self.room_waiters,
            room: &self.room,
        }
    }

    #[inline]
    pub(super) fn try_reserve(&self) -> Result<(), Reserve> {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Err(Reserve::Stopped);
        }
        self.slots().reserve().map_err(|Full| Reserve::Full)
    }

    /// Reserves up to [`CREDIT_CHUNK`] slots at once for a sender that is streaming messages
    /// to this mailbox from another core: it then spends them without touching the shared
    /// counter (a locked add per message drained the sender's store buffer every time and was
    /// a third of its time). Unused credits go back at the end of the sender's scheduler turn.
    pub(super) fn grant_credits(&self) -> u32 {
        let chunk = CREDIT_CHUNK.min(self.capacity / 8);
        if chunk < 2 || self.state.load(Ordering::Acquire) != OPEN {
            return 0;
        }
        match self.slots().reserve_chunk(chunk) {
            Ok(()) => chunk as u32,
            Err(Full) => 0,
        }
    }

    #[inline]
    pub(super) fn release(&self, n: usize) {
        self.slots().release(n);
    }

    /// Releases the slots of `n` handled messages and counts them as handled.
    #[inline]
    pub(super) fn release_handled(&self, n: usize) {
        self.slots().release(n);
        self.stats().add_handled(n as u64);
    }

    /// Wakes every sender waiting for room.
    pub(super) fn wake_room(&self) {
        self.slots().wake_all();
    }

    pub(super) fn register_room(&self, w: &Waker) {
        self.slots().register(w);
    }

    /// Puts a reserved message into the queue. Runs on the owner thread.
    ///
    /// Not `deliver_batch(iter::once(msg))`: that measured 3-6 % slower on same-core `tell`
    /// and `ask` (A/B, three alternating runs).
    pub(super) fn deliver_local(&self, msg: M) {
        self.deliver_item(queued(msg));
    }

    /// Puts a reserved message sent from inside span `parent` into the queue. Runs on the
    /// owner thread.
    #[cfg(feature = "trace-context")]
    pub(super) fn deliver_traced(&self, msg: M, parent: tracing::Span) {
        self.deliver_item(super::item::Item { msg, parent });
    }

    #[inline]
    fn deliver_item(&self, item: Queued<M>) {
        let r = self.local(|l| {
            if l.terminated {
                return Err(item);
            }
            l.queue.push_back(item);
            l.notify();
            Ok(())
        });
        match r {
            Some(Ok(())) => {}
            Some(Err(item)) => {
                drop(item);
                self.release(1);
                self.dead_letters(DeadLetterReason::Terminated, 1);
            }
            None => unreachable!("deliveries run only on the owner worker"),
        }
    }

    /// Puts a batch of reserved messages into the queue, in order. Runs on the owner thread.
    pub(super) fn deliver_batch(&self, msgs: impl ExactSizeIterator<Item = M>) {
        let n = msgs.len();
        let r = self.local(|l| {
            if l.terminated {
                return Err(msgs);
            }
            #[cfg(not(feature = "trace-context"))]
            l.queue.extend(msgs);
            #[cfg(feature = "trace-context")]
            l.queue.extend(msgs.map(queued));
            l.notify();
            Ok(())
        });
        match r {
            Some(Ok(())) => {}
            Some(Err(msgs)) => {
                msgs.for_each(drop);
                self.release(n);
                self.dead_letters(DeadLetterReason::Terminated, n);
            }
            None => unreachable!("deliver_batch runs only on the owner worker"),
        }
    }

    pub(super) fn wake_task(self: &Arc<Self>) {
        if current_exec_id() == self.owner {
            if let Some(Some(w)) = self.local(|l| l.waker.take()) {
                w.wake();
            }
        } else {
            let mb = self.clone();
            mesh::send(
                &self.mesh,
                self.node as usize,
                Envelope::new(move || {
                    if let Some(Some(w)) = mb.local(|l| l.waker.take()) {
                        w.wake();
                    }
                }),
            );
        }
    }

    /// Final state change, on the owner worker: no more messages are taken; what is still queued
    /// is dropped (its asks fail) and its slots released; waiting senders are woken (they see
    /// `Stopped`); the actor leaves the shutdown index.
    pub(super) fn terminate(&self) {
        self.state.store(TERMINATED, Ordering::Release);
        let rest: Vec<Queued<M>> = self
            .local(|l| {
                l.terminated = true;
                l.stop_now = true;
                l.waker = None;
                l.queue.drain(..).collect()
            })
            .unwrap_or_default();
        let n = rest.len();
        drop(rest);
        if n > 0 {
            self.release(n);
            self.dead_letters(DeadLetterReason::ActorStopped, n);
        }
        self.wake_room();
        self.unindex();
        self.mesh.actors.names.forget(self.seq);
    }

    /// Records `n` messages to this actor dropped for `reason`.
    /// The counters of this actor's type on its worker (set when the actor starts).
    #[inline]
    pub(super) fn stats(&self) -> &TypeStats {
        self.name
            .get()
            .expect("an actor's name and counters are set when it starts, before any use")
            .stats()
    }

    pub(super) fn dead_letters(&self, reason: DeadLetterReason, n: usize) {
        self.mesh.actors.dead_letters.record(
            &ActorProbe::name(self),
            self.seq,
            std::any::type_name::<M>(),
            reason,
            n,
        );
    }

    /// Sends exit signal `code` (`SIG_EXIT` or `SIG_RESTART`) to the actor: on its worker it
    /// sets the owner-local flags and wakes the task. An unsupervised actor killed with
    /// `SIG_EXIT` also refuses new messages at once.
    pub(super) fn signal(self: &Arc<Self>, code: u8) {
        let apply = move |mb: &Mailbox<M>| {
            let wake = mb.local(|l| {
                if l.terminated {
                    return None;
                }
                if l.exit == SIG_NONE || code == SIG_EXIT {
                    l.exit = code;
                }
                l.stop_now = true;
                if !l.supervised && code == SIG_EXIT {
                    mb.set_state(STOP_NOW);
                }
                l.notified = true;
                l.waker.take()
            });
            if let Some(Some(w)) = wake {
                w.wake();
            }
            mb.wake_room();
        };
        if current_exec_id() == self.owner {
            apply(self);
        } else {
            let mb = self.clone();
            mesh::send(
                &self.mesh,
                self.node as usize,
                Envelope::new(move || apply(&mb)),
            );
        }
    }

    pub(super) fn set_state(&self, from_open_or_draining: u8) -> bool {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur >= from_open_or_draining {
                return false;
            }
            match self.state.compare_exchange(
                cur,
                from_open_or_draining,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }
}

pub(super) enum Reserve {
    Full,
    Stopped,
}

/// Waits (on the owner worker) until no reserved message is in flight, so that dropping the
/// caller's `Arc` cannot leave an envelope with a dangling [`MailboxPtr`].
pub(super) async fn drain_in_flight<M: Send + 'static>(mb: &Mailbox<M>) {
    std::future::poll_fn(|cx| {
        if mb.slots().reserved() == 0 {
            return Poll::Ready(());
        }
        mb.register_room(cx.waker());
        if mb.slots().reserved() == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// An actor's name and its type's counters on its worker: the type name (the default, no
/// allocation) or a name of its own. The counters ride here because an idle actor's task has
/// no byte to spare for them (see `run.rs`).
pub(crate) enum ActorName {
    Type(Arc<TypeStats>),
    Custom(Box<(Arc<TypeStats>, Cow<'static, str>)>),
}

impl ActorName {
    /// The name of an actor whose [`Actor::name`](super::Actor::name) is `name`, counted in
    /// `stats` (its type's cell on its worker).
    pub(super) fn new(stats: Arc<TypeStats>, name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(n) if n == stats.type_name => ActorName::Type(stats),
            n => ActorName::Custom(Box::new((stats, n))),
        }
    }

    pub(super) fn stats(&self) -> &TypeStats {
        match self {
            ActorName::Type(t) => t,
            ActorName::Custom(b) => &b.0,
        }
    }

    fn type_name(&self) -> &'static str {
        self.stats().type_name
    }

    fn as_str(&self) -> &str {
        match self {
            ActorName::Type(t) => t.type_name,
            ActorName::Custom(b) => &b.1,
        }
    }
}

/// What shutdown, supervision, links and reports need of any actor, whatever its type.
pub(crate) trait ActorProbe: Send + Sync {
    fn name(&self) -> String;
    /// The actor's Rust type ("actor (not started)" before it starts).
    fn type_name(&self) -> &'static str;
    fn id(&self) -> u64;
    /// Messages queued or in flight.
    fn depth(&self) -> u64;
    /// Sends the exit signal (`SIG_EXIT`): the reason waits in the runtime's watch table.
    fn signal_exit(self: Arc<Self>);
    /// Sends the restart signal (`SIG_RESTART`, supervised actors only).
    fn signal_restart(self: Arc<Self>);
    /// Stops the actor for good now (queued messages become dead letters).
    fn kill_for_good(self: Arc<Self>);
    /// Counts a `Down` notice that could not be delivered to this actor.
    fn record_undelivered_notice(&self);
    fn node(&self) -> usize;
    /// Graceful stop: refuse new messages, handle what is queued or in flight, then stop.
    fn begin_stop(self: Arc<Self>);
    fn is_terminated(&self) -> bool;
    fn register_done(&self, w: &Waker);
}

impl<M: Send + 'static> ActorProbe for Mailbox<M> {
    fn name(&self) -> String {
        self.name.get().map_or_else(
            || "actor (not started)".to_string(),
            |n| n.as_str().to_string(),
        )
    }
    fn type_name(&self) -> &'static str {
        self.name
            .get()
            .map_or("actor (not started)", ActorName::type_name)
    }
    fn id(&self) -> u64 {
        self.seq
    }
    fn depth(&self) -> u64 {
        self.len.load(Ordering::Relaxed).min(self.capacity) as u64
    }
    fn signal_exit(self: Arc<Self>) {
        self.signal(SIG_EXIT);
    }
    fn signal_restart(self: Arc<Self>) {
        self.signal(SIG_RESTART);
    }
    fn kill_for_good(self: Arc<Self>) {
        if self.set_state(STOP_NOW) {
            self.signal(SIG_EXIT);
        }
    }
    fn record_undelivered_notice(&self) {
        self.dead_letters(DeadLetterReason::NoticeUndelivered, 1);
    }
    fn node(&self) -> usize {
        self.node as usize
    }
    fn begin_stop(self: Arc<Self>) {
        if self.set_state(DRAINING) {
            self.wake_room();
            self.wake_task();
        }
    }
    fn is_terminated(&self) -> bool {
        self.state.load(Ordering::Acquire) == TERMINATED
    }
    fn register_done(&self, w: &Waker) {
        self.register_room(w);
    }
}

/// Waits until the actor behind `probe` has terminated.
pub(crate) async fn wait_terminated(probe: &dyn ActorProbe) {
    std::future::poll_fn(|cx| {
        if probe.is_terminated() {
            return Poll::Ready(());
        }
        probe.register_done(cx.waker());
        if probe.is_terminated() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
