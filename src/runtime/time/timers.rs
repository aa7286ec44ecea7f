//! The timer list of one executor: deadlines with the wakers to call when they pass.
//!
//! Owns its entries and nothing else: it never reads the clock (callers pass `now`), never wakes
//! anything itself (expired wakers are handed back), and knows nothing of tasks or threads.
//!
//! Shape: a slab of live timers plus a min-heap of `(deadline, generation, slot)`. Inserting is
//! `O(log n)` with no allocation once the vectors have grown; cancelling is `O(1)` (the slab
//! entry goes, its heap entry goes stale and is skipped when it reaches the top). Stale heap
//! entries are swept out when they outnumber live timers, so the heap stays within a small
//! multiple of the live count. Most timers in an actor system are cancelled long before they
//! fire (every `ask` carries a timeout), which is the case this shape makes cheap: the
//! `BTreeMap` it replaced allocated and freed a node whenever the list went from empty to one
//! timer and back, once per ask.
//!
//! New timers wait in a short `fresh` list and enter the heap only when the executor next asks
//! for the earliest deadline or for expired timers (once per scheduler turn): a timer cancelled
//! within the turn that created it (an `ask` answered on the same core) never touches the heap.
//!
//! Timers with the same deadline fire in insertion order (the generation breaks ties).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

/// When a timer fires: at an instant, or a duration after the moment it is settled (see
/// [`Timers::settle`]; such a timer needs no clock read to be created, and fires at least that
/// long after its creation).
#[derive(Debug, Clone, Copy)]
enum When {
    At(Instant),
    After(Duration),
}

/// Names one inserted timer; stays unique for the life of the list (generations never repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    generation: u64,
}

struct Live {
    generation: u64,
    waker: Waker,
    /// A relative timer still in `fresh` (counted in `fresh_relative`).
    relative_fresh: bool,
}

/// The timer list. See the module documentation.
#[derive(Default)]
pub(crate) struct Timers {
    live: Slab<Live>,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Inserted since the heap was last brought up to date; moved there by `settle`.
    fresh: Vec<(When, u64, usize)>,
    /// How many of `fresh` are relative (`When::After`).
    fresh_relative: usize,
    next_generation: u64,
}

/// Fresh timers kept out of the heap at most.
const FRESH_MAX: usize = 1024;

/// Below this many heap entries stale ones are never swept (sweeping a tiny heap costs more
/// than skipping its stale tops).
const SWEEP_FLOOR: usize = 64;

impl Timers {
    /// Adds a timer that hands back `waker` once `deadline` has passed.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> TimerKey {
        self.add(When::At(deadline), waker)
    }

    /// Adds a timer that hands back `waker` once `dur` has passed, counted from when it is
    /// settled (at the latest the next scheduler turn), so it never fires early and its
    /// creation reads no clock.
    pub(crate) fn insert_after(&mut self, dur: Duration, waker: Waker) -> TimerKey {
        self.add(When::After(dur), waker)
    }

    fn add(&mut self, when: When, waker: Waker) -> TimerKey {
        let generation = self.next_generation;
        self.next_generation += 1;
        if self.fresh.len() >= FRESH_MAX {
            // A turn creating very many timers: keep the list short.
            self.settle(Instant::now);
        }
        let relative_fresh = matches!(when, When::After(_));
        let slot = self.live.insert(Live {
            generation,
            waker,
            relative_fresh,
        });
        self.fresh_relative += relative_fresh as usize;
        self.fresh.push((when, generation, slot));
        TimerKey { slot, generation }
    }

    /// Replaces the waker of a live timer unless it would wake the same task. Returns false when
    /// the timer is gone (fired or cancelled).
    pub(crate) fn update_waker(&mut self, key: TimerKey, waker: &Waker) -> bool {
        match self.live.get_mut(key.slot) {
            Some(l) if l.generation == key.generation => {
                if !l.waker.will_wake(waker) {
                    l.waker = waker.clone();
                }
                true
            }
            _ => false,
        }
    }

    /// Cancels a timer. Returns false when it was already gone.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> bool {
        if !self.is_live(key.slot, key.generation) {
            return false;
        }
        if self.live.remove(key.slot).relative_fresh {
            self.fresh_relative -= 1;
        }
        if self.heap.len() > SWEEP_FLOOR && self.heap.len() > 4 * self.live.len() {
            let live = &self.live;
            self.heap
                .retain(|Reverse((_, g, s))| live.get(*s).is_some_and(|l| l.generation == *g));
        }
        true
    }

    /// Moves the fresh timers still live into the heap. `now` is read (once) only when a
    /// relative timer is among them, and it must be an instant taken after every fresh timer
    /// was inserted: relative timers count from it.
    pub(crate) fn settle(&mut self, now: impl FnOnce() -> Instant) {
        if self.fresh.is_empty() {
            return;
        }
        let base = (self.fresh_relative > 0).then(now);
        let mut fresh = std::mem::take(&mut self.fresh);
        for (when, g, s) in fresh.drain(..) {
            if self.is_live(s, g) {
                self.live[s].relative_fresh = false;
                let d = match (when, base) {
                    (When::At(d), _) => d,
                    (When::After(dur), Some(b)) => b + dur,
                    (When::After(_), None) => unreachable!("a relative timer was counted"),
                };
                self.heap.push(Reverse((d, g, s)));
            }
        }
        self.fresh_relative = 0;
        // The list keeps its capacity: no allocation per turn.
        self.fresh = fresh;
    }

    /// The earliest live deadline, if any (drops stale entries it finds on top).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.settle(Instant::now);
        while let Some(&Reverse((deadline, g, s))) = self.heap.peek() {
            if self.is_live(s, g) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes every timer whose deadline is at or before `now` and appends its waker to `out`,
    /// earliest first. Returns how many fired.
    ///
    /// `now` must have been read after every timer inserted so far (see [`Timers::settle`]).
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Waker>) -> usize {
        self.settle(|| now);
        let mut n = 0;
        while let Some(&Reverse((deadline, g, s))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if self.is_live(s, g) {
                out.push(self.live.remove(s).waker);
                n += 1;
            }
        }
        n
    }

    /// Live timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    fn is_live(&self, slot: usize, generation: u64) -> bool {
        self.live
            .get(slot)
            .is_some_and(|l| l.generation == generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn fires_in_deadline_order_and_fifo_on_ties() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let ws: Vec<_> = (0..4).map(|_| counting()).collect();
        // Deadlines 30, 10, 10, 20 ms: expected order 1, 2, 3, 0.
        t.insert(t0 + Duration::from_millis(30), ws[0].1.clone());
        t.insert(t0 + Duration::from_millis(10), ws[1].1.clone());
        t.insert(t0 + Duration::from_millis(10), ws[2].1.clone());
        t.insert(t0 + Duration::from_millis(20), ws[3].1.clone());
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        let mut out = Vec::new();
        assert_eq!(t.expire(t0 + Duration::from_millis(9), &mut out), 0);
        assert_eq!(t.expire(t0 + Duration::from_millis(20), &mut out), 3);
        // Which timer each waker belongs to: wake it and see whose count moved (not
        // `will_wake`, which is best effort: vtable addresses need not be unique).
        let order: Vec<usize> = out
            .iter()
            .map(|w| {
                w.wake_by_ref();
                ws.iter()
                    .position(|(c, _)| c.0.swap(0, Ordering::SeqCst) == 1)
                    .unwrap()
            })
            .collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(30)));
    }

    #[test]
    fn cancelled_timers_never_fire_and_keys_are_not_reused() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let (c, w) = counting();
        let a = t.insert(t0, w.clone());
        assert!(t.cancel(a));
        assert!(!t.cancel(a), "second cancel finds nothing");
        // The slot is reused, the key is not: the old key must not reach the new timer.
        let b = t.insert(t0, w.clone());
        assert_ne!(a, b);
        assert!(!t.cancel(a));
        assert!(!t.update_waker(a, &w));
        assert!(t.update_waker(b, &w));
        let mut out = Vec::new();
        assert_eq!(t.expire(t0, &mut out), 1);
        out.drain(..).for_each(Waker::wake);
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn timers_cancelled_before_settling_never_reach_the_heap() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let (_c, w) = counting();
        for _ in 0..1000 {
            let k = t.insert(t0 + Duration::from_secs(60), w.clone());
            assert!(t.cancel(k));
        }
        let keep = t.insert(t0 + Duration::from_secs(1), w.clone());
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.heap.len(), 1, "only the live timer entered the heap");
        assert!(t.fresh.is_empty());
        assert!(t.cancel(keep));
    }

    #[test]
    fn relative_timers_count_from_their_settling() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let (_c, w) = counting();
        let rel = t.insert_after(Duration::from_millis(10), w.clone());
        let abs = t.insert(t0 + Duration::from_millis(5), w.clone());
        let settled_at = t0 + Duration::from_millis(1);
        t.settle(|| settled_at);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(5)));
        let mut out = Vec::new();
        assert_eq!(
            t.expire(t0 + Duration::from_millis(10), &mut out),
            1,
            "only the absolute one"
        );
        assert_eq!(
            t.next_deadline(),
            Some(settled_at + Duration::from_millis(10))
        );
        assert_eq!(
            t.expire(settled_at + Duration::from_millis(10), &mut out),
            1
        );
        assert!(!t.cancel(rel) && !t.cancel(abs), "both fired");
        // Cancelled before settling: never needs a clock.
        let k = t.insert_after(Duration::from_secs(1), w.clone());
        assert!(t.cancel(k));
        t.settle(|| unreachable!("no live relative timer: no clock read"));
    }

    #[test]
    fn stale_entries_are_swept_so_the_heap_stays_small() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        let mut t = Timers::default();
        let (_c, w) = counting();
        let keep = t.insert(far, w.clone());
        for _ in 0..if cfg!(miri) { 2_000 } else { 100_000 } {
            let k = t.insert(far, w.clone());
            assert!(t.cancel(k));
        }
        assert_eq!(t.len(), 1);
        t.settle(Instant::now);
        assert!(
            t.heap.len() <= SWEEP_FLOOR + 1,
            "heap kept {} entries for 1 live timer",
            t.heap.len()
        );
        assert!(t.cancel(keep));
        assert_eq!(t.next_deadline(), None);
    }
}
