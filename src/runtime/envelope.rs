//! [`Envelope`]: a `FnOnce() + Send` closure stored **inline** in one cache line when it is
//! small, boxed otherwise. It is what travels on the mesh's rings and injectors. Owns only the
//! type erasure of one closure; knows nothing of rings, actors or threads.
//!
//! Why: a cross-core actor message used to be a `Box<dyn FnOnce()>`, allocated on the sending
//! core and freed on the receiving one. perf showed `malloc`+`free` at 38 % of a cross-core
//! `tell` (glibc frees a foreign chunk into its home arena under that arena's lock). A typical
//! message closure (mailbox pointer + a message of up to 16 bytes) fits in [`INLINE`] bytes, so
//! it is written into the ring slot itself and no allocation happens at all.
//!
//! Why 32 bytes and not a whole cache line: a cross-core message costs about one cache-line
//! transfer per line it fills, and on this machine that transfer, not the instructions, bounds
//! throughput. Measured with the actors bench (2 vCPU, same run vs the tokio-mpsc actor): 64-byte
//! envelopes 9.0 M tells/s, 32-byte envelopes 14.1 M tells/s. Larger closures are boxed.
//!
//! ```
//! # use percore::runtime::envelope::Envelope;
//! let v = vec![1, 2, 3];
//! let e = Envelope::new(move || assert_eq!(v.len(), 3));
//! e.run();
//! // A closure holding a `Vec` (24 bytes) is stored inline; a 100-byte array is boxed.
//! fn kind<F: FnOnce()>(_: &F) -> bool { Envelope::stores_inline::<F>() }
//! let small = || ();
//! let big = { let a = [0u8; 100]; move || drop(a) };
//! assert!(kind(&small) && !kind(&big));
//! ```
//!
//! ## Invariants
//! - `data` holds exactly one live value of the closure (or `Payload`) type `F` that `call`
//!   was instantiated for: `F` itself when it fits ([`INLINE`] bytes, alignment ≤ 8), else a
//!   `Box<F>`. `Envelope::payload_mut` and `Envelope::into_payload` rely on the same rule,
//!   and their callers promise the type.
//! - `call(data, true)` moves that value out and runs it; `call(data, false)` moves it out and
//!   drops it. Either is done exactly once: by [`Envelope::run`] (which forgets `self`) or by
//!   `Drop`.
//! - The value is never referenced by address while it sits in `data`, so moving the envelope
//!   (a plain byte copy, as Rust moves every value) is sound.

use std::mem::{ManuallyDrop, MaybeUninit, align_of, size_of};

/// Bytes of closure stored inline: 32 bytes (half a cache line) minus the function pointer.
pub const INLINE: usize = 24;

type Storage = MaybeUninit<[u64; INLINE / 8]>;

/// A type-erased `FnOnce() + Send` closure, inline when it is at most [`INLINE`] bytes.
/// Exactly 32 bytes and 32-byte aligned, so a ring slot never straddles two cache lines.
#[repr(C, align(32))]
pub struct Envelope {
    /// Runs (`true`) or drops (`false`) the value in `data`.
    call: unsafe fn(*mut Storage, bool),
    data: Storage,
}

// SAFETY: an `Envelope` is only built from an `F: Send` (see `new`), and owns that value.
unsafe impl Send for Envelope {}

const fn fits<F>() -> bool {
    size_of::<F>() <= INLINE && align_of::<F>() <= align_of::<Storage>()
}

/// A value an [`Envelope`] can carry and run by type (see [`Envelope::with_payload`]).
pub(crate) trait Payload: Send + 'static {
    /// Consumes the value on the receiving thread.
    fn run(self);
}

/// A plain closure as a payload (same size and alignment as the closure).
struct Closure<F>(F);

impl<F: FnOnce() + Send + 'static> Payload for Closure<F> {
    #[inline]
    fn run(self) {
        (self.0)()
    }
}

/// # Safety
/// `data` holds a live `T` inline (invariant); it is moved out and must not be used again.
unsafe fn call_payload_inline<T: Payload>(data: *mut Storage, run: bool) {
    // SAFETY: per the contract `data` holds an initialised, aligned `T`.
    let t = unsafe { data.cast::<T>().read() };
    if run {
        t.run()
    }
}

/// # Safety
/// `data` holds a live `Box<T>` (invariant); it is moved out and must not be used again.
unsafe fn call_payload_boxed<T: Payload>(data: *mut Storage, run: bool) {
    // SAFETY: per the contract `data` holds an initialised `Box<T>`.
    let t = unsafe { data.cast::<Box<T>>().read() };
    if run {
        t.run()
    }
}

impl Envelope {
    /// Wraps `f`; no allocation when `f` is at most [`INLINE`] bytes with alignment ≤ 8.
    #[inline]
    pub fn new<F: FnOnce() + Send + 'static>(f: F) -> Envelope {
        Envelope::with_payload(Closure(f))
    }

    /// Wraps a [`Payload`]: like [`Envelope::new`], but the value stays reachable by type
    /// through [`Envelope::payload_mut`] and [`Envelope::into_payload`] while the envelope is
    /// still the sender's (the mesh appends messages to an unpublished batch this way).
    #[inline]
    pub(crate) fn with_payload<T: Payload>(t: T) -> Envelope {
        let mut data = Storage::uninit();
        if fits::<T>() {
            // SAFETY: `T` fits in `data` (checked); `data` is uninitialised and ours.
            unsafe { data.as_mut_ptr().cast::<T>().write(t) };
            Envelope {
                call: call_payload_inline::<T>,
                data,
            }
        } else {
            // SAFETY: a `Box<T>` is 8 bytes with alignment 8, which `data` provides.
            unsafe { data.as_mut_ptr().cast::<Box<T>>().write(Box::new(t)) };
            Envelope {
                call: call_payload_boxed::<T>,
                data,
            }
        }
    }

    /// The payload, by type.
    ///
    /// # Safety
    /// `self` was built by [`Envelope::with_payload::<T>`] (with this very `T`).
    #[inline]
    pub(crate) unsafe fn payload_mut<T: Payload>(&mut self) -> &mut T {
        if fits::<T>() {
            // SAFETY: built by `with_payload::<T>` (caller), which stored a `T` inline.
            unsafe { &mut *self.data.as_mut_ptr().cast::<T>() }
        } else {
            // SAFETY: built by `with_payload::<T>` (caller), which stored a `Box<T>`.
            unsafe { &mut *self.data.as_mut_ptr().cast::<Box<T>>() }
        }
    }

    /// Takes the payload out without running it.
    ///
    /// # Safety
    /// `self` was built by [`Envelope::with_payload::<T>`] (with this very `T`).
    #[inline]
    pub(crate) unsafe fn into_payload<T: Payload>(self) -> T {
        let mut me = ManuallyDrop::new(self);
        if fits::<T>() {
            // SAFETY: a `T` is stored inline (caller); `me` is never dropped, so it moves out once.
            unsafe { me.data.as_mut_ptr().cast::<T>().read() }
        } else {
            // SAFETY: a `Box<T>` is stored (caller); moved out once, as above.
            *unsafe { me.data.as_mut_ptr().cast::<Box<T>>().read() }
        }
    }

    /// True when a closure of type `F` is stored inline (no heap allocation).
    pub const fn stores_inline<F>() -> bool {
        fits::<F>()
    }

    /// Runs the closure (consumes the envelope). A panic in it unwinds to the caller after the
    /// closure's captures are dropped.
    #[inline]
    pub fn run(self) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `data` holds the live value `call` expects (invariant); `me` is never
        // dropped, so the value is moved out exactly once, here.
        unsafe { (me.call)(&mut me.data, true) }
    }
}

impl Drop for Envelope {
    fn drop(&mut self) {
        // SAFETY: an envelope not consumed by `run` still holds its value (invariant); drop
        // runs once.
        unsafe { (self.call)(&mut self.data, false) }
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts drops of its captures, to prove each value is dropped exactly once.
    struct D(Arc<AtomicUsize>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn inline_and_boxed_run_and_drop_exactly_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (d, r) = (D(drops.clone()), ran.clone());
        let small = move || {
            let _d = &d;
            r.fetch_add(1, Ordering::SeqCst);
        };
        fn inline<F: FnOnce()>(_: &F) -> bool {
            Envelope::stores_inline::<F>()
        }
        assert!(inline(&small));
        Envelope::new(small).run();
        let (d, r) = (D(drops.clone()), ran.clone());
        let pad = [7u64; 16];
        let big = move || {
            let _d = &d;
            assert_eq!(pad.iter().sum::<u64>(), 112);
            r.fetch_add(1, Ordering::SeqCst);
        };
        assert!(!inline(&big));
        Envelope::new(big).run();
        assert_eq!(
            (ran.load(Ordering::SeqCst), drops.load(Ordering::SeqCst)),
            (2, 2)
        );
        // Dropped without running: captures dropped, closure not run.
        drop(Envelope::new({
            let d = D(drops.clone());
            let r = ran.clone();
            move || {
                let _d = &d;
                r.fetch_add(1, Ordering::SeqCst);
            }
        }));
        drop(Envelope::new({
            let d = D(drops.clone());
            let pad = [0u8; 200];
            move || {
                let _d = (&d, pad);
            }
        }));
        assert_eq!(
            (ran.load(Ordering::SeqCst), drops.load(Ordering::SeqCst)),
            (2, 4)
        );
    }

    #[test]
    fn panic_in_closure_drops_captures_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = D(drops.clone());
        let e = Envelope::new(move || {
            let _d = d;
            panic!("boom");
        });
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.run())).is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn is_half_a_cache_line() {
        assert_eq!(size_of::<Envelope>(), 32);
        assert_eq!(align_of::<Envelope>(), 32);
    }
}
