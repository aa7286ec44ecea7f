//! [`RetryPolicy`] and [`retry`]: repeat a fallible async call with exponential back-off and
//! jitter, for the errors the policy names; [`Addr::ask_with_retry`](crate::runtime::Addr::ask_with_retry)
//! applies it to `ask`. Owns retry timing only; the call decides what an attempt is.
//!
//! ```
//! use percore::runtime::retry::{RetryPolicy, retry};
//! use percore::runtime::Runtime;
//! use std::time::Duration;
//!
//! let rt = Runtime::testing(1).unwrap();
//! let policy = RetryPolicy::new(3).backoff(Duration::from_millis(1), Duration::from_millis(10));
//! let r: Result<u32, &str> = rt.block_on(retry(&policy, |attempt| async move {
//!     if attempt < 2 { Err("flaky") } else { Ok(attempt) }
//! }));
//! assert_eq!(r, Ok(2));
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::error::AskError;

/// Which errors are worth another attempt.
type Predicate<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// How often and how patiently to retry.
pub struct RetryPolicy<E = AskError> {
    /// Attempts in all (the first included), at least 1.
    pub attempts: u32,
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per attempt (at least 1).
    pub multiplier: f64,
    /// Relative spread of each delay, 0.0 to 1.0.
    pub jitter: f64,
    retry_on: Predicate<E>,
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        RetryPolicy {
            attempts: self.attempts,
            initial: self.initial,
            max: self.max,
            multiplier: self.multiplier,
            jitter: self.jitter,
            retry_on: self.retry_on.clone(),
        }
    }
}

impl<E> std::fmt::Debug for RetryPolicy<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("attempts", &self.attempts)
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .finish()
    }
}

impl<E> RetryPolicy<E> {
    /// `attempts` attempts in all, retrying every error, 10 ms doubling to 1 s, ±20 % jitter.
    pub fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
            retry_on: Arc::new(|_| true),
        }
    }

    /// Sets the first delay and the cap.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the growth per attempt.
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m.max(1.0);
        self
    }

    /// Sets the jitter (0.0 to 1.0).
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j.clamp(0.0, 1.0);
        self
    }

    /// Retries only errors for which `f` is true.
    pub fn retry_on(mut self, f: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.retry_on = Arc::new(f);
        self
    }

    /// The delay after failed attempt `n` (0-based), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let d = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(n.min(64) as i32);
        Duration::from_secs_f64(d.min(self.max.as_secs_f64()))
    }
}

impl RetryPolicy<AskError> {
    /// For `ask`: retries timeouts and lost replies (a supervised actor restarting drops the
    /// request it failed on), not `Stopped` (the actor is gone for good).
    pub fn for_ask(attempts: u32) -> Self {
        RetryPolicy::new(attempts)
            .retry_on(|e| matches!(e, AskError::Timeout(_) | AskError::NoReply))
    }
}

/// A cheap per-call jitter source (decorrelates retries; nothing depends on its quality).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Calls `f(attempt)` until it succeeds, the policy's predicate refuses the error, or the
/// attempts run out; waits the policy's back-off between attempts (on the runtime's timers,
/// so call it on a worker or inside `block_on`). Returns the last error.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy<E>, mut f: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let seed = seed();
    let mut attempt = 0;
    loop {
        match f(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                attempt += 1;
                match policy.pause(attempt, &e, seed) {
                    Some(d) => super::time::sleep(d).await,
                    None => return Err(e),
                }
            }
        }
    }
}

pub(crate) fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl<E> RetryPolicy<E> {
    /// After `failed` attempts ending in `e`: the wait before the next one, or `None` to give
    /// up.
    pub(crate) fn pause(&self, failed: u32, e: &E, seed: u64) -> Option<Duration> {
        if failed >= self.attempts || !(self.retry_on)(e) {
            return None;
        }
        let base = self.delay(failed - 1).as_secs_f64();
        let d = base * (1.0 + self.jitter * (2.0 * unit(seed ^ failed as u64) - 1.0));
        tracing::debug!(attempt = failed, delay_ms = d * 1e3, "retrying");
        Some(Duration::from_secs_f64(d.max(0.0)))
    }
}
