//! Helpers shared by the integration tests: every I/O configuration and a Testing runtime on it
//! (transport), test matrices (`accel`), a recording actor (`recorder`).
#![allow(dead_code)]

pub mod accel;
pub mod recorder;

use percore::runtime::Runtime;
use percore::runtime::config::{IoBackend, Profile};

/// Every (backend, co-located) pair the transport must work on.
pub fn modes() -> Vec<(IoBackend, bool)> {
    vec![
        (IoBackend::Uring, false),
        (IoBackend::Mio, false),
        (IoBackend::Uring, true),
        (IoBackend::Mio, true),
    ]
}

/// The Testing profile with `backend`, co-located or dedicated event loops (one I/O worker).
pub fn runtime(backend: IoBackend, colocated: bool) -> Runtime {
    Runtime::builder()
        .profile(Profile::Testing)
        .io_backend(backend)
        .io_colocated(colocated)
        .io_workers(1)
        .build()
        .expect("runtime starts")
}
