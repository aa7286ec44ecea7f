//! A counter actor whose state survives `kill -9`: every increment is written ahead to the
//! actor's journal (fdatasync) before it is acknowledged, and the journal is replayed when the
//! actor starts again. Snapshots every 1,000 events keep the replay short.
//!
//! Run: `cargo run --release --example durable_counter -- --dir /tmp/counter --count 100000`,
//! kill it (`kill -9`) whenever you like, then `... -- --dir /tmp/counter --show`: the value is
//! at least the last `ACKED` line printed.

#[path = "common/args.rs"]
mod args;

use std::path::PathBuf;
use std::time::Duration;

use percore::runtime::{Actor, Context, Reply, Runtime};
use percore::storage::file::FileIo;
use percore::storage::{Durable, Journal, JournalOptions};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Count {
    value: u64,
}

#[derive(Serialize, Deserialize)]
struct Add(u64);

impl Durable for Count {
    type Event = Add;
    fn apply(&mut self, e: &Add) {
        self.value += e.0;
    }
}

struct Counter {
    dir: PathBuf,
    io: FileIo,
    journal: Option<Journal<Count>>,
}

enum Msg {
    Incr(Reply<Result<u64, String>>),
    Get(Reply<Result<u64, String>>),
}

impl Actor for Counter {
    type Msg = Msg;

    async fn started(&mut self, _ctx: &mut Context<Self>) {
        let opts = JournalOptions {
            snapshot_every: Some(1000),
            ..JournalOptions::default()
        };
        match Journal::open(self.io.clone(), &self.dir, opts, Count::default).await {
            Ok(j) => self.journal = Some(j),
            Err(e) => eprintln!("durable_counter: cannot open the journal: {e}"),
        }
    }

    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        let Some(j) = self.journal.as_mut() else {
            let e = Err("the journal did not open".to_string());
            match msg {
                Msg::Incr(r) | Msg::Get(r) => drop(r.send(e)),
            }
            return;
        };
        match msg {
            // Persist first, answer after: an acknowledged increment is on disk.
            Msg::Incr(r) => {
                let res = j.persist(Add(1)).await.map(|()| j.state().value);
                let _ = r.send(res.map_err(|e| e.to_string()));
            }
            Msg::Get(r) => {
                let _ = r.send(Ok(j.state().value));
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::Args::parse(
        &["--dir", "--count"],
        &["--show"],
        "durable_counter --dir DIR [--count N | --show]",
    );
    let Some(dir) = a.get::<String>("--dir") else {
        a.fail("--dir DIR is required");
    };
    let count: u64 = a.get_or("--count", 1000);
    let rt = Runtime::auto()?;
    let io = FileIo::for_worker(&rt.handle(), 0);
    let d = PathBuf::from(dir);
    let counter = rt.spawn_actor_on(0, move || Counter {
        dir: d,
        io,
        journal: None,
    })?;
    let t = Duration::from_secs(30);
    rt.block_on(async {
        if a.has("--show") {
            let v = counter.ask(Msg::Get, t).await??;
            println!("value {v}");
            return Ok::<_, Box<dyn std::error::Error>>(());
        }
        for _ in 0..count {
            let v = counter.ask(Msg::Incr, t).await??;
            println!("ACKED {v}");
        }
        Ok(())
    })?;
    rt.shutdown();
    Ok(())
}
