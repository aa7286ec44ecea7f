//! Quickstart: sharded counters. One counter shard per app worker; each key is owned by exactly
//! one shard (hash partitioning), so no locks are needed anywhere.
//!
//! Run: `cargo run --release --example quickstart`

#[path = "common/args.rs"]
mod args;

use std::time::{Duration, Instant};

use percore::runtime::partition::HashPartitioner;
use percore::runtime::{Actor, Context, Reply, Runtime, current_worker};

/// One shard: owns the counters of the keys that hash to it.
struct Counters {
    shard: usize,
    counts: std::collections::HashMap<String, u64>,
}

enum Msg {
    Incr(String),
    Get(String, Reply<(usize, u64)>),
}

impl Actor for Counters {
    type Msg = Msg;
    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        match msg {
            Msg::Incr(k) => *self.counts.entry(k).or_default() += 1,
            Msg::Get(k, r) => {
                let _ = r.send((self.shard, self.counts.get(&k).copied().unwrap_or(0)));
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::auto()?;
    println!(
        "runtime: profile {:?}, {} app workers",
        rt.config().profile,
        rt.workers()
    );
    let counters = rt.spawn_sharded::<Counters, str, _, _>(
        |shard| Counters {
            shard,
            counts: Default::default(),
        },
        HashPartitioner,
    )?;

    let words = [
        "apple", "banana", "cherry", "durian", "elder", "fig", "grape",
    ];
    const N: usize = 700_000;
    let t0 = Instant::now();
    // Producers on every worker: each sends to whichever shard owns the key; messages to a shard
    // on the producer's own core never cross a ring.
    let mut producers = Vec::new();
    for w in 0..rt.workers() {
        let c = counters.clone();
        let per = N / rt.workers();
        producers.push(rt.spawn_on(w, move || async move {
            for i in 0..per {
                let k = words[i % words.len()];
                c.tell(k, Msg::Incr(k.to_string()))
                    .await
                    .expect("counter shard alive");
            }
            // Always on a worker here: the task was spawned on worker `w`.
            current_worker().unwrap_or(w)
        })?);
    }
    rt.block_on(async {
        for p in producers {
            let w = p.await.expect("producer finished");
            println!("producer on worker {w} done");
        }
        // Per-sender order is guaranteed, not cross-sender: wait until every increment landed.
        let mut total = 0;
        while total < N / rt.workers() * rt.workers() {
            total = 0;
            for k in words {
                let (_, n) = counters
                    .ask(k, |r| Msg::Get(k.to_string(), r), Duration::from_secs(5))
                    .await?;
                total += n as usize;
            }
        }
        for k in words {
            let (shard, n) = counters
                .ask(k, |r| Msg::Get(k.to_string(), r), Duration::from_secs(5))
                .await?;
            println!("{k:>7}: {n:>6} (owned by shard {shard})");
        }
        println!(
            "{total} increments in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        Ok::<_, percore::runtime::AskError>(())
    })?;
    let report = rt.shutdown();
    println!("shutdown clean: {} in {:?}", report.clean, report.elapsed);
    Ok(())
}
