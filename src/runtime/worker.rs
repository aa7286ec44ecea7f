//! The scheduler loop of an app worker: pin to its CPU, install the executor, ring ends and
//! (co-located) event loop, then turn: drain the injector and rings, move remote wake-ups,
//! fire timers, poll up to `tasks_per_tick` tasks, run the event loop without blocking, flush
//! the outbound rings; when idle spin for `spin_before_park`, then sleep (in the event loop's
//! kernel wait when it has one, else parked) until a timer or a producer's wake-up. Owns the
//! worker thread's life; the executor, mesh and event loop own their parts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::executor::{Executor, Notifier};
use super::io::event_loop;
use super::io::{BackendKind, EventLoopStats};
use super::mesh::{self, Inbound, NodeEnds, Outbound};
use super::rt::RtInner;

pub(super) struct WorkerCfg {
    pub(super) idx: usize,
    /// Co-located event loop: (backend, may fall back to mio).
    pub(super) io: Option<(BackendKind, bool)>,
    pub(super) io_stats: Arc<EventLoopStats>,
    pub(super) pin: Option<usize>,
    pub(super) spin: Duration,
    pub(super) tasks_per_tick: usize,
}

pub(super) fn worker_main(
    inner: Arc<RtInner>,
    ends: NodeEnds,
    cfg: WorkerCfg,
    ready: std::sync::mpsc::Sender<(usize, Result<Option<BackendKind>, String>)>,
) {
    let idx = cfg.idx;
    if let Some(cpu) = cfg.pin
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        tracing::warn!(
            worker = idx,
            cpu,
            "could not pin worker to its CPU; running unpinned"
        );
    }
    let span = tracing::info_span!("worker", id = idx);
    let _span = span.enter();
    let mesh = inner.mesh.clone();
    let node = &mesh.nodes[idx];
    // A co-located event loop sleeps in the kernel (io_uring_enter / epoll_wait) instead of
    // parking the thread, so wake-ups go through the loop's eventfd / mio waker.
    let mut io_kind = None;
    let notifier = match cfg.io {
        Some((kind, may_fall_back)) => match event_loop::install(idx, idx, kind, may_fall_back) {
            Ok((k, wake)) => {
                io_kind = Some(k);
                Notifier::custom_handshake(wake)
            }
            Err(e) => {
                let _ = ready.send((idx, Err(e.to_string())));
                return;
            }
        },
        None => Notifier::for_current_thread(),
    };
    let colocated = io_kind.is_some();
    let _ = node.notifier.set(notifier.clone());
    let exec = Executor::new(notifier.clone(), Some(idx), Some((mesh.id, idx)));
    let _ = node.exec_id.set(exec.shared.id);
    let _enter = exec.enter();
    Outbound::new(mesh.clone(), idx, ends.outbound).install();
    let mut inbound = Inbound {
        consumers: ends.inbound,
    };
    let _ = ready.send((idx, Ok(io_kind)));
    drop(ready);
    let budget = cfg.tasks_per_tick.max(32);
    let m = &node.metrics;

    // A busy turn's closing clock read doubles as the next turn's start: one read per turn
    // while work keeps coming (clock reads were ~6 % of a cross-core ask's profile).
    let mut carried: Option<Instant> = None;
    loop {
        let t0 = carried.take().unwrap_or_else(Instant::now);
        m.turn_started_ms
            .store(super::metrics::stamp_ms(t0), Ordering::Relaxed);
        let mut did = inbound.drain(node, budget);
        did += exec.drain_remote();
        did += exec.fire_timers(t0);
        did += exec.run_ready(cfg.tasks_per_tick);
        if colocated && event_loop::active() {
            did += io_turn(Some(Duration::ZERO), &cfg.io_stats);
        }
        let overflow = mesh::flush_current();
        if did > 0 {
            let t1 = Instant::now();
            m.busy_ns
                .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
            // Read after every poll of this turn: timers those polls created count from it.
            exec.settle_timers(t1);
            carried = Some(t1);
            m.tasks_polled
                .store(exec.counters.polled.get(), Ordering::Relaxed);
            continue;
        }
        m.tasks_alive
            .store(exec.task_count() as u64, Ordering::Relaxed);
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        let has_work = |inbound: &Inbound| {
            inbound.has_pending(node)
                || exec.shared.has_remote()
                || exec.has_ready()
                || exec.next_deadline().is_some_and(|d| d <= Instant::now())
        };
        // Spin briefly: waking a parked thread from the other core costs tens of microseconds.
        // The checks in the loop read no clock (a clock read per check was 13 % of a worker
        // waiting for an ask's answer, and slowed how soon it saw it): timers cannot be added
        // while this thread spins, so the next deadline is fixed, and the clock is read every
        // 32 checks.
        //
        // A worker whose co-located event loop serves sockets does not spin: its wake-ups come
        // from the kernel either way (a spin sees them only through a poll every ~20 µs), and on
        // a machine shared with clients the spin took their CPU. Measured with wrk on 2 vCPUs
        // (BENCHMARKS.md): 50 µs spin 111-123 k req/s, p99 7.9 ms; no spin 122-126 k, 5.4 ms.
        let spin = if colocated && event_loop::active() {
            Duration::ZERO
        } else {
            cfg.spin
        };
        // This (idle) turn started moments ago: its start stands in for now.
        let spin_end = t0 + spin;
        let deadline = exec.next_deadline();
        let mut found = false;
        let mut spins = 0u32;
        while !spin.is_zero() {
            if inbound.has_pending(node)
                || exec.shared.has_remote()
                || exec.has_ready()
                || inner.stop.load(Ordering::Relaxed)
            {
                found = true;
                break;
            }
            // One PAUSE per check: a PAUSE costs ~40-140 cycles, so work is seen within
            // ~100 ns.
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(32) {
                let now = Instant::now();
                if deadline.is_some_and(|d| d <= now) {
                    found = true;
                    break;
                }
                if now >= spin_end {
                    break;
                }
            }
        }
        if found {
            continue;
        }
        notifier.set_sleeping(true);
        if has_work(&inbound)
            || inner.stop.load(Ordering::SeqCst)
            || (colocated && event_loop::has_ready())
        {
            notifier.set_sleeping(false);
            continue;
        }
        m.parks.fetch_add(1, Ordering::Relaxed);
        m.turn_started_ms.store(0, Ordering::Relaxed);
        let mut wait = exec
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        if overflow > 0 || mesh::current_has_overflow() {
            // A target's ring is full: come back soon to move the overflow.
            wait = Some(wait.map_or(Duration::from_micros(50), |w| {
                w.min(Duration::from_micros(50))
            }));
        }
        if colocated {
            io_turn(wait, &cfg.io_stats);
        } else {
            match wait {
                Some(w) => std::thread::park_timeout(w),
                None => std::thread::park(),
            }
        }
        notifier.set_sleeping(false);
    }

    if colocated {
        event_loop::uninstall();
    }
    // Shutdown: cancel what is left (dropping futures here, on their own thread). Envelopes
    // still waiting are dropped without running: their actors may be gone (see MailboxPtr).
    let cancelled = exec.cancel_all();
    inner
        .tasks_cancelled
        .fetch_add(cancelled as u64, Ordering::Relaxed);
    mesh::flush_current();
    inbound.discard(node);
    let _ = Outbound::uninstall();
}

/// One turn of a co-located event loop; errors are logged (the worker keeps running).
fn io_turn(timeout: Option<Duration>, stats: &EventLoopStats) -> usize {
    match event_loop::turn(timeout, stats) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(%e, "event loop poll failed");
            0
        }
    }
}
