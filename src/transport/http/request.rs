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
///
/// The request line's target and the headers stay in one copy of the request head (one
/// allocation, whatever the header count); [`path`](Request::path),
/// [`query`](Request::query), [`header`](Request::header) and [`headers`](Request::headers)
/// read from it. Build one by hand (to test a handler) with [`Request::new`].
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Path parameters filled in by the router (`/users/:id` → `("id", "42")`).
    pub params: Vec<(String, String)>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The bytes `path`, `query` and `headers` point into. Every span is a range of it that
    /// holds valid UTF-8 (names and the target) or any bytes (values).
    head: Vec<u8>,
    path: Span,
    query: Option<Span>,
    headers: Vec<(Span, Span)>,
}

/// A byte range of [`Request::head`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The range `start..start + len` (callers keep the head below `u32::MAX` bytes).
    fn at(start: usize, len: usize) -> Span {
        Span {
            start: start as u32,
            end: (start + len) as u32,
        }
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl Request {
    /// A request for `target` (`/path` or `/path?query`), HTTP/1.1, keep-alive, no headers, no
    /// body: for testing handlers without a socket.
    ///
    /// ```
    /// use percore::transport::http::{Method, Request};
    /// let r = Request::new(Method::Get, "/users/7?full=1").with_header("Accept", "text/plain");
    /// assert_eq!((r.path(), r.query()), ("/users/7", Some("full=1")));
    /// assert_eq!(r.header("accept"), Some("text/plain"));
    /// ```
    pub fn new(method: Method, target: &str) -> Request {
        let (path, query) = split_target(target, 0);
        Request {
            method,
            version: 1,
            body: Vec::new(),
            params: Vec::new(),
            keep_alive: true,
            head: target.as_bytes().to_vec(),
            path,
            query,
            headers: Vec::new(),
        }
    }

    /// Adds a header (builder style, for [`Request::new`]).
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        let value = value.as_ref();
        let n = Span::at(self.head.len(), name.len());
        self.head.extend_from_slice(name.as_bytes());
        let v = Span::at(self.head.len(), value.len());
        self.head.extend_from_slice(value);
        self.headers.push((n, v));
        self
    }

    /// Sets the body (builder style, for [`Request::new`]).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.text(self.path)
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query.map(|q| self.text(q))
    }

    /// Headers in arrival order: names as sent, values as bytes.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|&(n, v)| (self.text(n), &self.head[v.range()]))
    }

    /// The first header named `name` (case-insensitive), as text (`None` if absent or not
    /// UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
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

    /// The text at `span` (spans of names and the target always hold UTF-8: they were copied
    /// from `&str`s; the empty string stands in should that ever not hold).
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(&self.head[span.range()]).unwrap_or("")
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'a>(&'a Request);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .headers()
                            .map(|(n, v)| (n, String::from_utf8_lossy(v))),
                    )
                    .finish()
            }
        }
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path())
            .field("query", &self.query())
            .field("version", &self.version)
            .field("headers", &Headers(self))
            .field("body_len", &self.body.len())
            .field("params", &self.params)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Splits a request target at `?` into path and query spans, `at` being the target's offset.
fn split_target(target: &str, at: usize) -> (Span, Option<Span>) {
    match target.find('?') {
        Some(i) => (
            Span::at(at, i),
            Some(Span::at(at + i + 1, target.len() - i - 1)),
        ),
        None => (Span::at(at, target.len()), None),
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
    if hlen > limits.max_header_bytes || hlen > u32::MAX as usize {
        return Err(ParseError::HeadersTooLarge);
    }
    let version = req.version.unwrap_or(1);
    let method = Method::parse(req.method.unwrap_or("GET"));
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut conn_close = false;
    let mut conn_keep = false;
    let mut expect_continue = false;
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
            let v = h.value.trim_ascii();
            if v.len() >= 7 && v[v.len() - 7..].eq_ignore_ascii_case(b"chunked") {
                chunked = true;
            } else {
                return Err(ParseError::Bad("unsupported Transfer-Encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            conn_close |= contains_ignore_case(h.value, b"close");
            conn_keep |= contains_ignore_case(h.value, b"keep-alive");
        }
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
    // The body is complete: copy the head once and point into it. httparse's slices lie in
    // `buf[..hlen]` (checked below u32::MAX above); an empty slice may not, so anything outside
    // becomes the empty span.
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| match (s.as_ptr() as usize).checked_sub(base) {
        Some(at) if !s.is_empty() && at + s.len() <= hlen => Span::at(at, s.len()),
        _ => Span::at(0, 0),
    };
    let target = req.path.unwrap_or("");
    let (path, query) = match span(target.as_bytes()) {
        t if t.start == t.end => (t, None),
        t => split_target(target, t.start as usize),
    };
    let headers = req
        .headers
        .iter()
        .map(|h| (span(h.name.as_bytes()), span(h.value)))
        .collect();
    Ok(Parsed::Complete(
        Request {
            method,
            version,
            body,
            params: Vec::new(),
            keep_alive,
            head: buf[..hlen].to_vec(),
            path,
            query,
            headers,
        },
        used,
    ))
}

/// Whether `hay` contains `needle` (ASCII case-insensitive).
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("x=1"));
        assert_eq!(r.header("host"), Some("h"));
        assert!(r.keep_alive);
    }

    #[test]
    fn headers_point_into_one_copy_of_the_head() {
        let raw = b"PUT /k%20v?a=1&b HTTP/1.1\r\nHost: h:80\r\nX-Empty:\r\nX-Bin: \xff\xfe\r\nconnection: Keep-Alive, Upgrade\r\nContent-Length: 2\r\n\r\nok";
        let (r, n) = parse(raw, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, raw.len());
        assert_eq!(
            (r.method.clone(), r.path(), r.query()),
            (Method::Put, "/k%20v", Some("a=1&b"))
        );
        let hs: Vec<(&str, &[u8])> = r.headers().collect();
        assert_eq!(
            hs,
            [
                ("Host", &b"h:80"[..]),
                ("X-Empty", b""),
                ("X-Bin", b"\xff\xfe"),
                ("connection", b"Keep-Alive, Upgrade"),
                ("Content-Length", b"2"),
            ]
        );
        assert_eq!(r.header("x-empty"), Some(""));
        assert_eq!(r.header("x-bin"), None, "not UTF-8");
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.body, b"ok");
        assert!(r.keep_alive);
        // A clone owns its own head and reads the same.
        let c = r.clone();
        drop(r);
        assert_eq!(c.header("HOST"), Some("h:80"));
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("\"/k%20v\"") && dbg.contains("X-Empty"),
            "{dbg}"
        );
    }

    #[test]
    fn built_requests_read_like_parsed_ones() {
        let r = Request::new(Method::Post, "/a/b?q")
            .with_header("Content-Type", "text/plain")
            .with_header("X-N", b"1")
            .with_body("hi");
        assert_eq!((r.path(), r.query()), ("/a/b", Some("q")));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.headers().len(), 2);
        assert_eq!(r.body, b"hi");
        let plain = Request::new(Method::Get, "/");
        assert_eq!(
            (plain.path(), plain.query(), plain.headers().len()),
            ("/", None, 0)
        );
        assert_eq!(Request::new(Method::Get, "/x?").query(), Some(""));
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
