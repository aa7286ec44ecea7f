//! Cross-core channel throughput and ping-pong round trip: percore's SPSC ring (batched publish
//! and publish-per-push) next to `rtrb`, crossbeam-channel bounded and std `sync_channel` (each
//! in both groups), in the same run, producer pinned to core 0 and consumer to core 1
//! (where the machine has them).
//!
//! Run: `cargo bench --bench channels`. Ratios go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: u64 = 1_000_000;
const CAP: usize = 1024;
const ROUNDS: u64 = 20_000;

/// Pins to CPU `core` by id. (Not via `core_affinity::get_core_ids()`: that lists the calling
/// thread's current mask, so a thread spawned by a pinned thread would see only that one CPU.)
/// `available_parallelism()` has the same trap, so the online count comes from sysconf.
fn pin(core: usize) {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    core_affinity::set_for_current(core_affinity::CoreId { id: core % n });
}

/// Runs `produce` on core 0 and `consume` on core 1; returns the consumer's elapsed time.
fn cross<P, C>(produce: P, consume: C) -> Duration
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() + Send + 'static,
{
    let t = std::thread::spawn(move || {
        pin(0);
        produce();
    });
    let c = std::thread::spawn(move || {
        pin(1);
        let t0 = Instant::now();
        consume();
        t0.elapsed()
    });
    t.join().expect("producer");
    c.join().expect("consumer")
}

fn percore_batched() -> Duration {
    let (mut p, mut c) = percore::runtime::ring::ring::<u64>(CAP);
    cross(
        move || {
            let mut i = 0;
            while i < N {
                // Push what fits (up to 64), publish once.
                let mut k = 0;
                while k < 64 && i < N && p.push(i).is_ok() {
                    i += 1;
                    k += 1;
                }
                p.publish();
                if k == 0 {
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            let mut sum = 0u64;
            let mut n = 0;
            while n < N {
                let got = c.pop_batch(256, |v| sum = sum.wrapping_add(v));
                if got == 0 {
                    std::hint::spin_loop();
                }
                n += got as u64;
            }
            assert_eq!(sum, N * (N - 1) / 2);
        },
    )
}

fn percore_push_now() -> Duration {
    let (mut p, mut c) = percore::runtime::ring::ring::<u64>(CAP);
    cross(
        move || {
            for i in 0..N {
                while p.push_now(i).is_err() {
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            let mut n = 0;
            while n < N {
                match c.pop() {
                    Some(v) => {
                        debug_assert_eq!(v, n);
                        n += 1;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        },
    )
}

fn rtrb_spsc() -> Duration {
    let (mut p, mut c) = rtrb::RingBuffer::<u64>::new(CAP);
    cross(
        move || {
            for i in 0..N {
                while p.push(i).is_err() {
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            let mut n = 0;
            while n < N {
                match c.pop() {
                    Ok(v) => {
                        debug_assert_eq!(v, n);
                        n += 1;
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            }
        },
    )
}

fn crossbeam_bounded() -> Duration {
    let (tx, rx) = crossbeam::channel::bounded::<u64>(CAP);
    cross(
        move || {
            for i in 0..N {
                tx.send(i).expect("receiver alive");
            }
        },
        move || {
            for _ in 0..N {
                rx.recv().expect("sender alive");
            }
        },
    )
}

fn std_sync_channel() -> Duration {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(CAP);
    cross(
        move || {
            for i in 0..N {
                tx.send(i).expect("receiver alive");
            }
        },
        move || {
            for _ in 0..N {
                rx.recv().expect("sender alive");
            }
        },
    )
}

/// Ping-pong: core 1 echoes; core 0 measures ROUNDS round trips. `send` returns false when the
/// channel is full (retried); `recv` returns `None` when nothing is there yet (spun on).
fn pingpong<S, R>(
    (mut tx1, mut rx1): (S, R),
    (mut tx2, mut rx2): (S, R),
    send: fn(&mut S, u64) -> bool,
    recv: fn(&mut R) -> Option<u64>,
) -> Duration
where
    S: Send + 'static,
    R: Send + 'static,
{
    let echo = std::thread::spawn(move || {
        pin(1);
        for _ in 0..ROUNDS {
            let v = loop {
                if let Some(v) = recv(&mut rx1) {
                    break v;
                }
                std::hint::spin_loop();
            };
            while !send(&mut tx2, v) {}
        }
    });
    pin(0);
    let t0 = Instant::now();
    for i in 0..ROUNDS {
        while !send(&mut tx1, i) {}
        while recv(&mut rx2).is_none() {
            std::hint::spin_loop();
        }
    }
    let d = t0.elapsed();
    echo.join().expect("echo");
    d
}

fn pingpong_percore() -> Duration {
    use percore::runtime::ring::{Consumer, Producer, ring};
    pingpong(
        ring::<u64>(CAP),
        ring::<u64>(CAP),
        |p: &mut Producer<u64>, v| p.push_now(v).is_ok(),
        |c: &mut Consumer<u64>| c.pop(),
    )
}

fn pingpong_rtrb() -> Duration {
    use rtrb::{Consumer, Producer, RingBuffer};
    pingpong(
        RingBuffer::<u64>::new(CAP),
        RingBuffer::<u64>::new(CAP),
        |p: &mut Producer<u64>, v| p.push(v).is_ok(),
        |c: &mut Consumer<u64>| c.pop().ok(),
    )
}

fn pingpong_crossbeam() -> Duration {
    use crossbeam::channel::{Receiver, Sender, bounded};
    pingpong(
        bounded::<u64>(CAP),
        bounded::<u64>(CAP),
        |s: &mut Sender<u64>, v| s.try_send(v).is_ok(),
        |r: &mut Receiver<u64>| r.try_recv().ok(),
    )
}

fn pingpong_std() -> Duration {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    pingpong(
        sync_channel::<u64>(CAP),
        sync_channel::<u64>(CAP),
        |s: &mut SyncSender<u64>, v| s.try_send(v).is_ok(),
        |r: &mut Receiver<u64>| r.try_recv().ok(),
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_throughput");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    g.bench_function("percore_ring_batched", |b| {
        b.iter_custom(|it| (0..it).map(|_| percore_batched()).sum())
    });
    g.bench_function("percore_ring_push_now", |b| {
        b.iter_custom(|it| (0..it).map(|_| percore_push_now()).sum())
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|it| (0..it).map(|_| rtrb_spsc()).sum())
    });
    g.bench_function("crossbeam_bounded", |b| {
        b.iter_custom(|it| (0..it).map(|_| crossbeam_bounded()).sum())
    });
    g.bench_function("std_sync_channel", |b| {
        b.iter_custom(|it| (0..it).map(|_| std_sync_channel()).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(ROUNDS));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    g.bench_function("percore_ring", |b| {
        b.iter_custom(|it| (0..it).map(|_| pingpong_percore()).sum())
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|it| (0..it).map(|_| pingpong_rtrb()).sum())
    });
    g.bench_function("crossbeam_bounded", |b| {
        b.iter_custom(|it| (0..it).map(|_| pingpong_crossbeam()).sum())
    });
    g.bench_function("std_sync_channel", |b| {
        b.iter_custom(|it| (0..it).map(|_| pingpong_std()).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
