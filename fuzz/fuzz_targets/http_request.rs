//! Fuzzes `percore::transport::http::request::parse` with arbitrary bytes, once with the
//! default limits and once with small limits taken from the first input bytes, and checks the
//! invariants every caller relies on (see `check`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::transport::http::request::{Limits, ParseError, Request, parse};

/// Bytes that may follow a request on a kept-alive connection.
const JUNK: &[&[u8]] = &[
    b"",
    b"\r\n",
    b"\x00\xff garbage \r\n\r\n",
    b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    b"0\r\n\r\n",
    b"5\r\nabcde\r\n0\r\n\r\n",
];

/// A comparable form of one parse result (`Request` has no `PartialEq`).
type Outcome = Result<Option<(String, usize)>, ParseError>;

fn outcome(r: &Result<Option<(Request, usize)>, ParseError>) -> Outcome {
    match r {
        Ok(Some((req, used))) => Ok(Some((format!("{req:?}"), *used))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.clone()),
    }
}

fn check(buf: &[u8], limits: &Limits) {
    let first = parse(buf, limits);
    // Determinism: the same bytes give the same answer.
    assert_eq!(
        outcome(&first),
        outcome(&parse(buf, limits)),
        "parse is not deterministic"
    );

    match &first {
        Ok(Some((req, used))) => {
            let used = *used;
            assert!(used > 0, "a complete request consumed no bytes");
            assert!(
                used <= buf.len(),
                "used {used} > buffer length {}",
                buf.len()
            );
            assert!(
                req.body.len() <= limits.max_body,
                "body of {} bytes over max_body {}",
                req.body.len(),
                limits.max_body
            );
            let want = outcome(&first);
            // Exactly the consumed bytes are enough: nothing after `used` was looked at ...
            assert_eq!(
                outcome(&parse(&buf[..used], limits)),
                want,
                "the request's own {used} bytes parse differently"
            );
            // ... so whatever follows them (pipelined requests, junk) changes nothing.
            let mut more = buf[..used].to_vec();
            for junk in JUNK.iter().copied().chain([buf]) {
                more.truncate(used);
                more.extend_from_slice(junk);
                assert_eq!(
                    outcome(&parse(&more, limits)),
                    want,
                    "appending {junk:?} after {used} bytes changed the result"
                );
            }
            // One byte fewer is never a complete request.
            assert!(
                !matches!(parse(&buf[..used - 1], limits), Ok(Some(_))),
                "the first {} bytes already form a complete request",
                used - 1
            );
        }
        Ok(None) => {
            // Incomplete input is bounded: head + body + chunked framing + trailers
            // (`Limits::max_request_bytes`, i.e. 2 * max_header_bytes + 2 * max_body +
            // MAX_CHUNK_LINE). Past it a sender must have been refused.
            assert!(
                buf.len() <= limits.max_request_bytes(),
                "{} bytes still incomplete, over the bound {}",
                buf.len(),
                limits.max_request_bytes()
            );
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 431));
            if let ParseError::BodyTooLarge(n) = e {
                assert!(
                    *n > limits.max_body,
                    "BodyTooLarge({n}) within max_body {}",
                    limits.max_body
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &Limits::default());

    // Small limits from the first three bytes; the rest is the request. `max_headers` reaches
    // past 64 so that the heap-allocated header array is exercised too; the first byte's top
    // bit also turns the Host requirement on.
    if let [a, b, c, rest @ ..] = data {
        let limits = Limits {
            max_headers: usize::from(*a) % 80,
            max_header_bytes: usize::from(*b) * 2,
            max_body: usize::from(*c),
            require_host: *a >= 0x80,
        };
        check(rest, &limits);
    }
});
