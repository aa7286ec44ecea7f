//! Per-thread pools of the 1 KiB buffers that carry batched messages between cores.
//!
//! Owns the buffers' memory and nothing else: it knows nothing of messages, mailboxes or the
//! mesh (the actor layer decides what goes in a buffer and sends empty ones home).
//!
//! Why: a cross-core batch is filled on the sending core and emptied on the receiving one.
//! Allocated with `malloc` on one thread and freed on another, every buffer went back to the
//! sender's arena under its lock while the sender's next `malloc` took the same lock: perf
//! showed ~10 % of a streaming `tell` in futex waits and wakes on glibc's arena lock. Buffers
//! now come from the sending thread's own pool and are sent back to it once emptied, so
//! allocation is a `Vec::pop` on the hot path and memory never changes hands through the
//! allocator.

use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;

/// Bytes in a buffer.
pub(crate) const BUF_BYTES: usize = 1024;
/// Alignment of a buffer (a cache line, so a buffer's lines are its own).
pub(crate) const BUF_ALIGN: usize = 64;
/// Buffers a thread keeps for reuse; more are freed (64 KiB per thread at most).
const KEEP: usize = 64;

fn layout() -> Layout {
    // BUF_BYTES is a multiple of BUF_ALIGN, a power of two: always a valid layout.
    Layout::from_size_align(BUF_BYTES, BUF_ALIGN).expect("1024 bytes aligned to 64 is valid")
}

/// An owned buffer of [`BUF_BYTES`] bytes aligned to [`BUF_ALIGN`]; its contents are the
/// holder's business (never dropped by it). Dropping a `Buf` frees the memory.
pub(crate) struct Buf(NonNull<u8>);

// SAFETY: a `Buf` is exclusive ownership of plain memory; it can be moved to any thread and
// freed or reused there (the global allocator is thread-safe).
unsafe impl Send for Buf {}

impl Buf {
    /// A buffer from this thread's pool, or a fresh one.
    pub(crate) fn take() -> Buf {
        if let Ok(Some(b)) = POOL.try_with(|p| p.borrow_mut().0.pop()) {
            return b;
        }
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout()) };
        match NonNull::new(p) {
            Some(p) => Buf(p),
            None => std::alloc::handle_alloc_error(layout()),
        }
    }

    /// The start of the buffer.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// Gives up ownership without freeing (see [`Buf::from_raw`]).
    pub(crate) fn into_raw(self) -> NonNull<u8> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// Takes back a buffer given up with [`Buf::into_raw`].
    ///
    /// # Safety
    /// `p` came from `into_raw` and is owned by nobody else.
    pub(crate) unsafe fn from_raw(p: NonNull<u8>) -> Buf {
        Buf(p)
    }

    /// Returns the buffer to this thread's pool (frees it when the pool is full or the thread
    /// is exiting).
    pub(crate) fn recycle(self) {
        let mut slot = Some(self);
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.0.len() < KEEP {
                p.0.extend(slot.take());
            }
        });
        drop(slot);
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: `self.0` was allocated by `Buf::take` with `layout()` and is owned by `self`.
        unsafe { std::alloc::dealloc(self.0.as_ptr(), layout()) };
    }
}

/// A thread's spare buffers; freed when the thread exits.
struct Pool(Vec<Buf>);

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool(Vec::new())) };
}

/// Buffers in this thread's pool.
#[cfg(test)]
pub(crate) fn pooled() -> usize {
    POOL.with(|p| p.borrow().0.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_reused_on_their_thread() {
        let a = Buf::take();
        assert_eq!(a.as_ptr() as usize % BUF_ALIGN, 0);
        let addr = a.as_ptr();
        let before = pooled();
        a.recycle();
        assert_eq!(pooled(), before + 1);
        let b = Buf::take();
        assert_eq!(b.as_ptr(), addr, "a recycled buffer is handed out again");
        drop(b);
    }

    #[test]
    fn a_buffer_sent_home_from_another_thread_lands_in_the_home_pool() {
        let a = Buf::take();
        // Another thread holds it as raw parts (as a batch does), fills it, and gives it back.
        let back = std::thread::spawn(move || {
            let raw = a.into_raw();
            // SAFETY: `raw` came from `into_raw` just above and nobody else owns it.
            let b = unsafe { Buf::from_raw(raw) };
            // SAFETY: the buffer is BUF_BYTES long.
            unsafe { b.as_ptr().write_bytes(0xab, BUF_BYTES) };
            b
        })
        .join()
        .unwrap();
        let before = pooled();
        back.recycle();
        assert_eq!(pooled(), before + 1);
    }

    #[test]
    fn the_pool_is_bounded() {
        let bufs: Vec<Buf> = (0..KEEP + 10).map(|_| Buf::take()).collect();
        for b in bufs {
            b.recycle();
        }
        assert_eq!(pooled(), KEEP);
    }
}
