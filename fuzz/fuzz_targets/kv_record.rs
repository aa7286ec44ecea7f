//! Fuzzes the key-value log's frame reader and the recovery scan: arbitrary bytes never panic,
//! every frame accepted re-encodes to the same bytes, and the scan's entries lie inside the
//! buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::storage::kv::record::{Kind, decode_entry, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode_entry(data);
    let mut at = 0;
    while at < data.len() {
        match decode_frame(&data[at..], 1 << 20) {
            Ok(f) => {
                assert!(f.len <= data.len() - at);
                let entries: Vec<(Kind, &[u8], &[u8])> =
                    f.entries.iter().map(|e| (e.kind, e.key, e.value)).collect();
                let mut again = Vec::new();
                encode_frame(&mut again, f.seq, &entries);
                assert_eq!(&again[..], &data[at..at + f.len], "accepted frame re-encodes");
                at += f.len;
            }
            Err(_) => at += 1,
        }
    }
});
