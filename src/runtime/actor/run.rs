//! The actor's task: `started`, the message loop over the owner-local queue (slots released in
//! batches), `stopping`, failure containment, the supervised restart loop (a fresh state from
//! the factory, same mailbox), and the clean-up that keeps the mailbox alive until every
//! message in flight to it has arrived. Owns the actor's lifetime on its worker; restart
//! decisions are the supervisor's ([`ChildHooks`]).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use super::dead_letters::DeadLetterReason;
use super::exit::{Down, ExitReason};
use super::mailbox::{
    ActorName, ActorProbe, DRAINING, Mailbox, SIG_EXIT, SIG_NONE, SIG_RESTART, SIG_SELF_STOP,
    STOP_NOW, drain_in_flight,
};
use super::{Actor, Addr, Context};
use crate::runtime::executor::{self, panic_message};
use crate::runtime::time;

/// Runs `f` and catches a panic, returning its message.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

pin_project_lite::pin_project! {
    /// Polls a future catching panics. With `watch`, from its second poll on an exit signal
    /// (kill, linked failure, group restart) drops it: a kill does not wait for a handler stuck
    /// on an await, and a handler that finishes in one poll pays nothing for the check.
    /// A struct rather than an `async fn`: the future is stored once, not twice (argument and
    /// pinned local), which kept an idle actor's task within its size budget.
    struct Guarded<'a, F, M> {
        #[pin]
        fut: F,
        watch: Option<&'a Mailbox<M>>,
        first: bool,
    }
}

/// How a guarded call ended, when not with its own result.
enum Interrupted {
    Panicked(String),
    /// An exit signal arrived while it was waiting.
    Signalled,
}

impl<F: Future, M: Send + 'static> Future for Guarded<'_, F, M> {
    type Output = Result<F::Output, Interrupted>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if !*this.first
            && let Some(mb) = this.watch
            && mb
                .local(|l| l.exit == SIG_EXIT || l.exit == SIG_RESTART)
                .unwrap_or(false)
        {
            return Poll::Ready(Err(Interrupted::Signalled));
        }
        *this.first = false;
        let fut = this.fut;
        match guard(|| fut.poll(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => {
                // An exit signal wakes the task through the waker kept in the queue: make sure
                // it is there (an actor busy since it started never parked on its queue).
                if let Some(mb) = this.watch {
                    mb.local(|l| match &l.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => l.waker = Some(cx.waker().clone()),
                    });
                }
                Poll::Pending
            }
            Err(m) => Poll::Ready(Err(Interrupted::Panicked(m))),
        }
    }
}

/// `fut`, catching panics (a hook: no signal check).
fn guarded<F: Future, M>(fut: F) -> Guarded<'static, F, M> {
    Guarded {
        fut,
        watch: None,
        first: true,
    }
}

/// `fut`, catching panics and dropped on an exit signal to `mb`'s actor (a handler).
fn guarded_handler<F: Future, M>(fut: F, mb: &Mailbox<M>) -> Guarded<'_, F, M> {
    Guarded {
        fut,
        watch: Some(mb),
        first: true,
    }
}

/// A supervisor's decision after an incarnation ended.
pub(crate) enum Decision {
    /// Build a fresh actor after `delay`; `restarts` counts this child's restarts so far.
    Restart { delay: Duration, restarts: u64 },
    /// Stop for good (policy, intensity exceeded, or the supervisor stopping).
    Stop,
}

/// What the run loop needs of the supervisor owning an actor.
pub(crate) trait ChildHooks: Send + Sync {
    /// The incarnation ended with `reason` (the actor is not being stopped for good by its
    /// address or by shutdown): restart or stop?
    fn exited(&self, reason: &ExitReason) -> Decision;
    /// The actor stopped for good.
    fn gone(&self);
}

/// What a supervised actor's task carries besides the actor: its factory and supervisor.
pub(crate) struct SupervisedStart<A> {
    pub(crate) factory: Box<dyn FnMut() -> A>,
    pub(crate) hooks: Arc<dyn ChildHooks>,
}

/// Waits `delay` before a restart; false when the actor is stopped for good meanwhile.
async fn backoff<M: Send + 'static>(delay: Duration, mb: &Mailbox<M>) -> bool {
    let stopped = || mb.state.load(Ordering::Acquire) >= DRAINING;
    if !delay.is_zero() {
        let mut sleep = std::pin::pin!(time::sleep(delay));
        std::future::poll_fn(|cx| {
            if stopped() {
                return Poll::Ready(());
            }
            // Stop signals wake the task through the waker kept in the queue.
            mb.local(|l| {
                l.notified = false;
                l.waker = Some(cx.waker().clone());
            });
            if stopped() {
                return Poll::Ready(());
            }
            sleep.as_mut().poll(cx)
        })
        .await;
    }
    !stopped()
}

/// The actor's task body: incarnations (started, the message loop), what follows each
/// (stopping, restart decisions: [`after_incarnation`]), and cleanup.
async fn run_actor<A: Actor>(
    mut actor: A,
    mb: Arc<Mailbox<A::Msg>>,
    mut sup: Option<Box<SupervisedStart<A>>>,
) {
    // The body's locals (context, handler state) live in this block, so they are dead and
    // their space reused while the mailbox drains below: an idle actor's task stays small.
    {
        let stats = mb.mesh.actors.types.cell::<A>(mb.node());
        let _ = mb.name.set(ActorName::new(stats, actor.name()));
        let mut ctx = Context {
            addr: Addr::from_mailbox(mb.clone()),
            timers: None,
        };
        mb.stats().on_start();
        let mut unreleased = 0u32; // u32: every byte of an idle actor's task counts
        // Computed once: `capacity` sits on the sender-written cache line (see `Mailbox`).
        let release_every = (mb.capacity / 8).clamp(1, 64) as u32;
        loop {
            let failure = match guarded::<_, A::Msg>(actor.started(&mut ctx)).await {
                Err(Interrupted::Panicked(m)) => Some(format!("started() panicked: {m}")),
                Err(Interrupted::Signalled) => None,
                Ok(()) => loop {
                    let next = std::future::poll_fn(|cx| {
                        // Per message only the owner-local queue is touched; the shared state is
                        // read when the queue runs dry.
                        let r = mb.local(|l| {
                            // Stopped: leave the queue to `terminate` (it releases the slots)
                            // or to the next incarnation.
                            if l.stop_now {
                                return Poll::Ready(None);
                            }
                            match l.queue.pop_front() {
                                Some(m) => Poll::Ready(Some(m)),
                                None => {
                                    let state = mb.state.load(Ordering::Acquire);
                                    if state >= STOP_NOW {
                                        return Poll::Ready(None);
                                    }
                                    // Queue empty: hand back the slots of what was handled
                                    // before waiting.
                                    if unreleased > 0 {
                                        mb.release_handled(unreleased as usize);
                                        unreleased = 0;
                                    }
                                    if state == DRAINING {
                                        if mb.slots().reserved() == 0 {
                                            return Poll::Ready(None);
                                        }
                                        // The count can reach zero with no delivery to wake
                                        // us: a streaming sender hands its unused send
                                        // credits back at the end of its turn, possibly after
                                        // its last batch arrived. Waiting as a room waiter
                                        // too, any release wakes us to look again.
                                        mb.register_room(cx.waker());
                                        if mb.slots().reserved() == 0 {
                                            return Poll::Ready(None);
                                        }
                                    }
                                    l.notified = false;
                                    match &l.waker {
                                        Some(w) if w.will_wake(cx.waker()) => {}
                                        _ => l.waker = Some(cx.waker().clone()),
                                    }
                                    Poll::Pending
                                }
                            }
                        });
                        r.expect("an actor's task runs on its mailbox's owner worker")
                    })
                    .await;
                    let Some(item) = next else { break None };
                    // Moved apart at once: a partly moved `item` would keep its slot in the
                    // task across the handler's await (8 B over the idle budget).
                    #[cfg(not(feature = "trace-context"))]
                    let msg = item;
                    #[cfg(feature = "trace-context")]
                    let super::item::Item { msg, parent } = item;
                    // Slots are released in batches (one contended atomic per batch, not per
                    // message), and always before the actor waits for more.
                    // The first message after a release may be timed (the counters are
                    // touched per batch, not per message).
                    let sample = unreleased == 0 && mb.stats().begin_sample(mb.seq);
                    unreleased += 1;
                    if unreleased >= release_every {
                        mb.release_handled(unreleased as usize);
                        unreleased = 0;
                    }
                    #[cfg(not(feature = "trace-context"))]
                    let r = guarded_handler(actor.try_handle(msg, &mut ctx), &mb).await;
                    // The handler runs in a span whose parent is the sender's span.
                    #[cfg(feature = "trace-context")]
                    let r = {
                        let span = if parent.is_none() {
                            tracing::Span::none()
                        } else {
                            tracing::info_span!(parent: &parent, "handle", actor = %ActorProbe::name(&*mb), worker = mb.node)
                        };
                        drop(parent);
                        let fut =
                            tracing::Instrument::instrument(actor.try_handle(msg, &mut ctx), span);
                        guarded_handler(fut, &mb).await
                    };
                    // The result is taken apart by value first: borrowing it (for the log line
                    // below) kept it in memory, and reading it back stalled on store
                    // forwarding: ~20 % of cross-core `tell` throughput (perf annotate).
                    // `None`: handled; `Some(failure)`: the incarnation ends (`failure` is
                    // `None` for an exit signal, whose reason is read after the loop).
                    let ended: Option<Option<String>> = match r {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(Some(format!("handler returned an error: {e}"))),
                        Err(Interrupted::Panicked(m)) => Some(Some(format!("panicked: {m}"))),
                        Err(Interrupted::Signalled) => Some(None),
                    };
                    // A timed message gets a `trace` line (target `percore::actor`) with its
                    // latency: at most one in 64 per actor type and worker, nothing on the
                    // path of the others.
                    if sample && let Some(ns) = mb.stats().end_sample(mb.seq) {
                        let outcome = match &ended {
                            None => "ok",
                            Some(Some(_)) => "failed",
                            Some(None) => "interrupted",
                        };
                        trace_handled(&mb, ns, outcome);
                    }
                    let Some(failure) = ended else { continue };
                    mb.dead_letters(DeadLetterReason::HandlerFailed, 1);
                    break failure;
                },
            };
            // Boxed: what follows an incarnation (stopping, back-off) is rare, and its state
            // would otherwise enlarge every idle actor's task.
            if !Box::pin(after_incarnation(
                &mut actor, &mut ctx, &mb, &mut sup, failure,
            ))
            .await
            {
                break;
            }
        }
        if unreleased > 0 {
            mb.release_handled(unreleased as usize);
        }
        mb.terminate();
        mb.stats().on_end();
        if let Some(s) = sup.take() {
            s.hooks.gone();
        }
    }
    drop(actor);
    // Messages still in flight are dropped on arrival (state TERMINATED); keep the mailbox alive
    // until they have all arrived.
    drain_in_flight(&mb).await;
}

/// Message ids for the per-message log lines (runtime-wide, in handling order).
static MESSAGE_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The `trace` line of one timed message: actor, id, worker, message id, latency, outcome.
#[inline(never)]
fn trace_handled<M: Send + 'static>(mb: &Mailbox<M>, ns: u64, outcome: &'static str) {
    if !tracing::enabled!(target: "percore::actor", tracing::Level::TRACE) {
        return;
    }
    let latency_us = ns as f64 / 1e3;
    let message_id = MESSAGE_IDS.fetch_add(1, Ordering::Relaxed);
    tracing::trace!(target: "percore::actor", actor = %ActorProbe::name(mb), actor_id = mb.seq, worker = mb.node, message_id, latency_us, outcome = %outcome, "message handled");
}

/// After an incarnation ended (`failure`: why, if it failed by itself): works out the reason,
/// runs `stopping` after a non-failure, asks the supervisor, logs a failure once, tells the
/// watchers, and for a restart waits out the back-off and builds a fresh actor from the factory
/// (a factory that panics is one more failed incarnation). True when a fresh `actor` is in
/// place; false when the actor stops for good (its state is then `STOP_NOW`).
async fn after_incarnation<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    mb: &Arc<Mailbox<A::Msg>>,
    sup: &mut Option<Box<SupervisedStart<A>>>,
    mut failure: Option<String>,
) -> bool {
    let mut built = true;
    loop {
        let code = mb
            .local(|l| {
                let c = l.exit;
                l.exit = SIG_NONE;
                l.stop_now = false;
                c
            })
            .unwrap_or(SIG_NONE);
        let pending = mb.mesh.actors.watch.take_pending(mb.seq);
        let reason = match (failure.take(), pending) {
            (Some(m), _) => ExitReason::Failed(m),
            (None, Some(r)) => r,
            (None, None) => match code {
                SIG_EXIT => ExitReason::Killed,
                SIG_SELF_STOP => ExitReason::Normal,
                // A group restart, a graceful stop (drained) or a stop-now.
                _ => ExitReason::Shutdown,
            },
        };
        if sup.is_none() {
            mb.set_state(STOP_NOW);
        }
        if built && !reason.is_failure() {
            if let Err(Interrupted::Panicked(m)) = guarded::<_, A::Msg>(actor.stopping(ctx)).await {
                tracing::error!(actor = %ActorProbe::name(&**mb), id = mb.seq, panic = %m, "actor panicked in stopping()");
            }
        }
        ctx.cancel_timers();
        if reason.is_failure() {
            mb.stats().on_failure();
        }
        let for_good = mb.state.load(Ordering::Acquire) >= DRAINING;
        let decision = match sup {
            Some(s) if !for_good => s.hooks.exited(&reason),
            _ => Decision::Stop,
        };
        if reason.is_failure() {
            let name = ActorProbe::name(&**mb);
            match &decision {
                Decision::Restart { delay, restarts } => {
                    tracing::error!(actor = %name, id = mb.seq, worker = mb.node, reason = %reason, restarts = *restarts, delay_ms = delay.as_millis() as u64, "actor failed; restarting it")
                }
                Decision::Stop => {
                    tracing::error!(actor = %name, id = mb.seq, worker = mb.node, reason = %reason, "actor failed and was stopped")
                }
            }
        }
        let restart = matches!(decision, Decision::Restart { .. });
        // The notice (and the name it carries) is built only when someone watches.
        let watch = &mb.mesh.actors.watch;
        if watch.in_use() {
            let down = Down {
                id: mb.seq,
                name: ActorProbe::name(&**mb),
                reason,
                restarting: restart,
            };
            watch.fire(&down, !restart);
        }
        let Decision::Restart { delay, .. } = decision else {
            mb.set_state(STOP_NOW);
            return false;
        };
        if !backoff(delay, mb).await {
            mb.set_state(STOP_NOW);
            return false;
        }
        // Signals that arrived during the back-off concern the incarnation that ended.
        mb.local(|l| {
            l.exit = SIG_NONE;
            l.stop_now = false;
        });
        mb.stats().on_restart();
        let s = sup
            .as_mut()
            .expect("a restart decision comes from a supervisor");
        match guard(&mut s.factory) {
            Ok(a) => {
                *actor = a;
                return true;
            }
            Err(m) => {
                failure = Some(format!("the factory panicked: {m}"));
                built = false;
            }
        }
    }
}

/// Starts `actor` on the current thread, which must be the owner of `mb`.
pub(crate) fn start_local<A: Actor>(actor: A, mb: Arc<Mailbox<A::Msg>>) {
    spawn_task(actor, mb, None);
}

/// Starts a supervised `actor` on the current thread (the owner of `mb`).
pub(crate) fn start_supervised<A: Actor>(
    actor: A,
    mb: Arc<Mailbox<A::Msg>>,
    sup: SupervisedStart<A>,
) {
    mb.local(|l| l.supervised = true)
        .expect("start_supervised runs on the owner worker");
    spawn_task(actor, mb, Some(Box::new(sup)));
}

fn spawn_task<A: Actor>(actor: A, mb: Arc<Mailbox<A::Msg>>, sup: Option<Box<SupervisedStart<A>>>) {
    // A `debug` span per actor (name, id, worker), entered on every poll of its task. It is
    // stored only when a subscriber enables it, so idle actors stay small otherwise.
    let span = tracing::debug_span!("actor", name = %actor.name(), id = mb.seq, worker = mb.node);
    let fut: Pin<Box<dyn Future<Output = ()>>> = if span.is_disabled() {
        Box::pin(run_actor(actor, mb, sup))
    } else {
        Box::pin(tracing::Instrument::instrument(
            run_actor(actor, mb, sup),
            span,
        ))
    };
    executor::with_current(move |e| e.spawn_raw(fut)).expect("start_local runs on a worker thread");
}

/// Marks an actor that never started (its constructor panicked) as terminated, and keeps its
/// mailbox alive until messages already in flight to it have arrived.
pub(crate) fn abandon<M: Send + 'static>(mb: &Arc<Mailbox<M>>) {
    mb.terminate();
    let keeper = mb.clone();
    executor::with_current(move |e| {
        e.spawn_raw(Box::pin(async move { drain_in_flight(&keeper).await }))
    })
    .expect("abandon runs on the owner worker");
}

#[cfg(test)]
mod size_tests {
    use super::*;
    #[cfg(not(feature = "trace-context"))]
    use crate::runtime::mesh::MeshShared;
    use std::sync::atomic::AtomicUsize;
    #[cfg(not(feature = "trace-context"))]
    struct Idle;
    #[cfg(not(feature = "trace-context"))]
    impl Actor for Idle {
        type Msg = u64;
        async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {}
    }
    /// Guards the per-actor footprint behind the "1 M idle actors < 512 MiB" target: the task
    /// future and the mailbox are the two big allocations of an idle actor. 200 B of future
    /// keeps the task's box (future + 8 B malloc header) in glibc's 208 B class; 16 B more
    /// took 1 M actors from 504 to 519 MiB.
    #[test]
    #[cfg(not(feature = "trace-context"))]
    fn idle_actor_footprint_stays_small() {
        let (mesh, _) = MeshShared::new(1, 0, 2, 4);
        let mb = Mailbox::<u64>::new(mesh, 0, 0, 4);
        let fut = run_actor(Idle, mb.clone(), None);
        assert!(
            std::mem::size_of_val(&fut) <= 200,
            "actor task is {} B",
            std::mem::size_of_val(&fut)
        );
        assert!(
            std::mem::size_of::<Mailbox<u64>>() <= 184,
            "mailbox is {} B",
            std::mem::size_of::<Mailbox<u64>>()
        );
    }

    /// The sender-side fields and the owner-side queue must never share a cache line,
    /// whatever the allocation's alignment: at least 64 bytes apart (see `Mailbox`).
    #[test]
    fn sender_and_owner_fields_are_a_cache_line_apart() {
        use std::mem::{offset_of, size_of};
        type M = Mailbox<[u64; 2]>;
        let sender_end = [
            offset_of!(M, len) + size_of::<AtomicUsize>(),
            offset_of!(M, capacity) + size_of::<usize>(),
            offset_of!(M, owner) + size_of::<u64>(),
            offset_of!(M, mesh) + size_of::<usize>(),
            offset_of!(M, state) + 1,
        ]
        .into_iter()
        .max()
        .unwrap();
        assert!(
            offset_of!(M, local) >= sender_end + 64,
            "owner queue at {} B, sender fields end at {} B",
            offset_of!(M, local),
            sender_end
        );
    }
}
