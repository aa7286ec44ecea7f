//! Ping-pong between an asking task and an actor pinned on different cores: measures the
//! cross-core `ask` round trip through the SPSC rings, then the same with both on one core.
//!
//! Run: `cargo run --release --example ping_pong [-- --rounds N]`
#[path = "common/args.rs"]
mod args;

use std::time::{Duration, Instant};

use percore::runtime::{Actor, Addr, Context, Reply, Runtime};

struct Ponger;
impl Actor for Ponger {
    type Msg = (u64, Reply<u64>);
    async fn handle(&mut self, (n, reply): (u64, Reply<u64>), _ctx: &mut Context<Self>) {
        let _ = reply.send(n + 1);
    }
}

async fn play(pong: Addr<Ponger>, rounds: u64) -> Duration {
    let t0 = Instant::now();
    let mut n = 0;
    for _ in 0..rounds {
        n = pong
            .ask(|r| (n, r), Duration::from_secs(5))
            .await
            .expect("pong answers");
    }
    assert_eq!(n, rounds);
    t0.elapsed()
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(&["--rounds"], &[], "[--rounds N]");
    let rounds: u64 = args.get_or("--rounds", 100_000);
    let rt = Runtime::auto()?;
    let last = rt.workers() - 1;
    let pong = rt.spawn_actor_on(last, || Ponger)?;
    for (label, from) in [("cross-core", 0), ("same-core", last)] {
        if label == "cross-core" && rt.workers() < 2 {
            println!("cross-core: skipped (1 app worker)");
            continue;
        }
        let p = pong.clone();
        let elapsed = rt.block_on(rt.spawn_on(from, move || play(p, rounds))?)?;
        println!(
            "{label:>10}: {rounds} round trips (worker {from} -> worker {last}) in {:.1} ms: {:.2} us each",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / rounds as f64
        );
    }
    rt.shutdown();
    Ok(())
}
