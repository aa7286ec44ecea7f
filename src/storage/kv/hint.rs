//! Hint files: for each sealed segment, the list of its entries (kind, key, offset, length)
//! without the values, so that a restart rebuilds the index without reading every value.
//! Pure encode/decode (fuzzed: `fuzz/fuzz_targets/kv_hint.rs`); a hint that fails its CRC is
//! ignored and the segment is scanned instead.
//!
//! ```text
//! hint    := "PCKVHNT1" entry* max_seq:u64 count:u32 crc:u32
//!            (max_seq = the segment's newest frame; crc = CRC32C of everything before it)
//! entry   := kind:u8 klen:u16 offset:u32 len:u32 key
//! ```

use super::record::{FrameError, Kind};

const MAGIC: &[u8; 8] = b"PCKVHNT1";
const ENTRY: usize = 11;

/// One entry of a hint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintEntry<'a> {
    /// Put or delete.
    pub kind: Kind,
    /// The key.
    pub key: &'a [u8],
    /// Offset of the entry in its segment.
    pub offset: u32,
    /// Length of the entry.
    pub len: u32,
}

/// Builds a hint file.
#[derive(Debug)]
pub struct HintWriter {
    buf: Vec<u8>,
    count: u32,
    max_seq: u64,
}

impl HintWriter {
    /// An empty hint.
    pub fn new() -> HintWriter {
        HintWriter {
            buf: MAGIC.to_vec(),
            count: 0,
            max_seq: 0,
        }
    }

    /// Adds one entry.
    pub fn push(&mut self, kind: Kind, key: &[u8], offset: u32, len: u32) {
        self.buf.push(kind as u8);
        self.buf
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&offset.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(key);
        self.count += 1;
    }

    /// Notes a frame's sequence number (the hint keeps the largest).
    pub fn seq(&mut self, seq: u64) {
        self.max_seq = self.max_seq.max(seq);
    }

    /// Entries so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no entry was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&self.max_seq.to_le_bytes());
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A decoded hint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint<'a> {
    /// The entries in log order.
    pub entries: Vec<HintEntry<'a>>,
    /// The segment's newest frame sequence number.
    pub max_seq: u64,
}

impl Default for HintWriter {
    fn default() -> Self {
        HintWriter::new()
    }
}

/// Decodes a whole hint file, checking its CRC and framing.
pub fn decode_hint(buf: &[u8]) -> Result<Hint<'_>, FrameError> {
    if buf.len() < MAGIC.len() + 16 {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need: MAGIC.len() + 16,
        });
    }
    if &buf[..8] != MAGIC {
        return Err(FrameError::Corrupt("not a hint file (bad magic)"));
    }
    let body = buf.len() - 4;
    let crc = u32::from_le_bytes(buf[body..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[..body]) != crc {
        return Err(FrameError::Corrupt("hint checksum mismatch"));
    }
    let count = u32::from_le_bytes(buf[body - 4..body].try_into().expect("4 bytes")) as usize;
    let max_seq = u64::from_le_bytes(buf[body - 12..body - 4].try_into().expect("8 bytes"));
    let end = body - 12;
    if count > (end - MAGIC.len()) / ENTRY {
        return Err(FrameError::Corrupt("hint entry count larger than the file"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = MAGIC.len();
    for _ in 0..count {
        if at + ENTRY > end {
            return Err(FrameError::Corrupt("hint entry runs past the end"));
        }
        let kind = match buf[at] {
            1 => Kind::Put,
            2 => Kind::Delete,
            _ => return Err(FrameError::Corrupt("unknown hint entry kind")),
        };
        let klen = u16::from_le_bytes([buf[at + 1], buf[at + 2]]) as usize;
        let offset = u32::from_le_bytes(buf[at + 3..at + 7].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(buf[at + 7..at + 11].try_into().expect("4 bytes"));
        let k0 = at + ENTRY;
        if k0 + klen > end {
            return Err(FrameError::Corrupt("hint key runs past the end"));
        }
        out.push(HintEntry {
            kind,
            key: &buf[k0..k0 + klen],
            offset,
            len,
        });
        at = k0 + klen;
    }
    if at != end {
        return Err(FrameError::Corrupt("bytes after the last hint entry"));
    }
    Ok(Hint {
        entries: out,
        max_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hint_from_an_independent_encoder_decodes() {
        let two = include_bytes!("../../../fuzz/corpus/kv_hint/seed-two");
        let h = decode_hint(two).unwrap();
        assert_eq!(h.max_seq, 77);
        let e = h.entries;
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].key, e[0].offset, e[0].len), (&b"key"[..], 20, 30));
        assert_eq!((e[1].kind, e[1].key), (Kind::Delete, &b"gone"[..]));
    }

    proptest! {
        #[test]
        fn hints_round_trip_and_any_flipped_bit_is_caught(
            entries in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..30), any::<u32>(), any::<u32>()),
                0..30,
            ),
            flip in any::<prop::sample::Index>(),
        ) {
            let mut w = HintWriter::new();
            for (put, k, off, len) in &entries {
                w.push(if *put { Kind::Put } else { Kind::Delete }, k, *off, *len);
                w.seq(*off as u64);
            }
            let bytes = w.finish();
            let hint = decode_hint(&bytes).unwrap();
            prop_assert_eq!(hint.max_seq, entries.iter().map(|e| e.2 as u64).max().unwrap_or(0));
            let got = hint.entries;
            prop_assert_eq!(got.len(), entries.len());
            for (g, (put, k, off, len)) in got.iter().zip(&entries) {
                prop_assert_eq!(g.kind == Kind::Put, *put);
                prop_assert_eq!(g.key, k.as_slice());
                prop_assert_eq!((g.offset, g.len), (*off, *len));
            }
            let mut bad = bytes.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x10;
            prop_assert!(decode_hint(&bad).is_err());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_hint(&bytes);
        }
    }
}
