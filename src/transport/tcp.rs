//! TCP streams and listeners for tasks and actors on app workers: `connect` (with a timeout),
//! `read`/`write_all`, half-close, `TCP_NODELAY`, keep-alive, and a listener whose `accept`
//! yields streams. The socket lives on an I/O event loop (a handler there does the I/O); the
//! app side talks to it through a small shared state and wakers. Owns these sockets and their
//! buffers; owns nothing of protocols (TLS, HTTP, framing live elsewhere) and must not touch the
//! event loop's internals beyond [`IoCtx`].
//!
//! Backpressure: the event loop stops receiving once `READ_BUFFER_LIMIT` bytes wait unread, and
//! resumes when the reader has drained them, so a slow reader slows the peer down through TCP.
//!
//! Listener bounds: a [`TcpListener`] takes connections off the kernel only while its accept
//! queue ([`ListenOptions::accept_queue`]) has room and its connection limit
//! ([`ListenOptions::max_connections`]) allows; the rest wait in the kernel's backlog. A queued
//! connection is a bare socket (nothing is read from it) until [`TcpListener::accept`] takes it;
//! dropping the listener closes every queued one.
//!
//! ```
//! use percore::runtime::Runtime;
//! use percore::transport::tcp::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let h = rt.handle();
//! let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let addr = listener.local_addr();
//! let reply = rt.block_on(async move {
//!     let server = percore::runtime::spawn_local(async move {
//!         let mut s = listener.accept().await.unwrap();
//!         let mut buf = [0u8; 5];
//!         s.read_exact(&mut buf).await.unwrap();
//!         s.write_all(buf.to_vec()).await.unwrap();
//!     });
//!     let mut c = TcpStream::connect(&h, addr, Duration::from_secs(5)).await.unwrap();
//!     c.write_all(b"hello".to_vec()).await.unwrap();
//!     let mut buf = [0u8; 5];
//!     c.read_exact(&mut buf).await.unwrap();
//!     server.await.unwrap();
//!     buf
//! });
//! assert_eq!(&reply, b"hello");
//! rt.shutdown();
//! ```

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, sys};
use crate::runtime::{Handle, timeout};

use super::TransportError;

/// Unread bytes buffered per stream before its event loop stops receiving.
pub const READ_BUFFER_LIMIT: usize = 256 * 1024;

/// Default [`ListenOptions::accept_queue`]: accepted connections waiting for
/// [`TcpListener::accept`].
pub const ACCEPT_QUEUE_LIMIT: usize = 1024;

static NEXT_LOOP: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct State {
    /// The socket, once known (-1 before). Valid while `closed` is false: the event loop sets
    /// `closed` under this state's lock before it closes the fd.
    fd: RawFd,
    chunks: VecDeque<Vec<u8>>,
    buffered: usize,
    /// The loop stopped receiving because `buffered` hit the limit.
    paused: bool,
    eof: bool,
    error: Option<io::ErrorKind>,
    error_msg: String,
    read_waker: Option<Waker>,
    connected: Option<Result<(), (io::ErrorKind, String)>>,
    connect_waker: Option<Waker>,
    writes_done: u64,
    writes_queued: u64,
    write_error: Option<(io::ErrorKind, String)>,
    write_waker: Option<Waker>,
    /// The handler is gone (closed): every pending operation fails.
    closed: bool,
}

type Shared = Arc<Mutex<State>>;

fn new_shared() -> Shared {
    Arc::new(Mutex::new(State {
        fd: -1,
        ..State::default()
    }))
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// The event-loop side of a stream.
struct StreamHandler {
    fd: RawFd,
    shared: Shared,
    closed: bool,
    /// A connect is in flight (`Event::Connected` has not come yet).
    connecting: bool,
    /// The listener this stream came from (it counts open streams against its limit).
    listener: Option<(HandlerId, Arc<Mutex<ListenState>>)>,
}

impl StreamHandler {
    fn close(&mut self, ctx: &mut IoCtx<'_>) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Marked closed before the fd goes: app-side socket option calls check `closed` under
        // the same lock, so they never touch a closed (possibly reused) fd number.
        lock(&self.shared).closed = true;
        if self.connecting && self.fd >= 0 {
            // Abort the handshake in the kernel (shutdown on a SYN_SENT socket disconnects
            // it): on io_uring an in-flight connect holds its own reference to the socket, so
            // closing the fd alone would leave it retrying SYNs for minutes.
            // The handler's fd is still open here.
            let _ = sys::shutdown(self.fd, Shutdown::Both);
        }
        ctx.close(self.fd);
        if let Some(t) = ctx.token() {
            ctx.remove(t);
        }
        if let Some((lid, ls)) = self.listener.take() {
            let resume = {
                let mut st = lock_listen(&ls);
                st.open = st.open.saturating_sub(1);
                st.take_resume()
            };
            if resume {
                ctx.with_handler::<ListenHandler, _>(lid, |h, ctx| h.accept_ready(ctx));
            }
        }
        let mut st = lock(&self.shared);
        wake(&mut st.read_waker);
        wake(&mut st.write_waker);
        wake(&mut st.connect_waker);
    }
}

impl IoHandler for StreamHandler {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Data(d) => {
                let mut st = lock(&self.shared);
                st.buffered += d.len();
                st.chunks.push_back(d.to_vec());
                if st.buffered >= READ_BUFFER_LIMIT && !st.paused {
                    st.paused = true;
                    ctx.stop_recv(self.fd);
                }
                wake(&mut st.read_waker);
            }
            Event::Eof => {
                let mut st = lock(&self.shared);
                st.eof = true;
                wake(&mut st.read_waker);
            }
            Event::RecvError(e) => {
                let mut st = lock(&self.shared);
                st.error = Some(e.kind());
                st.error_msg = e.to_string();
                wake(&mut st.read_waker);
            }
            Event::Sent(_) => {
                let mut st = lock(&self.shared);
                st.writes_done += 1;
                wake(&mut st.write_waker);
            }
            Event::SendError(e) => {
                let mut st = lock(&self.shared);
                st.write_error = Some((e.kind(), e.to_string()));
                wake(&mut st.write_waker);
            }
            Event::Connected(r) => {
                self.connecting = false;
                let ok = r.is_ok();
                {
                    let mut st = lock(&self.shared);
                    st.connected = Some(r.map_err(|e| (e.kind(), e.to_string())));
                    wake(&mut st.connect_waker);
                }
                if ok && let Some(t) = ctx.token() {
                    ctx.recv(t, self.fd);
                }
            }
            Event::Shutdown => self.close(ctx),
            Event::Accepted(fd) => ctx.close(fd),
            _ => {}
        }
    }
}

/// A TCP connection used from a task or actor on an app worker. [`TcpStream::try_clone`]
/// gives a second handle (e.g. one task reads while another writes); the connection closes
/// when the last handle is dropped.
pub struct TcpStream {
    handle: Handle,
    id: Option<HandlerId>,
    shared: Shared,
    peer: Option<SocketAddr>,
    _guard: Arc<CloseGuard>,
}

/// Closes the connection when the last [`TcpStream`] handle goes.
struct CloseGuard {
    handle: Handle,
    id: HandlerId,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        // Queued writes go out first: the close is queued behind them on the same loop.
        let id = self.id;
        let _ = self.handle.run_on_io(id.worker, move |ctx| {
            ctx.with_handler::<StreamHandler, _>(id, |h, ctx| h.close(ctx));
        });
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("handler", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

pub(crate) fn pick_loop(handle: &Handle) -> Result<usize, TransportError> {
    let n = handle.io_workers();
    if n == 0 {
        return Err(TransportError::NoIoWorkers);
    }
    // Co-located loops: stay on the calling core when there is one.
    if handle.config().io_colocated
        && let Some(w) = crate::runtime::current_worker()
        && w < n
    {
        return Ok(w);
    }
    Ok(NEXT_LOOP.fetch_add(1, Ordering::Relaxed) % n)
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the TCP connection is closed (dropped or the runtime shut down); open a new one",
    )
}

impl TcpStream {
    /// Connects to `addr`, giving up after `limit` (an error of kind `TimedOut`; the socket is
    /// closed then).
    pub async fn connect(
        handle: &Handle,
        addr: SocketAddr,
        limit: Duration,
    ) -> io::Result<TcpStream> {
        let lp = pick_loop(handle).map_err(io::Error::other)?;
        let shared = new_shared();
        let (tx, rx) = crate::runtime::oneshot::channel::<io::Result<HandlerId>>();
        let sh = shared.clone();
        handle
            .run_on_io(lp, move |ctx| {
                let r = register_connect(ctx, sh, addr);
                let _ = tx.send(r);
            })
            .map_err(io::Error::other)?;
        let id = rx
            .await
            .map_err(|_| io::Error::other("the I/O loop stopped before connecting"))??;
        let stream = TcpStream {
            handle: handle.clone(),
            id: Some(id),
            shared,
            peer: Some(addr),
            _guard: Arc::new(CloseGuard {
                handle: handle.clone(),
                id,
            }),
        };
        let done = timeout(
            limit,
            poll_fn(|cx| {
                let mut st = lock(&stream.shared);
                if let Some(r) = st.connected.take() {
                    return Poll::Ready(r.map_err(|(k, m)| io::Error::new(k, m)));
                }
                if st.closed {
                    return Poll::Ready(Err(closed_error()));
                }
                st.connect_waker = Some(cx.waker().clone());
                Poll::Pending
            }),
        )
        .await;
        match done {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                drop(stream);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "connect to {addr} timed out after {limit:?}; check that the peer is up \
                         and reachable, or allow a longer timeout"
                    ),
                ))
            }
        }
    }

    /// Another handle to the same connection.
    pub fn try_clone(&self) -> TcpStream {
        TcpStream {
            handle: self.handle.clone(),
            id: self.id,
            shared: self.shared.clone(),
            peer: self.peer,
            _guard: self._guard.clone(),
        }
    }

    /// The peer's address, when known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Reads some bytes into `buf`; 0 means the peer closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut resume = false;
        let r = poll_fn(|cx| {
            let mut st = lock(&self.shared);
            if let Some(front) = st.chunks.front_mut() {
                let n = front.len().min(buf.len());
                buf[..n].copy_from_slice(&front[..n]);
                front.drain(..n);
                if front.is_empty() {
                    st.chunks.pop_front();
                }
                st.buffered -= n;
                if st.paused && st.buffered < READ_BUFFER_LIMIT / 2 {
                    st.paused = false;
                    resume = true;
                }
                return Poll::Ready(Ok(n));
            }
            if let Some(k) = st.error {
                return Poll::Ready(Err(io::Error::new(k, st.error_msg.clone())));
            }
            if st.eof || st.closed {
                return Poll::Ready(Ok(0));
            }
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if resume && let Some(id) = self.id {
            let _ = self.handle.run_on_io(id.worker, move |ctx| {
                ctx.with_handler::<StreamHandler, _>(id, |h, ctx| ctx.recv(id.token, h.fd));
            });
        }
        r
    }

    /// Reads exactly `buf.len()` bytes (`UnexpectedEof` if the peer closes first).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut off = 0;
        while off < buf.len() {
            let n = self.read(&mut buf[off..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed mid-read",
                ));
            }
            off += n;
        }
        Ok(())
    }

    /// Reads until the peer closes.
    pub async fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut buf = vec![0u8; 16 * 1024];
        let start = out.len();
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out.len() - start);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Writes all of `data`; resolves once the kernel has taken it.
    pub async fn write_all(&mut self, data: Vec<u8>) -> io::Result<()> {
        let id = self.id.ok_or_else(closed_error)?;
        let want = {
            let mut st = lock(&self.shared);
            st.writes_queued += 1;
            st.writes_queued
        };
        self.handle
            .run_on_io(id.worker, move |ctx| {
                let sent = ctx.with_handler::<StreamHandler, _>(id, |h, ctx| {
                    ctx.send(id.token, h.fd, data);
                });
                if sent.is_none() {
                    // Gone already: the write fails below through `closed`.
                }
            })
            .map_err(io::Error::other)?;
        poll_fn(|cx| {
            let mut st = lock(&self.shared);
            if st.writes_done >= want {
                return Poll::Ready(Ok(()));
            }
            if let Some((k, m)) = &st.write_error {
                return Poll::Ready(Err(io::Error::new(*k, m.clone())));
            }
            if st.closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "connection closed",
                )));
            }
            st.write_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Half-close: no more writes from this side (the peer reads EOF); reading goes on.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.on_loop(|fd| {
            // The stream's fd, which its handler keeps open.
            let _ = sys::shutdown(fd, Shutdown::Write);
        })
    }

    /// Runs `f` with the socket while it is open (`NotConnected` once it is closed).
    fn with_fd<R>(&self, f: impl FnOnce(RawFd) -> io::Result<R>) -> io::Result<R> {
        // The lock is held across `f`: the event loop marks the state closed under it before
        // closing the fd, so the fd cannot be closed (and its number reused) meanwhile.
        let st = lock(&self.shared);
        if st.closed || st.fd < 0 {
            return Err(closed_error());
        }
        f(st.fd)
    }

    /// Sets `TCP_NODELAY` (on by default). Fails with the OS error when `setsockopt` does, and
    /// with `NotConnected` once the connection is closed.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.with_fd(|fd| sys::set_nodelay(fd, on))
    }

    /// Whether `TCP_NODELAY` is set, read back from the socket.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.with_fd(sys::nodelay)
    }

    /// Turns TCP keep-alive probes (`SO_KEEPALIVE`) on or off. Fails with the OS error when
    /// `setsockopt` does, and with `NotConnected` once the connection is closed.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.with_fd(|fd| sys::set_keepalive(fd, on))
    }

    /// Whether keep-alive probes (`SO_KEEPALIVE`) are on, read back from the socket.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.with_fd(sys::keepalive)
    }

    fn on_loop(&self, f: impl FnOnce(RawFd) + Send + 'static) -> io::Result<()> {
        let id = self.id.ok_or_else(closed_error)?;
        self.handle
            .run_on_io(id.worker, move |ctx| {
                ctx.with_handler::<StreamHandler, _>(id, |h, _| f(h.fd));
            })
            .map_err(io::Error::other)
    }
}

/// On the event loop: a stream handler connecting to `addr`.
fn register_connect(
    ctx: &mut IoCtx<'_>,
    shared: Shared,
    addr: SocketAddr,
) -> io::Result<HandlerId> {
    let id = ctx.register(Box::new(StreamHandler {
        fd: -1,
        shared: shared.clone(),
        closed: false,
        connecting: true,
        listener: None,
    }));
    match ctx.connect(id.token, addr) {
        Ok(fd) => {
            ctx.with_handler::<StreamHandler, _>(id, |h, _| h.fd = fd);
            lock(&shared).fd = fd;
            let _ = crate::runtime::io::sys::set_nodelay(fd, true);
            Ok(id)
        }
        Err(e) => {
            ctx.remove(id.token);
            Err(e)
        }
    }
}

/// Options of a [`TcpListener`] (see [`TcpListener::bind_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// Connections taken off the kernel and waiting for [`TcpListener::accept`] (default
    /// [`ACCEPT_QUEUE_LIMIT`], at least 1). When the queue is full the listener stops accepting:
    /// further connections wait in the kernel's backlog, and it resumes when `accept` takes one.
    pub accept_queue: usize,
    /// The `listen(2)` backlog (default 1024; the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// At most this many connections of this listener open at once, queued ones included;
    /// beyond it the listener stops accepting until one closes. `None` (the default): the
    /// runtime's `max_connections`.
    pub max_connections: Option<usize>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            accept_queue: ACCEPT_QUEUE_LIMIT,
            backlog: 1024,
            max_connections: None,
        }
    }
}

struct ListenState {
    /// Accepted sockets nobody has taken yet (nothing reads them), with their peers.
    ready: VecDeque<(OwnedFd, Option<SocketAddr>)>,
    waker: Option<Waker>,
    closed: bool,
    /// The handler stopped accepting (queue full or connection limit): whoever makes room
    /// re-arms it.
    paused: bool,
    /// Streams handed out by `accept` and not closed yet.
    open: usize,
    queue_limit: usize,
    max_conns: usize,
}

impl ListenState {
    fn has_room(&self) -> bool {
        self.ready.len() < self.queue_limit && self.ready.len() + self.open < self.max_conns
    }

    /// True (and no longer paused) when the handler stopped accepting and may go on now.
    fn take_resume(&mut self) -> bool {
        if self.paused && !self.closed && self.has_room() {
            self.paused = false;
            return true;
        }
        false
    }

    /// Closes the listener's side: queued sockets are closed (their peers see EOF/reset).
    fn shut(&mut self) {
        self.closed = true;
        self.ready.clear();
        wake(&mut self.waker);
    }
}

fn lock_listen(s: &Mutex<ListenState>) -> std::sync::MutexGuard<'_, ListenState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

struct ListenHandler {
    fd: RawFd,
    state: Arc<Mutex<ListenState>>,
    /// The last accept failed with a resource error (logged once until one succeeds).
    failing: bool,
}

impl ListenHandler {
    /// Takes connections off the kernel while there is room, then waits for readability again
    /// (or, when full, until `accept` or a closing stream re-arms it).
    fn accept_ready(&mut self, ctx: &mut IoCtx<'_>) {
        let Some(token) = ctx.token() else {
            return;
        };
        let mut st = lock_listen(&self.state);
        loop {
            if st.closed {
                return;
            }
            if !st.has_room() {
                st.paused = true;
                return;
            }
            match sys::accept(self.fd) {
                Ok((fd, peer)) => {
                    self.failing = false;
                    let _ = crate::runtime::io::sys::set_nodelay(fd.as_raw_fd(), true);
                    st.ready.push_back((fd, peer));
                    wake(&mut st.waker);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        // EMFILE, ENOBUFS, …: the connection stays queued in the kernel; try
                        // again shortly instead of spinning on readiness.
                        if !self.failing {
                            tracing::warn!(error = %e, "accept failed; retrying");
                            self.failing = true;
                        }
                        ctx.retry_soon(token);
                        return;
                    }
                },
            }
        }
        drop(st);
        ctx.poll_readable(token, self.fd);
    }
}

impl IoHandler for ListenHandler {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Readable | Event::Retry => self.accept_ready(ctx),
            Event::Accepted(fd) => ctx.close(fd),
            Event::Shutdown => {
                lock_listen(&self.state).shut();
                ctx.close(self.fd);
            }
            _ => {}
        }
    }
}

/// A TCP listener whose connections are handed to a task or actor as [`TcpStream`]s. Bounded:
/// see [`ListenOptions`]. Dropping it closes the listening socket and every connection still
/// queued (their clients see EOF or a reset); streams already accepted live on.
pub struct TcpListener {
    handle: Handle,
    addr: SocketAddr,
    state: Arc<Mutex<ListenState>>,
    id: Arc<Mutex<Option<HandlerId>>>,
}

impl TcpListener {
    /// Listens on `addr` with the default [`ListenOptions`] (one event loop accepts).
    pub fn bind(handle: &Handle, addr: SocketAddr) -> Result<TcpListener, TransportError> {
        Self::bind_with(handle, addr, ListenOptions::default())
    }

    /// Listens on `addr` with `opts` (one event loop accepts).
    pub fn bind_with(
        handle: &Handle,
        addr: SocketAddr,
        opts: ListenOptions,
    ) -> Result<TcpListener, TransportError> {
        let lp = pick_loop(handle)?;
        let (owned, local) = sys::listen_on(addr, opts.backlog, false)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let state = Arc::new(Mutex::new(ListenState {
            ready: VecDeque::new(),
            waker: None,
            closed: false,
            paused: false,
            open: 0,
            queue_limit: opts.accept_queue.max(1),
            max_conns: opts
                .max_connections
                .unwrap_or(handle.config().max_connections)
                .max(1),
        }));
        let st = state.clone();
        let id: Arc<Mutex<Option<HandlerId>>> = Arc::default();
        let id2 = id.clone();
        // If the closure never runs (the runtime is stopping), dropping it closes the socket.
        handle.run_on_io(lp, move |ctx| {
            let mut slot = id2.lock().unwrap_or_else(|p| p.into_inner());
            if lock_listen(&st).closed {
                return; // dropped before it got here: `owned` closes the socket
            }
            let fd = owned.into_raw_fd();
            let h = ctx.register(Box::new(ListenHandler {
                fd,
                state: st,
                failing: false,
            }));
            ctx.poll_readable(h.token, fd);
            *slot = Some(h);
        })?;
        Ok(TcpListener {
            handle: handle.clone(),
            addr: local,
            state,
            id,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted from the kernel and waiting for [`TcpListener::accept`] (at most
    /// [`ListenOptions::accept_queue`]).
    pub fn queued(&self) -> usize {
        lock_listen(&self.state).ready.len()
    }

    /// Waits for the next connection. It starts receiving only now (a queued connection's
    /// data waits in the kernel).
    pub async fn accept(&self) -> io::Result<TcpStream> {
        let (fd, peer, resume) = poll_fn(|cx| {
            let mut st = lock_listen(&self.state);
            if st.closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the listener is closed (the runtime shut down); bind a new one",
                )));
            }
            if let Some((fd, peer)) = st.ready.pop_front() {
                st.open += 1;
                let resume = st.take_resume();
                return Poll::Ready(Ok((fd, peer, resume)));
            }
            st.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let lid = *self.id.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lid) = lid else {
            // Unreachable in practice: a queued connection means the handler is registered.
            lock_listen(&self.state).open -= 1;
            return Err(io::Error::other("the listener is not registered"));
        };
        let shared = new_shared();
        let sh = shared.clone();
        let ls = self.state.clone();
        let (tx, rx) = crate::runtime::oneshot::channel::<HandlerId>();
        let sent = self.handle.run_on_io(lid.worker, move |ctx| {
            let fd = fd.into_raw_fd();
            lock(&sh).fd = fd;
            let id = ctx.register(Box::new(StreamHandler {
                fd,
                shared: sh,
                closed: false,
                connecting: false,
                listener: Some((lid, ls)),
            }));
            ctx.recv(id.token, fd);
            if resume {
                ctx.with_handler::<ListenHandler, _>(lid, |h, ctx| h.accept_ready(ctx));
            }
            if tx.send(id).is_err() {
                // The accepting task went away meanwhile: close the stream again.
                ctx.with_handler::<StreamHandler, _>(id, |h, ctx| h.close(ctx));
            }
        });
        if let Err(e) = sent {
            lock_listen(&self.state).open -= 1;
            return Err(io::Error::other(e));
        }
        let id = rx
            .await
            .map_err(|_| io::Error::other("the I/O loop stopped before the stream was set up"))?;
        Ok(TcpStream {
            handle: self.handle.clone(),
            id: Some(id),
            shared,
            peer,
            _guard: Arc::new(CloseGuard {
                handle: self.handle.clone(),
                id,
            }),
        })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // Queued connections close now, from here: no event loop knows their fds.
        lock_listen(&self.state).shut();
        if let Some(id) = self.id.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = self.handle.run_on_io(id.worker, move |ctx| {
                ctx.with_handler::<ListenHandler, _>(id, |h, ctx| {
                    ctx.close(h.fd);
                    ctx.remove(id.token);
                });
            });
        }
    }
}
