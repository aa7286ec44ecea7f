//! Every profile on this machine: its resolved values, then a runtime started with it doing a
//! short cross-core ask loop, so the differences show in numbers.
//!
//! Run: `cargo run --release --example profiles`

#[path = "common/args.rs"]
mod args;

use std::time::{Duration, Instant};

use percore::runtime::config::{Config, Profile};
use percore::runtime::detect::Hardware;
use percore::runtime::{Actor, Context, Reply, Runtime};

struct Echo;
impl Actor for Echo {
    type Msg = Reply<()>;
    async fn handle(&mut self, r: Reply<()>, _ctx: &mut Context<Self>) {
        let _ = r.send(());
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let hw = Hardware::detect();
    println!(
        "{} logical CPUs, {} physical cores, {} NUMA node(s)\n",
        hw.logical_cpus,
        hw.physical_cores,
        hw.numa_nodes.len()
    );
    println!(
        "{:<15} {:>4} {:>3} {:>5} {:>4} {:>6} {:>7} {:>8} {:>5}  {:>14}",
        "profile", "app", "io", "accel", "pin", "ring", "mailbox", "spin", "tick", "ask round trip"
    );
    for p in Profile::ALL {
        let cfg = Config::for_profile(p, &hw);
        let rt = Runtime::start(cfg.clone())?;
        let target = rt.workers() - 1;
        let echo = rt.spawn_actor_on(target, || Echo)?;
        const N: u32 = 2000;
        let h = rt.spawn_on(0, move || async move {
            let t0 = Instant::now();
            for _ in 0..N {
                echo.ask(|r| r, Duration::from_secs(5))
                    .await
                    .expect("echo answers");
            }
            t0.elapsed()
        })?;
        let rtt = rt.block_on(h)? / N;
        rt.shutdown();
        println!(
            "{:<15} {:>4} {:>3} {:>5} {:>4} {:>6} {:>7} {:>8} {:>5}  {:>11.2?} {}",
            p.to_string(),
            cfg.app_workers,
            cfg.io_workers,
            cfg.accel_workers,
            cfg.pin_workers,
            cfg.ring_capacity,
            cfg.mailbox_capacity,
            format!("{:?}", cfg.spin_before_park),
            cfg.tasks_per_tick,
            rtt,
            if target == 0 {
                "(same core)"
            } else {
                "(cross core)"
            }
        );
    }
    println!("\nRules for each value: `cargo doc --open` → percore::runtime::config::Config.");
    Ok(())
}
