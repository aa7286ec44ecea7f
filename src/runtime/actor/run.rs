//! The actor's task: `started`, the message loop over the owner-local queue (slots released in
//! batches), `stopping`, panic containment, and the clean-up that keeps the mailbox alive until
//! every message in flight to it has arrived. Owns the actor's lifetime on its worker.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use super::mailbox::{ActorProbe, DRAINING, Mailbox, STOP_NOW, drain_in_flight};
use super::{Actor, Addr, Context};
use crate::runtime::executor::{self, panic_message};

/// Runs `f` and catches a panic, returning its message.
fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

/// Polls `fut` catching panics.
async fn guarded<F: Future>(fut: F) -> Result<F::Output, String> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match guard(|| fut.as_mut().poll(cx)) {
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(m) => Poll::Ready(Err(m)),
    })
    .await
}

/// The actor's task body: started, the message loop, stopping, and cleanup.
async fn run_actor<A: Actor>(mut actor: A, mb: Arc<Mailbox<A::Msg>>) {
    // The body's locals (context, handler state) live in this block, so they are dead and
    // their space reused while the mailbox drains below: an idle actor's task stays small.
    {
        let _ = mb.name.set(actor.name());
        let mut ctx = Context {
            addr: Addr::from_mailbox(mb.clone()),
            timers: Vec::new(),
            next_timer: 0,
        };
        let mut panicked = guarded(actor.started(&mut ctx)).await.err();
        let mut unreleased = 0u32; // u32: every byte of an idle actor's task counts
        // Computed once: `capacity` sits on the sender-written cache line (see `Mailbox`).
        let release_every = (mb.capacity / 8).clamp(1, 64) as u32;
        if panicked.is_none() {
            loop {
                let next = std::future::poll_fn(|cx| {
                    // Per message only the owner-local queue is touched; the shared state is
                    // read when the queue runs dry.
                    let r = mb.local(|l| {
                        // Stopped: leave the queue to `terminate` (it releases the slots).
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
                                // Queue empty: hand back the slots of what was handled before waiting.
                                if unreleased > 0 {
                                    mb.release(unreleased as usize);
                                    unreleased = 0;
                                }
                                if state == DRAINING {
                                    if mb.slots().reserved() == 0 {
                                        return Poll::Ready(None);
                                    }
                                    // The count can reach zero with no delivery to wake us:
                                    // a streaming sender hands its unused send credits back
                                    // at the end of its turn, possibly after its last batch
                                    // arrived. Waiting as a room waiter too, any release
                                    // wakes us to look again.
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
                let Some(msg) = next else { break };
                // Slots are released in batches (one contended atomic per batch, not per message),
                // and always before the actor waits for more.
                unreleased += 1;
                if unreleased >= release_every {
                    mb.release(unreleased as usize);
                    unreleased = 0;
                }
                if let Err(m) = guarded(actor.handle(msg, &mut ctx)).await {
                    panicked = Some(m);
                    break;
                }
            }
        }
        match &panicked {
            Some(m) => {
                tracing::error!(actor = %ActorProbe::name(&*mb), id = mb.seq, worker = mb.node, panic = %m, "actor panicked in a handler and was stopped");
                mb.set_state(STOP_NOW);
            }
            None => {
                mb.set_state(STOP_NOW);
                if let Err(m) = guarded(actor.stopping(&mut ctx)).await {
                    tracing::error!(actor = %ActorProbe::name(&*mb), id = mb.seq, panic = %m, "actor panicked in stopping()");
                }
            }
        }
        for (_, h) in ctx.timers.drain(..) {
            h.abort();
        }
        if unreleased > 0 {
            mb.release(unreleased as usize);
        }
        mb.terminate();
    }
    drop(actor);
    // Messages still in flight are dropped on arrival (state TERMINATED); keep the mailbox alive
    // until they have all arrived.
    drain_in_flight(&mb).await;
}

/// Starts `actor` on the current thread, which must be the owner of `mb`.
pub(crate) fn start_local<A: Actor>(actor: A, mb: Arc<Mailbox<A::Msg>>) {
    // A `debug` span per actor (name, id, worker), entered on every poll of its task. It is
    // stored only when a subscriber enables it, so idle actors stay small otherwise.
    let span = tracing::debug_span!("actor", name = %actor.name(), id = mb.seq, worker = mb.node);
    let fut: Pin<Box<dyn Future<Output = ()>>> = if span.is_disabled() {
        Box::pin(run_actor(actor, mb))
    } else {
        Box::pin(tracing::Instrument::instrument(run_actor(actor, mb), span))
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
    use crate::runtime::mesh::MeshShared;
    use std::sync::atomic::AtomicUsize;
    struct Idle;
    impl Actor for Idle {
        type Msg = u64;
        async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {}
    }
    /// Guards the per-actor footprint behind the "1 M idle actors < 512 MiB" target: the task
    /// future and the mailbox are the two big allocations of an idle actor. 200 B of future
    /// keeps the task's box (future + 8 B malloc header) in glibc's 208 B class; 16 B more
    /// took 1 M actors from 504 to 519 MiB.
    #[test]
    fn idle_actor_footprint_stays_small() {
        let (mesh, _) = MeshShared::new(1, 0, 2, 4);
        let mb = Mailbox::<u64>::new(mesh, 0, 0, 4);
        let fut = run_actor(Idle, mb.clone());
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
