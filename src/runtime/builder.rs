//! The type-state runtime builder. It starts in [`NeedsProfile`], where the only moves are
//! choosing a profile ([`Builder::profile`], [`Builder::defaults`]) or reading it from the
//! environment ([`Builder::auto`]); only then ([`Ready`]) can values be set and the runtime be
//! built, so an unconfigured runtime cannot be built. Counts that must not be zero take
//! `NonZeroUsize`; everything else is checked by [`Config::validate`] with a typed error.
//! Owns the path from choices to a [`Config`]; starting threads is [`Runtime`]'s.
//!
//! ```
//! use percore::runtime::Runtime;
//! use percore::runtime::builder::Builder;
//! use percore::runtime::config::Profile;
//! use std::num::NonZeroUsize;
//!
//! let on_ci = std::env::var("CI").is_ok();
//! let rt = Builder::new()
//!     .profile(Profile::LowLatency)
//!     .app_workers(NonZeroUsize::new(2).unwrap())
//!     .when(on_ci, |b| b.pin(false))
//!     .build()
//!     .unwrap();
//! assert_eq!(rt.workers(), 2);
//! ```
//!
//! Setting values before a profile does not compile:
//!
//! ```compile_fail
//! use percore::runtime::builder::Builder;
//! let b = Builder::new().app_workers(std::num::NonZeroUsize::new(2).unwrap());
//! ```

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::Duration;

use super::config::{Config, ConfigError, IoBackend, Profile, plan_placement};
use super::detect::Hardware;
use super::error::RuntimeError;
use super::rt::Runtime;

/// Type state: no profile chosen yet.
#[derive(Debug)]
pub struct NeedsProfile;
/// Type state: a profile is chosen; values can be set and the runtime built.
#[derive(Debug)]
pub struct Ready;

/// Builds a [`Runtime`]; see the module docs.
#[derive(Debug)]
pub struct Builder<S> {
    hw: Option<Hardware>,
    cfg: Option<Config>,
    _state: PhantomData<S>,
}

impl Default for Builder<NeedsProfile> {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder<NeedsProfile> {
    /// A builder with nothing chosen.
    pub fn new() -> Self {
        Builder {
            hw: None,
            cfg: None,
            _state: PhantomData,
        }
    }

    /// Uses `hw` instead of detecting the machine (tests, or a detected value reused).
    pub fn hardware(mut self, hw: Hardware) -> Self {
        self.hw = Some(hw);
        self
    }

    /// Starts from `profile`'s defaults on this machine.
    pub fn profile(self, profile: Profile) -> Builder<Ready> {
        let hw = self.hw.unwrap_or_else(Hardware::detect);
        let cfg = Config::for_profile(profile, &hw);
        Builder {
            hw: Some(hw),
            cfg: Some(cfg),
            _state: PhantomData,
        }
    }

    /// Starts from the Production profile.
    pub fn defaults(self) -> Builder<Ready> {
        self.profile(Profile::Production)
    }

    /// Starts from the environment: `PERCORE_PROFILE` (else Production), then `PERCORE_CONFIG`
    /// and `PERCORE_*` overrides.
    pub fn auto(self) -> Result<Builder<Ready>, ConfigError> {
        let hw = self.hw.unwrap_or_else(Hardware::detect);
        let cfg = Config::from_env_with(&hw, |k| std::env::var(k).ok())?;
        Ok(Builder {
            hw: Some(hw),
            cfg: Some(cfg),
            _state: PhantomData,
        })
    }
}

impl Builder<Ready> {
    fn cfg(&mut self) -> &mut Config {
        self.cfg
            .as_mut()
            .expect("a Ready builder always holds a config")
    }

    fn set(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(self.cfg());
        self
    }

    /// Number of app workers.
    pub fn app_workers(self, n: NonZeroUsize) -> Self {
        self.set(|c| c.app_workers = n.get())
    }
    /// Number of I/O workers (0: none dedicated).
    pub fn io_workers(self, n: usize) -> Self {
        self.set(|c| c.io_workers = n)
    }
    /// Number of accelerator workers.
    pub fn accel_workers(self, n: usize) -> Self {
        self.set(|c| c.accel_workers = n)
    }
    /// Slots per SPSC ring (a power of two).
    pub fn ring_capacity(self, n: usize) -> Self {
        self.set(|c| c.ring_capacity = n)
    }
    /// Default mailbox bound.
    pub fn mailbox_capacity(self, n: NonZeroUsize) -> Self {
        self.set(|c| c.mailbox_capacity = n.get())
    }
    /// Pin workers to CPUs.
    pub fn pin(self, on: bool) -> Self {
        self.set(|c| c.pin_workers = on)
    }
    /// Place workers NUMA node by node.
    pub fn numa_aware(self, on: bool) -> Self {
        self.set(|c| c.numa_aware = on)
    }
    /// I/O event loop.
    pub fn io_backend(self, b: IoBackend) -> Self {
        self.set(|c| c.io_backend = b)
    }
    /// Accelerator backend policy (read by `accelerator::AccelOptions::for_runtime`).
    pub fn accel_backend(self, p: super::config::AccelPolicy) -> Self {
        self.set(|c| c.accel_backend = p)
    }
    /// Run an event loop on every app worker (true) or on dedicated I/O threads (false).
    pub fn io_colocated(self, on: bool) -> Self {
        self.set(|c| c.io_colocated = on)
    }
    /// Idle spin before sleeping.
    pub fn spin_before_park(self, d: Duration) -> Self {
        self.set(|c| c.spin_before_park = d)
    }
    /// Tasks polled per scheduler turn.
    pub fn tasks_per_tick(self, n: NonZeroUsize) -> Self {
        self.set(|c| c.tasks_per_tick = n.get())
    }
    /// Shutdown deadline.
    pub fn shutdown_timeout(self, d: Duration) -> Self {
        self.set(|c| c.shutdown_timeout = d)
    }
    /// Seed for anything randomised.
    pub fn seed(self, s: u64) -> Self {
        self.set(|c| c.seed = s)
    }
    /// Transport connection limit.
    pub fn max_connections(self, n: NonZeroUsize) -> Self {
        self.set(|c| c.max_connections = n.get())
    }

    /// Applies `f` only when `cond` holds.
    pub fn when(self, cond: bool, f: impl FnOnce(Self) -> Self) -> Self {
        if cond { f(self) } else { self }
    }

    /// The validated configuration (placement re-planned for the final worker counts).
    pub fn config(mut self) -> Result<Config, ConfigError> {
        let hw = self.hw.take().unwrap_or_else(Hardware::detect);
        let mut cfg = self
            .cfg
            .take()
            .expect("a Ready builder always holds a config");
        cfg.placement = plan_placement(&cfg, &hw);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Validates and starts the runtime.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        Runtime::start(self.config()?)
    }
}
