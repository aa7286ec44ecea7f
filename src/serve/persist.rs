//! How a shard's keyspace is laid out as records of the storage layer's key-value log
//! ([`percore::storage::kv::KvShard`]), one record per string and one per collection element,
//! so that a write costs one small record whatever the size of the value it changes (an
//! `LPUSH` onto a list of a million elements logs one element, not the list). Owns the record
//! encoding and nothing else; the keyspace (`db.rs`) decides what to log.
//!
//! Records (the KV key → the KV value):
//! - `m` key → `[type][expire-at ms, u64 LE][string value]`: every key has one; the type is
//!   0 string, 1 hash, 2 list, 3 set; expire-at 0 means none.
//! - `h` len(key) key field → the field's value (hashes).
//! - `l` len(key) key seq → the element (lists; `seq` orders them: `LPUSH` takes the head's
//!   seq − 1, `RPUSH` the tail's + 1, stored so that byte order is numeric order).
//! - `s` len(key) key member → empty (sets).
//!
//! `len(key)` is 4 bytes big-endian, so one key's elements are contiguous and never mix with
//! another key that shares a prefix.

/// Type byte of a meta record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str = 0,
    /// A hash.
    Hash = 1,
    /// A list.
    List = 2,
    /// A set.
    Set = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Str,
            1 => Kind::Hash,
            2 => Kind::List,
            3 => Kind::Set,
            _ => return None,
        })
    }

    /// The record tag of this kind's elements (`None` for strings).
    pub fn tag(self) -> Option<u8> {
        match self {
            Kind::Str => None,
            Kind::Hash => Some(b'h'),
            Kind::List => Some(b'l'),
            Kind::Set => Some(b's'),
        }
    }
}

/// The meta record's KV key of `key`.
pub fn meta_key(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + key.len());
    v.push(b'm');
    v.extend_from_slice(key);
    v
}

/// The meta record's value.
pub fn meta_value(kind: Kind, expire_at: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&expire_at.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Decodes a meta record's value: kind, expire-at, payload.
pub fn parse_meta(v: &[u8]) -> Option<(Kind, u64, &[u8])> {
    if v.len() < 9 {
        return None;
    }
    let kind = Kind::from_byte(v[0])?;
    let exp = u64::from_le_bytes(v[1..9].try_into().ok()?);
    Some((kind, exp, &v[9..]))
}

/// The prefix every element record of `key` (of type `tag`) starts with.
pub fn elem_prefix(tag: u8, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + key.len() + 16);
    v.push(tag);
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    v
}

/// An element record's KV key.
pub fn elem_key(tag: u8, key: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut v = elem_prefix(tag, key);
    v.extend_from_slice(suffix);
    v
}

/// A list sequence number as bytes whose order is the numbers' order.
pub fn seq_bytes(seq: i64) -> [u8; 8] {
    ((seq as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`seq_bytes`].
pub fn seq_from(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

/// Splits an element record's KV key into (tag, key, suffix).
pub fn parse_elem(k: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if k.len() < 5 {
        return None;
    }
    let n = u32::from_be_bytes(k[1..5].try_into().ok()?) as usize;
    let rest = &k[5..];
    if rest.len() < n {
        return None;
    }
    Some((k[0], &rest[..n], &rest[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn seq_order_is_byte_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), seq_bytes(a).cmp(&seq_bytes(b)));
            prop_assert_eq!(seq_from(&seq_bytes(a)), Some(a));
        }

        #[test]
        fn elem_roundtrip(key in proptest::collection::vec(any::<u8>(), 0..20),
                          suf in proptest::collection::vec(any::<u8>(), 0..20)) {
            let k = elem_key(b'h', &key, &suf);
            prop_assert_eq!(parse_elem(&k), Some((b'h', &key[..], &suf[..])));
            prop_assert!(k.starts_with(&elem_prefix(b'h', &key)));
        }

        #[test]
        fn meta_roundtrip(exp in any::<u64>(), p in proptest::collection::vec(any::<u8>(), 0..20)) {
            let v = meta_value(Kind::Set, exp, &p);
            prop_assert_eq!(parse_meta(&v), Some((Kind::Set, exp, &p[..])));
        }
    }

    #[test]
    fn keys_sharing_a_prefix_do_not_interleave() {
        // "ab" + field "c" must not sort inside "abc"'s elements.
        let a = elem_key(b'h', b"ab", b"c");
        let p = elem_prefix(b'h', b"abc");
        assert!(!a.starts_with(&p));
        assert_eq!(parse_meta(&[9; 9]), None);
    }
}
