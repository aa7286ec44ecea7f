//! [`TcpStream`]: a TCP connection for tasks and actors. The socket lives on an event loop,
//! where a handler does the I/O (receiving until `READ_BUFFER_LIMIT` bytes wait unread); the
//! app side talks to it through a small shared state and wakers. Owns one stream's state.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, sys};
use crate::runtime::{Handle, timeout};

use super::listener::{ListenHandler, ListenState, lock_listen};
use super::{READ_BUFFER_LIMIT, pick_loop};

#[derive(Default)]
pub(super) struct State {
    /// The socket, once known (-1 before). Valid while `closed` is false: the event loop sets
    /// `closed` under this state's lock before it closes the fd.
    pub(super) fd: RawFd,
    pub(super) chunks: VecDeque<Vec<u8>>,
    pub(super) buffered: usize,
    /// The loop stopped receiving because `buffered` hit the limit.
    pub(super) paused: bool,
    pub(super) eof: bool,
    pub(super) error: Option<io::ErrorKind>,
    pub(super) error_msg: String,
    pub(super) read_waker: Option<Waker>,
    pub(super) connected: Option<Result<(), (io::ErrorKind, String)>>,
    pub(super) connect_waker: Option<Waker>,
    pub(super) writes_done: u64,
    pub(super) writes_queued: u64,
    pub(super) write_error: Option<(io::ErrorKind, String)>,
    pub(super) write_waker: Option<Waker>,
    /// The handler is gone (closed): every pending operation fails.
    pub(super) closed: bool,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn new_shared() -> Shared {
    Arc::new(Mutex::new(State {
        fd: -1,
        ..State::default()
    }))
}

pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// The event-loop side of a stream.
pub(super) struct StreamHandler {
    pub(super) fd: RawFd,
    pub(super) shared: Shared,
    pub(super) closed: bool,
    /// A connect is in flight (`Event::Connected` has not come yet).
    pub(super) connecting: bool,
    /// The listener this stream came from (it counts open streams against its limit).
    pub(super) listener: Option<(HandlerId, Arc<Mutex<ListenState>>)>,
}

impl StreamHandler {
    pub(super) fn close(&mut self, ctx: &mut IoCtx<'_>) {
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
    pub(super) handle: Handle,
    pub(super) id: Option<HandlerId>,
    pub(super) shared: Shared,
    pub(super) peer: Option<SocketAddr>,
    pub(super) _guard: Arc<CloseGuard>,
}

/// Closes the connection when the last [`TcpStream`] handle goes.
pub(super) struct CloseGuard {
    pub(super) handle: Handle,
    pub(super) id: HandlerId,
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

pub(super) fn closed_error() -> io::Error {
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
    pub(super) fn with_fd<R>(&self, f: impl FnOnce(RawFd) -> io::Result<R>) -> io::Result<R> {
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

    pub(super) fn on_loop(&self, f: impl FnOnce(RawFd) + Send + 'static) -> io::Result<()> {
        let id = self.id.ok_or_else(closed_error)?;
        self.handle
            .run_on_io(id.worker, move |ctx| {
                ctx.with_handler::<StreamHandler, _>(id, |h, _| f(h.fd));
            })
            .map_err(io::Error::other)
    }
}

/// On the event loop: a stream handler connecting to `addr`.
pub(super) fn register_connect(
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
