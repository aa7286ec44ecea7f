//! The index's key type: byte strings in lexicographic order, compared eight bytes at a time
//! (big-endian words) instead of through a `memcmp` call per comparison, which was a fifth of
//! the put path's time with 16-byte keys. [`KeyRef`] lets lookups borrow a `&[u8]` as a key
//! without allocating (a `repr(transparent)` view made with `ref-cast`, no unsafe here).
//! Must not touch anything but keys.

use std::borrow::Borrow;
use std::cmp::Ordering;

use ref_cast::RefCast;

/// Lexicographic order of byte strings, a word at a time.
#[inline]
pub(crate) fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// An owned key in the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct IndexKey(pub(crate) Box<[u8]>);

/// A borrowed key, ordered like [`IndexKey`].
#[derive(Debug, PartialEq, Eq, Hash, RefCast)]
#[repr(transparent)]
pub(crate) struct KeyRef(pub(crate) [u8]);

impl KeyRef {
    pub(crate) fn new(k: &[u8]) -> &KeyRef {
        KeyRef::ref_cast(k)
    }
}

impl From<&[u8]> for IndexKey {
    fn from(k: &[u8]) -> Self {
        IndexKey(k.into())
    }
}

impl Ord for IndexKey {
    fn cmp(&self, o: &Self) -> Ordering {
        cmp_bytes(&self.0, &o.0)
    }
}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for KeyRef {
    fn cmp(&self, o: &Self) -> Ordering {
        cmp_bytes(&self.0, &o.0)
    }
}

impl PartialOrd for KeyRef {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Borrow<KeyRef> for IndexKey {
    fn borrow(&self) -> &KeyRef {
        KeyRef::new(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_compare_matches_slice_order(
            a in proptest::collection::vec(any::<u8>(), 0..40),
            b in proptest::collection::vec(any::<u8>(), 0..40),
            shared in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let (a2, b2) = ([shared.clone(), a].concat(), [shared, b].concat());
            prop_assert_eq!(cmp_bytes(&a2, &b2), a2.as_slice().cmp(b2.as_slice()));
            prop_assert_eq!(cmp_bytes(&a2, &a2), Ordering::Equal);
        }
    }
}
