//! Actors on real worker threads: tell/ask across and within cores, ordering and loss, mailbox
//! backpressure, stop, panics, timers, sharding, external nodes and graceful shutdown.

mod common;

use common::recorder::{RecMsg, Recorder, check_per_sender, check_per_sender_order, collect};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore::runtime::partition::HashPartitioner;
use percore::runtime::{
    Actor, AskError, Context, Reply, Runtime, SendError, TrySendError, current_worker, sleep,
};

const T: Duration = Duration::from_secs(20);

#[test]
fn tell_from_every_core_and_outside_keeps_per_sender_order() {
    let rt = Runtime::testing(2).unwrap();
    let rec = rt.spawn_actor_on(1, Recorder::default).unwrap();
    const PER: u64 = 20_000;
    // Senders: a task on worker 0 (crosses a ring), a task on worker 1 (same core), and the
    // block_on thread (injector).
    let mut hs = Vec::new();
    for (sender, worker) in [(0u32, 0usize), (1, 1)] {
        let r = rec.clone();
        hs.push(
            rt.spawn_on(worker, move || async move {
                for i in 0..PER {
                    r.tell(RecMsg::Item(sender, i)).await.unwrap();
                }
            })
            .unwrap(),
        );
    }
    let seen = rt.block_on(async {
        for i in 0..PER {
            rec.tell(RecMsg::Item(2, i)).await.unwrap();
        }
        for h in hs {
            h.await.unwrap();
        }
        collect(&rec, 3 * PER as usize).await
    });
    check_per_sender_order(&seen, 3, PER);
    let w = rt.block_on(rec.ask(RecMsg::Where, T)).unwrap();
    assert_eq!(w, Some(1));
}

/// An actor that blocks until released, to fill its mailbox deterministically.
struct Gate {
    open: Arc<AtomicUsize>,
    got: Vec<u64>,
}
enum GateMsg {
    Wait,
    N(u64),
    Dump(Reply<Vec<u64>>),
}
impl Actor for Gate {
    type Msg = GateMsg;
    async fn handle(&mut self, msg: GateMsg, _ctx: &mut Context<Self>) {
        match msg {
            GateMsg::Wait => {
                while self.open.load(Ordering::SeqCst) == 0 {
                    sleep(Duration::from_millis(1)).await;
                }
            }
            GateMsg::N(n) => self.got.push(n),
            GateMsg::Dump(r) => {
                let _ = r.send(std::mem::take(&mut self.got));
            }
        }
    }
}

#[test]
fn bounded_mailbox_backpressure_loses_nothing() {
    let rt = Runtime::testing(2).unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let o2 = open.clone();
    let gate = rt
        .handle()
        .spawn_actor_on_with_capacity(1, 4, move || Gate {
            open: o2,
            got: vec![],
        })
        .unwrap();
    assert_eq!(gate.mailbox_capacity(), 4);
    gate.try_tell(GateMsg::Wait).unwrap();
    // Wait until the gate has taken Wait out of its mailbox.
    let t0 = Instant::now();
    while gate.mailbox_len() != 0 {
        assert!(t0.elapsed() < T);
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..4 {
        gate.try_tell(GateMsg::N(i)).unwrap();
    }
    match gate.try_tell(GateMsg::N(99)) {
        Err(TrySendError::Full(GateMsg::N(99))) => {}
        other => panic!(
            "expected Full(99), got {:?}",
            other.map_err(|e| e.is_full())
        ),
    }
    // `tell` waits for room; release the gate from another thread later.
    let o3 = open.clone();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        o3.store(1, Ordering::SeqCst);
    });
    let got = rt.block_on(async {
        for i in 4..200 {
            gate.tell(GateMsg::N(i)).await.unwrap();
        }
        gate.ask(GateMsg::Dump, T).await.unwrap()
    });
    opener.join().unwrap();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

struct Fragile;
enum FragileMsg {
    Boom,
    Ping(Reply<u32>),
    Slow(Reply<u32>),
}
impl Actor for Fragile {
    type Msg = FragileMsg;
    async fn handle(&mut self, msg: FragileMsg, _ctx: &mut Context<Self>) {
        match msg {
            FragileMsg::Boom => panic!("fragile handler exploded"),
            FragileMsg::Ping(r) => {
                let _ = r.send(1);
            }
            FragileMsg::Slow(r) => {
                sleep(Duration::from_millis(50)).await;
                let _ = r.send(2);
            }
        }
    }
}

#[test]
fn a_panicking_handler_stops_only_that_actor_and_fails_its_asks() {
    let rt = Runtime::testing(2).unwrap();
    let victim = rt.spawn_actor_on(0, || Fragile).unwrap();
    let bystander = rt.spawn_actor_on(0, || Fragile).unwrap();
    let (pending, after) = rt.block_on(async {
        // Queue the panic, then an ask behind it: the ask must fail, not hang.
        let gate = victim.clone();
        let pending = percore::runtime::spawn_local(async move {
            gate.tell(FragileMsg::Boom).await.unwrap();
            gate.ask(FragileMsg::Ping, T).await
        });
        let r = pending.await.unwrap();
        victim.stopped().await;
        let after = victim.tell(FragileMsg::Boom).await;
        (r, after)
    });
    assert!(matches!(pending, Err(AskError::Stopped)), "{pending:?}");
    assert!(matches!(after, Err(SendError::Stopped(_))));
    assert!(!victim.is_alive());
    // Same worker, other actor: still fine.
    assert_eq!(rt.block_on(bystander.ask(FragileMsg::Ping, T)), Ok(1));
    // Ask timeout is a typed error.
    assert_eq!(
        rt.block_on(bystander.ask(FragileMsg::Slow, Duration::from_millis(1))),
        Err(AskError::Timeout(Duration::from_millis(1)))
    );
}

/// Aborts the test binary if `f` has not returned within `limit`: what is under test here
/// (timeouts) is what would otherwise bound the wait, and a hang would stall CI.
fn within<R>(limit: Duration, what: &str, f: impl FnOnce() -> R) -> R {
    let (done, rx) = std::sync::mpsc::channel::<()>();
    let what = what.to_string();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            eprintln!("{what}: still running after {limit:?}; aborting");
            std::process::abort();
        }
    });
    let r = f();
    drop(done);
    r
}

/// The ask timeout also covers the wait for mailbox room, an ask to a stopped actor fails at
/// once, and an unanswered ask reports `NoReply`; on the asker's own worker and across cores.
#[test]
fn ask_times_out_while_waiting_for_room_and_reports_stop_and_no_reply() {
    #[derive(Default)]
    struct Mute(Vec<Reply<u32>>);
    enum MuteMsg {
        Hold(Duration),
        Drop(Reply<u32>),
        Keep(Reply<u32>),
        Echo(u32, Reply<u32>),
    }
    impl Actor for Mute {
        type Msg = MuteMsg;
        async fn handle(&mut self, msg: MuteMsg, _ctx: &mut Context<Self>) {
            match msg {
                MuteMsg::Hold(d) => std::thread::sleep(d),
                MuteMsg::Drop(r) => drop(r),
                MuteMsg::Keep(r) => self.0.push(r),
                MuteMsg::Echo(v, r) => {
                    let _ = r.send(v);
                }
            }
        }
    }
    let rt = Runtime::testing(2).unwrap();
    let h = rt.handle();
    for from in [0usize, 1] {
        let a = h.spawn_actor_on_with_capacity(1, 1, Mute::default).unwrap();
        let b = a.clone();
        let (full, dropped, echoed, stopped) = within(T, "asks with timeouts", || {
            rt.block_on(
                rt.spawn_on(from, move || async move {
                    let full = if from == 1 {
                        // Same worker: blocking the actor would block the asker too.
                        Err(AskError::Timeout(Duration::from_millis(30)))
                    } else {
                        // Block the actor's worker, then fill the one-slot mailbox.
                        b.tell(MuteMsg::Hold(Duration::from_millis(400)))
                            .await
                            .unwrap();
                        sleep(Duration::from_millis(50)).await;
                        b.tell(MuteMsg::Hold(Duration::ZERO)).await.unwrap();
                        let t0 = Instant::now();
                        let full = b.ask(MuteMsg::Drop, Duration::from_millis(30)).await;
                        assert!(
                            t0.elapsed() < Duration::from_millis(300),
                            "the timeout must cover the wait for room: {:?}",
                            t0.elapsed()
                        );
                        full
                    };
                    // Held, never answered: the limit fires (the asker's worker may be the
                    // actor's, idle otherwise: nothing else would wake it).
                    let t0 = Instant::now();
                    let kept = b.ask(MuteMsg::Keep, Duration::from_millis(20)).await;
                    let took = t0.elapsed();
                    assert_eq!(kept, Err(AskError::Timeout(Duration::from_millis(20))));
                    assert!(took >= Duration::from_millis(20), "early: {took:?}");
                    assert!(took < Duration::from_secs(2), "late: {took:?}");
                    let dropped = b.ask(MuteMsg::Drop, T).await;
                    let echoed = b.ask(|r| MuteMsg::Echo(7, r), T).await;
                    b.stop();
                    b.stopped().await;
                    let stopped = b.ask(|r| MuteMsg::Echo(8, r), T).await;
                    (full, dropped, echoed, stopped)
                })
                .unwrap(),
            )
            .unwrap()
        });
        let ctx = format!("asker on worker {from}");
        assert_eq!(
            full,
            Err(AskError::Timeout(Duration::from_millis(30))),
            "{ctx}"
        );
        assert_eq!(dropped, Err(AskError::NoReply), "{ctx}");
        assert_eq!(echoed, Ok(7), "{ctx}");
        assert_eq!(stopped, Err(AskError::Stopped), "{ctx}");
    }
    assert!(rt.shutdown().clean);
}

struct Ticker {
    ticks: Arc<AtomicUsize>,
}
enum TickMsg {
    Tick,
    Later(Reply<&'static str>),
    Fire(Reply<&'static str>),
    StopNow,
}
impl Actor for Ticker {
    type Msg = TickMsg;
    async fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_every(Duration::from_millis(2), || TickMsg::Tick);
    }
    async fn handle(&mut self, msg: TickMsg, ctx: &mut Context<Self>) {
        match msg {
            TickMsg::Tick => {
                self.ticks.fetch_add(1, Ordering::SeqCst);
            }
            TickMsg::Later(r) => {
                ctx.run_later(Duration::from_millis(5), TickMsg::Fire(r));
            }
            TickMsg::Fire(r) => {
                let _ = r.send("fired");
            }
            TickMsg::StopNow => ctx.stop(),
        }
    }
}

#[test]
fn actor_timers_and_context_stop() {
    let rt = Runtime::testing(2).unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let t2 = ticks.clone();
    let a = rt.spawn_actor_on(1, move || Ticker { ticks: t2 }).unwrap();
    assert_eq!(rt.block_on(a.ask(TickMsg::Later, T)), Ok("fired"));
    let t0 = Instant::now();
    while ticks.load(Ordering::SeqCst) < 3 {
        assert!(t0.elapsed() < T, "run_every never ticked");
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.block_on(async {
        a.tell(TickMsg::StopNow).await.unwrap();
        a.stopped().await;
    });
    // Its timers died with it.
    let n = ticks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ticks.load(Ordering::SeqCst), n);
}

/// A shard that owns a partition of keys.
struct KvShard {
    me: usize,
    map: HashMap<String, u64>,
}
enum KvMsg {
    Put(String, u64),
    Get(String, Reply<(usize, Option<u64>)>),
}
impl Actor for KvShard {
    type Msg = KvMsg;
    async fn handle(&mut self, msg: KvMsg, _ctx: &mut Context<Self>) {
        assert_eq!(
            current_worker(),
            Some(self.me),
            "shard runs on its own worker"
        );
        match msg {
            KvMsg::Put(k, v) => {
                self.map.insert(k, v);
            }
            KvMsg::Get(k, r) => {
                let _ = r.send((self.me, self.map.get(&k).copied()));
            }
        }
    }
}

#[test]
fn sharded_actor_routes_keys_to_their_owner() {
    let rt = Runtime::testing(2).unwrap();
    let kv = rt
        .spawn_sharded::<KvShard, str, _, _>(
            |me| KvShard {
                me,
                map: HashMap::new(),
            },
            HashPartitioner,
        )
        .unwrap();
    assert_eq!(kv.shards(), 2);
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let results = rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            kv.tell(k, KvMsg::Put(k.clone(), i as u64)).await.unwrap();
        }
        let mut out = Vec::new();
        for k in &keys {
            out.push(kv.ask(k, |r| KvMsg::Get(k.clone(), r), T).await.unwrap());
        }
        out
    });
    let mut per_shard = [0; 2];
    for (i, (k, (shard, v))) in keys.iter().zip(results).enumerate() {
        assert_eq!(shard, kv.shard_of(k));
        assert_eq!(v, Some(i as u64));
        per_shard[shard] += 1;
    }
    assert!(per_shard[0] > 0 && per_shard[1] > 0, "{per_shard:?}");
}

/// Puts every key through `kv`, reads each back, and checks it lives on the shard `expect`
/// names (and the one `shard_of` reports), with every shard used.
fn check_routing<K: ?Sized + 'static>(
    rt: &Runtime,
    kv: &percore::runtime::ShardedAddr<KvShard, K>,
    keys: &[&K],
    name: impl Fn(&K) -> String,
    expect: impl Fn(&K) -> usize,
) {
    let results = rt.block_on(async {
        for (i, k) in keys.iter().enumerate() {
            kv.tell(k, KvMsg::Put(name(k), i as u64)).await.unwrap();
        }
        let mut out = Vec::new();
        for k in keys {
            out.push(kv.ask(k, |r| KvMsg::Get(name(k), r), T).await.unwrap());
        }
        out
    });
    let mut per_shard = vec![0; kv.shards()];
    for (i, (k, (shard, v))) in keys.iter().zip(results).enumerate() {
        assert_eq!(shard, expect(k), "key {}", name(k));
        assert_eq!(shard, kv.shard_of(k));
        assert_eq!(v, Some(i as u64));
        per_shard[shard] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
}

/// Every keyed partitioner routes a key to the shard it names, end to end on real workers:
/// consistent hash, range and a user closure (hash is covered above); round robin spreads
/// messages evenly whatever the key.
#[test]
fn every_partitioner_routes_to_the_shard_it_names() {
    use percore::runtime::partition::{
        ConsistentHash, FnPartitioner, Partitioner, RangePartitioner, RoundRobin,
    };
    let rt = Runtime::testing(2).unwrap();
    let make = |me| KvShard {
        me,
        map: HashMap::new(),
    };
    let owned: Vec<String> = (0..200).map(|i| format!("key-{i:03}")).collect();
    let keys: Vec<&str> = owned.iter().map(String::as_str).collect();

    let reference = ConsistentHash::new(64);
    let kv = rt
        .spawn_sharded::<KvShard, str, _, _>(make, ConsistentHash::new(64))
        .unwrap();
    check_routing(&rt, &kv, &keys, str::to_string, |k| {
        reference.partition(k, 2)
    });

    let kv = rt
        .spawn_sharded::<KvShard, str, _, _>(make, FnPartitioner(|k: &str, _n| k.len() % 2))
        .unwrap();
    let mixed: Vec<&str> = ["a", "bb", "ccc", "dddd", "eeeee"].into();
    check_routing(&rt, &kv, &mixed, str::to_string, |k| k.len() % 2);

    let splits = vec!["key-100".to_string()];
    let kv = rt
        .spawn_sharded::<KvShard, String, _, _>(make, RangePartitioner::new(splits).unwrap())
        .unwrap();
    let refs: Vec<&String> = owned.iter().collect();
    check_routing(&rt, &kv, &refs, String::clone, |k| {
        usize::from(k.as_str() >= "key-100")
    });

    // Round robin: consecutive messages alternate between the two shards.
    let kv = rt
        .spawn_sharded::<KvShard, str, _, _>(make, RoundRobin::default())
        .unwrap();
    let shards: Vec<usize> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..10 {
            let (s, _) = kv
                .ask("same-key", |r| KvMsg::Get("x".into(), r), T)
                .await
                .unwrap();
            out.push(s);
        }
        out
    });
    assert_eq!(shards.iter().filter(|&&s| s == 0).count(), 5, "{shards:?}");
    assert!(shards.windows(2).all(|w| w[0] != w[1]), "{shards:?}");
    assert!(rt.shutdown().clean);
}

#[test]
fn same_core_messages_never_cross_a_ring() {
    let rt = Runtime::testing(2).unwrap();
    let rec = rt.spawn_actor_on(0, Recorder::default).unwrap();
    // Let startup traffic settle, then measure worker 0's outgoing envelopes.
    rt.block_on(rec.ask(RecMsg::Where, T)).unwrap();
    let r = rec.clone();
    let handle = rt.handle();
    let h = rt
        .spawn_on(0, move || async move {
            let before = handle.metrics()[0].messages_out;
            for i in 0..1000 {
                r.tell(RecMsg::Item(0, i)).await.unwrap();
            }
            let seen = r.ask(RecMsg::Dump, T).await.unwrap();
            (before, seen.len())
        })
        .unwrap();
    let (before, n) = rt.block_on(h).unwrap();
    assert_eq!(n, 1000);
    // The reply went back through the join handle (another thread), but no message to the
    // actor left worker 0: its out-counter did not grow by the 1000 tells.
    let after = rt.metrics()[0].messages_out;
    assert!(
        after - before < 10,
        "worker 0 sent {} envelopes",
        after - before
    );
}

/// Two app workers and one I/O node whose event loop runs co-located on the app workers, so
/// the I/O external node (node 2) is left unattached: free for a test to claim.
fn with_free_external_node() -> Runtime {
    let mut cfg = percore::runtime::builder::Builder::new()
        .profile(percore::runtime::config::Profile::Testing)
        .app_workers(std::num::NonZeroUsize::new(2).unwrap())
        .config()
        .unwrap();
    cfg.io_workers = 1;
    cfg.io_colocated = true;
    Runtime::start(cfg).unwrap()
}

#[test]
fn external_node_hands_off_over_rings() {
    let rt = with_free_external_node();
    let rec = rt.spawn_actor_on(1, Recorder::default).unwrap();
    let handle = rt.handle();
    let ran_here: Arc<Mutex<Vec<Option<usize>>>> = Arc::new(Mutex::new(Vec::new()));
    let ran2 = ran_here.clone();
    let h2 = handle.clone();
    let r2 = rec.clone();
    let (attached_tx, attached_rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let mut node = h2.attach_external(0).unwrap();
        assert_eq!(node.id(), 2);
        assert!(h2.attach_external(0).is_err());
        attached_tx.send(()).unwrap();
        for i in 0..5000u64 {
            loop {
                match r2.try_tell(RecMsg::Item(9, i)) {
                    Ok(()) => break,
                    Err(e) if e.is_full() => {
                        node.flush();
                        std::thread::yield_now();
                    }
                    Err(_) => panic!("recorder stopped"),
                }
            }
            if i % 64 == 0 {
                node.flush();
            }
        }
        node.flush();
        // Receive a closure from an app worker.
        let t0 = Instant::now();
        while ran2.lock().unwrap().is_empty() {
            node.run_pending(16);
            assert!(t0.elapsed() < T);
            std::thread::yield_now();
        }
    });
    attached_rx.recv().unwrap();
    // An app worker sends a closure to the external node over its ring.
    let ran3 = ran_here.clone();
    let h3 = handle.clone();
    rt.block_on(
        rt.spawn_on(0, move || async move {
            h3.run_on_node(
                2,
                Box::new(move || ran3.lock().unwrap().push(current_worker())),
            )
            .unwrap();
        })
        .unwrap(),
    )
    .unwrap();
    t.join().unwrap();
    // It ran on the external thread, which is no app worker.
    assert_eq!(*ran_here.lock().unwrap(), vec![None]);
    let seen = rt.block_on(collect(&rec, 5000));
    check_per_sender(&seen, &[(9, 5000)]);
    assert!(rt.metrics()[2].messages_out > 0);
}

struct Ordered {
    id: usize,
    log: Arc<Mutex<Vec<usize>>>,
    handled: Arc<AtomicUsize>,
}
impl Actor for Ordered {
    type Msg = u32;
    async fn handle(&mut self, _m: u32, _ctx: &mut Context<Self>) {
        sleep(Duration::from_micros(200)).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
    }
    async fn stopping(&mut self, _ctx: &mut Context<Self>) {
        self.log.lock().unwrap().push(self.id);
    }
}

#[test]
fn shutdown_drains_mailboxes_and_stops_in_reverse_start_order() {
    let rt = Runtime::testing(2).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let handled = Arc::new(AtomicUsize::new(0));
    let mut addrs = Vec::new();
    for id in 0..6 {
        let (l, h) = (log.clone(), handled.clone());
        let a = rt
            .spawn_actor_on(id % 2, move || Ordered {
                id,
                log: l,
                handled: h,
            })
            .unwrap();
        addrs.push(a);
    }
    for a in &addrs {
        for m in 0..20 {
            a.try_tell(m).unwrap();
        }
    }
    let report = rt.shutdown();
    assert!(report.clean, "{report:?}");
    assert_eq!(report.actors_stopped, 6);
    assert_eq!(
        handled.load(Ordering::SeqCst),
        6 * 20,
        "mailboxes were not drained"
    );
    assert_eq!(*log.lock().unwrap(), vec![5, 4, 3, 2, 1, 0]);
    for a in &addrs {
        assert!(matches!(a.try_tell(1), Err(TrySendError::Stopped(1))));
    }
}

struct Stuck;
impl Actor for Stuck {
    type Msg = ();
    async fn handle(&mut self, _m: (), _ctx: &mut Context<Self>) {
        sleep(Duration::from_secs(3600)).await;
    }
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "stuck-actor".into()
    }
}

#[test]
fn shutdown_deadline_reports_what_was_still_running() {
    let rt = Runtime::testing(2).unwrap();
    let a = rt.spawn_actor_on(1, || Stuck).unwrap();
    a.try_tell(()).unwrap();
    a.try_tell(()).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let report = rt.shutdown_with_deadline(Duration::from_millis(200));
    assert!(!report.clean);
    assert_eq!(report.still_running.len(), 1, "{report:?}");
    assert!(
        report.still_running[0].starts_with("stuck-actor"),
        "{report:?}"
    );
}

struct Echo;
impl Actor for Echo {
    type Msg = (u64, Reply<u64>);
    async fn handle(&mut self, (n, r): (u64, Reply<u64>), _ctx: &mut Context<Self>) {
        let _ = r.send(n);
    }
}

/// Two app workers that never spin before sleeping: every hand-off between them goes through
/// the sleep/wake handshake.
fn two_workers_without_spin() -> Runtime {
    use percore::runtime::builder::Builder;
    use percore::runtime::config::Profile;
    let mut cfg = Builder::new()
        .profile(Profile::Testing)
        .app_workers(std::num::NonZeroUsize::new(2).unwrap())
        .config()
        .unwrap();
    cfg.spin_before_park = Duration::ZERO;
    Runtime::start(cfg).unwrap()
}

/// With spinning disabled every hand-off goes through the sleep/wake handshake; a lost wake-up
/// would hang here (the bounded ask timeout turns a hang into a failure).
#[test]
fn park_wake_handshake_loses_no_wakeup() {
    let rt = two_workers_without_spin();
    let echo = rt.spawn_actor_on(1, || Echo).unwrap();
    let e2 = echo.clone();
    // Worker 0 <-> worker 1, and the block_on thread <-> worker 1, concurrently.
    let h = rt
        .spawn_on(0, move || async move {
            for i in 0..3000 {
                assert_eq!(e2.ask(|r| (i, r), T).await.unwrap(), i);
            }
        })
        .unwrap();
    rt.block_on(async {
        for i in 0..3000 {
            assert_eq!(echo.ask(|r| (i, r), T).await.unwrap(), i);
        }
        h.await.unwrap();
    });
    assert!(
        rt.metrics()[1].parks > 0,
        "the worker never slept: the test did not test parking"
    );
}

struct Sink(Arc<AtomicUsize>);
impl Actor for Sink {
    type Msg = Vec<u64>;
    async fn handle(&mut self, m: Vec<u64>, _ctx: &mut Context<Self>) {
        self.0.fetch_add(m.len(), Ordering::Relaxed);
    }
}

/// Actors are stopped, and every address dropped, while other cores still have messages in
/// flight to them: in-flight envelopes must find the mailbox alive (the actor's task keeps it
/// until its reservation count drains) and every heap message must be freed exactly once.
#[test]
fn stopping_actors_with_messages_in_flight_is_safe() {
    let rt = Runtime::testing(2).unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    for round in 0..200 {
        let h2 = handled.clone();
        let a = rt
            .handle()
            .spawn_actor_on_with_capacity(1, 64, move || Sink(h2))
            .unwrap();
        let a2 = a.clone();
        // Flood from worker 0 (ring) ...
        let flood = rt
            .spawn_on(0, move || async move {
                for i in 0..200u64 {
                    if a2.tell(vec![i; 4]).await.is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        // ... and from this thread (injector), stopping part-way.
        for i in 0..50u64 {
            let _ = a.try_tell(vec![i; 4]);
        }
        if round % 2 == 0 {
            a.stop();
        }
        rt.block_on(flood).unwrap();
        a.stop();
        drop(a);
    }
    let report = rt.shutdown();
    assert!(report.clean, "{report:?}");
    assert!(handled.load(Ordering::SeqCst) > 0);
}

/// A sender streaming to an actor on another core batches its messages and holds reserved
/// mailbox slots ("send credits") while it does; at the end of its scheduler turn the unused
/// ones must go back, or the mailbox would stay part-full forever and its actor could never
/// stop. Also checks the batched messages all arrive, in order.
#[test]
fn streaming_sender_returns_unused_send_credits() {
    let rt = Runtime::testing(2).unwrap();
    let rec = rt
        .handle()
        .spawn_actor_on_with_capacity(1, 256, Recorder::default)
        .unwrap();
    let r2 = rec.clone();
    let sent = rt
        .spawn_on(0, move || async move {
            let mut sent = 0u64;
            for burst in 0..50u64 {
                // 37 messages in one turn: a batch, credits granted, some left unused.
                for i in 0..37u64 {
                    r2.tell(RecMsg::Item(0, burst * 37 + i)).await.unwrap();
                    sent += 1;
                }
                sleep(Duration::from_millis(1)).await;
            }
            sent
        })
        .unwrap();
    let sent = rt.block_on(sent).unwrap();
    let r3 = rec.clone();
    let seen = rt.block_on(async move { collect(&r3, sent as usize).await });
    check_per_sender_order(&seen, 1, sent);
    // Every reserved slot is released once the actor has handled everything.
    let t0 = Instant::now();
    while rec.mailbox_len() != 0 {
        assert!(
            t0.elapsed() < T,
            "{} mailbox slots still reserved: send credits were not returned",
            rec.mailbox_len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rec.stop();
    rt.block_on({
        let r = rec.clone();
        async move { r.stopped().await }
    });
    assert!(rt.shutdown().clean);
}

/// A sender that streams to several mailboxes in runs of every length (shorter, equal to and
/// longer than a batch and a credit chunk), mixing `tell`, `try_tell` and `ask`, loses and
/// reorders nothing, and every reserved slot comes back: the streaming cursor never spends a
/// credit it does not hold, nor appends to a batch that another send has moved on from.
#[test]
fn interleaved_streams_keep_order_and_slot_accounting() {
    let rt = Runtime::testing(2).unwrap();
    let h = rt.handle();
    // Two mailboxes on the other worker (one small: credits come two at a time) and one on the
    // sender's own worker.
    let recs = vec![
        h.spawn_actor_on_with_capacity(1, 1024, Recorder::default)
            .unwrap(),
        h.spawn_actor_on_with_capacity(1, 16, Recorder::default)
            .unwrap(),
        h.spawn_actor_on_with_capacity(0, 256, Recorder::default)
            .unwrap(),
    ];
    let targets = recs.clone();
    let sent = rt
        .spawn_on(0, move || async move {
            // Bounded: a mis-counted slot shows up as a sender waiting forever for room.
            let stream = async move {
                let runs = [1u64, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 1000];
                let mut next = [0u64; 3];
                let mut k = 0usize;
                for round in 0..6u64 {
                    for &run in &runs {
                        let t = k % targets.len();
                        k += 1;
                        for _ in 0..run {
                            let m = RecMsg::Item(t as u32, next[t]);
                            if (next[t] + round) % 7 == 3 {
                                match targets[t].try_tell(m) {
                                    Ok(()) => {}
                                    Err(TrySendError::Full(m)) => targets[t].tell(m).await.unwrap(),
                                    Err(TrySendError::Stopped(_)) => panic!("target stopped"),
                                }
                            } else {
                                targets[t].tell(m).await.unwrap();
                            }
                            next[t] += 1;
                        }
                        if run % 5 == 0 {
                            // An ask in the middle of a stream to another mailbox.
                            let o = (t + 1) % targets.len();
                            targets[o].ask(RecMsg::Where, T).await.unwrap();
                        }
                    }
                }
                next
            };
            percore::runtime::timeout(T, stream)
                .await
                .expect("the sender never got room: mailbox slots were mis-counted")
        })
        .unwrap();
    let sent = rt.block_on(sent).unwrap();
    for (t, rec) in recs.iter().enumerate() {
        let r = rec.clone();
        let n = sent[t] as usize;
        let seen = rt.block_on(async move { collect(&r, n).await });
        assert!(seen.iter().all(|&(s, _)| s == t as u32));
        check_per_sender(&seen, &[(t as u32, sent[t])]);
        let t0 = Instant::now();
        while rec.mailbox_len() != 0 {
            assert!(
                t0.elapsed() < T,
                "mailbox {t}: {} slots still counted after everything was handled",
                rec.mailbox_len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(rt.shutdown().clean);
}

/// An answer whose value counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct SlowAnswer(Arc<AtomicUsize>);
impl Actor for SlowAnswer {
    type Msg = (Duration, Reply<Counted>);
    async fn handle(&mut self, (wait, r): Self::Msg, _ctx: &mut Context<Self>) {
        sleep(wait).await;
        let _ = r.send(Counted(self.0.clone()));
    }
}

/// A cross-core answer travels to the asker's worker as a ring envelope (counted in its
/// `messages_in`), and an answer that arrives after the asker gave up is dropped there exactly
/// once, without disturbing the actor or later asks.
#[test]
fn cross_core_answers_ride_the_ring_and_late_ones_are_dropped_once() {
    let rt = Runtime::testing(2).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let actor = rt.spawn_actor_on(1, move || SlowAnswer(d)).unwrap();
    let before = rt.metrics()[0].messages_in;
    let a = actor.clone();
    let h = rt
        .spawn_on(0, move || async move {
            for _ in 0..200 {
                a.ask(|r| (Duration::ZERO, r), T).await.unwrap();
            }
            // Gives up long before the answer comes.
            let late = a.ask(
                |r| (Duration::from_millis(100), r),
                Duration::from_millis(5),
            );
            let timed_out = matches!(late.await, Err(AskError::Timeout(_)));
            sleep(Duration::from_millis(200)).await;
            let again = a.ask(|r| (Duration::ZERO, r), T).await.is_ok();
            (timed_out, again)
        })
        .unwrap();
    let (timed_out, again) = rt.block_on(h).unwrap();
    assert!(timed_out, "the short ask must time out");
    assert!(again, "the actor keeps answering after a late answer");
    // 201 answers delivered and dropped by the asker, plus the late one dropped on arrival.
    assert_eq!(drops.load(Ordering::SeqCst), 202);
    let got = rt.metrics()[0].messages_in - before;
    assert!(
        got >= 201,
        "worker 0 received {got} envelopes for 202 cross-core answers: answers did not come \
         over the ring"
    );
}

/// Wake-ups between workers (a join handle completed on worker 1 and awaited on worker 0)
/// travel as ring envelopes; with spinning off each one must also wake a sleeping worker.
#[test]
fn cross_worker_wakeups_arrive_while_the_target_sleeps() {
    let rt = two_workers_without_spin();
    let handle = rt.handle();
    let before = rt.metrics()[0].messages_in;
    let h = rt
        .spawn_on(0, move || async move {
            let mut sum = 0u64;
            for i in 0..500u64 {
                let j = handle
                    .spawn_on(1, move || async move {
                        sleep(Duration::from_micros(50)).await;
                        i
                    })
                    .unwrap();
                sum += j.await.unwrap();
            }
            sum
        })
        .unwrap();
    assert_eq!(rt.block_on(h).unwrap(), (0..500).sum::<u64>());
    assert!(rt.metrics()[0].parks > 0, "worker 0 never slept");
    assert!(
        rt.metrics()[0].messages_in - before >= 500,
        "the wake-ups did not come over the ring"
    );
}

struct CountAll(Arc<AtomicUsize>);
impl Actor for CountAll {
    type Msg = u64;
    async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Cooperative budget: a task streaming `tell`s into a mailbox that never fills still yields
/// its worker every few hundred sends, so another task there runs long before it finishes.
#[test]
fn a_streaming_sender_yields_its_worker_to_other_tasks() {
    let rt = Runtime::testing(2).unwrap();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    const N: u64 = 200_000;
    let sink = rt
        .handle()
        .spawn_actor_on_with_capacity(1, N as usize + 1, move || CountAll(g))
        .unwrap();
    let (flag, seen_at) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (f1, f2, s) = (flag.clone(), flag.clone(), seen_at.clone());
    let sender = rt
        .spawn_on(0, move || async move {
            // The other task is spawned from here, so it is queued behind this one.
            percore::runtime::spawn_local(async move { f1.store(true, Ordering::SeqCst) }).detach();
            for i in 0..N {
                if f2.load(Ordering::SeqCst) && s.load(Ordering::SeqCst) == 0 {
                    s.store(i as usize, Ordering::SeqCst);
                }
                sink.tell(i).await.unwrap();
            }
        })
        .unwrap();
    rt.block_on(sender).unwrap();
    let at = seen_at.load(Ordering::SeqCst);
    assert!(flag.load(Ordering::SeqCst));
    assert!(
        at > 0 && at <= 1_000,
        "the other task first ran after {at} sends (0 = only after all {N})"
    );
    let deadline = Instant::now() + T;
    while got.load(Ordering::Relaxed) < N as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        got.load(Ordering::Relaxed),
        N as usize,
        "every message arrives"
    );
}

/// An ask from another runtime's worker whose index is, in the answering runtime, an external
/// node nobody drains (here its unclaimed I/O node): the answer must still arrive.
#[test]
fn answers_reach_askers_in_another_runtime() {
    let answering = with_free_external_node(); // its node 2: an external node left unattached
    let echo = answering.spawn_actor_on(1, || Echo).unwrap();
    let asking = Runtime::testing(3).unwrap();
    let h = asking
        .spawn_on(2, move || async move {
            let mut sum = 0;
            for i in 0..50u64 {
                sum += echo.ask(|r| (i, r), Duration::from_secs(5)).await.unwrap();
            }
            sum
        })
        .unwrap();
    assert_eq!(asking.block_on(h).unwrap(), (0..50).sum::<u64>());
}

/// Sleeps 300 ms on its first message, so its one-slot mailbox stays full meanwhile.
struct FirstSlow(bool);
impl Actor for FirstSlow {
    type Msg = u32;
    async fn handle(&mut self, _m: u32, _ctx: &mut Context<Self>) {
        if !self.0 {
            self.0 = true;
            percore::runtime::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// A sender waiting for room sleeps until room appears: it is polled a handful of times, not
/// in a loop (before the fix its own failed re-check woke it again at once: ~10^5 polls).
#[test]
fn a_sender_waiting_for_room_sleeps_instead_of_polling() {
    let rt = Runtime::testing(2).unwrap();
    let a = rt
        .handle()
        .spawn_actor_on_with_capacity(1, 1, || FirstSlow(false))
        .unwrap();
    let polled = |rt: &Runtime| rt.metrics()[0].tasks_polled;
    let h = rt
        .spawn_on(0, move || async move {
            // The first is being handled (300 ms), the second fills the mailbox, the third
            // waits for room.
            for i in 0..3 {
                a.tell(i).await.unwrap();
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the third send is waiting now
    let before = polled(&rt);
    std::thread::sleep(Duration::from_millis(100));
    let during = polled(&rt) - before;
    rt.block_on(h).unwrap();
    assert!(
        during < 50,
        "worker 0 polled {during} times in 100 ms while its only task waited for room"
    );
    rt.shutdown();
}
