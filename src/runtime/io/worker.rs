//! A dedicated I/O worker thread: pinned, attached to the mesh as an external node, it installs
//! an event loop and turns it until stopped, sleeping in the kernel when idle (woken through the
//! backend's eventfd / `mio::Waker` only when it sleeps). Owns the thread; the loop owns the rest.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::BackendKind;
use super::event_loop::{EventLoopStats, install, turn, uninstall};
use crate::runtime::{ExternalNode, Handle};

/// What the runtime keeps of a started I/O worker.
pub(crate) struct IoWorkerHandle {
    pub(crate) thread: std::thread::JoinHandle<()>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) wake: Arc<dyn Fn() + Send + Sync>,
    pub(crate) kind: BackendKind,
    pub(crate) stats: Arc<EventLoopStats>,
}

/// Starts dedicated I/O worker `index` with backend `kind` (falling back to mio, with a
/// warning, if an io_uring ring cannot be created while `may_fall_back`).
pub(crate) fn spawn(
    handle: Handle,
    index: usize,
    kind: BackendKind,
    may_fall_back: bool,
    pin: Option<usize>,
) -> io::Result<IoWorkerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(EventLoopStats::default());
    let (tx, rx) =
        std::sync::mpsc::channel::<io::Result<(BackendKind, Arc<dyn Fn() + Send + Sync>)>>();
    let stop2 = stop.clone();
    let stats2 = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("percore-io-{index}"))
        .spawn(move || {
            if let Some(cpu) = pin
                && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
            {
                tracing::warn!(
                    io_worker = index,
                    cpu,
                    "could not pin I/O worker; running unpinned"
                );
            }
            let node = match handle.attach_external(index) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.to_string())));
                    return;
                }
            };
            let (kind, raw_wake) = match install(index, node.id(), kind, may_fall_back) {
                Ok(x) => x,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let sleeping = Arc::new(AtomicBool::new(false));
            let s2 = sleeping.clone();
            let rw = raw_wake.clone();
            node.set_wake(Arc::new(move || {
                if s2.swap(false, Ordering::SeqCst) {
                    rw();
                }
            }));
            let _ = tx.send(Ok((kind, raw_wake)));
            drop(tx);
            let span = tracing::info_span!("io_worker", id = index, backend = %kind);
            let _g = span.enter();
            run_loop(node, &stop2, &sleeping, &stats2);
            uninstall();
        })?;
    let (kind, wake) = rx
        .recv()
        .map_err(|_| io::Error::other("I/O worker thread exited during start"))??;
    Ok(IoWorkerHandle {
        thread,
        stop,
        wake,
        kind,
        stats,
    })
}

fn run_loop(
    mut node: ExternalNode,
    stop: &AtomicBool,
    sleeping: &AtomicBool,
    stats: &EventLoopStats,
) {
    loop {
        // Closures from other threads (they reach the state through `with_io`).
        node.run_pending(1024);
        let stop_now = stop.load(Ordering::Acquire);
        let mut timeout = None;
        if node.has_pending() || stop_now {
            timeout = Some(Duration::ZERO);
        } else {
            sleeping.store(true, Ordering::SeqCst);
            if node.has_pending() {
                timeout = Some(Duration::ZERO);
            }
        }
        let r = turn(timeout, stats);
        sleeping.store(false, Ordering::SeqCst);
        if let Err(e) = r {
            tracing::error!(%e, "I/O worker poll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        node.flush();
        if stop_now {
            break;
        }
    }
    node.flush();
}
