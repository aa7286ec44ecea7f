//! Tasks, join handles, cancellation, panics and timers on real worker threads.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::{
    JoinError, Runtime, RuntimeError, current_worker, sleep, spawn_local, timeout,
};

#[test]
fn spawn_on_runs_on_the_chosen_worker() {
    let rt = Runtime::testing(2).unwrap();
    for w in 0..2 {
        let h = rt.spawn_on(w, || async { current_worker() }).unwrap();
        assert_eq!(rt.block_on(h).unwrap(), Some(w));
    }
    assert!(matches!(
        rt.spawn_on(2, || async {}),
        Err(RuntimeError::NoSuchWorker {
            worker: 2,
            workers: 2
        })
    ));
}

#[test]
fn non_send_futures_and_local_spawn() {
    let rt = Runtime::testing(2).unwrap();
    let h = rt
        .spawn_on(1, || async {
            // Rc is !Send: the future stays on worker 1.
            let counter = Rc::new(Cell::new(0));
            let mut hs = Vec::new();
            for _ in 0..100 {
                let c = counter.clone();
                hs.push(spawn_local(async move {
                    c.set(c.get() + 1);
                    current_worker()
                }));
            }
            for h in hs {
                assert_eq!(h.await.unwrap(), Some(1));
            }
            counter.get()
        })
        .unwrap();
    assert_eq!(rt.block_on(h).unwrap(), 100);
}

#[test]
fn abort_and_drop_cancel_tasks() {
    let rt = Runtime::testing(2).unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let f2 = finished.clone();
    let h = rt
        .spawn_on(0, move || async move {
            sleep(Duration::from_secs(30)).await;
            f2.store(true, Ordering::SeqCst);
        })
        .unwrap();
    h.abort();
    assert_eq!(rt.block_on(h), Err(JoinError::Cancelled));

    // Dropping the handle cancels too: the future is dropped on its worker.
    struct OnDrop(Arc<AtomicBool>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let d2 = dropped.clone();
    let h = rt
        .spawn_on(1, move || {
            let g = OnDrop(d2);
            async move {
                let _g = g;
                sleep(Duration::from_secs(30)).await;
            }
        })
        .unwrap();
    drop(h);
    let t0 = Instant::now();
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "dropped handle did not cancel the task"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!finished.load(Ordering::SeqCst));
}

#[test]
fn detached_tasks_keep_running() {
    let rt = Runtime::testing(2).unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    rt.spawn_on(0, move || async move {
        sleep(Duration::from_millis(5)).await;
        n2.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap()
    .detach();
    let t0 = Instant::now();
    while n.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_panicking_task_does_not_take_the_worker_down() {
    let rt = Runtime::testing(2).unwrap();
    let h = rt
        .spawn_on(0, || async {
            if current_worker() == Some(0) {
                panic!("boom in a task");
            }
            1
        })
        .unwrap();
    match rt.block_on(h) {
        Err(JoinError::Panicked(m)) => assert!(m.contains("boom in a task")),
        other => panic!("expected a panic, got {other:?}"),
    }
    let h = rt.spawn_on(0, || async { 41 + 1 }).unwrap();
    assert_eq!(rt.block_on(h).unwrap(), 42);
}

#[test]
fn timers_sleep_timeout_interval() {
    let rt = Runtime::testing(2).unwrap();
    let h = rt
        .spawn_on(1, || async {
            let t0 = Instant::now();
            sleep(Duration::from_millis(20)).await;
            let slept = t0.elapsed();
            let to = timeout(Duration::from_millis(10), sleep(Duration::from_secs(30))).await;
            let ok = timeout(Duration::from_secs(30), async { 5 }).await;
            let mut iv = percore::runtime::interval(Duration::from_millis(5));
            let t1 = Instant::now();
            for _ in 0..4 {
                iv.tick().await;
            }
            (slept, to.is_err(), ok, t1.elapsed())
        })
        .unwrap();
    let (slept, timed_out, ok, ticks) = rt.block_on(h).unwrap();
    assert!(slept >= Duration::from_millis(20));
    assert!(timed_out);
    assert_eq!(ok, Ok(5));
    // First tick is immediate, then three periods.
    assert!(ticks >= Duration::from_millis(15));
}

#[test]
fn block_on_has_timers_and_local_tasks() {
    let rt = Runtime::testing(1).unwrap();
    let v = rt.block_on(async {
        let h = spawn_local(async {
            sleep(Duration::from_millis(2)).await;
            7
        });
        h.await.unwrap() * 6
    });
    assert_eq!(v, 42);
}

#[test]
fn metrics_count_work_and_render_prometheus() {
    let rt = Runtime::testing(2).unwrap();
    for _ in 0..10 {
        let h = rt.spawn_on(1, || async {}).unwrap();
        rt.block_on(h).unwrap();
    }
    // Counters are published by the worker right after its turn: wait for them (bounded).
    let t0 = Instant::now();
    let m = loop {
        let m = rt.metrics();
        if m[1].messages_in >= 10 && m[1].tasks_polled >= 10 {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "counters never caught up: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(
        m.len(),
        2 + 1 + 1,
        "2 app workers, 1 I/O and 1 accelerator node (Testing)"
    );
    let text = rt.prometheus();
    assert!(text.contains("percore_messages_in_total{worker=\"1\"}"));
}

#[test]
fn shutdown_cancels_tasks_and_refuses_new_work() {
    let rt = Runtime::testing(2).unwrap();
    let handle = rt.handle();
    let h = rt
        .spawn_on(0, || async { sleep(Duration::from_secs(60)).await })
        .unwrap();
    let report = rt.shutdown();
    assert!(report.clean, "{report:?}");
    assert!(report.tasks_cancelled >= 1);
    assert!(matches!(
        handle.spawn_on(0, || async {}),
        Err(RuntimeError::ShuttingDown)
    ));
    assert!(h.is_finished());
}

/// `timeout` counts its limit without reading the clock at creation; it must still never cut a
/// future short, on a worker and on the `block_on` thread.
#[test]
fn timeouts_never_fire_early() {
    let rt = Runtime::testing(2).unwrap();
    let check = || async {
        for ms in [0u64, 1, 3, 7, 15] {
            let d = Duration::from_millis(ms);
            let t0 = Instant::now();
            let r = timeout(d, sleep(Duration::from_secs(30))).await;
            let took = t0.elapsed();
            assert!(r.is_err(), "{ms} ms: the 30 s sleep cannot finish first");
            assert!(took >= d, "{ms} ms limit fired after {took:?}");
        }
        // A future that finishes inside the limit is not cut short either.
        let r = timeout(Duration::from_millis(50), sleep(Duration::from_millis(5))).await;
        assert!(r.is_ok());
    };
    let h = rt.spawn_on(1, check).unwrap();
    rt.block_on(h).unwrap();
    rt.block_on(check());
}

/// With pinning on (the Production profile's default), each app worker thread runs on exactly
/// the CPU its placement names: its affinity mask holds that one CPU. CPUs this process may not
/// use (a restricted cpuset) are skipped rather than failed: pinning there is refused and
/// logged, by design.
#[test]
fn pinned_workers_run_on_their_planned_cpus() {
    use percore::runtime::builder::Builder;
    use percore::runtime::config::Profile;

    /// The CPUs in the calling thread's affinity mask.
    fn affinity() -> Vec<usize> {
        // SAFETY: `cpu_set_t` is plain data; `sched_getaffinity` fills it for this thread.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer and size; pid 0 is the calling thread.
        let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(
            r,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `set` was filled above; the index is below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    let allowed = affinity();
    let workers = allowed.len().clamp(1, 2);
    let rt = Builder::new()
        .profile(Profile::Production)
        .app_workers(std::num::NonZeroUsize::new(workers).unwrap())
        .io_workers(0)
        .accel_workers(0)
        .pin(true)
        .build()
        .unwrap();
    let plan = rt.handle().config().placement.app.clone();
    assert_eq!(plan.len(), workers);
    let mut checked = 0;
    for (w, cpu) in plan.iter().enumerate() {
        let Some(cpu) = *cpu else { continue };
        if !allowed.contains(&cpu) {
            eprintln!("CPU {cpu} is outside this process's cpuset: not checked");
            continue;
        }
        let h = rt.spawn_on(w, move || async move { affinity() }).unwrap();
        assert_eq!(
            rt.block_on(h).unwrap(),
            vec![cpu],
            "worker {w} should be pinned to CPU {cpu}"
        );
        checked += 1;
    }
    assert!(
        checked > 0 || allowed.len() < 2,
        "no worker could be checked: {plan:?}"
    );
    assert!(rt.shutdown().clean);
}

/// The per-worker counters move with the work: busy time covers a blocking task, polls are
/// counted, and the ring-depth gauge shows the envelopes that waited while the worker was busy
/// (read by the tasks those envelopes started, in the turn that drained them).
#[test]
fn worker_counters_follow_the_work() {
    let rt = Runtime::testing(2).unwrap();
    let before = rt.metrics()[1];
    let seen_depth = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let h = rt.handle();
    let (b1, b2) = (blocked.clone(), blocked.clone());
    let block = rt
        .spawn_on(1, move || async move {
            b1.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(150));
        })
        .unwrap();
    let depth = seen_depth.clone();
    let sender = rt
        .spawn_on(0, move || async move {
            while !b2.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(1)).await;
            }
            // 40 spawn envelopes to worker 1 while it is blocked: they wait in the ring.
            let mut joins = Vec::new();
            for _ in 0..40 {
                let (h2, d) = (h.clone(), depth.clone());
                joins.push(
                    h.spawn_on(1, move || async move {
                        let now = h2.metrics()[1].ring_depth as usize;
                        d.fetch_max(now, Ordering::SeqCst);
                    })
                    .unwrap(),
                );
            }
            for j in joins {
                j.await.unwrap();
            }
        })
        .unwrap();
    rt.block_on(block).unwrap();
    rt.block_on(sender).unwrap();
    let after = rt.metrics()[1];
    assert!(
        after.busy_ns - before.busy_ns >= 150_000_000,
        "busy time {} ns does not cover the 150 ms task",
        after.busy_ns - before.busy_ns
    );
    assert!(after.tasks_polled - before.tasks_polled >= 41);
    assert!(after.messages_in - before.messages_in >= 40);
    assert!(
        seen_depth.load(Ordering::SeqCst) >= 40,
        "ring depth seen by the drained tasks: {}",
        seen_depth.load(Ordering::SeqCst)
    );
    assert!(rt.shutdown().clean);
}

/// The builder refuses an unusable value with a typed error naming the setting and what is
/// accepted, and an actor spawned without a capacity gets the profile's mailbox bound.
#[test]
fn builder_rejects_bad_values_and_mailboxes_default_to_the_profile() {
    use percore::runtime::builder::Builder;
    use percore::runtime::config::{ConfigError, Profile};

    let err = Builder::new()
        .profile(Profile::Testing)
        .ring_capacity(1000)
        .build()
        .err()
        .expect("1000 is not a power of two");
    match err {
        RuntimeError::Config(ConfigError::Invalid {
            setting, expected, ..
        }) => {
            assert_eq!(setting, "ring_capacity");
            assert!(expected.contains("power of two"), "{expected}");
        }
        other => panic!("expected a typed config error, got {other}"),
    }

    let rt = Builder::new()
        .profile(Profile::Testing)
        .mailbox_capacity(std::num::NonZeroUsize::new(37).unwrap())
        .build()
        .unwrap();
    struct Nop;
    impl percore::runtime::Actor for Nop {
        type Msg = ();
        async fn handle(&mut self, _: (), _: &mut percore::runtime::Context<Self>) {}
    }
    let a = rt.spawn_actor_on(0, || Nop).unwrap();
    assert_eq!(a.mailbox_capacity(), 37);
    assert_eq!(rt.handle().config().mailbox_capacity, 37);
    assert!(rt.shutdown().clean);
}
