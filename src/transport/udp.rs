//! UDP sockets for tasks and actors: `recv_from` awaits a datagram that an event loop read
//! (it polls the socket for readability and drains it), `send_to` sends directly. Owns the
//! socket and a bounded queue of received datagrams ([`QUEUE_LIMIT`] datagrams and
//! [`QUEUE_BYTES_LIMIT`] bytes); when the queue is full the socket is not read (the kernel's
//! receive buffer then drops, as UDP does). Must not touch the event loop's internals beyond
//! [`IoCtx`].
//!
//! Lifetime: the event loop closes the socket when the [`UdpSocket`] is dropped or the runtime
//! shuts down; after a shutdown the `UdpSocket` value may still exist, and its calls then fail
//! with `NotConnected` instead of touching a closed (possibly reused) fd number.
//!
//! ```
//! use percore::runtime::Runtime;
//! use percore::transport::udp::UdpSocket;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let h = rt.handle();
//! let a = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let b = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
//! a.send_to(b"ping", b.local_addr()).unwrap();
//! let (data, from) = rt.block_on(b.recv_from()).unwrap();
//! assert_eq!((data.as_slice(), from), (&b"ping"[..], a.local_addr()));
//! rt.shutdown();
//! ```

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Poll, Waker};

use crate::runtime::Handle;
use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, sys};

use super::TransportError;

/// Datagrams queued per socket before the event loop stops reading it.
pub const QUEUE_LIMIT: usize = 4096;

/// Payload bytes queued per socket before the event loop stops reading it (4 MiB; the queue
/// may exceed it by at most one datagram).
pub const QUEUE_BYTES_LIMIT: usize = 4 << 20;

/// The socket's fd while it is open; `None` once the event loop closed it. Users take the read
/// lock for a syscall; the loop takes the write lock to mark it closed before closing the fd,
/// so no syscall ever runs on a closed (and possibly reused) fd number.
type FdCell = Arc<RwLock<Option<RawFd>>>;

/// Marks `cell` closed (waiting for syscalls in progress), then returns the fd to close.
fn take_fd(cell: &FdCell) -> Option<RawFd> {
    cell.write().unwrap_or_else(|p| p.into_inner()).take()
}

#[derive(Default)]
struct State {
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    /// Payload bytes in `queue`.
    bytes: usize,
    waker: Option<Waker>,
    /// The loop stopped polling because the queue was full.
    paused: bool,
    closed: bool,
    error: Option<String>,
}

struct UdpHandler {
    fd: RawFd,
    cell: FdCell,
    state: Arc<Mutex<State>>,
    buf: Vec<u8>,
}

impl IoHandler for UdpHandler {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Readable => {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if st.queue.len() >= QUEUE_LIMIT || st.bytes >= QUEUE_BYTES_LIMIT {
                        st.paused = true;
                        break;
                    }
                    let (n, from) = match sys::recv_from(self.fd, &mut self.buf) {
                        Ok(r) => r,
                        Err(e) => match e.kind() {
                            io::ErrorKind::WouldBlock => break,
                            io::ErrorKind::Interrupted => continue,
                            _ => {
                                st.error = Some(e.to_string());
                                break;
                            }
                        },
                    };
                    if let Some(from) = from {
                        st.bytes += n;
                        st.queue.push_back((self.buf[..n].to_vec(), from));
                    }
                }
                if let Some(w) = st.waker.take() {
                    w.wake();
                }
                if !st.paused
                    && let Some(t) = ctx.token()
                {
                    ctx.poll_readable(t, self.fd);
                }
            }
            Event::Shutdown => {
                if let Some(fd) = take_fd(&self.cell) {
                    ctx.close(fd);
                }
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.closed = true;
                if let Some(w) = st.waker.take() {
                    w.wake();
                }
            }
            _ => {}
        }
    }
}

/// A UDP socket used from tasks and actors.
pub struct UdpSocket {
    handle: Handle,
    fd: FdCell,
    addr: SocketAddr,
    id: HandlerId,
    state: Arc<Mutex<State>>,
}

impl UdpSocket {
    /// Binds `addr`.
    pub fn bind(handle: &Handle, addr: SocketAddr) -> Result<UdpSocket, TransportError> {
        let lp = super::tcp::pick_loop(handle)?;
        let bind_err = |source| TransportError::Bind { addr, source };
        let fd = sys::new_socket(&addr, libc::SOCK_DGRAM).map_err(bind_err)?;
        if let Err(e) = sys::bind(fd, &addr) {
            sys::close_fd(fd);
            return Err(bind_err(e));
        }
        let local = sys::local_addr(fd).map_err(bind_err)?;
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let cell: FdCell = Arc::new(RwLock::new(Some(fd)));
        let cell2 = cell.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = handle.run_on_io(lp, move |ctx| {
            let id = ctx.register(Box::new(UdpHandler {
                fd,
                cell: cell2,
                state: st,
                buf: vec![0; 65536],
            }));
            ctx.poll_readable(id.token, fd);
            let _ = tx.send(id);
        });
        let id = sent.map_err(TransportError::Runtime).and_then(|()| {
            rx.recv()
                .map_err(|_| TransportError::Runtime(crate::runtime::RuntimeError::ShuttingDown))
        });
        let id = match id {
            Ok(id) => id,
            Err(e) => {
                // The closure never ran (or never will): nobody else knows the fd.
                if let Some(fd) = take_fd(&cell) {
                    sys::close_fd(fd);
                }
                return Err(e);
            }
        };
        Ok(UdpSocket {
            handle: handle.clone(),
            fd: cell,
            addr: local,
            id,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received and not yet taken by [`UdpSocket::recv_from`].
    pub fn queued(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue
            .len()
    }

    /// Payload bytes received and not yet taken (at most [`QUEUE_BYTES_LIMIT`] plus one
    /// datagram).
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Sends one datagram to `to` (`WouldBlock` if the socket's send buffer is full;
    /// `NotConnected` once the socket was closed by a runtime shutdown).
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let guard = self.fd.read().unwrap_or_else(|p| p.into_inner());
        let Some(fd) = *guard else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the UDP socket is closed (the runtime shut down); bind a new one",
            ));
        };
        // `fd` is open for the call: the read guard is held across it, and the event loop
        // takes the write lock (marking the socket closed) before it closes the fd.
        let r = sys::send_to(fd, data, to);
        drop(guard);
        r
    }

    /// Waits for the next datagram.
    pub async fn recv_from(&self) -> io::Result<(Vec<u8>, SocketAddr)> {
        let mut resume = false;
        let r = poll_fn(|cx| {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = st.queue.pop_front() {
                st.bytes -= d.0.len();
                if st.paused && st.queue.len() < QUEUE_LIMIT / 2 && st.bytes < QUEUE_BYTES_LIMIT / 2
                {
                    st.paused = false;
                    resume = true;
                }
                return Poll::Ready(Ok(d));
            }
            if let Some(e) = st.error.take() {
                return Poll::Ready(Err(io::Error::other(e)));
            }
            if st.closed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the UDP socket is closed (the runtime shut down); bind a new one",
                )));
            }
            st.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if resume {
            let id = self.id;
            let _ = self.handle.run_on_io(id.worker, move |ctx| {
                ctx.with_handler::<UdpHandler, _>(id, |h, ctx| ctx.poll_readable(id.token, h.fd));
            });
        }
        r
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self.handle.run_on_io(id.worker, move |ctx| {
            ctx.with_handler::<UdpHandler, _>(id, |h, ctx| {
                if let Some(fd) = take_fd(&h.cell) {
                    ctx.close(fd);
                }
                ctx.remove(id.token);
            });
        });
    }
}
