//! Supervision, links, monitors, kills, names and dead letters on real worker threads:
//! restarts keep the address and the queued messages, strategies pick the right siblings,
//! intensity escalates up the tree, a crash loop never spins, and failures are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::partition::HashPartitioner;
use percore::runtime::supervision::{Backoff, ChildSpec, Strategy, SupervisorSpec};
use percore::runtime::{
    Actor, ActorError, AskError, Context, DeadLetterReason, Down, ExitReason, NameError, Reply,
    Runtime, SendError, sleep,
};

const T: Duration = Duration::from_secs(20);

/// Counts what it is told; crashes, errs or fails on request; reports its state and worker.
struct Counter {
    n: u64,
}

enum Msg {
    Add(u64),
    Panic,
    Err,
    Fail,
    Stop,
    /// Waits forever (for kills).
    Hang(Arc<AtomicBool>),
    Get(Reply<(u64, usize)>),
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

impl Actor for Counter {
    type Msg = Msg;
    async fn try_handle(&mut self, msg: Msg, ctx: &mut Context<Self>) -> Result<(), ActorError> {
        match msg {
            Msg::Add(k) => self.n += k,
            Msg::Panic => panic!("poison message"),
            Msg::Err => return Err(Boom.into()),
            Msg::Fail => ctx.fail("asked to fail"),
            Msg::Stop => ctx.stop(),
            Msg::Hang(entered) => {
                entered.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await
            }
            Msg::Get(r) => {
                let _ = r.send((self.n, ctx.worker()));
            }
        }
        Ok(())
    }
}

fn counter(built: &Arc<AtomicU64>) -> impl Fn() -> Counter + Send + Sync + 'static {
    let b = built.clone();
    move || {
        b.fetch_add(1, Ordering::SeqCst);
        Counter { n: 0 }
    }
}

async fn get(a: &percore::runtime::Addr<Counter>) -> (u64, usize) {
    a.ask(Msg::Get, T).await.unwrap()
}

/// Sends `Hang` and waits until its handler is waiting.
async fn hang(a: &percore::runtime::Addr<Counter>) {
    let entered = Arc::new(AtomicBool::new(false));
    a.tell(Msg::Hang(entered.clone())).await.unwrap();
    let end = Instant::now() + T;
    while !entered.load(Ordering::SeqCst) {
        assert!(Instant::now() < end, "the handler never started");
        sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (up to `T`) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn fast(name: &str, strategy: Strategy) -> SupervisorSpec {
    SupervisorSpec::new(name, strategy).backoff(Backoff::none())
}

#[test]
fn panic_error_and_fail_restart_with_fresh_state_same_address_queue_kept() {
    let rt = Runtime::testing(2).unwrap();
    let built = Arc::new(AtomicU64::new(0));
    let sup = rt
        .handle()
        .supervisor(fast("s", Strategy::OneForOne).intensity(10, Duration::from_secs(5)));
    let c = sup
        .spawn_on(1, ChildSpec::permanent().name("counter"), counter(&built))
        .unwrap();
    let id = c.id();
    rt.block_on(async {
        for failure in [Msg::Panic, Msg::Err, Msg::Fail] {
            c.tell(Msg::Add(7)).await.unwrap();
            // The failure and the messages queued behind it go in one burst: the ones behind
            // it are handled by the next incarnation.
            c.tell(failure).await.unwrap();
            c.tell(Msg::Add(2)).await.unwrap();
            c.tell(Msg::Add(3)).await.unwrap();
            let (n, w) = get(&c).await;
            assert_eq!((n, w), (5, 1), "fresh state plus the queued messages");
        }
    });
    assert_eq!(c.id(), id);
    assert!(c.is_alive());
    assert_eq!(built.load(Ordering::SeqCst), 4);
    let r = sup.report();
    assert_eq!(r.restarts, 3);
    assert_eq!(r.children.len(), 1);
    assert_eq!(r.children[0].restarts, 3);
    assert_eq!(r.children[0].name, "counter");
    // The failing messages are dead letters; the `fail` one was handled (it failed after).
    let dl = rt.handle().dead_letters().recent();
    let failed: Vec<_> = dl
        .iter()
        .filter(|d| d.actor_id == id && d.reason == DeadLetterReason::HandlerFailed)
        .collect();
    assert_eq!(failed.len(), 2, "{dl:?}");
    let counter_type = || {
        rt.handle()
            .actor_types()
            .into_iter()
            .find(|t| t.actor_type.ends_with("Counter"))
            .unwrap()
    };
    let t = counter_type();
    assert_eq!((t.live, t.restarts, t.failures), (1, 3, 3));
    // Handled messages are counted when their slots are released (per batch, and before the
    // actor waits): the last ones show once it is idle again.
    eventually("15 handled messages in the counters", || {
        counter_type().handled >= 15
    });
}

#[test]
fn policies_transient_and_temporary() {
    let rt = Runtime::testing(2).unwrap();
    let sup = rt.handle().supervisor(fast("p", Strategy::OneForOne));
    let built = Arc::new(AtomicU64::new(0));
    let permanent = sup
        .spawn_on(0, ChildSpec::permanent(), counter(&built))
        .unwrap();
    let transient = sup
        .spawn_on(0, ChildSpec::transient(), counter(&built))
        .unwrap();
    let temporary = sup
        .spawn_on(1, ChildSpec::temporary(), counter(&built))
        .unwrap();
    rt.block_on(async {
        // A normal stop restarts only a permanent child.
        permanent.tell(Msg::Stop).await.unwrap();
        transient.tell(Msg::Panic).await.unwrap();
        assert_eq!(get(&permanent).await.0, 0);
        assert_eq!(get(&transient).await.0, 0);
        transient.tell(Msg::Stop).await.unwrap();
        transient.stopped().await;
        temporary.tell(Msg::Panic).await.unwrap();
        temporary.stopped().await;
    });
    assert!(permanent.is_alive());
    assert!(!transient.is_alive() && !temporary.is_alive());
    assert_eq!(sup.report().restarts, 2);
    // A child leaves its supervisor just after its address reports it stopped.
    eventually("stopped children to leave the supervisor", || {
        sup.report().children.len() == 1
    });
}

#[test]
fn one_for_all_restarts_siblings_on_other_workers_rest_for_one_only_later_ones() {
    let rt = Runtime::testing(2).unwrap();
    let b = Arc::new(AtomicU64::new(0));
    for (strategy, expect) in [
        (Strategy::OneForAll, [0, 0, 0]),
        (Strategy::RestForOne, [10, 0, 0]),
        (Strategy::OneForOne, [10, 0, 10]),
    ] {
        let sup = rt.handle().supervisor(fast("group", strategy));
        let kids: Vec<_> = (0..3)
            .map(|i| {
                sup.spawn_on(i % 2, ChildSpec::permanent(), counter(&b))
                    .unwrap()
            })
            .collect();
        let got = rt.block_on(async {
            for k in &kids {
                k.tell(Msg::Add(10)).await.unwrap();
                get(k).await;
            }
            kids[1].tell(Msg::Panic).await.unwrap();
            // Group restarts reach the siblings as signals: wait for them to land.
            let restarts_wanted = match strategy {
                Strategy::OneForAll => 3,
                Strategy::RestForOne => 2,
                Strategy::OneForOne => 1,
            };
            let end = Instant::now() + T;
            while sup
                .report()
                .children
                .iter()
                .map(|c| c.restarts)
                .sum::<u64>()
                < restarts_wanted
            {
                assert!(Instant::now() < end, "{strategy:?}: {:?}", sup.report());
                sleep(Duration::from_millis(1)).await;
            }
            let mut got = [0; 3];
            for (i, k) in kids.iter().enumerate() {
                got[i] = get(k).await.0;
            }
            got
        });
        assert_eq!(got, expect, "{strategy:?}");
        sup.stop();
    }
}

#[test]
fn crash_loop_escalates_after_intensity_without_spinning_and_the_rest_keeps_serving() {
    let rt = Runtime::testing(2).unwrap();
    let parent = rt.handle().supervisor(
        SupervisorSpec::one_for_one("parent")
            .intensity(1, Duration::from_secs(60))
            .backoff(Backoff::none()),
    );
    let child = parent
        .supervisor(SupervisorSpec::one_for_one("child").intensity(3, Duration::from_secs(60)));
    let built = Arc::new(AtomicU64::new(0));
    let b2 = built.clone();
    // Panics at every start.
    struct Crasher;
    impl Actor for Crasher {
        type Msg = ();
        async fn started(&mut self, _ctx: &mut Context<Self>) {
            panic!("cannot start");
        }
        async fn handle(&mut self, _m: (), _ctx: &mut Context<Self>) {}
    }
    let crasher = child
        .spawn_on(1, ChildSpec::permanent(), move || {
            b2.fetch_add(1, Ordering::SeqCst);
            Crasher
        })
        .unwrap();
    let other_built = Arc::new(AtomicU64::new(0));
    let bystander = rt
        .handle()
        .supervisor(SupervisorSpec::one_for_one("bystanders"))
        .spawn_on(1, ChildSpec::permanent(), counter(&other_built))
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(crasher.stopped());
    let took = t0.elapsed();
    // Each round the child supervisor starts the crasher 4 times (1 + 3 restarts) and gives
    // up. The parent (intensity 1) restarts it once, gives up at the next round, and is
    // restarted by the root (intensity 3 in 5 s) — three times; at the fourth the root leaves
    // the parent's subtree stopped: 8 rounds.
    assert_eq!(built.load(Ordering::SeqCst), 32);
    let pr = parent.report();
    assert!(pr.stopped, "{pr:?}");
    assert_eq!((pr.restarts, pr.escalations), (4, 4), "{pr:?}");
    assert!(child.is_stopped());
    assert_eq!(rt.handle().root_supervisor().degraded(), 1);
    assert!(!rt.handle().supervision_healthy());
    // Back-off between consecutive restarts (0, 10, 20 ms ±20 % per round): no spinning.
    assert!(took >= Duration::from_millis(150), "{took:?}");
    rt.block_on(async {
        bystander.tell(Msg::Add(4)).await.unwrap();
        assert_eq!(get(&bystander).await.0, 4);
    });
    assert!(matches!(
        child.spawn_on(0, ChildSpec::permanent(), counter(&built)),
        Err(percore::runtime::RuntimeError::SupervisorStopped(_))
    ));
}

#[test]
fn kill_interrupts_a_hung_handler_unsupervised_stops_supervised_restarts() {
    let rt = Runtime::testing(2).unwrap();
    let built = Arc::new(AtomicU64::new(0));
    let plain = rt.spawn_actor_on(1, counter(&built)).unwrap();
    let sup = rt.handle().supervisor(fast("k", Strategy::OneForOne));
    let kept = sup
        .spawn_on(0, ChildSpec::permanent(), counter(&built))
        .unwrap();
    rt.block_on(async {
        hang(&plain).await;
        plain.tell(Msg::Add(1)).await.unwrap();
        plain.tell(Msg::Add(1)).await.unwrap();
        plain.kill();
        plain.stopped().await;
        assert!(matches!(
            plain.tell(Msg::Add(1)).await,
            Err(SendError::Stopped(_))
        ));
        assert!(matches!(
            plain.ask(Msg::Get, T).await,
            Err(AskError::Stopped)
        ));

        kept.tell(Msg::Add(5)).await.unwrap();
        hang(&kept).await;
        kept.tell(Msg::Add(2)).await.unwrap();
        kept.kill();
        assert_eq!(get(&kept).await.0, 2, "restarted; the queued message kept");
    });
    let h = rt.handle();
    let dl = h.dead_letters();
    let by_plain: Vec<_> = dl
        .recent()
        .into_iter()
        .filter(|d| d.actor_id == plain.id())
        .map(|d| d.reason)
        .collect();
    assert_eq!(
        by_plain,
        vec![
            DeadLetterReason::HandlerFailed,
            DeadLetterReason::ActorStopped,
            DeadLetterReason::ActorStopped
        ]
    );
    assert!(dl.total() >= 4);
}

/// Records the `Down`s it gets; optionally traps exits; links or monitors on request.
struct Watcher {
    downs: Vec<Down>,
    trap: bool,
}
enum WMsg {
    Link(percore::runtime::Addr<Counter>),
    Monitor(percore::runtime::Addr<Counter>),
    Down(Down),
    Downs(Reply<Vec<Down>>),
}
impl From<Down> for WMsg {
    fn from(d: Down) -> Self {
        WMsg::Down(d)
    }
}
impl Actor for Watcher {
    type Msg = WMsg;
    async fn started(&mut self, ctx: &mut Context<Self>) {
        if self.trap {
            ctx.trap_exits(true);
        }
    }
    async fn handle(&mut self, msg: WMsg, ctx: &mut Context<Self>) {
        match msg {
            WMsg::Link(a) => ctx.link(&a).unwrap(),
            WMsg::Monitor(a) => ctx.monitor(&a),
            WMsg::Down(d) => self.downs.push(d),
            WMsg::Downs(r) => {
                let _ = r.send(self.downs.clone());
            }
        }
    }
}

/// The watcher's `Down`s once it holds at least `n` (or after `T`): a notice comes from
/// another sender than the asking thread, so it may arrive after an ask.
async fn downs_at_least(w: &percore::runtime::Addr<Watcher>, n: usize) -> Vec<Down> {
    let end = Instant::now() + T;
    loop {
        let d = w.ask(WMsg::Downs, T).await.unwrap();
        if d.len() >= n || Instant::now() > end {
            return d;
        }
        sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn links_propagate_failures_traps_turn_them_into_messages_monitors_see_every_stop() {
    let rt = Runtime::testing(2).unwrap();
    let built = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        // Untrapped link: the watcher dies with `Linked`.
        let a = rt.spawn_actor_on(0, counter(&built)).unwrap();
        let w = rt
            .spawn_actor_on(1, || Watcher {
                downs: vec![],
                trap: false,
            })
            .unwrap();
        let m = rt
            .spawn_actor_on(1, || Watcher {
                downs: vec![],
                trap: false,
            })
            .unwrap();
        w.tell(WMsg::Link(a.clone())).await.unwrap();
        m.tell(WMsg::Monitor(a.clone())).await.unwrap();
        w.ask(WMsg::Downs, T).await.unwrap();
        m.ask(WMsg::Downs, T).await.unwrap();
        a.tell(Msg::Panic).await.unwrap();
        w.stopped().await;
        let downs = m.ask(WMsg::Downs, T).await.unwrap();
        assert_eq!(downs.len(), 1);
        assert_eq!(downs[0].id, a.id());
        assert!(matches!(&downs[0].reason, ExitReason::Failed(s) if s.contains("poison message")));
        assert!(!downs[0].restarting);

        // Trapped link: the watcher gets a Down and lives; a normal stop does not propagate.
        let b = rt.spawn_actor_on(0, counter(&built)).unwrap();
        let c = rt.spawn_actor_on(0, counter(&built)).unwrap();
        let t = rt
            .spawn_actor_on(1, || Watcher {
                downs: vec![],
                trap: true,
            })
            .unwrap();
        t.tell(WMsg::Link(b.clone())).await.unwrap();
        t.tell(WMsg::Link(c.clone())).await.unwrap();
        t.ask(WMsg::Downs, T).await.unwrap();
        c.tell(Msg::Stop).await.unwrap();
        c.stopped().await;
        b.kill();
        b.stopped().await;
        let downs = downs_at_least(&t, 1).await;
        assert_eq!(downs.len(), 1, "{downs:?}");
        assert_eq!(
            (downs[0].id, &downs[0].reason),
            (b.id(), &ExitReason::Killed)
        );
        assert!(t.is_alive());

        // Monitoring a supervised actor: told of the restart; monitoring a dead one: told now.
        let sup = rt.handle().supervisor(fast("m", Strategy::OneForOne));
        let s = sup
            .spawn_on(0, ChildSpec::permanent(), counter(&built))
            .unwrap();
        let m2 = rt
            .spawn_actor_on(1, || Watcher {
                downs: vec![],
                trap: false,
            })
            .unwrap();
        m2.tell(WMsg::Monitor(s.clone())).await.unwrap();
        m2.tell(WMsg::Monitor(a.clone())).await.unwrap();
        m2.ask(WMsg::Downs, T).await.unwrap();
        s.tell(Msg::Err).await.unwrap();
        get(&s).await;
        // The Down comes from another sender than this thread: it may arrive after the ask.
        let downs = downs_at_least(&m2, 2).await;
        assert_eq!(downs.len(), 2, "{downs:?}");
        assert_eq!(downs[0].id, a.id());
        assert_eq!(downs[0].reason, ExitReason::Shutdown);
        assert_eq!(downs[1].id, s.id());
        assert!(downs[1].restarting);
        assert!(matches!(&downs[1].reason, ExitReason::Failed(m) if m.contains("boom")));
    });
}

#[test]
fn names_are_typed_unique_and_leave_with_the_actor() {
    let rt = Runtime::testing(2).unwrap();
    let h = rt.handle();
    let built = Arc::new(AtomicU64::new(0));
    let a = rt.spawn_actor_on(0, counter(&built)).unwrap();
    let b = rt.spawn_actor_on(1, counter(&built)).unwrap();
    h.register("counter", &a).unwrap();
    assert_eq!(
        h.register("counter", &b),
        Err(NameError::Taken {
            name: "counter".into(),
            holder: a.id()
        })
    );
    assert_eq!(h.lookup::<Counter>("counter").unwrap().id(), a.id());
    assert!(h.lookup::<Watcher>("counter").is_none(), "typed lookup");
    assert!(h.lookup::<Counter>("nobody").is_none());
    // A supervised actor keeps its name across restarts.
    let sup = h.supervisor(fast("n", Strategy::OneForOne));
    let s = sup
        .spawn_on(1, ChildSpec::permanent(), counter(&built))
        .unwrap();
    h.register("supervised", &s).unwrap();
    rt.block_on(async {
        s.tell(Msg::Panic).await.unwrap();
        get(&s).await;
        a.stop();
        a.stopped().await;
    });
    assert_eq!(h.lookup::<Counter>("supervised").unwrap().id(), s.id());
    eventually("the stopped actor's name to go", || {
        h.lookup::<Counter>("counter").is_none()
    });
    assert_eq!(h.register("x", &a), Err(NameError::Stopped(a.id())));
    h.register("counter", &b).unwrap();
    assert_eq!(
        h.names(),
        vec![("counter".into(), b.id()), ("supervised".into(), s.id())]
    );
    assert!(h.unregister("counter"));
    assert!(!h.unregister("counter"));
}

#[test]
fn a_failed_shard_restarts_on_its_core_while_the_others_keep_serving() {
    let rt = Runtime::testing(2).unwrap();
    let built = Arc::new(AtomicU64::new(0));
    let b = built.clone();
    let sup = rt
        .handle()
        .supervisor(SupervisorSpec::one_for_one("shards"));
    let sharded: percore::runtime::ShardedAddr<Counter, u64> = sup
        .spawn_sharded(
            ChildSpec::permanent().name("shard"),
            move |_| {
                b.fetch_add(1, Ordering::SeqCst);
                Counter { n: 0 }
            },
            HashPartitioner,
        )
        .unwrap();
    rt.block_on(async {
        let s0 = sharded.shard(0).unwrap();
        let s1 = sharded.shard(1).unwrap();
        s1.tell(Msg::Add(3)).await.unwrap();
        hang(s1).await;
        s1.tell(Msg::Add(1)).await.unwrap();
        // Shard 1 is stuck; shard 0 serves.
        s0.tell(Msg::Add(9)).await.unwrap();
        assert_eq!(get(s0).await, (9, 0));
        s1.kill();
        assert_eq!(get(s1).await, (1, 1), "restarted on its own core");
    });
    assert_eq!(built.load(Ordering::SeqCst), 3);
    let r = sup.report();
    assert_eq!(r.children[1].name, "shard[1]");
    assert_eq!(r.children[1].worker, Some(1));
}

#[test]
fn an_actor_implementing_no_handler_fails_clearly() {
    struct Nothing;
    impl Actor for Nothing {
        type Msg = ();
    }
    let rt = Runtime::testing(1).unwrap();
    let a = rt.spawn_actor_on(0, || Nothing).unwrap();
    let m = rt
        .spawn_actor_on(0, || Watcher {
            downs: vec![],
            trap: false,
        })
        .unwrap();
    let downs = rt.block_on(async {
        let c = rt.spawn_actor_on(0, || Counter { n: 0 }).unwrap();
        // Monitor via a counter-typed address is not possible for `Nothing`; watch it through
        // its stop instead.
        drop(c);
        a.tell(()).await.unwrap();
        a.stopped().await;
        m.ask(WMsg::Downs, T).await.unwrap()
    });
    assert!(downs.is_empty());
    let t = rt.handle().actor_types();
    let n = t
        .iter()
        .find(|t| t.actor_type.ends_with("Nothing"))
        .unwrap();
    assert_eq!((n.failures, n.live), (1, 0));
}
