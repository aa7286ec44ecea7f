//! Adapter enumeration: [`adapters`] lists every wgpu adapter with its name, API, kind and the
//! limits the kernels care about, as plain serialisable [`AdapterInfo`] values (also built
//! without the `gpu` feature, where the list is always empty). Owns probing only: it opens no
//! device and must not touch workers, kernels or the runtime.

use std::fmt;

use serde::Serialize;

use super::policy::ApiSet;

/// What kind of device an adapter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A discrete GPU.
    Discrete,
    /// A GPU sharing memory with the CPU.
    Integrated,
    /// A virtualised GPU.
    Virtual,
    /// A software rasteriser running on the CPU (lavapipe, llvmpipe, WARP).
    Software,
    /// Unknown.
    Other,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Discrete => "discrete",
            DeviceKind::Integrated => "integrated",
            DeviceKind::Virtual => "virtual",
            DeviceKind::Software => "software",
            DeviceKind::Other => "other",
        })
    }
}

/// The limits of an adapter that decide what a compute task may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyLimits {
    /// Largest storage buffer one binding may cover, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Most workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Most invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup shared memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Storage buffers one shader stage may bind.
    pub max_storage_buffers_per_shader_stage: u32,
}

/// One wgpu adapter as found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdapterInfo {
    /// Device name as the driver reports it.
    pub name: String,
    /// The API (`vulkan`, `gl`, `metal`, `dx12`, …).
    pub backend: String,
    /// Device kind.
    pub kind: DeviceKind,
    /// Driver name and version, when reported.
    pub driver: String,
    /// PCI vendor id (0 when unknown).
    pub vendor: u32,
    /// PCI device id (0 when unknown).
    pub device: u32,
    /// Limits relevant to compute.
    pub limits: KeyLimits,
}

/// Counters of one device (pipeline cache and buffer pool effectiveness, batching).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GpuStats {
    /// Shader modules compiled (at most one per module).
    pub modules_compiled: u64,
    /// Buffers created.
    pub buffers_created: u64,
    /// Buffer requests served from the pool.
    pub buffers_reused: u64,
    /// Command submissions.
    pub submissions: u64,
    /// Kernels dispatched.
    pub dispatches: u64,
}

/// Every adapter on every API. Never panics; no adapter (or a build without the `gpu` feature)
/// gives an empty list.
pub fn adapters() -> Vec<AdapterInfo> {
    adapters_on(ApiSet::ALL)
}

/// Every adapter on the APIs in `apis`.
pub fn adapters_on(apis: ApiSet) -> Vec<AdapterInfo> {
    #[cfg(feature = "gpu")]
    {
        enumerate(apis, None)
            .into_iter()
            .map(|(info, _)| info)
            .collect()
    }
    #[cfg(not(feature = "gpu"))]
    {
        let _ = apis;
        Vec::new()
    }
}

#[cfg(feature = "gpu")]
pub(crate) fn instance(apis: ApiSet, memory_budget_percent: Option<u8>) -> wgpu::Instance {
    prepare_runtime_dir();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = apis.to_wgpu();
    desc.memory_budget_thresholds.for_resource_creation = memory_budget_percent;
    wgpu::Instance::new(desc)
}

#[cfg(feature = "gpu")]
pub(crate) fn info_of(adapter: &wgpu::Adapter) -> AdapterInfo {
    let i = adapter.get_info();
    let l = adapter.limits();
    AdapterInfo {
        name: i.name,
        backend: i.backend.to_string(),
        kind: match i.device_type {
            wgpu::DeviceType::DiscreteGpu => DeviceKind::Discrete,
            wgpu::DeviceType::IntegratedGpu => DeviceKind::Integrated,
            wgpu::DeviceType::VirtualGpu => DeviceKind::Virtual,
            wgpu::DeviceType::Cpu => DeviceKind::Software,
            wgpu::DeviceType::Other => DeviceKind::Other,
        },
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        vendor: i.vendor,
        device: i.device,
        limits: KeyLimits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        },
    }
}

/// Adapters with their wgpu handles. A panic inside a driver probe is contained and reported
/// as "no adapter".
#[cfg(feature = "gpu")]
pub(crate) fn enumerate(
    apis: ApiSet,
    memory_budget_percent: Option<u8>,
) -> Vec<(AdapterInfo, wgpu::Adapter)> {
    if apis == ApiSet::NONE {
        return Vec::new();
    }
    let probe = std::panic::catch_unwind(|| {
        let inst = instance(apis, memory_budget_percent);
        pollster::block_on(inst.enumerate_adapters(apis.to_wgpu()))
            .into_iter()
            .map(|a| (info_of(&a), a))
            .collect::<Vec<_>>()
    });
    match probe {
        Ok(v) => v,
        Err(_) => {
            tracing::warn!("wgpu adapter probe panicked; treating this machine as having no GPU");
            Vec::new()
        }
    }
}

/// Mesa's drivers print `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on
/// every adapter probe unless that variable names a directory the user owns with mode 0700.
/// Before the first probe, when the variable names a directory that does not exist yet, it is
/// created with mode 0700 (the repository's `.cargo/config.toml` points it at
/// `target/.xdg-runtime` for `cargo run` and `cargo test`). An unset variable is left alone: a
/// library must not change its process's environment while other threads may read it; the
/// `percore` binary sets one at the start of `main`, and [`private_runtime_dir`] tells an
/// application which directory to use.
pub fn prepare_runtime_dir() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") else {
            return;
        };
        let path = std::path::Path::new(&dir);
        if path.as_os_str().is_empty() || path.exists() {
            return;
        }
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            tracing::debug!(dir = %path.display(), error = %e, "could not create XDG_RUNTIME_DIR");
        }
    });
}

/// A private runtime directory for Mesa's drivers (created with mode 0700 under the system's
/// temporary directory, per user) when `XDG_RUNTIME_DIR` is unset or does not name a usable
/// directory; `None` when the environment already has a good one. Set it as `XDG_RUNTIME_DIR`
/// at the start of `main`, before other threads exist.
pub fn private_runtime_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let usable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o077 == 0)
    };
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| usable(std::path::Path::new(&d))) {
        return None;
    }
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("percore-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    usable(&dir).then_some(dir)
}
