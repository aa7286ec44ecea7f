//! [`CircuitBreaker`]: stops calling a failing dependency for a while. Closed → open after N
//! consecutive failures or a failure rate over the last calls; open → half-open after a
//! cool-down; half-open lets a budget of probe calls through and closes after that many
//! successes (one failure re-opens). Usable around any async call (an `ask`, the HTTP client,
//! a file read); its state and counts are in `/metrics` when made through
//! [`MetricsRegistry::circuit_breaker`](crate::runtime::user_metrics::MetricsRegistry::circuit_breaker).
//! Owns the state machine only.
//!
//! ```
//! use percore::runtime::breaker::{BreakerConfig, BreakerError, CircuitBreaker};
//! use std::time::Duration;
//!
//! let b = CircuitBreaker::new("db", BreakerConfig::default().consecutive_failures(2));
//! let fail = || async { Err::<(), _>("down") };
//! pollster_free_block_on(async {
//!     assert!(matches!(b.call(fail()).await, Err(BreakerError::Inner("down"))));
//!     assert!(matches!(b.call(fail()).await, Err(BreakerError::Inner("down"))));
//!     // Open now: calls are refused without being made.
//!     assert!(matches!(b.call(fail()).await, Err(BreakerError::Open { .. })));
//! });
//! # fn pollster_free_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     percore::runtime::Runtime::testing(1).unwrap().block_on(f)
//! # }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row (0: never for this reason).
    pub consecutive_failures: u32,
    /// Open when the failure fraction over the last `window` calls reaches this (1.0 or more:
    /// never for this reason); judged only once `window` calls have been made.
    pub failure_rate: f64,
    /// Calls the failure rate is computed over.
    pub window: u32,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Probe calls allowed at once while half-open; that many successes close it.
    pub probes: u32,
}

impl Default for BreakerConfig {
    /// 5 failures in a row or half of the last 20 calls; open 5 s; 1 probe.
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            open_for: Duration::from_secs(5),
            probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Sets [`BreakerConfig::consecutive_failures`].
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }
    /// Sets [`BreakerConfig::failure_rate`] over `window` calls.
    pub fn failure_rate(mut self, rate: f64, window: u32) -> Self {
        self.failure_rate = rate;
        self.window = window.max(1);
        self
    }
    /// Sets [`BreakerConfig::open_for`].
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }
    /// Sets [`BreakerConfig::probes`] (at least 1).
    pub fn probes(mut self, n: u32) -> Self {
        self.probes = n.max(1);
        self
    }
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused.
    Open,
    /// A budget of probe calls goes through.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open (the metric's value).
    pub fn code(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A call refused or failed through a breaker.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BreakerError<E> {
    /// The breaker is open: the call was not made.
    #[error("circuit breaker {name:?} is open; retry in {retry_in:?}")]
    Open {
        /// The breaker.
        name: String,
        /// Until it lets a probe through.
        retry_in: Duration,
    },
    /// The call was made and failed.
    #[error(transparent)]
    Inner(E),
}

struct Inner {
    state: BreakerState,
    consecutive: u32,
    recent: VecDeque<bool>,
    opened_at: Instant,
    probes_out: u32,
    probe_successes: u32,
}

pub(crate) struct Core {
    pub(crate) name: String,
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) opened: AtomicU64,
}

/// A circuit breaker; clones share the state.
#[derive(Clone)]
pub struct CircuitBreaker(pub(crate) Arc<Core>);

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.0.name)
            .field("state", &self.state())
            .finish()
    }
}

/// The right to make one call through a breaker: report how it went.
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit {
    core: Arc<Core>,
    probe: bool,
    done: bool,
}

impl Permit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.done = true;
        self.core.record(true, self.probe);
    }
    /// The call failed.
    pub fn failure(mut self) {
        self.done = true;
        self.core.record(false, self.probe);
    }
}

impl Drop for Permit {
    /// A permit dropped without an outcome (its call was cancelled) frees its probe slot and
    /// counts as nothing.
    fn drop(&mut self) {
        if !self.done && self.probe {
            let mut g = self.core.lock();
            g.probes_out = g.probes_out.saturating_sub(1);
        }
    }
}

impl Core {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Transitions assign whole fields: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, g: &mut Inner) {
        g.state = BreakerState::Open;
        g.opened_at = Instant::now();
        g.probes_out = 0;
        g.probe_successes = 0;
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(breaker = %self.name, "circuit breaker opened");
    }

    fn record(&self, ok: bool, probe: bool) {
        if ok {
            self.successes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = self.lock();
        match g.state {
            BreakerState::HalfOpen if probe => {
                g.probes_out = g.probes_out.saturating_sub(1);
                if ok {
                    g.probe_successes += 1;
                    if g.probe_successes >= self.cfg.probes {
                        g.state = BreakerState::Closed;
                        g.consecutive = 0;
                        g.recent.clear();
                        tracing::info!(breaker = %self.name, "circuit breaker closed");
                    }
                } else {
                    self.open(&mut g);
                }
            }
            BreakerState::Closed => {
                g.consecutive = if ok { 0 } else { g.consecutive + 1 };
                g.recent.push_back(!ok);
                while g.recent.len() > self.cfg.window as usize {
                    g.recent.pop_front();
                }
                let failed = g.recent.iter().filter(|f| **f).count();
                let by_count = self.cfg.consecutive_failures > 0
                    && g.consecutive >= self.cfg.consecutive_failures;
                let by_rate = self.cfg.failure_rate < 1.0
                    && g.recent.len() >= self.cfg.window as usize
                    && failed as f64 / g.recent.len() as f64 >= self.cfg.failure_rate;
                if by_count || by_rate {
                    self.open(&mut g);
                }
            }
            // Outcomes of calls admitted before the state changed do not move it.
            _ => {}
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(name: impl Into<String>, cfg: BreakerConfig) -> Self {
        CircuitBreaker(Arc::new(Core {
            name: name.into(),
            cfg,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                recent: VecDeque::new(),
                opened_at: Instant::now(),
                probes_out: 0,
                probe_successes: 0,
            }),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }))
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The state now (an open breaker whose cool-down has passed reads half-open).
    pub fn state(&self) -> BreakerState {
        let g = self.0.lock();
        match g.state {
            BreakerState::Open if g.opened_at.elapsed() >= self.0.cfg.open_for => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// Asks to make one call: a [`Permit`] to report its outcome on, or `Open`.
    pub fn try_acquire(&self) -> Result<Permit, BreakerError<std::convert::Infallible>> {
        let mut g = self.0.lock();
        if g.state == BreakerState::Open {
            let since = g.opened_at.elapsed();
            if since < self.0.cfg.open_for {
                drop(g);
                self.0.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(BreakerError::Open {
                    name: self.0.name.clone(),
                    retry_in: self.0.cfg.open_for - since,
                });
            }
            g.state = BreakerState::HalfOpen;
            g.probes_out = 0;
            g.probe_successes = 0;
        }
        let probe = g.state == BreakerState::HalfOpen;
        if probe {
            if g.probes_out >= self.0.cfg.probes {
                drop(g);
                self.0.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(BreakerError::Open {
                    name: self.0.name.clone(),
                    retry_in: Duration::ZERO,
                });
            }
            g.probes_out += 1;
        }
        Ok(Permit {
            core: self.0.clone(),
            probe,
            done: false,
        })
    }

    /// Makes the call `fut` through the breaker: refused at once while open; an `Err` counts
    /// as a failure.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(|e| match e {
            BreakerError::Open { name, retry_in } => BreakerError::Open { name, retry_in },
            BreakerError::Inner(never) => match never {},
        })?;
        match fut.await {
            Ok(v) => {
                permit.success();
                Ok(v)
            }
            Err(e) => {
                permit.failure();
                Err(BreakerError::Inner(e))
            }
        }
    }

    /// Calls made and succeeded, failed, and refused while open.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.0.successes.load(Ordering::Relaxed),
            self.0.failures.load(Ordering::Relaxed),
            self.0.rejected.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(b: &CircuitBreaker) -> bool {
        match b.try_acquire() {
            Ok(p) => {
                p.success();
                true
            }
            Err(_) => false,
        }
    }
    fn fail(b: &CircuitBreaker) -> bool {
        match b.try_acquire() {
            Ok(p) => {
                p.failure();
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_half_opens_and_closes_after_the_probes() {
        let b = CircuitBreaker::new(
            "t",
            BreakerConfig::default()
                .consecutive_failures(3)
                .failure_rate(1.0, 10)
                .open_for(Duration::from_millis(30))
                .probes(2),
        );
        assert!(fail(&b) && fail(&b) && ok(&b), "a success resets the run");
        assert!(fail(&b) && fail(&b) && fail(&b));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!ok(&b), "open: refused");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err(), "probe budget of 2");
        p1.success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p2.success();
        assert_eq!(b.state(), BreakerState::Closed);
        // A failed probe re-opens.
        assert!(fail(&b) && fail(&b) && fail(&b));
        std::thread::sleep(Duration::from_millis(40));
        assert!(fail(&b));
        assert_eq!(b.state(), BreakerState::Open);
        let (s, f, r) = b.counts();
        assert_eq!((s, f, r), (3, 9, 2));
    }

    #[test]
    fn opens_on_failure_rate_over_the_window_and_a_dropped_probe_frees_its_slot() {
        let b = CircuitBreaker::new(
            "r",
            BreakerConfig::default()
                .consecutive_failures(0)
                .failure_rate(0.5, 4)
                .open_for(Duration::from_millis(20)),
        );
        assert!(ok(&b) && fail(&b) && ok(&b));
        assert_eq!(b.state(), BreakerState::Closed, "3 calls < window");
        assert!(fail(&b));
        assert_eq!(b.state(), BreakerState::Open, "2 of 4 failed");
        std::thread::sleep(Duration::from_millis(30));
        drop(b.try_acquire().unwrap());
        assert!(ok(&b), "the dropped probe's slot is free again");
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
