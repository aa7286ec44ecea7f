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
mod mailbox;
mod owner_cell;
mod registry;
mod run;
mod slots;

pub use addr::{Addr, Reply};
pub(crate) use mailbox::{ActorProbe, Mailbox, wait_terminated};
pub(crate) use registry::ActorRegistry;
pub(crate) use run::{abandon, start_local};

use super::task::{self, JoinHandle};
use super::time;
use mailbox::STOP_NOW;

/// A typed actor. It lives on one app worker, handles one message at a time with `&mut self`,
/// and need not be `Send` (only its messages cross threads).
///
/// Write the handlers as `async fn`. A panic inside a handler stops this actor only: it is
/// logged with the actor's name and the panic message, its pending asks fail, and the worker
/// and its other actors go on.
pub trait Actor: Sized + 'static {
    /// The messages this actor handles; usually an enum. Requests carry a [`Reply`].
    type Msg: Send + 'static;

    /// Runs once on the actor's worker before the first message.
    fn started(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> {
        let _ = ctx;
        async {}
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<Self>) -> impl Future<Output = ()>;

    /// Runs once when the actor stops (asked to, its runtime shutting down, or
    /// [`Context::stop`]), after its mailbox has been drained for a graceful stop. Not called
    /// after a panic.
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

/// What an actor knows about itself while it runs: its address, worker, timers and stop.
pub struct Context<A: Actor> {
    addr: Addr<A>,
    timers: Vec<(u64, JoinHandle<()>)>,
    next_timer: u64,
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

    /// Stops the actor after the current handler returns; queued messages are dropped (their
    /// asks fail). For a graceful stop that drains the mailbox, use [`Addr::stop`].
    pub fn stop(&mut self) {
        self.addr.mb.set_state(STOP_NOW);
        self.addr.mb.local(|l| l.stop_now = true);
        self.addr.mb.wake_room();
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
        match self.timers.iter().position(|(i, _)| *i == id.0) {
            Some(p) => {
                let (_, h) = self.timers.swap_remove(p);
                let live = !h.is_finished();
                h.abort();
                live
            }
            None => false,
        }
    }

    fn add_timer(&mut self, fut: impl Future<Output = ()> + 'static) -> TimerId {
        self.timers.retain(|(_, h)| !h.is_finished());
        let h = task::spawn_local(fut);
        self.next_timer += 1;
        self.timers.push((self.next_timer, h));
        TimerId(self.next_timer)
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
