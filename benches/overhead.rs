//! Runtime overhead targets, measured (not timed tests):
//! - spawning 1,000,000 idle actors on one worker: wall time and resident memory added;
//! - an idle runtime's CPU use over 10 s (process user+system time / wall time).
//!
//! Run: `cargo bench --bench overhead` (prints a small table; add `-- --quick` for a 2 s idle
//! window).

use std::time::{Duration, Instant};

use percore::runtime::{Actor, Context, Runtime};

struct Idle;
impl Actor for Idle {
    type Msg = u64;
    async fn handle(&mut self, _m: u64, _ctx: &mut Context<Self>) {}
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer is always allowed.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: usize = std::env::var("SPAWN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::testing(2).expect("runtime");

    // 1) Spawn n idle actors on worker 1, from worker 1 (local spawn).
    let before = rss_bytes();
    let h = rt
        .spawn_on(1, move || async move {
            let t0 = Instant::now();
            let mut addrs = Vec::with_capacity(n);
            for _ in 0..n {
                addrs.push(percore::runtime::spawn_actor(Idle).expect("spawn"));
            }
            // Let every actor run its start-up poll.
            percore::runtime::yield_now().await;
            (t0.elapsed(), addrs)
        })
        .expect("spawn task");
    let (spawn_time, addrs) = rt.block_on(h).expect("spawn task finished");
    std::thread::sleep(Duration::from_millis(200));
    let added = rss_bytes().saturating_sub(before);
    println!(
        "| spawn {n} idle actors on one worker | {:.3} s | target < 1 s |",
        spawn_time.as_secs_f64()
    );
    println!(
        "| memory added by {n} idle actors | {:.1} MiB ({} B/actor) | target < 512 MiB |",
        added as f64 / (1 << 20) as f64,
        added / n as u64
    );
    let t0 = Instant::now();
    drop(rt);
    drop(addrs);
    println!(
        "| shutdown with {n} actors | {:.3} s | |",
        t0.elapsed().as_secs_f64()
    );

    // 2) Idle CPU of a fresh runtime.
    let rt = Runtime::testing(2).expect("runtime");
    std::thread::sleep(Duration::from_millis(100));
    let window = if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let c0 = cpu_time();
    let w0 = Instant::now();
    std::thread::sleep(window);
    let cpu = cpu_time() - c0;
    let pct = 100.0 * cpu.as_secs_f64() / w0.elapsed().as_secs_f64();
    println!(
        "| idle runtime CPU over {:?} | {pct:.3} % | target < 1 % |",
        window
    );
    drop(rt);
}
