//! The task waker: `Arc<TaskWake>` behind a hand-written `RawWakerVTable`, so that the executor
//! can lend each polled task a waker without a reference-count change. Owns the vtable, its
//! invariants and the wake paths (same thread, another node of the mesh, any other thread);
//! touches the executor only through its thread-local `CURRENT` and its shared part.

use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::{CURRENT, CURRENT_ID, ExecShared};

pub(super) struct TaskWake {
    pub(super) key: usize,
    pub(super) queued: AtomicBool,
    pub(super) exec: Arc<ExecShared>,
}

impl TaskWake {
    /// Marks the task queued; false when it already was (the wake-up is then a no-op).
    fn mark(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }

    /// Queues the task on this thread's executor when it is the task's own. True if done.
    fn wake_here(&self) -> bool {
        CURRENT_ID.with(|c| c.get()) == self.exec.id
            && CURRENT.with(|c| {
                c.borrow()
                    .as_ref()
                    .map(|e| e.ready.borrow_mut().push_back(self.key))
                    .is_some()
            })
    }

    /// A wake-up on the task's own thread, with a plain load and store instead of the locked
    /// swap: a thread racing to wake the task too can at worst queue it twice, which costs one
    /// spurious poll. True when handled here.
    fn wake_local(&self) -> bool {
        if CURRENT_ID.with(|c| c.get()) != self.exec.id {
            return false;
        }
        if self.queued.load(Ordering::Relaxed) {
            return true;
        }
        self.queued.store(true, Ordering::Relaxed);
        if self.wake_here() {
            return true;
        }
        self.queued.store(false, Ordering::Relaxed);
        false
    }

    pub(super) fn wake_by_ref(self: &Arc<Self>) {
        if !self.wake_local() && self.mark() && !self.wake_here() {
            self.clone().wake_remote();
        }
    }

    fn wake(self: Arc<Self>) {
        if !self.wake_local() && self.mark() && !self.wake_here() {
            self.wake_remote();
        }
    }
}

// A `Waker` over `Arc<TaskWake>` built by hand rather than through `std::task::Wake`, so that
// `run_ready` can lend each polled task a waker without touching the reference count (two
// locked instructions per poll, ~10 % of a same-core ask). Invariants: the data pointer is
// always `Arc::as_ptr` of a `TaskWake` whose strong count includes one reference per owned
// `Waker` built from it; a lent waker (in `ManuallyDrop`) owns none and is only used while the
// lender keeps its `Arc` alive.
pub(super) static TASK_WAKER: RawWakerVTable = RawWakerVTable::new(
    task_waker_clone,
    task_waker_wake,
    task_waker_wake_by_ref,
    task_waker_drop,
);

unsafe fn task_waker_clone(p: *const ()) -> RawWaker {
    // SAFETY: `p` is a live `TaskWake` (the waker being cloned holds or borrows a reference);
    // the new waker owns the reference added here.
    unsafe { Arc::increment_strong_count(p.cast::<TaskWake>()) };
    RawWaker::new(p, &TASK_WAKER)
}

unsafe fn task_waker_wake(p: *const ()) {
    // SAFETY: an owned waker is consumed: its reference moves into this `Arc`.
    let a = unsafe { Arc::from_raw(p.cast::<TaskWake>()) };
    a.wake();
}

unsafe fn task_waker_wake_by_ref(p: *const ()) {
    // SAFETY: the waker keeps its reference; `ManuallyDrop` keeps this `Arc` from releasing it.
    let a = ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<TaskWake>()) });
    a.wake_by_ref();
}

unsafe fn task_waker_drop(p: *const ()) {
    // SAFETY: an owned waker is dropped: its reference is released here.
    drop(unsafe { Arc::from_raw(p.cast::<TaskWake>()) });
}

/// A waker lent for one poll: no reference of its own (see the invariants above `TASK_WAKER`).
///
/// # Safety
/// `w` must stay alive (the caller holds an `Arc`) for as long as the returned waker is used;
/// clones taken from it are owned and independent.
pub(super) unsafe fn lend_waker(w: &Arc<TaskWake>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(Arc::as_ptr(w).cast(), &TASK_WAKER);
    // SAFETY: the vtable's functions uphold the `RawWaker` contract for this pointer (see
    // above); `ManuallyDrop` keeps the borrowed reference from being released.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

impl TaskWake {
    /// A wake-up from another thread. It is a signal: this thread's batched ring sends are
    /// published with it, so whatever the woken task learns happened-before is visible to it.
    ///
    /// Between two nodes of one mesh the wake-up is an envelope on the pair's SPSC ring,
    /// published at once: plain stores the target's spin loop already watches, where the
    /// `remote` queue costs a compare-and-swap on each side and two more shared lines. Anywhere
    /// else, or when this thread's ring ends are busy (a wake from inside a send), it goes
    /// through `remote`.
    fn wake_remote(self: Arc<Self>) {
        if let Some((mesh_id, node)) = self.exec.node {
            let env = crate::runtime::mesh::Envelope::new(move || self.requeue());
            if let Err(env) = crate::runtime::mesh::send_signal(mesh_id, node, env) {
                // Not sent: run it here, which takes the `remote` path below.
                env.run();
            }
            return;
        }
        self.requeue();
    }

    /// Queues the task: on its own executor's run queue when this thread runs it (a wake
    /// envelope arriving), else through `remote` with a notification.
    fn requeue(&self) {
        if self.wake_here() {
            return;
        }
        crate::runtime::mesh::flush_current();
        self.exec.remote.push(self.key);
        self.exec.notifier.notify();
    }
}
