//! Cooperative scheduling: every poll of a task spends from a budget of sends (128, like
//! tokio's); a spent budget makes the task yield and ends its worker's turn early, so that one
//! streaming task cannot keep its worker from its rings, timers and other tasks. Owns only the
//! thread-local budget; the executor arms it around each poll ([`budgeted`]).

use std::cell::Cell;
use std::task::{Context, Poll};

thread_local! {
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

/// Runs `poll` (one poll of a task) with a fresh budget; returns its result and whether the
/// task yielded because the budget ran out (the worker's turn then ends early).
#[inline]
pub(super) fn budgeted<R>(poll: impl FnOnce() -> R) -> (R, bool) {
    BUDGET.with(|b| b.set(TASK_BUDGET));
    let r = poll();
    BUDGET.with(|b| b.set(UNLIMITED));
    (r, BUDGET_YIELDED.with(|y| y.replace(false)))
}

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
