//! Hybrid pipelines and automatic placement: a [`Pipeline`] is a list of [`Stage`]s, each host
//! code (always CPU) or a [`Kernel`] placed on the CPU, the GPU, or automatically by size
//! against the measured [`Crossover`] of the device. The crossover store is per device (keyed by
//! adapter name, API and driver) and lives for the process. Owns the description and the
//! placement rule only: execution (and keeping data on the device between GPU stages) is the
//! worker's; it must not touch wgpu or threads.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::error::AccelError;
use super::task::{Kernel, Tensor};

/// Where a kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Place {
    /// On the worker's device: its GPU when it has one, else the CPU backend.
    #[default]
    Device,
    /// On the CPU backend.
    Cpu,
    /// On the GPU when the work is at or above the device's measured crossover, or when its
    /// input is already on the GPU (the previous pipeline stage ran there); else on the CPU.
    Auto,
}

/// Host code run as a pipeline stage (on the accelerator worker thread).
pub type HostFn = Arc<dyn Fn(Vec<Tensor>) -> Result<Vec<Tensor>, AccelError> + Send + Sync>;

/// One step of a [`Pipeline`]. A stage's inputs are the previous stage's outputs (the
/// pipeline's inputs for the first), followed by the stage's own extra inputs.
#[derive(Clone)]
pub enum Stage {
    /// Arbitrary host code (decode, parse, post-process): always on the CPU.
    Host {
        /// Name (logs, reports).
        name: String,
        /// The code.
        f: HostFn,
    },
    /// A kernel.
    Kernel {
        /// What to compute.
        kernel: Kernel,
        /// Inputs appended after the previous stage's outputs (weights, labels, ...).
        extra: Vec<Tensor>,
        /// Where it runs.
        place: Place,
    },
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Host { name, .. } => write!(f, "Host({name})"),
            Stage::Kernel {
                kernel,
                extra,
                place,
            } => write!(
                f,
                "Kernel({}, {} extra, {place:?})",
                kernel.name(),
                extra.len()
            ),
        }
    }
}

/// A sequence of stages run as one job on one accelerator worker. Consecutive stages that run
/// on the GPU are encoded into one submission and their intermediate results stay on the
/// device; only what a CPU stage (or the caller) needs is read back.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends host code.
    pub fn host(
        mut self,
        name: impl Into<String>,
        f: impl Fn(Vec<Tensor>) -> Result<Vec<Tensor>, AccelError> + Send + Sync + 'static,
    ) -> Pipeline {
        self.stages.push(Stage::Host {
            name: name.into(),
            f: Arc::new(f),
        });
        self
    }

    /// Appends a kernel stage.
    pub fn kernel(mut self, kernel: Kernel, extra: Vec<Tensor>, place: Place) -> Pipeline {
        self.stages.push(Stage::Kernel {
            kernel,
            extra,
            place,
        });
        self
    }
}

/// Where each stage of a finished pipeline ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Ran {
    /// On the GPU.
    Gpu,
    /// On the CPU (host stage or CPU placement).
    Cpu,
    /// Meant for the GPU, rerun on the CPU after a device failure.
    CpuFallback,
}

/// The measured point above which a kernel is worth offloading, for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossover {
    /// The device (`name | api | driver`).
    pub device: String,
    /// Smallest flop count at which the GPU (upload, dispatch, readback included) beat the CPU
    /// backend on every larger measured size; `None` when it never did.
    pub min_gpu_flops: Option<f64>,
    /// The measurements: `(n, cpu_us, gpu_us)` for an `n x n x n` matmul, best of a few runs.
    pub samples: Vec<(usize, f64, f64)>,
}

impl Crossover {
    /// The crossover of a worker without a GPU: never offload.
    pub fn cpu_only() -> Crossover {
        Crossover {
            device: "cpu".into(),
            min_gpu_flops: None,
            samples: Vec::new(),
        }
    }

    /// Derives the crossover from samples `(n, cpu_us, gpu_us)` sorted by `n`.
    pub fn from_samples(device: String, samples: Vec<(usize, f64, f64)>) -> Crossover {
        let mut min = None;
        for &(n, cpu, gpu) in samples.iter().rev() {
            if gpu < cpu {
                min = Some(2.0 * (n as f64).powi(3));
            } else {
                break;
            }
        }
        Crossover {
            device,
            min_gpu_flops: min,
            samples,
        }
    }

    /// True if work of `flops` should go to the GPU.
    pub fn offload(&self, flops: f64) -> bool {
        self.min_gpu_flops.is_some_and(|m| flops >= m)
    }
}

fn store() -> &'static Mutex<HashMap<String, Crossover>> {
    static S: OnceLock<Mutex<HashMap<String, Crossover>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The stored crossover of `device`, if measured in this process.
pub fn stored_crossover(device: &str) -> Option<Crossover> {
    store()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(device)
        .cloned()
}

/// Stores (or replaces) a device's crossover.
pub fn store_crossover(c: Crossover) {
    store()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(c.device.clone(), c);
}

/// Writes every stored crossover to `path` as JSON (so a later process can skip measuring).
pub fn save_crossovers(path: &std::path::Path) -> Result<usize, AccelError> {
    let all: Vec<Crossover> = store()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let text = serde_json::to_string_pretty(&all).map_err(|e| AccelError::Io(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| AccelError::Io(format!("{}: {e}", path.display())))?;
    Ok(all.len())
}

/// Loads crossovers saved by [`save_crossovers`] into the store (replacing entries of the same
/// devices). Returns how many were loaded.
pub fn load_crossovers(path: &std::path::Path) -> Result<usize, AccelError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AccelError::Io(format!("{}: {e}", path.display())))?;
    let all: Vec<Crossover> = serde_json::from_str(&text)
        .map_err(|e| AccelError::Io(format!("{}: {e}", path.display())))?;
    let n = all.len();
    for c in all {
        store_crossover(c);
    }
    Ok(n)
}
