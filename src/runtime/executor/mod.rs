//! The per-thread executor: a local run queue of tasks that need not be `Send`, wakers that work
//! from any thread, and the timer list of its thread. One executor runs on each app worker (and
//! one on a thread inside [`Runtime::block_on`](crate::runtime::Runtime::block_on)). It owns its
//! tasks and timers and nothing else: message delivery and parking are the worker's (a wake-up
//! from another node of the same mesh is handed to the mesh as a ring envelope).
//!
//! One concept per file:
//! - this file: `Executor` (task slab, ready queue, timer list, the turn of deferred timers),
//!   the thread's current executor, and [`current_worker`].
//! - `coop`: the cooperative budget (128 sends a poll, like tokio's), [`consume_budget`],
//!   [`yield_now`].
//! - `park`: `Notifier`, the parked-flag handshake every sleeping thread uses.
//! - `waker`: the hand-written task waker (lent per poll without a reference-count change).
//! - `block_on`: driving one future on an outside thread.
//!
//! Timers ([`crate::runtime::time`]) and join handles ([`crate::runtime::task`]) live in their
//! own modules; they reach the executor through `with_current`. Must not touch rings,
//! mailboxes or sockets.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crossbeam::queue::SegQueue;
use slab::Slab;

use super::time::timers::Timers;

mod block_on;
mod coop;
mod park;
mod waker;

pub(crate) use block_on::run_until;
pub use coop::{consume_budget, yield_now};
pub(crate) use coop::{poll_proceed, take_budget};
pub(crate) use park::Notifier;
use waker::{TASK_WAKER, TaskWake, lend_waker};

static NEXT_EXEC_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
    static CURRENT_ID: Cell<u64> = const { Cell::new(0) };
}

/// The part of an executor other threads may touch: its identity, remote wake queue, notifier.
pub(crate) struct ExecShared {
    pub(crate) id: u64,
    remote: SegQueue<usize>,
    pub(crate) notifier: Arc<Notifier>,
    /// `(mesh id, node)` when this executor runs a mesh node (an app worker): a wake-up from
    /// another node of that mesh travels over the pair's ring instead of `remote`.
    pub(super) node: Option<(u64, usize)>,
}

impl ExecShared {
    pub(crate) fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }
}

struct Slot {
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The task's wake state; each poll is lent a `Waker` over it without a reference-count
    /// change (see `lend_waker`), and a slot stays 24 bytes.
    wake: Arc<TaskWake>,
}

/// Counters kept by the owner thread without atomics; the worker publishes them.
#[derive(Default)]
pub(crate) struct LocalCounters {
    pub(crate) polled: Cell<u64>,
    pub(crate) spawned: Cell<u64>,
}

/// A single-threaded executor. Lives behind an `Rc` in a thread-local while running.
pub(crate) struct Executor {
    pub(crate) shared: Arc<ExecShared>,
    tasks: RefCell<Slab<Slot>>,
    ready: RefCell<VecDeque<usize>>,
    pub(crate) timers: RefCell<Timers>,
    /// The instant of this executor's latest [`Executor::fire_timers`] (a turn's start). A
    /// [`Sleep`] whose deadline is at or before it has certainly passed, so a first poll needs no
    /// clock read; a deadline that passed since is fired by the next turn.
    pub(crate) now: Cell<Instant>,
    /// Relative timers of this turn not registered yet (see [`After`]): the task to wake at the
    /// end of the turn so it registers, or `None` once the timer's owner went away. Emptied,
    /// and `turn` advanced, by [`Executor::sweep_deferred`].
    deferred: RefCell<Vec<Option<(usize, usize)>>>,
    pub(crate) turn: Cell<u64>,
    pub(crate) counters: LocalCounters,
    /// Worker index when this executor runs an app worker; `None` inside `block_on`.
    pub(crate) worker: Option<usize>,
}

impl Executor {
    /// `node`: the `(mesh id, node)` this executor runs, for app workers.
    pub(crate) fn new(
        notifier: Arc<Notifier>,
        worker: Option<usize>,
        node: Option<(u64, usize)>,
    ) -> Rc<Self> {
        Rc::new(Executor {
            shared: Arc::new(ExecShared {
                id: NEXT_EXEC_ID.fetch_add(1, Ordering::Relaxed),
                remote: SegQueue::new(),
                notifier,
                node,
            }),
            tasks: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Timers::default()),
            now: Cell::new(Instant::now()),
            deferred: RefCell::new(Vec::new()),
            turn: Cell::new(0),
            counters: LocalCounters::default(),
            worker,
        })
    }

    /// Makes `self` the current executor of this thread until the guard drops.
    pub(crate) fn enter(self: &Rc<Self>) -> EnterGuard {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let prev_id = CURRENT_ID.with(|c| c.replace(self.shared.id));
        EnterGuard { prev, prev_id }
    }

    /// Spawns a type-erased task on this executor.
    pub(crate) fn spawn_raw(&self, fut: Pin<Box<dyn Future<Output = ()>>>) {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let wake = Arc::new(TaskWake {
            key,
            queued: AtomicBool::new(true),
            exec: self.shared.clone(),
        });
        entry.insert(Slot {
            fut: Some(fut),
            wake,
        });
        drop(tasks);
        self.ready.borrow_mut().push_back(key);
        self.counters.spawned.set(self.counters.spawned.get() + 1);
    }

    /// Number of live tasks.
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Moves wake-ups from other threads into the local run queue. Returns how many.
    pub(crate) fn drain_remote(&self) -> usize {
        let mut n = 0;
        let mut ready = self.ready.borrow_mut();
        while let Some(k) = self.shared.remote.pop() {
            ready.push_back(k);
            n += 1;
        }
        n
    }

    /// True when a task is ready to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    /// Polls up to `budget` ready tasks. Returns how many were polled.
    pub(crate) fn run_ready(&self, budget: usize) -> usize {
        let mut polled = 0;
        while polled < budget {
            let Some(key) = self.ready.borrow_mut().pop_front() else {
                break;
            };
            let (fut, waker) = {
                let mut tasks = self.tasks.borrow_mut();
                let Some(slot) = tasks.get_mut(key) else {
                    continue;
                };
                slot.wake.queued.store(false, Ordering::Release);
                match slot.fut.take() {
                    // SAFETY: the slot's `Arc` outlives this poll: a slot is removed only
                    // below, after the poll, or by `cancel_all`, which never runs inside one.
                    Some(f) => (f, unsafe { lend_waker(&slot.wake) }),
                    None => continue,
                }
            };
            let mut fut = fut;
            polled += 1;
            let mut cx = Context::from_waker(&waker);
            // Task wrappers catch panics themselves; this guard only keeps a raw task's panic
            // from unwinding through the worker loop.
            let (res, yielded) =
                coop::budgeted(|| catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))));
            match res {
                Ok(Poll::Pending) => {
                    if let Some(slot) = self.tasks.borrow_mut().get_mut(key) {
                        slot.fut = Some(fut);
                    }
                }
                Ok(Poll::Ready(())) => {
                    self.tasks.borrow_mut().remove(key);
                    drop(fut);
                }
                Err(p) => {
                    tracing::error!(panic = %panic_message(&*p), "a runtime task panicked");
                    self.tasks.borrow_mut().remove(key);
                    drop(fut);
                }
            }
            if yielded {
                break;
            }
        }
        self.counters
            .polled
            .set(self.counters.polled.get() + polled as u64);
        polled
    }

    /// Wakes every timer whose deadline has passed. Returns how many fired.
    pub(crate) fn fire_timers(&self, now: Instant) -> usize {
        self.now.set(now);
        self.sweep_deferred();
        let mut fired = Vec::new();
        {
            let mut t = self.timers.borrow_mut();
            t.settle(|| now);
            if t.next_deadline().is_none_or(|d| d > now) {
                return 0;
            }
            t.expire(now, &mut fired);
        }
        // Woken outside the borrow: a waker may belong to a task that touches the timers.
        let n = fired.len();
        fired.into_iter().for_each(Waker::wake);
        n
    }

    /// Brings timers created since the last turn into the timer list, relative ones counted
    /// from `now`, which must have been read after they were created (the worker passes the
    /// clock read that closes a busy turn).
    pub(crate) fn settle_timers(&self, now: Instant) {
        self.sweep_deferred();
        self.timers.borrow_mut().settle(|| now);
    }

    /// Ends the turn for deferred relative timers: wakes each task whose [`After`] is still
    /// waiting to register (it registers when polled, in the next turn) and starts a new turn.
    /// Runs where every turn with polls ends, so a deferred timer is never forgotten: its task
    /// is queued, which keeps the worker from parking.
    fn sweep_deferred(&self) {
        let pending = {
            let mut d = self.deferred.borrow_mut();
            if d.is_empty() {
                return;
            }
            self.turn.set(self.turn.get() + 1);
            std::mem::take(&mut *d)
        };
        for (key, addr) in pending.iter().flatten() {
            // Queuing a task touches only the ready queue, never the task slab.
            if let Some(s) = self.tasks.borrow().get(*key)
                && Arc::as_ptr(&s.wake) as usize == *addr
            {
                s.wake.wake_by_ref();
            }
        }
        // Keep the allocation for the next turn (unless another turn refilled it meanwhile).
        let mut pending = pending;
        pending.clear();
        let mut d = self.deferred.borrow_mut();
        if d.is_empty() {
            *d = pending;
        }
    }

    /// Defers registering a relative timer for the task whose waker is `w` to the end of this
    /// turn: returns `(turn, index)` for [`Executor::drop_deferred`], or `None` when `w` is not
    /// one of this executor's task wakers (the caller registers at once).
    pub(crate) fn defer(&self, w: &Waker) -> Option<(u64, u32)> {
        if !std::ptr::eq(w.vtable(), &TASK_WAKER) {
            return None;
        }
        // SAFETY: a waker with `TASK_WAKER` points at a `TaskWake` kept alive while the waker
        // lives (see the vtable's invariants), and `w` is alive here.
        let tw = unsafe { &*w.data().cast::<TaskWake>() };
        if tw.exec.id != self.shared.id {
            return None;
        }
        let mut d = self.deferred.borrow_mut();
        let idx = u32::try_from(d.len()).ok()?;
        // The address is only compared at the sweep (a task finished meanwhile and its key
        // reused fails the check; a new task at the same key and address gets one spurious
        // poll, which futures tolerate).
        d.push(Some((tw.key, w.data() as usize)));
        Some((self.turn.get(), idx))
    }

    /// Forgets a deferred registration made this turn (its owner finished or went away).
    pub(crate) fn drop_deferred(&self, (turn, idx): (u64, u32)) {
        if turn == self.turn.get()
            && let Some(e) = self.deferred.borrow_mut().get_mut(idx as usize)
        {
            *e = None;
        }
    }

    /// The earliest timer deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.borrow_mut().next_deadline()
    }

    /// Drops every task (cancelling them). Used at shutdown, on the owner thread.
    pub(crate) fn cancel_all(&self) -> usize {
        let slots: Vec<Slot> = self.tasks.borrow_mut().drain().collect();
        let n = slots.len();
        // Dropping futures may run user Drop impls that touch the executor: no borrow is held.
        drop(slots);
        self.ready.borrow_mut().clear();
        n
    }
}

/// Restores the previous current executor on drop.
pub(crate) struct EnterGuard {
    prev: Option<Rc<Executor>>,
    prev_id: u64,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
        CURRENT_ID.with(|c| c.set(self.prev_id));
    }
}

/// Runs `f` with the current executor, if this thread has one.
pub(crate) fn with_current<R>(f: impl FnOnce(&Rc<Executor>) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(f))
}

/// Identity of the current thread's executor (0 when none).
pub(crate) fn current_exec_id() -> u64 {
    CURRENT_ID.with(|c| c.get())
}

/// The `(mesh id, node)` this thread's executor runs, if it is an app worker's.
pub(crate) fn current_mesh_node() -> Option<(u64, usize)> {
    with_current(|e| e.shared.node).flatten()
}

/// The app worker this thread runs, if any.
pub fn current_worker() -> Option<usize> {
    with_current(|e| e.worker).flatten()
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::time::{Elapsed, timeout};
    use crate::runtime::{spawn_local, yield_now};
    use std::time::Duration;

    /// Lent wakers (one per poll), owned clones woken by reference and by value, a wake-up
    /// from another thread, a join handle and a relative timer, all on one `block_on`
    /// executor. Small enough for Miri, which checks the hand-written waker vtable.
    #[test]
    fn wakers_lent_cloned_and_woken_from_anywhere() {
        let out = run_until(async {
            let (tx, rx) = crate::runtime::oneshot::channel::<u32>();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1));
                tx.send(5)
            });
            let h = spawn_local(async move { rx.await.unwrap_or(0) * 2 });
            // A slab task (polled with a lent waker) that clones and wakes its waker.
            let mut polls = 0;
            let wakes = spawn_local(std::future::poll_fn(move |cx| {
                polls += 1;
                match polls {
                    1 => cx.waker().wake_by_ref(),
                    2 => {
                        // An owned waker consumed by `wake` (the by-value vtable entry).
                        let owned = cx.waker().clone();
                        owned.wake();
                    }
                    3 => {
                        let w = cx.waker().clone();
                        assert!(w.will_wake(&w.clone()));
                        w.wake_by_ref();
                        drop(w);
                    }
                    _ => return Poll::Ready(polls),
                }
                Poll::Pending
            }));
            assert_eq!(wakes.await.unwrap(), 4);
            let v = h.await.unwrap();
            assert!(t.join().unwrap().is_ok());
            let r = timeout(Duration::from_millis(1), std::future::pending::<()>()).await;
            assert!(r.is_err());
            v
        });
        assert_eq!(out, 10);
    }

    /// Relative timers in slab tasks: one deferred to the end of the turn that fires, one
    /// whose future finishes within the turn (no timer registered), and one dropped before
    /// the sweep; the timer list ends empty.
    #[test]
    fn deferred_relative_timers_fire_or_vanish() {
        run_until(async {
            let fires = spawn_local(async {
                timeout(Duration::from_millis(1), std::future::pending::<()>()).await
            });
            let quick = spawn_local(async { timeout(Duration::from_secs(60), yield_now()).await });
            let dropped = spawn_local(async {
                let mut t = std::pin::pin!(timeout(
                    Duration::from_secs(60),
                    std::future::pending::<()>()
                ));
                // One poll defers a registration; dropping the future forgets it.
                std::future::poll_fn(|cx| {
                    let _ = t.as_mut().poll(cx);
                    Poll::Ready(())
                })
                .await;
            });
            assert_eq!(fires.await.unwrap(), Err(Elapsed));
            assert_eq!(quick.await.unwrap(), Ok(()));
            dropped.await.unwrap();
            let live = with_current(|e| e.timers.borrow().len()).unwrap();
            assert_eq!(live, 0, "no timer left behind");
        });
    }
}
