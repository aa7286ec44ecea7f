//! Fuzzes the hint-file reader: arbitrary bytes never panic, and an accepted hint re-encodes to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::storage::kv::hint::{HintWriter, decode_hint};

fuzz_target!(|data: &[u8]| {
    if let Ok(hint) = decode_hint(data) {
        let mut w = HintWriter::new();
        for e in &hint.entries {
            w.push(e.kind, e.key, e.offset, e.len);
        }
        w.seq(hint.max_seq);
        assert_eq!(w.finish(), data, "accepted hint re-encodes");
    }
});
