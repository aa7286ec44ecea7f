//! [`Addr`] (tell, try_tell, ask, stop), the hand-written [`Ask`] future and [`Reply`], the
//! answer slot of a request. Owns the sender's view of an actor; reservation and delivery are
//! the mailbox's.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use super::Actor;
use super::mailbox::{ActorProbe, Mailbox, OPEN, Reserve, wait_terminated};
use crate::runtime::error::{AskError, SendError, Stopped, TrySendError};
use crate::runtime::executor;
use crate::runtime::mesh;
use crate::runtime::oneshot;
use crate::runtime::time;

/// The address of an actor: cheap to clone, `Send + Sync`, usable from any thread and core.
pub struct Addr<A: Actor> {
    pub(super) mb: Arc<Mailbox<A::Msg>>,
    _a: PhantomData<fn() -> A>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            mb: self.mb.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: Actor> std::fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addr")
            .field("actor", &self.mb.name())
            .field("id", &self.mb.seq)
            .field("worker", &self.mb.node())
            .finish()
    }
}

impl<A: Actor> Addr<A> {
    pub(crate) fn from_mailbox(mb: Arc<Mailbox<A::Msg>>) -> Self {
        Addr {
            mb,
            _a: PhantomData,
        }
    }

    /// Sends without waiting: `Full(msg)` when the mailbox is at capacity, `Stopped(msg)` when
    /// the actor has stopped. Nothing is silently dropped.
    pub fn try_tell(&self, msg: A::Msg) -> Result<(), TrySendError<A::Msg>> {
        let Err(msg) = self.mb.fast_send(msg) else {
            return Ok(());
        };
        match self.mb.try_reserve() {
            Ok(()) => {
                self.mb.dispatch(msg);
                Ok(())
            }
            Err(Reserve::Full) => Err(TrySendError::Full(msg)),
            Err(Reserve::Stopped) => Err(TrySendError::Stopped(msg)),
        }
    }

    /// Sends, waiting for mailbox room if it is full (backpressure). Fails only if the actor
    /// has stopped, handing the message back.
    ///
    /// Cooperative: a task that has made 128 sends in one poll yields once here (its worker
    /// then runs its rings, timers and other tasks before resuming it), like tokio's budget.
    pub async fn tell(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        // Each send spends one unit of the task's cooperative budget (see
        // `executor::poll_proceed`); a spent budget skips the fast path and yields below.
        let budget = executor::take_budget();
        let msg = match budget {
            true => match self.mb.fast_send(msg) {
                Ok(()) => return Ok(()),
                Err(msg) => msg,
            },
            false => msg,
        };
        let mut msg = Some(msg);
        let mut must_yield = !budget;
        std::future::poll_fn(|cx| self.poll_send(&mut msg, &mut must_yield, cx))
            .await
            .map_err(SendError::Stopped)
    }

    /// Sends the message in `msg` once the mailbox has room (reserving a slot, then
    /// dispatching), first yielding once if `must_yield`. `Ready(Err(msg))` when the actor has
    /// stopped; `Pending` (message kept) while the mailbox is full.
    fn poll_send(
        &self,
        msg: &mut Option<A::Msg>,
        must_yield: &mut bool,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), A::Msg>> {
        if *must_yield {
            if executor::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            *must_yield = false;
        }
        let take = |msg: &mut Option<A::Msg>| msg.take().expect("a send's message is taken once");
        loop {
            match self.mb.try_reserve() {
                Ok(()) => {
                    self.mb.dispatch(take(msg));
                    return Poll::Ready(Ok(()));
                }
                Err(Reserve::Stopped) => return Poll::Ready(Err(take(msg))),
                Err(Reserve::Full) => {
                    self.mb.register_room(cx.waker());
                    match self.mb.try_reserve() {
                        Err(Reserve::Full) => return Poll::Pending,
                        Ok(()) => {
                            self.mb.dispatch(take(msg));
                            return Poll::Ready(Ok(()));
                        }
                        Err(Reserve::Stopped) => continue,
                    }
                }
            }
        }
    }

    /// Readiness for a send: `Ready(Ok)` when the mailbox has room now, `Ready(Err(Stopped))`
    /// when the actor has stopped, else `Pending` with `cx`'s waker woken when room appears.
    /// Room is not reserved: a following `try_tell` can still find the mailbox full.
    pub fn poll_ready(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Stopped>> {
        let check = |mb: &Mailbox<A::Msg>| {
            if mb.state.load(Ordering::Acquire) != OPEN {
                Some(Err(Stopped))
            } else if mb.slots().reserved() < mb.capacity {
                Some(Ok(()))
            } else {
                None
            }
        };
        if let Some(r) = check(&self.mb) {
            return Poll::Ready(r);
        }
        self.mb.register_room(cx.waker());
        match check(&self.mb) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Request/reply: builds the message around a [`Reply`], sends it, and waits for the
    /// answer, all within `timeout`.
    ///
    /// The timeout is measured as [`timeout`](crate::runtime::timeout) measures it: never
    /// shorter than asked, and an answer within the asker's scheduler turn (same core) costs no
    /// timer at all.
    pub fn ask<R, F>(
        &self,
        make: F,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, AskError>> + use<'_, A, R, F>
    where
        R: Send + 'static,
        F: FnOnce(Reply<R>) -> A::Msg,
    {
        Ask {
            addr: self,
            state: AskState::Start(make),
            limit: time::After::new(timeout),
            timeout,
        }
    }

    /// [`Addr::ask`] under a [`RetryPolicy`](crate::runtime::retry::RetryPolicy): the request
    /// is rebuilt by `make` for every attempt, each attempt has `timeout`, and the errors the
    /// policy names are retried after its back-off (see
    /// [`RetryPolicy::for_ask`](crate::runtime::retry::RetryPolicy::for_ask)).
    pub async fn ask_with_retry<R, F>(
        &self,
        mut make: F,
        timeout: Duration,
        policy: &crate::runtime::retry::RetryPolicy<AskError>,
    ) -> Result<R, AskError>
    where
        R: Send + 'static,
        F: FnMut(Reply<R>) -> A::Msg,
    {
        let seed = crate::runtime::retry::seed();
        let mut failed = 0;
        loop {
            match self.ask(&mut make, timeout).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    failed += 1;
                    match policy.pause(failed, &e, seed) {
                        Some(d) => time::sleep(d).await,
                        None => return Err(e),
                    }
                }
            }
        }
    }

    /// Asks the actor to stop gracefully: it refuses new messages at once, handles those already
    /// queued or in flight, runs [`Actor::stopping`], and terminates.
    pub fn stop(&self) {
        self.mb.clone().begin_stop();
    }

    /// Kills the actor: it stops now, without draining its mailbox or running
    /// [`Actor::stopping`]; a handler waiting on an await is dropped. This is a failure
    /// ([`ExitReason::Killed`](super::ExitReason::Killed)): an unsupervised actor stops for good
    /// (its queued messages become dead letters), a supervised one is restarted per its policy
    /// (its queued messages kept). To stop a supervised actor for good, use [`Addr::stop`].
    pub fn kill(&self) {
        self.mb.signal(super::mailbox::SIG_EXIT);
    }

    /// True until the actor has terminated (names and links need a live actor).
    pub(crate) fn is_registrable(&self) -> bool {
        self.mb.state.load(Ordering::Acquire) != super::mailbox::TERMINATED
    }

    /// Waits until the actor has terminated.
    pub async fn stopped(&self) {
        wait_terminated(&*self.mb).await
    }

    /// True while the actor accepts messages.
    pub fn is_alive(&self) -> bool {
        self.mb.state.load(Ordering::Acquire) == OPEN
    }

    /// The app worker the actor lives on.
    pub fn worker(&self) -> usize {
        self.mb.node()
    }

    /// A runtime-unique actor id (also its start order).
    pub fn id(&self) -> u64 {
        self.mb.seq
    }

    /// Messages queued or in flight to this actor.
    pub fn mailbox_len(&self) -> usize {
        self.mb.len.load(Ordering::Relaxed).min(self.mb.capacity)
    }

    /// The mailbox bound.
    pub fn mailbox_capacity(&self) -> usize {
        self.mb.capacity
    }
}

/// The future of [`Addr::ask`], written by hand: the equivalent `async` blocks (a `tell`
/// inside a timeout) moved their state between nested futures on every poll, which measured
/// ~15 % of a same-core round trip.
struct Ask<'a, A: Actor, R, F> {
    addr: &'a Addr<A>,
    state: AskState<A::Msg, R, F>,
    limit: time::After,
    timeout: Duration,
}

enum AskState<M, R, F> {
    /// Not polled yet: the request is built at the first poll, on the asker's worker (whose
    /// index rides in the reply slot, see [`Reply::send`]).
    Start(F),
    /// Waiting for mailbox room (`must_yield`: the cooperative budget was spent).
    Send {
        msg: Option<M>,
        rx: oneshot::Receiver<R>,
        must_yield: bool,
    },
    Wait(oneshot::Receiver<R>),
    Done,
}

// No field is structurally pinned (`After` and the receiver are `Unpin`; the message and the
// closure are only moved, never pinned), so the future may move between polls.
impl<A: Actor, R, F> Unpin for Ask<'_, A, R, F> {}

impl<A: Actor, R: Send + 'static, F: FnOnce(Reply<R>) -> A::Msg> Future for Ask<'_, A, R, F> {
    type Output = Result<R, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let AskState::Start(_) = this.state {
            let AskState::Start(make) = std::mem::replace(&mut this.state, AskState::Done) else {
                unreachable!("matched just above")
            };
            // Tagged with the asker's app worker + 1 (0: not on an app worker).
            let home = match executor::current_mesh_node() {
                Some((_, node)) if node < u16::MAX as usize => node as u16 + 1,
                _ => 0,
            };
            let (tx, rx) = oneshot::channel_tagged(home);
            let msg = make(Reply { tx });
            this.state = AskState::Send {
                msg: Some(msg),
                rx,
                must_yield: !executor::take_budget(),
            };
        }
        if let AskState::Send {
            msg, must_yield, ..
        } = &mut this.state
        {
            match this.addr.poll_send(msg, must_yield, cx) {
                Poll::Ready(Ok(())) => {
                    let AskState::Send { rx, .. } =
                        std::mem::replace(&mut this.state, AskState::Done)
                    else {
                        unreachable!("matched just above")
                    };
                    this.state = AskState::Wait(rx);
                }
                Poll::Ready(Err(_)) => {
                    this.state = AskState::Done;
                    return Poll::Ready(Err(AskError::Stopped));
                }
                Poll::Pending => return this.poll_limit(cx),
            }
        }
        let AskState::Wait(rx) = &mut this.state else {
            // `Done`: polled after completion.
            return Poll::Ready(Err(AskError::NoReply));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(r) => {
                this.state = AskState::Done;
                Poll::Ready(match r {
                    Ok(v) => Ok(v),
                    Err(_) if !this.addr.is_alive() => Err(AskError::Stopped),
                    Err(_) => Err(AskError::NoReply),
                })
            }
            Poll::Pending => this.poll_limit(cx),
        }
    }
}

impl<A: Actor, R, F> Ask<'_, A, R, F> {
    fn poll_limit<T>(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<T, AskError>> {
        match self.limit.poll(cx) {
            Poll::Ready(()) => {
                self.state = AskState::Done;
                Poll::Ready(Err(AskError::Timeout(self.timeout)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The answer slot of a request. Put it in a message; the handler calls [`Reply::send`].
/// Dropping it unanswered fails the ask with [`AskError::NoReply`] (or `Stopped`).
///
/// An answer to an asker on another app worker of the same runtime travels over the mesh ring
/// to the asker's worker and is put in place there: the answering core never touches the
/// asker's reply slot or task (each of those was a cache-line transfer on the round trip's
/// critical path; BENCHMARKS.md, "Actors").
///
/// The asker's worker rides in the reply slot's pointer (spare high bits, see
/// [`oneshot::Sender`]): a `Reply` is one word, so request messages stay small.
pub struct Reply<R> {
    tx: oneshot::Sender<R>,
}

impl<R: Send + 'static> Reply<R> {
    /// Sends the answer. Gives it back if the asker is known to have gone (timed out or
    /// dropped); an answer handed to an asker on another core that gives up meanwhile is
    /// dropped there.
    pub fn send(self, value: R) -> Result<(), R> {
        let home = self.tx.tag() as usize;
        match executor::current_mesh_node() {
            Some((mesh, me)) if home != 0 && home - 1 != me => {
                let tx = self.tx;
                // Runs on the asker's worker: the value lands in the slot and the asker's task
                // is queued there, both core-local.
                let env = mesh::Envelope::new(move || {
                    let _ = tx.send(value);
                });
                if let Err(env) = mesh::send_signal(mesh, home - 1, env) {
                    // Not this thread's to send (ring ends busy, or no app worker of this
                    // mesh has that index: the asker runs in another runtime): deliver
                    // directly. (An asker in another runtime whose index is an app worker
                    // here gets the answer via that worker: slower, still correct.)
                    env.run();
                }
                Ok(())
            }
            _ => self.tx.send(value),
        }
    }
}

impl<R> Reply<R> {
    /// True when the asker has gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}
