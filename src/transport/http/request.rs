//! HTTP/1.1 request parsing with `httparse`: request line and headers, `Content-Length` and
//! chunked bodies, keep-alive, and the limits (header count and size, body size) that turn bad
//! or oversized input into 400, 413 or 431. Pure functions over bytes: no sockets here.
//!
//! Framing follows RFC 9112 strictly, refusing with 400 what it does not decode:
//! `Transfer-Encoding` must be exactly `chunked` (case-insensitive, list elements split on
//! commas, several fields joined): any other coding, `gzip, chunked` included (no coding but
//! chunked is decoded; 400 rather than 501), `chunked` twice or not last, and
//! `Transfer-Encoding` in an HTTP/1.0 request are 400. `Content-Length` is `1*DIGIT`; a list of
//! identical values (`5, 5`) is accepted, anything else (`+5`, `5 5`, empty, differing values)
//! is 400. An HTTP/1.1 request needs exactly one `Host` ([`Limits::require_host`]). Chunked
//! bodies are bounded as they arrive (see [`Limits::max_request_bytes`]): chunk-size lines
//! with extensions at [`MAX_CHUNK_LINE`] (400), framing at [`Limits::max_chunk_framing`] and
//! data at `max_body` (413), trailers at `max_header_bytes` (431).

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
    /// Most bytes of request line plus headers (more: 431). Also the most bytes of a chunked
    /// body's trailer section.
    pub max_header_bytes: usize,
    /// Most body bytes (more: 413).
    pub max_body: usize,
    /// Whether an HTTP/1.1 request must carry exactly one `Host` header (RFC 9112 §3.2: 400
    /// when it has none or several). On by default.
    pub require_host: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body: 1 << 20,
            require_host: true,
        }
    }
}

/// Most bytes of one chunk-size line of a chunked body, chunk extensions and CRLF included
/// (longer: 400).
pub const MAX_CHUNK_LINE: usize = 1024;

impl Limits {
    /// Most bytes of chunked framing (chunk-size lines with their extensions, the CRLF after
    /// each chunk's data, the last-chunk line) one body may take: `max_body + MAX_CHUNK_LINE`
    /// (more: 413). Enough for chunks of 8 bytes or more on average; a body cut into smaller
    /// chunks, or padded with extensions, is refused once its framing outgrows the body limit.
    pub fn max_chunk_framing(&self) -> usize {
        self.max_body.saturating_add(MAX_CHUNK_LINE)
    }

    /// Most bytes a request can take before [`parse`] answers (a request or an error):
    /// head (`max_header_bytes`) + body (`max_body`) + chunked framing
    /// ([`max_chunk_framing`](Limits::max_chunk_framing)) + trailers (`max_header_bytes`).
    /// [`parse`] never asks for more bytes (`Ok(None)`) once it holds this many.
    pub fn max_request_bytes(&self) -> usize {
        self.max_header_bytes
            .saturating_mul(2)
            .saturating_add(self.max_body)
            .saturating_add(self.max_chunk_framing())
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
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut hosts = 0usize;
    let mut conn_close = false;
    let mut conn_keep = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = content_length_value(h.value)?;
            if content_length.is_some_and(|c| c != v) {
                return Err(ParseError::Bad("conflicting Content-Length headers"));
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Several fields make one list: every coding counts, `chunked` must be the only
            // one (no other coding is decoded here) and so the last.
            transfer_encoding = true;
            for coding in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue; // empty list elements are allowed (RFC 9110 §5.6.1)
                }
                if !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(ParseError::Bad("unsupported transfer coding"));
                }
                if chunked {
                    return Err(ParseError::Bad("chunked applied more than once"));
                }
                chunked = true;
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            conn_close |= contains_ignore_case(h.value, b"close");
            conn_keep |= contains_ignore_case(h.value, b"keep-alive");
        }
    }
    if transfer_encoding && !chunked {
        return Err(ParseError::Bad("empty Transfer-Encoding"));
    }
    if transfer_encoding && version == 0 {
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        return Err(ParseError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if chunked && content_length.is_some() {
        return Err(ParseError::Bad(
            "both Content-Length and chunked Transfer-Encoding",
        ));
    }
    if limits.require_host && version == 1 && hosts != 1 {
        return Err(ParseError::Bad(if hosts == 0 {
            "HTTP/1.1 request without Host"
        } else {
            "more than one Host header"
        }));
    }
    let keep_alive = if version == 1 { !conn_close } else { conn_keep };
    let waiting = Parsed::Incomplete {
        expect_continue: expect_continue && version == 1,
    };
    let (body, used) = if chunked {
        // A first pass only walks the framing (chunk data is skipped, not copied), so a call
        // that finds the body incomplete costs one step per chunk, not per byte; the body is
        // copied once, by a second pass, when it is complete. (`parse` keeps no state between
        // calls, so each call starts from the head again.)
        let rest = &buf[hlen..];
        let mut scan = Dechunker::new(limits);
        let n = scan.feed(rest, None)?;
        if !scan.is_done() {
            return Ok(waiting);
        }
        let mut body = Vec::with_capacity(scan.data);
        Dechunker::new(limits).feed(&rest[..n], Some(&mut body))?;
        (body, hlen + n)
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

/// Parses a `Content-Length` value: `1*DIGIT`, or a list of identical such values (`5, 5`,
/// which RFC 9110 §8.6 lets a recipient accept). Signs, spaces inside a number, empty values
/// and differing list members are 400.
pub(crate) fn content_length_value(v: &[u8]) -> Result<usize, ParseError> {
    let bad = ParseError::Bad("invalid Content-Length");
    let mut value = None;
    for part in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        let n = part.iter().try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        let n = n.ok_or(ParseError::Bad("invalid Content-Length"))?;
        if value.is_some_and(|v| v != n) {
            return Err(ParseError::Bad("conflicting Content-Length values"));
        }
        value = Some(n);
    }
    value.ok_or(bad)
}

/// Where a [`Dechunker`] is in the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// An incremental decoder of a chunked body (RFC 9112 §7.1) within limits: chunk-size lines
/// (extensions included) of at most [`MAX_CHUNK_LINE`] bytes (400), at most `max_body` data
/// bytes (413, as soon as a chunk size, even half-read, goes over), at most
/// [`Limits::max_chunk_framing`] framing bytes (413) and trailers of at most
/// `max_header_bytes` (431). Trailers are checked for CRLF line ends and dropped.
#[derive(Debug, Clone)]
pub(crate) struct Dechunker {
    state: ChunkState,
    max_body: usize,
    max_framing: usize,
    max_trailers: usize,
    /// Chunk data bytes consumed so far.
    pub(crate) data: usize,
    /// Framing bytes consumed so far.
    framing: usize,
    /// Trailer bytes consumed so far.
    trailers: usize,
}

impl Dechunker {
    /// A decoder at the start of a body, within `limits`.
    pub(crate) fn new(limits: &Limits) -> Dechunker {
        Dechunker {
            state: ChunkState::Size,
            max_body: limits.max_body,
            max_framing: limits.max_chunk_framing(),
            max_trailers: limits.max_header_bytes,
            data: 0,
            framing: 0,
            trailers: 0,
        }
    }

    /// Whether the body is complete (the trailer section's empty line was consumed).
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from the front of `buf`, the bytes after those consumed by earlier calls, and
    /// appends chunk data to `out` (when given). Returns how many bytes of `buf` it consumed:
    /// whole lines and any chunk data; the rest (a partial line) must be passed again, with
    /// more bytes after it. Stops at the end of the body ([`is_done`](Dechunker::is_done)).
    /// A partial line that can no longer become a valid one within the limits is refused at
    /// once.
    pub(crate) fn feed(
        &mut self,
        buf: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<usize, ParseError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Data(left) => {
                    let n = left.min(rest.len());
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(&rest[..n]);
                    }
                    self.data += n;
                    pos += n;
                    if n < left {
                        self.state = ChunkState::Data(left - n);
                        return Ok(pos);
                    }
                    self.state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if self.framing.saturating_add(rest.len().min(2)) > self.max_framing {
                        return Err(self.framing_too_large(rest.len().min(2)));
                    }
                    match rest {
                        [b'\r', b'\n', ..] => {
                            self.framing += 2;
                            pos += 2;
                            self.state = ChunkState::Size;
                        }
                        [] | [b'\r'] => return Ok(pos),
                        _ => return Err(ParseError::Bad("chunk not followed by CRLF")),
                    }
                }
                ChunkState::Size => {
                    let window = &rest[..rest.len().min(MAX_CHUNK_LINE)];
                    let line_len = window.iter().position(|&b| b == b'\n').map(|i| i + 1);
                    let line = &window[..line_len.unwrap_or(window.len())];
                    let have = line.len();
                    if self.framing.saturating_add(have) > self.max_framing {
                        return Err(self.framing_too_large(have));
                    }
                    let size = size_line(line, line_len.is_some())?;
                    match size {
                        Some(s) if s <= self.max_body - self.data => {}
                        s => {
                            return Err(ParseError::BodyTooLarge(
                                s.map_or(usize::MAX, |s| s.saturating_add(self.data)),
                            ));
                        }
                    }
                    let Some(len) = line_len else {
                        if rest.len() >= MAX_CHUNK_LINE {
                            return Err(ParseError::Bad("chunk-size line too long"));
                        }
                        return Ok(pos);
                    };
                    let size = size.unwrap_or(0);
                    self.framing += len;
                    pos += len;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Trailers => {
                    let room = self.max_trailers - self.trailers;
                    let window = &rest[..rest.len().min(room)];
                    let Some(i) = window.iter().position(|&b| b == b'\n') else {
                        if rest.len() >= room {
                            return Err(ParseError::HeadersTooLarge);
                        }
                        return Ok(pos);
                    };
                    if i == 0 || window[i - 1] != b'\r' {
                        return Err(ParseError::Bad("trailer line not ended by CRLF"));
                    }
                    self.trailers += i + 1;
                    pos += i + 1;
                    if i == 1 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }

    /// The 413 for framing over the limit, with `more` bytes of a line not consumed yet.
    fn framing_too_large(&self, more: usize) -> ParseError {
        ParseError::BodyTooLarge(
            self.data
                .saturating_add(self.framing)
                .saturating_add(more)
                .max(self.max_body.saturating_add(1)),
        )
    }
}

/// Checks a chunk-size line (`1*HEXDIG [ext] CRLF`, `ext` being `;` and printable bytes or
/// tabs), whole (`complete`, ending in LF) or its first bytes, and returns the size read so far
/// (`None` once it no longer fits a `usize`; `Some(0)` before any digit).
fn size_line(line: &[u8], complete: bool) -> Result<Option<usize>, ParseError> {
    let bad = ParseError::Bad("invalid chunk-size line");
    let body = if complete {
        line.strip_suffix(b"\r\n").ok_or(bad.clone())?
    } else {
        // A partial line may end in the CR of its CRLF.
        line.strip_suffix(b"\r").unwrap_or(line)
    };
    let digits = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 && (complete || !body.is_empty()) {
        return Err(bad);
    }
    let mut size = Some(0usize);
    for &d in &body[..digits] {
        let v = (d as char).to_digit(16).unwrap_or(0) as usize;
        size = size.and_then(|s| s.checked_mul(16)?.checked_add(v));
    }
    let after = &body[digits..];
    let ws = after
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match &after[ws..] {
        [] => {}
        [b';', ext @ ..] if ext.iter().all(|&b| b == b'\t' || (b' '..0x7f).contains(&b)) => {}
        _ => return Err(bad),
    }
    // A CR anywhere but at the end of a partial line was caught above (not printable).
    Ok(size)
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
        let head =
            b"POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert!(expects_continue(head));
        assert!(!expects_continue(&head[..20]), "head not complete yet");
        assert!(!expects_continue(
            b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
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
    fn json_bodies_parse_and_bad_ones_are_errors() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Point {
            x: i32,
            y: i32,
        }
        let r = Request::new(Method::Post, "/p").with_body(r#"{"x": 1, "y": -2}"#);
        assert_eq!(r.json::<Point>().unwrap(), Point { x: 1, y: -2 });
        let bad = Request::new(Method::Post, "/p").with_body("{\"x\": 1");
        assert!(bad.json::<Point>().is_err());
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
            parse(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",
                &l
            )
            .unwrap()
            .is_none()
        );
        let (r, n) = parse(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde",
            &l,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(n, 52);
    }

    #[test]
    fn chunked_body_is_decoded() {
        let l = Limits::default();
        let req = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for cut in 50..req.len() {
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
        let cl = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(parse(cl, &l).unwrap().is_none());
        let ch = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nxx";
        assert!(parse(ch, &l).unwrap().is_none());
    }

    #[test]
    fn limits_give_the_right_status() {
        let l = Limits {
            max_headers: 2,
            max_header_bytes: 64,
            max_body: 4,
            require_host: false,
        };
        let e = parse(
            b"GET / HTTP/1.1\r\nHost: h\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n",
            &l,
        )
        .unwrap_err();
        assert_eq!(e.status(), 431);
        let e = parse(&[b'G'; 100], &l).unwrap_err();
        assert_eq!(e.status(), 431);
        let e = parse(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            &l,
        )
        .unwrap_err();
        assert_eq!(e.status(), 413);
        let e = parse(b"\x00\x01garbage\r\n\r\n", &l).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = parse(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }

    const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunked(body: &[u8], l: &Limits) -> Result<Option<(Request, usize)>, ParseError> {
        parse(&[CHUNKED, body].concat(), l)
    }

    #[test]
    fn chunk_size_line_is_capped_with_its_extensions() {
        let l = Limits::default();
        // The audit's case: `1;` and extension bytes without end.
        let ext = vec![b'a'; MAX_CHUNK_LINE];
        assert!(
            chunked(&[b"1;", &ext[..900]].concat(), &l)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            chunked(&[b"1;", &ext[..]].concat(), &l).unwrap_err(),
            ParseError::Bad("chunk-size line too long")
        );
        // A whole line of exactly MAX_CHUNK_LINE bytes is fine, one more is not.
        let line = |n: usize| [b"1;", &ext[..n - 4], b"\r\n"].concat();
        let (r, _) = chunked(&[&line(MAX_CHUNK_LINE)[..], b"x\r\n0\r\n\r\n"].concat(), &l)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"x");
        assert_eq!(
            chunked(&line(MAX_CHUNK_LINE + 1), &l).unwrap_err().status(),
            400
        );
        // Leading zeros are no way around it either.
        assert_eq!(
            chunked(&vec![b'0'; MAX_CHUNK_LINE], &l)
                .unwrap_err()
                .status(),
            400
        );
        for bad in [
            &b"x\r\n"[..],
            b"1 2\r\n",
            b"1\n",
            b"1;a\rb\r\n",
            b";\r\n",
            b"\r\n",
        ] {
            assert_eq!(chunked(bad, &l).unwrap_err().status(), 400, "{bad:?}");
        }
        // Whitespace before extensions and extensions with values are accepted.
        let (r, _) = chunked(b"2 ;name=\"v\"\r\nab\r\n0;x\r\n\r\n", &l)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"ab");
    }

    #[test]
    fn trailers_are_capped_at_max_header_bytes() {
        let l = Limits {
            max_header_bytes: 200,
            ..Limits::default()
        };
        let (r, n) = chunked(b"1\r\nx\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", &l)
            .unwrap()
            .unwrap();
        assert_eq!((r.body.as_slice(), n), (&b"x"[..], CHUNKED.len() + 25));
        let many = [&b"0\r\n"[..], &b"X-T: 1\r\n".repeat(30)].concat();
        assert_eq!(chunked(&many, &l).unwrap_err(), ParseError::HeadersTooLarge);
        let endless = [&b"0\r\nX: "[..], &[b'v'; 300]].concat();
        assert_eq!(
            chunked(&endless, &l).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        assert_eq!(chunked(b"0\r\nX: 1\n\r\n", &l).unwrap_err().status(), 400);
    }

    #[test]
    fn chunk_sizes_over_the_body_limit_are_refused_before_their_line_ends() {
        let l = Limits {
            max_body: 100,
            ..Limits::default()
        };
        // 0x65 = 101: refused with the line still open.
        assert_eq!(
            chunked(b"65", &l).unwrap_err(),
            ParseError::BodyTooLarge(101)
        );
        assert!(chunked(b"64", &l).unwrap().is_none());
        // The sum counts: 0x60 + 0x5 = 101.
        let first = [&b"60\r\n"[..], &[b'x'; 0x60], b"\r\n"].concat();
        assert_eq!(
            chunked(&[&first[..], b"5"].concat(), &l).unwrap_err(),
            ParseError::BodyTooLarge(101)
        );
        assert_eq!(
            chunked(b"fffffffffffffffffffff", &l).unwrap_err(),
            ParseError::BodyTooLarge(usize::MAX)
        );
    }

    #[test]
    fn chunk_framing_is_capped() {
        let l = Limits {
            max_body: 64,
            ..Limits::default()
        };
        // One-byte chunks padded with extensions: the data fits, the framing does not.
        let chunk = [&b"1;"[..], &[b'e'; 300], b"\r\nx\r\n"].concat();
        let e = chunked(&chunk.repeat(5), &l).unwrap_err();
        assert!(matches!(e, ParseError::BodyTooLarge(n) if n > 64), "{e:?}");
        assert!(chunked(&chunk.repeat(2), &l).unwrap().is_none());
    }

    /// Every endless input is refused before it outgrows `max_request_bytes` (the bound the
    /// fuzz target checks on every incomplete input).
    #[test]
    fn endless_input_is_refused_within_max_request_bytes() {
        let l = Limits {
            max_header_bytes: 512,
            max_body: 256,
            ..Limits::default()
        };
        let bound = l.max_request_bytes();
        let fillers: [(&[u8], &[u8]); 6] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: ", b"a"),
            (CHUNKED, b"0"),
            (&[CHUNKED, b"1;"].concat(), b"e"),
            (&[CHUNKED, b"0\r\n"].concat(), b"T: v\r\n"),
            (CHUNKED, b"1\r\nx\r\n"),
            (
                CHUNKED,
                b"1;eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\r\nx\r\n",
            ),
        ];
        for (start, fill) in fillers {
            let mut buf = start.to_vec();
            loop {
                match parse(&buf, &l) {
                    Ok(None) => assert!(buf.len() <= bound, "{} > {bound}", buf.len()),
                    Ok(Some(_)) => panic!("complete?"),
                    Err(_) => break,
                }
                buf.push(fill[(buf.len() - start.len()) % fill.len()]);
            }
        }
    }

    #[test]
    fn chunked_body_decodes_the_same_fed_in_pieces() {
        let l = Limits::default();
        let body = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT";
        for step in 1..8 {
            let mut d = Dechunker::new(&l);
            let (mut out, mut pending, mut at) = (Vec::new(), Vec::new(), 0);
            while !d.is_done() {
                let end = (at + step).min(body.len());
                pending.extend_from_slice(&body[at..end]);
                at = end;
                let n = d.feed(&pending, Some(&mut out)).unwrap();
                pending.drain(..n);
            }
            assert_eq!(out, b"abc0123456789abcdef", "step {step}");
            assert_eq!(at - pending.len(), body.len() - 4, "step {step}");
        }
    }

    #[test]
    fn transfer_encoding_must_be_exactly_chunked() {
        let l = Limits::default();
        let req = |te: &str| {
            parse(
                format!("POST / HTTP/1.1\r\nHost: h\r\n{te}\r\n\r\n0\r\n\r\n").as_bytes(),
                &l,
            )
        };
        for ok in [
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: Chunked",
            "transfer-encoding:  CHUNKED ",
            "Transfer-Encoding: , chunked",
        ] {
            assert!(req(ok).unwrap().is_some(), "{ok}");
        }
        for bad in [
            "Transfer-Encoding: xchunked",
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, chunked",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked;q=1",
            "Transfer-Encoding: identity",
            "Transfer-Encoding: ",
        ] {
            assert_eq!(req(bad).unwrap_err().status(), 400, "{bad}");
        }
        let e = parse(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &l,
        );
        assert_eq!(
            e.unwrap_err().status(),
            400,
            "HTTP/1.0 with Transfer-Encoding"
        );
    }

    #[test]
    fn content_length_must_be_digits() {
        let l = Limits::default();
        let req = |cl: &str| {
            parse(
                format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {cl}\r\n\r\nabcde")
                    .as_bytes(),
                &l,
            )
        };
        assert_eq!(req("5").unwrap().unwrap().0.body, b"abcde");
        assert_eq!(req("5, 5").unwrap().unwrap().0.body, b"abcde");
        assert_eq!(req("05").unwrap().unwrap().0.body, b"abcde");
        for bad in [
            "+5",
            "-5",
            "5 5",
            " 5 5",
            "",
            "5,6",
            "5,",
            "0x5",
            "5.0",
            "99999999999999999999999",
        ] {
            assert_eq!(req(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        let l = Limits::default();
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n", &l).unwrap_err(),
            ParseError::Bad("HTTP/1.1 request without Host")
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", &l)
                .unwrap_err()
                .status(),
            400
        );
        assert!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &l)
                .unwrap()
                .is_some()
        );
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n", &l).unwrap().is_some());
        let lax = Limits {
            require_host: false,
            ..Limits::default()
        };
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n", &lax).unwrap().is_some());
    }
}
