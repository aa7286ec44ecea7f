//! [`TcpListener`]: accepts connections for tasks and actors, bounded: connections are taken
//! off the kernel only while the accept queue has room and the connection limit allows; a
//! queued connection is a bare socket until `accept` takes it. Owns the listening socket and
//! the queue.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::runtime::Handle;
use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, sys};

use super::TransportError;

use super::stream::{CloseGuard, StreamHandler, TcpStream, lock, new_shared, wake};
use super::{ACCEPT_QUEUE_LIMIT, pick_loop};

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

pub(super) struct ListenState {
    /// Accepted sockets nobody has taken yet (nothing reads them), with their peers.
    pub(super) ready: VecDeque<(OwnedFd, Option<SocketAddr>)>,
    pub(super) waker: Option<Waker>,
    pub(super) closed: bool,
    /// The handler stopped accepting (queue full or connection limit): whoever makes room
    /// re-arms it.
    pub(super) paused: bool,
    /// Streams handed out by `accept` and not closed yet.
    pub(super) open: usize,
    pub(super) queue_limit: usize,
    pub(super) max_conns: usize,
}

impl ListenState {
    pub(super) fn has_room(&self) -> bool {
        self.ready.len() < self.queue_limit && self.ready.len() + self.open < self.max_conns
    }

    /// True (and no longer paused) when the handler stopped accepting and may go on now.
    pub(super) fn take_resume(&mut self) -> bool {
        if self.paused && !self.closed && self.has_room() {
            self.paused = false;
            return true;
        }
        false
    }

    /// Closes the listener's side: queued sockets are closed (their peers see EOF/reset).
    pub(super) fn shut(&mut self) {
        self.closed = true;
        self.ready.clear();
        wake(&mut self.waker);
    }
}

pub(super) fn lock_listen(s: &Mutex<ListenState>) -> std::sync::MutexGuard<'_, ListenState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) struct ListenHandler {
    pub(super) fd: RawFd,
    pub(super) state: Arc<Mutex<ListenState>>,
    /// The last accept failed with a resource error (logged once until one succeeds).
    pub(super) failing: bool,
}

impl ListenHandler {
    /// Takes connections off the kernel while there is room, then waits for readability again
    /// (or, when full, until `accept` or a closing stream re-arms it).
    pub(super) fn accept_ready(&mut self, ctx: &mut IoCtx<'_>) {
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
    pub(super) handle: Handle,
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<Mutex<ListenState>>,
    pub(super) id: Arc<Mutex<Option<HandlerId>>>,
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
