//! Choosing the backend: `io_backend` / `PERCORE_IO` (`auto` probes io_uring once per process
//! and takes it only when every feature the backend needs is there), creating it, and raising
//! the soft `RLIMIT_NOFILE` so that connections are not capped at 1024. Owns the choice and its
//! reason; the loop owns the backend once made.

use std::io;

use super::mio_backend::MioBackend;
use super::uring::{BufRing, UringBackend};
use super::{BackendImpl, BackendKind};
use crate::runtime::config::IoBackend;
use crate::runtime::detect::{IoUringSupport, probe_io_uring};

/// Picks the backend for `choice`: (`kind`, why). `Auto` takes io_uring only when the probe
/// found everything the backend needs ([`IoUringSupport::missing_required`]); otherwise mio,
/// and the reason names what is missing (the runtime logs it in one line). An explicit `Uring`
/// is taken as asked: if the kernel lacks a required feature, creating the backend fails with
/// `Unsupported` naming it, and the runtime does not start (a typed `RuntimeError`, no silent
/// fallback).
pub(crate) fn resolve_backend(choice: IoBackend) -> (BackendKind, String) {
    match choice {
        IoBackend::Auto => resolve_auto(&probe_io_uring()),
        IoBackend::Mio => (BackendKind::Mio, "configured (io_backend = mio)".into()),
        IoBackend::Uring => (BackendKind::Uring, "configured (io_backend = uring)".into()),
    }
}

fn resolve_auto(p: &IoUringSupport) -> (BackendKind, String) {
    match p.missing_required() {
        None => (
            BackendKind::Uring,
            "auto: the io_uring probe found every required feature".into(),
        ),
        Some(missing) => (
            BackendKind::Mio,
            format!("auto: io_uring lacks {missing}; using mio"),
        ),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, once per process, and logs it: every
/// connection is a descriptor, and the soft limit is often 1024. (`max_connections`'
/// default is sized from the hard limit, see `Config`.)
pub(super) fn raise_nofile_limit() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is valid for writes; the result is checked.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        if lim.rlim_cur >= lim.rlim_max {
            tracing::debug!(
                limit = lim.rlim_cur,
                "RLIMIT_NOFILE already at its hard limit"
            );
            return;
        }
        let old = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard limit is
        // always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            tracing::info!(
                from = old,
                to = lim.rlim_cur,
                "raised the soft RLIMIT_NOFILE"
            );
        } else {
            tracing::warn!(
                soft = old,
                hard = lim.rlim_max,
                err = %io::Error::last_os_error(),
                "could not raise the soft RLIMIT_NOFILE"
            );
        }
    });
}

pub(super) fn make_backend(kind: BackendKind) -> io::Result<(BackendImpl, Option<BufRing>)> {
    match kind {
        BackendKind::Uring => {
            let (b, bufs) = UringBackend::new(super::uring::buf_ring_from_env())?;
            Ok((BackendImpl::Uring(b), bufs))
        }
        BackendKind::Mio => Ok((BackendImpl::Mio(MioBackend::new()?), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(multishot: bool, ops: &[&str]) -> IoUringSupport {
        IoUringSupport {
            available: true,
            reason: "kernel 5.15.0".into(),
            ops: ops.iter().map(|s| s.to_string()).collect(),
            multishot,
        }
    }

    #[test]
    fn auto_needs_every_required_feature() {
        let all = crate::runtime::detect::URING_REQUIRED_OPS;
        let (k, why) = resolve_auto(&probe(true, &all));
        assert_eq!(k, BackendKind::Uring, "{why}");

        let (k, why) = resolve_auto(&probe(false, &all));
        assert_eq!(k, BackendKind::Mio);
        assert!(why.contains("multishot"), "{why}");

        let (k, why) = resolve_auto(&probe(true, &["Accept", "Recv", "Send"]));
        assert_eq!(k, BackendKind::Mio);
        assert!(
            why.contains("Connect") && why.contains("AsyncCancel"),
            "{why}"
        );

        let mut off = probe(true, &all);
        off.available = false;
        off.reason = "io_uring_setup failed: EPERM".into();
        let (k, why) = resolve_auto(&off);
        assert_eq!(k, BackendKind::Mio);
        assert!(why.contains("EPERM"), "{why}");
    }

    #[test]
    fn this_kernel_passes_the_trial_arms() {
        // Kernel 6.0+ with io_uring allowed has multishot accept/recv (this machine: 6.18);
        // where io_uring is forbidden (containers) or too old, the probe says what is missing.
        let p = probe_io_uring();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let major: u32 = kernel.split('.').next().unwrap_or("0").parse().unwrap_or(0);
        if p.available && major >= 6 {
            assert!(p.multishot, "{p:?}");
            assert_eq!(p.missing_required(), None);
        } else if !p.available || !p.multishot {
            assert!(p.missing_required().is_some(), "{p:?}");
        }
    }
}
