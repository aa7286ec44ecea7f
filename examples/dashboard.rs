//! The admin server next to a running workload: `/metrics` (Prometheus), `/health`, `/ready`
//! and the live `/dashboard` page, while sharded supervised actors handle a stream of jobs and
//! one job in 20,000 is poison (each crash is restarted and shows on the page).
//!
//! ```text
//! cargo run --release --example dashboard -- --addr 127.0.0.1:9100
//! # open http://127.0.0.1:9100/dashboard ; curl http://127.0.0.1:9100/metrics
//! ```
//! Prometheus can scrape `/metrics`; `examples/grafana-dashboard.json` is a Grafana dashboard
//! for those series. Stops cleanly on SIGINT or SIGTERM.
#[path = "common/args.rs"]
mod args;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use percore::runtime::partition::HashPartitioner;
use percore::runtime::signal::TerminationSignals;
use percore::runtime::supervision::{Backoff, ChildSpec, SupervisorSpec};
use percore::runtime::{Actor, Context, Runtime, ShardedAddr, sleep};
use percore::transport::admin::AdminExt;

/// Hashes its jobs; job ids ending in 19999 (mod 20000) are poison.
struct Hasher {
    acc: u64,
}

impl Actor for Hasher {
    type Msg = u64;
    async fn handle(&mut self, job: u64, _ctx: &mut Context<Self>) {
        assert!(job % 20_000 != 19_999, "poison job {job}");
        let mut x = job ^ self.acc;
        for _ in 0..50 {
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        }
        self.acc = x;
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(&["--addr"], &[], "[--addr HOST:PORT]");
    let addr: std::net::SocketAddr = args.get_or("--addr", "127.0.0.1:9100".parse()?);
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let sup = rt.handle().supervisor(
        SupervisorSpec::one_for_one("hashers")
            .intensity(100, Duration::from_secs(1))
            .backoff(Backoff::none()),
    );
    let hashers: ShardedAddr<Hasher, u64> = sup.spawn_sharded(
        ChildSpec::permanent().name("hasher"),
        |_| Hasher { acc: 0 },
        HashPartitioner,
    )?;
    let jobs = rt
        .handle()
        .metrics_registry()
        .counter("dashboard_jobs_sent_total", "Jobs the feeders sent.")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut feeders = Vec::new();
    for w in 0..rt.workers() {
        let (hashers, jobs, stop) = (hashers.clone(), jobs.clone(), stop.clone());
        feeders.push(rt.spawn_on(w, move || async move {
            let mut i = w as u64;
            while !stop.load(Ordering::Relaxed) {
                if hashers.tell(&i, i).await.is_err() {
                    break;
                }
                jobs.inc();
                i += 7;
                if i % 1024 < 7 {
                    // Leave the cores some idle time, so the page shows a changing load.
                    sleep(Duration::from_millis(2)).await;
                }
            }
        })?);
    }
    let admin = rt.serve_admin(addr)?;
    admin.add_dashboard_section("feeders", {
        let jobs = jobs.clone();
        move || serde_json::json!({ "jobs_sent": jobs.get() })
    });
    println!("listening on {}", admin.local_addr());
    println!("dashboard: http://{}/dashboard", admin.local_addr());
    let sig = signals.wait();
    println!("{sig}: stopping after {} jobs", jobs.get());
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for f in feeders {
            let _ = f.await;
        }
    });
    admin.stop();
    println!("stopped (clean: {})", rt.shutdown().clean);
    Ok(())
}
