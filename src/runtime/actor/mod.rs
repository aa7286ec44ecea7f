//! Typed actors: the [`Actor`] trait, bounded mailboxes, [`Addr`] (tell, try_tell, ask, stop),
//! [`Reply`] and the per-actor [`Context`] (address, worker, timers, stop).
//!
//! An actor lives on one app worker for its whole life and is driven by one task there; its
//! state is `&mut self`, never shared. Its mailbox bound is enforced by an atomic count of
//! reserved slots, so every sender on every core sees the same capacity; the queue itself lives
//! on the owner worker and is touched only there. A message from the actor's own worker is
//! pushed straight into the queue; one from another worker crosses that worker's SPSC ring.
//!
//! Ordering: messages from one sender (one task, actor or thread) to one actor arrive in the
//! order sent, none lost or duplicated. Messages from *different* senders are not causally
//! ordered (as in Akka or Orleans): a message sent through the injector may overtake one an
//! app worker published earlier on its ring. A cross-thread wake-up (join, reply) publishes
//! the waker's pending ring sends first.
//!
//! Owns actor lifecycle and mailboxes; must not touch ring internals or thread placement.
//!
//! ```
//! use percore::runtime::{Actor, Context, Reply, Runtime};
//! use std::time::Duration;
//!
//! struct Counter(u64);
//! enum Msg { Add(u64), Get(Reply<u64>) }
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Get(r) => { let _ = r.send(self.0); }
//!         }
//!     }
//! }
//!
//! let rt = Runtime::testing(2).unwrap();
//! let addr = rt.spawn_actor_on(1, || Counter(0)).unwrap();
//! let total = rt.block_on(async move {
//!     for i in 1..=10 { addr.tell(Msg::Add(i)).await.unwrap(); }
//!     addr.ask(Msg::Get, Duration::from_secs(5)).await.unwrap()
//! });
//! assert_eq!(total, 55);
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

mod addr;
mod batch;
mod dead_letters;
mod exit;
mod item;
mod mailbox;
mod names;
mod owner_cell;
mod registry;
mod run;
mod slots;
mod stats;
mod watch;

pub use addr::{Addr, Reply};
pub use dead_letters::{DEFAULT_DEAD_LETTER_CAPACITY, DeadLetter, DeadLetterReason, DeadLetters};
pub use exit::{ActorError, Down, ExitReason};
pub(crate) use mailbox::{ActorProbe, Mailbox, wait_terminated};
pub use names::NameError;
pub(crate) use registry::ActorRegistry;
pub(crate) use run::{
    ChildHooks, Decision, SupervisedStart, abandon, start_local, start_supervised,
};
pub use stats::{ActorTypeSnapshot, LATENCY_BUCKETS, LATENCY_SAMPLE_EVERY};

use std::sync::Arc;

use super::error::Stopped;
use super::task::{self, JoinHandle};
use super::time;
use mailbox::{SIG_EXIT, SIG_SELF_STOP, STOP_NOW};

/// A typed actor. It lives on one app worker, handles one message at a time with `&mut self`,
/// and need not be `Send` (only its messages cross threads).
///
/// Write the handlers as `async fn`: [`Actor::handle`], or [`Actor::try_handle`] for a handler
/// that can fail with an error. A failure (a panic in a handler or hook, an error returned,
/// [`Context::fail`]) ends this actor only: it is logged once with the actor's name and the
/// reason, the message being handled becomes a dead letter, and the worker and its other actors
/// go on. An unsupervised actor then stops (its queued messages become dead letters, pending
/// asks fail); a supervised one is restarted by its
/// [`Supervisor`](crate::runtime::supervision::Supervisor) with a fresh state from its factory,
/// at the same address and with its queued messages kept.
pub trait Actor: Sized + 'static {
    /// The messages this actor handles; usually an enum. Requests carry a [`Reply`].
    type Msg: Send + 'static;

    /// Runs once on the actor's worker before the first message.
    fn started(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Handles one message. Implement this or [`Actor::try_handle`]; an actor implementing
    /// neither fails at its first message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = msg;
        ctx.fail("the actor implements neither Actor::handle nor Actor::try_handle");
        async {}
    }

    /// Handles one message and may fail: an `Err` counts as a failure exactly like a panic
    /// (logged, the actor stopped or restarted by its supervisor). The default calls
    /// [`Actor::handle`] and never fails.
    fn try_handle(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), ActorError>> {
        let fut = self.handle(msg, ctx);
        async move {
            fut.await;
            Ok(())
        }
    }

    /// Runs once when the actor stops (asked to, its runtime shutting down, or
    /// [`Context::stop`]), after its mailbox has been drained for a graceful stop, and before a
    /// supervised actor is restarted because its group is. Not called after a failure or a kill.
    fn stopping(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// The name used in logs, spans and shutdown reports. Defaults to the type name.
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

/// Identifies a timer started with [`Context::run_later`] or [`Context::run_every`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// What an actor knows about itself while it runs: its address, worker, timers, stop and
/// failure, links and monitors.
pub struct Context<A: Actor> {
    addr: Addr<A>,
    /// Timers, allocated at the first one: an idle actor's task stays small (see `run.rs`).
    timers: Option<Box<Timers>>,
}

#[derive(Default)]
struct Timers {
    live: Vec<(u64, JoinHandle<()>)>,
    next: u64,
}

impl<A: Actor> Context<A> {
    /// This actor's address.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// The app worker running this actor.
    pub fn worker(&self) -> usize {
        self.addr.mb.node()
    }

    /// Stops the actor after the current handler returns ([`ExitReason::Normal`]); queued
    /// messages become dead letters (their asks fail). For a graceful stop that drains the
    /// mailbox, use [`Addr::stop`]. A supervised actor with a `Permanent` policy is restarted
    /// even after a normal stop (as in OTP); its queued messages are then kept.
    pub fn stop(&mut self) {
        let mb = &self.addr.mb;
        let supervised = mb
            .local(|l| {
                l.stop_now = true;
                if l.exit == mailbox::SIG_NONE {
                    l.exit = SIG_SELF_STOP;
                }
                l.supervised
            })
            .unwrap_or(false);
        if !supervised {
            mb.set_state(STOP_NOW);
            mb.wake_room();
        }
    }

    /// Fails the actor after the current handler (or `started`) returns, with `reason`: logged,
    /// counted, and handled by its supervisor like a panic, without unwinding.
    pub fn fail(&mut self, reason: impl Into<String>) {
        let mb = &self.addr.mb;
        mb.mesh
            .actors
            .watch
            .set_pending(mb.seq, ExitReason::Failed(reason.into()));
        mb.local(|l| {
            l.stop_now = true;
            l.exit = SIG_EXIT;
        });
    }

    /// Watches `other`: when its current incarnation ends (any reason), this actor receives a
    /// [`Down`] message. Watching an actor that has already terminated delivers the `Down` at
    /// once (reason `Shutdown`).
    pub fn monitor<B: Actor>(&mut self, other: &Addr<B>)
    where
        A::Msg: From<Down>,
    {
        let me = self.addr.clone();
        let target = other.mb.clone();
        let watch = &self.addr.mb.mesh.actors.watch;
        watch.monitor(
            other.id(),
            Box::new(move |down: Down| {
                if me.try_tell(A::Msg::from(down)).is_err() {
                    ActorProbe::record_undelivered_notice(&*me.mb);
                }
            }),
        );
        if !other.is_registrable() {
            let down = Down {
                id: target.seq,
                name: ActorProbe::name(&*target),
                reason: ExitReason::Shutdown,
                restarting: false,
            };
            watch.fire(&down, false);
        }
    }

    /// Links this actor and `other` both ways: when either fails, the other is made to exit
    /// with [`ExitReason::Linked`] (a failure: its supervisor restarts it per its policy)
    /// unless it traps exits ([`Context::trap_exits`]), in which case it receives a [`Down`]
    /// message instead. A normal stop of either removes the link silently. Links end with the
    /// incarnation on either side; a restarted actor links anew (in `started`, say).
    pub fn link<B: Actor>(&mut self, other: &Addr<B>) -> Result<(), Stopped> {
        if !other.is_registrable() {
            return Err(Stopped);
        }
        let me: Arc<dyn ActorProbe> = self.addr.mb.clone();
        let them: Arc<dyn ActorProbe> = other.mb.clone();
        self.addr.mb.mesh.actors.watch.link(me, them);
        Ok(())
    }

    /// Removes the link with `other`, if any.
    pub fn unlink<B: Actor>(&mut self, other: &Addr<B>) {
        self.addr
            .mb
            .mesh
            .actors
            .watch
            .unlink(self.addr.id(), other.id());
    }

    /// With `true`, failures of linked actors arrive as [`Down`] messages instead of making
    /// this actor exit (Erlang's `trap_exit`); a notice that finds the mailbox full is a dead
    /// letter. Lasts until the actor stops for good.
    pub fn trap_exits(&mut self, on: bool)
    where
        A::Msg: From<Down>,
    {
        let watch = &self.addr.mb.mesh.actors.watch;
        if on {
            let me = self.addr.clone();
            watch.set_trap(
                self.addr.id(),
                Some(Arc::new(move |down: Down| {
                    me.try_tell(A::Msg::from(down)).is_ok()
                })),
            );
        } else {
            watch.set_trap(self.addr.id(), None);
        }
    }

    /// Sends `msg` to this actor after `delay`. Cancelled when the actor stops.
    pub fn run_later(&mut self, delay: Duration, msg: A::Msg) -> TimerId {
        let addr = self.addr.clone();
        self.add_timer(async move {
            time::sleep(delay).await;
            let _ = addr.tell(msg).await;
        })
    }

    /// Sends `make()` to this actor every `period` (first after one period), waiting for
    /// mailbox room each time. Cancelled when the actor stops.
    pub fn run_every(
        &mut self,
        period: Duration,
        mut make: impl FnMut() -> A::Msg + 'static,
    ) -> TimerId {
        let addr = self.addr.clone();
        self.add_timer(async move {
            let mut iv = time::interval(period);
            iv.tick().await;
            loop {
                iv.tick().await;
                if addr.tell(make()).await.is_err() {
                    break;
                }
            }
        })
    }

    /// Cancels a timer. Returns false if it had already finished.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        let Some(t) = self.timers.as_mut() else {
            return false;
        };
        match t.live.iter().position(|(i, _)| *i == id.0) {
            Some(p) => {
                let (_, h) = t.live.swap_remove(p);
                let live = !h.is_finished();
                h.abort();
                live
            }
            None => false,
        }
    }

    fn add_timer(&mut self, fut: impl Future<Output = ()> + 'static) -> TimerId {
        let t = self.timers.get_or_insert_with(Default::default);
        t.live.retain(|(_, h)| !h.is_finished());
        let h = task::spawn_local(fut);
        t.next += 1;
        t.live.push((t.next, h));
        TimerId(t.next)
    }

    /// Cancels every timer (the incarnation ends).
    fn cancel_timers(&mut self) {
        if let Some(t) = self.timers.take() {
            for (_, h) in t.live {
                h.abort();
            }
        }
    }

    /// Spawns a task on this actor's worker (not tied to the actor's lifetime).
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        task::spawn_local(fut)
    }
}
