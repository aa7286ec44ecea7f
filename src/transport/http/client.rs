//! HTTP/1.1 client for tasks and actors: requests over plain TCP or TLS ([`Stream`]) with
//! keep-alive connection reuse per host, `Content-Length`, chunked and read-to-close
//! response bodies, and a timeout per request. `https://` URLs need [`Client::with_tls`].
//! Host names are resolved off the worker (the system resolver blocks, so it runs on a
//! short-lived helper thread) and cached for [`Client::dns_ttl`]; each resolved address is
//! tried in order. Parses responses with `httparse`; owns only its idle pool and DNS cache.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Method, Response};
use crate::runtime::{Handle, timeout};
use crate::transport::client::Stream;

/// Errors of the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("HTTP I/O error: {0}")]
    Io(#[from] io::Error),
    /// The server's response is not valid HTTP/1.1.
    #[error("invalid HTTP response: {0}")]
    Invalid(String),
    /// No complete response within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The URL is not `http(s)://HOST[:PORT][/path]`.
    #[error("unsupported URL {0:?}: use http://HOST[:PORT]/path or https://HOST[:PORT]/path")]
    Url(String),
    /// The host name did not resolve to any address.
    #[error("could not resolve {host:?}: {error}")]
    Dns {
        /// The host name as written in the URL.
        host: String,
        /// What the system resolver said.
        error: io::Error,
    },
    /// An `https://` request on a client built without TLS.
    #[error("{0:?} is https but this client has no TLS config; build it with Client::with_tls")]
    NoTls(String),
    /// The response body is over [`Client::max_body`] (found as soon as the declared length, a
    /// chunk size or the bytes read so far go over; the rest is not read).
    #[error("response body over the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// A request header name that is not a token, a header value holding CR, LF or NUL, or a
    /// method or path that would break the request line: refused before anything is sent.
    #[error("invalid request header or request line: {0}")]
    InvalidRequest(String),
}

/// An HTTP/1.1 client. Connections are kept alive and reused per host and port: at most
/// [`max_idle_per_host`](Client::max_idle_per_host) idle ones per host, each for at most
/// [`idle_timeout`](Client::idle_timeout).
///
/// A request that fails on a reused connection before any response byte arrived (the server
/// closed it meanwhile) is sent again on a fresh connection only when its method is idempotent
/// (GET, HEAD, PUT, DELETE, OPTIONS); a POST or PATCH returns the error instead, since the
/// server may have acted on it.
pub struct Client {
    handle: Handle,
    /// Idle connections by (`host:port` as requested, TLS?), oldest first, with when each was
    /// put back.
    idle: Mutex<IdlePool>,
    /// Resolved addresses by (host, port), with the time they were looked up.
    dns: Mutex<DnsCache>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    /// Per-request time limit (resolve + connect + send + full response).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_body: usize,
    /// How long a resolved host name is reused before it is looked up again.
    pub dns_ttl: Duration,
    /// Most idle connections kept per host (default 32; 0 keeps none). Past it the oldest
    /// idle one is closed.
    pub max_idle_per_host: usize,
    /// How long an idle connection may wait for reuse (default 90 s); older ones are closed
    /// instead of reused.
    pub idle_timeout: Duration,
}

/// Idle connections by (`host:port`, TLS?), oldest first, with when each was put back.
type IdlePool = HashMap<(String, bool), Vec<(Stream, Instant)>>;

/// Resolved addresses by (host, port), with when they were looked up.
type DnsCache = HashMap<(String, u16), (Arc<[SocketAddr]>, Instant)>;

/// The parts of a request target.
struct Target {
    tls: bool,
    /// Host as written (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host` header value and idle-pool key: `host[:port]`, the port only when not the
    /// scheme's default.
    authority: String,
    path: String,
}

impl Client {
    /// A client with a 30 s timeout, a 16 MiB body limit, and at most 32 idle connections per
    /// host kept for at most 90 s.
    pub fn new(handle: &Handle) -> Client {
        Client {
            handle: handle.clone(),
            idle: Mutex::new(HashMap::new()),
            dns: Mutex::new(HashMap::new()),
            tls: None,
            timeout: Duration::from_secs(30),
            max_body: 16 << 20,
            dns_ttl: Duration::from_secs(60),
            max_idle_per_host: 32,
            idle_timeout: Duration::from_secs(90),
        }
    }

    /// A client that also speaks `https://`: TLS with `config` (see
    /// [`tls::client_config`](crate::transport::tls::client_config)). The server's certificate
    /// must name the URL's host when the URL names one, else `server_name` (a DNS name or an IP
    /// address; used for IP-literal URLs and [`Client::request_tls`]).
    pub fn with_tls(
        handle: &Handle,
        config: Arc<rustls::ClientConfig>,
        server_name: impl Into<String>,
    ) -> Client {
        let mut c = Client::new(handle);
        c.tls = Some((config, server_name.into()));
        c
    }

    /// `GET url` (`http://HOST[:PORT]/path` or `https://HOST[:PORT]/path`; HOST a name or an IP
    /// address, IPv6 in brackets).
    pub async fn get(&self, url: &str) -> Result<Response, ClientError> {
        let t = parse_url(url)?;
        self.check_tls(t.tls, url)?;
        self.send(&t, Method::Get, &[], Vec::new()).await
    }

    /// `POST url` with `body` and content type `ctype`.
    pub async fn post(
        &self,
        url: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let t = parse_url(url)?;
        self.check_tls(t.tls, url)?;
        self.send(&t, Method::Post, &[("Content-Type", ctype)], body)
            .await
    }

    /// Starts `method url` with a body of unknown length, sent piece by piece as it is produced
    /// (`Transfer-Encoding: chunked`) through the returned [`Upload`]; its
    /// [`finish`](Upload::finish) reads the response. It always opens a new connection (a
    /// streamed body cannot be sent again should a pooled one turn out closed). Each write and
    /// the response are bounded by the client's timeout.
    pub async fn upload(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Upload<'_>, ClientError> {
        let t = parse_url(url)?;
        self.check_tls(t.tls, url)?;
        let head = encode_request(&t, &method, headers, &[], true)?;
        let limit = self.timeout;
        let mut stream = timeout(limit, self.connect(&t))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        timeout(limit, stream.write_all(head))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        Ok(Upload {
            client: self,
            stream,
            key: (t.authority.clone(), t.tls),
            head: method == Method::Head,
        })
    }

    /// Sends one plain-HTTP request to `addr` and reads the response.
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        self.send(&Target::of_addr(false, addr, path), method, headers, body)
            .await
    }

    /// Sends one HTTPS request to `addr` (needs [`Client::with_tls`]) and reads the response.
    pub async fn request_tls(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        self.check_tls(true, &format!("https://{addr}{path}"))?;
        self.send(&Target::of_addr(true, addr, path), method, headers, body)
            .await
    }

    fn check_tls(&self, tls: bool, url: &str) -> Result<(), ClientError> {
        if tls && self.tls.is_none() {
            return Err(ClientError::NoTls(url.to_string()));
        }
        Ok(())
    }

    /// The addresses of `t`'s host: the literal, a cached lookup, or a fresh one made on a
    /// helper thread (the system resolver blocks).
    async fn resolve(&self, t: &Target) -> Result<Arc<[SocketAddr]>, ClientError> {
        if let Ok(ip) = t.host.parse::<IpAddr>() {
            return Ok(Arc::from([SocketAddr::new(ip, t.port)]));
        }
        let key = (t.host.clone(), t.port);
        if let Some((addrs, at)) = self.dns.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < self.dns_ttl
        {
            return Ok(addrs.clone());
        }
        let (tx, rx) = crate::runtime::oneshot::channel();
        let (host, port) = key.clone();
        std::thread::Builder::new()
            .name("percore-dns".into())
            .spawn(move || {
                let r = (host.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>());
                let _ = tx.send(r);
            })?;
        let addrs = rx
            .await
            .map_err(|_| io::Error::other("the resolver thread stopped without answering"))
            .and_then(|r| r)
            .and_then(|v| match v.is_empty() {
                true => Err(io::Error::new(io::ErrorKind::NotFound, "no addresses")),
                false => Ok(v),
            })
            .map_err(|error| ClientError::Dns {
                host: t.host.clone(),
                error,
            })?;
        let addrs: Arc<[SocketAddr]> = addrs.into();
        self.dns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }

    /// Connects to the first of `t`'s addresses that answers.
    async fn connect(&self, t: &Target) -> Result<Stream, ClientError> {
        let limit = self.timeout;
        let mut last = None;
        for addr in self.resolve(t).await?.iter().copied() {
            let r = match (&self.tls, t.tls) {
                (Some((cfg, name)), true) => {
                    // A named host is what the certificate must name; an IP literal uses the
                    // configured name.
                    let name = match t.host.parse::<IpAddr>() {
                        Ok(_) => name.as_str(),
                        Err(_) => t.host.as_str(),
                    };
                    Stream::connect_tls(&self.handle, addr, cfg.clone(), name, limit).await
                }
                _ => Stream::connect(&self.handle, addr, limit).await,
            };
            match r {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no addresses"))
            .into())
    }

    async fn send(
        &self,
        t: &Target,
        method: Method,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let req = encode_request(t, &method, headers, &body, false)?;
        let limit = self.timeout;
        let head = method == Method::Head;
        let idempotent = matches!(
            method,
            Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options
        );
        let key = (t.authority.clone(), t.tls);
        let fut = async {
            let pooled = self.take_idle(&key);
            let reused = pooled.is_some();
            let mut s = match pooled {
                Some(s) => s,
                None => self.connect(t).await?,
            };
            let mut answered = false;
            let r = exchange(&mut s, req.clone(), head, self.max_body, &mut answered).await;
            let (resp, keep) = match r {
                // A reused connection the server closed meanwhile fails before any response
                // byte: only an idempotent request may safely go again, on a fresh connection.
                Err(ClientError::Io(_)) if reused && !answered && idempotent => {
                    let mut s2 = self.connect(t).await?;
                    let r = exchange(&mut s2, req, head, self.max_body, &mut answered).await?;
                    s = s2;
                    r
                }
                r => r?,
            };
            if keep {
                self.put_idle(key.clone(), s);
            }
            Ok(resp)
        };
        timeout(limit, fut)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    /// The newest idle connection to `key` not older than `idle_timeout` (older ones are
    /// closed).
    fn take_idle(&self, key: &(String, bool)) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(key)?;
        conns.retain(|(_, at)| at.elapsed() < self.idle_timeout);
        let s = conns.pop().map(|(s, _)| s);
        if conns.is_empty() {
            idle.remove(key);
        }
        s
    }

    /// Keeps `s` for reuse, closing the oldest idle connection to `key` past
    /// `max_idle_per_host`.
    fn put_idle(&self, key: (String, bool), s: Stream) {
        if self.max_idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(key).or_default();
        conns.retain(|(_, at)| at.elapsed() < self.idle_timeout);
        while conns.len() >= self.max_idle_per_host {
            conns.remove(0);
        }
        conns.push((s, Instant::now()));
    }

    /// How many idle connections to `authority` (`host:port` as in the URL) are kept now.
    pub fn idle_connections(&self, authority: &str, tls: bool) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(authority.to_string(), tls))
            .map_or(0, Vec::len)
    }
}

/// The bytes of a request, or [`ClientError::InvalidRequest`] when a header name is not a
/// token, a value holds CR, LF or NUL, or the method or path would break the request line.
/// The request head and `body`; `chunked`: the body follows in chunks (`body` must be empty).
/// A request whose body is being sent piece by piece; see [`Client::upload`].
pub struct Upload<'c> {
    client: &'c Client,
    stream: Stream,
    key: (String, bool),
    head: bool,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("to", &self.key).finish()
    }
}

impl Upload<'_> {
    /// Sends `data` as the next chunk of the body (nothing for an empty slice: an empty chunk
    /// would end the body).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut chunk = Vec::new();
        super::push_chunk(&mut chunk, data);
        let limit = self.client.timeout;
        timeout(limit, self.stream.write_all(chunk))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        Ok(())
    }

    /// Ends the body and reads the response (the connection is kept for reuse when the
    /// response allows).
    pub async fn finish(mut self) -> Result<Response, ClientError> {
        let limit = self.client.timeout;
        let mut answered = false;
        let (resp, keep) = timeout(
            limit,
            exchange(
                &mut self.stream,
                b"0\r\n\r\n".to_vec(),
                self.head,
                self.client.max_body,
                &mut answered,
            ),
        )
        .await
        .map_err(|_| ClientError::Timeout(limit))??;
        if keep {
            self.client.put_idle(self.key, self.stream);
        }
        Ok(resp)
    }
}

fn encode_request(
    t: &Target,
    method: &Method,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> Result<Vec<u8>, ClientError> {
    if !super::is_token(method.as_str()) {
        return Err(ClientError::InvalidRequest(format!("method {method:?}")));
    }
    if t.path.is_empty() || t.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ClientError::InvalidRequest(format!("path {:?}", t.path)));
    }
    let mut req = Vec::with_capacity(128 + body.len());
    req.extend_from_slice(
        format!("{method} {} HTTP/1.1\r\nHost: {}\r\n", t.path, t.authority).as_bytes(),
    );
    for (n, v) in headers {
        if !super::is_token(n) {
            return Err(ClientError::InvalidRequest(format!("header name {n:?}")));
        }
        if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(ClientError::InvalidRequest(format!(
                "value of {n}: {v:?} holds CR, LF or NUL"
            )));
        }
        req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if chunked {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else if !body.is_empty() || matches!(method, Method::Post | Method::Put | Method::Patch) {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    Ok(req)
}

impl Target {
    fn of_addr(tls: bool, addr: SocketAddr, path: &str) -> Target {
        Target {
            tls,
            host: addr.ip().to_string(),
            port: addr.port(),
            authority: addr.to_string(),
            path: path.to_string(),
        }
    }
}

/// The target of an `http(s)://HOST[:PORT][/path]` URL (IPv6 hosts in brackets).
fn parse_url(url: &str) -> Result<Target, ClientError> {
    let bad = || ClientError::Url(url.into());
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad()); // no host, or user info (not supported)
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => default_port,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?,
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (authority, default_port),
        }
    };
    let host_ok = !host.is_empty()
        && (host.parse::<IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(bad());
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// Most bytes of a response head (status line and headers), and of a chunked body's
/// trailers.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 16;

/// Reads more bytes from `s` into `buf`; `Ok(false)` at EOF. Sets `answered` once a byte came.
async fn fill(
    s: &mut Stream,
    buf: &mut Vec<u8>,
    tmp: &mut [u8],
    answered: &mut bool,
) -> Result<bool, ClientError> {
    let n = s.read(tmp).await?;
    *answered |= n > 0;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

/// Writes `req` and reads one response: (response, connection reusable). `answered` is set
/// as soon as any response byte arrived (before that, a failure means the server never
/// answered). Interim 1xx responses (100 Continue, 103 Early Hints) are skipped; 101 is an
/// error (no protocol switch is supported). Bodies are checked against `max_body` while they
/// are read.
async fn exchange(
    s: &mut Stream,
    req: Vec<u8>,
    head: bool,
    max_body: usize,
    answered: &mut bool,
) -> Result<(Response, bool), ClientError> {
    s.write_all(req).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut tmp = vec![0u8; 16 * 1024];
    let mut interim = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        let hlen = match r.parse(&buf) {
            Ok(httparse::Status::Complete(hlen)) => hlen,
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_RESPONSE_HEAD {
                    return Err(ClientError::Invalid("response headers over 64 KiB".into()));
                }
                if !fill(s, &mut buf, &mut tmp, answered).await? {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    )));
                }
                continue;
            }
            Err(e) => return Err(ClientError::Invalid(e.to_string())),
        };
        let status = r.code.unwrap_or(0);
        if status == 101 {
            return Err(ClientError::Invalid(
                "101 Switching Protocols: protocol upgrades are not supported".into(),
            ));
        }
        if (100..200).contains(&status) {
            // An interim response: the final one follows on the same connection.
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(ClientError::Invalid(format!(
                    "more than {MAX_INTERIM} interim responses"
                )));
            }
            buf.drain(..hlen);
            continue;
        }
        let mut resp = Response::new(status);
        let mut cl = None;
        let mut te: Option<bool> = None; // Some(final coding is chunked)
        let mut close = r.version == Some(0);
        for h in r.headers.iter() {
            let v = String::from_utf8_lossy(h.value).to_string();
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = super::request::content_length_value(h.value)
                    .map_err(|_| ClientError::Invalid(format!("bad Content-Length {v:?}")))?;
                if cl.is_some_and(|c| c != n) {
                    return Err(ClientError::Invalid("conflicting Content-Length".into()));
                }
                cl = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = v.rsplit(',').map(str::trim).find(|c| !c.is_empty());
                let chunked = last.is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
                // A later field continues the list: its last coding is the final one.
                te = Some(if last.is_some() {
                    chunked
                } else {
                    te.unwrap_or(false)
                });
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= v.to_ascii_lowercase().contains("close");
            }
            resp.headers.push((h.name.to_string().into(), v.into()));
        }
        let rest = buf.split_off(hlen);
        if head || status == 204 || status == 304 {
            return Ok((resp, !close && rest.is_empty()));
        }
        match (te, cl) {
            (Some(true), _) => {
                // Chunked (Transfer-Encoding overrides Content-Length): decoded as it arrives.
                let limits = super::request::Limits {
                    max_body,
                    max_header_bytes: MAX_RESPONSE_HEAD,
                    ..super::request::Limits::default()
                };
                let mut dec = super::request::Dechunker::new(&limits);
                let mut pending = rest;
                loop {
                    let n = dec
                        .feed(&pending, Some(&mut resp.body))
                        .map_err(|e| match e {
                            super::request::ParseError::BodyTooLarge(_) => {
                                ClientError::BodyTooLarge(max_body)
                            }
                            e => ClientError::Invalid(format!("chunked body: {e}")),
                        })?;
                    pending.drain(..n);
                    if dec.is_done() {
                        return Ok((resp, !close && pending.is_empty()));
                    }
                    if !fill(s, &mut pending, &mut tmp, answered).await? {
                        return Err(ClientError::Invalid("EOF inside a chunked body".into()));
                    }
                }
            }
            (None, Some(cl)) => {
                if cl > max_body {
                    return Err(ClientError::BodyTooLarge(max_body));
                }
                let mut body = rest;
                while body.len() < cl {
                    if !fill(s, &mut body, &mut tmp, answered).await? {
                        return Err(ClientError::Invalid("EOF inside the body".into()));
                    }
                }
                let reusable = body.len() == cl;
                body.truncate(cl);
                resp.body = body;
                return Ok((resp, !close && reusable));
            }
            _ => {
                // No length (or a coding other than chunked): the body runs to EOF.
                let mut body = rest;
                loop {
                    if body.len() > max_body {
                        return Err(ClientError::BodyTooLarge(max_body));
                    }
                    if !fill(s, &mut body, &mut tmp, answered).await? {
                        break;
                    }
                }
                resp.body = body;
                return Ok((resp, false));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_names_ips_ports_and_defaults() {
        let t = parse_url("http://example.com/a?b=1").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "example.com", 80));
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("example.com", "/a?b=1")
        );
        let t = parse_url("https://localhost:8443").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "localhost", 8443, "/")
        );
        assert_eq!(t.authority, "localhost:8443");
        let t = parse_url("http://127.0.0.1:9000?x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9000, "/?x")
        );
        let t = parse_url("https://[::1]:8080/p").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        assert_eq!(parse_url("http://[::1]/").unwrap().port, 80);
        for bad in [
            "ftp://x/",
            "http://",
            "http:///p",
            "http://host:port/",
            "http://host:70000/",
            "http://user@host/",
            "http://[::1/",
            "http://bad host/",
            "http://[::1]x/",
        ] {
            assert!(matches!(parse_url(bad), Err(ClientError::Url(_))), "{bad}");
        }
    }
}
