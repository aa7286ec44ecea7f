//! RESP2, the Redis wire protocol: [`parse`] turns the front of a connection's input into one
//! [`Cmd`] (a multibulk `*N\r\n$len\r\n...` or an inline `PING\r\n` line), and [`Out`] writes
//! the reply types clients expect. Owns the byte format only: no commands, no state.
//!
//! Limits follow redis-server 7: a bulk argument longer than `proto-max-bulk-len` (512 MiB by
//! default), a multibulk count over 1,048,576 when bulk arguments are large... are refused
//! with the same error texts Redis sends (`Protocol error: invalid bulk length`), after which
//! the connection is closed.

use std::ops::Range;

use smallvec::SmallVec;

/// Arguments kept inline before the table spills to the heap.
const INLINE_ARGS: usize = 6;

/// Longest inline command line (Redis: `PROTO_INLINE_MAX_SIZE`, 64 KiB).
pub const INLINE_MAX: usize = 64 * 1024;
/// Most arguments in one multibulk (Redis accepts up to `INT_MAX`; 1 Mi keeps one command's
/// argument table within 16 MiB).
pub const MULTIBULK_MAX: usize = 1024 * 1024;
/// Default `proto-max-bulk-len`: 512 MiB, as in Redis.
pub const DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;

/// One command: its arguments (the name first) as ranges of one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    buf: Vec<u8>,
    args: SmallVec<[Range<u32>; INLINE_ARGS]>,
}

impl Cmd {
    /// A command from owned arguments (tests, fan-out sub-commands).
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Cmd {
        let mut c = Cmd {
            buf: Vec::new(),
            args: SmallVec::with_capacity(args.len()),
        };
        for a in args {
            c.push(a.as_ref());
        }
        c
    }

    /// Appends an argument.
    pub fn push(&mut self, a: &[u8]) {
        let s = self.buf.len() as u32;
        self.buf.extend_from_slice(a);
        self.args.push(s..self.buf.len() as u32);
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` (0 is the command name); empty past the end.
    pub fn arg(&self, i: usize) -> &[u8] {
        match self.args.get(i) {
            Some(r) => &self.buf[r.start as usize..r.end as usize],
            None => &[],
        }
    }

    /// Every argument, the name first.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.args
            .iter()
            .map(|r| &self.buf[r.start as usize..r.end as usize])
    }
}

/// Why input was refused. The texts are Redis's; the connection is closed after the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// `*` count that is not a number or is out of range.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// `$` length that is not a number or is over `proto-max-bulk-len`.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// A multibulk item that does not start with `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    /// An inline line longer than [`INLINE_MAX`].
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// A `$len` header or `*N` line over 64 KiB with no end.
    #[error("Protocol error: too big mbulk count string")]
    CountTooBig,
    /// Unbalanced quotes in an inline command.
    #[error("Protocol error: unbalanced quotes in request")]
    Quotes,
}

/// Input limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `proto-max-bulk-len`.
    pub max_bulk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: DEFAULT_MAX_BULK,
        }
    }
}

/// What [`parse`] found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// One command and the bytes it used.
    Cmd(Cmd, usize),
    /// An empty inline line or `*0`/`*-1` (Redis skips them): the bytes to drop.
    Skip(usize),
    /// More input is needed.
    Incomplete,
}

fn find_crlf(input: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr(b'\r', &input[i..]) {
        let at = i + p;
        if at + 1 >= input.len() {
            return None;
        }
        if input[at + 1] == b'\n' {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    memchr::memchr(b, s)
}

/// A decimal integer as Redis's `string2ll` reads it (no `+`, no spaces, no leading zeros
/// other than `0` itself).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

/// Parses one command from the front of `input`.
pub fn parse(input: &[u8], limits: &Limits) -> Result<Parsed, ProtoError> {
    if input.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    if input[0] != b'*' {
        return parse_inline(input);
    }
    let Some(end) = find_crlf(input, 1) else {
        if input.len() > INLINE_MAX {
            return Err(ProtoError::CountTooBig);
        }
        return Ok(Parsed::Incomplete);
    };
    let n = parse_i64(&input[1..end]).ok_or(ProtoError::MultibulkLength)?;
    if n > MULTIBULK_MAX as i64 {
        return Err(ProtoError::MultibulkLength);
    }
    let mut pos = end + 2;
    if n <= 0 {
        return Ok(Parsed::Skip(pos));
    }
    let n = n as usize;
    // First pass: check the whole frame is here (no copy until it is).
    let mut spans: SmallVec<[Range<usize>; INLINE_ARGS]> = SmallVec::new();
    let mut total = 0usize;
    for _ in 0..n {
        if pos >= input.len() {
            return Ok(Parsed::Incomplete);
        }
        if input[pos] != b'$' {
            return Err(ProtoError::ExpectedDollar(input[pos] as char));
        }
        let Some(e) = find_crlf(input, pos + 1) else {
            if input.len() - pos > INLINE_MAX {
                return Err(ProtoError::CountTooBig);
            }
            return Ok(Parsed::Incomplete);
        };
        let len = parse_i64(&input[pos + 1..e]).ok_or(ProtoError::BulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtoError::BulkLength);
        }
        let len = len as usize;
        let start = e + 2;
        let stop = start + len;
        if stop + 2 > input.len() {
            return Ok(Parsed::Incomplete);
        }
        // Redis does not check the CRLF after a bulk; a client that sends other bytes there
        // is broken either way, and refusing it keeps the framing unambiguous.
        if &input[stop..stop + 2] != b"\r\n" {
            return Err(ProtoError::BulkLength);
        }
        spans.push(start..stop);
        total += len;
        pos = stop + 2;
    }
    let mut buf = Vec::with_capacity(total);
    let mut args = SmallVec::with_capacity(n);
    for s in spans {
        let b = buf.len() as u32;
        buf.extend_from_slice(&input[s]);
        args.push(b..buf.len() as u32);
    }
    Ok(Parsed::Cmd(Cmd { buf, args }, pos))
}

fn parse_inline(input: &[u8]) -> Result<Parsed, ProtoError> {
    let Some(nl) = memchr(b'\n', input) else {
        if input.len() > INLINE_MAX {
            return Err(ProtoError::InlineTooBig);
        }
        return Ok(Parsed::Incomplete);
    };
    if nl > INLINE_MAX {
        return Err(ProtoError::InlineTooBig);
    }
    let mut line = &input[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args = split_args(line).ok_or(ProtoError::Quotes)?;
    if args.is_empty() {
        return Ok(Parsed::Skip(nl + 1));
    }
    Ok(Parsed::Cmd(Cmd::from_args(&args), nl + 1))
}

/// C's `isspace`, what `sdssplitargs` splits on.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line like Redis's `sdssplitargs`: spaces separate, `"..."` understands
/// `\n \r \t \b \a \\ \" \xHH`, `'...'` only `\'`; a closing quote must be followed by a space
/// or the end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && let (Some(a), Some(b)) = (hex(line[i + 2]), hex(line[i + 3]))
                {
                    cur.push(a * 16 + b);
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    inq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    insq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    c if is_space(c) => break,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        debug_assert!(!inq && !insq);
        out.push(cur);
    }
}

/// A reply under construction (RESP2).
#[derive(Debug, Default, Clone)]
pub struct Out {
    /// The encoded bytes.
    pub buf: Vec<u8>,
}

impl Out {
    /// An empty reply buffer (nothing allocated until the first write, which reserves what
    /// it needs: one allocation for a typical reply).
    pub fn new() -> Out {
        Out { buf: Vec::new() }
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string `+s`.
    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error `-ERR ...` (the text must carry its own prefix: `ERR`, `WRONGTYPE`, ...).
    pub fn error(&mut self, s: &str) {
        self.buf.push(b'-');
        for &b in s.as_bytes() {
            // An error is one line: a newline in a message would break the framing.
            self.buf
                .push(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An integer `:n`.
    pub fn int(&mut self, n: i64) {
        self.buf.push(b':');
        self.num(n);
        self.buf.extend_from_slice(b"\r\n");
    }

    fn num(&mut self, n: i64) {
        let mut tmp = itoa_buf();
        let s = fmt_i64(n, &mut tmp);
        self.buf.extend_from_slice(s);
    }

    /// A bulk string `$len\r\n...`.
    pub fn bulk(&mut self, b: &[u8]) {
        self.buf.reserve(b.len() + 16);
        self.buf.push(b'$');
        self.num(b.len() as i64);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(b);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// The null bulk `$-1`.
    pub fn nil(&mut self) {
        self.buf.extend_from_slice(b"$-1\r\n");
    }

    /// The null array `*-1` (BLPOP's timeout).
    pub fn nil_array(&mut self) {
        self.buf.extend_from_slice(b"*-1\r\n");
    }

    /// An array header `*n`; the `n` elements follow.
    pub fn array(&mut self, n: usize) {
        self.buf.push(b'*');
        self.num(n as i64);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk or the null bulk.
    pub fn opt_bulk(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.nil(),
        }
    }

    /// Raw, already encoded bytes (a shard's part of a gathered reply).
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Formats `n` in decimal into `tmp` and returns the digits.
pub fn fmt_i64(n: i64, tmp: &mut [u8; 20]) -> &[u8] {
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        tmp[i] = b'-';
    }
    &tmp[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_and_inline() {
        let l = Limits::default();
        let Parsed::Cmd(c, n) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest", &l).unwrap() else {
            panic!("expected a command")
        };
        assert_eq!((c.arg(0), c.arg(1), n), (&b"GET"[..], &b"k"[..], 20));
        let Parsed::Cmd(c, n) = parse(b"set a \"b c\\x41\" 'd\\'e'\r\n", &l).unwrap() else {
            panic!("expected a command")
        };
        let args: Vec<&[u8]> = c.args().collect();
        assert_eq!(args, vec![&b"set"[..], b"a", b"b cA", b"d'e"]);
        // Found by the fuzzer: a NUL or a vertical tab once split forever.
        let Parsed::Cmd(c, _) = parse(b"a\x00b\x0bc\r\n", &l).unwrap() else {
            panic!("expected a command")
        };
        assert_eq!(c.args().collect::<Vec<_>>(), vec![&b"a\x00b"[..], b"c"]);
        assert_eq!(n, 24);
        assert_eq!(parse(b"\r\n", &l).unwrap(), Parsed::Skip(2));
        assert_eq!(parse(b"*0\r\n", &l).unwrap(), Parsed::Skip(4));
        assert_eq!(parse(b"*2\r\n$3\r\nGET", &l).unwrap(), Parsed::Incomplete);
        assert_eq!(parse(b"PING", &l).unwrap(), Parsed::Incomplete);
    }

    #[test]
    fn errors_match_redis_texts() {
        let l = Limits { max_bulk: 10 };
        assert_eq!(
            parse(b"*x\r\n", &l).unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n$11\r\n", &l).unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+a\r\n", &l).unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(parse(b"get \"a\r\n", &l).unwrap_err(), ProtoError::Quotes);
        let long = vec![b'a'; INLINE_MAX + 2];
        assert_eq!(parse(&long, &l).unwrap_err(), ProtoError::InlineTooBig);
    }

    #[test]
    fn integers_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1a",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
        let mut t = [0; 20];
        assert_eq!(fmt_i64(i64::MIN, &mut t), b"-9223372036854775808");
    }

    proptest! {
        #[test]
        fn roundtrip_any_split(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 1..6), cut in 0usize..400) {
            let wire = encode(&args);
            let l = Limits::default();
            let cut = cut.min(wire.len());
            if cut < wire.len() {
                prop_assert_eq!(parse(&wire[..cut], &l).unwrap(), Parsed::Incomplete);
            }
            let Parsed::Cmd(c, n) = parse(&wire, &l).unwrap() else {
                return Err(TestCaseError::fail("no command"));
            };
            prop_assert_eq!(n, wire.len());
            let got: Vec<Vec<u8>> = c.args().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(got, args);
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&input, &Limits { max_bulk: 64 });
        }
    }
}
