//! The index's key type: byte strings in lexicographic order, compared eight bytes at a time
//! (big-endian words) instead of through a `memcmp` call per comparison, which was a fifth of
//! the put path's time with 16-byte keys. [`KeyRef`] lets lookups borrow a `&[u8]` as a key
//! without allocating (a `repr(transparent)` view made with `ref-cast`, no unsafe here). Keys
//! of up to 22 bytes are stored inside the index entry, longer ones boxed.
//! Must not touch anything but keys.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

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

/// Longest key stored inside the index entry itself.
pub(crate) const INLINE_KEY: usize = 22;

/// An owned key in the index. Keys of up to [`INLINE_KEY`] bytes live inside the entry (24
/// bytes, the size of the boxed form plus its tag), so comparing them during a lookup reads
/// the B-tree node only: a boxed key costs a pointer chase, a likely cache miss, per
/// comparison, and was a third of an overwrite's time with a 100 k-key index. Longer keys are
/// boxed.
#[derive(Debug, Clone)]
pub(crate) enum IndexKey {
    /// `len` bytes of `bytes`; the rest are zero.
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    /// A key longer than [`INLINE_KEY`].
    Boxed(Box<[u8]>),
}

impl IndexKey {
    /// The key's bytes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..*len as usize],
            IndexKey::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for IndexKey {
    fn from(k: &[u8]) -> Self {
        if k.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..k.len()].copy_from_slice(k);
            IndexKey::Inline {
                len: k.len() as u8,
                bytes,
            }
        } else {
            IndexKey::Boxed(k.into())
        }
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, o: &Self) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl Eq for IndexKey {}

impl std::hash::Hash for IndexKey {
    /// Hashes like [`KeyRef`] (and `[u8]`), as `Borrow` requires.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h)
    }
}

/// The index entry for `k`. Short keys are looked up as an inline [`IndexKey`] (built on the
/// stack, compared with [`IndexKey`]'s word compare), long ones through [`KeyRef`].
#[inline]
pub(crate) fn get<'a, V>(map: &'a BTreeMap<IndexKey, V>, k: &[u8]) -> Option<&'a V> {
    if k.len() <= INLINE_KEY {
        map.get(&IndexKey::from(k))
    } else {
        map.get(KeyRef::new(k))
    }
}

/// [`get`], mutable.
#[inline]
pub(crate) fn get_mut<'a, V>(map: &'a mut BTreeMap<IndexKey, V>, k: &[u8]) -> Option<&'a mut V> {
    if k.len() <= INLINE_KEY {
        map.get_mut(&IndexKey::from(k))
    } else {
        map.get_mut(KeyRef::new(k))
    }
}

/// Removes `k`'s entry, returning it.
#[inline]
pub(crate) fn remove<V>(map: &mut BTreeMap<IndexKey, V>, k: &[u8]) -> Option<V> {
    if k.len() <= INLINE_KEY {
        map.remove(&IndexKey::from(k))
    } else {
        map.remove(KeyRef::new(k))
    }
}

/// A borrowed key, ordered like [`IndexKey`].
#[derive(Debug, PartialEq, Eq, Hash, RefCast)]
#[repr(transparent)]
pub(crate) struct KeyRef(pub(crate) [u8]);

impl KeyRef {
    pub(crate) fn new(k: &[u8]) -> &KeyRef {
        KeyRef::ref_cast(k)
    }
}

impl Ord for IndexKey {
    /// Two inline keys compare as three big-endian words and then their lengths, without a
    /// loop: the zero padding makes that lexicographic order (a key that is a prefix of another
    /// either compares lower in the words, or equal and then shorter).
    #[inline]
    fn cmp(&self, o: &Self) -> Ordering {
        match (self, o) {
            (IndexKey::Inline { len: a, bytes: x }, IndexKey::Inline { len: b, bytes: y }) => {
                // Bytes 14..22: the last word overlaps the second by two bytes, which are equal
                // by the time it is compared.
                let w = |k: &[u8; INLINE_KEY], i: usize| {
                    u64::from_be_bytes(k[i..i + 8].try_into().expect("8 of 22 bytes"))
                };
                w(x, 0)
                    .cmp(&w(y, 0))
                    .then_with(|| w(x, 8).cmp(&w(y, 8)))
                    .then_with(|| w(x, 14).cmp(&w(y, 14)))
                    .then(a.cmp(b))
            }
            _ => cmp_bytes(self.as_bytes(), o.as_bytes()),
        }
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
        KeyRef::new(self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_index_key_is_as_small_as_a_boxed_slice_plus_its_tag() {
        assert_eq!(std::mem::size_of::<IndexKey>(), 24);
    }

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
            // Inline (short) and boxed (long) keys order, compare and hash like their bytes.
            let (ka, kb) = (IndexKey::from(&a2[..]), IndexKey::from(&b2[..]));
            prop_assert_eq!(ka.as_bytes(), &a2[..]);
            prop_assert_eq!(ka.cmp(&kb), a2.as_slice().cmp(b2.as_slice()));
            prop_assert_eq!(ka == kb, a2 == b2);
            // The inline word compare agrees with the borrowed (slice) compare the map also
            // uses, as `Borrow` requires.
            prop_assert_eq!(ka.cmp(&kb), KeyRef::new(&a2).cmp(KeyRef::new(&b2)));
            let m: BTreeMap<IndexKey, u8> = [(ka.clone(), 1)].into_iter().collect();
            prop_assert_eq!(get(&m, &a2), Some(&1));
            prop_assert_eq!(get(&m, &b2).is_some(), a2 == b2);
            let h = |x: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                use std::hash::Hasher;
                let mut s = std::collections::hash_map::DefaultHasher::new();
                x(&mut s);
                s.finish()
            };
            use std::hash::Hash;
            prop_assert_eq!(h(&|s| ka.hash(s)), h(&|s| KeyRef::new(&a2).hash(s)));
        }
    }
}
