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
use std::time::Instant;

use slab::Slab;

/// Names one inserted timer; stays unique for the life of the list (generations never repeat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    generation: u64,
}

struct Live {
    generation: u64,
    waker: Waker,
}

/// The timer list. See the module documentation.
#[derive(Default)]
pub(crate) struct Timers {
    live: Slab<Live>,
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// Inserted since the heap was last brought up to date; moved there by `settle`.
    fresh: Vec<(Instant, u64, usize)>,
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
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = self.live.insert(Live { generation, waker });
        if self.fresh.len() >= FRESH_MAX {
            self.settle(); // a turn creating very many timers: keep the list short
        }
        self.fresh.push((deadline, generation, slot));
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
        self.live.remove(key.slot);
        if self.heap.len() > SWEEP_FLOOR && self.heap.len() > 4 * self.live.len() {
            let live = &self.live;
            self.heap
                .retain(|Reverse((_, g, s))| live.get(*s).is_some_and(|l| l.generation == *g));
        }
        true
    }

    /// Moves the fresh timers still live into the heap.
    fn settle(&mut self) {
        if self.fresh.is_empty() {
            return;
        }
        let mut fresh = std::mem::take(&mut self.fresh);
        for (d, g, s) in fresh.drain(..) {
            if self.is_live(s, g) {
                self.heap.push(Reverse((d, g, s)));
            }
        }
        // The list keeps its capacity: no allocation per turn.
        self.fresh = fresh;
    }

    /// The earliest live deadline, if any (drops stale entries it finds on top).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.settle();
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
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Waker>) -> usize {
        self.settle();
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
        let order: Vec<usize> = out
            .iter()
            .map(|w| ws.iter().position(|(_, x)| x.will_wake(w)).unwrap())
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
    fn stale_entries_are_swept_so_the_heap_stays_small() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(60);
        let mut t = Timers::default();
        let (_c, w) = counting();
        let keep = t.insert(far, w.clone());
        for _ in 0..100_000 {
            let k = t.insert(far, w.clone());
            assert!(t.cancel(k));
        }
        assert_eq!(t.len(), 1);
        t.settle();
        assert!(
            t.heap.len() <= SWEEP_FLOOR + 1,
            "heap kept {} entries for 1 live timer",
            t.heap.len()
        );
        assert!(t.cancel(keep));
        assert_eq!(t.next_deadline(), None);
    }
}
