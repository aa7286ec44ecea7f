//! Profiles and the resolved [`Config`]: smart defaults computed from the detected
//! [`Hardware`], then overrides from a TOML file and the environment. Every value's rule is
//! written on its field. Owns configuration only; the runtime reads it at start.
//!
//! ```
//! use percore::runtime::config::{Config, Profile};
//! use percore::runtime::detect::Hardware;
//!
//! let hw = Hardware::detect();
//! let mut cfg = Config::for_profile(Profile::LowLatency, &hw);
//! cfg.apply_env(|k| (k == "PERCORE_WORKERS").then(|| "1".to_string())).unwrap();
//! assert_eq!(cfg.app_workers, 1);
//! assert!(cfg.validate().is_ok());
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::detect::Hardware;

/// A documented set of defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Profile {
    /// Quick start-up on a laptop: up to 4 app workers, unpinned, short spin.
    Development,
    /// Deterministic: exactly 2 app workers, unpinned, fixed seed, 1 dedicated I/O worker.
    Testing,
    /// The default: one pinned app worker per physical core, moderate spin.
    Production,
    /// Production with a longer spin before parking and NUMA awareness.
    Performance,
    /// Small batches, small rings, long spin: lowest hand-off latency, more idle CPU.
    LowLatency,
    /// Big rings, mailboxes and batches: most messages per second.
    HighThroughput,
    /// One app worker, nothing dedicated, no spin.
    Minimal,
    /// Minimal with the smallest capacities, for constrained devices.
    Embedded,
}

impl Profile {
    /// Every profile, in documentation order.
    pub const ALL: [Profile; 8] = [
        Profile::Development,
        Profile::Testing,
        Profile::Production,
        Profile::Performance,
        Profile::LowLatency,
        Profile::HighThroughput,
        Profile::Minimal,
        Profile::Embedded,
    ];

    /// One line saying what the profile is for.
    pub fn description(self) -> &'static str {
        match self {
            Profile::Development => "quick start-up: up to 4 app workers, unpinned, short spin",
            Profile::Testing => {
                "deterministic: 2 app workers, unpinned, fixed seed, 1 dedicated I/O worker"
            }
            Profile::Production => "default: one pinned app worker per physical core, 50 us spin",
            Profile::Performance => "production plus 200 us spin and NUMA awareness",
            Profile::LowLatency => "small batches and rings, 1 ms spin: lowest hand-off latency",
            Profile::HighThroughput => {
                "large rings, mailboxes and batches: most messages per second"
            }
            Profile::Minimal => "one app worker, no dedicated I/O or accelerator worker, no spin",
            Profile::Embedded => "minimal with the smallest capacities",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Profile {
    type Err = ConfigError;
    /// Case-insensitive; `-` and `_` are ignored (`low-latency`, `LowLatency`, `lowlatency`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_lowercase();
        Profile::ALL
            .into_iter()
            .find(|p| format!("{p:?}").to_lowercase() == norm)
            .ok_or_else(|| ConfigError::Invalid {
                setting: "profile".into(),
                value: s.into(),
                expected: "one of development, testing, production, performance, low-latency, high-throughput, minimal, embedded".into(),
            })
    }
}

/// Which event loop the I/O workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring when the probe finds everything the backend needs (the opcodes, multishot
    /// accept and recv armed on trial), else mio, with one log line naming what is missing.
    Auto,
    /// io_uring (fails to start where the kernel or container forbids it).
    Uring,
    /// mio (epoll).
    Mio,
}

impl FromStr for IoBackend {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoBackend::Uring),
            "mio" | "epoll" => Ok(IoBackend::Mio),
            _ => Err(ConfigError::Invalid {
                setting: "io_backend".into(),
                value: s.into(),
                expected: "auto, uring or mio".into(),
            }),
        }
    }
}

/// Which backend the accelerator workers run compute tasks on. The runtime only carries the
/// choice; `accelerator::AccelOptions::for_runtime` reads it (the runtime knows no layer above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelPolicy {
    /// A discrete GPU, else an integrated one, else the CPU backend (software adapters such as
    /// lavapipe are skipped: slower than the CPU backend).
    Auto,
    /// Any wgpu adapter, software ones included (how tests exercise the WGSL kernels without
    /// a GPU); the CPU backend when there is none.
    Gpu,
    /// The CPU backend only.
    Cpu,
}

impl FromStr for AccelPolicy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "auto" => Ok(AccelPolicy::Auto),
            "gpu" => Ok(AccelPolicy::Gpu),
            "cpu" => Ok(AccelPolicy::Cpu),
            _ => Err(ConfigError::Invalid {
                setting: "accel_backend".into(),
                value: s.into(),
                expected: "auto, gpu or cpu".into(),
            }),
        }
    }
}

impl std::fmt::Display for AccelPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccelPolicy::Auto => "auto",
            AccelPolicy::Gpu => "gpu",
            AccelPolicy::Cpu => "cpu",
        })
    }
}

/// Which CPU each worker thread is pinned to (`None`: not pinned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// App workers.
    pub app: Vec<Option<usize>>,
    /// I/O workers.
    pub io: Vec<Option<usize>>,
    /// Accelerator workers.
    pub accel: Vec<Option<usize>>,
}

/// An invalid setting: names it, the value, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value out of range or unparsable.
    #[error("{setting}={value:?}: expected {expected}")]
    Invalid {
        /// The setting (env variable, TOML key or field).
        setting: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why (unknown keys are reported here too).
        reason: String,
    },
}

fn invalid(setting: &str, value: impl fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// The resolved configuration of a runtime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The profile the defaults came from.
    pub profile: Profile,
    /// App worker threads (1..=1024). Rule: Testing 2; Minimal/Embedded 1; Development
    /// min(physical cores, 4); the others one per usable physical core, minus the dedicated I/O
    /// and accelerator workers on machines with 8 or more cores.
    pub app_workers: usize,
    /// I/O worker threads for the transport (0..=64). Rule: Minimal/Embedded 0; Testing 1;
    /// otherwise 1, or cores / 8 on machines with 16 or more cores.
    pub io_workers: usize,
    /// Accelerator worker threads (0..=16). Rule: Minimal/Embedded 0, otherwise 1.
    pub accel_workers: usize,
    /// Pin each worker to its CPU. Rule: on for Production, Performance, LowLatency and
    /// HighThroughput; off for the others (tests and laptops share their cores).
    pub pin_workers: bool,
    /// Place app workers NUMA node by node. Rule: on for Performance, LowLatency and
    /// HighThroughput when the machine has more than one node.
    pub numa_aware: bool,
    /// Slots per SPSC ring between two workers (power of two, 2..=65536). Rule: 1024;
    /// HighThroughput 4096; LowLatency, Minimal 256; Embedded 64; then halved (not below 64)
    /// while the whole mesh — one ring per ordered pair of the `n` workers (app, I/O and
    /// accelerator), 32-byte slots, `n² × capacity × 32 B` — would take more than 1/64 of
    /// usable memory or 256 MiB. E.g. 64 workers with 1024 slots: 128 MiB, kept on 32 GiB,
    /// halved to 512 on 4 GiB; 256 workers on 1 TiB: 128 slots, 256 MiB (1024 would be 2 GiB).
    pub ring_capacity: usize,
    /// Default mailbox bound per actor (1..=2^24). Rule: 1024, 256 when there is less than
    /// 1 GiB of memory per core; HighThroughput 4096; LowLatency 256; Testing 1024;
    /// Embedded 64.
    pub mailbox_capacity: usize,
    /// How long an idle worker spins before sleeping (0..=10 s). Rule: Production 50 us,
    /// Performance 200 us, LowLatency 1 ms, HighThroughput 100 us, Development 20 us,
    /// Testing 50 us, Minimal/Embedded 0. Waking a sleeping worker from another core costs tens
    /// of microseconds; spinning trades idle CPU for that. A worker whose co-located event loop
    /// has sockets registered does not spin (the kernel wakes it for network events, and the
    /// spin took CPU from clients sharing the machine: see BENCHMARKS.md).
    pub spin_before_park: Duration,
    /// Tasks polled before the worker drains its rings again (1..=65536). Rule: 64;
    /// LowLatency 16; HighThroughput 256.
    pub tasks_per_tick: usize,
    /// Shutdown deadline. Rule: 10 s; Testing and Development 5 s.
    pub shutdown_timeout: Duration,
    /// I/O event loop. Rule: Auto.
    pub io_backend: IoBackend,
    /// Where the I/O event loops run. `true`: every app worker runs its own event loop between
    /// tasks (the Seastar/glommio layout; a request handed to an actor on the same core never
    /// crosses a thread), and `io_workers` is not used. `false`: `io_workers` dedicated
    /// threads. Rule: true below 8 cores (where a dedicated I/O thread would share a core with
    /// an app worker and pay a cross-thread wake-up per hand-off), false from 8 cores; Testing
    /// false (it exercises the dedicated path).
    pub io_colocated: bool,
    /// Accelerator backend policy (`PERCORE_ACCEL`, TOML `accel_backend`). Rule: Auto.
    pub accel_backend: AccelPolicy,
    /// Transport connection limit (1..=10^7). Rule: usable memory / 64 KiB, at most 1,000,000;
    /// Testing, Minimal and Embedded 1024; in every profile at most what the hard
    /// `RLIMIT_NOFILE` leaves after headroom for the runtime's own descriptors (limit − max(64,
    /// limit/8), at least 16), since each connection is a descriptor. The runtime raises the soft
    /// limit to the hard one when its event loops start. An explicit value is not clamped.
    pub max_connections: usize,
    /// Seed for anything randomised. Rule: Testing 0x5EED; otherwise from the clock and pid.
    pub seed: u64,
    /// Where each worker runs.
    pub placement: Placement,
}

/// The hard `RLIMIT_NOFILE` (`None`: unlimited or unknown).
fn nofile_hard_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is valid for writes; the result is checked.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_max == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(lim.rlim_max)
}

/// `default` connections, at most what `nofile` descriptors allow after headroom.
fn clamp_to_nofile(default: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return default;
    };
    let headroom = (limit / 8).max(64);
    let budget = limit.saturating_sub(headroom).max(16);
    default
        .min(usize::try_from(budget).unwrap_or(usize::MAX))
        .max(1)
}

impl Config {
    /// The defaults of `profile` on `hw`.
    pub fn for_profile(profile: Profile, hw: &Hardware) -> Config {
        use Profile::*;
        let cores = hw.physical_cores.min(hw.usable_cpus()).max(1);
        let mem_per_core = hw.usable_memory() / cores as u64;
        let io_workers = match profile {
            Minimal | Embedded => 0,
            Testing => 1,
            _ if cores >= 16 => cores / 8,
            _ => 1,
        };
        let accel_workers = match profile {
            Minimal | Embedded => 0,
            _ => 1,
        };
        let app_workers = match profile {
            Testing => 2,
            Minimal | Embedded => 1,
            Development => cores.min(4),
            _ if cores >= 8 => cores - io_workers - accel_workers,
            _ => cores,
        };
        let mut cfg = Config {
            profile,
            app_workers,
            io_workers,
            accel_workers,
            pin_workers: matches!(
                profile,
                Production | Performance | LowLatency | HighThroughput
            ),
            numa_aware: matches!(profile, Performance | LowLatency | HighThroughput)
                && hw.numa_nodes.len() > 1,
            ring_capacity: match profile {
                HighThroughput => 4096,
                LowLatency | Minimal => 256,
                Embedded => 64,
                _ => 1024,
            },
            mailbox_capacity: match profile {
                HighThroughput => 4096,
                LowLatency => 256,
                Embedded => 64,
                Testing => 1024,
                _ if mem_per_core < (1 << 30) => 256,
                _ => 1024,
            },
            spin_before_park: Duration::from_micros(match profile {
                Production | Testing => 50,
                Performance => 200,
                LowLatency => 1000,
                HighThroughput => 100,
                Development => 20,
                Minimal | Embedded => 0,
            }),
            tasks_per_tick: match profile {
                LowLatency => 16,
                HighThroughput => 256,
                _ => 64,
            },
            shutdown_timeout: Duration::from_secs(match profile {
                Testing | Development => 5,
                _ => 10,
            }),
            io_backend: IoBackend::Auto,
            accel_backend: AccelPolicy::Auto,
            io_colocated: cores < 8 && profile != Testing,
            max_connections: clamp_to_nofile(
                match profile {
                    Testing | Minimal | Embedded => 1024,
                    _ => ((hw.usable_memory() / (64 * 1024)) as usize).clamp(1024, 1_000_000),
                },
                nofile_hard_limit(),
            ),
            seed: match profile {
                Testing => 0x5EED,
                _ => {
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    t ^ ((std::process::id() as u64) << 32)
                }
            },
            placement: Placement {
                app: vec![],
                io: vec![],
                accel: vec![],
            },
        };
        cfg.ring_capacity = scale_ring_capacity(
            cfg.ring_capacity,
            cfg.app_workers + cfg.io_workers + cfg.accel_workers,
            hw.usable_memory(),
        );
        cfg.placement = plan_placement(&cfg, hw);
        cfg
    }

    /// Production defaults on the detected machine, then `PERCORE_CONFIG` and env overrides;
    /// the profile comes from `PERCORE_PROFILE` when set.
    pub fn auto() -> Result<Config, ConfigError> {
        Config::from_env_with(&Hardware::detect(), |k| std::env::var(k).ok())
    }

    /// Like [`Config::auto`] with injected hardware and environment (for tests).
    pub fn from_env_with(
        hw: &Hardware,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let profile = match env("PERCORE_PROFILE") {
            Some(p) => p.parse().map_err(|_| {
                invalid(
                    "PERCORE_PROFILE",
                    &p,
                    "one of development, testing, production, performance, low-latency, high-throughput, minimal, embedded",
                )
            })?,
            None => Profile::Production,
        };
        let mut cfg = Config::for_profile(profile, hw);
        if let Some(path) = env("PERCORE_CONFIG") {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            cfg.apply_toml(&text).map_err(|e| match e {
                ConfigError::File { reason, .. } => ConfigError::File {
                    path: path.clone(),
                    reason,
                },
                other => other,
            })?;
        }
        cfg.apply_env(env)?;
        cfg.placement = plan_placement(&cfg, hw);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `PERCORE_*` overrides read through `env`. Unset variables change nothing.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num(k: &str, v: &str, lo: u64, hi: u64) -> Result<u64, ConfigError> {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| invalid(k, v, &format!("an integer in {lo}..={hi}")))
        }
        let old = (self.app_workers, self.io_workers, self.accel_workers);
        if let Some(v) = env("PERCORE_WORKERS") {
            self.app_workers = num("PERCORE_WORKERS", &v, 1, 1024)? as usize;
        }
        if let Some(v) = env("PERCORE_IO_WORKERS") {
            self.io_workers = num("PERCORE_IO_WORKERS", &v, 0, 64)? as usize;
        }
        if let Some(v) = env("PERCORE_ACCEL_WORKERS") {
            self.accel_workers = num("PERCORE_ACCEL_WORKERS", &v, 0, 16)? as usize;
        }
        if let Some(v) = env("PERCORE_PIN") {
            self.pin_workers = match v.trim().to_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "PERCORE_PIN",
                        v,
                        "true or false (1/0, yes/no, on/off)",
                    ));
                }
            };
        }
        if let Some(v) = env("PERCORE_IO_COLOCATED") {
            self.io_colocated = match v.trim().to_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "PERCORE_IO_COLOCATED",
                        v,
                        "true or false (1/0, yes/no, on/off)",
                    ));
                }
            };
        }
        if let Some(v) = env("PERCORE_RING_CAPACITY") {
            self.ring_capacity = num("PERCORE_RING_CAPACITY", &v, 2, 65536)? as usize;
            if !self.ring_capacity.is_power_of_two() {
                return Err(invalid(
                    "PERCORE_RING_CAPACITY",
                    v,
                    "a power of two in 2..=65536",
                ));
            }
        }
        if let Some(v) = env("PERCORE_MAILBOX_CAPACITY") {
            self.mailbox_capacity = num("PERCORE_MAILBOX_CAPACITY", &v, 1, 1 << 24)? as usize;
        }
        if let Some(v) = env("PERCORE_IO") {
            self.io_backend = v
                .parse()
                .map_err(|_| invalid("PERCORE_IO", &v, "auto, uring or mio"))?;
        }
        if let Some(v) = env("PERCORE_ACCEL") {
            self.accel_backend = v
                .parse()
                .map_err(|_| invalid("PERCORE_ACCEL", &v, "auto, gpu or cpu"))?;
        }
        if let Some(v) = env("PERCORE_SPIN_US") {
            self.spin_before_park =
                Duration::from_micros(num("PERCORE_SPIN_US", &v, 0, 10_000_000)?);
        }
        if let Some(v) = env("PERCORE_SHUTDOWN_TIMEOUT_MS") {
            self.shutdown_timeout =
                Duration::from_millis(num("PERCORE_SHUTDOWN_TIMEOUT_MS", &v, 1, 3_600_000)?);
        }
        if let Some(v) = env("PERCORE_TASKS_PER_TICK") {
            self.tasks_per_tick = num("PERCORE_TASKS_PER_TICK", &v, 1, 65536)? as usize;
        }
        if let Some(v) = env("PERCORE_MAX_CONNECTIONS") {
            self.max_connections = num("PERCORE_MAX_CONNECTIONS", &v, 1, 10_000_000)? as usize;
        }
        if let Some(v) = env("PERCORE_SEED") {
            self.seed = num("PERCORE_SEED", &v, 0, u64::MAX)?;
        }
        if old != (self.app_workers, self.io_workers, self.accel_workers) {
            // Keep the plan's shape valid; callers holding the hardware re-plan (from_env_with
            // and the builder do).
            self.placement.app.resize(self.app_workers, None);
            self.placement.io.resize(self.io_workers, None);
            self.placement.accel.resize(self.accel_workers, None);
        }
        Ok(())
    }

    /// Applies a TOML document of overrides; keys are the field names (durations as
    /// `spin_before_park_us` and `shutdown_timeout_ms`). Unknown keys are an error.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            profile: Option<String>,
            app_workers: Option<u64>,
            io_workers: Option<u64>,
            accel_workers: Option<u64>,
            pin_workers: Option<bool>,
            numa_aware: Option<bool>,
            ring_capacity: Option<u64>,
            mailbox_capacity: Option<u64>,
            spin_before_park_us: Option<u64>,
            tasks_per_tick: Option<u64>,
            shutdown_timeout_ms: Option<u64>,
            io_backend: Option<String>,
            io_colocated: Option<bool>,
            accel_backend: Option<String>,
            max_connections: Option<u64>,
            seed: Option<u64>,
        }
        let f: File = toml::from_str(text).map_err(|e| ConfigError::File {
            path: "<toml>".into(),
            reason: e.to_string(),
        })?;
        if let Some(p) = f.profile {
            let p: Profile = p.parse()?;
            let hw = Hardware::detect();
            *self = Config::for_profile(p, &hw);
        }
        let set = |k: &str, v: Option<u64>| v.map(|n| (k.to_string(), n.to_string()));
        let pairs = [
            set("PERCORE_WORKERS", f.app_workers),
            set("PERCORE_IO_WORKERS", f.io_workers),
            set("PERCORE_ACCEL_WORKERS", f.accel_workers),
            set("PERCORE_RING_CAPACITY", f.ring_capacity),
            set("PERCORE_MAILBOX_CAPACITY", f.mailbox_capacity),
            set("PERCORE_SPIN_US", f.spin_before_park_us),
            set("PERCORE_TASKS_PER_TICK", f.tasks_per_tick),
            set("PERCORE_SHUTDOWN_TIMEOUT_MS", f.shutdown_timeout_ms),
            set("PERCORE_MAX_CONNECTIONS", f.max_connections),
            set("PERCORE_SEED", f.seed),
            f.io_backend.map(|v| ("PERCORE_IO".to_string(), v)),
            f.accel_backend.map(|v| ("PERCORE_ACCEL".to_string(), v)),
            f.pin_workers
                .map(|v| ("PERCORE_PIN".to_string(), v.to_string())),
            f.io_colocated
                .map(|v| ("PERCORE_IO_COLOCATED".to_string(), v.to_string())),
        ];
        // Same checks as the environment, reported with the TOML key name.
        let lookup = |k: &str| {
            pairs
                .iter()
                .flatten()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        self.apply_env(lookup).map_err(|e| match e {
            ConfigError::Invalid {
                setting,
                value,
                expected,
            } => ConfigError::Invalid {
                setting: toml_key(&setting).to_string(),
                value,
                expected,
            },
            other => other,
        })?;
        if let Some(n) = f.numa_aware {
            self.numa_aware = n;
        }
        Ok(())
    }

    /// Checks every invariant the runtime relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, setting: &str, value: String, expected: &str| {
            if ok {
                Ok(())
            } else {
                Err(invalid(setting, value, expected))
            }
        };
        check(
            (1..=1024).contains(&self.app_workers),
            "app_workers",
            self.app_workers.to_string(),
            "1..=1024",
        )?;
        check(
            self.io_workers <= 64,
            "io_workers",
            self.io_workers.to_string(),
            "0..=64",
        )?;
        check(
            self.accel_workers <= 16,
            "accel_workers",
            self.accel_workers.to_string(),
            "0..=16",
        )?;
        check(
            self.ring_capacity.is_power_of_two() && (2..=65536).contains(&self.ring_capacity),
            "ring_capacity",
            self.ring_capacity.to_string(),
            "a power of two in 2..=65536",
        )?;
        check(
            (1..=1 << 24).contains(&self.mailbox_capacity),
            "mailbox_capacity",
            self.mailbox_capacity.to_string(),
            "1..=16777216",
        )?;
        check(
            (1..=65536).contains(&self.tasks_per_tick),
            "tasks_per_tick",
            self.tasks_per_tick.to_string(),
            "1..=65536",
        )?;
        check(
            self.spin_before_park <= Duration::from_secs(10),
            "spin_before_park",
            format!("{:?}", self.spin_before_park),
            "at most 10 s",
        )?;
        check(
            !self.shutdown_timeout.is_zero(),
            "shutdown_timeout",
            "0".into(),
            "more than 0",
        )?;
        check(
            (1..=10_000_000).contains(&self.max_connections),
            "max_connections",
            self.max_connections.to_string(),
            "1..=10000000",
        )?;
        check(
            self.placement.app.len() == self.app_workers
                && self.placement.io.len() == self.io_workers
                && self.placement.accel.len() == self.accel_workers,
            "placement",
            format!(
                "{}/{}/{}",
                self.placement.app.len(),
                self.placement.io.len(),
                self.placement.accel.len()
            ),
            "one entry per app, I/O and accelerator worker",
        )?;
        Ok(())
    }
}

fn toml_key(env: &str) -> &str {
    match env {
        "PERCORE_WORKERS" => "app_workers",
        "PERCORE_IO_WORKERS" => "io_workers",
        "PERCORE_ACCEL_WORKERS" => "accel_workers",
        "PERCORE_RING_CAPACITY" => "ring_capacity",
        "PERCORE_MAILBOX_CAPACITY" => "mailbox_capacity",
        "PERCORE_SPIN_US" => "spin_before_park_us",
        "PERCORE_TASKS_PER_TICK" => "tasks_per_tick",
        "PERCORE_SHUTDOWN_TIMEOUT_MS" => "shutdown_timeout_ms",
        "PERCORE_MAX_CONNECTIONS" => "max_connections",
        "PERCORE_SEED" => "seed",
        "PERCORE_IO" => "io_backend",
        "PERCORE_ACCEL" => "accel_backend",
        "PERCORE_PIN" => "pin_workers",
        "PERCORE_IO_COLOCATED" => "io_colocated",
        other => other,
    }
}

/// The ring capacity rule's memory bound (see [`Config::ring_capacity`]): halves `base` (not
/// below 64) while `workers² × capacity × 32 B` exceeds min(memory / 64, 256 MiB).
fn scale_ring_capacity(base: usize, workers: usize, memory: u64) -> usize {
    const SLOT_BYTES: u64 = 32;
    const FLOOR: usize = 64;
    let budget = (memory / 64).min(256 << 20);
    let rings = (workers as u64).saturating_mul(workers as u64).max(1);
    let mut cap = base;
    while cap > FLOOR && rings.saturating_mul(cap as u64 * SLOT_BYTES) > budget {
        cap /= 2;
    }
    cap
}

/// Places workers on CPUs: app workers on distinct physical cores first (SMT siblings last),
/// NUMA node by node when `numa_aware`; then I/O and accelerator workers on the CPUs left, in
/// the same order. Workers beyond the machine's CPUs stay unpinned (`None`) rather than share a
/// CPU with a pinned one. Without pinning every entry is `None`.
pub fn plan_placement(cfg: &Config, hw: &Hardware) -> Placement {
    if !cfg.pin_workers {
        return Placement {
            app: vec![None; cfg.app_workers],
            io: vec![None; cfg.io_workers],
            accel: vec![None; cfg.accel_workers],
        };
    }
    let mut order = hw.placement_order();
    if cfg.numa_aware && hw.numa_nodes.len() > 1 {
        // Fill node 0's cores first, then node 1's, … (physical cores before siblings).
        let node_of = |c: usize| {
            hw.numa_nodes
                .iter()
                .position(|n| n.cpus.contains(&c))
                .unwrap_or(0)
        };
        let rank: std::collections::HashMap<usize, usize> =
            order.iter().enumerate().map(|(i, c)| (*c, i)).collect();
        order.sort_by_key(|c| (node_of(*c), rank[c]));
    }
    let mut free = order.into_iter();
    let app: Vec<Option<usize>> = (0..cfg.app_workers).map(|_| free.next()).collect();
    let io: Vec<Option<usize>> = (0..cfg.io_workers).map(|_| free.next()).collect();
    let accel: Vec<Option<usize>> = (0..cfg.accel_workers).map(|_| free.next()).collect();
    Placement { app, io, accel }
}

#[cfg(test)]
mod tests {

    #[test]
    fn default_max_connections_fits_the_fd_limit() {
        assert_eq!(super::clamp_to_nofile(1_000_000, None), 1_000_000);
        assert_eq!(super::clamp_to_nofile(1_000_000, Some(1024)), 896);
        assert_eq!(super::clamp_to_nofile(1024, Some(1 << 20)), 1024);
        assert_eq!(super::clamp_to_nofile(100_000, Some(65_536)), 57_344);
        assert_eq!(super::clamp_to_nofile(1024, Some(64)), 16);
    }

    use super::*;
    use std::path::Path;

    fn hw(cores: usize, smt: bool) -> Hardware {
        let mut h = Hardware::detect_from(Path::new("/nonexistent"));
        let per = if smt { 2 } else { 1 };
        h.logical_cpus = cores * per;
        h.cpu_ids = (0..cores * per).collect();
        h.smt_siblings = (0..cores)
            .map(|c| if smt { vec![c, c + cores] } else { vec![c] })
            .collect();
        h.physical_cores = cores;
        h.memory_total = 32 << 30;
        h.cgroup_cpu_limit = None;
        h.cgroup_memory_limit = None;
        h
    }

    #[test]
    fn ring_capacity_shrinks_with_the_mesh_and_memory() {
        // Small machines keep the profile's figure.
        assert_eq!(
            Config::for_profile(Profile::Production, &hw(8, false)).ring_capacity,
            1024
        );
        assert_eq!(scale_ring_capacity(1024, 64, 32 << 30), 1024); // 128 MiB
        assert_eq!(scale_ring_capacity(1024, 64, 4 << 30), 512); // 64 MiB budget
        assert_eq!(scale_ring_capacity(1024, 256, 1 << 40), 128); // 256 MiB cap
        assert_eq!(scale_ring_capacity(4096, 1024, 1 << 40), 64); // floor
        assert_eq!(scale_ring_capacity(64, 2, 1 << 20), 64); // never below the floor
        for cores in [2, 64, 256] {
            let h = hw(cores, true);
            for p in Profile::ALL {
                let c = Config::for_profile(p, &h);
                let n = (c.app_workers + c.io_workers + c.accel_workers) as u64;
                let mesh = n * n * c.ring_capacity as u64 * 32;
                assert!(
                    c.ring_capacity == 64 || mesh <= (h.usable_memory() / 64).min(256 << 20),
                    "{p:?} on {cores} cores: {mesh} B of rings"
                );
            }
        }
    }

    #[test]
    fn every_profile_is_valid_on_small_and_big_machines() {
        for cores in [1, 2, 4, 16, 64] {
            for smt in [false, true] {
                let h = hw(cores, smt);
                for p in Profile::ALL {
                    let c = Config::for_profile(p, &h);
                    c.validate()
                        .unwrap_or_else(|e| panic!("{p:?} on {cores} cores: {e}"));
                }
            }
        }
    }

    #[test]
    fn production_pins_app_workers_on_distinct_physical_cores() {
        let h = hw(16, true);
        let c = Config::for_profile(Profile::Production, &h);
        assert_eq!(c.io_workers, 2);
        assert_eq!(c.app_workers, 16 - 2 - 1);
        let app: Vec<usize> = c.placement.app.iter().map(|x| x.unwrap()).collect();
        assert!(
            app.iter().all(|c| *c < 16),
            "app workers avoid SMT siblings: {app:?}"
        );
        let mut all: Vec<usize> = c
            .placement
            .app
            .iter()
            .chain(&c.placement.io)
            .chain(&c.placement.accel)
            .flatten()
            .copied()
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            n,
            "no CPU holds two workers when there are enough"
        );
    }

    #[test]
    fn testing_is_deterministic() {
        let a = Config::for_profile(Profile::Testing, &hw(8, false));
        let b = Config::for_profile(Profile::Testing, &hw(64, true));
        assert_eq!((a.app_workers, a.seed, a.pin_workers), (2, 0x5EED, false));
        assert_eq!(a, b);
    }

    #[test]
    fn profiles_parse_loosely_and_reject_garbage() {
        assert_eq!(
            "low-latency".parse::<Profile>().unwrap(),
            Profile::LowLatency
        );
        assert_eq!(
            "HIGH_THROUGHPUT".parse::<Profile>().unwrap(),
            Profile::HighThroughput
        );
        assert!("fast".parse::<Profile>().is_err());
    }

    #[test]
    fn env_overrides_and_typed_errors() {
        let h = hw(4, false);
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = Config::from_env_with(
            &h,
            env(&[
                ("PERCORE_PROFILE", "minimal"),
                ("PERCORE_MAILBOX_CAPACITY", "77"),
            ]),
        )
        .unwrap();
        assert_eq!(c.profile, Profile::Minimal);
        assert_eq!(c.mailbox_capacity, 77);
        let e = Config::from_env_with(&h, env(&[("PERCORE_WORKERS", "0")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PERCORE_WORKERS=\"0\": expected an integer in 1..=1024"
        );
        let e = Config::from_env_with(&h, env(&[("PERCORE_RING_CAPACITY", "1000")])).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = Config::from_env_with(&h, env(&[("PERCORE_IO", "kqueue")])).unwrap_err();
        assert!(e.to_string().contains("auto, uring or mio"), "{e}");
        let c = Config::from_env_with(&h, env(&[("PERCORE_ACCEL", " GPU ")])).unwrap();
        assert_eq!(c.accel_backend, AccelPolicy::Gpu);
        let e = Config::from_env_with(&h, env(&[("PERCORE_ACCEL", "tpu")])).unwrap_err();
        assert!(
            e.to_string().starts_with("PERCORE_ACCEL=\"tpu\"")
                && e.to_string().contains("auto, gpu or cpu"),
            "{e}"
        );
        let e = Config::from_env_with(&h, env(&[("PERCORE_PROFILE", "turbo")])).unwrap_err();
        assert!(
            e.to_string().starts_with("PERCORE_PROFILE=\"turbo\""),
            "{e}"
        );
    }

    #[test]
    fn toml_overrides_and_unknown_keys() {
        let mut c = Config::for_profile(Profile::Production, &hw(4, false));
        c.apply_toml("mailbox_capacity = 99\nio_backend = \"mio\"\nspin_before_park_us = 0\naccel_backend = \"cpu\"\n")
            .unwrap();
        assert_eq!(c.mailbox_capacity, 99);
        assert_eq!(c.io_backend, IoBackend::Mio);
        assert_eq!(c.accel_backend, AccelPolicy::Cpu);
        let e = c.apply_toml("accel_backend = \"tpu\"").unwrap_err();
        assert!(e.to_string().starts_with("accel_backend=\"tpu\""), "{e}");
        assert_eq!(c.spin_before_park, Duration::ZERO);
        let e = c.apply_toml("mailbox_capacity = 0").unwrap_err();
        assert!(e.to_string().starts_with("mailbox_capacity=\"0\""), "{e}");
        let e = c.apply_toml("mailboxes = 3").unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e}");
    }

    #[test]
    fn config_file_via_env() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("percore.toml");
        std::fs::write(&p, "ring_capacity = 512\n").unwrap();
        let path = p.to_string_lossy().to_string();
        let c = Config::from_env_with(&hw(2, false), |k| {
            (k == "PERCORE_CONFIG").then(|| path.clone())
        })
        .unwrap();
        assert_eq!(c.ring_capacity, 512);
        let e = Config::from_env_with(&hw(2, false), |k| {
            (k == "PERCORE_CONFIG").then(|| "/nonexistent.toml".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent.toml"), "{e}");
    }
}
