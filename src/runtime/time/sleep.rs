//! [`Sleep`]: a future that completes at a deadline, registered in the current executor's timer
//! list at its first poll and removed when dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use super::cancel_timer;
use super::timers::TimerKey;
use crate::runtime::executor::{current_exec_id, with_current};

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
