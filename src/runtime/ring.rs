//! A lock-free, bounded, single-producer single-consumer ring with **batched publish**: the
//! mesh's transport between two threads. Owns only its slots and two indices; knows nothing of
//! what it carries.
//!
//! The producer writes items without making them visible ([`Producer::push`]) and publishes all
//! of them with one release store ([`Producer::publish`]); the consumer takes a batch and frees
//! all its slots with one release store ([`Consumer::pop_batch`]). Head and tail live on their
//! own cache lines, and each side caches the other's index, so in steady state a side touches
//! the shared line only when its cached view runs out (the rtrb/folly technique).
//!
//! ```
//! use percore::runtime::ring::ring;
//!
//! let (mut tx, mut rx) = ring::<u32>(4);
//! tx.push(1).unwrap();
//! tx.push(2).unwrap();
//! assert_eq!(rx.pop(), None);          // not published yet
//! *tx.last_unpublished_mut().unwrap() += 10; // still the producer's to change
//! assert_eq!(tx.publish(), 2);
//! assert!(tx.last_unpublished_mut().is_none());
//! let mut got = Vec::new();
//! rx.pop_batch(8, |v| got.push(v));
//! assert_eq!(got, [1, 12]);
//! ```
//!
//! Why hand-written rather than `rtrb`: rtrb publishes each push (or a fixed chunk) and has no
//! "write now, publish later" across many pushes, which the mesh needs to batch a whole
//! scheduler turn into one store per ring. benches/channels.rs compares the two side by side.
//!
//! ## Invariants
//! - `tail` (shared) is written only by the producer, `head` (shared) only by the consumer.
//! - Slots in `[head, tail)` hold initialised items owned by the ring; all other slots are
//!   uninitialised. The producer initialises slots in `[tail, tail + unpublished)` before the
//!   release store of `tail` that covers them; the consumer reads a slot only after an acquire
//!   load of `tail` shows it, and frees it with a release store of `head` after moving it out.
//! - Indices grow without bound (wrapping `usize`); `index & mask` is the slot.
//! - The producer publishes on drop, so no item is ever stranded unpublished; the last side to
//!   drop drops whatever is in `[head, tail)`.

#[cfg(not(loom))]
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(loom)]
use loom::sync::Arc;
#[cfg(loom)]
use loom::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::utils::CachePadded;
use std::mem::MaybeUninit;

#[cfg(not(loom))]
struct Cell<T>(std::cell::UnsafeCell<MaybeUninit<T>>);
#[cfg(loom)]
struct Cell<T>(loom::cell::UnsafeCell<MaybeUninit<T>>);

impl<T> Cell<T> {
    fn new() -> Self {
        #[cfg(not(loom))]
        return Cell(std::cell::UnsafeCell::new(MaybeUninit::uninit()));
        #[cfg(loom)]
        return Cell(loom::cell::UnsafeCell::new(MaybeUninit::uninit()));
    }
    /// # Safety
    /// The caller has exclusive access to this slot and it is uninitialised.
    unsafe fn write(&self, v: T) {
        #[cfg(not(loom))]
        // SAFETY: exclusive access per the caller's contract.
        unsafe {
            (*self.0.get()).write(v);
        }
        #[cfg(loom)]
        self.0.with_mut(|p| {
            // SAFETY: exclusive access per the caller's contract.
            unsafe { (*p).write(v) };
        });
    }
    /// # Safety
    /// The caller has exclusive access to this slot and it is initialised; it becomes
    /// uninitialised.
    unsafe fn read(&self) -> T {
        #[cfg(not(loom))]
        // SAFETY: initialised and exclusively ours per the caller's contract.
        return unsafe { (*self.0.get()).assume_init_read() };
        #[cfg(loom)]
        // SAFETY: initialised and exclusively ours per the caller's contract.
        return self.0.with(|p| unsafe { (*p).assume_init_read() });
    }
}

struct Shared<T> {
    /// Next slot the consumer reads. Written by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// One past the last published slot. Written by the producer only.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Cell<T>]>,
    mask: usize,
}

// SAFETY: the ring moves `T`s between exactly two threads; slot access is partitioned by the
// head/tail protocol (module invariants), so sharing `Shared` is sound when `T: Send`.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: as above; `Shared` owns `T`s that may be dropped on either thread.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both sides are gone (this is the last Arc): drop what was published and not taken.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let mut i = head;
        while i != tail {
            // SAFETY: slots in [head, tail) are initialised (invariant) and no other side
            // exists any more.
            drop(unsafe { self.slots[i & self.mask].read() });
            i = i.wrapping_add(1);
        }
    }
}

/// The ring is full: the item comes back.
pub struct Full<T>(pub T);

impl<T> std::fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> std::fmt::Display for Full<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the ring is full; publish and let the consumer catch up, or retry later")
    }
}

impl<T> std::error::Error for Full<T> {}

/// Creates a ring with at least `capacity` slots (rounded up to a power of two, at least 2).
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        slots: (0..cap).map(|_| Cell::new()).collect(),
        mask: cap - 1,
    });
    let slots = shared.slots.as_ptr();
    (
        Producer {
            shared: shared.clone(),
            slots,
            mask: cap - 1,
            tail: 0,
            published: 0,
            cached_head: 0,
        },
        Consumer {
            shared,
            slots,
            mask: cap - 1,
            head: 0,
            cached_tail: 0,
        },
    )
}

/// The writing end. `Send`, not `Sync`: one thread pushes.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// `shared.slots` base and mask, cached here so the hot path needs no pointer chase and no
    /// bounds check (indices are masked).
    slots: *const Cell<T>,
    mask: usize,
    /// Next slot to write (includes unpublished items).
    tail: usize,
    /// What the consumer can see.
    published: usize,
    cached_head: usize,
}

impl<T> Producer<T> {
    /// Writes `v` into the next free slot **without** making it visible; see
    /// [`Producer::publish`]. `Err(Full(v))` when every slot is taken (unpublished ones count).
    #[inline]
    pub fn push(&mut self, v: T) -> Result<(), Full<T>> {
        let cap = self.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) == cap {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) == cap {
                return Err(Full(v));
            }
        }
        // SAFETY: `tail & mask < cap` indexes the slot array `slots` points to (kept alive by
        // `shared`); tail - head < cap, so the slot is outside [head, tail): uninitialised and
        // not read by the consumer until a release store of `tail` covers it.
        unsafe { (*self.slots.add(self.tail & self.mask)).write(v) };
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Makes every pushed item visible with one release store. Returns how many it published.
    #[inline]
    pub fn publish(&mut self) -> usize {
        let n = self.tail.wrapping_sub(self.published);
        if n > 0 {
            self.shared.tail.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
        n
    }

    /// [`Producer::push`] then [`Producer::publish`].
    #[inline]
    pub fn push_now(&mut self, v: T) -> Result<(), Full<T>> {
        self.push(v)?;
        self.publish();
        Ok(())
    }

    /// The most recently pushed item, while it is still unpublished (the consumer cannot see
    /// it yet, so the producer may still change it — the mesh appends messages to it).
    #[inline]
    pub fn last_unpublished_mut(&mut self) -> Option<&mut T> {
        if self.tail == self.published {
            return None;
        }
        let i = self.tail.wrapping_sub(1) & self.mask;
        #[cfg(not(loom))]
        // SAFETY: slot `tail - 1` lies in [published, tail): initialised by `push` and not yet
        // covered by a release store of `tail`, so the consumer never reads it; `&mut self`
        // makes the returned borrow exclusive until the next push/publish.
        return Some(unsafe { (*(*self.slots.add(i)).0.get()).assume_init_mut() });
        #[cfg(loom)]
        // SAFETY: as above.
        return Some(unsafe { &mut *(*self.slots.add(i)).0.with_mut(|p| p).cast::<T>() });
    }

    /// Items pushed but not yet published.
    pub fn unpublished(&self) -> usize {
        self.tail.wrapping_sub(self.published)
    }

    /// Free slots (refreshes the view of the consumer's progress).
    pub fn free_slots(&mut self) -> usize {
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        self.shared.mask + 1 - self.tail.wrapping_sub(self.cached_head)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// True when the consumer has been dropped.
    pub fn is_abandoned(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Never strand items: what was pushed becomes visible (and is dropped by `Shared` if the
        // consumer is gone too).
        self.publish();
    }
}

/// The reading end. `Send`, not `Sync`: one thread pops.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    slots: *const Cell<T>,
    mask: usize,
    head: usize,
    cached_tail: usize,
}

impl<T> Consumer<T> {
    /// Takes the oldest published item.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.cached_tail {
                return None;
            }
        }
        // SAFETY: `head & mask < cap` indexes the live slot array; head < tail (acquire-loaded),
        // so the slot is initialised and the producer will not touch it until our release store
        // of `head` moves past it.
        let v = unsafe { (*self.slots.add(self.head & self.mask)).read() };
        self.head = self.head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Takes up to `max` published items, calling `f` on each, and frees their slots with one
    /// release store at the end. If `f` panics, the items already taken stay taken.
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        // One acquire load per batch: take everything published so far.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        let n = self.cached_tail.wrapping_sub(self.head).min(max);
        if n == 0 {
            return 0;
        }
        struct Release<'a, T> {
            c: &'a mut Consumer<T>,
        }
        impl<T> Drop for Release<'_, T> {
            fn drop(&mut self) {
                self.c.shared.head.store(self.c.head, Ordering::Release);
            }
        }
        let g = Release { c: self };
        for _ in 0..n {
            // SAFETY: the index is masked into the live slot array; every slot in
            // [head, cached_tail) is initialised and ours (see `pop`); `head` advances before
            // `f` runs, so a panic in `f` never re-reads the slot.
            let v = unsafe { (*g.c.slots.add(g.c.head & g.c.mask)).read() };
            g.c.head = g.c.head.wrapping_add(1);
            f(v);
        }
        drop(g);
        n
    }

    /// Published items waiting.
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// True when no published item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// True when the producer has been dropped (what it published can still be popped).
    pub fn is_abandoned(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

// SAFETY: a Producer is the only writer of its ring; moving it to another thread moves that
// role. `T: Send` because items it pushed are read on the consumer's thread.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for Producer, for the only reader.
unsafe impl<T: Send> Send for Consumer<T> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdAtomic;

    #[test]
    fn capacity_rounds_up_and_full_returns_the_item() {
        let (mut p, mut c) = ring::<u32>(3);
        assert_eq!(p.capacity(), 4);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(9).unwrap_err().0, 9);
        assert_eq!(p.unpublished(), 4);
        assert!(c.is_empty());
        assert_eq!(p.publish(), 4);
        assert_eq!(c.len(), 4);
        assert_eq!(c.pop(), Some(0));
        p.push_now(4).unwrap();
        let mut got = vec![];
        assert_eq!(c.pop_batch(10, |v| got.push(v)), 4);
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn wraps_around_many_times() {
        let (mut p, mut c) = ring::<usize>(2);
        for i in 0..10_000 {
            p.push_now(i).unwrap();
            assert_eq!(c.pop(), Some(i));
        }
    }

    struct D(Arc<StdAtomic>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn every_item_is_dropped_exactly_once() {
        let n = Arc::new(StdAtomic::new(0));
        {
            let (mut p, mut c) = ring::<D>(8);
            for _ in 0..6 {
                p.push(D(n.clone())).unwrap();
            }
            p.publish();
            drop(c.pop()); // 1 dropped here
            for _ in 0..2 {
                p.push(D(n.clone())).unwrap(); // unpublished at drop: published by Drop
            }
            drop(p);
            assert!(c.is_abandoned());
            assert_eq!(c.len(), 7);
        }
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 8);
    }

    #[test]
    fn a_panic_inside_pop_batch_keeps_taken_items_taken() {
        let n = Arc::new(StdAtomic::new(0));
        let (mut p, mut c) = ring::<D>(8);
        for _ in 0..4 {
            p.push(D(n.clone())).unwrap();
        }
        p.publish();
        let mut seen = 0;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.pop_batch(4, |_d| {
                seen += 1;
                if seen == 2 {
                    panic!("consumer callback panics");
                }
            })
        }));
        assert!(r.is_err());
        assert_eq!(c.len(), 2);
        drop((p, c));
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
