//! Supervision: [`Supervisor`]s that own child specs and restart failed actors by strategy
//! (one-for-one, one-for-all, rest-for-one) and policy (permanent, transient, temporary), with
//! restart intensity, exponential back-off with jitter, and escalation up a tree whose root the
//! runtime holds ([`Handle::root_supervisor`](crate::runtime::Handle::root_supervisor)).
//!
//! A restarted actor gets a fresh state from its factory and keeps its address: every
//! `Addr` held by senders stays valid. Its mailbox is kept across the restart — the messages
//! queued or in flight are handled by the new incarnation — except the message whose handler
//! failed, which becomes a dead letter ([`DeadLetters`](crate::runtime::DeadLetters)). While
//! the actor is restarting (during the back-off), senders keep filling its bounded mailbox
//! and then wait for room (`tell`) or get `Full` (`try_tell`). An actor stopped for good
//! ([`Addr::stop`](crate::runtime::Addr::stop), its supervisor giving up, runtime shutdown)
//! refuses new messages and its queued ones become dead letters.
//!
//! What counts as a failure: a panic in a handler or in `started`, an `Err` from
//! [`Actor::try_handle`](crate::runtime::Actor::try_handle), [`Context::fail`](crate::runtime::Context::fail),
//! [`Addr::kill`](crate::runtime::Addr::kill), and the failure of a linked actor. Each is logged
//! once (`tracing` error) with the actor's name, the reason and its restart count.
//!
//! Decisions cost nothing on the message path: a supervised actor's task runs the same loop as
//! an unsupervised one and only consults its supervisor when an incarnation ends.
//!
//! Owns supervisor specs, decisions and reports; must not touch mailboxes or rings (it acts on
//! actors only through their exit signals).
//!
//! ```
//! use percore::runtime::{Actor, Context, Reply, Runtime};
//! use percore::runtime::supervision::{ChildSpec, SupervisorSpec};
//! use std::time::Duration;
//!
//! struct Counter(u64);
//! enum Msg { Add(u64), Crash, Get(Reply<u64>) }
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Crash => panic!("poison"),
//!             Msg::Get(r) => { let _ = r.send(self.0); }
//!         }
//!     }
//! }
//!
//! let rt = Runtime::testing(2).unwrap();
//! let sup = rt.handle().supervisor(SupervisorSpec::one_for_one("counters"));
//! let c = sup.spawn_on(1, ChildSpec::permanent(), || Counter(100)).unwrap();
//! let after = rt.block_on(async {
//!     c.tell(Msg::Add(5)).await.unwrap();
//!     c.tell(Msg::Crash).await.unwrap();  // restarted: fresh state, same address
//!     c.tell(Msg::Add(1)).await.unwrap();
//!     c.ask(Msg::Get, Duration::from_secs(5)).await.unwrap()
//! });
//! assert_eq!(after, 101);
//! assert_eq!(sup.report().restarts, 1);
//! ```

mod spec;
mod supervisor;

pub use spec::{Backoff, ChildSpec, Intensity, RestartPolicy, Strategy, SupervisorSpec};
pub(crate) use supervisor::SupCore;
pub use supervisor::{ChildReport, Supervisor, SupervisorReport};
