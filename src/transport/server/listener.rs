//! Listening sockets and the placement of new connections ([`AcceptMode`]): the accept
//! handler, the choice of loop (by incoming CPU through `placement.rs`, round robin, or
//! per-loop `SO_REUSEPORT` listeners), and starting a connection on its loop. Owns
//! listeners; a connection, once registered, is `conn.rs`'s.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::conn::register_conn;
use super::{AcceptMode, ConnInfo, ServerProtocol, Shared};
use crate::runtime::io::{Event, IoCtx, IoHandler, sys};

/// A listening, non-blocking socket with `SO_REUSEADDR`; with `SO_REUSEPORT` too when
/// `reuse_port` (only [`AcceptMode::ReusePort`] asks for it: one listener per loop), so that a
/// port another process listens on is an error, not a silent share. The caller owns the fd.
pub(crate) fn listen_socket(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> std::io::Result<(RawFd, SocketAddr)> {
    let (fd, local) = sys::listen_on(addr, backlog, reuse_port)?;
    Ok((fd.into_raw_fd(), local))
}

pub(super) struct Listener<P: ServerProtocol> {
    pub(super) fd: RawFd,
    pub(super) shared: Arc<Shared<P>>,
    /// Next loop for [`AcceptMode::Distribute`] (and `IncomingCpu` where the CPU runs no loop).
    pub(super) next_loop: usize,
}

impl<P: ServerProtocol> Listener<P> {
    fn round_robin(&mut self) -> usize {
        let t = self.next_loop % self.shared.loops;
        self.next_loop = self.next_loop.wrapping_add(1);
        t
    }
}

impl<P: ServerProtocol> IoHandler for Listener<P> {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        match event {
            Event::Accepted(fd) => {
                let st = &self.shared.stats;
                let max = self.shared.max_conns;
                // One atomic step, so listeners on several loops cannot overshoot together.
                if self.shared.stopped.load(Ordering::Relaxed)
                    || st
                        .open
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                            (o < max).then_some(o + 1)
                        })
                        .is_err()
                {
                    st.refused.fetch_add(1, Ordering::Relaxed);
                    ctx.close(fd);
                    return;
                }
                st.accepted.fetch_add(1, Ordering::Relaxed);
                if self.shared.opts.nodelay {
                    // Best effort: without TCP_NODELAY a connection still works, with Nagle's
                    // delays.
                    let _ = sys::set_nodelay(fd, true);
                }
                let shared = self.shared.clone();
                let place = &shared.place;
                // Counted under its incoming CPU for as long as it is open (IncomingCpu only).
                let cpu = match self.shared.opts.accept {
                    AcceptMode::IncomingCpu => place.count(sys::incoming_cpu(fd)),
                    _ => None,
                };
                let target = match self.shared.opts.accept {
                    AcceptMode::ReusePort => ctx.worker(),
                    AcceptMode::Distribute => self.round_robin(),
                    AcceptMode::IncomingCpu => place
                        .choose(cpu, None)
                        .unwrap_or_else(|| self.round_robin()),
                };
                place.enter_loop(target);
                if target == ctx.worker() {
                    start_conn(&self.shared, ctx, fd, target, cpu);
                    return;
                }
                let sh = self.shared.clone();
                let sent = self
                    .shared
                    .handle
                    .run_on_io(target, move |ctx| start_conn(&sh, ctx, fd, target, cpu));
                if let Err(e) = sent {
                    tracing::warn!(error = %e, loop_ = target, "could not hand a connection to its loop; serving it here");
                    let here = ctx.worker();
                    place.leave_loop(target);
                    place.enter_loop(here);
                    start_conn(&self.shared, ctx, fd, here, cpu);
                }
            }
            Event::AcceptError(e) => {
                tracing::warn!(error = %e, "accept failed; the listener stays open");
            }
            Event::Shutdown => ctx.close(self.fd),
            _ => {}
        }
    }
}

/// Starts serving accepted connection `fd` on the current event loop (loop index `loop_idx`,
/// already counted there; `cpu`: the incoming CPU it is counted under, if any).
fn start_conn<P: ServerProtocol>(
    shared: &Arc<Shared<P>>,
    ctx: &mut IoCtx<'_>,
    fd: RawFd,
    loop_idx: usize,
    cpu: Option<usize>,
) {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let tls = match &shared.opts.tls {
        Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
            Ok(mut c) => {
                // Unsent bytes are bounded by `max_unsent` instead.
                c.set_buffer_limit(None);
                Some(Box::new(c))
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS session could not start; closing");
                shared.stats.open.fetch_sub(1, Ordering::Relaxed);
                shared.place.leave_loop(loop_idx);
                shared.place.uncount(cpu);
                ctx.close(fd);
                return;
            }
        },
        None => None,
    };
    let info = ConnInfo {
        id: conn,
        peer: sys::peer_addr(fd),
        tls: None,
    };
    register_conn(shared, ctx, fd, loop_idx, cpu, info, tls, Vec::new(), None);
}
