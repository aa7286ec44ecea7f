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
//! machine), `migrate` (a connection following its client to another loop's CPU) and
//! [`codec_protocol`] (any [`Codec`](super::Codec) as a protocol).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::runtime::Handle;
use crate::runtime::io::HandlerId;

use super::TransportError;

pub mod codec_protocol;
mod conn;
mod listener;
mod migrate;
pub mod options;
pub mod protocol;
pub mod reply;
pub mod target;

pub use codec_protocol::{CodecProtocol, FrameCall};
pub use options::{AcceptMode, ServerOptions, ServerStats};
pub use protocol::{ConnInfo, Decoded, Dispatched, ServerProtocol, TlsInfo};
pub use reply::{ConnectionGone, Responder, SendWindow};
pub use target::Target;

use listener::Listener;
pub(crate) use listener::listen_socket;

pub(super) struct Shared<P: ServerProtocol> {
    pub(super) proto: P,
    pub(super) opts: ServerOptions,
    pub(super) max_conns: usize,
    pub(super) stats: Arc<ServerStats>,
    pub(super) handle: Handle,
    pub(super) stopped: AtomicBool,
    pub(super) next_conn: AtomicU64,
    /// Event loops serving this server's connections.
    pub(super) loops: usize,
    /// The loop pinned to each CPU (indexed by CPU), for [`AcceptMode::IncomingCpu`].
    pub(super) loop_of_cpu: Vec<Option<usize>>,
    /// Connections open on each loop.
    pub(super) loop_conns: Vec<AtomicUsize>,
}

/// A running server: its listeners on every I/O worker. Dropping it does not stop it; call
/// [`Server::stop`] (runtime shutdown also closes everything).
pub struct Server {
    addr: SocketAddr,
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
            next_conn: AtomicU64::new(0),
            loops,
            loop_of_cpu: {
                let mut map = Vec::new();
                for i in 0..loops {
                    if let Some(cpu) = handle.io_cpu(i) {
                        if map.len() <= cpu {
                            map.resize(cpu + 1, None);
                        }
                        map[cpu].get_or_insert(i);
                    }
                }
                map
            },
            loop_conns: (0..loops).map(|_| AtomicUsize::new(0)).collect(),
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
        Ok(Server {
            addr: bound,
            stats,
            stop,
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
}
