//! Helpers shared by the integration tests: every I/O configuration and a Testing runtime on it
//! (transport), test matrices (`accel`), a recording actor (`recorder`).
#![allow(dead_code)]

pub mod accel;
pub mod logbuf;
pub mod recorder;
pub mod storage;

use percore::runtime::Runtime;
use percore::runtime::config::{IoBackend, Profile};

/// An event loop to test on: a backend, or io_uring with its plain-recv fallback forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring with provided buffer rings (where the kernel has them).
    Uring,
    /// mio (epoll).
    Mio,
    /// io_uring receiving with plain `Recv` into owned buffers (the fallback for kernels
    /// without buffer rings), forced with `IoCtx::use_buffer_ring(false)`.
    UringPlainRecv,
}

impl From<IoBackend> for Backend {
    fn from(b: IoBackend) -> Self {
        match b {
            IoBackend::Mio => Backend::Mio,
            IoBackend::Uring | IoBackend::Auto => Backend::Uring,
        }
    }
}

/// Every (backend, co-located) pair the transport must work on (the plain-recv fallback once,
/// on dedicated loops), less the io_uring ones where io_uring is unusable (see [`usable`]).
pub fn modes() -> Vec<(Backend, bool)> {
    vec![
        (Backend::Uring, false),
        (Backend::Mio, false),
        (Backend::Uring, true),
        (Backend::Mio, true),
        (Backend::UringPlainRecv, false),
    ]
    .into_iter()
    .filter(|(b, _)| usable(*b))
    .collect()
}

/// Whether tests can run on `backend` here: mio always; io_uring unless the probe finds it
/// unusable (a container that forbids it, an old kernel), which is said once on stderr so
/// that those cases are skipped and mio still runs. `PERCORE_TEST_REQUIRE_URING=1` (CI) makes
/// an unusable io_uring a failure instead.
pub fn usable(backend: impl Into<Backend>) -> bool {
    if backend.into() == Backend::Mio {
        return true;
    }
    let Some(missing) = percore::runtime::detect::probe_io_uring().missing_required() else {
        return true;
    };
    assert!(
        std::env::var_os("PERCORE_TEST_REQUIRE_URING").is_none(),
        "io_uring is required here but lacks {missing}"
    );
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("io_uring lacks {missing}: its test cases are skipped"));
    false
}

/// A self-signed certificate for `name` and its key, both PEM (test TLS set-ups).
pub fn self_signed(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// The Testing profile with `backend`, co-located or dedicated event loops (one I/O worker).
pub fn runtime(backend: impl Into<Backend>, colocated: bool) -> Runtime {
    runtime_with(backend, colocated, 1)
}

/// [`runtime`] with `io_workers` dedicated I/O threads (when not co-located).
pub fn runtime_with(backend: impl Into<Backend>, colocated: bool, io_workers: usize) -> Runtime {
    let backend = backend.into();
    let rt = Runtime::builder()
        .profile(Profile::Testing)
        .io_backend(match backend {
            Backend::Mio => IoBackend::Mio,
            Backend::Uring | Backend::UringPlainRecv => IoBackend::Uring,
        })
        .io_colocated(colocated)
        .io_workers(io_workers)
        .build()
        .expect("runtime starts");
    if backend == Backend::UringPlainRecv {
        plain_recv(&rt);
    }
    rt
}

/// Turns the provided buffer ring off on every event loop of `rt` (before any handler runs)
/// and checks that it is off.
pub fn plain_recv(rt: &Runtime) {
    let h = rt.handle();
    for i in 0..h.io_workers() {
        let (tx, rx) = std::sync::mpsc::channel();
        h.run_on_io(i, move |ctx| {
            let on = ctx.use_buffer_ring(false);
            let _ = tx.send(!on && !ctx.uses_buffer_ring());
        })
        .expect("I/O loop exists");
        let off = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("I/O loop answers");
        assert!(off, "buffer ring still on for loop {i}");
    }
}

/// Whether the external client `program` runs here (`program version_arg` succeeds). CI sets
/// `PERCORE_TEST_REQUIRE_CLIENTS=1`: a missing client then fails the test instead of skipping
/// it; elsewhere the skip is said on stderr.
pub fn client_available(program: &str, version_arg: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("PERCORE_TEST_REQUIRE_CLIENTS").map_or(true, |v| v != "1"),
            "{program} is required here (PERCORE_TEST_REQUIRE_CLIENTS=1) but does not run"
        );
        eprintln!("note: {program} is not installed: skipping its part (CI installs it)");
    }
    ok
}
