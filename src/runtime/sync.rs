//! The synchronisation primitives of the lock-free protocols that have loom models: std's
//! normally, loom's under `--cfg loom` (so `cargo test` with `RUSTFLAGS="--cfg loom"` explores
//! their interleavings). Only the protocol cores use these; everything else uses std directly.

#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, fence};
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current as current_thread};

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, fence};
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current as current_thread};
