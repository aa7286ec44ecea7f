//! Accelerator: dedicated accelerator workers that own a wgpu device (or the CPU backend) and run
//! compute tasks submitted by actors. Uses only the public API of `crate::runtime`; must not
//! import transport, storage or ml.
//!
//! Modules, one concept each:
//! - [`error`]: [`AccelError`], the typed errors of the layer.
//! - [`policy`]: [`AccelBackend`] (`auto`/`gpu`/`cpu`, `PERCORE_ACCEL`), [`AccelOptions`] and
//!   the pure selection rule [`choose`].
//! - [`device`]: adapter enumeration ([`adapters`]) for `percore info`.
//! - [`task`]: [`ComputeTask`], [`Kernel`], [`Tensor`] and the shape rules all backends share.
//! - [`cpu`]: the CPU backend (matrixmultiply GEMM, scoped threads).
//! - [`wgsl`]: the WGSL kernels.
//! - `gpu` (feature `gpu`): one wgpu device with its pipeline cache, buffer pool and batching.
//! - [`ticket`]: [`Ticket`], the awaitable / pollable handle on submitted work.
//! - [`pipeline`]: hybrid [`Pipeline`]s, [`Place`]ment and the per-device [`Crossover`].
//! - [`accel`]: [`Accel`] (the [`Accelerator`] actors use), the front of the layer.
//! - `queue`: a worker's priority queue and batching rule.
//! - `worker`: one accelerator worker thread and its device; `calibrate` (the crossover)
//!   and `pipeline_run` (pipeline execution) are its parts.
//!
//! ```
//! use percore::accelerator::{
//!     Accel, AccelBackend, AccelOptions, ComputeTask, Kernel, Ran, Reduce, Tensor,
//! };
//!
//! // The builder's policy wins over `PERCORE_ACCEL`; `Gpu` would also take lavapipe.
//! let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap();
//! let x = Tensor::f32(2, 3, vec![1.0, 5.0, 2.0, 7.0, 0.0, 7.0]).unwrap();
//! let out = accel
//!     .submit(ComputeTask::new(Kernel::Reduce(Reduce::ArgMax), vec![x]))
//!     .wait() // on an app worker: `.await`
//!     .unwrap();
//! assert_eq!(out.tensors[0].as_u32(), Some(&[1u32, 0][..])); // first index on ties
//! assert_eq!(out.ran, Ran::Cpu);
//! ```

#![deny(unsafe_code)]

pub mod cpu;
pub mod device;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod policy;
mod sgemm;
pub mod task;
pub mod wgsl;

pub use device::{AdapterInfo, DeviceKind, KeyLimits, adapters, adapters_on};
pub use error::AccelError;
pub use policy::{AccelBackend, AccelOptions, ApiSet, Selection, choose};
pub use task::{
    Activation, AdamParams, BinaryOp, ComputeTask, DType, Kernel, Priority, Reduce, Shape, Tensor,
    TensorData, UnaryOp,
};
pub mod accel;
mod calibrate;
pub mod pipeline;
mod pipeline_run;
mod queue;
pub mod ticket;
mod worker;

#[allow(deprecated)]
pub use accel::WorkerStats;
pub use accel::{Accel, AccelWorkerStats, Accelerator, Output, PipelineOutput};
pub use pipeline::{Crossover, Pipeline, Place, Ran, Stage};
pub use ticket::Ticket;
