//! [`AlignedBuf`]: a heap buffer whose start address and capacity are multiples of a chosen
//! alignment, for `O_DIRECT` I/O (the kernel refuses a direct read or write into memory that is
//! not aligned to the device's DMA alignment, `statx`'s `stx_dio_mem_align`).
//!
//! Invariants (the only unsafe of this module relies on them):
//! - `ptr` comes from `alloc_zeroed(layout)` with `layout = (cap, align)`, `cap >= 1`, and is
//!   freed exactly once, in `Drop`, with the same layout;
//! - `len <= cap`, and every byte in `0..cap` is initialised (zeroed at allocation, then only
//!   written through `&mut [u8]` or by the kernel into `0..len`), so any `len <= cap` is a
//!   valid initialised slice.
//!
//! Must not touch: files or the event loop; this is memory only.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// An owned, zero-initialised buffer aligned for direct I/O. Dereferences to `[u8]` of its
/// current length; [`set_len`](Self::set_len) moves the length within the capacity.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    align: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like a Vec<u8>); nothing is shared.
unsafe impl Send for AlignedBuf {}
// SAFETY: &AlignedBuf only gives out &[u8].
unsafe impl Sync for AlignedBuf {}

/// An alignment that is not a power of two, or a size that overflows when rounded up to it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot allocate {len} bytes aligned to {align}: the alignment must be a power of two and the size must fit"
)]
pub struct AlignError {
    /// The requested length.
    pub len: usize,
    /// The requested alignment.
    pub align: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes whose address and capacity are multiples of `align`
    /// (capacity = `len` rounded up to `align`, at least `align`).
    pub fn zeroed(len: usize, align: usize) -> Result<AlignedBuf, AlignError> {
        let err = AlignError { len, align };
        if !align.is_power_of_two() {
            return Err(err);
        }
        let cap = len
            .max(1)
            .checked_next_multiple_of(align)
            .ok_or(AlignError { len, align })?;
        let layout = Layout::from_size_align(cap, align).map_err(|_| err)?;
        // SAFETY: the layout has a non-zero size (cap >= 1).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        Ok(AlignedBuf {
            ptr,
            len,
            cap,
            align,
        })
    }

    /// The alignment of the start address and of the capacity.
    pub fn align(&self) -> usize {
        self.align
    }

    /// The capacity (a multiple of [`align`](Self::align)).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length to `len`, clamped to the capacity. Bytes past the old length are
    /// whatever was last written there (zero if never written).
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.cap);
    }

    /// The buffer's start address (valid while `self` lives: the heap allocation never
    /// moves when the `AlignedBuf` does).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The start address for the kernel to write into (see [`as_ptr`](Self::as_ptr)).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for cap >= len initialised bytes (module invariants) and the
        // borrow of self keeps the allocation alive and unaliased by &mut.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout, freed only here.
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.cap, self.align),
            )
        }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .field("align", &self.align)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::AlignedBuf;

    #[test]
    fn aligned_buf_is_aligned_zeroed_and_resizable_within_capacity() {
        for align in [1, 8, 512, 4096] {
            let mut b = AlignedBuf::zeroed(1000, align).unwrap();
            assert_eq!(b.as_ptr() as usize % align, 0);
            assert_eq!(b.capacity() % align, 0);
            assert!(b.capacity() >= 1000);
            assert!(b.iter().all(|&x| x == 0));
            b[999] = 7;
            b.set_len(usize::MAX);
            assert_eq!(b.len(), b.capacity());
            assert_eq!(b[999], 7);
            b.set_len(10);
            assert_eq!(b.len(), 10);
        }
        let empty = AlignedBuf::zeroed(0, 512).unwrap();
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.capacity(), 512);
    }

    #[test]
    fn a_bad_alignment_is_an_error_not_a_panic() {
        assert!(AlignedBuf::zeroed(10, 3).is_err());
        assert!(AlignedBuf::zeroed(usize::MAX, 4096).is_err());
    }
}
