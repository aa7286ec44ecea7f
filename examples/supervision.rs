//! A supervision tree: a `pipeline` supervisor (rest-for-one) over a parser and a `workers`
//! supervisor (one-for-one) with one worker per app worker. One worker crashes on a poison
//! message and is restarted with a fresh state at the same address; the other workers and the
//! parser are unaffected. The restart shows in the log (a `tracing` error with the actor, the
//! panic message and the restart count) and in the Prometheus metrics printed at the end.
//!
//! ```text
//! cargo run --release --example supervision
//! ```

use std::time::Duration;

use percore::runtime::supervision::{ChildSpec, SupervisorSpec};
use percore::runtime::{Actor, ActorError, Addr, Context, Reply, Runtime};

/// Sums the jobs it is given; a job of 0 is poison.
struct Worker {
    sum: u64,
}

enum Job {
    Work(u64),
    Total(Reply<(u64, usize)>),
}

impl Actor for Worker {
    type Msg = Job;
    async fn handle(&mut self, job: Job, ctx: &mut Context<Self>) {
        match job {
            Job::Work(0) => panic!("poison job"),
            Job::Work(n) => self.sum += n,
            Job::Total(r) => {
                let _ = r.send((self.sum, ctx.worker()));
            }
        }
    }
}

/// Parses lines into jobs and routes them to the workers; a malformed line is an error
/// (returned, not panicked: it counts as a failure all the same).
struct Parser {
    workers: Vec<Addr<Worker>>,
    routed: u64,
}

impl Actor for Parser {
    type Msg = (String, Reply<u64>);
    async fn try_handle(
        &mut self,
        (line, done): Self::Msg,
        _ctx: &mut Context<Self>,
    ) -> Result<(), ActorError> {
        let n: u64 = line.trim().parse()?;
        let w = &self.workers[(n as usize) % self.workers.len()];
        w.tell(Job::Work(n)).await?;
        self.routed += 1;
        let _ = done.send(self.routed);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_target(false)
        .init();
    let rt = Runtime::auto()?;
    let h = rt.handle();
    let pipeline = h.supervisor(SupervisorSpec::rest_for_one("pipeline"));
    let workers_sup = pipeline.supervisor(SupervisorSpec::one_for_one("workers"));
    let workers: Vec<Addr<Worker>> = (0..h.workers())
        .map(|w| {
            workers_sup.spawn_on(
                w,
                ChildSpec::permanent().name(format!("worker-{w}")),
                || Worker { sum: 0 },
            )
        })
        .collect::<Result<_, _>>()?;
    let ws = workers.clone();
    let parser = pipeline.spawn_on(0, ChildSpec::permanent().name("parser"), move || Parser {
        workers: ws.clone(),
        routed: 0,
    })?;
    let t = Duration::from_secs(5);
    rt.block_on(async {
        for line in ["4", "6", "3", "8"] {
            let routed = parser.ask(|r| (line.to_string(), r), t).await?;
            println!("routed {line:>2} (parser has routed {routed})");
        }
        // Poison for worker 0: it panics and is restarted empty; the others keep their sums.
        workers[0].tell(Job::Work(0)).await?;
        for w in &workers {
            let (sum, worker) = w.ask(Job::Total, t).await?;
            println!("worker on core {worker}: sum {sum}");
        }
        // A malformed line: the parser's handler returns an error and it is restarted.
        let bad = parser.ask(|r| ("not a number".to_string(), r), t).await;
        println!("malformed line -> {bad:?}");
        let routed = parser.ask(|r| ("5".to_string(), r), t).await?;
        println!("routed  5 (the restarted parser has routed {routed})");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let report = pipeline.report();
    println!(
        "pipeline: {} restart(s); workers: {} restart(s)",
        report.restarts,
        workers_sup.report().restarts
    );
    println!("metrics:");
    for line in rt.prometheus().lines() {
        if line.starts_with("percore_actor_restarts_total")
            || line.starts_with("percore_supervisor_restarts_total")
            || line.starts_with("percore_dead_letters_total")
        {
            println!("  {line}");
        }
    }
    println!("shutdown clean: {}", rt.shutdown().clean);
    Ok(())
}
