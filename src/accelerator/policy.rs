//! Backend selection: the [`AccelBackend`] policy (builder, `PERCORE_ACCEL`), the set of wgpu
//! APIs to probe ([`ApiSet`]), the options a worker starts from ([`AccelOptions`]) and the pure
//! decision [`choose`] from a list of adapters. Owns the policy only: it opens no device and
//! must not touch worker threads or kernels.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::device::{AdapterInfo, DeviceKind};
use super::error::AccelError;

/// Which backend runs compute tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelBackend {
    /// A discrete GPU, else an integrated GPU, else the CPU backend. Software adapters
    /// (lavapipe, llvmpipe) are never picked: they are slower than the CPU backend.
    #[default]
    Auto,
    /// Any wgpu adapter, best kind first (discrete, integrated, virtual, software). With no
    /// adapter at all, tasks run on the CPU backend after one warning.
    Gpu,
    /// The CPU backend only.
    Cpu,
}

impl AccelBackend {
    /// The policy named by `PERCORE_ACCEL` read through `env` (unset: `Auto`).
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Result<Self, AccelError> {
        match env("PERCORE_ACCEL") {
            None => Ok(AccelBackend::Auto),
            Some(v) => v.parse().map_err(|_| AccelError::InvalidSetting {
                setting: "PERCORE_ACCEL".into(),
                value: v,
                expected: "auto, gpu or cpu",
            }),
        }
    }

    /// The policy named by the process environment's `PERCORE_ACCEL` (unset: `Auto`).
    pub fn from_env() -> Result<Self, AccelError> {
        Self::from_env_with(|k| std::env::var(k).ok())
    }
}

impl FromStr for AccelBackend {
    type Err = AccelError;
    /// `auto`, `gpu` or `cpu`, case-insensitive, surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // One parser for the policy names: the runtime config's.
        match s.parse::<crate::runtime::config::AccelPolicy>() {
            Ok(p) => Ok(p.into()),
            Err(_) => Err(AccelError::InvalidSetting {
                setting: "accel backend".into(),
                value: s.into(),
                expected: "auto, gpu or cpu",
            }),
        }
    }
}

impl fmt::Display for AccelBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelBackend::Auto => "auto",
            AccelBackend::Gpu => "gpu",
            AccelBackend::Cpu => "cpu",
        })
    }
}

/// A set of wgpu APIs to probe for adapters. Restricting it to an API this machine has no
/// driver for (for example [`ApiSet::METAL`] on Linux) hides every adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiSet(u8);

impl ApiSet {
    /// Vulkan.
    pub const VULKAN: ApiSet = ApiSet(1);
    /// OpenGL / GLES (EGL).
    pub const GL: ApiSet = ApiSet(2);
    /// Metal.
    pub const METAL: ApiSet = ApiSet(4);
    /// Direct3D 12.
    pub const DX12: ApiSet = ApiSet(8);
    /// Every API.
    pub const ALL: ApiSet = ApiSet(15);
    /// No API: no adapter is ever found.
    pub const NONE: ApiSet = ApiSet(0);

    /// Union of two sets.
    pub const fn union(self, other: ApiSet) -> ApiSet {
        ApiSet(self.0 | other.0)
    }

    /// True if every API of `other` is in `self`.
    pub const fn contains(self, other: ApiSet) -> bool {
        self.0 & other.0 == other.0
    }

    #[cfg(feature = "gpu")]
    pub(crate) fn to_wgpu(self) -> wgpu::Backends {
        let mut b = wgpu::Backends::empty();
        if self.contains(Self::VULKAN) {
            b |= wgpu::Backends::VULKAN;
        }
        if self.contains(Self::GL) {
            b |= wgpu::Backends::GL;
        }
        if self.contains(Self::METAL) {
            b |= wgpu::Backends::METAL;
        }
        if self.contains(Self::DX12) {
            b |= wgpu::Backends::DX12;
        }
        b
    }
}

impl FromStr for ApiSet {
    type Err = AccelError;
    /// A comma-separated list of `vulkan`, `gl`, `metal`, `dx12` (also `all`, `none`), the
    /// syntax of `WGPU_BACKEND`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = ApiSet::NONE;
        for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            set = set.union(match part.as_str() {
                "vulkan" | "vk" => ApiSet::VULKAN,
                "gl" | "gles" | "opengl" => ApiSet::GL,
                "metal" | "mtl" => ApiSet::METAL,
                "dx12" | "d3d12" => ApiSet::DX12,
                "all" | "primary" => ApiSet::ALL,
                "none" | "" => ApiSet::NONE,
                _ => {
                    return Err(AccelError::InvalidSetting {
                        setting: "WGPU_BACKEND".into(),
                        value: s.into(),
                        expected: "a comma-separated list of vulkan, gl, metal, dx12",
                    });
                }
            });
        }
        Ok(set)
    }
}

/// How accelerator workers choose and use their device.
#[derive(Debug, Clone, PartialEq)]
pub struct AccelOptions {
    /// The selection policy.
    pub backend: AccelBackend,
    /// The wgpu APIs probed for adapters.
    pub apis: ApiSet,
    /// Threads the CPU backend splits large kernels across (at least 1).
    pub cpu_threads: usize,
    /// Most tasks encoded into one GPU command submission.
    pub max_batch: usize,
    /// A task whose buffers total at most this many bytes may share a submission with others.
    pub small_task_bytes: u64,
    /// A task for the CPU backend below this many flops ([`Kernel::flops`](super::Kernel::flops))
    /// runs inline on the submitting thread, its ticket ready at once, instead of crossing to
    /// the worker thread and back (a 64³ matmul, 0.5 Mflop, took 7 µs and the round trip as
    /// long again). `0.0` sends everything to the worker.
    pub inline_cpu_flops: f64,
    /// A JSON file of measured crossovers ([`Crossover`](super::Crossover)): loaded when a
    /// worker starts (when it exists) and rewritten after each calibration, so the measurement
    /// is made once per machine. `PERCORE_ACCEL_CROSSOVER_FILE`.
    pub crossover_file: Option<std::path::PathBuf>,
    /// Device memory budget, in percent of what the driver reports (wgpu's
    /// `for_resource_creation` threshold; Vulkan with `VK_EXT_memory_budget` only): a buffer
    /// that would take the heap past it fails as out-of-memory, and the task reruns on the
    /// CPU. `None`: no limit of ours. Drivers without the extension (lavapipe in Mesa 22.3,
    /// GL) ignore it.
    pub memory_budget_percent: Option<u8>,
}

impl Default for AccelOptions {
    fn default() -> Self {
        AccelOptions {
            backend: AccelBackend::Auto,
            apis: ApiSet::ALL,
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_batch: 32,
            small_task_bytes: 1 << 20,
            memory_budget_percent: None,
            crossover_file: None,
            inline_cpu_flops: (1u64 << 20) as f64,
        }
    }
}

impl From<crate::runtime::config::AccelPolicy> for AccelBackend {
    fn from(p: crate::runtime::config::AccelPolicy) -> Self {
        use crate::runtime::config::AccelPolicy;
        match p {
            AccelPolicy::Auto => AccelBackend::Auto,
            AccelPolicy::Gpu => AccelBackend::Gpu,
            AccelPolicy::Cpu => AccelBackend::Cpu,
        }
    }
}

impl AccelOptions {
    /// The options a runtime's configuration asks for: its `accel_backend` (which already
    /// carries `PERCORE_ACCEL`, the TOML file and the builder, in that precedence), then
    /// `WGPU_BACKEND` and `PERCORE_ACCEL_CROSSOVER_FILE` from the process environment.
    ///
    /// ```
    /// use percore::accelerator::{AccelBackend, AccelOptions};
    /// use percore::runtime::config::AccelPolicy;
    /// use percore::runtime::Runtime;
    ///
    /// let rt = Runtime::builder()
    ///     .profile(percore::runtime::config::Profile::Testing)
    ///     .accel_backend(AccelPolicy::Cpu)
    ///     .build()
    ///     .unwrap();
    /// let opts = AccelOptions::for_runtime(rt.handle().config()).unwrap();
    /// assert_eq!(opts.backend, AccelBackend::Cpu);
    /// ```
    pub fn for_runtime(cfg: &crate::runtime::config::Config) -> Result<Self, AccelError> {
        let mut o = Self::from_env_with(|k| match k {
            // The runtime's config already resolved this one.
            "PERCORE_ACCEL" => None,
            k => std::env::var(k).ok(),
        })?;
        o.backend = cfg.accel_backend.into();
        Ok(o)
    }

    /// Defaults, then `PERCORE_ACCEL` and `WGPU_BACKEND` from the process environment.
    pub fn from_env() -> Result<Self, AccelError> {
        Self::from_env_with(|k| std::env::var(k).ok())
    }

    /// Like [`AccelOptions::from_env`] with an injected environment (for tests).
    pub fn from_env_with(env: impl Fn(&str) -> Option<String>) -> Result<Self, AccelError> {
        let mut o = AccelOptions {
            backend: AccelBackend::from_env_with(&env)?,
            ..AccelOptions::default()
        };
        if let Some(v) = env("WGPU_BACKEND") {
            o.apis = v.parse()?;
        }
        if let Some(v) = env("PERCORE_ACCEL_CROSSOVER_FILE") {
            o.crossover_file = Some(v.into());
        }
        Ok(o)
    }

    /// Sets the policy (builder style).
    pub fn backend(mut self, b: AccelBackend) -> Self {
        self.backend = b;
        self
    }

    /// Sets the probed APIs (builder style).
    pub fn apis(mut self, apis: ApiSet) -> Self {
        self.apis = apis;
        self
    }

    /// Sets the inline threshold for CPU tasks (builder style; see the field).
    pub fn inline_cpu_flops(mut self, flops: f64) -> Self {
        self.inline_cpu_flops = flops;
        self
    }

    /// Sets the device memory budget in percent (builder style; see the field).
    pub fn memory_budget_percent(mut self, p: Option<u8>) -> Self {
        self.memory_budget_percent = p.map(|p| p.min(100));
        self
    }

    /// Sets the CPU backend's thread count (builder style; 0 is taken as 1).
    pub fn cpu_threads(mut self, n: usize) -> Self {
        self.cpu_threads = n.max(1);
        self
    }
}

/// What [`choose`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index into the adapter list of the chosen GPU, `None` for the CPU backend.
    pub adapter: Option<usize>,
    /// Why, in one sentence (logged once when a worker starts).
    pub reason: String,
    /// True when the caller asked for a GPU and gets the CPU backend: logged as a warning.
    pub degraded: bool,
}

fn rank(kind: DeviceKind) -> u8 {
    match kind {
        DeviceKind::Discrete => 0,
        DeviceKind::Integrated => 1,
        DeviceKind::Virtual => 2,
        DeviceKind::Software => 3,
        DeviceKind::Other => 4,
    }
}

/// Applies `policy` to `adapters` (in enumeration order; ties keep the first).
pub fn choose(policy: AccelBackend, adapters: &[AdapterInfo]) -> Selection {
    let best = |allowed: &dyn Fn(DeviceKind) -> bool| {
        adapters
            .iter()
            .enumerate()
            .filter(|(_, a)| allowed(a.kind))
            .min_by_key(|(i, a)| (rank(a.kind), *i))
            .map(|(i, _)| i)
    };
    match policy {
        AccelBackend::Cpu => Selection {
            adapter: None,
            reason: "policy cpu: the CPU backend was asked for".into(),
            degraded: false,
        },
        AccelBackend::Auto => {
            match best(&|k| matches!(k, DeviceKind::Discrete | DeviceKind::Integrated)) {
                Some(i) => Selection {
                    adapter: Some(i),
                    reason: format!(
                        "policy auto: {} GPU {:?} ({})",
                        adapters[i].kind, adapters[i].name, adapters[i].backend
                    ),
                    degraded: false,
                },
                None => Selection {
                    adapter: None,
                    reason: if adapters.is_empty() {
                        "policy auto: no wgpu adapter found; using the CPU backend".into()
                    } else {
                        format!(
                            "policy auto: no discrete or integrated GPU among {} adapter(s) ({}); software adapters are slower than the CPU backend (PERCORE_ACCEL=gpu forces them)",
                            adapters.len(),
                            adapters
                                .iter()
                                .map(|a| format!("{:?} {}", a.name, a.kind))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    degraded: false,
                },
            }
        }
        AccelBackend::Gpu => match best(&|_| true) {
            Some(i) => Selection {
                adapter: Some(i),
                reason: format!(
                    "policy gpu: best adapter {:?} ({}, {})",
                    adapters[i].name, adapters[i].kind, adapters[i].backend
                ),
                degraded: false,
            },
            None => Selection {
                adapter: None,
                reason: "policy gpu: no wgpu adapter found; tasks run on the CPU backend".into(),
                degraded: true,
            },
        },
    }
}
