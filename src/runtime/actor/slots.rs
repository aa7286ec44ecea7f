//! The reservation protocol of a mailbox, on its own so that loom can check it: a count of
//! reserved slots every sender sees (`len`, bounded by `capacity`), and the senders waiting for
//! room (`room`, with `waiters` as the lock-free hint). [`Slots`] is a view over the mailbox's
//! own fields (they stay where the mailbox's cache-line layout puts them). Owns no state.
//!
//! Protocol: a sender reserves with one `fetch_add` (undone when that passes `capacity`); a
//! sender that found no room registers its waker (under the lock, then `waiters += 1`) and
//! reserves again before it sleeps; every release (`fetch_sub`) that then sees `waiters > 0`
//! wakes every registered waker. All SeqCst: either the re-check after registering sees the
//! release, or the release sees the registration, so no sender sleeps while room exists. A
//! failed reservation's transient over-count can hide room from another sender's re-check, so
//! when it finds room after taking itself back it wakes the waiters too. Credits ([`Slots::reserve_chunk`]) are several slots reserved in
//! one step and handed back with one release. Models: `loom_tests` below.

use std::task::Waker;

use crate::runtime::sync::{AtomicU32, AtomicUsize, Mutex};
use std::sync::atomic::Ordering;

/// A view of a mailbox's reservation fields.
pub(super) struct Slots<'a> {
    pub(super) len: &'a AtomicUsize,
    pub(super) capacity: usize,
    pub(super) waiters: &'a AtomicU32,
    pub(super) room: &'a Mutex<Vec<Waker>>,
}

/// No slot was free.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

impl Slots<'_> {
    fn room_lock(&self) -> impl std::ops::DerefMut<Target = Vec<Waker>> + '_ {
        // Critical sections only push/take wakers: a poisoned lock is still consistent.
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves one slot.
    #[inline]
    pub(super) fn reserve(&self) -> Result<(), Full> {
        let prev = self.len.fetch_add(1, Ordering::SeqCst);
        if prev >= self.capacity {
            self.undo(1);
            return Err(Full);
        }
        Ok(())
    }

    /// Takes back a failed reservation of `n`. Its transient over-count may have hidden room
    /// from another sender's check: when there is room now, the waiters are woken to look
    /// again. When there is none, nobody was denied room that exists (the last undo of a chain
    /// of failed reservations sees the true count), and the next release wakes them. Waking
    /// unconditionally made a sender waiting on a full mailbox wake itself with its own
    /// re-check and poll in a loop (found by the loom model below).
    fn undo(&self, n: usize) {
        let now = self.len.fetch_sub(n, Ordering::SeqCst) - n;
        if now < self.capacity && self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// Reserves `n` slots in one step, or none (`Full`) when they do not all fit.
    pub(super) fn reserve_chunk(&self, n: usize) -> Result<(), Full> {
        let prev = self.len.fetch_add(n, Ordering::SeqCst);
        if prev + n > self.capacity {
            self.undo(n);
            return Err(Full);
        }
        Ok(())
    }

    /// Hands back `n` reserved slots and wakes the senders waiting for room, if any.
    #[inline]
    pub(super) fn release(&self, n: usize) {
        self.len.fetch_sub(n, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// Slots reserved now (messages queued or in flight, and credits held), for a waiter's
    /// check before and after it registers. A read-modify-write, not a load: it reads the
    /// latest count and synchronises with a concurrent release's `fetch_sub`, so the re-check
    /// after registering and the release's look at `waiters` cannot both miss each other under
    /// acquire/release reasoning alone (a plain SeqCst load is enough on real hardware; loom,
    /// which checks SeqCst loads as acquire, found the plain load's lost wake-up). Only
    /// waiters call it, so the locked instruction is off the message path.
    pub(super) fn reserved(&self) -> usize {
        self.len.fetch_add(0, Ordering::SeqCst)
    }

    /// Wakes every registered waiter. The list keeps its capacity (taking it would make the
    /// next registration allocate); wakers run outside the lock, 8 at a time.
    pub(super) fn wake_all(&self) {
        loop {
            let mut batch: [Option<Waker>; 8] = Default::default();
            let mut n = 0;
            {
                let mut g = self.room_lock();
                while n < batch.len() {
                    let Some(w) = g.pop() else { break };
                    batch[n] = Some(w);
                    n += 1;
                }
                if g.is_empty() {
                    self.waiters.store(0, Ordering::SeqCst);
                }
            }
            for w in batch.iter_mut().take(n) {
                if let Some(w) = w.take() {
                    w.wake();
                }
            }
            if n < batch.len() {
                return;
            }
        }
    }

    /// Registers `w` to be woken at the next release. The caller checks again afterwards
    /// (reserves, or reads the count) before it sleeps.
    pub(super) fn register(&self, w: &Waker) {
        let mut g = self.room_lock();
        if !g.iter().any(|x| x.will_wake(w)) {
            g.push(w.clone());
        }
        drop(g);
        self.waiters.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Every interleaving of reservations, registrations and releases (loom): a sender waiting
    //! for room, or an owner waiting for the count to reach zero, is always woken.
    //! Run: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`.

    use std::future::poll_fn;
    use std::task::Poll;

    use loom::sync::Arc;

    use super::*;

    struct Fields {
        len: AtomicUsize,
        capacity: usize,
        waiters: AtomicU32,
        room: Mutex<Vec<Waker>>,
    }

    impl Fields {
        fn new(capacity: usize) -> Arc<Fields> {
            Arc::new(Fields {
                len: AtomicUsize::new(0),
                capacity,
                waiters: AtomicU32::new(0),
                room: Mutex::new(Vec::new()),
            })
        }
        fn slots(&self) -> Slots<'_> {
            Slots {
                len: &self.len,
                capacity: self.capacity,
                waiters: &self.waiters,
                room: &self.room,
            }
        }
    }

    /// The sender's side of `Addr::tell` on a full mailbox: reserve, else register and
    /// reserve again, else sleep.
    fn send(f: &Fields) {
        loom::future::block_on(poll_fn(|cx| {
            let s = f.slots();
            if s.reserve().is_ok() {
                return Poll::Ready(());
            }
            s.register(cx.waker());
            match s.reserve() {
                Ok(()) => Poll::Ready(()),
                Err(Full) => Poll::Pending,
            }
        }));
    }

    #[test]
    fn loom_a_sender_waiting_for_room_is_woken_by_the_release() {
        loom::model(|| {
            let f = Fields::new(1);
            f.slots().reserve().unwrap(); // the mailbox is full
            let owner = {
                let f = f.clone();
                loom::thread::spawn(move || f.slots().release(1))
            };
            send(&f); // would deadlock (loom reports it) if the wake-up were lost
            owner.join().unwrap();
            assert_eq!(f.slots().reserved(), 1);
        });
    }

    #[test]
    fn loom_two_senders_and_credits_handed_back() {
        loom::model(|| {
            let f = Fields::new(2);
            // A streaming sender holds both slots as credits, spends one, hands one back.
            f.slots().reserve_chunk(2).unwrap();
            let streamer = {
                let f = f.clone();
                loom::thread::spawn(move || {
                    f.slots().release(1); // the unused credit, at the end of its turn
                })
            };
            let other = {
                let f = f.clone();
                loom::thread::spawn(move || send(&f))
            };
            streamer.join().unwrap();
            other.join().unwrap();
            // The spent credit's message and the other sender's: never more than capacity.
            assert_eq!(f.slots().reserved(), 2);
        });
    }

    #[test]
    fn loom_an_owner_waiting_for_zero_sees_the_last_release() {
        loom::model(|| {
            let f = Fields::new(4);
            f.slots().reserve_chunk(2).unwrap(); // credits held by a sender on another core
            let sender = {
                let f = f.clone();
                loom::thread::spawn(move || f.slots().release(2))
            };
            // `drain_in_flight`: wait until nothing is reserved.
            loom::future::block_on(poll_fn(|cx| {
                let s = f.slots();
                if s.reserved() == 0 {
                    return Poll::Ready(());
                }
                s.register(cx.waker());
                if s.reserved() == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }));
            sender.join().unwrap();
        });
    }

    /// Four threads: explored with at most three preemptions per execution (loom's bounded
    /// search, to keep the run short).
    #[test]
    fn loom_a_failed_reservation_never_hides_room() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let f = Fields::new(1);
            f.slots().reserve().unwrap();
            // One sender fails transiently while the owner releases; another waits.
            let racer = {
                let f = f.clone();
                loom::thread::spawn(move || {
                    if f.slots().reserve().is_ok() {
                        f.slots().release(1);
                    }
                })
            };
            let owner = {
                let f = f.clone();
                loom::thread::spawn(move || f.slots().release(1))
            };
            send(&f);
            racer.join().unwrap();
            owner.join().unwrap();
            assert_eq!(f.slots().reserved(), 1);
        });
    }
}
