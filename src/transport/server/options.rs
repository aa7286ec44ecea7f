//! How a server is run: [`ServerOptions`] (limits, timeouts, TLS, [`AcceptMode`]) and the
//! counters it keeps ([`ServerStats`]). Owns configuration and counters only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

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

/// How a [`Server`](super::Server) spreads connections over the event loops.
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
    /// [`ServerProtocol::truncated`](super::ServerProtocol::truncated)).
    pub truncated: AtomicU64,
    /// Connections closed by the request or idle timeout.
    pub timed_out: AtomicU64,
}
