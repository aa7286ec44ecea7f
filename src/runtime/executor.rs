//! The per-thread executor: a local run queue of tasks that need not be `Send`, wakers that work
//! from any thread, local timers, and join handles with cancellation. One executor runs on each
//! app worker (and one on a thread inside [`Runtime::block_on`](crate::runtime::Runtime::block_on)).
//! It owns its tasks and timers and nothing else: message delivery and parking are the worker's
//! (a wake-up from another node of the same mesh is handed to the mesh as a ring envelope).
//! Each poll spends from a cooperative budget (128 sends, like tokio's) so that no task keeps its
//! worker from the rest of its turn.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use crossbeam::queue::SegQueue;
use slab::Slab;

use super::timer::{TimerKey, Timers};

use super::error::{JoinError, RuntimeError};

static NEXT_EXEC_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
    static CURRENT_ID: Cell<u64> = const { Cell::new(0) };
    /// Operations the task being polled may still complete without yielding (see
    /// [`poll_proceed`]); `UNLIMITED` outside a poll by this executor.
    static BUDGET: Cell<u32> = const { Cell::new(UNLIMITED) };
    /// Set when a task yielded because its budget ran out: the scheduler turn ends early.
    static BUDGET_YIELDED: Cell<bool> = const { Cell::new(false) };
}

/// Budget value meaning "not counted" (threads and polls outside a percore scheduler turn).
const UNLIMITED: u32 = u32::MAX;

/// Operations (sends) a task may complete in one poll before it must yield: the same figure as
/// tokio's cooperative budget.
pub(crate) const TASK_BUDGET: u32 = 128;

/// Spends one unit of the polled task's budget without yielding: false when it is spent (the
/// caller then yields through [`poll_proceed`]). Always true outside a scheduler turn.
#[inline]
pub(crate) fn take_budget() -> bool {
    BUDGET.with(|b| match b.get() {
        UNLIMITED => true,
        0 => false,
        n => {
            b.set(n - 1);
            true
        }
    })
}

/// Cooperative scheduling: spends one unit of the polled task's budget. When it is spent the
/// task is re-queued and `Pending` is returned, and the worker's turn ends early so that its
/// inbound rings, timers and other tasks get their turn.
///
/// Without it a task streaming `tell`s to a mailbox that keeps up never yields, and its worker
/// never drains the rings that bring back its batch buffers (nor anything else). Outside a
/// percore scheduler turn it never yields.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    BUDGET.with(|b| match b.get() {
        UNLIMITED => Poll::Ready(()),
        0 => {
            BUDGET_YIELDED.with(|y| y.set(true));
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        n => {
            b.set(n - 1);
            Poll::Ready(())
        }
    })
}

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

/// The part of an executor other threads may touch: its identity, remote wake queue, notifier.
pub(crate) struct ExecShared {
    pub(crate) id: u64,
    remote: SegQueue<usize>,
    pub(crate) notifier: Arc<Notifier>,
    /// `(mesh id, node)` when this executor runs a mesh node (an app worker): a wake-up from
    /// another node of that mesh travels over the pair's ring instead of `remote`.
    node: Option<(u64, usize)>,
}

impl ExecShared {
    pub(crate) fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }
}

struct TaskWake {
    key: usize,
    queued: AtomicBool,
    exec: Arc<ExecShared>,
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

    fn wake_by_ref(self: &Arc<Self>) {
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
static TASK_WAKER: RawWakerVTable = RawWakerVTable::new(
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
unsafe fn lend_waker(w: &Arc<TaskWake>) -> ManuallyDrop<Waker> {
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
            let env = super::mesh::Envelope::new(move || self.requeue());
            if let Err(env) = super::mesh::send_signal(mesh_id, node, env) {
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
        super::mesh::flush_current();
        self.exec.remote.push(self.key);
        self.exec.notifier.notify();
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
    timers: RefCell<Timers>,
    /// The instant of this executor's latest [`Executor::fire_timers`] (a turn's start). A
    /// [`Sleep`] whose deadline is at or before it has certainly passed, so a first poll needs no
    /// clock read; a deadline that passed since is fired by the next turn.
    now: Cell<Instant>,
    /// Relative timers of this turn not registered yet (see [`After`]): the task to wake at the
    /// end of the turn so it registers, or `None` once the timer's owner went away. Emptied,
    /// and `turn` advanced, by [`Executor::sweep_deferred`].
    deferred: RefCell<Vec<Option<(usize, usize)>>>,
    turn: Cell<u64>,
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
            BUDGET.with(|b| b.set(TASK_BUDGET));
            let res = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
            BUDGET.with(|b| b.set(UNLIMITED));
            let yielded = BUDGET_YIELDED.with(|y| y.replace(false));
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
    fn defer(&self, w: &Waker) -> Option<(u64, u32)> {
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
    fn drop_deferred(&self, (turn, idx): (u64, u32)) {
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

// ---------------------------------------------------------------------------------------------
// Timers

/// A future that completes at a deadline. Created by [`sleep`] and [`sleep_until`].
///
/// Registered with the current executor's timer list on first poll; dropping it removes the
/// timer. Outside a percore executor it falls back to a helper thread, so it works anywhere.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The executor id and key of the registered timer.
    entry: Option<(u64, TimerKey)>,
    fallback: Option<Arc<AtomicBool>>,
}

/// Waits for `dur` on the current worker's timer list.
pub fn sleep(dur: std::time::Duration) -> Sleep {
    sleep_until(Instant::now() + dur)
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        entry: None,
        fallback: None,
    }
}

impl Sleep {
    /// The instant this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (re-registers on next poll).
    pub fn reset(&mut self, deadline: Instant) {
        self.unregister();
        self.deadline = deadline;
    }

    fn unregister(&mut self) {
        cancel_timer(self.entry.take());
    }
}

/// Cancels a timer registered as `entry` (executor id, key), if it belongs to this thread's
/// executor (a timer moved to another executor's task is left to fire harmlessly).
fn cancel_timer(entry: Option<(u64, TimerKey)>) {
    if let Some((exec_id, key)) = entry
        && exec_id == current_exec_id()
    {
        with_current(|e| e.timers.borrow_mut().cancel(key));
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let id = current_exec_id();
        if id == 0 {
            return self.poll_off_executor(cx);
        }
        let (deadline, entry) = (self.deadline, self.entry);
        let waker = cx.waker();
        let registered = with_current(|e| {
            let mut t = e.timers.borrow_mut();
            if deadline <= e.now.get() {
                if let Some((eid, key)) = entry
                    && eid == id
                {
                    t.cancel(key);
                }
                return None;
            }
            match entry {
                Some((eid, key)) if eid == id && t.update_waker(key, waker) => Some((eid, key)),
                _ => Some((id, t.insert(deadline, waker.clone()))),
            }
        })
        .flatten();
        match registered {
            Some(entry) => {
                self.entry = Some(entry);
                Poll::Pending
            }
            None => {
                self.entry = None;
                Poll::Ready(())
            }
        }
    }
}

impl Sleep {
    /// Outside a percore executor a helper thread provides the wake-up.
    fn poll_off_executor(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if let Some(flag) = &self.fallback {
            if flag.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        let flag = Arc::new(AtomicBool::new(false));
        self.fallback = Some(flag.clone());
        let (deadline, waker) = (self.deadline, cx.waker().clone());
        std::thread::spawn(move || {
            let now = Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
            flag.store(true, Ordering::Release);
            waker.wake();
        });
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `fut` with a time limit: `Err(Elapsed)` if it has not finished within `dur`.
///
/// In a percore task the limit starts when `fut` is still waiting at the end of the scheduler
/// turn in which it first waited, and is counted from the worker's next clock reading after
/// that: it never cuts `fut` short (it may end up to a turn later than asked) and reads no
/// clock of its own. A request answered within the turn (an `ask` to an actor on the same
/// core) costs no clock read and no timer at all. Elsewhere (e.g. the future given to
/// `block_on`) the limit starts at the first wait.
pub async fn timeout<F: Future>(dur: std::time::Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut limit = After::new(dur);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if limit.poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}

/// A relative timer for [`timeout`] and `ask`: registered without a clock read (see
/// [`Timers::insert_after`]), by a percore task only if it is still waiting at the end of the
/// turn (see [`After::poll`]); ready once it has fired. Off a percore executor it is a
/// [`Sleep`] started at its first poll.
pub(crate) struct After {
    dur: std::time::Duration,
    entry: Option<(u64, TimerKey)>,
    /// Registration deferred to the end of a turn: `(executor id, turn, index, waker data)`.
    deferred: Option<(u64, u64, u32, usize)>,
    off_executor: Option<Pin<Box<Sleep>>>,
}

impl After {
    pub(crate) fn new(dur: std::time::Duration) -> After {
        After {
            dur,
            entry: None,
            deferred: None,
            off_executor: None,
        }
    }

    /// Ready once the duration has passed. The first poll on a percore task registers nothing:
    /// it notes the task for the end of the turn ([`Executor::defer`]); a request answered
    /// within the turn (an `ask` to an actor on the same core) then costs no timer at all.
    /// Still waiting at the end of the turn, the task is woken, and this registers the timer
    /// at its next poll, counted from the clock reading after that: never early, at most a
    /// turn late.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let id = current_exec_id();
        if self.entry.is_none() && self.off_executor.is_none() && id != 0 {
            let waker = cx.waker();
            match self.deferred {
                None => {
                    if let Some(Some((turn, idx))) = with_current(|e| e.defer(waker)) {
                        self.deferred = Some((id, turn, idx, waker.data() as usize));
                        return Poll::Pending;
                    }
                }
                Some((eid, turn, idx, data)) if eid == id => {
                    let same_task = waker.data() as usize == data;
                    match with_current(|e| e.turn.get() == turn) {
                        // Polled again within the same turn by the same task: the sweep comes.
                        Some(true) if same_task => return Poll::Pending,
                        // Moved to another task within the turn: register for that one now
                        // (the sweep would wake the old one).
                        Some(true) => {
                            with_current(|e| e.drop_deferred((turn, idx)));
                        }
                        // A later turn: the sweep woke this task (or something else did after
                        // it). Register below.
                        _ => {}
                    }
                    self.deferred = None;
                }
                Some(_) => self.deferred = None,
            }
        }
        if id == 0 || self.off_executor.is_some() {
            let dur = self.dur;
            return self
                .off_executor
                .get_or_insert_with(|| Box::pin(sleep(dur)))
                .as_mut()
                .poll(cx);
        }
        let (dur, entry, waker) = (self.dur, self.entry, cx.waker());
        let state = with_current(|e| {
            let mut t = e.timers.borrow_mut();
            match entry {
                // Registered here before: still waiting, or gone, which means it fired.
                Some((eid, key)) if eid == id => t.update_waker(key, waker).then_some(key),
                _ => Some(t.insert_after(dur, waker.clone())),
            }
        });
        match state {
            Some(Some(key)) => {
                self.entry = Some((id, key));
                Poll::Pending
            }
            Some(None) => {
                self.entry = None;
                Poll::Ready(())
            }
            // No executor after all (cannot happen with a non-zero id): time it off-executor.
            None => {
                self.off_executor = Some(Box::pin(sleep(self.dur)));
                self.poll(cx)
            }
        }
    }
}

impl Drop for After {
    fn drop(&mut self) {
        if let Some((eid, turn, idx, _)) = self.deferred.take()
            && eid == current_exec_id()
        {
            with_current(|e| e.drop_deferred((turn, idx)));
        }
        cancel_timer(self.entry.take());
    }
}

/// A periodic timer: each [`Interval::tick`] completes one period after the previous deadline
/// (missed ticks are skipped, not bunched up).
pub struct Interval {
    period: std::time::Duration,
    next: Instant,
    sleep: Pin<Box<Sleep>>,
}

/// Creates an interval whose first tick completes immediately.
pub fn interval(period: std::time::Duration) -> Interval {
    let now = Instant::now();
    Interval {
        period: period.max(std::time::Duration::from_micros(1)),
        next: now,
        sleep: Box::pin(sleep_until(now)),
    }
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        self.sleep.as_mut().reset(self.next);
        self.sleep.as_mut().await;
        let at = self.next;
        let now = Instant::now();
        self.next += self.period;
        if self.next <= now {
            // Skip missed ticks.
            let behind = (now - self.next).as_nanos() / self.period.as_nanos() + 1;
            self.next += self.period * behind as u32;
        }
        at
    }
}

// ---------------------------------------------------------------------------------------------
// Join handles

struct JoinInner<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Waker>,
    task_waker: Option<Waker>,
    done: bool,
}

struct JoinState<T> {
    inner: Mutex<JoinInner<T>>,
    aborted: AtomicBool,
}

impl<T> JoinState<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, JoinInner<T>> {
        // Critical sections only move values; a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn complete(&self, r: Result<T, JoinError>) {
        let w = {
            let mut g = self.lock();
            if g.done {
                return;
            }
            g.done = true;
            g.result = Some(r);
            g.task_waker = None;
            g.waiter.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// An owned permission to await a spawned task's output.
///
/// Dropping the handle **cancels** the task (the future is dropped on its own worker at its next
/// turn); call [`JoinHandle::detach`] to let it run on unobserved. Awaiting gives
/// `Err(JoinError::Cancelled)` for an aborted task and `Err(JoinError::Panicked(msg))` for one that
/// panicked: a panic never takes the worker down.
pub struct JoinHandle<T> {
    state: Arc<JoinState<T>>,
    detached: bool,
}

impl<T> JoinHandle<T> {
    /// Cancels the task. Safe to call from any thread, any number of times.
    pub fn abort(&self) {
        self.state.aborted.store(true, Ordering::Release);
        let w = self.state.lock().task_waker.clone();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Lets the task run to completion without a handle.
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// True once the task has finished (value, panic or cancellation).
    pub fn is_finished(&self) -> bool {
        self.state.lock().done
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.detached && !self.state.lock().done {
            self.abort();
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.state.lock();
        if let Some(r) = g.result.take() {
            return Poll::Ready(r);
        }
        if g.done {
            // Result already taken by an earlier poll.
            return Poll::Ready(Err(JoinError::Cancelled));
        }
        match &g.waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The completing side of a join handle. Dropped without use, it completes the handle with
/// `Cancelled`, so an envelope lost at shutdown never leaves a join handle hanging.
pub(crate) struct JoinSlot<T>(Option<Arc<JoinState<T>>>);

impl<T> Drop for JoinSlot<T> {
    fn drop(&mut self) {
        if let Some(st) = self.0.take() {
            st.complete(Err(JoinError::Cancelled));
        }
    }
}

/// A fresh join handle and its completing side.
pub(crate) fn join_pair<T>() -> (JoinHandle<T>, JoinSlot<T>) {
    let state = Arc::new(JoinState {
        inner: Mutex::new(JoinInner {
            result: None,
            waiter: None,
            task_waker: None,
            done: false,
        }),
        aborted: AtomicBool::new(false),
    });
    (
        JoinHandle {
            state: state.clone(),
            detached: false,
        },
        JoinSlot(Some(state)),
    )
}

/// Wraps a future into a task body that reports to `slot`, honours abort and catches panics.
#[allow(clippy::manual_async_fn)] // the explicit `+ 'static` bound documents what spawn needs
pub(crate) fn task_with<F>(fut: F, slot: JoinSlot<F::Output>) -> impl Future<Output = ()> + 'static
where
    F: Future + 'static,
    F::Output: 'static,
{
    async move {
        // `slot` completes the handle with Cancelled if this body is dropped before the end.
        let st = slot.0.clone().expect("a fresh JoinSlot holds its state");
        let mut registered = false;
        let res = {
            let mut fut = std::pin::pin!(fut);
            std::future::poll_fn(|cx| {
                if st.aborted.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                if !registered {
                    st.lock().task_waker = Some(cx.waker().clone());
                    registered = true;
                }
                match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                    Ok(Poll::Ready(v)) => Poll::Ready(Some(Ok(v))),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(p) => {
                        let msg = panic_message(&*p);
                        tracing::error!(panic = %msg, "task panicked");
                        Poll::Ready(Some(Err(JoinError::Panicked(msg))))
                    }
                }
            })
            .await
            // The inner future is dropped here, on the owner thread, before completion is
            // reported.
        };
        match res {
            Some(r) => st.complete(r),
            None => st.complete(Err(JoinError::Cancelled)),
        }
        drop(slot);
    }
}

/// Spawns a task on the current worker (or `block_on` thread). The future need not be `Send`.
///
/// # Panics
/// When called outside a percore worker or `block_on`; use [`try_spawn_local`] to get an error
/// instead.
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match try_spawn_local(fut) {
        Ok(h) => h,
        Err(_) => panic!(
            "percore::runtime::spawn_local called outside a percore worker or Runtime::block_on"
        ),
    }
}

/// Like [`spawn_local`], but returns [`RuntimeError::NotInRuntime`] outside a runtime thread.
pub fn try_spawn_local<F>(fut: F) -> Result<JoinHandle<F::Output>, RuntimeError>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (handle, slot) = join_pair();
    let mut body = Some(task_with(fut, slot));
    with_current(|e| {
        if let Some(b) = body.take() {
            e.spawn_raw(Box::pin(b));
        }
    })
    .ok_or(RuntimeError::NotInRuntime)?;
    Ok(handle)
}

/// Spends one unit of the running task's cooperative budget (the one `tell` spends per send):
/// returns at once while budget is left, else yields first so the worker's other tasks and its
/// event loop get their turn. Call it in loops that make progress without ever waiting (a
/// producer whose sends are always accepted), so they cannot hold their worker. Outside a
/// worker it never yields.
pub async fn consume_budget() {
    std::future::poll_fn(poll_proceed).await
}

/// Yields once to let other tasks on this worker run.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Drives `fut` to completion on the calling thread with a fresh executor (used by
/// `Runtime::block_on`). Tasks spawned with [`spawn_local`] inside run on this thread too.
pub(crate) fn run_until<F: Future>(fut: F) -> F::Output {
    let notifier = Notifier::for_current_thread();
    let exec = Executor::new(notifier.clone(), None, None);
    let _guard = exec.enter();
    let main_woken = Arc::new(MainWake {
        flag: AtomicBool::new(true),
        notifier: notifier.clone(),
    });
    let waker = Waker::from(main_woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if main_woken.flag.swap(false, Ordering::AcqRel)
            && let Poll::Ready(v) = fut.as_mut().poll(&mut cx)
        {
            exec.cancel_all();
            return v;
        }
        let mut did = exec.drain_remote();
        did += exec.fire_timers(Instant::now());
        did += exec.run_ready(256);
        if did > 0 || main_woken.flag.load(Ordering::Acquire) {
            continue;
        }
        notifier.set_sleeping(true);
        if exec.shared.has_remote() || exec.has_ready() || main_woken.flag.load(Ordering::SeqCst) {
            notifier.set_sleeping(false);
            continue;
        }
        match exec.next_deadline() {
            Some(d) => {
                let now = Instant::now();
                if d > now {
                    std::thread::park_timeout(d - now);
                }
            }
            None => std::thread::park(),
        }
        notifier.set_sleeping(false);
    }
}

struct MainWake {
    flag: AtomicBool,
    notifier: Arc<Notifier>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        super::mesh::flush_current();
        self.flag.store(true, Ordering::SeqCst);
        self.notifier.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
