//! HTTP/1.1 request parsing with `httparse`: request line and headers, `Content-Length` and
//! chunked bodies, keep-alive, and the limits (header count and size, body size) that turn bad
//! or oversized input into 400, 413 or 431. Pure functions over bytes: no sockets here.

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// OPTIONS
    Options,
    /// Any other token.
    Other(String),
}

impl Method {
    /// Parses a method token.
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            o => Method::Other(o.to_string()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Headers in arrival order (names as sent).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Path parameters filled in by the router (`/users/:id` → `("id", "42")`).
    pub params: Vec<(String, String)>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

impl Request {
    /// The first header named `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The path parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Limits on what a request may be.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most headers in one request (more: 431).
    pub max_headers: usize,
    /// Most bytes of request line plus headers (more: 431).
    pub max_header_bytes: usize,
    /// Most body bytes (more: 413).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body: 1 << 20,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Malformed request (400).
    #[error("malformed request: {0}")]
    Bad(&'static str),
    /// Too many or too large headers (431).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Body over the limit (413).
    #[error("request body of {0} bytes is over the limit")]
    BodyTooLarge(usize),
}

impl ParseError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Bad(_) => 400,
            ParseError::HeadersTooLarge => 431,
            ParseError::BodyTooLarge(_) => 413,
        }
    }
}

/// Parses one request from the front of `buf`: `Ok(Some((request, bytes used)))`, `Ok(None)`
/// when more bytes are needed, or the error to answer with.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, ParseError> {
    Ok(match parse_request(buf, limits)? {
        Parsed::Complete(req, used) => Some((req, used)),
        Parsed::Incomplete { .. } => None,
    })
}

/// What [`parse_request`] found.
pub(crate) enum Parsed {
    /// A whole request and the bytes it used.
    Complete(Request, usize),
    /// More bytes are needed. `expect_continue`: the head is complete, is HTTP/1.1 and carries
    /// `Expect: 100-continue`, so the client holds its body back until `100 Continue`.
    Incomplete { expect_continue: bool },
}

/// [`parse`], also telling whether an incomplete request waits for `100 Continue` (from the
/// same pass over the head).
pub(crate) fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    const INCOMPLETE: Parsed = Parsed::Incomplete {
        expect_continue: false,
    };
    const STACK: usize = 64;
    let mut stack = [httparse::EMPTY_HEADER; STACK];
    let mut heap;
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(headers);
    let hlen = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(INCOMPLETE);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(ParseError::Bad("unsupported HTTP version")),
        Err(_) => return Err(ParseError::Bad("invalid request line or header")),
    };
    if hlen > limits.max_header_bytes {
        return Err(ParseError::HeadersTooLarge);
    }
    let version = req.version.unwrap_or(1);
    let method = Method::parse(req.method.unwrap_or("GET"));
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut conn_close = false;
    let mut conn_keep = false;
    let mut expect_continue = false;
    let mut out_headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(ParseError::Bad("invalid Content-Length"))?;
            if content_length.is_some_and(|c| c != v) {
                return Err(ParseError::Bad("conflicting Content-Length headers"));
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if v.trim().ends_with("chunked") {
                chunked = true;
            } else {
                return Err(ParseError::Bad("unsupported Transfer-Encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            conn_close |= v.contains("close");
            conn_keep |= v.contains("keep-alive");
        }
        out_headers.push((h.name.to_string(), h.value.to_vec()));
    }
    if chunked && content_length.is_some() {
        return Err(ParseError::Bad(
            "both Content-Length and chunked Transfer-Encoding",
        ));
    }
    let keep_alive = if version == 1 { !conn_close } else { conn_keep };
    let waiting = Parsed::Incomplete {
        expect_continue: expect_continue && version == 1,
    };
    let (body, used) = if chunked {
        match dechunk(&buf[hlen..], limits.max_body)? {
            Some((body, n)) => (body, hlen + n),
            None => return Ok(waiting),
        }
    } else {
        let cl = content_length.unwrap_or(0);
        if cl > limits.max_body {
            return Err(ParseError::BodyTooLarge(cl));
        }
        if buf.len() - hlen < cl {
            return Ok(waiting);
        }
        (buf[hlen..hlen + cl].to_vec(), hlen + cl)
    };
    Ok(Parsed::Complete(
        Request {
            method,
            path,
            query,
            version,
            headers: out_headers,
            body,
            params: Vec::new(),
            keep_alive,
        },
        used,
    ))
}

/// Decodes a chunked body from the front of `buf`: `Some((body, bytes used))` when complete.
pub(crate) fn dechunk(buf: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete((n, size))) => (pos + n, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ParseError::Bad("invalid chunk size")),
        };
        let size = usize::try_from(size).map_err(|_| ParseError::BodyTooLarge(usize::MAX))?;
        if body.len().saturating_add(size) > max {
            return Err(ParseError::BodyTooLarge(body.len().saturating_add(size)));
        }
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            let rest = &buf[start..];
            let mut p = 0;
            loop {
                let Some(i) = rest[p..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                if i == 0 {
                    return Ok(Some((body, start + p + 2)));
                }
                p += i + 2;
            }
        }
        if buf.len().saturating_sub(start) < size.saturating_add(2) {
            return Ok(None);
        }
        if &buf[start + size..start + size + 2] != b"\r\n" {
            return Err(ParseError::Bad("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[start..start + size]);
        pos = start + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expects_continue(buf: &[u8]) -> bool {
        matches!(
            parse_request(buf, &Limits::default()),
            Ok(Parsed::Incomplete {
                expect_continue: true
            })
        )
    }

    #[test]
    fn expects_continue_only_for_a_complete_head_asking_for_it() {
        let head = b"POST /u HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert!(expects_continue(head));
        assert!(!expects_continue(&head[..20]), "head not complete yet");
        assert!(!expects_continue(
            b"POST /u HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(
            !expects_continue(
                b"POST /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            ),
            "HTTP/1.0 clients do not wait for 100"
        );
    }

    #[test]
    fn parses_simple_get_and_keep_alive() {
        let (r, n) = parse(
            b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(n, 34);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/a/b");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("host"), Some("h"));
        assert!(r.keep_alive);
    }

    #[test]
    fn http10_closes_unless_asked() {
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n", &Limits::default())
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert!(r.keep_alive);
    }

    #[test]
    fn content_length_body_waits_for_all_bytes() {
        let l = Limits::default();
        assert!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", &l)
                .unwrap()
                .is_none()
        );
        let (r, n) = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", &l)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(n, 43);
    }

    #[test]
    fn chunked_body_is_decoded() {
        let l = Limits::default();
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for cut in 40..req.len() {
            assert!(parse(&req[..cut], &l).unwrap().is_none(), "cut {cut}");
        }
        let (r, n) = parse(req, &l).unwrap().unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(n, req.len());
    }

    #[test]
    fn huge_lengths_with_no_body_limit_do_not_overflow() {
        // Found by the http_request fuzz target's author: max_body = usize::MAX overflowed.
        let l = Limits {
            max_body: usize::MAX,
            ..Limits::default()
        };
        let cl = b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(parse(cl, &l).unwrap().is_none());
        let ch = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxx";
        assert!(parse(ch, &l).unwrap().is_none());
    }

    #[test]
    fn limits_give_the_right_status() {
        let l = Limits {
            max_headers: 2,
            max_header_bytes: 64,
            max_body: 4,
        };
        let e = parse(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", &l).unwrap_err();
        assert_eq!(e.status(), 431);
        let e = parse(&[b'G'; 100], &l).unwrap_err();
        assert_eq!(e.status(), 431);
        let e = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &l).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = parse(b"\x00\x01garbage\r\n\r\n", &l).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = parse(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
