//! A connection following its client ([`AcceptMode::IncomingCpu`]): on a tick after traffic, a
//! plaintext connection asks the placement rule (`placement.rs`) again with the CPU its packets
//! arrive on now, and notes the loop it names (at most once a second); at its next quiet moment it stops receiving, waits
//! for its loop to let go of the fd (`IoCtx::release`), and hands fd and unread bytes to the
//! new loop, which registers it afresh. Owns the move only.

use std::time::{Duration, Instant};

use super::conn::Conn;
use super::conn::{Move, Phase, register_conn};
use super::{AcceptMode, ServerProtocol};
use crate::runtime::io::{IoCtx, sys};

impl<P: ServerProtocol> Conn<P> {
    /// [`AcceptMode::IncomingCpu`], on a tick after traffic: notes the loop of the CPU this
    /// connection's packets now arrive on when it is another loop with room (at most once a
    /// second per connection); the move starts at the next quiet moment.
    pub(super) fn consider_move(&mut self, ctx: &mut IoCtx<'_>, now: Instant) {
        let active = std::mem::take(&mut self.active);
        let sh = &self.shared;
        if sh.opts.accept != AcceptMode::IncomingCpu
            || !self.is_serving()
            || !sh.proto.may_move(&self.info)
            || !active
            || self.tls.is_some()
            || self
                .moved_at
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        // Recount it under the CPU its packets arrive on now (its client thread may have moved).
        let now_cpu = sys::incoming_cpu(self.fd);
        if now_cpu.is_some() && now_cpu != self.cpu {
            sh.place.uncount(self.cpu);
            self.cpu = sh.place.count(now_cpu);
        }
        let Some(to) = sh.place.choose(self.cpu, Some(self.loop_idx)) else {
            return;
        };
        if to != self.loop_idx {
            self.phase = Phase::Serving(Move::Noted(to));
            self.start_move(ctx);
        } else {
            self.phase = Phase::Serving(Move::Stay);
        }
    }

    /// Starts the move noted in the phase ([`Move::Noted`]) if nothing is under way on the connection: stops
    /// receiving and waits (polling each millisecond) for the loop to let go of the socket.
    pub(super) fn start_move(&mut self, ctx: &mut IoCtx<'_>) {
        let Phase::Serving(Move::Noted(to)) = self.phase else {
            return;
        };
        let quiet = !self.peer_done
            && self.blocked.is_none()
            && self.in_flight == 0
            && self.next_seq == self.write_seq
            && self.input.is_empty()
            && self.replies.is_empty()
            && self.acks.is_empty()
            && ctx.send_queued(self.fd) == 0;
        if !quiet {
            return;
        }
        self.phase = Phase::Serving(Move::Releasing(to));
        ctx.stop_recv(self.fd);
        let t = self.token(ctx);
        ctx.retry_soon(t);
    }

    /// Hands the socket and what was received meanwhile to the loop of [`Move::Releasing`] once this
    /// loop has let go of it; resumes here if that loop cannot take it.
    pub(super) fn finish_move(&mut self, ctx: &mut IoCtx<'_>) {
        let t = self.token(ctx);
        let Phase::Serving(Move::Releasing(to)) = self.phase else {
            return;
        };
        if !ctx.release(self.fd) {
            ctx.retry_soon(t);
            return;
        }
        let sh = self.shared.clone();
        let (fd, info, input) = (self.fd, self.info.clone(), std::mem::take(&mut self.input));
        let now = ctx.now();
        let cpu = self.cpu;
        let moved = self.shared.handle.run_on_io(to, move |ctx| {
            register_conn(&sh, ctx, fd, to, cpu, info, None, input, Some(now));
        });
        self.phase = Phase::Serving(Move::Stay);
        match moved {
            Ok(()) => {
                // The CPU count travels with it (the new Conn holds `cpu`).
                self.shared.place.leave_loop(self.loop_idx);
                self.shared.place.enter_loop(to);
                self.phase = Phase::Moved;
                ctx.remove(t);
            }
            Err(e) => {
                // Only a loop index the runtime does not have (never, for a loop of this
                // server); the bytes received meanwhile went with the refused closure, so the
                // connection cannot go on in order: close it, loudly.
                tracing::error!(error = %e, loop_ = to, conn = self.info.id, "connection could not move to its CPU's loop; closed");
                self.close(ctx);
            }
        }
    }
}
