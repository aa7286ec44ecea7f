//! HTTP/1.1 client for tasks and actors: requests over plain TCP or TLS ([`Stream`]) with
//! keep-alive connection reuse per address, `Content-Length`, chunked and read-to-close
//! response bodies, and a timeout per request. `https://` URLs need [`Client::with_tls`].
//! Parses responses with `httparse`; owns only its idle pool.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The URL is not `http(s)://IP:PORT/path` with a literal IP address.
    #[error("unsupported URL {0:?}: use http://IP:PORT/path or https://IP:PORT/path")]
    Url(String),
    /// An `https://` request on a client built without TLS.
    #[error("{0:?} is https but this client has no TLS config; build it with Client::with_tls")]
    NoTls(String),
}

/// An HTTP/1.1 client. Connections are kept alive and reused per address.
pub struct Client {
    handle: Handle,
    /// Idle connections by (address, TLS?).
    idle: Mutex<HashMap<(SocketAddr, bool), Vec<Stream>>>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
    /// Per-request time limit (connect + send + full response).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_body: usize,
}

impl Client {
    /// A client with a 30 s timeout and a 16 MiB body limit.
    pub fn new(handle: &Handle) -> Client {
        Client {
            handle: handle.clone(),
            idle: Mutex::new(HashMap::new()),
            tls: None,
            timeout: Duration::from_secs(30),
            max_body: 16 << 20,
        }
    }

    /// A client that also speaks `https://`: TLS with `config` (see
    /// [`tls::client_config`](crate::transport::tls::client_config)), checking that the server's
    /// certificate names `server_name` (a DNS name or an IP address).
    pub fn with_tls(
        handle: &Handle,
        config: Arc<rustls::ClientConfig>,
        server_name: impl Into<String>,
    ) -> Client {
        let mut c = Client::new(handle);
        c.tls = Some((config, server_name.into()));
        c
    }

    /// `GET url` (`http://IP:PORT/path` or `https://IP:PORT/path`).
    pub async fn get(&self, url: &str) -> Result<Response, ClientError> {
        let (tls, addr, path) = parse_url(url)?;
        self.check_tls(tls, url)?;
        self.send(tls, addr, Method::Get, &path, &[], Vec::new())
            .await
    }

    /// `POST url` with `body` and content type `ctype`.
    pub async fn post(
        &self,
        url: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let (tls, addr, path) = parse_url(url)?;
        self.check_tls(tls, url)?;
        self.send(
            tls,
            addr,
            Method::Post,
            &path,
            &[("Content-Type", ctype)],
            body,
        )
        .await
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
        self.send(false, addr, method, path, headers, body).await
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
        self.send(true, addr, method, path, headers, body).await
    }

    fn check_tls(&self, tls: bool, url: &str) -> Result<(), ClientError> {
        if tls && self.tls.is_none() {
            return Err(ClientError::NoTls(url.to_string()));
        }
        Ok(())
    }

    async fn connect(&self, tls: bool, addr: SocketAddr) -> Result<Stream, ClientError> {
        let limit = self.timeout;
        Ok(match (&self.tls, tls) {
            (Some((cfg, name)), true) => {
                Stream::connect_tls(&self.handle, addr, cfg.clone(), name, limit).await?
            }
            _ => Stream::connect(&self.handle, addr, limit).await?,
        })
    }

    async fn send(
        &self,
        tls: bool,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, ClientError> {
        let mut req = Vec::with_capacity(128 + body.len());
        req.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n").as_bytes());
        for (n, v) in headers {
            req.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if !body.is_empty() || matches!(method, Method::Post | Method::Put | Method::Patch) {
            req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(&body);
        let limit = self.timeout;
        let head = method == Method::Head;
        let fut = async {
            // A reused connection may have been closed by the server meanwhile: retry once on
            // a fresh one if nothing came back.
            let pooled = self.take_idle((addr, tls));
            let reused = pooled.is_some();
            let mut s = match pooled {
                Some(s) => s,
                None => self.connect(tls, addr).await?,
            };
            let r = exchange(&mut s, req.clone(), head, self.max_body).await;
            let (resp, keep) = match r {
                Err(ClientError::Io(_)) | Err(ClientError::Invalid(_)) if reused => {
                    let mut s2 = self.connect(tls, addr).await?;
                    let r = exchange(&mut s2, req, head, self.max_body).await?;
                    s = s2;
                    r
                }
                r => r?,
            };
            if keep {
                self.idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry((addr, tls))
                    .or_default()
                    .push(s);
            }
            Ok(resp)
        };
        timeout(limit, fut)
            .await
            .map_err(|_| ClientError::Timeout(limit))?
    }

    fn take_idle(&self, key: (SocketAddr, bool)) -> Option<Stream> {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
            .and_then(|v| v.pop())
    }
}

/// `(https?, address, path)` of an `http(s)://IP:PORT/path` URL.
fn parse_url(url: &str) -> Result<(bool, SocketAddr, String), ClientError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(ClientError::Url(url.into()));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = hostport
        .parse::<SocketAddr>()
        .map_err(|_| ClientError::Url(url.into()))?;
    Ok((tls, addr, path))
}

/// Writes `req` and reads one response: (response, connection reusable).
async fn exchange(
    s: &mut Stream,
    req: Vec<u8>,
    head: bool,
    max_body: usize,
) -> Result<(Response, bool), ClientError> {
    s.write_all(req).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut tmp = vec![0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(hlen)) => {
                let status = r.code.unwrap_or(0);
                let mut resp = Response::new(status);
                let mut cl = None;
                let mut chunked = false;
                let mut close = r.version == Some(0);
                for h in r.headers.iter() {
                    let v = String::from_utf8_lossy(h.value).to_string();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        cl = Some(v.trim().parse::<usize>().map_err(|_| {
                            ClientError::Invalid(format!("bad Content-Length {v:?}"))
                        })?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = v.to_ascii_lowercase().contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close |= v.to_ascii_lowercase().contains("close");
                    }
                    resp.headers.push((h.name.to_string(), v));
                }
                let no_body =
                    head || status == 204 || status == 304 || (100..200).contains(&status);
                if no_body {
                    return Ok((resp, !close));
                }
                if chunked {
                    loop {
                        match super::request::dechunk(&buf[hlen..], max_body) {
                            Ok(Some((body, _))) => {
                                resp.body = body;
                                return Ok((resp, !close));
                            }
                            Ok(None) => {}
                            Err(e) => return Err(ClientError::Invalid(e.to_string())),
                        }
                        let n = s.read(&mut tmp).await?;
                        if n == 0 {
                            return Err(ClientError::Invalid("EOF inside a chunked body".into()));
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                }
                if let Some(cl) = cl {
                    if cl > max_body {
                        return Err(ClientError::Invalid(format!(
                            "body of {cl} bytes over the limit"
                        )));
                    }
                    while buf.len() < hlen + cl {
                        let n = s.read(&mut tmp).await?;
                        if n == 0 {
                            return Err(ClientError::Invalid("EOF inside the body".into()));
                        }
                        buf.extend_from_slice(&tmp[..n]);
                    }
                    resp.body = buf[hlen..hlen + cl].to_vec();
                    return Ok((resp, !close));
                }
                // No length: the body runs to EOF.
                let mut body = buf[hlen..].to_vec();
                s.read_to_end(&mut body).await?;
                if body.len() > max_body {
                    return Err(ClientError::Invalid("body over the limit".into()));
                }
                resp.body = body;
                return Ok((resp, false));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 * 1024 {
                    return Err(ClientError::Invalid("response headers over 64 KiB".into()));
                }
            }
            Err(e) => return Err(ClientError::Invalid(e.to_string())),
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}
