//! HTTP/1.1 server on the I/O workers: requests are parsed (`httparse`) and routed on the I/O
//! worker, handed to app actors as [`HttpCall`] messages, and their [`Response`]s are encoded
//! on the app worker and written in request order (keep-alive and pipelining). Limits answer
//! with 400, 408, 413 or 431 and close only that connection. A request sent with
//! `Expect: 100-continue` gets `100 Continue` once its head is in (and 413 instead when its
//! declared body is over the limit). Owns HTTP semantics; sockets and buffers belong to
//! [`crate::transport::server`].
//!
//! Routing: [`Router`] matches method and path; `:name` segments become path parameters and a
//! final `*name` takes the rest. An unknown path gets 404 and a known path with another method
//! 405, both answered on the I/O worker.

pub mod client;
pub mod date;
pub mod request;
pub mod stream;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

pub use client::{Client, ClientError, Upload};
use request::Parsed;
pub use request::{Limits, Method, ParseError, Request};
pub use stream::BodyStream;

use super::TransportError;
use super::server::{
    ConnInfo, Decoded, Dispatched, Responder, Server, ServerOptions, ServerProtocol, Target,
    TlsInfo,
};
use crate::runtime::{Handle, TrySendError};

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length`, `Date`, `Server` and `Connection` are added). Static
    /// names and values (`"Content-Type"`) are kept without a copy.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers, empty body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// An `application/json` response with `value` serialized (500 if it cannot be).
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(b) => Response::new(status)
                .header("Content-Type", "application/json")
                .body(b),
            Err(e) => Response::text(500, format!("could not serialize the response: {e}")),
        }
    }

    /// Adds a header.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Encodes the response (status line, headers, body) into `out`. `head` leaves the body
    /// out (HEAD requests); `close` adds `Connection: close`. Same as
    /// [`encode_for`](Response::encode_for) with version 1 (HTTP/1.1).
    pub fn encode(&self, out: &mut Vec<u8>, head: bool, close: bool) {
        self.encode_for(out, head, close, 1);
    }

    /// Encodes the response for a request of HTTP/1.`version` into `out`. `head` leaves the
    /// body out (HEAD requests); `close` adds `Connection: close`, and a kept-alive HTTP/1.0
    /// connection (`version` 0, not `close`) gets `Connection: keep-alive`.
    ///
    /// 1xx, 204 and 304 responses carry neither `Content-Length` nor a body (RFC 9112 §6.3),
    /// whatever [`body`](Response::body) holds. A header whose name is not a token or whose
    /// value holds CR, LF or NUL is left out (with a warning through `tracing`) rather than
    /// allowed to split the response.
    pub fn encode_for(&self, out: &mut Vec<u8>, head: bool, close: bool, version: u8) {
        let bodiless =
            (100..200).contains(&self.status) || self.status == 204 || self.status == 304;
        let body: &[u8] = if head || bodiless { &[] } else { &self.body };
        let extra: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        out.reserve(FIXED_HEAD + extra + body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_num(out, self.status as usize);
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nServer: percore\r\nDate: ");
        date::append_now(out);
        if !bodiless {
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_num(out, self.body.len());
        }
        if close {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if version == 0 {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        self.push_headers(out);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    }

    /// Appends the handler's headers, each after a CRLF, leaving out the framing headers (the
    /// encoder's to set: a second `Content-Length` or a `Transfer-Encoding` would contradict
    /// it) and any that could split the response (a name that is not a token, a value with CR,
    /// LF or NUL).
    pub(crate) fn push_headers(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.headers {
            // The framing is the encoder's: a second Content-Length or a Transfer-Encoding
            // from the handler would contradict it.
            if n.eq_ignore_ascii_case("content-length")
                || n.eq_ignore_ascii_case("transfer-encoding")
            {
                tracing::debug!(name = %n, "framing header from the handler left out");
                continue;
            }
            if !is_token(n) || v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                tracing::warn!(
                    name = %n.escape_debug(),
                    value = %v.escape_debug(),
                    status = self.status,
                    "response header left out: the name is not a token or the value holds CR, LF or NUL"
                );
                continue;
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// Whether `s` is an HTTP token (RFC 9110 §5.6.2): a valid header name.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Appends `data` as one chunk of a chunked body (hex size, CRLF, the bytes, CRLF); an empty
/// `data` would be the last chunk, so callers skip it.
pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write;
    out.reserve(data.len() + 20);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Most bytes of what [`Response::encode`] writes besides the extra headers and the body: the
/// status line with the longest reason phrase, `Server`, `Date`, a 20-digit `Content-Length`,
/// `Connection: keep-alive` and the blank line (so one reservation covers the whole response).
const FIXED_HEAD: usize = 168;

fn push_num(out: &mut Vec<u8>, mut v: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn error_bytes(status: u16, msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Response::text(status, format!("{msg}\n")).encode(&mut out, false, true);
    out
}

/// A request and the way to answer it: the message HTTP handler actors receive.
#[derive(Debug)]
pub struct HttpCall {
    /// The request (with path parameters filled in).
    pub req: Request,
    resp: Responder,
    peer: Option<SocketAddr>,
    tls: Option<Arc<TlsInfo>>,
}

impl HttpCall {
    /// The client's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The TLS session's facts (ALPN, SNI, the client's verified certificate chain) on an
    /// HTTPS server; `None` on plaintext.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// Sends `response`. The connection stays open if the request allows keep-alive.
    pub fn respond(self, response: Response) {
        self.into_parts().1.respond(response);
    }

    /// Splits into the request and a [`HttpReply`] to answer later (e.g. after an `ask`).
    pub fn into_parts(self) -> (Request, HttpReply) {
        let reply = HttpReply {
            head: self.req.method == Method::Head,
            keep_alive: self.req.keep_alive,
            version: self.req.version,
            resp: self.resp,
        };
        (self.req, reply)
    }
}

/// The answering half of an [`HttpCall`].
#[derive(Debug)]
pub struct HttpReply {
    head: bool,
    keep_alive: bool,
    /// The request's HTTP version (0: HTTP/1.0, no chunked encoding; a streamed body ends with
    /// the close).
    version: u8,
    resp: Responder,
}

impl HttpReply {
    /// Sends `response`.
    pub fn respond(self, response: Response) {
        let close = !self.keep_alive;
        let mut out = Vec::new();
        response.encode_for(&mut out, self.head, close, self.version);
        self.resp.send(out, close);
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Param(String),
    Rest(String),
}

struct Route {
    method: Method,
    segs: Vec<Seg>,
    target: Target<HttpCall>,
}

/// A matched route: its target and the path parameters.
type Found<'a> = (&'a Target<HttpCall>, Vec<(String, String)>);

/// Why no route took a request.
enum Miss {
    /// No route for the path: 404.
    NotFound,
    /// Routes for the path, for other methods (listed, for `Allow`): 405.
    MethodNotAllowed(String),
}

/// Method + path routing to actors.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router (everything is 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// Routes `method` + `pattern` to `target` (an `Addr<A>` or `ShardedAddr<A, K>` of an
    /// actor whose message is [`HttpCall`], or a [`Target`]). Patterns: `/users/:id`,
    /// `/static/*path`.
    pub fn route(
        mut self,
        method: Method,
        pattern: &str,
        target: impl Into<Target<HttpCall>>,
    ) -> Router {
        let segs = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                if let Some(p) = s.strip_prefix(':') {
                    Seg::Param(p.to_string())
                } else if let Some(p) = s.strip_prefix('*') {
                    Seg::Rest(p.to_string())
                } else {
                    Seg::Lit(s.to_string())
                }
            })
            .collect();
        self.routes.push(Route {
            method,
            segs,
            target: target.into(),
        });
        self
    }

    /// `route(Method::Get, ..)`.
    pub fn get(self, pattern: &str, target: impl Into<Target<HttpCall>>) -> Router {
        self.route(Method::Get, pattern, target)
    }

    /// `route(Method::Post, ..)`.
    pub fn post(self, pattern: &str, target: impl Into<Target<HttpCall>>) -> Router {
        self.route(Method::Post, pattern, target)
    }

    /// `route(Method::Put, ..)`.
    pub fn put(self, pattern: &str, target: impl Into<Target<HttpCall>>) -> Router {
        self.route(Method::Put, pattern, target)
    }

    /// `route(Method::Delete, ..)`.
    pub fn delete(self, pattern: &str, target: impl Into<Target<HttpCall>>) -> Router {
        self.route(Method::Delete, pattern, target)
    }

    /// Finds the route for `method` and `path`: Ok((target, params)), or the miss: no route
    /// for the path (404), or routes for other methods (405, with the methods they accept for
    /// the `Allow` header).
    fn find(&self, method: &Method, path: &str) -> Result<Found<'_>, Miss> {
        let mut allowed: Vec<&str> = Vec::new();
        for r in &self.routes {
            let Some(params) = match_segs(&r.segs, path) else {
                continue;
            };
            // HEAD is served by GET routes.
            if r.method == *method || (*method == Method::Head && r.method == Method::Get) {
                return Ok((&r.target, params));
            }
            let mut add = |m: &'static str| {
                if !allowed.contains(&m) {
                    allowed.push(m);
                }
            };
            match &r.method {
                Method::Get => {
                    add("GET");
                    add("HEAD");
                }
                Method::Head => add("HEAD"),
                Method::Post => add("POST"),
                Method::Put => add("PUT"),
                Method::Delete => add("DELETE"),
                Method::Patch => add("PATCH"),
                Method::Options => add("OPTIONS"),
                Method::Other(_) => {}
            }
            if let Method::Other(m) = &r.method
                && !allowed.contains(&m.as_str())
            {
                allowed.push(m.as_str());
            }
        }
        Err(if allowed.is_empty() {
            Miss::NotFound
        } else {
            Miss::MethodNotAllowed(allowed.join(", "))
        })
    }
}

/// Matches `path`'s non-empty segments against a route's: the path parameters on a match.
/// Walks the path once per route and allocates only for parameters. Literal segments compare
/// as sent; parameter values are percent-decoded ([`percent_decode`]).
fn match_segs(segs: &[Seg], path: &str) -> Option<Vec<(String, String)>> {
    let mut parts = path.split('/').filter(|s| !s.is_empty());
    let mut params = Vec::new();
    for s in segs {
        match s {
            Seg::Rest(name) => {
                let mut rest = String::new();
                for (i, p) in parts.enumerate() {
                    if i > 0 {
                        rest.push('/');
                    }
                    rest.push_str(&percent_decode(p));
                }
                params.push((name.clone(), rest));
                return Some(params);
            }
            Seg::Lit(l) => {
                if parts.next() != Some(l.as_str()) {
                    return None;
                }
            }
            Seg::Param(name) => {
                params.push((name.clone(), percent_decode(parts.next()?).into_owned()))
            }
        }
    }
    parts.next().is_none().then_some(params)
}

/// `seg` with its `%XX` escapes decoded (`a%20b` → `a b`; `+` stays `+`). A segment with an
/// invalid escape (`%zz`, a `%` near the end) or whose decoded bytes are not UTF-8 is kept
/// as sent, undecoded, so a handler can still see and refuse it.
fn percent_decode(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return Cow::Borrowed(seg),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(seg), Cow::Owned)
}

/// The HTTP/1.1 [`ServerProtocol`]: parse, route, answer errors.
pub struct HttpProtocol {
    router: Router,
    limits: Limits,
}

impl HttpProtocol {
    /// A protocol serving `router` within `limits`.
    pub fn new(router: Router, limits: Limits) -> Self {
        HttpProtocol { router, limits }
    }
}

impl ServerProtocol for HttpProtocol {
    type Request = HttpCallParts;

    fn decode(&self, input: &[u8]) -> Decoded<HttpCallParts> {
        match request::parse_request(input, &self.limits) {
            Ok(Parsed::Complete(req, used)) => Decoded::Request(HttpCallParts(req), used),
            Ok(Parsed::Incomplete {
                expect_continue: true,
            }) => Decoded::Interim(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Ok(Parsed::Incomplete { .. }) => Decoded::Incomplete,
            Err(e) => Decoded::Reject {
                response: Some(error_bytes(e.status(), &e.to_string())),
                reason: e.to_string(),
            },
        }
    }

    fn dispatch(
        &self,
        req: HttpCallParts,
        resp: Responder,
        conn: u64,
    ) -> Dispatched<HttpCallParts> {
        let info = ConnInfo {
            id: conn,
            peer: None,
            tls: None,
        };
        self.dispatch_on(req, resp, &info)
    }

    fn dispatch_on(
        &self,
        req: HttpCallParts,
        resp: Responder,
        conn: &ConnInfo,
    ) -> Dispatched<HttpCallParts> {
        let mut req = req.0;
        match self.router.find(&req.method, req.path()) {
            Ok((target, params)) => {
                req.params = params;
                let call = HttpCall {
                    req,
                    resp,
                    peer: conn.peer,
                    tls: conn.tls.clone(),
                };
                match target.try_send(call, conn.id) {
                    Ok(()) => Dispatched::Sent,
                    Err(TrySendError::Full(c)) => Dispatched::Full(HttpCallParts(c.req), c.resp),
                    Err(TrySendError::Stopped(c)) => Dispatched::Answer(
                        c.resp
                            .answer(error_bytes(503, "the handler has stopped"), true),
                    ),
                }
            }
            Err(miss) => {
                let close = !req.keep_alive;
                let mut out = Vec::new();
                let response = match miss {
                    Miss::NotFound => Response::text(404, "no route for this path\n"),
                    // RFC 9110 15.5.6: a 405 lists the methods the resource supports.
                    Miss::MethodNotAllowed(allow) => {
                        Response::text(405, "method not allowed for this path\n")
                            .header("Allow", allow)
                    }
                };
                response.encode_for(&mut out, req.method == Method::Head, close, req.version);
                Dispatched::Answer(resp.answer(out, close))
            }
        }
    }

    fn timeout_response(&self) -> Option<Vec<u8>> {
        Some(error_bytes(408, "request not completed in time"))
    }

    fn unavailable_response(&self) -> Option<Vec<u8>> {
        Some(error_bytes(503, "the handler has stopped"))
    }

    fn dropped_response(&self) -> Option<Vec<u8>> {
        Some(error_bytes(
            500,
            "the handler dropped the request without answering",
        ))
    }

    /// The head and body limits, with room for chunk framing up to the body's size again:
    /// a chunked body whose framing more than doubles it is refused with 413.
    fn max_input(&self) -> usize {
        let l = &self.limits;
        l.max_header_bytes
            .saturating_add(l.max_body.saturating_mul(2))
            .saturating_add(64 << 10)
    }

    fn too_large_response(&self) -> Option<Vec<u8>> {
        Some(error_bytes(413, "request too large"))
    }
}

/// A parsed request on its way through the router (internal to [`HttpProtocol`]).
#[derive(Debug)]
pub struct HttpCallParts(Request);

/// Options of an [`HttpServer`].
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Connection limits and timeouts.
    pub server: ServerOptions,
    /// Request limits.
    pub limits: Limits,
}

/// An HTTP/1.1 server.
pub struct HttpServer {
    server: Server,
}

impl HttpServer {
    /// Serves `router` on `addr` with default options.
    pub fn bind(
        handle: &Handle,
        addr: SocketAddr,
        router: Router,
    ) -> Result<HttpServer, TransportError> {
        Self::bind_with(handle, addr, router, HttpOptions::default())
    }

    /// Serves `router` on `addr` with `opts`.
    pub fn bind_with(
        handle: &Handle,
        addr: SocketAddr,
        router: Router,
        opts: HttpOptions,
    ) -> Result<HttpServer, TransportError> {
        let proto = HttpProtocol::new(router, opts.limits);
        Ok(HttpServer {
            server: Server::bind(handle, addr, proto, opts.server)?,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Counters.
    pub fn stats(&self) -> &super::ServerStats {
        self.server.stats()
    }

    /// Stops accepting (open connections go on until idle). Dropping the server stops it
    /// gracefully; see [`Server`] for the three ways to stop.
    pub fn stop(&self) {
        self.server.stop()
    }

    /// Graceful shutdown with a deadline: see [`Server::shutdown`].
    pub async fn shutdown(self, deadline: std::time::Duration) -> super::ServerShutdown {
        self.server.shutdown(deadline).await
    }

    /// Lets the server run until its runtime shuts down: see [`Server::detach`].
    pub fn detach(self) {
        self.server.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segments of `pattern` as a router stores them.
    #[allow(clippy::result_large_err)]
    fn segs(pattern: &str) -> Vec<Seg> {
        Router::new()
            .route(Method::Get, pattern, Target::from_fn(|_, _| Ok(())))
            .routes
            .remove(0)
            .segs
    }

    #[test]
    fn routes_match_params_and_rest() {
        assert_eq!(
            match_segs(&segs("/users/:id"), "/users/42"),
            Some(vec![("id".into(), "42".into())])
        );
        assert_eq!(match_segs(&segs("/users/:id"), "/users"), None);
        assert_eq!(match_segs(&segs("/users/:id"), "/users/1/x"), None);
        assert_eq!(
            match_segs(&segs("/static/*p"), "/static/a//b.css"),
            Some(vec![("p".into(), "a/b.css".into())])
        );
        assert_eq!(match_segs(&segs("/"), "/"), Some(vec![]));
        assert_eq!(match_segs(&segs("/"), "/x"), None);
        assert_eq!(
            match_segs(&segs("/a/*p"), "/a"),
            Some(vec![("p".into(), String::new())])
        );
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        let one = |pat: &str, path: &str| match_segs(&segs(pat), path).map(|p| p[0].1.clone());
        assert_eq!(one("/users/:id", "/users/a%20b").as_deref(), Some("a b"));
        assert_eq!(
            one("/users/:id", "/users/%E2%82%AC%2f").as_deref(),
            Some("€/")
        );
        assert_eq!(one("/users/:id", "/users/a+b").as_deref(), Some("a+b"));
        // Invalid escapes and non-UTF-8 results stay as sent.
        for raw in ["100%", "%zz", "a%2", "%ff"] {
            assert_eq!(one("/u/:id", &format!("/u/{raw}")).as_deref(), Some(raw));
        }
        assert_eq!(one("/s/*p", "/s/a%20b/c%2Fd").as_deref(), Some("a b/c/d"));
        // Literal segments are compared as sent.
        assert_eq!(match_segs(&segs("/a b"), "/a%20b"), None);
    }

    fn encoded(r: &Response, head: bool, close: bool, version: u8) -> String {
        let mut out = Vec::new();
        r.encode_for(&mut out, head, close, version);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn headers_that_could_split_the_response_are_left_out() {
        let r = Response::text(200, "ok")
            .header("X-Good", "fine")
            .header("X-Bad", "a\r\nSet-Cookie: evil=1")
            .header("X-Lf", "a\nb")
            .header("X-Nul", "a\0b")
            .header("Bad Name", "v")
            .header("X:Colon", "v")
            .header("X-Inj\r\nSet-Cookie", "evil")
            .header("", "v");
        let s = encoded(&r, false, false, 1);
        assert!(s.contains("\r\nX-Good: fine\r\n"), "{s}");
        assert!(
            !s.contains("evil") && !s.contains("X-Bad") && !s.contains("X-Lf"),
            "{s}"
        );
        assert!(
            !s.contains("X-Nul") && !s.contains("Name") && !s.contains("Colon"),
            "{s}"
        );
        assert_eq!(s.matches("\r\n\r\n").count(), 1, "{s}");
        assert!(s.ends_with("\r\n\r\nok"), "{s}");
    }

    #[test]
    fn framing_headers_come_from_the_encoder_only() {
        let r = Response::text(200, "four")
            .header("Content-Length", "99")
            .header("transfer-encoding", "chunked");
        let s = encoded(&r, false, false, 1);
        assert_eq!(s.matches("Content-Length").count(), 1, "{s}");
        assert!(
            s.contains("Content-Length: 4\r\n") && !s.contains("chunked"),
            "{s}"
        );
    }

    #[test]
    fn bodiless_statuses_carry_no_length_or_body() {
        for status in [100, 101, 103, 204, 304] {
            let s = encoded(&Response::text(status, "body"), false, false, 1);
            assert!(!s.contains("Content-Length"), "{status}: {s}");
            assert!(s.ends_with("\r\n\r\n"), "{status}: {s}");
        }
        for status in [200, 205, 404] {
            let s = encoded(&Response::text(status, "body"), false, false, 1);
            assert!(s.contains("\r\nContent-Length: 4\r\n"), "{status}: {s}");
            assert!(s.ends_with("body"), "{status}: {s}");
        }
        // HEAD keeps the length of the body it leaves out.
        let s = encoded(&Response::text(200, "body"), true, false, 1);
        assert!(
            s.contains("Content-Length: 4") && s.ends_with("\r\n\r\n"),
            "{s}"
        );
    }

    #[test]
    fn http10_keep_alive_is_announced() {
        let r = Response::text(200, "x");
        assert!(encoded(&r, false, false, 0).contains("\r\nConnection: keep-alive\r\n"));
        let s = encoded(&r, false, true, 0);
        assert!(
            s.contains("Connection: close") && !s.contains("keep-alive"),
            "{s}"
        );
        assert!(!encoded(&r, false, false, 1).contains("Connection"));
    }

    #[test]
    fn encodes_response() {
        let mut out = Vec::new();
        Response::text(200, "hi").encode(&mut out, false, true);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("HTTP/1.1 200 OK\r\nServer: percore\r\nDate: "),
            "{s}"
        );
        assert!(
            s.contains("\r\nContent-Length: 2\r\nConnection: close\r\n"),
            "{s}"
        );
        assert!(s.ends_with("\r\n\r\nhi"), "{s}");
    }

    #[test]
    fn one_reservation_covers_every_status() {
        for status in 100..1000 {
            let r = Response::text(status, "body")
                .header("X-Owned", String::from("v"))
                .header(String::from("X-Name"), "static");
            let extra: usize = r.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
            for (close, version) in [(true, 1), (false, 0)] {
                let mut out = Vec::new();
                r.encode_for(&mut out, false, close, version);
                assert!(
                    out.len() <= FIXED_HEAD + extra + r.body.len(),
                    "status {status}"
                );
            }
        }
        let mut out = Vec::new();
        Response::new(200)
            .body(vec![b'x'; 1 << 20])
            .encode(&mut out, false, false);
        assert!(out.len() <= FIXED_HEAD + (1 << 20));
    }
}
