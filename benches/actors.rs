//! Actor messaging: percore `tell` throughput (same core and cross core) and `ask` round trip,
//! next to the equivalent actor loop on tokio mpsc (how Actix/Ractor/Kameo work), same run.
//!
//! Run: `cargo bench --bench actors`. Results and ratios go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use percore::runtime::{Actor, Addr, Context, Reply, Runtime};

const BATCH: u64 = 100_000;
const CAP: usize = 1024;
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

fn percore_rt() -> Runtime {
    use percore::runtime::builder::Builder;
    use percore::runtime::config::Profile;
    let cfg = Builder::new()
        .profile(Profile::Performance)
        .app_workers(std::num::NonZeroUsize::new(2).expect("2 > 0"))
        .config()
        .expect("Performance profile with 2 workers is valid");
    Runtime::start(cfg).expect("runtime starts")
}

/// Sends `n` tells from a task on `from` to `addr`, then one ask to make sure all were handled.
fn percore_tells(rt: &Runtime, from: usize, addr: &Addr<Sum>, n: u64) -> Duration {
    let a = addr.clone();
    let h = rt
        .spawn_on(from, move || async move {
            let t0 = Instant::now();
            for i in 0..n {
                a.tell(Msg::Add(i)).await.expect("actor alive");
            }
            a.ask(Msg::Get, T).await.expect("answer");
            t0.elapsed()
        })
        .expect("spawn");
    rt.block_on(h).expect("bench task")
}

fn percore_asks(rt: &Runtime, from: usize, addr: &Addr<Sum>, n: u64) -> Duration {
    let a = addr.clone();
    let h = rt
        .spawn_on(from, move || async move {
            let t0 = Instant::now();
            for _ in 0..n {
                a.ask(Msg::Get, T).await.expect("answer");
            }
            t0.elapsed()
        })
        .expect("spawn");
    rt.block_on(h).expect("bench task")
}

enum TMsg {
    Add(u64),
    Get(tokio::sync::oneshot::Sender<u64>),
}

/// The tokio-mpsc actor: a task owning its state, looping on a bounded receiver.
fn tokio_actor(rt: &tokio::runtime::Runtime) -> tokio::sync::mpsc::Sender<TMsg> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TMsg>(CAP);
    rt.spawn(async move {
        let mut sum = 0u64;
        while let Some(m) = rx.recv().await {
            match m {
                TMsg::Add(n) => sum += n,
                TMsg::Get(r) => {
                    let _ = r.send(sum);
                }
            }
        }
    });
    tx
}

fn tokio_tells(
    rt: &tokio::runtime::Runtime,
    tx: &tokio::sync::mpsc::Sender<TMsg>,
    n: u64,
) -> Duration {
    let tx = tx.clone();
    rt.block_on(async move {
        rt_spawned(async move {
            let t0 = Instant::now();
            for i in 0..n {
                tx.send(TMsg::Add(i)).await.expect("actor alive");
            }
            let (rtx, rrx) = tokio::sync::oneshot::channel();
            tx.send(TMsg::Get(rtx)).await.expect("actor alive");
            rrx.await.expect("answer");
            t0.elapsed()
        })
        .await
    })
}

fn tokio_asks(
    rt: &tokio::runtime::Runtime,
    tx: &tokio::sync::mpsc::Sender<TMsg>,
    n: u64,
) -> Duration {
    let tx = tx.clone();
    rt.block_on(async move {
        rt_spawned(async move {
            let t0 = Instant::now();
            for _ in 0..n {
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                tx.send(TMsg::Get(rtx)).await.expect("actor alive");
                rrx.await.expect("answer");
            }
            t0.elapsed()
        })
        .await
    })
}

/// Runs the sender as a spawned task (on a worker thread), as an actor would.
async fn rt_spawned<F: std::future::Future<Output = Duration> + Send + 'static>(f: F) -> Duration {
    tokio::spawn(f).await.expect("bench task")
}

fn bench(c: &mut Criterion) {
    let rt = percore_rt();
    let actor = rt.spawn_actor_on(1, || Sum(0)).expect("spawn");
    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tx = tokio_actor(&trt);

    let mut g = c.benchmark_group("tell");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("percore_cross_core", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| percore_tells(&rt, 0, &actor, BATCH))
                .sum()
        })
    });
    g.bench_function("percore_same_core", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| percore_tells(&rt, 1, &actor, BATCH))
                .sum()
        })
    });
    g.bench_function("tokio_mpsc_actor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| tokio_tells(&trt, &tx, BATCH)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("ask_round_trip");
    const ASKS: u64 = 2_000;
    g.throughput(Throughput::Elements(ASKS));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    g.bench_function("percore_cross_core", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| percore_asks(&rt, 0, &actor, ASKS)).sum())
    });
    g.bench_function("percore_same_core", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| percore_asks(&rt, 1, &actor, ASKS)).sum())
    });
    g.bench_function("tokio_mpsc_actor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| tokio_asks(&trt, &tx, ASKS)).sum())
    });
    g.finish();
    drop(rt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
