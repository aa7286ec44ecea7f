//! The mesh's overflow path: with the smallest ring the config accepts (2 slots), a worker that
//! sends thousands of envelopes to another worker in one scheduler turn fills the ring at once,
//! and the rest wait in the sender's per-target overflow queue until its flushes move them on.
//! Checks that everything arrives, once, in per-sender order, mixed with envelopes from an OS
//! thread (injector) and task spawns, and that the runtime still shuts down clean.
//!
//! Whether overflow happened is not observable through the public API (the overflow queues and
//! `current_has_overflow` are crate-private, and the metrics have no overflow counter), so it is
//! guaranteed by construction instead: ring sends are published only at a flush (end of turn),
//! when a cross-thread wake-up is raised, or mid-turn when a batch of one mailbox fills; an
//! unpublished slot still takes ring room (and while a target has overflow, mid-turn publishing
//! to it is skipped). Each turn of the senders below pushes hundreds of envelopes (messages for
//! two mailboxes interleaved, so they cannot merge into a few batches, and spawns) between two
//! such points, so all but the first two go to overflow. (Checked once under gdb with
//! breakpoints on the overflow pushes in `mesh.rs`: they fire.)

mod common;

use common::recorder::{RecMsg, Recorder, check_per_sender, collect};

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::config::Profile;
use percore::runtime::{Runtime, timeout};

const T: Duration = Duration::from_secs(20);
/// The smallest ring the config accepts (power of two, 2..=65536).
const RING: usize = 2;
/// Large enough that no send in these tests finds a mailbox full.
const MAILBOX: usize = 100_000;

/// 2 app workers joined by 2-slot rings.
fn tiny_ring_runtime() -> Runtime {
    let rt = Runtime::builder()
        .profile(Profile::Testing)
        .app_workers(NonZeroUsize::new(2).unwrap())
        .ring_capacity(RING)
        .build()
        .unwrap();
    assert_eq!(rt.config().ring_capacity, RING);
    assert_eq!(rt.workers(), 2);
    rt
}

/// Waits (bounded) until `go` is set.
fn wait_for(go: &AtomicBool) {
    let t0 = Instant::now();
    while !go.load(Ordering::Acquire) {
        assert!(t0.elapsed() < T, "the sender on worker 0 never started");
        std::thread::yield_now();
    }
}

#[test]
fn a_full_ring_spills_to_overflow_and_loses_nothing() {
    let rt = tiny_ring_runtime();
    let h = rt.handle();
    let rec = h
        .spawn_actor_on_with_capacity(1, MAILBOX, Recorder::default)
        .unwrap();
    let other = h
        .spawn_actor_on_with_capacity(1, MAILBOX, Recorder::default)
        .unwrap();

    // Worker 0 → worker 1: `try_tell`s to `rec` (sender 0), a `tell` to `other` after every
    // fourth of them (sender 1: breaks `rec`'s batches, so each turn carries hundreds of
    // envelopes), and now and then a task spawned on worker 1 whose closure, run there in
    // envelope order, records itself in `rec` (sender 2). A task yields once per 128 `tell`s,
    // so a turn is ~512 iterations: ~260 envelopes (128 batches of 4 for `rec`, 128 singles for
    // `other`, ~5 spawns) for a ring of 2.
    const N0: u64 = 50_000;
    const TELL_EVERY: u64 = 4;
    const SPAWN_EVERY: u64 = 100;
    const N1: u64 = N0 / TELL_EVERY;
    const N2: u64 = N0 / SPAWN_EVERY;
    // An OS thread outside the runtime, through the injectors at the same time: senders 3
    // (`rec`) and 4 (`other`).
    const N3: u64 = 20_000;
    const N4: u64 = N3 / 2;

    let go = Arc::new(AtomicBool::new(false));
    let sender = {
        let (rec, other, h, go) = (rec.clone(), other.clone(), h.clone(), go.clone());
        rt.spawn_on(0, move || async move {
            go.store(true, Ordering::Release);
            let mut spawned = Vec::with_capacity(N2 as usize);
            for i in 0..N0 {
                if i % SPAWN_EVERY == 0 {
                    let (rec, k) = (rec.clone(), i / SPAWN_EVERY);
                    let j = h
                        .spawn_on(1, move || {
                            rec.try_tell(RecMsg::Item(2, k))
                                .unwrap_or_else(|_| panic!("spawn {k}: mailbox refused"));
                            async move { k }
                        })
                        .unwrap();
                    spawned.push(j);
                }
                rec.try_tell(RecMsg::Item(0, i))
                    .unwrap_or_else(|_| panic!("try_tell {i}: mailbox refused"));
                if i % TELL_EVERY == TELL_EVERY - 1 {
                    other
                        .tell(RecMsg::Item(1, i / TELL_EVERY))
                        .await
                        .unwrap_or_else(|_| panic!("tell {i}: actor stopped"));
                }
            }
            // Every spawned task ran once and returned its own number.
            for (k, j) in spawned.into_iter().enumerate() {
                let got = timeout(T, j).await.expect("spawned task within T");
                assert_eq!(got.unwrap(), k as u64);
            }
            assert_eq!(percore::runtime::current_worker(), Some(0));
        })
        .unwrap()
    };
    let outside = {
        let (rec, other, go) = (rec.clone(), other.clone(), go.clone());
        std::thread::spawn(move || {
            wait_for(&go);
            for i in 0..N3 {
                rec.try_tell(RecMsg::Item(3, i))
                    .unwrap_or_else(|_| panic!("outside {i}: mailbox refused"));
                if i % 2 == 1 {
                    other
                        .try_tell(RecMsg::Item(4, i / 2))
                        .unwrap_or_else(|_| panic!("outside {i}: mailbox refused"));
                }
            }
        })
    };

    let (seen, seen_other) = rt.block_on(async {
        timeout(T, sender).await.expect("sender within T").unwrap();
        (
            collect(&rec, (N0 + N2 + N3) as usize).await,
            collect(&other, (N1 + N4) as usize).await,
        )
    });
    outside.join().unwrap();
    check_per_sender(&seen, &[(0, N0), (2, N2), (3, N3)]);
    check_per_sender(&seen_other, &[(1, N1), (4, N4)]);
    // Nothing more trickles in after the counts were reached.
    let late = rt.block_on(async {
        (
            rec.ask(RecMsg::Dump, T).await.unwrap(),
            other.ask(RecMsg::Dump, T).await.unwrap(),
        )
    });
    assert_eq!(late, (vec![], vec![]), "items beyond the expected counts");

    // Indirect evidence only (see the module docs): worker 0 really sent its traffic as many
    // envelopes, each `tell` to `other` and each spawn one of its own, over a 2-slot ring.
    let out0 = rt.metrics()[0].messages_out;
    assert!(out0 >= 2 * N1 + N2, "worker 0 sent only {out0} envelopes");
    let report = rt.shutdown();
    assert!(report.clean, "{report:?}");
}

#[test]
fn both_directions_overflow_at_once() {
    // Each worker floods an actor on the other in the same moment, so both rings are full and
    // both senders hold overflow while each must still drain what the other sends it.
    let rt = tiny_ring_runtime();
    let h = rt.handle();
    let on = [
        h.spawn_actor_on_with_capacity(0, MAILBOX, Recorder::default)
            .unwrap(),
        h.spawn_actor_on_with_capacity(1, MAILBOX, Recorder::default)
            .unwrap(),
    ];
    let odd = [
        h.spawn_actor_on_with_capacity(0, MAILBOX, Recorder::default)
            .unwrap(),
        h.spawn_actor_on_with_capacity(1, MAILBOX, Recorder::default)
            .unwrap(),
    ];
    const N: u64 = 30_000;
    let mut senders = Vec::new();
    for w in 0..2usize {
        let (a, b) = (on[1 - w].clone(), odd[1 - w].clone());
        senders.push(
            rt.spawn_on(w, move || async move {
                for i in 0..N {
                    // Alternating mailboxes: one envelope per message.
                    let (to, s) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
                    to.try_tell(RecMsg::Item(s, i / 2))
                        .unwrap_or_else(|_| panic!("worker {w}: send {i} refused"));
                }
            })
            .unwrap(),
        );
    }
    let seen = rt.block_on(async {
        for s in senders {
            timeout(T, s).await.expect("sender within T").unwrap();
        }
        let mut seen = Vec::new();
        for a in on.iter().chain(odd.iter()) {
            seen.push(collect(a, (N / 2) as usize).await);
        }
        seen
    });
    for (i, s) in seen.iter().enumerate() {
        // `on[*]` get sender 0's items, `odd[*]` sender 1's.
        let sender = if i < 2 { 0 } else { 1 };
        check_per_sender(s, &[(sender, N / 2)]);
    }
    for (w, m) in rt.metrics().iter().take(2).enumerate() {
        assert!(
            m.messages_out >= N,
            "worker {w} sent only {} envelopes",
            m.messages_out
        );
    }
    let report = rt.shutdown();
    assert!(report.clean, "{report:?}");
}
