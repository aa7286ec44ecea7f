//! `percore serve`'s RESP2 parser (`src/serve/resp.rs`, a module of the binary, included by
//! path): any input either parses into a command whose arguments re-encode to the bytes it
//! consumed, asks for more, or is refused; never a panic, never a consumed count past the
//! input.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/serve/resp.rs"]
#[allow(dead_code)]
mod resp;

use resp::{Limits, Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk: 1 << 16 };
    let mut at = 0;
    while at < data.len() {
        match parse(&data[at..], &limits) {
            Ok(Parsed::Cmd(c, n)) => {
                assert!(n > 0 && at + n <= data.len());
                if data[at] == b'*' {
                    // A multibulk re-encodes to exactly the bytes consumed.
                    let mut enc = format!("*{}\r\n", c.len()).into_bytes();
                    for a in c.args() {
                        enc.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                        enc.extend_from_slice(a);
                        enc.extend_from_slice(b"\r\n");
                    }
                    assert_eq!(&enc[..], &data[at..at + n]);
                }
                at += n;
            }
            Ok(Parsed::Skip(n)) => {
                assert!(n > 0 && at + n <= data.len());
                at += n;
            }
            Ok(Parsed::Incomplete) | Err(_) => break,
        }
    }
});
