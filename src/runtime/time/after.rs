//! [`timeout`] and the relative timer behind it ([`After`], also used by `ask`): registered
//! without a clock read, and by a percore task only if it is still waiting at the end of the
//! scheduler turn, so a request answered within the turn costs no timer at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::cancel_timer;
use super::sleep::{Sleep, sleep};
use super::timers::TimerKey;
use crate::runtime::executor::{current_exec_id, with_current};

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
