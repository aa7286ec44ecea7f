//! [`BufRing`]: the provided-buffer ring of the io_uring backend, one of the few unsafe types
//! of the crate. A page-aligned ring of `BUF_COUNT` entries (the kernel reads entries below
//! the published tail) plus `BUF_COUNT` buffers of `BUF_SIZE` bytes (the kernel writes a
//! buffer it picked and reports its id in a completion).
//!
//! Invariants: `entries` and `mem` are the blocks allocated in [`BufRing::alloc`] with
//! `entries_layout` / `mem_layout`, alive until `Drop`; the ring registered over `entries` is
//! dropped (unregistering it) before this value; an entry at or above the published tail is
//! written only here; a buffer is read only between its completion and its `recycle`.

use io_uring::types;

use super::{BUF_COUNT, BUF_SIZE};

/// Provided buffers: one page-aligned ring of entries plus the buffer memory. Owned by the
/// worker (not the backend) so handlers can borrow a buffer while the backend is borrowed
/// mutably; unregistered when the ring (owned by the backend) is dropped first.
pub(crate) struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    mem: *mut u8,
    mem_layout: std::alloc::Layout,
    tail: u16,
    published: u16,
}

impl BufRing {
    /// The bytes of buffer `bid` (`len` of them).
    pub(crate) fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(BUF_SIZE);
        let bid = (bid % BUF_COUNT) as usize;
        // SAFETY: `mem` holds BUF_COUNT buffers of BUF_SIZE bytes; bid and len are clamped into
        // range; the kernel wrote this buffer and will not touch it until it is recycled.
        unsafe { std::slice::from_raw_parts(self.mem.add(bid * BUF_SIZE), len) }
    }

    /// Gives buffer `bid` back to the kernel (visible after [`BufRing::publish`]).
    pub(crate) fn recycle(&mut self, bid: u16) {
        let bid = bid % BUF_COUNT;
        let idx = (self.tail & (BUF_COUNT - 1)) as usize;
        // SAFETY: idx < BUF_COUNT entries; the kernel only reads entries below the published
        // tail, and this one is above it until `publish`.
        unsafe {
            let e = &mut *self.entries.add(idx);
            e.set_addr(self.mem.add(bid as usize * BUF_SIZE) as u64);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes recycled buffers with one Release store of the tail.
    pub(crate) fn publish(&mut self) {
        if self.tail == self.published {
            return;
        }
        // SAFETY: the tail field lives in the first entry of the ring we allocated; the kernel
        // reads it with acquire semantics.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
        self.published = self.tail;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both blocks were allocated with these layouts in `UringBackend::new`, and the
        // ring that used them is gone (the backend is dropped before the worker's BufRing).
        unsafe {
            std::alloc::dealloc(self.entries as *mut u8, self.entries_layout);
            std::alloc::dealloc(self.mem, self.mem_layout);
        }
    }
}

impl BufRing {
    /// Allocates the entries (page-aligned, zeroed) and the buffer memory; `None` when the
    /// allocator refuses.
    pub(super) fn alloc() -> Option<BufRing> {
        let entries_layout = std::alloc::Layout::from_size_align(
            BUF_COUNT as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .ok()?;
        let mem_layout =
            std::alloc::Layout::from_size_align(BUF_COUNT as usize * BUF_SIZE, 4096).ok()?;
        // SAFETY: both layouts have non-zero size.
        let (entries, mem) = unsafe {
            (
                std::alloc::alloc_zeroed(entries_layout) as *mut types::BufRingEntry,
                std::alloc::alloc(mem_layout),
            )
        };
        if entries.is_null() || mem.is_null() {
            // SAFETY: whichever block was allocated was allocated with its layout just above.
            unsafe {
                if !entries.is_null() {
                    std::alloc::dealloc(entries as *mut u8, entries_layout);
                }
                if !mem.is_null() {
                    std::alloc::dealloc(mem, mem_layout);
                }
            }
            return None;
        }
        Some(BufRing {
            entries,
            entries_layout,
            mem,
            mem_layout,
            tail: 0,
            published: 0,
        })
    }

    /// The address of the entries block, to register with the kernel.
    pub(super) fn entries_addr(&self) -> u64 {
        self.entries as u64
    }
}
