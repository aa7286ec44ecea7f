//! # percore
//!
//! A shared-nothing, thread-per-core actor runtime. Each app worker is an OS thread pinned to
//! one core that runs its own single-threaded executor and owns its partition of state; workers
//! talk over a mesh of lock-free SPSC rings. On top of the runtime sit the transport (network
//! I/O workers), storage, accelerator (wgpu compute with a CPU backend) and ml layers.
//!
//! Dependencies point down: `runtime` ← `transport`, `storage`, `accelerator` ← `ml`.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod accelerator;
pub mod ml;
pub mod runtime;
pub mod storage;
pub mod transport;

/// The README's code blocks, compiled as doctests so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
