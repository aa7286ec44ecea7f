//! What a supervisor is told: [`Strategy`], [`RestartPolicy`], [`Intensity`], [`Backoff`],
//! [`SupervisorSpec`] and [`ChildSpec`]. Plain values with documented defaults; the decisions
//! made from them are `supervisor.rs`'s.

use std::time::Duration;

/// Which children restart when one fails (OTP's restart strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child restarts.
    #[default]
    OneForOne,
    /// Every child restarts (for children that only make sense together).
    OneForAll,
    /// The failed child and the children started after it restart (for children that depend
    /// on their elders).
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always, even after a normal stop ([`Context::stop`](crate::runtime::Context::stop)).
    #[default]
    Permanent,
    /// Only after a failure (panic, error, kill, linked failure).
    Transient,
    /// Never.
    Temporary,
}

/// Restart intensity: more than `max_restarts` restarts within `period` and the supervisor
/// gives up: it stops its children and fails, escalating to its parent.
///
/// The default, 3 restarts in 5 s, is OTP's: enough to ride out a transient fault, few enough
/// that a child crashing at every start is noticed within seconds rather than spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 3,
            period: Duration::from_secs(5),
        }
    }
}

/// Delay between restarts: the first restart within the intensity window is immediate (a
/// one-off fault costs no wait); the k-th consecutive one waits `initial * multiplier^(k-2)`,
/// capped at `max`, each spread by ±`jitter` (a fraction) so that children failing together do
/// not restart in lock step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Backoff {
    /// The delay before the second restart within the window.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Growth per further restart (at least 1).
    pub multiplier: f64,
    /// Relative spread, 0.0 to 1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// No delay at all.
    pub fn none() -> Self {
        Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
        }
    }

    /// The delay before restart number `k` (1-based) within the window; `unit` in [0, 1)
    /// draws the jitter.
    pub fn delay(&self, k: usize, unit: f64) -> Duration {
        if k <= 1 {
            return Duration::ZERO;
        }
        let grow = self.multiplier.max(1.0).powi((k - 2).min(64) as i32);
        let base = (self.initial.as_secs_f64() * grow).min(self.max.as_secs_f64());
        let j = self.jitter.clamp(0.0, 1.0);
        let spread = base * (1.0 + j * (2.0 * unit.clamp(0.0, 1.0) - 1.0));
        Duration::from_secs_f64(spread.clamp(0.0, self.max.as_secs_f64() * (1.0 + j)))
    }
}

/// How a supervisor behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorSpec {
    /// Shown in logs, reports and the dashboard.
    pub name: String,
    /// See [`Strategy`].
    pub strategy: Strategy,
    /// See [`Intensity`].
    pub intensity: Intensity,
    /// See [`Backoff`].
    pub backoff: Backoff,
    /// How the supervisor itself is restarted by its parent.
    pub restart: RestartPolicy,
}

impl SupervisorSpec {
    /// A spec with `strategy` and the defaults (3 restarts in 5 s, 10 ms → 1 s back-off,
    /// permanent).
    pub fn new(name: impl Into<String>, strategy: Strategy) -> Self {
        SupervisorSpec {
            name: name.into(),
            strategy,
            intensity: Intensity::default(),
            backoff: Backoff::default(),
            restart: RestartPolicy::Permanent,
        }
    }

    /// One-for-one with the defaults.
    pub fn one_for_one(name: impl Into<String>) -> Self {
        Self::new(name, Strategy::OneForOne)
    }

    /// One-for-all with the defaults.
    pub fn one_for_all(name: impl Into<String>) -> Self {
        Self::new(name, Strategy::OneForAll)
    }

    /// Rest-for-one with the defaults.
    pub fn rest_for_one(name: impl Into<String>) -> Self {
        Self::new(name, Strategy::RestForOne)
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }

    /// Sets the back-off between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets how the parent restarts this supervisor.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }
}

/// How one supervised actor is run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSpec {
    /// Shown in reports (defaults to the actor's name).
    pub name: Option<String>,
    /// See [`RestartPolicy`].
    pub restart: RestartPolicy,
    /// Mailbox bound (defaults to the profile's).
    pub capacity: Option<usize>,
}

impl ChildSpec {
    /// A permanent child.
    pub fn permanent() -> Self {
        ChildSpec::default()
    }

    /// A transient child (restarted after failures only).
    pub fn transient() -> Self {
        ChildSpec {
            restart: RestartPolicy::Transient,
            ..Default::default()
        }
    }

    /// A temporary child (never restarted).
    pub fn temporary() -> Self {
        ChildSpec {
            restart: RestartPolicy::Temporary,
            ..Default::default()
        }
    }

    /// Names the child in reports.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the mailbox bound.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_first_restart_immediate_then_grows_to_the_cap() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(b.delay(1, 0.5), Duration::ZERO);
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(10));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(20));
        assert_eq!(b.delay(4, 0.5), Duration::from_millis(40));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(1));
        let j = Backoff::default();
        let lo = j.delay(2, 0.0).as_secs_f64();
        let hi = j.delay(2, 0.999_999).as_secs_f64();
        assert!(
            (lo - 0.008).abs() < 1e-6 && (hi - 0.012).abs() < 1e-5,
            "{lo} {hi}"
        );
        assert_eq!(Backoff::none().delay(5, 0.3), Duration::ZERO);
    }
}
