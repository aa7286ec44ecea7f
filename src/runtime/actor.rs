//! Typed actors: the [`Actor`] trait, bounded mailboxes, [`Addr`] (tell, try_tell, ask, stop),
//! [`Reply`] and the per-actor [`Context`] (address, worker, timers, stop).
//!
//! An actor lives on one app worker for its whole life and is driven by one task there; its
//! state is `&mut self`, never shared. Its mailbox bound is enforced by an atomic count of
//! reserved slots, so every sender on every core sees the same capacity; the queue itself lives
//! on the owner worker and is touched only there. A message from the actor's own worker is
//! pushed straight into the queue; one from another worker crosses that worker's SPSC ring.
//!
//! Ordering: messages from one sender (one task, actor or thread) to one actor arrive in the
//! order sent, none lost or duplicated. Messages from *different* senders are not causally
//! ordered (as in Akka or Orleans): a message sent through the injector may overtake one an
//! app worker published earlier on its ring. A cross-thread wake-up (join, reply) publishes
//! the waker's pending ring sends first.
//!
//! Owns actor lifecycle and mailboxes; must not touch ring internals or thread placement.
//!
//! ```
//! use percore::runtime::{Actor, Context, Reply, Runtime};
//! use std::time::Duration;
//!
//! struct Counter(u64);
//! enum Msg { Add(u64), Get(Reply<u64>) }
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Get(r) => { let _ = r.send(self.0); }
//!         }
//!     }
//! }
//!
//! let rt = Runtime::testing(2).unwrap();
//! let addr = rt.spawn_actor_on(1, || Counter(0)).unwrap();
//! let total = rt.block_on(async move {
//!     for i in 1..=10 { addr.tell(Msg::Add(i)).await.unwrap(); }
//!     addr.ask(Msg::Get, Duration::from_secs(5)).await.unwrap()
//! });
//! assert_eq!(total, 55);
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use super::bufpool;
use super::envelope::{Envelope, Payload};
use super::error::{AskError, SendError, Stopped, TrySendError};
use super::executor::{self, JoinHandle, current_exec_id, panic_message};
use super::mesh::{self, MeshShared};
use super::oneshot;

/// A typed actor. It lives on one app worker, handles one message at a time with `&mut self`,
/// and need not be `Send` (only its messages cross threads).
///
/// Write the handlers as `async fn`. A panic inside a handler stops this actor only: it is
/// logged with the actor's name and the panic message, its pending asks fail, and the worker
/// and its other actors go on.
pub trait Actor: Sized + 'static {
    /// The messages this actor handles; usually an enum. Requests carry a [`Reply`].
    type Msg: Send + 'static;

    /// Runs once on the actor's worker before the first message.
    fn started(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<Self>) -> impl Future<Output = ()>;

    /// Runs once when the actor stops (asked to, its runtime shutting down, or
    /// [`Context::stop`]), after its mailbox has been drained for a graceful stop. Not called
    /// after a panic.
    fn stopping(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// The name used in logs, spans and shutdown reports. Defaults to the type name.
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

const OPEN: u8 = 0;
const DRAINING: u8 = 1;
const STOP_NOW: u8 = 2;
const TERMINATED: u8 = 3;

/// A cell touched only by the thread whose executor owns it.
///
/// Invariant: `cell` is accessed only through [`OwnerCell::with`], called only by
/// [`Mailbox::local`] with the mailbox's immutable `owner`, and `with` checks that the calling
/// thread's current executor is that owner. Executor ids are unique per process and an executor
/// never moves between threads, so at most one thread ever touches `cell` (dropping it from
/// another thread is fine because `T: Send`).
struct OwnerCell<T> {
    cell: RefCell<T>,
}

// SAFETY: the only shared-reference access path to `cell` is `with`, which runs only on the
// owning executor's thread (checked at run time); `T: Send` makes moving/dropping the value on
// another thread sound. So `&OwnerCell<T>` may be shared across threads.
unsafe impl<T: Send> Sync for OwnerCell<T> {}

impl<T> OwnerCell<T> {
    #[inline]
    fn with<R>(&self, owner: u64, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if current_exec_id() != owner {
            return None;
        }
        let mut g = self.cell.try_borrow_mut().ok()?;
        Some(f(&mut g))
    }
}

struct LocalQueue<M> {
    queue: VecDeque<M>,
    /// The actor task's waker, kept between wake-ups (no clone and drop per message).
    waker: Option<Waker>,
    /// The task has been woken since it last found the queue empty: further deliveries need
    /// not wake it again.
    notified: bool,
    /// Owner-side copies of the two states the owner checks per message, so the owner never
    /// reads the sender-written cache line (see [`Mailbox`]'s layout).
    stop_now: bool,
    terminated: bool,
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
    len: AtomicUsize,
    capacity: usize,
    /// Executor id of the owner worker.
    owner: u64,
    pub(crate) mesh: Arc<MeshShared>,
    room_waiters: AtomicU32,
    node: u32,
    /// Key in the runtime's actor index.
    index_key: u32,
    state: AtomicU8,
    // --- cold: touched on blocking, start, stop and in reports ---
    room: Mutex<Vec<Waker>>,
    pub(crate) seq: u64,
    /// Set once when the actor starts (it comes from the actor value).
    name: std::sync::OnceLock<Cow<'static, str>>,
    // --- owner side: touched per message on the owner worker only ---
    local: OwnerCell<LocalQueue<M>>,
}

impl<M: Send + 'static> Mailbox<M> {
    pub(crate) fn new(
        mesh: Arc<MeshShared>,
        node: usize,
        owner: u64,
        capacity: usize,
    ) -> Arc<Self> {
        let seq = mesh.next_actor.fetch_add(1, Ordering::Relaxed);
        let index = mesh.clone();
        let mut index = index.actor_index.lock().unwrap_or_else(|p| p.into_inner());
        let entry = index.vacant_entry();
        let mb = Arc::new(Mailbox {
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            owner,
            mesh,
            room_waiters: AtomicU32::new(0),
            node: node as u32,
            // Slab keys are dense (live actors); 2^32 live actors would need 700 GiB.
            index_key: u32::try_from(entry.key()).expect("fewer than 2^32 live actors"),
            state: AtomicU8::new(OPEN),
            room: Mutex::new(Vec::new()),
            seq,
            name: std::sync::OnceLock::new(),
            local: OwnerCell {
                cell: RefCell::new(LocalQueue {
                    queue: VecDeque::new(),
                    waker: None,
                    notified: false,
                    stop_now: false,
                    terminated: false,
                }),
            },
        });
        // Indexed from the moment the address exists, so shutdown sees actors whose start
        // envelope is still in flight.
        let probe: Arc<dyn ActorProbe> = mb.clone();
        entry.insert((seq, Arc::downgrade(&probe)));
        drop(index);
        mb
    }

    pub(crate) fn node(&self) -> usize {
        self.node as usize
    }

    /// Runs `f` on the owner-local queue; `None` when called off the owner worker (or
    /// re-entrantly).
    #[inline]
    fn local<R>(&self, f: impl FnOnce(&mut LocalQueue<M>) -> R) -> Option<R> {
        self.local.with(self.owner, f)
    }

    fn unindex(&self) {
        let mut index = self
            .mesh
            .actor_index
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if index
            .get(self.index_key as usize)
            .is_some_and(|(s, _)| *s == self.seq)
        {
            index.remove(self.index_key as usize);
        }
    }

    fn room_lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        // Critical sections only push/take wakers: a poisoned lock is still consistent.
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_reserve(&self) -> Result<(), Reserve> {
        if self.state.load(Ordering::Acquire) != OPEN {
            return Err(Reserve::Stopped);
        }
        let prev = self.len.fetch_add(1, Ordering::SeqCst);
        if prev >= self.capacity {
            self.len.fetch_sub(1, Ordering::SeqCst);
            // Our transient over-count may have hidden room from a waiter: re-wake them.
            if self.room_waiters.load(Ordering::SeqCst) > 0 {
                self.wake_room();
            }
            return Err(Reserve::Full);
        }
        Ok(())
    }

    /// The streaming fast path of a cross-core send: if this thread is streaming to this
    /// mailbox (its last envelope to the owner was for it this turn) and holds a send credit (a
    /// slot reserved in advance, see [`Mailbox::grant_credits`]), one credit is spent and the
    /// message goes out without touching the shared counter: appended to the unpublished batch
    /// with no atomic operation, or, when that batch is full or already published,
    /// [`dispatch`](Self::dispatch)ed. Hands `msg` back when no credit is held.
    ///
    /// First tier: this thread's streaming cursor (see `mesh::cursor_send`), armed only for a
    /// mailbox on another worker while send credits are held. It reads neither the shared state
    /// nor the executor: a credit is a slot reserved while the actor was open, and a message
    /// sent with it is handled even if the actor starts draining meanwhile (as if sent just
    /// before the stop); the cursor lasts one scheduler turn at most.
    #[inline]
    fn fast_send(self: &Arc<Self>, msg: M) -> Result<(), M> {
        let key = Arc::as_ptr(self) as usize;
        let push = |p: *mut (), msg| {
            // SAFETY: the payload `arm_batch` returned for this key: a `Batch<M>` of this
            // mailbox, in an unpublished envelope only this thread touches (see
            // `mesh::Cursor`'s invariant and `mesh::merge_with_credit`).
            unsafe { &mut *p.cast::<Batch<M>>() }.push(msg)
        };
        // SAFETY: `push` treats the payload as the `Batch<M>` that `arm_batch` returns for
        // this key.
        let msg = match unsafe { mesh::cursor_send(key, msg, push) } {
            Ok(()) => return Ok(()),
            Err(msg) => msg,
        };
        if current_exec_id() == self.owner || self.state.load(Ordering::Acquire) != OPEN {
            return Err(msg);
        }
        let merged = mesh::merge_with_credit(
            &self.mesh,
            self.node as usize,
            key,
            msg,
            // SAFETY (both closures): envelopes under this mailbox's key come from `dispatch`.
            |env, kind, msg| match unsafe { arm_batch::<M>(env, kind) } {
                Some(p) => push(p, msg),
                None => Err(msg),
            },
            || self.grant_credits(),
            |env, kind| unsafe { arm_batch::<M>(env, kind) },
        );
        match merged {
            Ok(()) => Ok(()),
            // A credit was spent: the slot is reserved, only the batch could not take it.
            Err((msg, true)) => {
                self.dispatch(msg);
                Ok(())
            }
            Err((msg, false)) => Err(msg),
        }
    }

    /// Reserves up to [`CREDIT_CHUNK`] slots at once for a sender that is streaming messages
    /// to this mailbox from another core: it then spends them without touching the shared
    /// counter (a locked add per message drained the sender's store buffer every time and was
    /// a third of its time). Unused credits go back at the end of the sender's scheduler turn.
    fn grant_credits(&self) -> u32 {
        let chunk = CREDIT_CHUNK.min(self.capacity / 8);
        if chunk < 2 || self.state.load(Ordering::Acquire) != OPEN {
            return 0;
        }
        let prev = self.len.fetch_add(chunk, Ordering::SeqCst);
        if prev + chunk > self.capacity {
            self.release(chunk);
            return 0;
        }
        chunk as u32
    }

    fn release(&self, n: usize) {
        self.len.fetch_sub(n, Ordering::SeqCst);
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.wake_room();
        }
    }

    /// Wakes every sender waiting for room. The waiter list keeps its capacity (taking it
    /// would make the next `register_room` allocate); wakers run outside the lock, 8 at a time.
    fn wake_room(&self) {
        loop {
            let mut batch: [Option<Waker>; 8] = Default::default();
            let mut n = 0;
            {
                let mut g = self.room_lock();
                while n < batch.len() {
                    let Some(w) = g.pop() else { break };
                    batch[n] = Some(w);
                    n += 1;
                }
                if g.is_empty() {
                    self.room_waiters.store(0, Ordering::SeqCst);
                }
            }
            for w in batch.iter_mut().take(n) {
                if let Some(w) = w.take() {
                    w.wake();
                }
            }
            if n < batch.len() {
                return;
            }
        }
    }

    fn register_room(&self, w: &Waker) {
        let mut g = self.room_lock();
        if !g.iter().any(|x| x.will_wake(w)) {
            g.push(w.clone());
        }
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
    }

    /// Puts a reserved message into the queue. Runs on the owner thread.
    ///
    /// Not `deliver_batch(iter::once(msg))`: that measured 3-6 % slower on same-core `tell`
    /// and `ask` (A/B, three alternating runs).
    fn deliver_local(&self, msg: M) {
        let r = self.local(|l| {
            if l.terminated {
                return Err(msg);
            }
            l.queue.push_back(msg);
            l.notify();
            Ok(())
        });
        match r {
            Some(Ok(())) => {}
            Some(Err(msg)) => {
                drop(msg);
                self.release(1);
            }
            None => unreachable!("deliver_local runs only on the owner worker"),
        }
    }

    /// Puts a batch of reserved messages into the queue, in order. Runs on the owner thread.
    fn deliver_batch(&self, msgs: impl ExactSizeIterator<Item = M>) {
        let n = msgs.len();
        let r = self.local(|l| {
            if l.terminated {
                return Err(msgs);
            }
            l.queue.extend(msgs);
            l.notify();
            Ok(())
        });
        match r {
            Some(Ok(())) => {}
            Some(Err(msgs)) => {
                msgs.for_each(drop);
                self.release(n);
            }
            None => unreachable!("deliver_batch runs only on the owner worker"),
        }
    }

    /// Sends a message whose slot is reserved: straight into the queue on the owner worker,
    /// otherwise over the mesh.
    ///
    /// The envelope carries a plain pointer, not an `Arc` clone: cloning here and dropping on
    /// the owner would bounce the reference count's cache line between the cores once per
    /// message. See [`MailboxPtr`] for why the pointer stays valid.
    ///
    /// Consecutive messages from one thread to this mailbox within one scheduler turn are
    /// coalesced into one [`Batch`] envelope (see [`mesh::send_keyed`]): the messages then sit
    /// densely in one buffer instead of one ring slot each, which halves the cache lines that
    /// cross cores per message.
    #[inline]
    fn dispatch(self: &Arc<Self>, msg: M) {
        if current_exec_id() == self.owner {
            self.deliver_local(msg);
        } else {
            let p = Arc::as_ptr(self);
            let this: &Self = self;
            mesh::send_keyed(
                &self.mesh,
                self.node as usize,
                p as usize,
                msg,
                // SAFETY (both closures): envelopes sent with this key are only ever built
                // from `Single<M>` or `Batch<M>` for this mailbox (the key is its address,
                // unique while a reserved message keeps it alive), and `kind` says which.
                |env, kind, msg| unsafe { merge::<M>(env, kind, msg) },
                |msg, streaming| match streaming {
                    // More will follow: start the next batch right away.
                    true => (
                        Envelope::with_payload(Batch::one(MailboxPtr(p), msg)),
                        KIND_BATCH,
                    ),
                    false => (
                        Envelope::with_payload(Single {
                            mb: MailboxPtr(p),
                            msg,
                        }),
                        KIND_SINGLE,
                    ),
                },
                (
                    || this.grant_credits(),
                    release_credits::<M>,
                    // SAFETY: as above.
                    |env, kind| unsafe { arm_batch::<M>(env, kind) },
                ),
            );
        }
    }

    fn wake_task(self: &Arc<Self>) {
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
    fn terminate(&self) {
        self.state.store(TERMINATED, Ordering::Release);
        let rest: Vec<M> = self
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
        }
        self.wake_room();
        self.unindex();
    }

    fn set_state(&self, from_open_or_draining: u8) -> bool {
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

enum Reserve {
    Full,
    Stopped,
}

/// A mailbox pointer carried by an in-flight message envelope.
///
/// Invariant (why it is never dangling when used): an envelope is created only after its
/// message reserved a slot, so `len > 0` until the envelope runs (delivery releases the slot as
/// its last access). Every path that lets go of an actor's own `Arc` waits for `len == 0` first:
/// the actor task at termination ([`run_actor`]) and the keeper task of an actor that never
/// started ([`abandon`]); the spawn envelope holds an `Arc` until one of those exists. Envelopes
/// run only on the owner worker, the same thread as those tasks, so the `Arc` cannot go away
/// while an envelope runs. At worker exit, envelopes left over are dropped without running.
struct MailboxPtr<M>(*const Mailbox<M>);

// SAFETY: the pointer is only dereferenced on the owner worker under the invariant above;
// moving it between threads is moving an address. `M: Send` because the message travels with it.
unsafe impl<M: Send> Send for MailboxPtr<M> {}

/// Most send credits one sender holds for one mailbox (see [`Mailbox::grant_credits`]).
const CREDIT_CHUNK: usize = 64;

/// Hands back `n` unused send credits of the mailbox at address `key`.
///
/// # Safety
/// `key` is the address of a live `Mailbox<M>`: held credits are reserved slots, and a reserved
/// slot keeps the mailbox alive (see [`MailboxPtr`]).
unsafe fn release_credits<M: Send + 'static>(key: usize, n: usize) {
    // SAFETY: per the contract.
    let mb = unsafe { &*(key as *const Mailbox<M>) };
    mb.release(n);
}

/// One cross-core message: the envelope payload of a lone `tell`.
struct Single<M> {
    mb: MailboxPtr<M>,
    msg: M,
}

impl<M: Send + 'static> Payload for Single<M> {
    fn run(self) {
        // SAFETY: see `MailboxPtr`'s invariant: the slot this message reserved keeps the
        // mailbox alive until delivery, which is the last access.
        let mb = unsafe { &*self.mb.0 };
        mb.deliver_local(self.msg);
    }
}

/// Several cross-core messages to one mailbox, sent by one thread in one scheduler turn.
///
/// The buffer is held as raw parts so the payload fits an envelope inline (24 bytes). Messages
/// that fit [`Batch::MAX`] of them in 1 KiB use a [`bufpool::Buf`] from the sending thread's
/// pool, and the emptied buffer is sent home to that thread (`home`) to be reused there;
/// larger messages use a `Vec` allocation.
struct Batch<M> {
    mb: MailboxPtr<M>,
    /// A `bufpool::Buf` (when `POOLED`) or a `Vec<M>`'s buffer of capacity `MAX`.
    buf: std::ptr::NonNull<M>,
    /// Messages written at the front of `buf`.
    len: u16,
    /// The sending node + 1, or 0 (buffer freed by the receiver).
    home: u16,
}

// SAFETY: `Batch` owns its messages (`M: Send`) and the buffer (plain memory); see `MailboxPtr`
// for `mb`.
unsafe impl<M: Send> Send for Batch<M> {}

/// Envelope kinds for [`mesh::send_keyed`].
const KIND_SINGLE: u8 = 1;
const KIND_BATCH: u8 = 2;

impl<M> Batch<M> {
    /// Most messages in one batch: 1 KiB of messages, at most 64, at least 4.
    const MAX: usize = {
        let sz = if size_of::<M>() == 0 {
            1
        } else {
            size_of::<M>()
        };
        let n = 1024 / sz;
        if n < 4 {
            4
        } else if n > 64 {
            64
        } else {
            n
        }
    };

    /// Whether the buffer is a pooled 1 KiB `Buf` (else a `Vec` allocation; no allocation at
    /// all for zero-sized messages).
    const POOLED: bool = size_of::<M>() > 0
        && Self::MAX * size_of::<M>() <= bufpool::BUF_BYTES
        && align_of::<M>() <= bufpool::BUF_ALIGN;

    /// A batch of `first` and `second`, in a buffer from this thread's pool where `POOLED`.
    fn pair(mb: MailboxPtr<M>, first: M, second: M) -> Self {
        let mut b = Self::one(mb, first);
        // Two slots of a buffer sized for MAX >= 4 messages: the second push succeeds.
        let _ = b.push(second);
        b
    }

    /// A batch of `first`, in a buffer from this thread's pool where `POOLED`.
    fn one(mb: MailboxPtr<M>, first: M) -> Self {
        let (buf, home) = if Self::POOLED {
            let b = bufpool::Buf::take();
            prefetch_for_write(b.as_ptr(), Self::MAX * size_of::<M>());
            // The sending node (an app worker or an attached I/O or accelerator worker).
            let home = match mesh::own_node() {
                Some((_, node)) if node < u16::MAX as usize => node as u16 + 1,
                _ => 0,
            };
            (b.into_raw().cast::<M>(), home)
        } else {
            let mut v = std::mem::ManuallyDrop::new(Vec::<M>::with_capacity(Self::MAX));
            // SAFETY: a Vec's pointer is never null.
            (
                unsafe { std::ptr::NonNull::new_unchecked(v.as_mut_ptr()) },
                0,
            )
        };
        let mut b = Batch {
            mb,
            buf,
            len: 0,
            home,
        };
        // A buffer sized for MAX >= 4 messages: the push succeeds.
        let _ = b.push(first);
        b
    }

    /// Appends `msg`; hands it back when the batch is full.
    #[inline]
    fn push(&mut self, msg: M) -> Result<(), M> {
        if self.len as usize >= Self::MAX {
            return Err(msg);
        }
        // SAFETY: `len < MAX`, so slot `len` of the buffer (room for MAX messages) is allocated
        // and uninitialised; writing it and bumping `len` keeps the first `len` slots initialised.
        unsafe { self.buf.as_ptr().add(self.len as usize).write(msg) };
        self.len += 1;
        Ok(())
    }

    /// Moves the messages out, in order (the batch is left empty; its buffer stays).
    fn drain(&mut self) -> impl ExactSizeIterator<Item = M> + use<M> {
        let (buf, len) = (self.buf, self.len as usize);
        // Emptied first: were the consumer of the iterator to panic midway, the rest would
        // leak rather than be dropped twice.
        self.len = 0;
        // SAFETY: slots `0..len` are initialised and, with `len` zeroed, read exactly once here.
        (0..len).map(move |i| unsafe { buf.as_ptr().add(i).read() })
    }

    /// Frees the (empty) buffer, or sends it home to be reused.
    fn release_buffer(&mut self) {
        debug_assert_eq!(self.len, 0, "messages are moved out before the buffer goes");
        if Self::POOLED {
            // SAFETY: when POOLED, `buf` is a `Buf` given up with `into_raw`, owned by this
            // batch alone; the batch is being consumed or dropped, so nobody uses it after.
            let b = unsafe { bufpool::Buf::from_raw(self.buf.cast()) };
            match (self.home, mesh::own_node()) {
                (0, _) => drop(b),
                (h, Some((_, me))) if h as usize - 1 == me => b.recycle(),
                (h, Some((mesh_id, _))) => {
                    let env = mesh::Envelope::new(move || b.recycle());
                    // Published with this turn's other sends; when it cannot go (another
                    // runtime's worker, ring ends busy) the envelope drops and frees it here.
                    let _ = mesh::send_deferred(mesh_id, h as usize - 1, env);
                }
                (_, None) => drop(b),
            }
        } else if size_of::<M>() > 0 {
            // SAFETY: `buf` is the buffer of a `Vec<M>` with capacity MAX (see `pair`), holding
            // no initialised messages now.
            drop(unsafe { Vec::from_raw_parts(self.buf.as_ptr(), 0, Self::MAX) });
        }
    }
}

impl<M> Drop for Batch<M> {
    fn drop(&mut self) {
        // An envelope dropped without running (worker exit) still owns its messages.
        self.drain().for_each(drop);
        self.release_buffer();
    }
}

impl<M: Send + 'static> Payload for Batch<M> {
    fn run(mut self) {
        // SAFETY: see `MailboxPtr`'s invariant: every message of the batch reserved a slot,
        // which keeps the mailbox alive until delivery.
        let mb = unsafe { &*self.mb.0 };
        mb.deliver_batch(self.drain());
        // `self` drops here: no messages left, the buffer goes home.
    }
}

/// Asks the CPU to fetch `len` bytes at `p` for writing, ahead of the writes.
///
/// A batch buffer usually reuses memory the receiving core read (and freed) last, so each of
/// its cache lines is owned by the other core. Without this, each first write to a line misses,
/// and the sender's store buffer drains serially behind those misses whenever a later load or
/// locked instruction must wait for it; prefetching all lines at once overlaps the misses.
#[inline]
fn prefetch_for_write(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = 0;
        while off < len {
            // SAFETY: prefetch is a hint with no architectural effect (it never faults), and
            // `p + off` stays inside the buffer's allocation.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(
                    p.add(off).cast(),
                )
            };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// The payload of `env` for the mesh's streaming cursor when it is a batch (`kind`), else
/// `None`.
///
/// # Safety
/// `env` was sent under the key of a `Mailbox<M>` by [`Mailbox::dispatch`], so its payload is
/// a `Single<M>` (`KIND_SINGLE`) or a `Batch<M>` (`KIND_BATCH`).
unsafe fn arm_batch<M: Send + 'static>(env: &mut Envelope, kind: u8) -> Option<*mut ()> {
    (kind == KIND_BATCH).then(|| {
        // SAFETY: per the contract, and `kind` says it is a batch.
        let b: *mut Batch<M> = unsafe { env.payload_mut::<Batch<M>>() };
        b.cast::<()>()
    })
}

/// Folds `msg` into `env`, the unpublished envelope last sent to this mailbox: a `Single`
/// becomes a `Batch` of two, a `Batch` grows. Hands `msg` back when the batch is full.
///
/// # Safety
/// `env` was built by `Envelope::with_payload` from a `Single<M>` (`kind == KIND_SINGLE`) or a
/// `Batch<M>` (`kind == KIND_BATCH`) for this mailbox.
unsafe fn merge<M: Send + 'static>(env: &mut Envelope, kind: &mut u8, msg: M) -> Result<(), M> {
    if *kind == KIND_BATCH {
        // SAFETY: the caller promises a `Batch<M>`.
        return unsafe { env.payload_mut::<Batch<M>>() }.push(msg);
    }
    let old = std::mem::replace(env, Envelope::new(|| ()));
    // SAFETY: the caller promises a `Single<M>`.
    let first = unsafe { old.into_payload::<Single<M>>() };
    *env = Envelope::with_payload(Batch::pair(first.mb, first.msg, msg));
    *kind = KIND_BATCH;
    Ok(())
}

/// Waits (on the owner worker) until no reserved message is in flight, so that dropping the
/// caller's `Arc` cannot leave an envelope with a dangling [`MailboxPtr`].
async fn drain_in_flight<M: Send + 'static>(mb: &Mailbox<M>) {
    std::future::poll_fn(|cx| {
        if mb.len.load(Ordering::SeqCst) == 0 {
            return Poll::Ready(());
        }
        mb.register_room(cx.waker());
        if mb.len.load(Ordering::SeqCst) == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// What shutdown and reports need of any actor, whatever its type.
pub(crate) trait ActorProbe: Send + Sync {
    fn name(&self) -> String;
    fn node(&self) -> usize;
    /// Graceful stop: refuse new messages, handle what is queued or in flight, then stop.
    fn begin_stop(self: Arc<Self>);
    fn is_terminated(&self) -> bool;
    fn register_done(&self, w: &Waker);
}

impl<M: Send + 'static> ActorProbe for Mailbox<M> {
    fn name(&self) -> String {
        self.name
            .get()
            .map_or_else(|| "actor (not started)".to_string(), |n| n.to_string())
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

/// The address of an actor: cheap to clone, `Send + Sync`, usable from any thread and core.
pub struct Addr<A: Actor> {
    mb: Arc<Mailbox<A::Msg>>,
    _a: PhantomData<fn() -> A>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            mb: self.mb.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: Actor> std::fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addr")
            .field("actor", &self.mb.name())
            .field("id", &self.mb.seq)
            .field("worker", &self.mb.node())
            .finish()
    }
}

impl<A: Actor> Addr<A> {
    pub(crate) fn from_mailbox(mb: Arc<Mailbox<A::Msg>>) -> Self {
        Addr {
            mb,
            _a: PhantomData,
        }
    }

    /// Sends without waiting: `Full(msg)` when the mailbox is at capacity, `Stopped(msg)` when
    /// the actor has stopped. Nothing is silently dropped.
    pub fn try_tell(&self, msg: A::Msg) -> Result<(), TrySendError<A::Msg>> {
        let Err(msg) = self.mb.fast_send(msg) else {
            return Ok(());
        };
        match self.mb.try_reserve() {
            Ok(()) => {
                self.mb.dispatch(msg);
                Ok(())
            }
            Err(Reserve::Full) => Err(TrySendError::Full(msg)),
            Err(Reserve::Stopped) => Err(TrySendError::Stopped(msg)),
        }
    }

    /// Sends, waiting for mailbox room if it is full (backpressure). Fails only if the actor
    /// has stopped, handing the message back.
    ///
    /// Cooperative: a task that has made 128 sends in one poll yields once here (its worker
    /// then runs its rings, timers and other tasks before resuming it), like tokio's budget.
    pub async fn tell(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        // Each send spends one unit of the task's cooperative budget (see
        // `executor::poll_proceed`); a spent budget skips the fast path and yields below.
        let budget = executor::take_budget();
        let msg = match budget {
            true => match self.mb.fast_send(msg) {
                Ok(()) => return Ok(()),
                Err(msg) => msg,
            },
            false => msg,
        };
        let mut msg = Some(msg);
        let mut must_yield = !budget;
        std::future::poll_fn(|cx| self.poll_send(&mut msg, &mut must_yield, cx))
            .await
            .map_err(SendError::Stopped)
    }

    /// Sends the message in `msg` once the mailbox has room (reserving a slot, then
    /// dispatching), first yielding once if `must_yield`. `Ready(Err(msg))` when the actor has
    /// stopped; `Pending` (message kept) while the mailbox is full.
    fn poll_send(
        &self,
        msg: &mut Option<A::Msg>,
        must_yield: &mut bool,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), A::Msg>> {
        if *must_yield {
            if executor::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            *must_yield = false;
        }
        let take = |msg: &mut Option<A::Msg>| msg.take().expect("a send's message is taken once");
        loop {
            match self.mb.try_reserve() {
                Ok(()) => {
                    self.mb.dispatch(take(msg));
                    return Poll::Ready(Ok(()));
                }
                Err(Reserve::Stopped) => return Poll::Ready(Err(take(msg))),
                Err(Reserve::Full) => {
                    self.mb.register_room(cx.waker());
                    match self.mb.try_reserve() {
                        Err(Reserve::Full) => return Poll::Pending,
                        Ok(()) => {
                            self.mb.dispatch(take(msg));
                            return Poll::Ready(Ok(()));
                        }
                        Err(Reserve::Stopped) => continue,
                    }
                }
            }
        }
    }

    /// Readiness for a send: `Ready(Ok)` when the mailbox has room now, `Ready(Err(Stopped))`
    /// when the actor has stopped, else `Pending` with `cx`'s waker woken when room appears.
    /// Room is not reserved: a following `try_tell` can still find the mailbox full.
    pub fn poll_ready(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Stopped>> {
        let check = |mb: &Mailbox<A::Msg>| {
            if mb.state.load(Ordering::Acquire) != OPEN {
                Some(Err(Stopped))
            } else if mb.len.load(Ordering::SeqCst) < mb.capacity {
                Some(Ok(()))
            } else {
                None
            }
        };
        if let Some(r) = check(&self.mb) {
            return Poll::Ready(r);
        }
        self.mb.register_room(cx.waker());
        match check(&self.mb) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Request/reply: builds the message around a [`Reply`], sends it, and waits for the
    /// answer, all within `timeout`.
    ///
    /// The timeout is measured as [`timeout`](crate::runtime::timeout) measures it: never
    /// shorter than asked, and an answer within the asker's scheduler turn (same core) costs no
    /// timer at all.
    pub fn ask<R, F>(
        &self,
        make: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, AskError>> + use<'_, A, R, F>
    where
        R: Send + 'static,
        F: FnOnce(Reply<R>) -> A::Msg,
    {
        Ask {
            addr: self,
            state: AskState::Start(make),
            limit: executor::After::new(timeout),
            timeout,
        }
    }

    /// Asks the actor to stop gracefully: it refuses new messages at once, handles those already
    /// queued or in flight, runs [`Actor::stopping`], and terminates.
    pub fn stop(&self) {
        self.mb.clone().begin_stop();
    }

    /// Waits until the actor has terminated.
    pub async fn stopped(&self) {
        wait_terminated(&*self.mb).await
    }

    /// True while the actor accepts messages.
    pub fn is_alive(&self) -> bool {
        self.mb.state.load(Ordering::Acquire) == OPEN
    }

    /// The app worker the actor lives on.
    pub fn worker(&self) -> usize {
        self.mb.node()
    }

    /// A runtime-unique actor id (also its start order).
    pub fn id(&self) -> u64 {
        self.mb.seq
    }

    /// Messages queued or in flight to this actor.
    pub fn mailbox_len(&self) -> usize {
        self.mb.len.load(Ordering::Relaxed).min(self.mb.capacity)
    }

    /// The mailbox bound.
    pub fn mailbox_capacity(&self) -> usize {
        self.mb.capacity
    }
}

/// The future of [`Addr::ask`], written by hand: the equivalent `async` blocks (a `tell`
/// inside a timeout) moved their state between nested futures on every poll, which measured
/// ~15 % of a same-core round trip.
struct Ask<'a, A: Actor, R, F> {
    addr: &'a Addr<A>,
    state: AskState<A::Msg, R, F>,
    limit: executor::After,
    timeout: Duration,
}

enum AskState<M, R, F> {
    /// Not polled yet: the request is built at the first poll, on the asker's worker (whose
    /// index rides in the reply slot, see [`Reply::send`]).
    Start(F),
    /// Waiting for mailbox room (`must_yield`: the cooperative budget was spent).
    Send {
        msg: Option<M>,
        rx: oneshot::Receiver<R>,
        must_yield: bool,
    },
    Wait(oneshot::Receiver<R>),
    Done,
}

// No field is structurally pinned (`After` and the receiver are `Unpin`; the message and the
// closure are only moved, never pinned), so the future may move between polls.
impl<A: Actor, R, F> Unpin for Ask<'_, A, R, F> {}

impl<A: Actor, R: Send + 'static, F: FnOnce(Reply<R>) -> A::Msg> Future for Ask<'_, A, R, F> {
    type Output = Result<R, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let AskState::Start(_) = this.state {
            let AskState::Start(make) = std::mem::replace(&mut this.state, AskState::Done) else {
                unreachable!("matched just above")
            };
            // Tagged with the asker's app worker + 1 (0: not on an app worker).
            let home = match executor::current_mesh_node() {
                Some((_, node)) if node < u16::MAX as usize => node as u16 + 1,
                _ => 0,
            };
            let (tx, rx) = oneshot::channel_tagged(home);
            let msg = make(Reply { tx });
            this.state = AskState::Send {
                msg: Some(msg),
                rx,
                must_yield: !executor::take_budget(),
            };
        }
        if let AskState::Send {
            msg, must_yield, ..
        } = &mut this.state
        {
            match this.addr.poll_send(msg, must_yield, cx) {
                Poll::Ready(Ok(())) => {
                    let AskState::Send { rx, .. } =
                        std::mem::replace(&mut this.state, AskState::Done)
                    else {
                        unreachable!("matched just above")
                    };
                    this.state = AskState::Wait(rx);
                }
                Poll::Ready(Err(_)) => {
                    this.state = AskState::Done;
                    return Poll::Ready(Err(AskError::Stopped));
                }
                Poll::Pending => return this.poll_limit(cx),
            }
        }
        let AskState::Wait(rx) = &mut this.state else {
            // `Done`: polled after completion.
            return Poll::Ready(Err(AskError::NoReply));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(r) => {
                this.state = AskState::Done;
                Poll::Ready(match r {
                    Ok(v) => Ok(v),
                    Err(_) if !this.addr.is_alive() => Err(AskError::Stopped),
                    Err(_) => Err(AskError::NoReply),
                })
            }
            Poll::Pending => this.poll_limit(cx),
        }
    }
}

impl<A: Actor, R, F> Ask<'_, A, R, F> {
    fn poll_limit<T>(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<T, AskError>> {
        match self.limit.poll(cx) {
            Poll::Ready(()) => {
                self.state = AskState::Done;
                Poll::Ready(Err(AskError::Timeout(self.timeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The answer slot of a request. Put it in a message; the handler calls [`Reply::send`].
/// Dropping it unanswered fails the ask with [`AskError::NoReply`] (or `Stopped`).
///
/// An answer to an asker on another app worker of the same runtime travels over the mesh ring
/// to the asker's worker and is put in place there: the answering core never touches the
/// asker's reply slot or task (each of those was a cache-line transfer on the round trip's
/// critical path; BENCHMARKS.md, "Actors").
///
/// The asker's worker rides in the reply slot's pointer (spare high bits, see
/// [`oneshot::Sender`]): a `Reply` is one word, so request messages stay small.
pub struct Reply<R> {
    tx: oneshot::Sender<R>,
}

impl<R: Send + 'static> Reply<R> {
    /// Sends the answer. Gives it back if the asker is known to have gone (timed out or
    /// dropped); an answer handed to an asker on another core that gives up meanwhile is
    /// dropped there.
    pub fn send(self, value: R) -> Result<(), R> {
        let home = self.tx.tag() as usize;
        match executor::current_mesh_node() {
            Some((mesh, me)) if home != 0 && home - 1 != me => {
                let tx = self.tx;
                // Runs on the asker's worker: the value lands in the slot and the asker's task
                // is queued there, both core-local.
                let env = mesh::Envelope::new(move || {
                    let _ = tx.send(value);
                });
                if let Err(env) = mesh::send_signal(mesh, home - 1, env) {
                    // Not this thread's to send (ring ends busy, or no app worker of this
                    // mesh has that index: the asker runs in another runtime): deliver
                    // directly. (An asker in another runtime whose index is an app worker
                    // here gets the answer via that worker: slower, still correct.)
                    env.run();
                }
                Ok(())
            }
            _ => self.tx.send(value),
        }
    }
}

impl<R> Reply<R> {
    /// True when the asker has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Identifies a timer started with [`Context::run_later`] or [`Context::run_every`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// What an actor knows about itself while it runs: its address, worker, timers and stop.
pub struct Context<A: Actor> {
    addr: Addr<A>,
    timers: Vec<(u64, JoinHandle<()>)>,
    next_timer: u64,
}

impl<A: Actor> Context<A> {
    /// This actor's address.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// The app worker running this actor.
    pub fn worker(&self) -> usize {
        self.addr.mb.node()
    }

    /// Stops the actor after the current handler returns; queued messages are dropped (their
    /// asks fail). For a graceful stop that drains the mailbox, use [`Addr::stop`].
    pub fn stop(&mut self) {
        self.addr.mb.set_state(STOP_NOW);
        self.addr.mb.local(|l| l.stop_now = true);
        self.addr.mb.wake_room();
    }

    /// Sends `msg` to this actor after `delay`. Cancelled when the actor stops.
    pub fn run_later(&mut self, delay: Duration, msg: A::Msg) -> TimerId {
        let addr = self.addr.clone();
        self.add_timer(async move {
            executor::sleep(delay).await;
            let _ = addr.tell(msg).await;
        })
    }

    /// Sends `make()` to this actor every `period` (first after one period), waiting for
    /// mailbox room each time. Cancelled when the actor stops.
    pub fn run_every(
        &mut self,
        period: Duration,
        mut make: impl FnMut() -> A::Msg + 'static,
    ) -> TimerId {
        let addr = self.addr.clone();
        self.add_timer(async move {
            let mut iv = executor::interval(period);
            iv.tick().await;
            loop {
                iv.tick().await;
                if addr.tell(make()).await.is_err() {
                    break;
                }
            }
        })
    }

    /// Cancels a timer. Returns false if it had already finished.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        match self.timers.iter().position(|(i, _)| *i == id.0) {
            Some(p) => {
                let (_, h) = self.timers.swap_remove(p);
                let live = !h.is_finished();
                h.abort();
                live
            }
            None => false,
        }
    }

    fn add_timer(&mut self, fut: impl Future<Output = ()> + 'static) -> TimerId {
        self.timers.retain(|(_, h)| !h.is_finished());
        let h = executor::spawn_local(fut);
        self.next_timer += 1;
        self.timers.push((self.next_timer, h));
        TimerId(self.next_timer)
    }

    /// Spawns a task on this actor's worker (not tied to the actor's lifetime).
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        executor::spawn_local(fut)
    }
}

/// Runs `f` and catches a panic, returning its message.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// Polls `fut` catching panics.
async fn guarded<F: Future>(fut: F) -> Result<F::Output, String> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match guard(|| fut.as_mut().poll(cx)) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(m) => Poll::Ready(Err(m)),
    })
    .await
}

/// The actor's task body: started, the message loop, stopping, and cleanup.
async fn run_actor<A: Actor>(mut actor: A, mb: Arc<Mailbox<A::Msg>>) {
    // The body's locals (context, handler state) live in this block, so they are dead and
    // their space reused while the mailbox drains below: an idle actor's task stays small.
    {
        let _ = mb.name.set(actor.name());
        let mut ctx = Context {
            addr: Addr::from_mailbox(mb.clone()),
            timers: Vec::new(),
            next_timer: 0,
        };
        let mut panicked = guarded(actor.started(&mut ctx)).await.err();
        let mut unreleased = 0u32; // u32: every byte of an idle actor's task counts
        // Computed once: `capacity` sits on the sender-written cache line (see `Mailbox`).
        let release_every = (mb.capacity / 8).clamp(1, 64) as u32;
        if panicked.is_none() {
            loop {
                let next = std::future::poll_fn(|cx| {
                    // Per message only the owner-local queue is touched; the shared state is
                    // read when the queue runs dry.
                    let r = mb.local(|l| {
                        // Stopped: leave the queue to `terminate` (it releases the slots).
                        if l.stop_now {
                            return Poll::Ready(None);
                        }
                        match l.queue.pop_front() {
                            Some(m) => Poll::Ready(Some(m)),
                            None => {
                                let state = mb.state.load(Ordering::Acquire);
                                if state >= STOP_NOW {
                                    return Poll::Ready(None);
                                }
                                // Queue empty: hand back the slots of what was handled before waiting.
                                if unreleased > 0 {
                                    mb.release(unreleased as usize);
                                    unreleased = 0;
                                }
                                if state == DRAINING {
                                    if mb.len.load(Ordering::SeqCst) == 0 {
                                        return Poll::Ready(None);
                                    }
                                    // The count can reach zero with no delivery to wake us:
                                    // a streaming sender hands its unused send credits back
                                    // at the end of its turn, possibly after its last batch
                                    // arrived. Waiting as a room waiter too, any release
                                    // wakes us to look again.
                                    mb.register_room(cx.waker());
                                    if mb.len.load(Ordering::SeqCst) == 0 {
                                        return Poll::Ready(None);
                                    }
                                }
                                l.notified = false;
                                match &l.waker {
                                    Some(w) if w.will_wake(cx.waker()) => {}
                                    _ => l.waker = Some(cx.waker().clone()),
                                }
                                Poll::Pending
                            }
                        }
                    });
                    r.expect("an actor's task runs on its mailbox's owner worker")
                })
                .await;
                let Some(msg) = next else { break };
                // Slots are released in batches (one contended atomic per batch, not per message),
                // and always before the actor waits for more.
                unreleased += 1;
                if unreleased >= release_every {
                    mb.release(unreleased as usize);
                    unreleased = 0;
                }
                if let Err(m) = guarded(actor.handle(msg, &mut ctx)).await {
                    panicked = Some(m);
                    break;
                }
            }
        }
        match &panicked {
            Some(m) => {
                tracing::error!(actor = %ActorProbe::name(&*mb), id = mb.seq, worker = mb.node, panic = %m, "actor panicked in a handler and was stopped");
                mb.set_state(STOP_NOW);
            }
            None => {
                mb.set_state(STOP_NOW);
                if let Err(m) = guarded(actor.stopping(&mut ctx)).await {
                    tracing::error!(actor = %ActorProbe::name(&*mb), id = mb.seq, panic = %m, "actor panicked in stopping()");
                }
            }
        }
        for (_, h) in ctx.timers.drain(..) {
            h.abort();
        }
        if unreleased > 0 {
            mb.release(unreleased as usize);
        }
        mb.terminate();
    }
    drop(actor);
    // Messages still in flight are dropped on arrival (state TERMINATED); keep the mailbox alive
    // until they have all arrived.
    drain_in_flight(&mb).await;
}

/// Starts `actor` on the current thread, which must be the owner of `mb`.
pub(crate) fn start_local<A: Actor>(actor: A, mb: Arc<Mailbox<A::Msg>>) {
    // A `debug` span per actor (name, id, worker), entered on every poll of its task. It is
    // stored only when a subscriber enables it, so idle actors stay small otherwise.
    let span = tracing::debug_span!("actor", name = %actor.name(), id = mb.seq, worker = mb.node);
    let fut: Pin<Box<dyn Future<Output = ()>>> = if span.is_disabled() {
        Box::pin(run_actor(actor, mb))
    } else {
        Box::pin(tracing::Instrument::instrument(run_actor(actor, mb), span))
    };
    executor::with_current(move |e| e.spawn_raw(fut)).expect("start_local runs on a worker thread");
}

/// Marks an actor that never started (its constructor panicked) as terminated, and keeps its
/// mailbox alive until messages already in flight to it have arrived.
pub(crate) fn abandon<M: Send + 'static>(mb: &Arc<Mailbox<M>>) {
    mb.terminate();
    let keeper = mb.clone();
    executor::with_current(move |e| {
        e.spawn_raw(Box::pin(async move { drain_in_flight(&keeper).await }))
    })
    .expect("abandon runs on the owner worker");
}

#[cfg(test)]
mod size_tests {
    use super::*;
    struct Idle;
    impl Actor for Idle {
        type Msg = u64;
        async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {}
    }
    /// Guards the per-actor footprint behind the "1 M idle actors < 512 MiB" target: the task
    /// future and the mailbox are the two big allocations of an idle actor. 200 B of future
    /// keeps the task's box (future + 8 B malloc header) in glibc's 208 B class; 16 B more
    /// took 1 M actors from 504 to 519 MiB.
    #[test]
    fn idle_actor_footprint_stays_small() {
        let (mesh, _) = MeshShared::new(1, 0, 2, 4);
        let mb = Mailbox::<u64>::new(mesh, 0, 0, 4);
        let fut = run_actor(Idle, mb.clone());
        assert!(
            std::mem::size_of_val(&fut) <= 200,
            "actor task is {} B",
            std::mem::size_of_val(&fut)
        );
        assert!(
            std::mem::size_of::<Mailbox<u64>>() <= 184,
            "mailbox is {} B",
            std::mem::size_of::<Mailbox<u64>>()
        );
    }

    /// The sender-side fields and the owner-side queue must never share a cache line,
    /// whatever the allocation's alignment: at least 64 bytes apart (see `Mailbox`).
    #[test]
    fn sender_and_owner_fields_are_a_cache_line_apart() {
        use std::mem::{offset_of, size_of};
        type M = Mailbox<[u64; 2]>;
        let sender_end = [
            offset_of!(M, len) + size_of::<AtomicUsize>(),
            offset_of!(M, capacity) + size_of::<usize>(),
            offset_of!(M, owner) + size_of::<u64>(),
            offset_of!(M, mesh) + size_of::<usize>(),
            offset_of!(M, state) + 1,
        ]
        .into_iter()
        .max()
        .unwrap();
        assert!(
            offset_of!(M, local) >= sender_end + 64,
            "owner queue at {} B, sender fields end at {} B",
            offset_of!(M, local),
            sender_end
        );
    }
}

#[cfg(test)]
mod batch_buffer_tests {
    use super::*;
    use crate::runtime::Runtime;
    use std::time::{Duration, Instant};

    struct Count(Arc<AtomicUsize>);
    impl Actor for Count {
        type Msg = u64;
        async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Batch buffers go back to the node that filled them, from an app worker and from an
    /// attached external node alike (a buffer freed on the receiving thread would leave the
    /// sender's pool empty).
    #[test]
    fn batch_buffers_come_home_to_the_sending_node() {
        let mut cfg = crate::runtime::builder::Builder::new()
            .profile(crate::runtime::config::Profile::Testing)
            .app_workers(std::num::NonZeroUsize::new(2).expect("2 > 0"))
            .config()
            .unwrap();
        cfg.io_workers = 1;
        cfg.io_colocated = true; // leaves the external node free for this test
        let rt = Runtime::start(cfg).unwrap();
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let a = rt.spawn_actor_on(1, move || Count(g)).unwrap();

        // From app worker 0: a few full batches, then wait for the buffers to come back.
        let a0 = a.clone();
        let h = rt
            .spawn_on(0, move || async move {
                for i in 0..500u64 {
                    a0.tell(i).await.unwrap();
                }
                let t0 = Instant::now();
                while bufpool::pooled() == 0 && t0.elapsed() < Duration::from_secs(10) {
                    crate::runtime::sleep(Duration::from_millis(1)).await;
                }
                bufpool::pooled()
            })
            .unwrap();
        assert!(
            rt.block_on(h).unwrap() > 0,
            "no buffer came home to worker 0"
        );

        // From an external node (this thread): batch, flush, then run what comes back.
        let mut node = rt.handle().attach_external(0).unwrap();
        let before = bufpool::pooled();
        for i in 0..200u64 {
            while a.try_tell(i).is_err() {
                node.flush();
                std::thread::yield_now();
            }
        }
        node.flush();
        let t0 = Instant::now();
        while bufpool::pooled() <= before && t0.elapsed() < Duration::from_secs(10) {
            node.run_pending(64);
            node.flush();
            std::thread::yield_now();
        }
        assert!(
            bufpool::pooled() > before,
            "no buffer came home to the external node"
        );
        drop(node);
        let t0 = Instant::now();
        while got.load(Ordering::SeqCst) < 700 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got.load(Ordering::SeqCst), 700);
    }
}
