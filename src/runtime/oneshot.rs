//! A one-value channel usable across threads and executors, used for ask replies and I/O-loop
//! answers. Owns only its shared slot; knows nothing of workers.
//!
//! A thin wrapper over the [`oneshot`](https://docs.rs/oneshot) crate (lock-free: one atomic
//! state byte next to the value and the waker, loom-tested upstream). It replaced a
//! `Mutex`-guarded slot: an ask's reply took four lock/unlock pairs on a line that crosses
//! cores; now the sender does one atomic add and the receiver one load (BENCHMARKS.md,
//! "Actors"). The wrapper keeps percore's own error type and `Result<(), T>` send so the crate
//! never shows in percore's API.

use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Sending half; dropping it without sending closes the channel.
///
/// One word: the crate's raw channel pointer, with an optional 16-bit tag in its top bits
/// (bits 48-63, unused by user-space addresses on 64-bit targets). `Reply` keeps the asker's
/// worker there, so a request message carrying a reply slot stays small.
pub struct Sender<T> {
    /// From `oneshot::Sender::<T>::into_raw`, tag in bits `TAG_SHIFT..`; owned (exactly one
    /// `Sender` per channel, turned back into a `oneshot::Sender` to send or drop).
    raw: NonNull<()>,
    _owns: PhantomData<oneshot::Sender<T>>,
}

// SAFETY: a `Sender<T>` is a `oneshot::Sender<T>` in raw form and is used only as one; it may
// cross and be shared between threads exactly when that type may.
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: as above (`&Sender` only reads the channel state, like `&oneshot::Sender`).
unsafe impl<T: Sync> Sync for Sender<T> {}

#[cfg(target_pointer_width = "64")]
const TAG_SHIFT: u32 = 48;

/// Receiving half: a future resolving to the value, or `Err(Closed)` if the sender went away.
pub struct Receiver<T> {
    inner: oneshot::AsyncReceiver<T>,
}

/// The sender was dropped without sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the sender was dropped without sending")
    }
}

impl std::error::Error for Closed {}

/// A new one-value channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    channel_tagged(0)
}

/// A new one-value channel whose sender carries `tag` (see [`Sender::tag`]). The tag is dropped
/// (reads 0) where the platform leaves no spare pointer bits.
pub fn channel_tagged<T>(tag: u16) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = oneshot::async_channel();
    let p = tx.into_raw();
    #[cfg(target_pointer_width = "64")]
    let p = if p.addr() >> TAG_SHIFT == 0 {
        p.map_addr(|a| a | (tag as usize) << TAG_SHIFT)
    } else {
        p
    };
    #[cfg(not(target_pointer_width = "64"))]
    let _ = tag;
    let raw = NonNull::new(p).expect("a channel pointer from a Box is never null");
    (
        Sender {
            raw,
            _owns: PhantomData,
        },
        Receiver { inner: rx },
    )
}

impl<T> Sender<T> {
    /// The tag given to [`channel_tagged`] (0 for [`channel`]).
    pub fn tag(&self) -> u16 {
        #[cfg(target_pointer_width = "64")]
        {
            (self.raw.as_ptr().addr() >> TAG_SHIFT) as u16
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            0
        }
    }

    /// The channel pointer without the tag, as `into_raw` returned it.
    fn untagged(&self) -> *mut () {
        #[cfg(target_pointer_width = "64")]
        {
            self.raw
                .as_ptr()
                .map_addr(|a| a & ((1usize << TAG_SHIFT) - 1))
        }
        #[cfg(not(target_pointer_width = "64"))]
        {
            self.raw.as_ptr()
        }
    }

    fn into_inner(self) -> oneshot::Sender<T> {
        let raw = self.untagged();
        std::mem::forget(self);
        // SAFETY: `raw` came from `oneshot::Sender::<T>::into_raw` (tag removed), and this was
        // its only `Sender`, consumed here.
        unsafe { oneshot::Sender::from_raw(raw) }
    }

    /// Sends the value; gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        self.into_inner().send(value).map_err(|e| e.into_inner())
    }

    /// True when the receiver has been dropped.
    pub fn is_closed(&self) -> bool {
        // SAFETY: as in `into_inner`; `ManuallyDrop` keeps this borrowed copy from closing the
        // channel, and `self` stays its owner.
        let tx = ManuallyDrop::new(unsafe { oneshot::Sender::<T>::from_raw(self.untagged()) });
        tx.is_closed()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // SAFETY: as in `into_inner`: `self` is the channel's only `Sender` and is going away.
        drop(unsafe { oneshot::Sender::<T>::from_raw(self.untagged()) });
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, Closed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|r| r.map_err(|_| Closed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn value_crosses_threads() {
        let (tx, rx) = channel();
        let t = std::thread::spawn(move || tx.send(7u32).is_ok());
        assert!(t.join().unwrap());
        assert_eq!(futures_lite_block_on(rx), Ok(7));
    }

    #[test]
    fn dropped_sender_closes() {
        let (tx, rx) = channel::<u8>();
        drop(tx);
        assert_eq!(futures_lite_block_on(rx), Err(Closed));
    }

    #[test]
    fn receiver_polled_with_a_new_waker_still_gets_the_value() {
        let (tx, mut rx) = channel::<u32>();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        assert!(!tx.is_closed());
        tx.send(9).unwrap();
        assert_eq!(futures_lite_block_on(rx), Ok(9));
    }

    #[test]
    fn tags_ride_along_and_leave_the_channel_intact() {
        for tag in [0u16, 1, 7, u16::MAX] {
            let (tx, rx) = channel_tagged::<String>(tag);
            #[cfg(target_pointer_width = "64")]
            assert_eq!(tx.tag(), tag);
            assert!(!tx.is_closed());
            tx.send(format!("v{tag}")).unwrap();
            assert_eq!(futures_lite_block_on(rx), Ok(format!("v{tag}")));
        }
        let (tx, rx) = channel_tagged::<u8>(9);
        drop(tx);
        assert_eq!(futures_lite_block_on(rx), Err(Closed));
        assert_eq!(std::mem::size_of::<Sender<u64>>(), 8);
    }

    #[test]
    fn dropped_receiver_returns_value() {
        let (tx, rx) = channel::<u8>();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(3), Err(3));
    }

    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::yield_now();
        }
    }
}
