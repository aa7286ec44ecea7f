//! The I/O event loop that transport and storage share: dedicated I/O worker threads, each
//! owning one event loop — an io_uring ring (backend `uring`) or a mio `Poll` (backend `mio`) —
//! and the [`IoHandler`]s registered on it. Owns sockets' readiness/completion plumbing, receive
//! buffers, send queues and the worker thread; knows nothing of protocols (HTTP, TLS, framing
//! live in `transport`) and nothing of files' layout (that is `storage`).
//!
//! The model is completion-based on both backends: a handler asks for an operation through its
//! [`IoCtx`] (`accept`, `recv`, `send`, `connect`, `close`) and later receives an [`Event`]
//! (`Accepted`, `Data`, `Sent`, …) on the same I/O worker thread. On io_uring the operations are
//! real SQEs, submitted in one batch per loop turn (multishot accept, multishot recv with a
//! provided buffer ring where the kernel supports it, plain recv where not). On mio the same
//! operations are emulated over epoll readiness.
//!
//! Other threads reach an I/O worker with [`Handle::run_on_io`](crate::runtime::Handle::run_on_io):
//! the closure travels over the runtime's ring mesh (batched like any cross-core message) and
//! runs on the I/O worker with an [`IoCtx`]. I/O workers are mesh nodes themselves, so a handler
//! can `try_tell` an actor directly; the message goes over the I/O worker's ring to that core.
//!
//! Backend choice: [`IoBackend::Auto`](crate::runtime::config::IoBackend) uses io_uring when the
//! probe finds everything the backend needs (a ring, the opcodes, multishot accept and recv:
//! [`IoUringSupport::missing_required`](crate::runtime::detect::IoUringSupport::missing_required))
//! and mio otherwise, with one log line saying which and why; `PERCORE_IO=uring|mio` or the
//! builder override it. An explicit `uring` on a kernel that lacks a required feature is an
//! error at start (no silent fallback). `PERCORE_IO_URING_BUFRING=0` (or
//! [`IoCtx::use_buffer_ring`]) makes io_uring receive with plain `Recv` instead of a provided
//! buffer ring.
//!
//! A handler that panics is removed and its sockets closed; the loop goes on (see
//! `worker`).
//!
//! ```
//! use percore::runtime::Runtime;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let h = rt.handle();
//! let (tx, rx) = std::sync::mpsc::channel();
//! h.run_on_io(0, move |ctx| {
//!     tx.send(ctx.backend()).unwrap();
//! })
//! .unwrap();
//! println!("I/O worker 0 runs on {:?}", rx.recv().unwrap());
//! rt.shutdown();
//! ```

pub mod aligned;
mod completion;
pub(crate) mod event_loop;
mod fdmap;
pub mod file;
mod mio_backend;
pub(crate) mod select;
pub mod sys;
mod uring;
pub(crate) mod worker;

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Instant;

pub use event_loop::EventLoopStats;
#[allow(deprecated)]
pub use event_loop::IoWorkerStats;

/// The event loop an I/O worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// io_uring: operations are submitted as SQEs in batches and complete as CQEs.
    Uring,
    /// mio (epoll): readiness events, with the operations performed by the worker.
    Mio,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Uring => "uring",
            BackendKind::Mio => "mio",
        })
    }
}

/// Index of a handler on its I/O worker (a slab key; reused after the handler is removed).
pub type Token = usize;

/// A handler's identity that survives token reuse: the token plus a generation. `Copy + Send`,
/// so it can travel to app workers and come back with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId {
    /// The I/O worker (0-based among I/O workers).
    pub worker: usize,
    /// The slab key.
    pub token: Token,
    /// Generation of the slot; a stale id (handler removed, token reused) matches nothing.
    pub generation: u64,
}

/// What an operation produced, delivered to the handler that asked for it.
#[derive(Debug)]
pub enum Event<'a> {
    /// A connection was accepted on a listener armed with [`IoCtx::accept`]. The fd is
    /// non-blocking and close-on-exec; the handler now owns it and must [`IoCtx::close`] it.
    Accepted(RawFd),
    /// Accepting failed (e.g. `EMFILE`); the listener stays armed, accepting again after a short
    /// pause. Delivered (and logged by the loop) at most once a second per event loop.
    AcceptError(io::Error),
    /// Bytes received on a socket armed with [`IoCtx::recv`]. The slice is only valid during
    /// the call (it is a provided buffer that goes back to the kernel afterwards).
    Data(&'a [u8]),
    /// The peer closed its write side; no more `Data` for this fd.
    Eof,
    /// Receiving failed (e.g. `ECONNRESET`); no more `Data` for this fd.
    RecvError(io::Error),
    /// A buffer passed to [`IoCtx::send`] was written completely; here it is back for reuse.
    Sent(Vec<u8>),
    /// Writing failed; the queued buffers for this fd are dropped.
    SendError(io::Error),
    /// The fd armed with [`IoCtx::poll_readable`] is readable (one-shot: arm again after
    /// reading until `EAGAIN`).
    Readable,
    /// A [`IoCtx::connect`] finished.
    Connected(io::Result<()>),
    /// The handler asked for a retry with [`IoCtx::retry_soon`].
    Retry,
    /// Periodic tick (see [`IoCtx::set_ticks`]), about every [`TICK`].
    Tick(Instant),
    /// The I/O worker is stopping: close what you own.
    Shutdown,
}

/// Period of [`Event::Tick`].
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// A state machine living on an I/O worker thread (a listener, a connection, …). Receives the
/// events of the operations it asked for. Never blocks: every call runs on the loop.
pub trait IoHandler: Any {
    /// Handles one event.
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>);
}

// One per event-loop thread, never moved after start: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum BackendImpl {
    Uring(uring::UringBackend),
    Mio(mio_backend::MioBackend),
}

pub(crate) struct Slot {
    generation: u64,
    handler: Option<Box<dyn IoHandler>>,
    removed: bool,
    ticks: bool,
}

/// The handlers of one I/O worker.
#[derive(Default)]
pub(crate) struct Handlers {
    slab: slab::Slab<Slot>,
    next_gen: u64,
    retry: Vec<(Token, u64)>,
}

/// What a handler (or a closure sent with `run_on_io`) can do on its I/O worker.
pub struct IoCtx<'a> {
    pub(crate) backend: &'a mut BackendImpl,
    pub(crate) handlers: &'a mut Handlers,
    pub(crate) worker: usize,
    pub(crate) node: usize,
    pub(crate) current: Option<(Token, u64)>,
    pub(crate) now: Instant,
    pub(crate) stopping: bool,
}

impl IoCtx<'_> {
    /// Which backend this worker runs.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            BackendImpl::Uring(_) => BackendKind::Uring,
            BackendImpl::Mio(_) => BackendKind::Mio,
        }
    }

    /// This I/O worker's index (0-based among I/O workers).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// This I/O worker's node in the runtime's mesh.
    pub fn node(&self) -> usize {
        self.node
    }

    /// The loop's clock for this turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// True once the worker is stopping (after [`Event::Shutdown`] was sent).
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The token of the handler being called (`None` inside a `run_on_io` closure).
    pub fn token(&self) -> Option<Token> {
        self.current.map(|c| c.0)
    }

    /// The id of the handler being called (`None` inside a `run_on_io` closure).
    pub fn id(&self) -> Option<HandlerId> {
        self.current.map(|(token, generation)| HandlerId {
            worker: self.worker,
            token,
            generation,
        })
    }

    /// Registers a handler and returns its id. It receives events for operations started with
    /// its token.
    pub fn register(&mut self, handler: Box<dyn IoHandler>) -> HandlerId {
        let h = &mut *self.handlers;
        h.next_gen += 1;
        let generation = h.next_gen;
        let token = h.slab.insert(Slot {
            generation,
            handler: Some(handler),
            removed: false,
            ticks: false,
        });
        HandlerId {
            worker: self.worker,
            token,
            generation,
        }
    }

    /// True when io_uring receives into a provided buffer ring (false: plain recv, or mio).
    pub fn uses_buffer_ring(&self) -> bool {
        match &*self.backend {
            BackendImpl::Uring(b) => b.uses_buf_ring(),
            BackendImpl::Mio(_) => false,
        }
    }

    /// Turns this event loop's provided buffer ring on or off for receives armed from now on
    /// (off: one plain `Recv` with an owned buffer per connection, the fallback for kernels
    /// without buffer rings). Receives already armed keep their mode. Returns whether the
    /// buffer ring is now used: never on mio, and not on where it could not be registered.
    /// `PERCORE_IO_URING_BUFRING=0` turns it off for every loop of the process at start.
    pub fn use_buffer_ring(&mut self, on: bool) -> bool {
        match &mut *self.backend {
            BackendImpl::Uring(b) => b.set_buf_ring(on),
            BackendImpl::Mio(_) => false,
        }
    }

    /// Removes a handler (the one being called is dropped when its call returns). Its fds are
    /// not closed: close them first.
    pub fn remove(&mut self, token: Token) {
        let h = &mut *self.handlers;
        if self.current.is_some_and(|c| c.0 == token) {
            if let Some(s) = h.slab.get_mut(token) {
                s.removed = true;
            }
        } else if h.slab.contains(token) {
            h.slab.remove(token);
        }
    }

    /// Number of live handlers.
    pub fn handler_count(&self) -> usize {
        self.handlers.slab.len()
    }

    /// Turns [`Event::Tick`] on or off for `token`.
    pub fn set_ticks(&mut self, token: Token, on: bool) {
        if let Some(s) = self.handlers.slab.get_mut(token) {
            s.ticks = on;
        }
    }

    /// Asks for an [`Event::Retry`] on the next loop turn (used to retry a hand-off to a full
    /// mailbox without busy-looping: the loop then waits at most 1 ms for other events).
    pub fn retry_soon(&mut self, token: Token) {
        if let Some(s) = self.handlers.slab.get(token) {
            self.handlers.retry.push((token, s.generation));
        }
    }

    /// Calls `f` with the handler `id` if it still exists and is a `H` (not while it is the
    /// handler being called). Returns `None` when it is gone.
    pub fn with_handler<H: IoHandler, R>(
        &mut self,
        id: HandlerId,
        f: impl FnOnce(&mut H, &mut IoCtx<'_>) -> R,
    ) -> Option<R> {
        if id.worker != self.worker {
            return None;
        }
        let slot = self.handlers.slab.get_mut(id.token)?;
        if slot.generation != id.generation || slot.removed {
            return None;
        }
        let mut boxed = slot.handler.take()?;
        let saved = self.current.replace((id.token, id.generation));
        let r = (&mut *boxed as &mut dyn Any)
            .downcast_mut::<H>()
            .map(|h| f(h, self));
        self.current = saved;
        put_back(self.handlers, id.token, id.generation, boxed);
        r
    }

    /// Arms continuous accepting on the listening socket `fd` (multishot accept on io_uring).
    /// Each connection arrives as [`Event::Accepted`].
    pub fn accept(&mut self, token: Token, fd: RawFd) {
        match self.backend {
            BackendImpl::Uring(b) => b.accept(token, fd),
            BackendImpl::Mio(b) => b.accept(token, fd),
        }
    }

    /// Arms continuous receiving on the connected socket `fd` (multishot recv with a provided
    /// buffer ring on io_uring). Calling it again after [`IoCtx::stop_recv`] resumes.
    pub fn recv(&mut self, token: Token, fd: RawFd) {
        match self.backend {
            BackendImpl::Uring(b) => b.recv(token, fd),
            BackendImpl::Mio(b) => b.recv(token, fd),
        }
    }

    /// Stops receiving on `fd` (backpressure: the kernel's socket buffer fills and TCP tells
    /// the peer to slow down). A few `Data` events already in flight may still arrive.
    pub fn stop_recv(&mut self, fd: RawFd) {
        match self.backend {
            BackendImpl::Uring(b) => b.stop_recv(fd),
            BackendImpl::Mio(b) => b.stop_recv(fd),
        }
    }

    /// True while `fd` is armed for receiving.
    pub fn is_receiving(&self, fd: RawFd) -> bool {
        match &*self.backend {
            BackendImpl::Uring(b) => b.is_receiving(fd),
            BackendImpl::Mio(b) => b.is_receiving(fd),
        }
    }

    /// Asks for one [`Event::Readable`] when `fd` has data (for sockets the handler reads
    /// itself, such as UDP).
    pub fn poll_readable(&mut self, token: Token, fd: RawFd) {
        match self.backend {
            BackendImpl::Uring(b) => b.poll_readable(token, fd),
            BackendImpl::Mio(b) => b.poll_readable(token, fd),
        }
    }

    /// Queues `buf` to be written completely to `fd`, after what is already queued (writes on
    /// one fd never reorder). [`Event::Sent`] hands the buffer back.
    pub fn send(&mut self, token: Token, fd: RawFd, buf: Vec<u8>) {
        match self.backend {
            BackendImpl::Uring(b) => b.send(token, fd, buf),
            BackendImpl::Mio(b) => b.send(token, fd, buf),
        }
    }

    /// Bytes queued for `fd` and not yet written.
    pub fn send_queued(&self, fd: RawFd) -> usize {
        match &*self.backend {
            BackendImpl::Uring(b) => b.send_queued(fd),
            BackendImpl::Mio(b) => b.send_queued(fd),
        }
    }

    /// Creates a non-blocking TCP socket and connects it to `addr`; [`Event::Connected`]
    /// follows. Returns the fd at once (the handler owns it).
    pub fn connect(&mut self, token: Token, addr: SocketAddr) -> io::Result<RawFd> {
        let fd = new_socket(&addr, libc::SOCK_STREAM)?;
        match self.backend {
            BackendImpl::Uring(b) => b.connect(token, fd, addr),
            BackendImpl::Mio(b) => b.connect(token, fd, addr),
        }
        Ok(fd)
    }

    /// Starts a file operation; its reply goes to the [`FileOp`](file::FileOp)'s receiver,
    /// not to a handler. io_uring: SQEs batched with this loop's other operations; mio: the
    /// blocking pool ([`file::blocking`]).
    pub fn file(&mut self, op: file::FileOp) {
        match self.backend {
            BackendImpl::Uring(b) => b.file(op),
            BackendImpl::Mio(_) => file::blocking::submit(op),
        }
    }

    /// Cancels every operation on `fd` and closes it. Events for it stop.
    pub fn close(&mut self, fd: RawFd) {
        match self.backend {
            BackendImpl::Uring(b) => b.close(fd),
            BackendImpl::Mio(b) => b.close(fd),
        }
    }

    /// Forgets `fd` without closing it, so that another event loop can take it over (a
    /// connection moving to the loop of its CPU). Only possible once nothing is armed or queued
    /// on it: call [`stop_recv`](Self::stop_recv) first, and retry while this returns false
    /// (a cancelled receive completes a turn or two later). Completions still on their way for
    /// `fd` are dropped.
    pub fn release(&mut self, fd: RawFd) -> bool {
        match self.backend {
            BackendImpl::Uring(b) => b.release(fd),
            BackendImpl::Mio(b) => b.release(fd),
        }
    }
}

pub(crate) fn put_back(
    h: &mut Handlers,
    token: Token,
    generation: u64,
    handler: Box<dyn IoHandler>,
) {
    if let Some(s) = h.slab.get_mut(token)
        && s.generation == generation
    {
        if s.removed {
            h.slab.remove(token);
        } else {
            s.handler = Some(handler);
        }
    }
}

pub use sys::{close_fd, new_socket, set_int_option, sockaddr, socket_addr, take_socket_error};
