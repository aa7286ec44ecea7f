//! The way back from an app worker to the connection a request came from: [`Responder`] (one
//! reply, whole or in parts, posted to the connection's event loop), [`SendWindow`] (flow
//! control for a reply sent in parts) and the pieces in flight (`Part`, `PartAck`). Owns the
//! reply's journey to the loop; ordering on the wire is the connection's (`conn.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::runtime::Handle;
use crate::runtime::io::{HandlerId, IoCtx};

/// The way back from an app worker to the connection a request came from. Send exactly one
/// reply with [`Responder::send`] (before it, any number of parts with
/// [`Responder::send_part`] for a reply produced piece by piece); dropping it unanswered sends
/// the protocol's `dropped_response` (HTTP: 500), or closes the connection when parts were
/// already sent.
pub struct Responder {
    pub(super) handle: Handle,
    pub(super) id: HandlerId,
    pub(super) seq: u64,
    pub(super) done: bool,
    /// A part was sent: the reply has begun on the wire, so it can only end or break off.
    pub(super) started: bool,
    pub(super) deliver: fn(&mut IoCtx<'_>, HandlerId, u64, Part),
}

/// A whole reply given on the event loop, made by [`Responder::answer`] (so it always belongs
/// to exactly one request).
#[derive(Debug)]
pub struct Answer {
    pub(super) seq: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) close: bool,
}

/// One piece of a reply on its way to the connection.
pub(super) struct Part {
    /// `None`: the responder was dropped unanswered (the protocol's dropped response).
    pub(super) bytes: Option<Vec<u8>>,
    /// Credit returned to the sender's window once the connection has taken the bytes.
    pub(super) ack: Option<PartAck>,
    /// The reply ends with this piece.
    pub(super) last: bool,
    /// Close the connection after the reply (with `last`).
    pub(super) close: bool,
}

impl Responder {
    /// Sends `bytes` as the reply (or its final piece); `close` closes the connection after it
    /// is written.
    pub fn send(mut self, bytes: Vec<u8>, close: bool) {
        self.done = true;
        self.post(Part {
            bytes: Some(bytes),
            ack: None,
            last: true,
            close,
        });
    }

    /// Sends `bytes` as the next piece of a reply that goes on (a streamed body): written as
    /// soon as the replies before it are. `window` counts the bytes until the connection has
    /// taken them (handed them to the socket with its unsent bytes under `max_unsent`); wait
    /// on [`SendWindow::wait_below`] before sending more to keep a slow peer from piling them
    /// up. End the reply with [`send`](Self::send).
    pub fn send_part(&mut self, bytes: Vec<u8>, window: &Arc<SendWindow>) {
        self.started = true;
        let n = bytes.len();
        window.unacked.fetch_add(n, Ordering::AcqRel);
        self.post(Part {
            bytes: Some(bytes),
            ack: Some(PartAck {
                window: Some(window.clone()),
                n,
            }),
            last: false,
            close: false,
        });
    }

    /// Answers the request on the event loop, for a protocol's
    /// [`dispatch`](super::ServerProtocol::dispatch) to return as
    /// [`Dispatched::Answer`](super::Dispatched::Answer): `bytes` go out in request order and
    /// `close` closes the connection after them. Takes the responder, so no second reply (nor
    /// the "dropped" reply of a responder dropped unanswered) can follow.
    pub fn answer(mut self, bytes: Vec<u8>, close: bool) -> Answer {
        self.done = true;
        Answer {
            seq: self.seq,
            bytes,
            close,
        }
    }

    /// Gives up this responder without replying: the connection then waits for a reply that
    /// never comes (until its idle timeout).
    #[deprecated(
        since = "0.1.0",
        note = "answer on the event loop with `Responder::answer` (returned as `Dispatched::Answer`), or drop the responder to send the protocol's dropped response"
    )]
    pub fn discard(mut self) {
        self.done = true;
    }

    /// The I/O worker and connection this request came from.
    pub fn connection(&self) -> HandlerId {
        self.id
    }

    /// A [`Pusher`] for this request's connection: bytes sent outside the request/reply order
    /// (server push, e.g. a pub/sub message), for as long as the connection lives.
    pub fn pusher(&self) -> Pusher {
        Pusher {
            handle: self.handle.clone(),
            id: self.id,
            deliver: self.deliver,
        }
    }

    fn post(&self, part: Part) {
        let (id, seq, deliver) = (self.id, self.seq, self.deliver);
        let _ = self
            .handle
            .run_on_io(id.worker, move |ctx| deliver(ctx, id, seq, part));
    }
}

/// The sequence number of a pushed part (never a request's).
pub(super) const PUSH_SEQ: u64 = u64::MAX;

/// Sends bytes to a connection outside the request/reply order: server push, such as Redis
/// pub/sub messages. Pushed bytes are written after the replies already handed to the socket
/// and before any reply still held for ordering, never inside a reply; pushes from one sender
/// arrive in the order sent. A push made on another core travels to the connection's event
/// loop like any cross-core message: it is not ordered with requests the connection sends
/// after it was made. Once the connection is gone pushes are dropped. A connection with
/// pushers should not move between event loops: a protocol that pushes says so through
/// [`ServerProtocol::may_move`](super::ServerProtocol::may_move).
#[derive(Clone)]
pub struct Pusher {
    handle: Handle,
    id: HandlerId,
    deliver: fn(&mut IoCtx<'_>, HandlerId, u64, Part),
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").field("conn", &self.id).finish()
    }
}

impl Pusher {
    /// Queues `bytes` for the connection.
    pub fn push(&self, bytes: Vec<u8>) {
        let (id, deliver) = (self.id, self.deliver);
        let part = Part {
            bytes: Some(bytes),
            ack: None,
            last: false,
            close: false,
        };
        let _ = self
            .handle
            .run_on_io(id.worker, move |ctx| deliver(ctx, id, PUSH_SEQ, part));
    }

    /// The connection it pushes to (the [`Responder::connection`] of its requests).
    pub fn connection(&self) -> HandlerId {
        self.id
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.done {
            // Unanswered: the protocol's dropped response; broken off after parts: only the
            // close can tell the peer (the reply's framing is already on the wire).
            let bytes = self.started.then(Vec::new);
            self.post(Part {
                bytes,
                ack: None,
                last: true,
                close: true,
            });
        }
    }
}

/// Flow control for a reply sent in parts ([`Responder::send_part`]): the bytes sent that the
/// connection has not taken yet. Shared by the sender (an app worker) and the connection's
/// event loop.
#[derive(Debug, Default)]
pub struct SendWindow {
    pub(super) unacked: AtomicUsize,
    pub(super) closed: AtomicBool,
    pub(super) waker: std::sync::Mutex<Option<std::task::Waker>>,
}

/// The connection of a [`SendWindow`] is gone: nothing more can be sent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection closed before the reply was complete; stop producing it")]
pub struct ConnectionGone;

impl SendWindow {
    /// A new window with nothing in flight.
    pub fn new() -> Arc<SendWindow> {
        Arc::new(SendWindow::default())
    }

    /// Bytes sent that the connection has not taken yet.
    pub fn unacked(&self) -> usize {
        self.unacked.load(Ordering::Acquire)
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until at most `limit` bytes are unacknowledged; `Err` once the connection is gone.
    /// Spends the task's cooperative budget
    /// ([`consume_budget`](crate::runtime::consume_budget)), so a producer whose pieces are
    /// always taken at once still lets its worker's event loop run (and report a dead peer).
    pub async fn wait_below(&self, limit: usize) -> Result<(), ConnectionGone> {
        crate::runtime::consume_budget().await;
        std::future::poll_fn(|cx| {
            let ready = |w: &SendWindow| {
                if w.is_closed() {
                    Some(Err(ConnectionGone))
                } else if w.unacked() <= limit {
                    Some(Ok(()))
                } else {
                    None
                }
            };
            if let Some(r) = ready(self) {
                return std::task::Poll::Ready(r);
            }
            *self.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            // Checked again after registering: an ack in between would not have seen the waker.
            match ready(self) {
                Some(r) => std::task::Poll::Ready(r),
                None => std::task::Poll::Pending,
            }
        })
        .await
    }

    pub(super) fn wake(&self) {
        let w = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Credit for `n` bytes of a [`SendWindow`]. Acknowledged when the connection takes the bytes;
/// dropped unacknowledged (the connection closed, or never got them) it closes the window, so
/// the sender learns the connection is gone instead of waiting forever.
pub(super) struct PartAck {
    /// `None` once acknowledged.
    pub(super) window: Option<Arc<SendWindow>>,
    pub(super) n: usize,
}

impl PartAck {
    pub(super) fn ack(mut self) {
        if let Some(w) = self.window.take() {
            w.unacked.fetch_sub(self.n, Ordering::AcqRel);
            w.wake();
        }
    }
}

impl Drop for PartAck {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            w.closed.store(true, Ordering::Release);
            w.wake();
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("conn", &self.id)
            .field("seq", &self.seq)
            .finish()
    }
}

/// A reply held behind an earlier one: its pieces so far, and whether it is complete.
#[derive(Default)]
pub(super) struct Held {
    pub(super) parts: Vec<(Vec<u8>, Option<PartAck>)>,
    pub(super) last: bool,
    pub(super) close: bool,
}

impl Part {
    /// A whole reply given on the I/O worker.
    pub(super) fn answer(bytes: Vec<u8>, close: bool) -> Part {
        Part {
            bytes: Some(bytes),
            ack: None,
            last: true,
            close,
        }
    }
}
