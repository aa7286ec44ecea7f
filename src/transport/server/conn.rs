//! The connection state machine, generic over a [`ServerProtocol`]: input is decoded on the
//! event loop and dispatched; replies come back in any order and leave in request order
//! (pipelining); backpressure stops reading; refusals, timeouts and closes are states. Owns one
//! connection's socket, buffers and TLS session; placement and moves are `listener.rs`' and
//! `migrate.rs`'.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::reply::{Held, Part, PartAck, Responder};
use super::{ConnInfo, Decoded, Dispatched, ServerProtocol, Shared, TlsInfo};
use crate::runtime::io::{Event, HandlerId, IoCtx, IoHandler, Token};

/// Registers a connection's state machine on the current loop and starts receiving; `input`
/// holds bytes received elsewhere (a connection moved here), processed at once.
#[allow(clippy::too_many_arguments)]
pub(super) fn register_conn<P: ServerProtocol>(
    shared: &Arc<Shared<P>>,
    ctx: &mut IoCtx<'_>,
    fd: RawFd,
    loop_idx: usize,
    cpu: Option<usize>,
    info: ConnInfo,
    tls: Option<Box<rustls::ServerConnection>>,
    input: Vec<u8>,
    moved_at: Option<Instant>,
) {
    let has_input = !input.is_empty();
    if moved_at.is_none() {
        shared.proto.opened(&info);
    }
    let id = ctx.register(Box::new(Conn::<P> {
        tls,
        fd,
        loop_idx,
        cpu,
        info,
        shared: shared.clone(),
        input,
        partial_since: None,
        interim_sent: false,
        last_activity: ctx.now(),
        next_seq: 0,
        write_seq: 0,
        replies: VecDeque::new(),
        acks: Vec::new(),
        held: 0,
        in_flight: 0,
        blocked: None,
        processing: false,
        tls_pending_since: None,
        moved_at,
        active: false,
        peer_done: false,
        phase: Phase::Serving(Move::Stay),
    }));
    ctx.set_ticks(id.token, true);
    ctx.recv(id.token, fd);
    if has_input {
        ctx.with_handler::<Conn<P>, _>(id, |c, ctx| c.process(ctx));
    }
}

pub(super) struct Conn<P: ServerProtocol> {
    /// The TLS session when the server speaks TLS.
    pub(super) tls: Option<Box<rustls::ServerConnection>>,
    pub(super) fd: RawFd,
    /// The event loop serving it (counted there in `Shared::place`).
    pub(super) loop_idx: usize,
    /// The incoming CPU it is counted under in `Shared::place` (IncomingCpu only).
    pub(super) cpu: Option<usize>,
    /// Its number, peer and TLS facts.
    pub(super) info: ConnInfo,
    pub(super) shared: Arc<Shared<P>>,
    /// Received bytes not yet decoded.
    pub(super) input: Vec<u8>,
    /// When the request now being received began (for the request timeout).
    pub(super) partial_since: Option<Instant>,
    /// `Decoded::Interim` bytes were sent for the request at the front of `input`.
    pub(super) interim_sent: bool,
    pub(super) last_activity: Instant,
    /// Sequence number of the next decoded request.
    pub(super) next_seq: u64,
    /// Sequence number of the next reply to write.
    pub(super) write_seq: u64,
    /// Replies (or pieces of them) that arrived before an earlier reply was complete, indexed
    /// by `seq - write_seq`.
    pub(super) replies: VecDeque<Option<Held>>,
    /// Credits of streamed pieces written to the socket, returned once the unsent bytes are
    /// under `max_unsent`.
    pub(super) acks: Vec<PartAck>,
    /// Bytes of the replies held in `replies` (counted against `max_unsent`).
    pub(super) held: usize,
    /// Requests handed to a target whose reply has not come back yet.
    pub(super) in_flight: usize,
    /// A request waiting for mailbox room.
    pub(super) blocked: Option<(P::Request, Responder)>,
    /// Inside [`Conn::process`]: replies given on the I/O worker while it runs must not start
    /// it again (the loop goes on by itself; recursion could exhaust the stack).
    pub(super) processing: bool,
    /// TLS input has arrived that produced no plaintext yet (handshake, partial record) since
    /// this instant: a client trickling ciphertext meets the request timeout too.
    pub(super) tls_pending_since: Option<Instant>,
    /// When it last moved (a connection moves at most once a second).
    pub(super) moved_at: Option<Instant>,
    /// Data arrived since the last tick (only those connections are checked for a move).
    pub(super) active: bool,
    /// The peer closed its side (EOF): nothing more will arrive; what was decoded is
    /// answered, then the connection closes.
    pub(super) peer_done: bool,
    /// Where the connection is in its life.
    pub(super) phase: Phase,
}

/// Where a connection is in its life. Only `Serving` reads and decodes input; the others only
/// finish what is owed; `Moved` and `Closed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reading (unless stopped for backpressure), decoding, answering; and whether it is
    /// about to move to another loop.
    Serving(Move),
    /// Input was refused (invalid, too large, timed out): nothing more is read or decoded;
    /// the refusal is queued after the replies owed, and the connection closes once it is
    /// written.
    Refusing,
    /// The reply on the wire asked to close (or the TLS session failed): what is queued is
    /// written, then the connection closes.
    Closing,
    /// Handed to another loop: finished here without closing anything.
    Moved,
    /// Closed: the socket is gone.
    Closed,
}

/// A serving connection's move to the loop of its packets' CPU ([`AcceptMode::IncomingCpu`](super::AcceptMode::IncomingCpu), see
/// `migrate.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// Stays on this loop.
    Stay,
    /// Moves to this loop at its next quiet moment.
    Noted(usize),
    /// Receiving is stopped for the move to this loop; waiting for this loop to let go of the
    /// socket.
    Releasing(usize),
}

impl<P: ServerProtocol> Drop for Conn<P> {
    fn drop(&mut self) {
        // Dropped without `close` (the loop removed it after a panic in protocol code, or the
        // loop itself is going away): it no longer counts against `max_connections`.
        if !matches!(self.phase, Phase::Closed | Phase::Moved) {
            self.shared.proto.closed(&self.info);
            self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.place.leave_loop(self.loop_idx);
            self.shared.place.uncount(self.cpu);
        }
    }
}

fn deliver<P: ServerProtocol>(ctx: &mut IoCtx<'_>, id: HandlerId, seq: u64, part: Part) {
    ctx.with_handler::<Conn<P>, _>(id, |c, ctx| c.on_reply(ctx, seq, part));
}

impl<P: ServerProtocol> Conn<P> {
    /// Reading and decoding (possibly about to move).
    pub(super) fn is_serving(&self) -> bool {
        matches!(self.phase, Phase::Serving(_))
    }

    /// Waiting for the loop to let go of the socket for a move.
    pub(super) fn is_moving(&self) -> bool {
        matches!(self.phase, Phase::Serving(Move::Releasing(_)))
    }

    /// Nothing but writing what is queued remains (or nothing at all).
    fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Closed | Phase::Moved)
    }

    pub(super) fn token(&self, ctx: &IoCtx<'_>) -> Token {
        ctx.token()
            .expect("a connection is only called as a handler")
    }

    pub(super) fn close(&mut self, ctx: &mut IoCtx<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        ctx.close(self.fd);
        let t = self.token(ctx);
        ctx.remove(t);
        // Streamed pieces not taken: their senders learn the connection is gone.
        self.acks.clear();
        self.replies.clear();
        self.shared.proto.closed(&self.info);
        self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.shared.place.leave_loop(self.loop_idx);
        self.shared.place.uncount(self.cpu);
    }

    /// Refuses further input: nothing more is read or decoded, `bytes` (if any) is written
    /// after every reply still owed (in request order), then the connection closes.
    pub(super) fn refuse(&mut self, ctx: &mut IoCtx<'_>, bytes: Option<Vec<u8>>) {
        if !self.is_serving() {
            return;
        }
        self.phase = Phase::Refusing;
        self.input.clear();
        self.partial_since = None;
        self.tls_pending_since = None;
        ctx.stop_recv(self.fd);
        let seq = self.next_seq;
        self.next_seq += 1;
        // Counted like a request answered on the I/O worker; `on_reply` settles it.
        self.in_flight += 1;
        self.on_reply(ctx, seq, Part::answer(bytes.unwrap_or_default(), true));
    }

    pub(super) fn maybe_finish(&mut self, ctx: &mut IoCtx<'_>) {
        let nothing_owed = self.in_flight == 0 && self.blocked.is_none();
        if (self.is_closing() || (self.peer_done && nothing_owed)) && ctx.send_queued(self.fd) == 0
        {
            self.close(ctx);
        }
    }

    pub(super) fn responder(&mut self, ctx: &IoCtx<'_>) -> Responder {
        let seq = self.next_seq;
        self.next_seq += 1;
        Responder {
            handle: self.shared.handle.clone(),
            id: ctx.id().expect("a connection is only called as a handler"),
            seq,
            done: false,
            started: false,
            deliver: deliver::<P>,
        }
    }

    /// Decodes and dispatches as many requests as the limits allow. Re-entry (a reply given on
    /// the I/O worker while it runs) returns at once: the running call goes on by itself.
    pub(super) fn process(&mut self, ctx: &mut IoCtx<'_>) {
        if self.processing {
            return;
        }
        self.processing = true;
        self.process_input(ctx);
        self.processing = false;
    }

    pub(super) fn process_input(&mut self, ctx: &mut IoCtx<'_>) {
        if let Some((req, resp)) = self.blocked.take()
            && !self.hand_off(ctx, req, resp)
        {
            return;
        }
        // Decoded requests are consumed by moving `at`; the bytes go in one drain when the loop
        // ends (a drain per request moved the rest of the input each time: quadratic in a
        // deep pipeline, e.g. `redis-cli --pipe`).
        let mut at = 0usize;
        // Requests decoded in this pass, added to the shared counter once (a shared atomic
        // per request bounces its cache line between the loops).
        let mut decoded_here = 0u64;
        let stop = loop {
            if !(self.is_serving() && self.blocked.is_none()) {
                break false;
            }
            // Owed: decoded, not yet answered on the wire (in flight or held behind another).
            let owed = (self.next_seq - self.write_seq) as usize;
            if owed >= self.shared.opts.max_in_flight
                || ctx.send_queued(self.fd) + self.held > self.shared.opts.max_unsent
            {
                ctx.stop_recv(self.fd);
                break true;
            }
            if at >= self.input.len() {
                self.partial_since = None;
                break false;
            }
            let decoded = self.shared.proto.decode(&self.input[at..]);
            if matches!(decoded, Decoded::Incomplete | Decoded::Interim(_))
                && self.input.len() - at > self.shared.proto.max_input()
            {
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    conn = self.info.id,
                    bytes = self.input.len() - at,
                    "an unfinished request is over the protocol's max_input; closing the connection after the replies owed"
                );
                let r = self.shared.proto.too_large_response();
                self.shared
                    .stats
                    .requests
                    .fetch_add(decoded_here, Ordering::Relaxed);
                self.refuse(ctx, r);
                return;
            }
            match decoded {
                Decoded::Incomplete => {
                    self.partial_since.get_or_insert(ctx.now());
                    self.input.drain(..at);
                    at = 0;
                    self.check_truncated();
                    break false;
                }
                Decoded::Interim(bytes) => {
                    self.partial_since.get_or_insert(ctx.now());
                    if !self.interim_sent && self.in_flight == 0 {
                        self.interim_sent = true;
                        self.write_out(ctx, bytes, false);
                    }
                    self.input.drain(..at);
                    at = 0;
                    self.check_truncated();
                    break false;
                }
                Decoded::Reject { response, reason } => {
                    self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(conn = self.info.id, %reason, "invalid input; closing the connection after the replies owed");
                    self.shared
                        .stats
                        .requests
                        .fetch_add(decoded_here, Ordering::Relaxed);
                    self.refuse(ctx, response);
                    return;
                }
                Decoded::Request(req, used) => {
                    at = (at + used).min(self.input.len());
                    self.partial_since = None;
                    self.interim_sent = false;
                    decoded_here += 1;
                    let resp = self.responder(ctx);
                    self.in_flight += 1;
                    if !self.hand_off(ctx, req, resp) {
                        break true;
                    }
                }
            }
        };
        if decoded_here > 0 {
            self.shared
                .stats
                .requests
                .fetch_add(decoded_here, Ordering::Relaxed);
        }
        // `refuse` (an answer asking to close) may have cleared the input already.
        self.input.drain(..at.min(self.input.len()));
        if stop {
            return;
        }
        if self.is_serving() && !self.peer_done && self.blocked.is_none() {
            let t = self.token(ctx);
            if !ctx.is_receiving(self.fd) {
                ctx.recv(t, self.fd);
            }
        }
        if self.peer_done {
            self.maybe_finish(ctx);
        }
    }

    /// The peer has closed its side and the undecoded input can never complete: reported once
    /// (the protocol says whether that is an error), then dropped.
    pub(super) fn check_truncated(&mut self) {
        if !self.peer_done || self.input.is_empty() {
            return;
        }
        if let Some(reason) = self.shared.proto.truncated(&self.input) {
            self.shared.stats.truncated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(conn = self.info.id, %reason, "truncated request");
        }
        self.input.clear();
        self.partial_since = None;
    }

    /// Gives a request to the protocol's target. False when it must wait (mailbox full).
    pub(super) fn hand_off(
        &mut self,
        ctx: &mut IoCtx<'_>,
        req: P::Request,
        resp: Responder,
    ) -> bool {
        match self.shared.proto.dispatch_on(req, resp, &self.info) {
            Dispatched::Sent => true,
            Dispatched::Full(req, resp) => {
                self.blocked = Some((req, resp));
                ctx.stop_recv(self.fd);
                let t = self.token(ctx);
                ctx.retry_soon(t);
                false
            }
            Dispatched::Answer(a) => {
                // Answered here: takes the place of a reply, in order.
                self.on_reply(ctx, a.seq, Part::answer(a.bytes, a.close));
                !self.is_closing()
            }
        }
    }

    /// Queues `bytes` for the peer (encrypted first under TLS; `last` adds close_notify).
    pub(super) fn write_out(&mut self, ctx: &mut IoCtx<'_>, bytes: Vec<u8>, last: bool) {
        let t = self.token(ctx);
        let Some(tls) = self.tls.as_mut() else {
            if !bytes.is_empty() {
                ctx.send(t, self.fd, bytes);
            }
            return;
        };
        if !bytes.is_empty() && tls.writer().write_all(&bytes).is_err() {
            // Unlimited buffer: only fails when the session is already broken.
            self.close(ctx);
            return;
        }
        if last {
            tls.send_close_notify();
        }
        self.flush_tls(ctx);
    }

    /// Sends whatever TLS records are waiting.
    pub(super) fn flush_tls(&mut self, ctx: &mut IoCtx<'_>) {
        let t = self.token(ctx);
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while tls.wants_write() {
            if tls.write_tls(&mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() {
            ctx.send(t, self.fd, out);
        }
    }

    /// Feeds received ciphertext to the TLS session and moves the plaintext to `input`. False
    /// when the session failed (the connection is then closing).
    pub(super) fn tls_in(&mut self, ctx: &mut IoCtx<'_>, mut d: &[u8]) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return true;
        };
        while !d.is_empty() {
            // rustls refuses more ciphertext only when its buffers are full of what it could
            // not process: the session is broken either way.
            let processed = tls
                .read_tls(&mut d)
                .map_err(|e| e.to_string())
                .and_then(|_| tls.process_new_packets().map_err(|e| e.to_string()));
            if let Err(e) = processed {
                tracing::debug!(conn = self.info.id, error = %e, "TLS error; closing this connection");
                self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                // The alert describing the error is sent before closing.
                self.flush_tls(ctx);
                self.phase = Phase::Closing;
                ctx.stop_recv(self.fd);
                self.maybe_finish(ctx);
                return false;
            }
            let mut buf = [0u8; 16 * 1024];
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.input.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        self.flush_tls(ctx);
        true
    }

    /// Takes a reply or a piece of one: written at once when every earlier reply is complete,
    /// else held (counted in `held`) until they are.
    pub(super) fn on_reply(&mut self, ctx: &mut IoCtx<'_>, seq: u64, part: Part) {
        if seq == super::reply::PUSH_SEQ {
            // Server push: after what is on its way to the socket, between whole replies.
            if !matches!(self.phase, Phase::Closed | Phase::Moved)
                && let Some(b) = part.bytes
            {
                self.write_out(ctx, b, false);
            }
            return;
        }
        if self.phase == Phase::Closed || seq < self.write_seq {
            return; // gone or already answered; a streamed piece's credit closes its window
        }
        let idx = (seq - self.write_seq) as usize;
        let Part {
            bytes,
            ack,
            last,
            close,
        } = part;
        // `None`: the responder was dropped unanswered.
        let bytes = bytes.or_else(|| self.shared.proto.dropped_response());
        if idx == 0 && self.replies.front().is_none_or(Option::is_none) {
            // The reply on the wire now: no need to hold anything.
            if let Some(b) = bytes {
                self.write_out(ctx, b, false);
            }
            self.acks.extend(ack);
            if last {
                self.replies.pop_front();
                self.in_flight = self.in_flight.saturating_sub(1);
                self.end_reply(ctx, close);
            }
        } else {
            while self.replies.len() <= idx {
                self.replies.push_back(None);
            }
            let held = self.replies[idx].get_or_insert_with(Held::default);
            if held.last {
                return; // already answered (see hand_off)
            }
            if let Some(b) = bytes {
                self.held += b.len();
                held.parts.push((b, ack));
            }
            if last {
                held.last = true;
                held.close = close;
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        // Replies completed behind the one just finished go out in order.
        while !self.is_closing() && self.replies.front().is_some_and(Option::is_some) {
            let Some(Some(front)) = self.replies.pop_front() else {
                break;
            };
            let (last, close) = (front.last, front.close);
            for (b, ack) in front.parts {
                self.held -= b.len();
                self.write_out(ctx, b, false);
                self.acks.extend(ack);
            }
            if !last {
                // A streamed reply still going: it stays at the front, now written so far.
                self.replies.push_front(None);
                break;
            }
            self.end_reply(ctx, close);
        }
        self.release_acks(ctx);
        self.last_activity = ctx.now();
        if self.is_closing() {
            self.maybe_finish(ctx);
        } else {
            self.process(ctx);
        }
    }

    /// The reply at the front is complete: the next one may go; `close` ends the connection.
    pub(super) fn end_reply(&mut self, ctx: &mut IoCtx<'_>, close: bool) {
        self.write_seq += 1;
        if close {
            // Under TLS, close_notify follows the reply.
            self.write_out(ctx, Vec::new(), true);
            self.phase = Phase::Closing;
            ctx.stop_recv(self.fd);
            self.replies.clear();
            self.held = 0;
        }
    }

    /// Returns the credits of streamed pieces once the socket's backlog is under `max_unsent`.
    pub(super) fn release_acks(&mut self, ctx: &IoCtx<'_>) {
        if !self.acks.is_empty() && ctx.send_queued(self.fd) <= self.shared.opts.max_unsent {
            for a in self.acks.drain(..) {
                a.ack();
            }
        }
    }
}

impl<P: ServerProtocol> IoHandler for Conn<P> {
    fn on_event(&mut self, ctx: &mut IoCtx<'_>, event: Event<'_>) {
        if self.phase == Phase::Closed {
            return;
        }
        match event {
            Event::Data(d) => {
                self.last_activity = ctx.now();
                self.active = true;
                if !self.is_serving() {
                    return;
                }
                if self.is_moving() {
                    // Received before the receive stopped: goes along with the connection.
                    self.input.extend_from_slice(d);
                    return;
                }
                if let Some(tls) = &self.tls {
                    let handshaking = tls.is_handshaking();
                    let before = self.input.len();
                    if !self.tls_in(ctx, d) {
                        return;
                    }
                    let done_handshake =
                        handshaking && self.tls.as_ref().is_some_and(|t| !t.is_handshaking());
                    if done_handshake && let Some(t) = &self.tls {
                        self.info.tls = Some(Arc::new(TlsInfo::of(t)));
                    }
                    if self.input.len() > before || done_handshake {
                        self.tls_pending_since = None;
                    } else {
                        self.tls_pending_since.get_or_insert(ctx.now());
                    }
                } else {
                    self.input.extend_from_slice(d);
                }
                if self.blocked.is_none() {
                    self.process(ctx);
                }
            }
            Event::Eof => {
                self.peer_done = true;
                if self.is_serving() {
                    // The peer is done sending: no point moving; finish here.
                    self.phase = Phase::Serving(Move::Stay);
                }
                if self.blocked.is_none() {
                    self.process(ctx);
                }
                self.maybe_finish(ctx);
            }
            Event::RecvError(_) | Event::SendError(_) => self.close(ctx),
            Event::Sent(_) => {
                self.release_acks(ctx);
                if self.is_moving() {
                    return;
                }
                if matches!(self.phase, Phase::Serving(Move::Noted(_))) {
                    self.start_move(ctx);
                    if self.is_moving() {
                        return;
                    }
                }
                if self.is_closing() || self.peer_done {
                    self.maybe_finish(ctx);
                } else if !ctx.is_receiving(self.fd) && self.blocked.is_none() {
                    self.process(ctx);
                }
            }
            Event::Retry => {
                if self.is_moving() {
                    self.finish_move(ctx);
                } else if self.blocked.is_some() {
                    self.process(ctx);
                }
            }
            Event::Tick(now) => {
                if self.shared.force.load(Ordering::Relaxed) {
                    self.close(ctx);
                    return;
                }
                if self.shared.draining.load(Ordering::Relaxed) && self.is_serving() {
                    // Graceful shutdown: no new request; the replies owed go out, then close.
                    if self.is_moving() {
                        self.phase = Phase::Serving(Move::Stay);
                    }
                    self.refuse(ctx, None);
                    return;
                }
                if !self.is_moving() {
                    self.consider_move(ctx, now);
                }
                let o = &self.shared.opts;
                let started = [self.partial_since, self.tls_pending_since]
                    .into_iter()
                    .flatten()
                    .min();
                if let Some(t0) = started
                    && now.duration_since(t0) > o.request_timeout
                    && self.in_flight == 0
                    && self.phase != Phase::Refusing
                {
                    self.shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    // No plaintext answer while the TLS handshake is unfinished.
                    let r = if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                        None
                    } else {
                        self.shared.proto.timeout_response()
                    };
                    self.refuse(ctx, r);
                } else if self.input.is_empty()
                    && self.in_flight == 0
                    && self.blocked.is_none()
                    && now.duration_since(self.last_activity) > o.idle_timeout
                {
                    self.shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    self.close(ctx);
                }
            }
            Event::Shutdown => self.close(ctx),
            Event::Accepted(fd) => ctx.close(fd),
            Event::AcceptError(_) | Event::Connected(_) | Event::Readable => {}
        }
    }
}
