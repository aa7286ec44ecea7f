//! The cross-core batch format: how messages to a mailbox on another worker travel. A lone
//! message is a [`Single`] envelope; consecutive messages from one thread in one turn are
//! folded into a [`Batch`] (up to 1 KiB of messages in a buffer from the sender's pool, sent
//! home when emptied). The mailbox is the mesh's [`KeyedSink`]: its key is its address, and
//! the send credits it grants are reserved slots. Owns the unsafe payload types (raw buffers,
//! the mailbox pointer) and the send path that uses them ([`Mailbox::dispatch`],
//! [`Mailbox::fast_send`]); reservation is `mailbox.rs`'s.

// With `trace-context` every message travels in an envelope of its own: the batching below
// is compiled but unused.
#![cfg_attr(feature = "trace-context", allow(dead_code, unused_imports))]

use std::num::NonZeroU8;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::mailbox::{Mailbox, OPEN};
use crate::runtime::bufpool;
use crate::runtime::envelope::{Envelope, Payload};
use crate::runtime::executor::current_exec_id;
use crate::runtime::mesh::{self, KeyedSink, Kind, SendKey};

impl<M: Send + 'static> Mailbox<M> {
    /// The streaming fast path of a cross-core send: if this thread is streaming to this
    /// mailbox (its last envelope to the owner was for it this turn) and holds a send credit (a
    /// slot reserved in advance, see [`Mailbox::grant_credits`]), one credit is spent and the
    /// message goes out without touching the shared counter: appended to the unpublished batch
    /// with no atomic operation, or, when that batch is full or already published,
    /// [`dispatch`](Self::dispatch)ed. Hands `msg` back when no credit is held.
    ///
    /// First tier: this thread's streaming cursor ([`mesh::cursor_send`]), armed only for a
    /// mailbox on another worker while send credits are held. It reads neither the shared state
    /// nor the executor: a credit is a slot reserved while the actor was open, and a message
    /// sent with it is handled even if the actor starts draining meanwhile (as if sent just
    /// before the stop); the cursor lasts one scheduler turn at most.
    #[inline]
    #[cfg(not(feature = "trace-context"))]
    pub(super) fn fast_send(self: &Arc<Self>, msg: M) -> Result<(), M> {
        let sink: &Self = self;
        let msg = match mesh::cursor_send(sink, msg) {
            Ok(()) => return Ok(()),
            Err(msg) => msg,
        };
        if current_exec_id() == self.owner || self.state.load(Ordering::Acquire) != OPEN {
            return Err(msg);
        }
        match mesh::merge_with_credit(sink, &self.mesh, self.node as usize, msg) {
            Ok(()) => Ok(()),
            // A credit was spent: the slot is reserved, only the batch could not take it.
            Err((msg, true)) => {
                self.dispatch(msg);
                Ok(())
            }
            Err((msg, false)) => Err(msg),
        }
    }

    /// With trace context every message travels alone, with its sender's span: no fast path.
    #[cfg(feature = "trace-context")]
    pub(super) fn fast_send(self: &Arc<Self>, msg: M) -> Result<(), M> {
        Err(msg)
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
    pub(super) fn dispatch(self: &Arc<Self>, msg: M) {
        #[cfg(feature = "trace-context")]
        {
            // Each message in an envelope of its own, in send order on the sender's ring, so
            // per-sender order holds; the mailbox is kept alive by the envelope's `Arc`.
            let parent = tracing::Span::current();
            if current_exec_id() == self.owner {
                self.deliver_traced(msg, parent);
            } else {
                let mb = self.clone();
                mesh::send(
                    &self.mesh,
                    self.node as usize,
                    crate::runtime::envelope::Envelope::new(move || mb.deliver_traced(msg, parent)),
                );
            }
        }
        #[cfg(not(feature = "trace-context"))]
        if current_exec_id() == self.owner {
            self.deliver_local(msg);
        } else {
            let sink: &Self = self;
            mesh::send_keyed(sink, &self.mesh, self.node as usize, msg);
        }
    }
}

/// Envelope kinds of a mailbox's keyed sends.
const KIND_SINGLE: Kind = NonZeroU8::MIN;
const KIND_BATCH: Kind = NonZeroU8::MIN.saturating_add(1);

// SAFETY: (1) the key is the mailbox's address, unique while it lives (an `Arc` allocation) and
// fixed for its life; (2) every envelope sent under it is built by `make` below, as a
// `Single<M>` (`KIND_SINGLE`) or a `Batch<M>` (`KIND_BATCH`), and changed only by `merge`,
// which keeps the kind truthful; (3) a credit is a reserved slot, and a reserved slot keeps the
// mailbox alive (see `MailboxPtr`), so `release` may reach it while credits are held.
unsafe impl<M: Send + 'static> KeyedSink for Mailbox<M> {
    type Msg = M;

    #[inline]
    fn key(&self) -> SendKey {
        SendKey::of(self as *const Self).expect("a reference is never null")
    }

    #[inline]
    fn make(&self, msg: M, streaming: bool) -> (Envelope, Kind) {
        let p = MailboxPtr(self as *const Self);
        match streaming {
            // More will follow: start the next batch right away.
            true => (Envelope::with_payload(Batch::one(p, msg)), KIND_BATCH),
            false => (Envelope::with_payload(Single { mb: p, msg }), KIND_SINGLE),
        }
    }

    #[inline]
    fn grant(&self) -> u32 {
        self.grant_credits()
    }

    /// Folds `msg` into `env`, the unpublished envelope last sent to this mailbox: a `Single`
    /// becomes a `Batch` of two, a `Batch` grows. Hands `msg` back when the batch is full.
    #[inline]
    unsafe fn merge(env: &mut Envelope, kind: &mut Kind, msg: M) -> Result<(), M> {
        if *kind == KIND_BATCH {
            // SAFETY: the caller's contract: `make`/`merge` built it, and the kind says batch.
            return unsafe { env.payload_mut::<Batch<M>>() }.push(msg);
        }
        let old = std::mem::replace(env, Envelope::new(|| ()));
        // SAFETY: as above, and the kind says single.
        let first = unsafe { old.into_payload::<Single<M>>() };
        *env = Envelope::with_payload(Batch::pair(first.mb, first.msg, msg));
        *kind = KIND_BATCH;
        Ok(())
    }

    #[inline]
    unsafe fn batch(env: &mut Envelope, kind: Kind) -> Option<NonNull<()>> {
        if kind != KIND_BATCH {
            return None;
        }
        // SAFETY: the caller's contract, and the kind says batch.
        Some(NonNull::from(unsafe { env.payload_mut::<Batch<M>>() }).cast())
    }

    #[inline(always)]
    unsafe fn push(payload: NonNull<()>, msg: M) -> Result<(), M> {
        // SAFETY: the caller's contract: `payload` is the `Batch<M>` that `batch` returned, in
        // an unpublished envelope only this thread touches.
        unsafe { payload.cast::<Batch<M>>().as_mut() }.push(msg)
    }

    unsafe fn release(key: SendKey, n: usize) {
        // SAFETY: the caller's contract: `key` is a live `Mailbox<M>` (held credits keep it
        // alive).
        let mb = unsafe { &*(key.addr() as *const Mailbox<M>) };
        mb.release(n);
    }
}

/// A mailbox pointer carried by an in-flight message envelope.
///
/// Invariant (why it is never dangling when used): an envelope is created only after its
/// message reserved a slot, so `len > 0` until the envelope runs (delivery releases the slot as
/// its last access). Every path that lets go of an actor's own `Arc` waits for `len == 0` first:
/// the actor task at termination (`run_actor`) and the keeper task of an actor that never
/// started (`abandon`); the spawn envelope holds an `Arc` until one of those exists. Envelopes
/// run only on the owner worker, the same thread as those tasks, so the `Arc` cannot go away
/// while an envelope runs. At worker exit, envelopes left over are dropped without running.
struct MailboxPtr<M>(*const Mailbox<M>);

// SAFETY: the pointer is only dereferenced on the owner worker under the invariant above;
// moving it between threads is moving an address. `M: Send` because the message travels with it.
unsafe impl<M: Send> Send for MailboxPtr<M> {}

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

#[cfg(all(test, not(feature = "trace-context")))]
mod batch_buffer_tests {
    use super::*;
    use crate::runtime::Runtime;
    use crate::runtime::{Actor, Context};
    use std::sync::atomic::AtomicUsize;
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
