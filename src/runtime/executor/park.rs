//! Parking: the sleeping-flag handshake by which a producer wakes a sleeping worker (or a
//! `block_on` thread, or an event loop waiting in the kernel) without losing a wake-up and
//! without a system call when the target is awake. Owns the flag and the wake target; knows
//! nothing of queues (the sleeper re-checks its own after raising the flag).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::runtime::sync::{AtomicBool, Thread, current_thread, fence};

/// Wakes a sleeping thread: the parked-flag handshake shared by workers and `block_on`.
///
/// Protocol: the sleeper stores `sleeping = true` followed by a SeqCst fence, re-checks its
/// queues, and parks only if they are empty. A producer publishes its work (a Release store),
/// then calls [`Notifier::notify`], which issues a SeqCst fence and unparks only when
/// `sleeping` is set. The two fences are ordered one way or the other: either the sleeper's
/// re-check sees the work, or the producer sees the flag. No wake-up is lost (loom model:
/// `loom_tests` below). The fence costs the sleeper one barrier each time it goes to sleep,
/// nothing on the busy path.
pub(crate) struct Notifier {
    sleeping: AtomicBool,
    target: NotifyTarget,
}

pub(crate) enum NotifyTarget {
    Thread(Thread),
    Custom(Arc<dyn Fn() + Send + Sync>),
}

impl Notifier {
    pub(crate) fn for_current_thread() -> Arc<Self> {
        Arc::new(Notifier {
            sleeping: AtomicBool::new(false),
            target: NotifyTarget::Thread(current_thread()),
        })
    }
    pub(crate) fn custom(f: Arc<dyn Fn() + Send + Sync>) -> Arc<Self> {
        Arc::new(Notifier {
            // An external loop does not take part in the flag handshake: always call it.
            sleeping: AtomicBool::new(true),
            target: NotifyTarget::Custom(f),
        })
    }
    /// A notifier that takes part in the sleeping-flag handshake but wakes with `f` (e.g. an
    /// eventfd write that interrupts an event-loop wait) instead of unparking a thread.
    pub(crate) fn custom_handshake(f: Arc<dyn Fn() + Send + Sync>) -> Arc<Self> {
        Arc::new(Notifier {
            sleeping: AtomicBool::new(false),
            target: NotifyTarget::Custom(f),
        })
    }
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            match &self.target {
                NotifyTarget::Thread(t) => t.unpark(),
                NotifyTarget::Custom(f) => f(),
            }
        }
    }
    /// Raises (before the sleeper's last re-check) or lowers (once awake) the sleeping flag.
    pub(crate) fn set_sleeping(&self, v: bool) {
        self.sleeping.store(v, Ordering::SeqCst);
        if v {
            // Orders the flag before the re-check that follows (see the protocol above).
            fence(Ordering::SeqCst);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Every interleaving of a producer's publish + notify with a sleeper's handshake (loom): the
    //! sleeper never stays parked with work published. Run:
    //! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`.

    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    use super::*;

    /// The worker loop's way to sleep: raise the flag, re-check, park, lower the flag.
    fn sleep_until(n: &Notifier, work: &AtomicUsize, want: usize) {
        loop {
            if work.load(Ordering::Acquire) >= want {
                return;
            }
            n.set_sleeping(true);
            if work.load(Ordering::Acquire) >= want {
                n.set_sleeping(false);
                return;
            }
            loom::thread::park();
            n.set_sleeping(false);
        }
    }

    #[test]
    fn loom_a_published_item_always_wakes_the_sleeper() {
        loom::model(|| {
            let work = Arc::new(AtomicUsize::new(0));
            let n = Notifier::for_current_thread();
            let producer = {
                let (work, n) = (work.clone(), n.clone());
                loom::thread::spawn(move || {
                    work.store(1, Ordering::Release);
                    n.notify();
                })
            };
            sleep_until(&n, &work, 1);
            producer.join().unwrap();
        });
    }

    #[test]
    fn loom_two_producers_two_items() {
        loom::model(|| {
            let work = Arc::new(AtomicUsize::new(0));
            let n = Notifier::for_current_thread();
            let ps: Vec<_> = (0..2)
                .map(|_| {
                    let (work, n) = (work.clone(), n.clone());
                    loom::thread::spawn(move || {
                        work.fetch_add(1, Ordering::Release);
                        n.notify();
                    })
                })
                .collect();
            sleep_until(&n, &work, 2);
            for p in ps {
                p.join().unwrap();
            }
        });
    }
}
