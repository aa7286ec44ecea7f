//! Time: [`sleep`] / [`sleep_until`], [`timeout`] and [`Interval`], all served by the timer list
//! of the current executor (`timers`: a slab plus a min-heap, cancel in O(1)). Off a percore
//! executor they fall back to a helper thread, so they work anywhere. Owns timer futures and
//! the timer list; must not touch rings, mailboxes or sockets.
//!
//! ```
//! use percore::runtime::{Runtime, sleep, timeout};
//! use std::time::Duration;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let r = rt.block_on(async {
//!     sleep(Duration::from_millis(1)).await;
//!     timeout(Duration::from_millis(1), std::future::pending::<()>()).await
//! });
//! assert!(r.is_err());
//! ```

mod after;
mod interval;
mod sleep;
pub(crate) mod timers;

pub(crate) use after::After;
pub use after::{Elapsed, timeout};
pub use interval::{Interval, interval};
pub use sleep::{Sleep, sleep, sleep_until};

use super::executor::{current_exec_id, with_current};
use timers::TimerKey;

/// Cancels a timer registered as `entry` (executor id, key), if it belongs to this thread's
/// executor (a timer moved to another executor's task is left to fire harmlessly).
fn cancel_timer(entry: Option<(u64, TimerKey)>) {
    if let Some((exec_id, key)) = entry
        && exec_id == current_exec_id()
    {
        with_current(|e| e.timers.borrow_mut().cancel(key));
    }
}
