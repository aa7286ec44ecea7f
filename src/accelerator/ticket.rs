//! Completion of submitted work: a [`Ticket`] is the submitter's end of a one-value slot that
//! the accelerator worker fills. It can be polled ([`Ticket::try_take`]), blocked on
//! ([`Ticket::wait`]) or awaited: it is a `Future`, and the worker wakes the awaiting task
//! through its `Waker` (on a percore app worker that is the runtime's remote-wake path). A slot
//! may instead carry a callback run on the worker thread (delivery as an actor message). Owns
//! the slot only: it must not touch devices, queues or kernels.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::error::AccelError;

pub(crate) type Callback<T> = Box<dyn FnOnce(Result<T, AccelError>) + Send>;

struct State<T> {
    result: Option<Result<T, AccelError>>,
    waker: Option<Waker>,
    callback: Option<Callback<T>>,
    done: bool,
}

/// The worker's end of a ticket.
pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    cv: Condvar,
    /// Set after the result is stored: lets a blocking waiter spin without the lock.
    ready: AtomicBool,
}

/// How long [`Ticket::wait`] polls (yielding the core each time) before sleeping: a sleeping
/// thread woken from another core costs ~30 µs on some VMs, as much as a 128³ matmul's whole
/// offload overhead (BENCHMARKS.md: 60 % of direct GEMM speed with a 30 µs poll, 90 % with
/// 250 µs). Yielding, not spinning, so a worker sharing the core still runs.
const WAIT_SPIN: Duration = Duration::from_micros(250);

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every critical section is a few field moves; a poisoned lock holds a consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn new(callback: Option<Callback<T>>) -> Arc<Slot<T>> {
        Arc::new(Slot {
            state: Mutex::new(State {
                result: None,
                waker: None,
                callback,
                done: false,
            }),
            cv: Condvar::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// True when the result goes to a waiter, not to a callback.
    pub(crate) fn has_no_callback(&self) -> bool {
        self.lock().callback.is_none()
    }

    /// Delivers the result (first call wins): runs the callback, or stores it and wakes.
    pub(crate) fn complete(&self, r: Result<T, AccelError>) {
        let mut st = self.lock();
        if st.done {
            return;
        }
        st.done = true;
        if let Some(cb) = st.callback.take() {
            drop(st);
            cb(r);
            return;
        }
        st.result = Some(r);
        let w = st.waker.take();
        self.ready.store(true, Ordering::Release);
        drop(st);
        self.cv.notify_all();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// The worker's owning handle on a slot: completing consumes it, and dropping it without
/// completing (a panic unwinding through the worker, a job discarded at shutdown) completes the
/// ticket with [`AccelError::Stopped`], so no submitter waits forever.
pub(crate) struct Completer<T>(Arc<Slot<T>>);

impl<T> Completer<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Completer<T> {
        Completer(slot)
    }

    /// Delivers the result.
    pub(crate) fn complete(self, r: Result<T, AccelError>) {
        self.0.complete(r);
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        // No-op when `complete` ran first (the slot keeps the first result).
        self.0.complete(Err(AccelError::Stopped));
    }
}

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// A handle on submitted work: await it, poll it, or block on it.
pub struct Ticket<T> {
    slot: Arc<Slot<T>>,
    id: u64,
}

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<T> Ticket<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Ticket<T> {
        Ticket {
            slot,
            id: NEXT_TICKET.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A ticket that is already complete (for errors found before dispatch).
    pub(crate) fn ready(r: Result<T, AccelError>) -> Ticket<T> {
        let slot = Slot::new(None);
        slot.complete(r);
        Ticket::new(slot)
    }

    /// Process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True once the result is available (or has been taken).
    pub fn is_ready(&self) -> bool {
        self.slot.lock().done
    }

    /// Takes the result if it is there. After it was taken once, returns `None` forever.
    pub fn try_take(&mut self) -> Option<Result<T, AccelError>> {
        self.slot.lock().result.take()
    }

    /// Blocks the calling thread until the result arrives. Do not call it on an app worker
    /// (it would stall the worker's executor): `.await` the ticket there.
    pub fn wait(self) -> Result<T, AccelError> {
        let until = Instant::now() + WAIT_SPIN;
        // Yield rather than spin: on an oversubscribed machine the worker may need this core.
        while !self.slot.ready.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::yield_now();
        }
        let mut st = self.slot.lock();
        loop {
            if let Some(r) = st.result.take() {
                return r;
            }
            if st.done {
                return Err(AccelError::Stopped);
            }
            st = self.slot.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T, AccelError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.slot.lock();
        if let Some(r) = st.result.take() {
            return Poll::Ready(r);
        }
        if st.done {
            return Poll::Ready(Err(AccelError::Stopped));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        // A callback never called (worker gone) learns that the work stopped.
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(cb) = st.callback.take() {
            cb(Err(AccelError::Stopped));
        }
    }
}
