//! [`Interval`]: a periodic timer that skips missed ticks instead of bunching them up.

use std::pin::Pin;
use std::time::Instant;

use super::sleep::{Sleep, sleep_until};

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
