//! Overload: senders drive an actor twice as fast as it can handle for 60 s (set
//! `PERCORE_OVERLOAD_SECS` to change it). Memory stays bounded, `try_tell` senders see `Full`,
//! `tell` senders wait (backpressure), the mailbox never holds more than its bound, and every
//! message accepted is handled: nothing is lost silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::{Actor, Context, Reply, Runtime, TrySendError, sleep};

/// Spends `cost` of CPU per message and counts what it handled.
struct Slow {
    cost: Duration,
    handled: u64,
    bytes: u64,
}

enum Msg {
    Work(Vec<u8>),
    Count(Reply<(u64, u64)>),
}

impl Actor for Slow {
    type Msg = Msg;
    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        match msg {
            Msg::Work(payload) => {
                let t = Instant::now();
                while t.elapsed() < self.cost {
                    std::hint::spin_loop();
                }
                self.handled += 1;
                self.bytes += payload.len() as u64;
            }
            Msg::Count(r) => {
                let _ = r.send((self.handled, self.bytes));
            }
        }
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn twice_the_capacity_for_a_minute_stays_bounded_and_loses_nothing() {
    let secs: u64 = std::env::var("PERCORE_OVERLOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let rt = Runtime::testing(2).unwrap();
    const CAP: usize = 256;
    const PAYLOAD: usize = 4096;
    let cost = Duration::from_micros(50); // capacity: ~20,000 messages/s
    let slow = rt
        .handle()
        .spawn_actor_on_with_capacity(1, CAP, move || Slow {
            cost,
            handled: 0,
            bytes: 0,
        })
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, full, told) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let max_len = Arc::new(AtomicU64::new(0));
    // A `try_tell` sender offering 40,000 messages/s (twice the capacity) in 1 ms ticks, on the
    // other core.
    let s1 = {
        let (a, stop, ok, full, max_len) = (
            slow.clone(),
            stop.clone(),
            ok.clone(),
            full.clone(),
            max_len.clone(),
        );
        rt.spawn_on(0, move || async move {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..40 {
                    match a.try_tell(Msg::Work(vec![7u8; PAYLOAD])) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(TrySendError::Full(_)) => full.fetch_add(1, Ordering::Relaxed),
                        Err(TrySendError::Stopped(_)) => panic!("the actor stopped"),
                    };
                }
                max_len.fetch_max(a.mailbox_len() as u64, Ordering::Relaxed);
                sleep(Duration::from_millis(1)).await;
            }
        })
        .unwrap()
    };
    // A `tell` sender on another thread: it waits for room (backpressure).
    let s2 = {
        let (a, stop, told) = (slow.clone(), stop.clone(), told.clone());
        std::thread::spawn(move || {
            let rt2 = Runtime::testing(1).unwrap();
            rt2.block_on(async move {
                while !stop.load(Ordering::Relaxed) {
                    a.tell(Msg::Work(vec![1u8; PAYLOAD])).await.unwrap();
                    told.fetch_add(1, Ordering::Relaxed);
                }
            });
        })
    };
    let start = Instant::now();
    let warm = rss_kib();
    let mut peak = warm;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(250));
        peak = peak.max(rss_kib());
        assert!(slow.mailbox_len() <= CAP, "mailbox over its bound");
    }
    stop.store(true, Ordering::Relaxed);
    rt.block_on(s1).unwrap();
    s2.join().unwrap();
    let (handled, bytes) = rt
        .block_on(slow.ask(Msg::Count, Duration::from_secs(60)))
        .unwrap();
    let accepted = ok.load(Ordering::Relaxed) + told.load(Ordering::Relaxed);
    let refused = full.load(Ordering::Relaxed);
    eprintln!(
        "{secs} s: accepted {accepted} (try_tell {} + tell {}), refused Full {refused}, handled {handled}, mailbox max {}, RSS {warm} -> peak {peak} KiB",
        ok.load(Ordering::Relaxed),
        told.load(Ordering::Relaxed),
        max_len.load(Ordering::Relaxed),
    );
    assert_eq!(handled, accepted, "every accepted message handled");
    assert_eq!(bytes, accepted * PAYLOAD as u64);
    assert!(refused > 0, "the try_tell sender saw Full");
    let offered = accepted + refused;
    assert!(
        handled * 10 < offered * 8,
        "the actor was not overloaded: handled {handled} of {offered} offered"
    );
    assert!(max_len.load(Ordering::Relaxed) <= CAP as u64);
    // Bounded: the mailbox holds at most 256 x 4 KiB = 1 MiB of payload; allow the allocator
    // and thread stacks 32 MiB over the warm figure.
    assert!(
        peak < warm + 32 * 1024,
        "memory grew from {warm} KiB to {peak} KiB"
    );
}
