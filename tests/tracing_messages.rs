//! Message log lines: at `trace` level (target `percore::actor`) the messages whose handling
//! is timed (at most one in 64 per actor type and worker, the first of a batch) are logged
//! with the actor, its id, the worker, a message id, the handling latency and the outcome as
//! structured fields, inside the actor's span.

mod common;

use common::logbuf::Buf;
use std::time::Duration;

use percore::runtime::{Actor, Context, Runtime};

struct Sleepy;
impl Actor for Sleepy {
    type Msg = u64;
    async fn handle(&mut self, ms: u64, _ctx: &mut Context<Self>) {
        percore::runtime::sleep(Duration::from_millis(ms)).await;
    }
}

#[test]
fn timed_messages_are_logged_with_actor_worker_id_and_latency() {
    let buf = Buf::default();
    let b2 = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("percore::actor=trace,percore=debug")
        .with_ansi(false)
        .with_writer(move || b2.clone())
        .init();
    let rt = Runtime::testing(2).unwrap();
    let a = rt.spawn_actor_on(1, || Sleepy).unwrap();
    rt.block_on(async {
        for _ in 0..130 {
            a.tell(1).await.unwrap();
        }
        a.stop();
        a.stopped().await;
    });
    rt.shutdown();
    let text = buf.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("message handled"))
        .collect();
    // Timed: the first message, and the first of each batch once 64 more were handled.
    assert!(lines.len() >= 2 && lines.len() <= 3, "{text}");
    let field = |l: &str, k: &str| -> String {
        let fields = l.split_once("message handled").map_or("", |(_, f)| f);
        fields
            .split(&format!(" {k}="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {k} in {l}"))
            .to_string()
    };
    let mut ids = Vec::new();
    for l in &lines {
        assert!(field(l, "actor").ends_with("Sleepy"), "{l}");
        assert_eq!(field(l, "worker"), "1", "{l}");
        assert!(
            l.contains("actor{name=tracing_messages::Sleepy"),
            "inside the actor span: {l}"
        );
        ids.push(field(l, "message_id").parse::<u64>().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for l in &lines {
        let latency: f64 = field(l, "latency_us").parse().unwrap();
        assert!(latency >= 1_000.0, "each handler sleeps 1 ms: {latency} us");
        assert_eq!(field(l, "outcome"), "ok");
    }
}
