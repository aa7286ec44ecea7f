//! A supervised actor whose state lives in a storage journal: after a crash its supervisor
//! restarts it, `started` reopens the journal, and the state comes back from the snapshot and
//! the write-ahead log instead of from scratch; a journal that cannot open fails the actor
//! through `Context::fail`, counted as a failure like a panic.

use std::path::PathBuf;
use std::time::Duration;

use percore::runtime::supervision::{Backoff, ChildSpec, SupervisorSpec};
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
    Add(u64, Reply<u64>),
    Crash,
    Get(Reply<u64>),
}

impl Actor for Counter {
    type Msg = Msg;
    async fn started(&mut self, ctx: &mut Context<Self>) {
        let opts = JournalOptions {
            snapshot_every: Some(2),
            ..JournalOptions::default()
        };
        match Journal::open(self.io.clone(), &self.dir, opts, Count::default).await {
            Ok(j) => self.journal = Some(j),
            Err(e) => ctx.fail(format!("cannot open the journal: {e}")),
        }
    }
    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        let j = self.journal.as_mut().expect("opened in started");
        match msg {
            Msg::Add(n, r) => {
                j.persist(Add(n)).await.expect("persisted");
                let _ = r.send(j.state().value);
            }
            Msg::Crash => panic!("crash with state {}", j.state().value),
            Msg::Get(r) => {
                let _ = r.send(j.state().value);
            }
        }
    }
}

#[test]
fn a_restarted_actor_recovers_its_state_from_the_journal() {
    let rt = Runtime::testing(2).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("counter");
    let io = FileIo::for_worker(&rt.handle(), 1);
    let sup = rt.handle().supervisor(
        SupervisorSpec::one_for_one("durable")
            .intensity(5, Duration::from_secs(10))
            .backoff(Backoff::none()),
    );
    let d = dir.clone();
    let c = sup
        .spawn_on(1, ChildSpec::permanent(), move || Counter {
            dir: d.clone(),
            io: io.clone(),
            journal: None,
        })
        .unwrap();
    let t = Duration::from_secs(20);
    rt.block_on(async {
        for (n, want) in [(5, 5), (7, 12), (1, 13)] {
            assert_eq!(c.ask(|r| Msg::Add(n, r), t).await.unwrap(), want);
        }
        c.tell(Msg::Crash).await.unwrap();
        // Restarted: a fresh `Counter` from the factory, its state from the snapshot + log.
        assert_eq!(c.ask(Msg::Get, t).await.unwrap(), 13);
        assert_eq!(c.ask(|r| Msg::Add(2, r), t).await.unwrap(), 15);
    });
    assert_eq!(sup.report().restarts, 1);
    // A journal that cannot open (its directory is a file now) fails each start: the
    // supervisor gives up after its intensity and the actor stops.
    let bad = tmp.path().join("not-a-dir");
    std::fs::write(&bad, b"x").unwrap();
    let io2 = FileIo::for_worker(&rt.handle(), 0);
    let failing = sup
        .spawn_on(0, ChildSpec::transient(), move || Counter {
            dir: bad.clone(),
            io: io2.clone(),
            journal: None,
        })
        .unwrap();
    rt.block_on(failing.stopped());
    let types = rt.handle().actor_types();
    let t = types
        .iter()
        .find(|t| t.actor_type.ends_with("Counter"))
        .unwrap();
    assert!(t.failures >= 5, "{t:?}");
}
