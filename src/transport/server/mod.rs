//! Protocol-agnostic TCP serving on the I/O workers: listeners ([`AcceptMode`]: by default one
//! listener handing each connection to the loop of the CPU its packets arrive on, and moving
//! quiet connections after their client; or round robin; or one `SO_REUSEPORT` socket per
//! loop so the kernel spreads them), connection state machines that decode
//! requests on the I/O worker and hand them to app actors over the mesh, ordered replies
//! (pipelining), backpressure, connection limits and timeouts. Owns sockets and per-connection
//! buffers; knows no protocol: a [`ServerProtocol`] (HTTP, a framed codec, yours) says how bytes
//! become requests.
//!
//! Backpressure: a connection stops reading (so TCP's window closes on the peer) while its
//! hand-off to a full mailbox waits, while `max_in_flight` requests are decoded but not yet
//! answered on the wire (waiting for their actor, or ready but queued behind an earlier slow
//! reply), or while unsent and held reply bytes exceed `max_unsent`. An unfinished request is
//! capped at the protocol's [`ServerProtocol::max_input`]. Complete requests read before a stop
//! takes effect are kept (on io_uring, what the kernel had queued for the socket when reading
//! stopped: bounded by the socket's receive buffer). Nothing is buffered without bound.
//!
//! Every answer a connection gets, including the protocol's rejections of bad input (HTTP 400,
//! 413, 431), goes out in request order: a rejection waits for the replies owed before it, then
//! closes the connection.
//!
//! One concept per file: [`protocol`] (what a protocol implements, [`ConnInfo`]),
//! [`options`] ([`ServerOptions`], [`AcceptMode`], [`ServerStats`]), [`reply`] (the
//! [`Responder`] and [`SendWindow`]: the way back to a connection), [`target`] (where requests
//! go), `listener` (sockets and placement of new connections), `conn` (the connection state
//! machine), `placement` (which loop serves a connection), `migrate` (a connection following
//! its client to another loop's CPU) and
//! [`codec_protocol`] (any [`Codec`](super::Codec) as a protocol).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::runtime::Handle;
use crate::runtime::io::HandlerId;

use super::TransportError;

pub mod codec_protocol;
mod conn;
mod listener;
mod migrate;
pub mod options;
mod placement;
pub mod protocol;
pub mod reply;
pub mod target;

pub use codec_protocol::{CodecProtocol, FrameCall};
pub use options::{AcceptMode, ServerOptions, ServerStats};
pub use protocol::{ConnInfo, Decoded, Dispatched, ServerProtocol, TlsInfo};
pub use reply::{Answer, ConnectionGone, Pusher, Responder, SendWindow};
pub use target::Target;

use listener::Listener;
pub(crate) use listener::listen_socket;
use placement::Placement;

pub(super) struct Shared<P: ServerProtocol> {
    pub(super) proto: P,
    pub(super) opts: ServerOptions,
    pub(super) max_conns: usize,
    pub(super) stats: Arc<ServerStats>,
    pub(super) handle: Handle,
    pub(super) stopped: AtomicBool,
    /// Graceful shutdown: every connection stops reading, finishes the replies it owes, and
    /// closes (checked on each connection's tick).
    pub(super) draining: AtomicBool,
    /// Shutdown's deadline passed: every connection closes at its next tick.
    pub(super) force: AtomicBool,
    pub(super) next_conn: AtomicU64,
    /// Event loops serving this server's connections.
    pub(super) loops: usize,
    /// Connections per loop and per incoming CPU, and the rule that places them.
    pub(super) place: Placement,
}

/// A running server: its listeners on every event loop and its connections.
///
/// Stopping, three ways:
/// - [`Server::shutdown`]`(deadline).await`: stops accepting, lets every connection finish the
///   replies it owes (no new request is read; an idle keep-alive connection closes at its next
///   tick, within 250 ms), waits until all are closed, and closes whatever is left at the
///   deadline. Returns what happened ([`ServerShutdown`]).
/// - Dropping it: the same graceful stop, without waiting (runtime shutdown still closes
///   everything).
/// - [`Server::stop`]: stops accepting only; open connections go on until idle.
///
/// To keep a server running for the life of its runtime without holding it, use
/// [`Server::detach`].
pub struct Server {
    addr: SocketAddr,
    /// Sets `draining` (false) or `force` (true) on the shared state.
    finish: Arc<dyn Fn(bool) + Send + Sync>,
    detached: bool,
    stats: Arc<ServerStats>,
    stop: Arc<dyn Fn() + Send + Sync>,
}

impl Server {
    /// Binds `addr` on every I/O worker of `handle`'s runtime and serves `proto`.
    pub fn bind<P: ServerProtocol>(
        handle: &Handle,
        addr: SocketAddr,
        proto: P,
        opts: ServerOptions,
    ) -> Result<Server, TransportError> {
        let loops = handle.io_workers();
        if loops == 0 {
            return Err(TransportError::NoIoWorkers);
        }
        let n = match opts.accept {
            AcceptMode::ReusePort => loops,
            AcceptMode::Distribute | AcceptMode::IncomingCpu => 1,
        };
        let mut fds = Vec::with_capacity(n);
        let mut bound = addr;
        for _ in 0..n {
            match listen_socket(bound, opts.backlog, opts.accept == AcceptMode::ReusePort) {
                Ok((fd, local)) => {
                    bound = local;
                    fds.push(fd);
                }
                Err(e) => {
                    for fd in fds {
                        crate::runtime::io::close_fd(fd);
                    }
                    return Err(TransportError::Bind { addr, source: e });
                }
            }
        }
        let stats = Arc::new(ServerStats::default());
        let shared = Arc::new(Shared {
            max_conns: opts
                .max_connections
                .unwrap_or(handle.config().max_connections)
                .max(1),
            proto,
            opts,
            stats: stats.clone(),
            handle: handle.clone(),
            stopped: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            force: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            loops,
            place: Placement::new(handle, loops),
        });
        let ids: Arc<std::sync::Mutex<Vec<HandlerId>>> = Arc::default();
        for (i, fd) in fds.into_iter().enumerate() {
            let sh = shared.clone();
            let ids2 = ids.clone();
            handle
                .run_on_io(i, move |ctx| {
                    let id = ctx.register(Box::new(Listener {
                        fd,
                        shared: sh,
                        next_loop: 0,
                    }));
                    ctx.accept(id.token, fd);
                    ids2.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                })
                .map_err(TransportError::Runtime)?;
        }
        tracing::info!(%bound, event_loops = loops, accept = ?shared.opts.accept, "server listening");
        let h2 = handle.clone();
        let sh2 = shared.clone();
        let stop = Arc::new(move || {
            sh2.stopped.store(true, Ordering::SeqCst);
            for id in ids.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
                let _ = h2.run_on_io(id.worker, move |ctx| {
                    ctx.with_handler::<Listener<P>, _>(id, |l, ctx| {
                        ctx.close(l.fd);
                        ctx.remove(id.token);
                    });
                });
            }
        });
        let sh3 = shared.clone();
        let finish = Arc::new(move |force: bool| {
            let flag = if force { &sh3.force } else { &sh3.draining };
            flag.store(true, Ordering::SeqCst);
        });
        Ok(Server {
            addr: bound,
            stats,
            stop,
            finish,
            detached: false,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting (open connections finish what they are doing and stay until idle).
    pub fn stop(&self) {
        (self.stop)()
    }

    /// Lets the server run until its runtime shuts down, without a handle to it.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Graceful shutdown (hyper-style): stops accepting; every connection stops reading new
    /// requests, writes the replies it owes in order, and closes; waits until no connection
    /// is left. Connections still open at `deadline` are closed at their next tick (within
    /// 250 ms), owed replies or not. Await it on a worker or with `Runtime::block_on`.
    pub async fn shutdown(mut self, deadline: std::time::Duration) -> ServerShutdown {
        self.detached = true; // this call does what Drop would
        let t0 = std::time::Instant::now();
        self.stop();
        (self.finish)(false);
        let open = || self.stats.open.load(Ordering::SeqCst);
        let at_start = open();
        while open() > 0 && t0.elapsed() < deadline {
            crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
        }
        let forced = open();
        if forced > 0 {
            (self.finish)(true);
            // Each connection closes at its next tick (every 250 ms).
            let limit = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while open() > 0 && std::time::Instant::now() < limit {
                crate::runtime::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        ServerShutdown {
            open_at_start: at_start,
            closed_gracefully: at_start.saturating_sub(forced),
            forced,
            still_open: open(),
            elapsed: t0.elapsed(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.detached {
            self.stop();
            (self.finish)(false);
        }
    }
}

/// What [`Server::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerShutdown {
    /// Connections open when the shutdown began (after accepting stopped).
    pub open_at_start: usize,
    /// Of those, the connections that finished their replies and closed before the deadline.
    pub closed_gracefully: usize,
    /// Connections still open at the deadline, then closed.
    pub forced: usize,
    /// Connections still open when the call returned (0 unless a loop is stuck).
    pub still_open: usize,
    /// How long it took.
    pub elapsed: std::time::Duration,
}
