//! The on-disk record format of the key-value log: frames of entries, each frame one atomic
//! write batch. Pure encode/decode over byte slices (fuzzed: `fuzz/fuzz_targets/kv_record.rs`);
//! no I/O.
//!
//! ```text
//! frame  := len:u32 crc:u32 seq:u64 count:u32 entry*count     (little-endian)
//!           len = bytes after the first 8; crc = CRC32C of those bytes
//! entry  := kind:u8 klen:u16 vlen:u32 ecrc:u32 key value
//!           kind 1 = put, 2 = delete (vlen 0); ecrc = CRC32C of kind..vlen, key, value
//! ```
//!
//! The frame CRC makes a batch all or nothing: a frame torn by a crash fails it and is
//! dropped whole. The entry CRC lets a read of one value (the index points at its entry) check
//! what it returns without reading the whole frame.

/// Bytes before the entries of a frame.
pub const FRAME_HEADER: usize = 20;
/// Bytes before an entry's key.
pub const ENTRY_HEADER: usize = 11;

/// A put or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sets the key.
    Put = 1,
    /// Removes the key (a tombstone).
    Delete = 2,
}

/// One entry of a frame, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Put or delete.
    pub kind: Kind,
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for a delete).
    pub value: &'a [u8],
    /// Offset of the entry's header from the start of the frame.
    pub offset: usize,
    /// Bytes of the entry (header, key, value).
    pub len: usize,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The buffer ends inside the frame (at the end of a log: a torn write).
    #[error("the frame is cut off ({have} of {need} bytes)")]
    Incomplete {
        /// Bytes present.
        have: usize,
        /// Bytes the frame needs.
        need: usize,
    },
    /// The bytes are not a valid frame.
    #[error("{0}")]
    Corrupt(&'static str),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Appends one frame holding `entries` (kind, key, value) with sequence number `seq` to `out`
/// and returns each entry's `(offset from the frame start, length)`. The caller checks sizes
/// (keys < 64 KiB, values and the frame < 4 GiB).
pub fn encode_frame(
    out: &mut Vec<u8>,
    seq: u64,
    entries: &[(Kind, &[u8], &[u8])],
) -> Vec<(usize, usize)> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    let mut locs = Vec::with_capacity(entries.len());
    for &(kind, key, value) in entries {
        let e = out.len();
        out.push(kind as u8);
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[e..e + 7]), key);
        let crc = crc32c::crc32c_append(crc, value);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
        locs.push((e - start, out.len() - e));
    }
    let len = (out.len() - start - 8) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    locs
}

/// Appends one frame whose entries are `entries`: `count` entries already encoded (copied
/// verbatim from another frame, as compaction does). Returns the offset of the first entry
/// from the start of `out`.
pub fn encode_frame_raw(out: &mut Vec<u8>, seq: u64, count: u32, entries: &[u8]) -> usize {
    let start = out.len();
    let len = (FRAME_HEADER - 8 + entries.len()) as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(entries);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    start + FRAME_HEADER
}

/// Bytes one frame of `entries` takes.
pub fn frame_len(entries: impl IntoIterator<Item = (usize, usize)>) -> usize {
    FRAME_HEADER
        + entries
            .into_iter()
            .map(|(k, v)| ENTRY_HEADER + k + v)
            .sum::<usize>()
}

/// A decoded frame: its sequence number, length in bytes and entries.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The batch's sequence number.
    pub seq: u64,
    /// Bytes of the whole frame.
    pub len: usize,
    /// The entries in order.
    pub entries: Vec<Entry<'a>>,
}

/// Decodes the frame at the start of `buf`. `max_len` bounds a frame's length (anything
/// larger is corrupt, not a reason to read further). Checks the frame CRC and every entry's
/// framing and CRC.
pub fn decode_frame(buf: &[u8], max_len: usize) -> Result<Frame<'_>, FrameError> {
    if buf.len() < 8 {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need: FRAME_HEADER,
        });
    }
    let len = u32_at(buf, 0) as usize;
    if len < FRAME_HEADER - 8 {
        return Err(FrameError::Corrupt("frame length below the header size"));
    }
    if len > max_len {
        return Err(FrameError::Corrupt("frame length over the limit"));
    }
    let total = len + 8;
    if buf.len() < total {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need: total,
        });
    }
    if crc32c::crc32c(&buf[8..total]) != u32_at(buf, 4) {
        return Err(FrameError::Corrupt("frame checksum mismatch"));
    }
    let seq = u64_at(buf, 8);
    let count = u32_at(buf, 16) as usize;
    if count > len / ENTRY_HEADER {
        return Err(FrameError::Corrupt("entry count larger than the frame"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut at = FRAME_HEADER;
    for _ in 0..count {
        let e = decode_entry(&buf[at..total]).map_err(|e| match e {
            FrameError::Incomplete { .. } => FrameError::Corrupt("entry runs past its frame"),
            c => c,
        })?;
        entries.push(Entry { offset: at, ..e });
        at += e.len;
    }
    if at != total {
        return Err(FrameError::Corrupt("bytes after the last entry of a frame"));
    }
    Ok(Frame {
        seq,
        len: total,
        entries,
    })
}

/// Decodes (and checks) one entry at the start of `buf` (its `offset` is 0).
pub fn decode_entry(buf: &[u8]) -> Result<Entry<'_>, FrameError> {
    if buf.len() < ENTRY_HEADER {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need: ENTRY_HEADER,
        });
    }
    let kind = match buf[0] {
        1 => Kind::Put,
        2 => Kind::Delete,
        _ => return Err(FrameError::Corrupt("unknown entry kind")),
    };
    let klen = u16_at(buf, 1) as usize;
    let vlen = u32_at(buf, 3) as usize;
    let len = ENTRY_HEADER
        .checked_add(klen)
        .and_then(|l| l.checked_add(vlen))
        .ok_or(FrameError::Corrupt("entry length overflows"))?;
    if buf.len() < len {
        return Err(FrameError::Incomplete {
            have: buf.len(),
            need: len,
        });
    }
    if kind == Kind::Delete && vlen != 0 {
        return Err(FrameError::Corrupt("a delete carries a value"));
    }
    let key = &buf[ENTRY_HEADER..ENTRY_HEADER + klen];
    let value = &buf[ENTRY_HEADER + klen..len];
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(&buf[..7]), key), value);
    if crc != u32_at(buf, 7) {
        return Err(FrameError::Corrupt("entry checksum mismatch"));
    }
    Ok(Entry {
        kind,
        key,
        value,
        offset: 0,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_round_trips_and_entry_offsets_point_at_entries() {
        let mut out = b"prefix".to_vec();
        let locs = encode_frame(
            &mut out,
            42,
            &[(Kind::Put, b"k1", b"v1"), (Kind::Delete, b"k2", b"")],
        );
        let f = decode_frame(&out[6..], 1 << 20).unwrap();
        assert_eq!(f.seq, 42);
        assert_eq!(f.len, out.len() - 6);
        assert_eq!(f.entries.len(), 2);
        assert_eq!(f.entries[0].key, b"k1");
        assert_eq!(f.entries[0].value, b"v1");
        assert_eq!(f.entries[1].kind, Kind::Delete);
        for (e, (off, len)) in f.entries.iter().zip(locs) {
            assert_eq!((e.offset, e.len), (off, len));
            let d = decode_entry(&out[6 + off..6 + off + len]).unwrap();
            assert_eq!(d.key, e.key);
        }
        assert_eq!(frame_len([(2, 2), (2, 0)]), f.len);
    }

    #[test]
    fn a_torn_frame_is_incomplete_and_a_flipped_bit_is_corrupt() {
        let mut out = Vec::new();
        encode_frame(&mut out, 1, &[(Kind::Put, b"key", b"value")]);
        for cut in 0..out.len() {
            assert!(
                matches!(
                    decode_frame(&out[..cut], 1 << 20),
                    Err(FrameError::Incomplete { .. })
                ),
                "cut at {cut}"
            );
        }
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decode_frame(&bad, 1 << 20).is_err(),
                    "flip {i}:{bit} went unnoticed"
                );
            }
        }
    }

    /// The fuzz corpus seeds were written by an independent encoder (a bitwise CRC32C in
    /// Python): the reader must accept them as they are.
    #[test]
    fn frames_from_an_independent_encoder_decode() {
        let one = include_bytes!("../../../fuzz/corpus/kv_record/seed-one_put");
        let f = decode_frame(one, 1 << 20).unwrap();
        assert_eq!((f.seq, f.entries.len()), (1, 1));
        assert_eq!(
            (f.entries[0].key, f.entries[0].value),
            (&b"key"[..], &b"value"[..])
        );
        let batch = include_bytes!("../../../fuzz/corpus/kv_record/seed-batch");
        let f = decode_frame(batch, 1 << 20).unwrap();
        assert_eq!(f.entries.len(), 3);
        assert_eq!(f.entries[1].kind, Kind::Delete);
        let mut again = Vec::new();
        let e: Vec<_> = f.entries.iter().map(|e| (e.kind, e.key, e.value)).collect();
        encode_frame(&mut again, f.seq, &e);
        assert_eq!(&again[..], &batch[..]);
    }

    #[test]
    fn a_raw_frame_of_copied_entries_decodes_like_the_original() {
        let mut a = Vec::new();
        let locs = encode_frame(
            &mut a,
            5,
            &[(Kind::Put, b"k1", b"v1"), (Kind::Put, b"k2", b"v22")],
        );
        let entries: Vec<u8> = locs
            .iter()
            .flat_map(|&(o, l)| a[o..o + l].to_vec())
            .collect();
        let mut b = b"xx".to_vec();
        let first = encode_frame_raw(&mut b, 5, 2, &entries);
        assert_eq!(first, 2 + FRAME_HEADER);
        assert_eq!(&b[2..], &a[..], "same bytes as encoding the entries anew");
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            seq in any::<u64>(),
            entries in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..200)),
                0..20,
            ),
        ) {
            let owned: Vec<(Kind, Vec<u8>, Vec<u8>)> = entries
                .into_iter()
                .map(|(put, k, v)| if put { (Kind::Put, k, v) } else { (Kind::Delete, k, Vec::new()) })
                .collect();
            let refs: Vec<(Kind, &[u8], &[u8])> =
                owned.iter().map(|(k, a, b)| (*k, a.as_slice(), b.as_slice())).collect();
            let mut out = Vec::new();
            encode_frame(&mut out, seq, &refs);
            let f = decode_frame(&out, usize::MAX).unwrap();
            prop_assert_eq!(f.seq, seq);
            prop_assert_eq!(f.len, out.len());
            prop_assert_eq!(f.entries.len(), refs.len());
            for (e, r) in f.entries.iter().zip(&refs) {
                prop_assert_eq!((e.kind, e.key, e.value), *r);
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame(&bytes, 1 << 16);
            let _ = decode_entry(&bytes);
        }
    }
}
