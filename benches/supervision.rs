//! Supervision and observability costs, each side by side in one run:
//!
//! 1. cross-core `tell` throughput to a supervised actor vs an unsupervised one (target: within
//!    3 %), alternating rounds;
//! 2. restart latency on the same core: from the panic in a handler to the next message's
//!    handler starting (target: < 50 µs), with a silent panic hook and with the default one
//!    (stderr to wherever the bench's stderr goes);
//! 3. a `/metrics` scrape over HTTP of a runtime with 100,000 actors (target: < 50 ms), and
//!    the longest gap a ticking task on each worker sees during scrapes vs without (target:
//!    workers stalled < 1 ms).
//!
//! Run: `cargo bench --bench supervision` (env `RUNTIMES`, `ACTORS`, `ONLY=tell|restart|scrape|spread`). Figures go to BENCHMARKS.md.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::supervision::{Backoff, ChildSpec, SupervisorSpec};
use percore::runtime::{Actor, Addr, Context, Reply, Runtime};
use percore::transport::admin::AdminExt;

const T: Duration = Duration::from_secs(60);

struct Sum(u64);
enum Msg {
    Add(u64),
    Get(Reply<u64>),
}
impl Actor for Sum {
    type Msg = Msg;
    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        match msg {
            Msg::Add(n) => self.0 += n,
            Msg::Get(r) => {
                let _ = r.send(self.0);
            }
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rt() -> Runtime {
    use percore::runtime::builder::Builder;
    use percore::runtime::config::Profile;
    let cfg = Builder::new()
        .profile(Profile::Performance)
        .app_workers(std::num::NonZeroUsize::new(2).expect("2 > 0"))
        .io_workers(1)
        .config()
        .expect("Performance profile with 2 workers is valid");
    Runtime::start(cfg).expect("runtime starts")
}

/// `n` tells from a task on worker 0 to `addr` (on worker 1), then an ask: messages/s.
fn tells(rt: &Runtime, addr: &Addr<Sum>, n: u64) -> f64 {
    let a = addr.clone();
    let h = rt
        .spawn_on(0, move || async move {
            let t0 = Instant::now();
            for i in 0..n {
                a.tell(Msg::Add(i)).await.expect("actor alive");
            }
            a.ask(Msg::Get, T).await.expect("answer");
            t0.elapsed()
        })
        .expect("spawn");
    n as f64 / rt.block_on(h).expect("bench task").as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Where an actor's mailbox lands in memory moves its throughput by up to ~15 % here (in one
/// runtime, one actor measured 32 M/s and its twin 37 M/s, same code), and the layout is fixed
/// for a runtime's life: so each sample is a fresh runtime holding one actor of each kind
/// (spawned in alternating order), measured alternately, and the figure is the median of the
/// per-runtime ratios.
fn tell_overhead(runtimes: usize) {
    const N: u64 = 1_000_000;
    let mut ratios = Vec::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for r in 0..runtimes {
        let rt = rt();
        let sup = rt.handle().supervisor(SupervisorSpec::one_for_one("bench"));
        let spawn_sup = || {
            sup.spawn_on(1, ChildSpec::permanent(), || Sum(0))
                .expect("spawn")
        };
        let (plain, supervised) = if r % 2 == 0 {
            let p = rt.spawn_actor_on(1, || Sum(0)).expect("spawn");
            (p, spawn_sup())
        } else {
            let s = spawn_sup();
            (rt.spawn_actor_on(1, || Sum(0)).expect("spawn"), s)
        };
        tells(&rt, &plain, N / 4);
        tells(&rt, &supervised, N / 4);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..4 {
            if i % 2 == 0 {
                x.push(tells(&rt, &plain, N));
                y.push(tells(&rt, &supervised, N));
            } else {
                y.push(tells(&rt, &supervised, N));
                x.push(tells(&rt, &plain, N));
            }
        }
        let (mx, my) = (median(&mut x), median(&mut y));
        a.push(mx);
        b.push(my);
        ratios.push(my / mx);
    }
    let lo = ratios.iter().cloned().fold(f64::MAX, f64::min);
    let hi = ratios.iter().cloned().fold(0.0, f64::max);
    println!(
        "tell cross-core, {runtimes} runtimes x 4 rounds of {N}: unsupervised median {:.2} M/s, supervised {:.2} M/s, ratio (supervised / unsupervised) median of per-runtime ratios {:.3} [{lo:.3} .. {hi:.3}]",
        median(&mut a) / 1e6,
        median(&mut b) / 1e6,
        median(&mut ratios),
    );
}

/// Panics on `Crash` after stamping the time; the next incarnation stamps its first message.
struct Phoenix {
    crashed_at: Arc<AtomicU64>,
    samples: Arc<std::sync::Mutex<Vec<f64>>>,
    epoch: Instant,
}
enum PMsg {
    Crash,
    After,
    Done(Reply<()>),
}
impl Actor for Phoenix {
    type Msg = PMsg;
    async fn handle(&mut self, msg: PMsg, _ctx: &mut Context<Self>) {
        match msg {
            PMsg::Crash => {
                self.crashed_at
                    .store(self.epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
                std::panic::resume_unwind(Box::new("crash"));
            }
            PMsg::After => {
                let now = self.epoch.elapsed().as_nanos() as u64;
                let c = self.crashed_at.swap(0, Ordering::SeqCst);
                if c != 0 {
                    self.samples
                        .lock()
                        .expect("not poisoned")
                        .push((now - c) as f64 / 1e3);
                }
            }
            PMsg::Done(r) => {
                let _ = r.send(());
            }
        }
    }
}

fn restart_latency(n: usize, label: &str) {
    let rt = rt();
    let sup = rt.handle().supervisor(
        SupervisorSpec::one_for_one("phoenix")
            .intensity(u32::MAX, Duration::from_secs(1))
            .backoff(Backoff::none()),
    );
    let crashed_at = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let epoch = Instant::now();
    let (c, s) = (crashed_at.clone(), samples.clone());
    let p = sup
        .spawn_on(1, ChildSpec::permanent(), move || Phoenix {
            crashed_at: c.clone(),
            samples: s.clone(),
            epoch,
        })
        .expect("spawn");
    // Sent from the actor's own core, both at once: the next message is queued at the panic.
    let h = rt
        .spawn_on(1, move || async move {
            for _ in 0..n {
                p.tell(PMsg::Crash).await.expect("alive");
                p.tell(PMsg::After).await.expect("alive");
                p.ask(PMsg::Done, T).await.expect("answer");
            }
        })
        .expect("spawn");
    rt.block_on(h).expect("bench task");
    let mut v = samples.lock().expect("not poisoned").clone();
    println!(
        "restart same core ({label}), {} restarts: median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        v.len(),
        pct(&mut v, 0.5),
        pct(&mut v, 0.99),
        pct(&mut v, 1.0)
    );
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    async fn handle(&mut self, _m: (), _ctx: &mut Context<Self>) {}
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> usize {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut b = Vec::new();
    s.read_to_end(&mut b).expect("read");
    assert!(b.starts_with(b"HTTP/1.1 200"), "scrape failed");
    b.len()
}

fn scrape(actors: usize, scrapes: usize) {
    let rt = rt();
    let h = rt.handle();
    for i in 0..actors {
        std::mem::forget(rt.spawn_actor_on(i % 2, || Idle).expect("spawn"));
    }
    while h.actor_count() < actors {
        std::thread::sleep(Duration::from_millis(10));
    }
    let admin = rt
        .serve_admin("127.0.0.1:0".parse().expect("addr"))
        .expect("admin");
    // A ticker per worker: the gaps between its wake-ups (it asks for one every 100 µs).
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU64::new(0)); // 0: off, 1: idle phase, 2: scrape phase
    let gaps: Arc<std::sync::Mutex<[Vec<f64>; 3]>> = Default::default();
    let mut tickers = Vec::new();
    for w in 0..2 {
        let (stop, phase, gaps) = (stop.clone(), phase.clone(), gaps.clone());
        tickers.push(
            rt.spawn_on(w, move || async move {
                let mut last = Instant::now();
                let mut mine: [Vec<f64>; 3] = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    percore::runtime::sleep(Duration::from_micros(100)).await;
                    let now = Instant::now();
                    let p = phase.load(Ordering::Relaxed) as usize;
                    mine[p].push((now - last).as_secs_f64() * 1e3);
                    last = now;
                }
                let mut g = gaps.lock().expect("not poisoned");
                for (i, v) in mine.into_iter().enumerate() {
                    g[i].extend(v);
                }
            })
            .expect("spawn"),
        );
    }
    let mut times = Vec::new();
    let mut bytes = 0;
    let t0 = Instant::now();
    phase.store(2, Ordering::Relaxed);
    for _ in 0..scrapes {
        let t = Instant::now();
        bytes = http_get(admin.local_addr(), "/metrics");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let scraping = t0.elapsed();
    phase.store(1, Ordering::Relaxed);
    std::thread::sleep(scraping);
    phase.store(0, Ordering::Relaxed);
    // The same page through an independent client, when curl is installed (its process
    // start-ups take CPU from the workers here: not in the tick figures).
    let mut curl_ms = Vec::new();
    for _ in 0..scrapes {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{time_total}"])
            .arg(format!("http://{}/metrics", admin.local_addr()))
            .output();
        match out {
            Ok(o) if o.status.success() => {
                if let Ok(t) = String::from_utf8_lossy(&o.stdout).trim().parse::<f64>() {
                    curl_ms.push(t * 1e3);
                }
            }
            _ => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tickers {
        let _ = rt.block_on(t);
    }
    let mut g = gaps.lock().expect("not poisoned").clone();
    let over = |v: &[f64]| v.iter().filter(|&&x| x > 1.0).count();
    let (idle_over, scrape_over) = (over(&g[1]), over(&g[2]));
    let (idle_n, scrape_n) = (g[1].len(), g[2].len());
    println!(
        "/metrics over HTTP with {actors} actors ({bytes} B): median {:.1} ms, max {:.1} ms over {scrapes} scrapes",
        pct(&mut times.clone(), 0.5),
        pct(&mut times, 1.0),
    );
    if !curl_ms.is_empty() {
        println!(
            "  curl, same page: median {:.1} ms, max {:.1} ms over {} scrapes",
            pct(&mut curl_ms.clone(), 0.5),
            pct(&mut curl_ms, 1.0),
            curl_ms.len()
        );
    }
    println!(
        "  worker ticks (100 µs sleeps), same duration each: during scrapes p99 gap {:.2} ms, max {:.2} ms, {scrape_over}/{scrape_n} gaps > 1 ms; idle p99 {:.2} ms, max {:.2} ms, {idle_over}/{idle_n} > 1 ms",
        pct(&mut g[2], 0.99),
        pct(&mut g[2], 1.0),
        pct(&mut g[1], 0.99),
        pct(&mut g[1], 1.0),
    );
}

/// Layout check: several actors of each kind, measured round robin in one run.
fn tell_spread(rounds: usize) {
    let rt = rt();
    let sup = rt.handle().supervisor(SupervisorSpec::one_for_one("bench"));
    let mut actors: Vec<(String, Addr<Sum>)> = Vec::new();
    for i in 0..3 {
        actors.push((
            format!("plain{i}"),
            rt.spawn_actor_on(1, || Sum(0)).expect("spawn"),
        ));
        actors.push((
            format!("sup{i}"),
            sup.spawn_on(1, ChildSpec::permanent(), || Sum(0))
                .expect("spawn"),
        ));
    }
    const N: u64 = 1_000_000;
    let mut res: Vec<Vec<f64>> = vec![Vec::new(); actors.len()];
    for _ in 0..rounds {
        for (i, (_, a)) in actors.iter().enumerate() {
            res[i].push(tells(&rt, a, N));
        }
    }
    for (i, (name, _)) in actors.iter().enumerate() {
        println!("  {name}: median {:.2} M/s", median(&mut res[i]) / 1e6);
    }
}

fn main() {
    if std::env::var("ONLY").as_deref() == Ok("spread") {
        tell_spread(env("ROUNDS", 5));
        return;
    }
    let rounds = env("RUNTIMES", 25);
    let actors = env("ACTORS", 100_000);
    let only = std::env::var("ONLY").unwrap_or_default();
    if only.is_empty() || only == "tell" {
        tell_overhead(rounds);
    }
    if only.is_empty() || only == "restart" {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        restart_latency(2000, "silent panic hook");
        std::panic::set_hook(default_hook);
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            restart_latency(500, "default panic hook, stderr as given");
        } else {
            println!("(default-hook run skipped: RUST_BACKTRACE is set; unset it to measure)");
        }
    }
    if only.is_empty() || only == "scrape" {
        scrape(actors, 20);
    }
}
