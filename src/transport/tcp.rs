//! TCP streams and listeners for tasks and actors on app workers: `connect` (with a timeout),
//! `read`/`write_all`, half-close, `TCP_NODELAY`, keep-alive, and a listener whose `accept`
//! yields streams. The socket lives on an I/O event loop (a handler there does the I/O); the
//! app side talks to it through a small shared state and wakers. Owns nothing of protocols.
//!
//! Backpressure: the event loop stops receiving once `READ_BUFFER_LIMIT` bytes wait unread, and
//! resumes when the reader has drained them, so a slow reader slows the peer down through TCP.
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
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, set_int_option};
use crate::runtime::{Handle, timeout};

use super::TransportError;

/// Unread bytes buffered per stream before its event loop stops receiving.
pub const READ_BUFFER_LIMIT: usize = 256 * 1024;

static NEXT_LOOP: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct State {
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
}

impl StreamHandler {
    fn close(&mut self, ctx: &mut IoCtx<'_>) {
        if self.closed {
            return;
        }
        self.closed = true;
        ctx.close(self.fd);
        if let Some(t) = ctx.token() {
            ctx.remove(t);
        }
        let mut st = lock(&self.shared);
        st.closed = true;
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
                let ok = r.is_ok();
                {
                    let mut st = lock(&self.shared);
                    st.connected = Some(r.map_err(|e| (e.kind(), e.to_string())));
                    wake(&mut st.connect_waker);
                }
                if ok {
                    let t = ctx.token().expect("called as a handler");
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

impl TcpStream {
    /// Connects to `addr`, giving up after `limit`.
    pub async fn connect(
        handle: &Handle,
        addr: SocketAddr,
        limit: Duration,
    ) -> io::Result<TcpStream> {
        let lp = pick_loop(handle).map_err(io::Error::other)?;
        let shared: Shared = Arc::default();
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
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "closed")));
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
                    format!("connect to {addr} timed out after {limit:?}"),
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
        let id = self
            .id
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "closed"))?;
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
            // SAFETY: plain syscall on the stream's fd, which its handler keeps open.
            unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        })
    }

    /// Sets `TCP_NODELAY` (on by default).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.on_loop(move |fd| {
            let _ = set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on as libc::c_int);
        })
    }

    /// Turns TCP keep-alive probes on or off.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.on_loop(move |fd| {
            let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, on as libc::c_int);
        })
    }

    fn on_loop(&self, f: impl FnOnce(RawFd) + Send + 'static) -> io::Result<()> {
        let id = self
            .id
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "closed"))?;
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
        shared,
        closed: false,
    }));
    match ctx.connect(id.token, addr) {
        Ok(fd) => {
            ctx.with_handler::<StreamHandler, _>(id, |h, _| h.fd = fd);
            super::server::set_nodelay(fd);
            Ok(id)
        }
        Err(e) => {
            ctx.remove(id.token);
            Err(e)
        }
    }
}

#[derive(Default)]
struct ListenState {
    ready: VecDeque<(HandlerId, Shared)>,
    waker: Option<Waker>,
    closed: bool,
}

struct ListenHandler {
    fd: RawFd,
    state: Arc<Mutex<ListenState>>,
}

impl IoHandler for ListenHandler {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Accepted(fd) => {
                super::server::set_nodelay(fd);
                let shared: Shared = Arc::default();
                let id = ctx.register(Box::new(StreamHandler {
                    fd,
                    shared: shared.clone(),
                    closed: false,
                }));
                ctx.recv(id.token, fd);
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.ready.push_back((id, shared));
                wake(&mut st.waker);
            }
            Event::AcceptError(e) => tracing::warn!(error = %e, "accept failed"),
            Event::Shutdown => {
                ctx.close(self.fd);
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.closed = true;
                wake(&mut st.waker);
            }
            _ => {}
        }
    }
}

/// A TCP listener whose connections are handed to a task or actor as [`TcpStream`]s.
pub struct TcpListener {
    handle: Handle,
    addr: SocketAddr,
    state: Arc<Mutex<ListenState>>,
    id: Arc<Mutex<Option<HandlerId>>>,
}

impl TcpListener {
    /// Listens on `addr` (one event loop accepts).
    pub fn bind(handle: &Handle, addr: SocketAddr) -> Result<TcpListener, TransportError> {
        let lp = pick_loop(handle)?;
        let (fd, local) = super::server::listen_socket(addr, 1024)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let state: Arc<Mutex<ListenState>> = Arc::default();
        let st = state.clone();
        let id: Arc<Mutex<Option<HandlerId>>> = Arc::default();
        let id2 = id.clone();
        handle.run_on_io(lp, move |ctx| {
            let h = ctx.register(Box::new(ListenHandler { fd, state: st }));
            ctx.accept(h.token, fd);
            *id2.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
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

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        let (id, shared) = poll_fn(|cx| {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(x) = st.ready.pop_front() {
                return Poll::Ready(Ok(x));
            }
            if st.closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "listener closed",
                )));
            }
            st.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        Ok(TcpStream {
            handle: self.handle.clone(),
            id: Some(id),
            shared,
            peer: None,
            _guard: Arc::new(CloseGuard {
                handle: self.handle.clone(),
                id,
            }),
        })
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
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
