//! What a server-side protocol implements ([`ServerProtocol`]: decode on the event loop,
//! dispatch to a target, the protocol's own refusals) and what it is told of a connection
//! ([`ConnInfo`], [`TlsInfo`]). Owns no state.

use std::net::SocketAddr;
use std::sync::Arc;

use super::reply::{Answer, Responder};

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
    /// Answered on the event loop (e.g. 404): made with [`Responder::answer`], which takes the
    /// request's responder, so no other reply can follow for it.
    Answer(Answer),
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

    /// A connection has been accepted (and, for TLS, its session created): called once per
    /// connection on its first event loop, before its first request (not again when it moves
    /// to another loop). Keep per-connection state keyed by `conn.id` here (a session's
    /// authentication, a client name) and drop it in [`closed`](Self::closed). Default: nothing.
    fn opened(&self, conn: &ConnInfo) {
        let _ = conn;
    }

    /// The connection is gone (closed by either side, refused, timed out, or its loop stopped):
    /// called exactly once for each connection [`opened`](Self::opened) saw. Default: nothing.
    fn closed(&self, conn: &ConnInfo) {
        let _ = conn;
    }

    /// Whether the connection may move to another event loop now ([`AcceptMode::IncomingCpu`]
    /// moves quiet connections to the loop their packets arrive on). Say no for a connection
    /// that has [`Pusher`](super::Pusher)s (a pushed message would find it gone). Default: yes.
    ///
    /// [`AcceptMode::IncomingCpu`]: super::AcceptMode::IncomingCpu
    fn may_move(&self, conn: &ConnInfo) -> bool {
        let _ = conn;
        true
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
    /// error (logged and counted in [`ServerStats::truncated`](super::ServerStats::truncated)), or `None` when it is fine.
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
    pub(super) fn of(c: &rustls::ServerConnection) -> TlsInfo {
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
