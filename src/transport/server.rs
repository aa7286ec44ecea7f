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

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, Token};
use crate::runtime::{Actor, Addr, Handle, ShardedAddr, TrySendError};

use super::TransportError;

/// What decoding produced.
pub enum Decoded<R> {
    /// One request, and how many input bytes it used.
    Request(R, usize),
    /// More bytes are needed.
    Incomplete,
    /// More bytes are needed, and the peer waits for these bytes first (e.g. HTTP's
    /// `100 Continue` after `Expect: 100-continue`): the server sends them once per request,
    /// only when no earlier response is still owed (responses stay in order), then waits.
    Interim(Vec<u8>),
    /// The input is invalid: write `response` (if any), then close the connection.
    Reject {
        /// Bytes to send before closing (e.g. an HTTP 400), or none.
        response: Option<Vec<u8>>,
        /// Why, for the log.
        reason: String,
    },
}

/// What the protocol did with a decoded request on the I/O worker.
pub enum Dispatched<R> {
    /// Handed to an actor; the reply comes later through the [`Responder`].
    Sent,
    /// The target's mailbox is full: the connection stops reading and retries soon.
    Full(R, Responder),
    /// Answered on the I/O worker (e.g. 404); `close` closes after writing.
    Answer(Vec<u8>, bool),
}

/// A server-side protocol: how bytes become requests on the I/O worker, and where requests go.
/// Implement it to serve your own binary protocol (see `examples/custom_protocol.rs`).
pub trait ServerProtocol: Send + Sync + 'static {
    /// A decoded request.
    type Request: Send + 'static;

    /// Decodes one request from the front of `input` (all unconsumed bytes of the connection).
    /// Must reject input that can never complete within the protocol's limits.
    fn decode(&self, input: &[u8]) -> Decoded<Self::Request>;

    /// Routes a request (on the I/O worker). `conn` is a per-connection number, useful to pick
    /// a shard so one connection's requests stay on one core.
    fn dispatch(&self, req: Self::Request, resp: Responder, conn: u64)
    -> Dispatched<Self::Request>;

    /// [`dispatch`](Self::dispatch) with everything the server knows of the connection (peer
    /// address, TLS facts such as the client's certificate): override it to hand those to the
    /// handler. The default calls `dispatch` with `conn.id`.
    fn dispatch_on(
        &self,
        req: Self::Request,
        resp: Responder,
        conn: &ConnInfo,
    ) -> Dispatched<Self::Request> {
        self.dispatch(req, resp, conn.id)
    }

    /// Bytes to write when a request stays incomplete longer than the request timeout (HTTP:
    /// 408), before closing.
    fn timeout_response(&self) -> Option<Vec<u8>> {
        None
    }

    /// Bytes to write when the target actor has stopped (HTTP: 503), before closing.
    fn unavailable_response(&self) -> Option<Vec<u8>> {
        None
    }

    /// Bytes written when a [`Responder`] is dropped without replying (HTTP: 500).
    fn dropped_response(&self) -> Option<Vec<u8>> {
        None
    }

    /// Most input bytes an unfinished request may take (checked whenever `decode` needs more):
    /// past it the request is refused with [`too_large_response`](Self::too_large_response)
    /// and the connection closed. A backstop under the protocol's own limits; default 4 MiB.
    fn max_input(&self) -> usize {
        4 << 20
    }

    /// Bytes written when a connection's undecoded input passes
    /// [`max_input`](Self::max_input) (HTTP: 413), before closing.
    fn too_large_response(&self) -> Option<Vec<u8>> {
        None
    }

    /// The peer closed its side with `input` (non-empty) still undecoded: why that is an
    /// error (logged and counted in [`ServerStats::truncated`]), or `None` when it is fine.
    /// Default: an incomplete request is an error.
    fn truncated(&self, input: &[u8]) -> Option<String> {
        Some(format!(
            "the peer closed its side inside a request ({} bytes undecoded)",
            input.len()
        ))
    }
}

/// What the server knows of a connection, given to [`ServerProtocol::dispatch_on`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Per-server connection number (the `conn` of [`ServerProtocol::dispatch`]).
    pub id: u64,
    /// The peer's address (`None` if the kernel could not tell, e.g. it already left).
    pub peer: Option<SocketAddr>,
    /// The TLS session's facts once its handshake is done; `None` for plaintext.
    pub tls: Option<Arc<TlsInfo>>,
}

/// Facts of a finished TLS handshake on a server connection.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The application protocol agreed by ALPN.
    pub alpn: Option<Vec<u8>>,
    /// The host name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The certificate chain the client presented (DER, its own certificate first), already
    /// verified against the configured client CA; empty when the server asks for none.
    pub peer_certificates: Vec<Vec<u8>>,
    /// The protocol version, e.g. `TLSv1_3`.
    pub protocol_version: Option<String>,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: Option<String>,
}

impl TlsInfo {
    fn of(c: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            alpn: c.alpn_protocol().map(<[u8]>::to_vec),
            server_name: c.server_name().map(str::to_string),
            peer_certificates: c
                .peer_certificates()
                .map(|cs| cs.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default(),
            protocol_version: c.protocol_version().map(|v| format!("{v:?}")),
            cipher_suite: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
        }
    }
}

/// The address of the peer of socket `fd`.
fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; getpeername fills at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len are valid for writes for the duration of the call.
    if unsafe { libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
        return None;
    }
    crate::runtime::io::socket_addr(&ss)
}

/// Limits of a server's connections.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections held at once (more are accepted and closed at once). Default: the
    /// runtime's `max_connections`.
    pub max_connections: Option<usize>,
    /// A connection with no request in progress and nothing to write is closed after this.
    pub idle_timeout: Duration,
    /// A request must be complete this long after its first byte arrived (slow clients).
    pub request_timeout: Duration,
    /// Requests of one connection decoded but not yet answered on the wire (waiting for their
    /// actor, or answered and held behind an earlier reply) before it stops reading: the
    /// pipelining depth.
    pub max_in_flight: usize,
    /// Reply bytes of one connection not yet sent (queued for the socket, or held behind an
    /// earlier reply) before it stops reading.
    pub max_unsent: usize,
    /// Set `TCP_NODELAY` on accepted connections.
    pub nodelay: bool,
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// Serve TLS (rustls) on every connection: the handshake and record layer run on the event
    /// loop, the protocol sees plaintext. Build one with
    /// [`tls::server_config`](crate::transport::tls::server_config).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How connections are spread over the event loops (default: accept on one loop and hand
    /// each to the loop of its CPU; see [`AcceptMode`] for the measurement behind it).
    pub accept: AcceptMode,
}

/// How a [`Server`] spreads connections over the event loops.
///
/// Measured (BENCHMARKS.md, 2 loops, `wrk -t2 -c64`, io_uring): keep-alive traffic
/// `IncomingCpu` 283-289 k req/s, p99 ~0.2 ms vs `Distribute` 191-204 k, p99 1.5-2.7 ms in the
/// same run (each wrk thread's connections on one loop: every wake-up of a client thread
/// carries the answers of one loop, not two); earlier, `Distribute` 190-215 k vs `ReusePort`
/// 184-187 k, p99 6.6-7.1 ms (the kernel's hash put the 64 connections unevenly on the two
/// loops); one connection per request (`Connection: close`) `ReusePort` 45.1 k vs
/// `Distribute` 42.4 k conn/s. Hence the default: `IncomingCpu`; `ReusePort` for short-lived
/// connections at very high accept rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptMode {
    /// One listener on the first loop accepts, and hands each connection to the loop pinned to
    /// the CPU its packets arrive on (`SO_INCOMING_CPU`: the receive queue's CPU for a NIC,
    /// the client thread's for loopback), so a connection is served where its data already
    /// is, and a client's connections share a loop. Round robin where the CPU is unknown or
    /// runs no loop (workers not pinned); and a loop already holding 8 connections more than
    /// the least-loaded loop gets no more (one busy receive queue or client thread cannot
    /// pile every connection on one core). A plaintext connection whose packets later arrive
    /// on another loop's CPU (its client thread moved) follows them at its next quiet moment
    /// — nothing in flight, nothing unsent — at most once a second, within the same cap.
    #[default]
    IncomingCpu,
    /// A listening socket per loop with `SO_REUSEPORT`: the kernel picks the loop by a hash of
    /// the connection's addresses. No cross-thread hand-off; the spread is only statistically
    /// even (a few long-lived connections can land unevenly).
    ReusePort,
    /// One listener on the first loop accepts, and hands the connections to the loops in
    /// turn (round robin): an exact spread, for one cross-thread hand-off per connection.
    Distribute,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: None,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            max_unsent: 1 << 20,
            nodelay: true,
            backlog: 1024,
            tls: None,
            accept: AcceptMode::default(),
        }
    }
}

/// Counters of a server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted in total.
    pub accepted: AtomicU64,
    /// Connections refused because of `max_connections`.
    pub refused: AtomicU64,
    /// Requests decoded.
    pub requests: AtomicU64,
    /// Connections closed because of invalid input.
    pub rejected: AtomicU64,
    /// Connections whose peer closed its side in the middle of a request (see
    /// [`ServerProtocol::truncated`]).
    pub truncated: AtomicU64,
    /// Connections closed by the request or idle timeout.
    pub timed_out: AtomicU64,
}

struct Shared<P: ServerProtocol> {
    proto: P,
    opts: ServerOptions,
    max_conns: usize,
    stats: Arc<ServerStats>,
    handle: Handle,
    stopped: AtomicBool,
    next_conn: AtomicU64,
    /// Event loops serving this server's connections.
    loops: usize,
    /// The loop pinned to each CPU (indexed by CPU), for [`AcceptMode::IncomingCpu`].
    loop_of_cpu: Vec<Option<usize>>,
    /// Connections open on each loop.
    loop_conns: Vec<AtomicUsize>,
}

/// The way back from an app worker to the connection a request came from. Send exactly one
/// reply with [`Responder::send`] (before it, any number of parts with
/// [`Responder::send_part`] for a reply produced piece by piece); dropping it unanswered sends
/// the protocol's `dropped_response` (HTTP: 500), or closes the connection when parts were
/// already sent.
pub struct Responder {
    handle: Handle,
    id: HandlerId,
    seq: u64,
    done: bool,
    /// A part was sent: the reply has begun on the wire, so it can only end or break off.
    started: bool,
    deliver: fn(&mut IoCtx<'_>, HandlerId, u64, Part),
}

/// One piece of a reply on its way to the connection.
struct Part {
    /// `None`: the responder was dropped unanswered (the protocol's dropped response).
    bytes: Option<Vec<u8>>,
    /// Credit returned to the sender's window once the connection has taken the bytes.
    ack: Option<PartAck>,
    /// The reply ends with this piece.
    last: bool,
    /// Close the connection after the reply (with `last`).
    close: bool,
}

impl Responder {
    /// Sends `bytes` as the reply (or its final piece); `close` closes the connection after it
    /// is written.
    pub fn send(mut self, bytes: Vec<u8>, close: bool) {
        self.done = true;
        self.post(Part {
            bytes: Some(bytes),
            ack: None,
            last: true,
            close,
        });
    }

    /// Sends `bytes` as the next piece of a reply that goes on (a streamed body): written as
    /// soon as the replies before it are. `window` counts the bytes until the connection has
    /// taken them (handed them to the socket with its unsent bytes under `max_unsent`); wait
    /// on [`SendWindow::wait_below`] before sending more to keep a slow peer from piling them
    /// up. End the reply with [`send`](Self::send).
    pub fn send_part(&mut self, bytes: Vec<u8>, window: &Arc<SendWindow>) {
        self.started = true;
        let n = bytes.len();
        window.unacked.fetch_add(n, Ordering::AcqRel);
        self.post(Part {
            bytes: Some(bytes),
            ack: Some(PartAck {
                window: Some(window.clone()),
                n,
            }),
            last: false,
            close: false,
        });
    }

    /// Gives up this responder without replying, for a protocol that answers the request on
    /// the I/O worker with [`Dispatched::Answer`].
    pub fn discard(mut self) {
        self.done = true;
    }

    /// The I/O worker and connection this request came from.
    pub fn connection(&self) -> HandlerId {
        self.id
    }

    fn post(&self, part: Part) {
        let (id, seq, deliver) = (self.id, self.seq, self.deliver);
        let _ = self
            .handle
            .run_on_io(id.worker, move |ctx| deliver(ctx, id, seq, part));
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            // Unanswered: the protocol's dropped response; broken off after parts: only the
            // close can tell the peer (the reply's framing is already on the wire).
            let bytes = self.started.then(Vec::new);
            self.post(Part {
                bytes,
                ack: None,
                last: true,
                close: true,
            });
        }
    }
}

/// Flow control for a reply sent in parts ([`Responder::send_part`]): the bytes sent that the
/// connection has not taken yet. Shared by the sender (an app worker) and the connection's
/// event loop.
#[derive(Debug, Default)]
pub struct SendWindow {
    unacked: AtomicUsize,
    closed: AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

/// The connection of a [`SendWindow`] is gone: nothing more can be sent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection closed before the reply was complete; stop producing it")]
pub struct ConnectionGone;

impl SendWindow {
    /// A new window with nothing in flight.
    pub fn new() -> Arc<SendWindow> {
        Arc::new(SendWindow::default())
    }

    /// Bytes sent that the connection has not taken yet.
    pub fn unacked(&self) -> usize {
        self.unacked.load(Ordering::Acquire)
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until at most `limit` bytes are unacknowledged; `Err` once the connection is gone.
    /// Spends the task's cooperative budget
    /// ([`consume_budget`](crate::runtime::consume_budget)), so a producer whose pieces are
    /// always taken at once still lets its worker's event loop run (and report a dead peer).
    pub async fn wait_below(&self, limit: usize) -> Result<(), ConnectionGone> {
        crate::runtime::consume_budget().await;
        std::future::poll_fn(|cx| {
            let ready = |w: &SendWindow| {
                if w.is_closed() {
                    Some(Err(ConnectionGone))
                } else if w.unacked() <= limit {
                    Some(Ok(()))
                } else {
                    None
                }
            };
            if let Some(r) = ready(self) {
                return std::task::Poll::Ready(r);
            }
            *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            // Checked again after registering: an ack in between would not have seen the waker.
            match ready(self) {
                Some(r) => std::task::Poll::Ready(r),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }

    fn wake(&self) {
        let w = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Credit for `n` bytes of a [`SendWindow`]. Acknowledged when the connection takes the bytes;
/// dropped unacknowledged (the connection closed, or never got them) it closes the window, so
/// the sender learns the connection is gone instead of waiting forever.
struct PartAck {
    /// `None` once acknowledged.
    window: Option<Arc<SendWindow>>,
    n: usize,
}

impl PartAck {
    fn ack(mut self) {
        if let Some(w) = self.window.take() {
            w.unacked.fetch_sub(self.n, Ordering::AcqRel);
            w.wake();
        }
    }
}

impl Drop for PartAck {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            w.closed.store(true, Ordering::Release);
            w.wake();
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("conn", &self.id)
            .field("seq", &self.seq)
            .finish()
    }
}

/// Where requests go: an actor, or one of a sharded actor's shards (chosen per connection).
pub struct Target<M>(Arc<dyn Fn(M, u64) -> Result<(), TrySendError<M>> + Send + Sync>);

impl<M> Clone for Target<M> {
    fn clone(&self) -> Self {
        Target(self.0.clone())
    }
}

impl<M: Send + 'static> Target<M> {
    /// Delivers `msg` (without waiting); `conn` picks a shard for sharded targets.
    pub fn try_send(&self, msg: M, conn: u64) -> Result<(), TrySendError<M>> {
        (self.0)(msg, conn)
    }

    /// A target from a closure (e.g. to pick a shard from the message).
    pub fn from_fn(
        f: impl Fn(M, u64) -> Result<(), TrySendError<M>> + Send + Sync + 'static,
    ) -> Self {
        Target(Arc::new(f))
    }

    /// Requests go to the shard on the calling core when there is one (a co-located event
    /// loop: the hand-off never leaves the core), else to shard `connection % shards`, so a
    /// connection's requests are always served on one core.
    pub fn sharded<A, K>(s: ShardedAddr<A, K>) -> Self
    where
        A: Actor<Msg = M>,
        K: ?Sized + 'static,
    {
        Target(Arc::new(move |m, conn| {
            let all = s.all();
            if let Some(w) = crate::runtime::current_worker()
                && let Some(a) = all.iter().find(|a| a.worker() == w)
            {
                return a.try_tell(m);
            }
            all[(conn as usize) % all.len()].try_tell(m)
        }))
    }
}

impl<A: Actor> From<Addr<A>> for Target<A::Msg> {
    fn from(a: Addr<A>) -> Self {
        Target(Arc::new(move |m, _| a.try_tell(m)))
    }
}

impl<A: Actor, K: ?Sized + 'static> From<ShardedAddr<A, K>> for Target<A::Msg> {
    fn from(s: ShardedAddr<A, K>) -> Self {
        Target::sharded(s)
    }
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
            match listen_socket(bound, opts.backlog) {
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

/// A listening, non-blocking socket with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub(crate) fn listen_socket(
    addr: SocketAddr,
    backlog: i32,
) -> std::io::Result<(RawFd, SocketAddr)> {
    let fd = crate::runtime::io::new_socket(&addr, libc::SOCK_STREAM)?;
    for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        // Best effort: without REUSEPORT a second loop's bind fails and says so.
        let _ = crate::runtime::io::set_int_option(fd, libc::SOL_SOCKET, opt, 1);
    }
    let (ss, len) = crate::runtime::io::sockaddr(&addr);
    // SAFETY: ss is a valid sockaddr of length len.
    if unsafe { libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) } < 0
        // SAFETY: plain syscall on our fd.
        || unsafe { libc::listen(fd, backlog) } < 0
    {
        let e = std::io::Error::last_os_error();
        crate::runtime::io::close_fd(fd);
        return Err(e);
    }
    let local = local_addr(fd)?;
    Ok((fd, local))
}

/// The CPU that processed the last packets of socket `fd` (`SO_INCOMING_CPU`).
fn incoming_cpu(fd: RawFd) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `cpu` and `len` are valid for writes of the sizes given, for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            &mut cpu as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0 && cpu >= 0).then_some(cpu as usize)
}

/// The local address of socket `fd`.
pub(crate) fn local_addr(fd: RawFd) -> std::io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data; getsockname fills at most `len` bytes.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len are valid for writes.
    if unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    crate::runtime::io::socket_addr(&ss)
        .ok_or_else(|| std::io::Error::other(format!("unexpected address family {}", ss.ss_family)))
}

pub(crate) fn set_nodelay(fd: RawFd) {
    // Best effort: a socket without TCP_NODELAY still works, only with Nagle's delays.
    let _ = crate::runtime::io::set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
}

struct Listener<P: ServerProtocol> {
    fd: RawFd,
    shared: Arc<Shared<P>>,
    /// Next loop for [`AcceptMode::Distribute`] (and `IncomingCpu` where the CPU runs no loop).
    next_loop: usize,
}

impl<P: ServerProtocol> Listener<P> {
    fn round_robin(&mut self) -> usize {
        let t = self.next_loop % self.shared.loops;
        self.next_loop = self.next_loop.wrapping_add(1);
        t
    }

    /// The loop on the CPU the connection's packets arrive on, unless that loop already holds
    /// 8 connections more than the least-loaded loop (then the least loaded); round robin when
    /// the CPU runs no loop.
    fn by_incoming_cpu(&mut self, fd: RawFd) -> usize {
        let sh = &self.shared;
        let Some(t) = incoming_cpu(fd).and_then(|c| sh.loop_of_cpu.get(c).copied().flatten())
        else {
            return self.round_robin();
        };
        let load = |i: usize| sh.loop_conns[i].load(Ordering::Relaxed);
        let least = (0..sh.loops).min_by_key(|&i| load(i)).unwrap_or(t);
        if load(t) >= load(least) + 8 { least } else { t }
    }
}

impl<P: ServerProtocol> IoHandler for Listener<P> {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Accepted(fd) => {
                let st = &self.shared.stats;
                let max = self.shared.max_conns;
                // One atomic step, so listeners on several loops cannot overshoot together.
                if self.shared.stopped.load(Ordering::Relaxed)
                    || st
                        .open
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                            (o < max).then_some(o + 1)
                        })
                        .is_err()
                {
                    st.refused.fetch_add(1, Ordering::Relaxed);
                    ctx.close(fd);
                    return;
                }
                st.accepted.fetch_add(1, Ordering::Relaxed);
                if self.shared.opts.nodelay {
                    set_nodelay(fd);
                }
                let target = match self.shared.opts.accept {
                    AcceptMode::ReusePort => ctx.worker(),
                    AcceptMode::Distribute => self.round_robin(),
                    AcceptMode::IncomingCpu => self.by_incoming_cpu(fd),
                };
                let conns = &self.shared.loop_conns;
                conns[target].fetch_add(1, Ordering::Relaxed);
                if target == ctx.worker() {
                    start_conn(&self.shared, ctx, fd, target);
                    return;
                }
                let sh = self.shared.clone();
                let sent = self
                    .shared
                    .handle
                    .run_on_io(target, move |ctx| start_conn(&sh, ctx, fd, target));
                if let Err(e) = sent {
                    tracing::warn!(error = %e, loop_ = target, "could not hand a connection to its loop; serving it here");
                    let here = ctx.worker();
                    conns[target].fetch_sub(1, Ordering::Relaxed);
                    conns[here].fetch_add(1, Ordering::Relaxed);
                    start_conn(&self.shared, ctx, fd, here);
                }
            }
            Event::AcceptError(e) => {
                tracing::warn!(error = %e, "accept failed; the listener stays open");
            }
            Event::Shutdown => ctx.close(self.fd),
            _ => {}
        }
    }
}

/// Starts serving accepted connection `fd` on the current event loop (loop index `loop_idx`,
/// already counted in `loop_conns`).
fn start_conn<P: ServerProtocol>(
    shared: &Arc<Shared<P>>,
    ctx: &mut IoCtx<'_>,
    fd: RawFd,
    loop_idx: usize,
) {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let tls = match &shared.opts.tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(mut c) => {
                // Unsent bytes are bounded by `max_unsent` instead.
                c.set_buffer_limit(None);
                Some(Box::new(c))
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS session could not start; closing");
                shared.stats.open.fetch_sub(1, Ordering::Relaxed);
                shared.loop_conns[loop_idx].fetch_sub(1, Ordering::Relaxed);
                ctx.close(fd);
                return;
            }
        },
        None => None,
    };
    let info = ConnInfo {
        id: conn,
        peer: peer_addr(fd),
        tls: None,
    };
    register_conn(shared, ctx, fd, loop_idx, info, tls, Vec::new(), None);
}

/// Registers a connection's state machine on the current loop and starts receiving; `input`
/// holds bytes received elsewhere (a connection moved here), processed at once.
#[allow(clippy::too_many_arguments)]
fn register_conn<P: ServerProtocol>(
    shared: &Arc<Shared<P>>,
    ctx: &mut IoCtx<'_>,
    fd: RawFd,
    loop_idx: usize,
    info: ConnInfo,
    tls: Option<Box<rustls::ServerConnection>>,
    input: Vec<u8>,
    moved_at: Option<Instant>,
) {
    let has_input = !input.is_empty();
    let id = ctx.register(Box::new(Conn::<P> {
        tls,
        fd,
        loop_idx,
        info,
        shared: shared.clone(),
        input,
        partial_since: None,
        interim_sent: false,
        last_activity: ctx.now(),
        next_seq: 0,
        write_seq: 0,
        replies: VecDeque::new(),
        acks: Vec::new(),
        held: 0,
        in_flight: 0,
        blocked: None,
        processing: false,
        draining: false,
        tls_pending_since: None,
        close_after_write: false,
        read_closed: false,
        closed: false,
        move_to: None,
        moving: false,
        moved: false,
        moved_at,
        active: false,
    }));
    ctx.set_ticks(id.token, true);
    ctx.recv(id.token, fd);
    if has_input {
        ctx.with_handler::<Conn<P>, _>(id, |c, ctx| c.process(ctx));
    }
}

struct Conn<P: ServerProtocol> {
    /// The TLS session when the server speaks TLS.
    tls: Option<Box<rustls::ServerConnection>>,
    fd: RawFd,
    /// The event loop serving it (its count in `Shared::loop_conns`).
    loop_idx: usize,
    /// Its number, peer and TLS facts.
    info: ConnInfo,
    shared: Arc<Shared<P>>,
    /// Received bytes not yet decoded.
    input: Vec<u8>,
    /// When the request now being received began (for the request timeout).
    partial_since: Option<Instant>,
    /// `Decoded::Interim` bytes were sent for the request at the front of `input`.
    interim_sent: bool,
    last_activity: Instant,
    /// Sequence number of the next decoded request.
    next_seq: u64,
    /// Sequence number of the next reply to write.
    write_seq: u64,
    /// Replies (or pieces of them) that arrived before an earlier reply was complete, indexed
    /// by `seq - write_seq`.
    replies: VecDeque<Option<Held>>,
    /// Credits of streamed pieces written to the socket, returned once the unsent bytes are
    /// under `max_unsent`.
    acks: Vec<PartAck>,
    /// Bytes of the replies held in `replies` (counted against `max_unsent`).
    held: usize,
    /// Requests handed to a target whose reply has not come back yet.
    in_flight: usize,
    /// A request waiting for mailbox room.
    blocked: Option<(P::Request, Responder)>,
    /// Inside [`Conn::process`]: replies given on the I/O worker while it runs must not start
    /// it again (the loop goes on by itself; recursion could exhaust the stack).
    processing: bool,
    /// Input was refused: nothing more is read or decoded; the refusal is queued in order and
    /// the connection closes once it is written.
    draining: bool,
    /// TLS input has arrived that produced no plaintext yet (handshake, partial record) since
    /// this instant: a client trickling ciphertext meets the request timeout too.
    tls_pending_since: Option<Instant>,
    /// [`AcceptMode::IncomingCpu`]: the loop of the CPU this connection's packets now arrive
    /// on, when that is not this loop; it moves there at its next quiet moment.
    move_to: Option<usize>,
    /// Receiving is stopped for the move; waiting for the loop to let go of the socket.
    moving: bool,
    /// Handed to another loop: this state machine is finished without closing anything.
    moved: bool,
    /// When it last moved (a connection moves at most once a second).
    moved_at: Option<Instant>,
    /// Data arrived since the last tick (only those connections are checked for a move).
    active: bool,
    close_after_write: bool,
    read_closed: bool,
    closed: bool,
}

impl<P: ServerProtocol> Drop for Conn<P> {
    fn drop(&mut self) {
        // Dropped without `close` (the loop removed it after a panic in protocol code, or the
        // loop itself is going away): it no longer counts against `max_connections`.
        if !self.closed && !self.moved {
            self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.loop_conns[self.loop_idx].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn deliver<P: ServerProtocol>(ctx: &mut IoCtx<'_>, id: HandlerId, seq: u64, part: Part) {
    ctx.with_handler::<Conn<P>, _>(id, |c, ctx| c.on_reply(ctx, seq, part));
}

impl<P: ServerProtocol> Conn<P> {
    fn token(&self, ctx: &IoCtx<'_>) -> Token {
        ctx.token()
            .expect("a connection is only called as a handler")
    }

    fn close(&mut self, ctx: &mut IoCtx<'_>) {
        if self.closed {
            return;
        }
        self.closed = true;
        ctx.close(self.fd);
        let t = self.token(ctx);
        ctx.remove(t);
        // Streamed pieces not taken: their senders learn the connection is gone.
        self.acks.clear();
        self.replies.clear();
        self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.loop_conns[self.loop_idx].fetch_sub(1, Ordering::Relaxed);
    }

    /// Refuses further input: nothing more is read or decoded, `bytes` (if any) is written
    /// after every reply still owed (in request order), then the connection closes.
    fn refuse(&mut self, ctx: &mut IoCtx<'_>, bytes: Option<Vec<u8>>) {
        if self.draining || self.close_after_write {
            return;
        }
        self.draining = true;
        self.input.clear();
        self.partial_since = None;
        self.tls_pending_since = None;
        ctx.stop_recv(self.fd);
        let seq = self.next_seq;
        self.next_seq += 1;
        // Counted like a request answered on the I/O worker; `on_reply` settles it.
        self.in_flight += 1;
        self.on_reply(ctx, seq, Part::answer(bytes.unwrap_or_default(), true));
    }

    fn maybe_finish(&mut self, ctx: &mut IoCtx<'_>) {
        let nothing_owed = self.in_flight == 0 && self.blocked.is_none();
        if (self.close_after_write || (self.read_closed && nothing_owed))
            && ctx.send_queued(self.fd) == 0
        {
            self.close(ctx);
        }
    }

    fn responder(&mut self, ctx: &IoCtx<'_>) -> Responder {
        let seq = self.next_seq;
        self.next_seq += 1;
        Responder {
            handle: self.shared.handle.clone(),
            id: ctx.id().expect("a connection is only called as a handler"),
            seq,
            done: false,
            started: false,
            deliver: deliver::<P>,
        }
    }

    /// Decodes and dispatches as many requests as the limits allow. Re-entry (a reply given on
    /// the I/O worker while it runs) returns at once: the running call goes on by itself.
    fn process(&mut self, ctx: &mut IoCtx<'_>) {
        if self.processing {
            return;
        }
        self.processing = true;
        self.process_input(ctx);
        self.processing = false;
    }

    fn process_input(&mut self, ctx: &mut IoCtx<'_>) {
        if let Some((req, resp)) = self.blocked.take()
            && !self.hand_off(ctx, req, resp)
        {
            return;
        }
        while !self.closed && !self.close_after_write && !self.draining && self.blocked.is_none() {
            // Owed: decoded, not yet answered on the wire (in flight or held behind another).
            let owed = (self.next_seq - self.write_seq) as usize;
            if owed >= self.shared.opts.max_in_flight
                || ctx.send_queued(self.fd) + self.held > self.shared.opts.max_unsent
            {
                ctx.stop_recv(self.fd);
                return;
            }
            if self.input.is_empty() {
                self.partial_since = None;
                break;
            }
            let decoded = self.shared.proto.decode(&self.input);
            if matches!(decoded, Decoded::Incomplete | Decoded::Interim(_))
                && self.input.len() > self.shared.proto.max_input()
            {
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    conn = self.info.id,
                    bytes = self.input.len(),
                    "an unfinished request is over the protocol's max_input; closing the connection after the replies owed"
                );
                let r = self.shared.proto.too_large_response();
                self.refuse(ctx, r);
                return;
            }
            match decoded {
                Decoded::Incomplete => {
                    self.partial_since.get_or_insert(ctx.now());
                    self.check_truncated();
                    break;
                }
                Decoded::Interim(bytes) => {
                    self.partial_since.get_or_insert(ctx.now());
                    if !self.interim_sent && self.in_flight == 0 {
                        self.interim_sent = true;
                        self.write_out(ctx, bytes, false);
                    }
                    self.check_truncated();
                    break;
                }
                Decoded::Reject { response, reason } => {
                    self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(conn = self.info.id, %reason, "invalid input; closing the connection after the replies owed");
                    self.refuse(ctx, response);
                    return;
                }
                Decoded::Request(req, used) => {
                    self.input.drain(..used.min(self.input.len()));
                    self.partial_since = None;
                    self.interim_sent = false;
                    self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
                    let resp = self.responder(ctx);
                    self.in_flight += 1;
                    if !self.hand_off(ctx, req, resp) {
                        return;
                    }
                }
            }
        }
        if !self.closed
            && !self.close_after_write
            && !self.draining
            && !self.read_closed
            && self.blocked.is_none()
        {
            let t = self.token(ctx);
            if !ctx.is_receiving(self.fd) {
                ctx.recv(t, self.fd);
            }
        }
        if self.read_closed {
            self.maybe_finish(ctx);
        }
    }

    /// The peer has closed its side and the undecoded input can never complete: reported once
    /// (the protocol says whether that is an error), then dropped.
    fn check_truncated(&mut self) {
        if !self.read_closed || self.input.is_empty() {
            return;
        }
        if let Some(reason) = self.shared.proto.truncated(&self.input) {
            self.shared.stats.truncated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(conn = self.info.id, %reason, "truncated request");
        }
        self.input.clear();
        self.partial_since = None;
    }

    /// Gives a request to the protocol's target. False when it must wait (mailbox full).
    fn hand_off(&mut self, ctx: &mut IoCtx<'_>, req: P::Request, resp: Responder) -> bool {
        let seq = resp.seq;
        match self.shared.proto.dispatch_on(req, resp, &self.info) {
            Dispatched::Sent => true,
            Dispatched::Full(req, resp) => {
                self.blocked = Some((req, resp));
                ctx.stop_recv(self.fd);
                let t = self.token(ctx);
                ctx.retry_soon(t);
                false
            }
            Dispatched::Answer(bytes, close) => {
                // Answered here: takes the place of a reply, in order. The responder that
                // `dispatch` dropped has already posted a "dropped" reply for this seq, so the
                // answer is recorded first and that reply is ignored.
                self.on_reply(ctx, seq, Part::answer(bytes, close));
                !self.close_after_write
            }
        }
    }

    /// Queues `bytes` for the peer (encrypted first under TLS; `last` adds close_notify).
    fn write_out(&mut self, ctx: &mut IoCtx<'_>, bytes: Vec<u8>, last: bool) {
        let t = self.token(ctx);
        let Some(tls) = self.tls.as_mut() else {
            if !bytes.is_empty() {
                ctx.send(t, self.fd, bytes);
            }
            return;
        };
        if !bytes.is_empty() && tls.writer().write_all(&bytes).is_err() {
            // Unlimited buffer: only fails when the session is already broken.
            self.close(ctx);
            return;
        }
        if last {
            tls.send_close_notify();
        }
        self.flush_tls(ctx);
    }

    /// Sends whatever TLS records are waiting.
    fn flush_tls(&mut self, ctx: &mut IoCtx<'_>) {
        let t = self.token(ctx);
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while tls.wants_write() {
            if tls.write_tls(&mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() {
            ctx.send(t, self.fd, out);
        }
    }

    /// Feeds received ciphertext to the TLS session and moves the plaintext to `input`. False
    /// when the session failed (the connection is then closing).
    fn tls_in(&mut self, ctx: &mut IoCtx<'_>, mut d: &[u8]) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return true;
        };
        while !d.is_empty() {
            // rustls refuses more ciphertext only when its buffers are full of what it could
            // not process: the session is broken either way.
            let processed = tls
                .read_tls(&mut d)
                .map_err(|e| e.to_string())
                .and_then(|_| tls.process_new_packets().map_err(|e| e.to_string()));
            if let Err(e) = processed {
                tracing::debug!(conn = self.info.id, error = %e, "TLS error; closing this connection");
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                // The alert describing the error is sent before closing.
                self.flush_tls(ctx);
                self.close_after_write = true;
                ctx.stop_recv(self.fd);
                self.maybe_finish(ctx);
                return false;
            }
            let mut buf = [0u8; 16 * 1024];
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.input.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        self.flush_tls(ctx);
        true
    }

    /// Takes a reply or a piece of one: written at once when every earlier reply is complete,
    /// else held (counted in `held`) until they are.
    fn on_reply(&mut self, ctx: &mut IoCtx<'_>, seq: u64, part: Part) {
        if self.closed || seq < self.write_seq {
            return; // gone or already answered; a streamed piece's credit closes its window
        }
        let idx = (seq - self.write_seq) as usize;
        let Part {
            bytes,
            ack,
            last,
            close,
        } = part;
        // `None`: the responder was dropped unanswered.
        let bytes = bytes.or_else(|| self.shared.proto.dropped_response());
        if idx == 0 && self.replies.front().is_none_or(Option::is_none) {
            // The reply on the wire now: no need to hold anything.
            if let Some(b) = bytes {
                self.write_out(ctx, b, false);
            }
            self.acks.extend(ack);
            if last {
                self.replies.pop_front();
                self.in_flight = self.in_flight.saturating_sub(1);
                self.end_reply(ctx, close);
            }
        } else {
            while self.replies.len() <= idx {
                self.replies.push_back(None);
            }
            let held = self.replies[idx].get_or_insert_with(Held::default);
            if held.last {
                return; // already answered (see hand_off)
            }
            if let Some(b) = bytes {
                self.held += b.len();
                held.parts.push((b, ack));
            }
            if last {
                held.last = true;
                held.close = close;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        // Replies completed behind the one just finished go out in order.
        while !self.close_after_write && self.replies.front().is_some_and(Option::is_some) {
            let Some(Some(front)) = self.replies.pop_front() else {
                break;
            };
            let (last, close) = (front.last, front.close);
            for (b, ack) in front.parts {
                self.held -= b.len();
                self.write_out(ctx, b, false);
                self.acks.extend(ack);
            }
            if !last {
                // A streamed reply still going: it stays at the front, now written so far.
                self.replies.push_front(None);
                break;
            }
            self.end_reply(ctx, close);
        }
        self.release_acks(ctx);
        self.last_activity = ctx.now();
        if self.close_after_write {
            self.maybe_finish(ctx);
        } else {
            self.process(ctx);
        }
    }

    /// The reply at the front is complete: the next one may go; `close` ends the connection.
    fn end_reply(&mut self, ctx: &mut IoCtx<'_>, close: bool) {
        self.write_seq += 1;
        if close {
            // Under TLS, close_notify follows the reply.
            self.write_out(ctx, Vec::new(), true);
            self.close_after_write = true;
            ctx.stop_recv(self.fd);
            self.replies.clear();
            self.held = 0;
        }
    }

    /// [`AcceptMode::IncomingCpu`], on a tick after traffic: notes the loop of the CPU this
    /// connection's packets now arrive on when it is another loop with room (at most once a
    /// second per connection); the move starts at the next quiet moment.
    fn consider_move(&mut self, ctx: &mut IoCtx<'_>, now: Instant) {
        let active = std::mem::take(&mut self.active);
        let sh = &self.shared;
        if sh.opts.accept != AcceptMode::IncomingCpu
            || !active
            || self.tls.is_some()
            || self
                .moved_at
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        let Some(to) = incoming_cpu(self.fd).and_then(|c| sh.loop_of_cpu.get(c).copied().flatten())
        else {
            return;
        };
        let load = |i: usize| sh.loop_conns[i].load(Ordering::Relaxed);
        if to != self.loop_idx && load(to) < load(self.loop_idx) + 7 {
            self.move_to = Some(to);
            self.start_move(ctx);
        } else {
            self.move_to = None;
        }
    }

    /// Starts the move noted in `move_to` if nothing is under way on the connection: stops
    /// receiving and waits (polling each millisecond) for the loop to let go of the socket.
    fn start_move(&mut self, ctx: &mut IoCtx<'_>) {
        let quiet = !self.closed
            && !self.draining
            && !self.close_after_write
            && !self.read_closed
            && self.blocked.is_none()
            && self.in_flight == 0
            && self.next_seq == self.write_seq
            && self.input.is_empty()
            && self.replies.is_empty()
            && self.acks.is_empty()
            && ctx.send_queued(self.fd) == 0;
        if !quiet || self.move_to.is_none() {
            return;
        }
        self.moving = true;
        ctx.stop_recv(self.fd);
        let t = self.token(ctx);
        ctx.retry_soon(t);
    }

    /// Hands the socket and what was received meanwhile to the loop in `move_to` once this
    /// loop has let go of it; resumes here if that loop cannot take it.
    fn finish_move(&mut self, ctx: &mut IoCtx<'_>) {
        let t = self.token(ctx);
        let Some(to) = self.move_to else {
            self.moving = false;
            return;
        };
        if !ctx.release(self.fd) {
            ctx.retry_soon(t);
            return;
        }
        let sh = self.shared.clone();
        let (fd, info, input) = (self.fd, self.info.clone(), std::mem::take(&mut self.input));
        let now = ctx.now();
        let moved = self.shared.handle.run_on_io(to, move |ctx| {
            register_conn(&sh, ctx, fd, to, info, None, input, Some(now));
        });
        self.moving = false;
        self.move_to = None;
        match moved {
            Ok(()) => {
                let conns = &self.shared.loop_conns;
                conns[self.loop_idx].fetch_sub(1, Ordering::Relaxed);
                conns[to].fetch_add(1, Ordering::Relaxed);
                self.moved = true;
                ctx.remove(t);
            }
            Err(e) => {
                // Only a loop index the runtime does not have (never, for a loop of this
                // server); the bytes received meanwhile went with the refused closure, so the
                // connection cannot go on in order: close it, loudly.
                tracing::error!(error = %e, loop_ = to, conn = self.info.id, "connection could not move to its CPU's loop; closed");
                self.close(ctx);
            }
        }
    }

    /// Returns the credits of streamed pieces once the socket's backlog is under `max_unsent`.
    fn release_acks(&mut self, ctx: &IoCtx<'_>) {
        if !self.acks.is_empty() && ctx.send_queued(self.fd) <= self.shared.opts.max_unsent {
            for a in self.acks.drain(..) {
                a.ack();
            }
        }
    }
}

/// A reply held behind an earlier one: its pieces so far, and whether it is complete.
#[derive(Default)]
struct Held {
    parts: Vec<(Vec<u8>, Option<PartAck>)>,
    last: bool,
    close: bool,
}

impl Part {
    /// A whole reply given on the I/O worker.
    fn answer(bytes: Vec<u8>, close: bool) -> Part {
        Part {
            bytes: Some(bytes),
            ack: None,
            last: true,
            close,
        }
    }
}

impl<P: ServerProtocol> IoHandler for Conn<P> {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        if self.closed {
            return;
        }
        match event {
            Event::Data(d) => {
                self.last_activity = ctx.now();
                self.active = true;
                if self.close_after_write || self.draining {
                    return;
                }
                if self.moving {
                    // Received before the receive stopped: goes along with the connection.
                    self.input.extend_from_slice(d);
                    return;
                }
                if let Some(tls) = &self.tls {
                    let handshaking = tls.is_handshaking();
                    let before = self.input.len();
                    if !self.tls_in(ctx, d) {
                        return;
                    }
                    let done_handshake =
                        handshaking && self.tls.as_ref().is_some_and(|t| !t.is_handshaking());
                    if done_handshake && let Some(t) = &self.tls {
                        self.info.tls = Some(Arc::new(TlsInfo::of(t)));
                    }
                    if self.input.len() > before || done_handshake {
                        self.tls_pending_since = None;
                    } else {
                        self.tls_pending_since.get_or_insert(ctx.now());
                    }
                } else {
                    self.input.extend_from_slice(d);
                }
                if self.blocked.is_none() {
                    self.process(ctx);
                }
            }
            Event::Eof => {
                self.read_closed = true;
                if self.moving {
                    // The peer is done sending: no point moving; finish here.
                    self.moving = false;
                    self.move_to = None;
                }
                if self.blocked.is_none() {
                    self.process(ctx);
                }
                self.maybe_finish(ctx);
            }
            Event::RecvError(_) | Event::SendError(_) => self.close(ctx),
            Event::Sent(_) => {
                self.release_acks(ctx);
                if self.moving {
                    return;
                }
                if self.move_to.is_some() {
                    self.start_move(ctx);
                    if self.moving {
                        return;
                    }
                }
                if self.close_after_write || self.read_closed {
                    self.maybe_finish(ctx);
                } else if !ctx.is_receiving(self.fd) && self.blocked.is_none() {
                    self.process(ctx);
                }
            }
            Event::Retry => {
                if self.moving {
                    self.finish_move(ctx);
                } else if self.blocked.is_some() {
                    self.process(ctx);
                }
            }
            Event::Tick(now) => {
                if !self.moving {
                    self.consider_move(ctx, now);
                }
                let o = &self.shared.opts;
                let started = [self.partial_since, self.tls_pending_since]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t0) = started
                    && now.duration_since(t0) > o.request_timeout
                    && self.in_flight == 0
                    && !self.draining
                {
                    self.shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    // No plaintext answer while the TLS handshake is unfinished.
                    let r = if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                        None
                    } else {
                        self.shared.proto.timeout_response()
                    };
                    self.refuse(ctx, r);
                } else if self.input.is_empty()
                    && self.in_flight == 0
                    && self.blocked.is_none()
                    && now.duration_since(self.last_activity) > o.idle_timeout
                {
                    self.shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    self.close(ctx);
                }
            }
            Event::Shutdown => self.close(ctx),
            Event::Accepted(fd) => ctx.close(fd),
            Event::AcceptError(_) | Event::Connected(_) | Event::Readable => {}
        }
    }
}

/// A protocol on top of a [`Codec`](super::Codec): each decoded frame goes to `target` as a
/// [`FrameCall`], whose reply is encoded with the same codec on the app worker.
pub struct CodecProtocol<C: super::Codec> {
    codec: C,
    target: Target<FrameCall<C>>,
}

impl<C> CodecProtocol<C>
where
    C: super::Codec + Clone + Send + Sync + 'static,
    C::In: Send,
{
    /// Frames decoded with `codec` go to `target`.
    pub fn new(codec: C, target: impl Into<Target<FrameCall<C>>>) -> Self {
        CodecProtocol {
            codec,
            target: target.into(),
        }
    }
}

/// One decoded frame and the way to answer it.
pub struct FrameCall<C: super::Codec> {
    /// The frame.
    pub frame: C::In,
    codec: C,
    resp: Responder,
}

impl<C: super::Codec> FrameCall<C> {
    /// Encodes `msg` with the server's codec and sends it as the reply.
    pub fn reply(mut self, msg: &C::Out) -> Result<(), super::CodecError> {
        let mut out = Vec::new();
        self.codec.encode(msg, &mut out)?;
        self.resp.send(out, false);
        Ok(())
    }

    /// Replies with raw bytes (already encoded); `close` closes the connection afterwards.
    pub fn reply_raw(self, bytes: Vec<u8>, close: bool) {
        self.resp.send(bytes, close);
    }
}

impl<C> ServerProtocol for CodecProtocol<C>
where
    C: super::Codec + Clone + Send + Sync + 'static,
    C::In: Send,
{
    type Request = C::In;

    fn decode(&self, input: &[u8]) -> Decoded<C::In> {
        let mut codec = self.codec.clone();
        match codec.decode(input) {
            Ok(Some((m, used))) => Decoded::Request(m, used),
            Ok(None) => Decoded::Incomplete,
            Err(e) => Decoded::Reject {
                response: None,
                reason: e.to_string(),
            },
        }
    }

    /// The codec's own verdict on bytes left at the end of the stream
    /// ([`CodecError::Truncated`](super::CodecError::Truncated) by default).
    fn truncated(&self, input: &[u8]) -> Option<String> {
        self.codec
            .clone()
            .decode_eof(input)
            .err()
            .map(|e| e.to_string())
    }

    fn dispatch(&self, frame: C::In, resp: Responder, conn: u64) -> Dispatched<C::In> {
        let call = FrameCall {
            frame,
            codec: self.codec.clone(),
            resp,
        };
        match self.target.try_send(call, conn) {
            Ok(()) => Dispatched::Sent,
            Err(TrySendError::Full(c)) => Dispatched::Full(c.frame, c.resp),
            Err(TrySendError::Stopped(c)) => {
                c.resp.discard();
                Dispatched::Answer(Vec::new(), true)
            }
        }
    }
}
