//! Parking: the sleeping-flag handshake by which a producer wakes a sleeping worker (or a
//! `block_on` thread, or an event loop waiting in the kernel) without losing a wake-up and
//! without a system call when the target is awake. Owns the flag and the wake target; knows
//! nothing of queues (the sleeper re-checks its own after raising the flag).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;

/// Wakes a sleeping thread: the parked-flag handshake shared by workers and `block_on`.
///
/// Protocol: the sleeper stores `sleeping = true` (SeqCst), re-checks its queues, and parks only
/// if they are empty. A producer publishes its work, then calls [`Notifier::notify`], which
/// issues a SeqCst fence and unparks only when `sleeping` is set. By the SeqCst total order either
/// the sleeper sees the work or the producer sees the flag: no wake-up is lost.
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
            target: NotifyTarget::Thread(std::thread::current()),
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
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            match &self.target {
                NotifyTarget::Thread(t) => t.unpark(),
                NotifyTarget::Custom(f) => f(),
            }
        }
    }
    pub(crate) fn set_sleeping(&self, v: bool) {
        self.sleeping.store(v, Ordering::SeqCst);
    }
}
