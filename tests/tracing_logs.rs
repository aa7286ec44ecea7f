//! The logs a user relies on: a handler panic is logged with the actor's name and the panic
//! message, and actor/worker spans wrap what actors log.

mod common;

use common::logbuf::Buf;
use std::time::Duration;

use percore::runtime::{Actor, Context, Runtime};

struct Grumpy;
impl Actor for Grumpy {
    type Msg = &'static str;
    async fn handle(&mut self, m: &'static str, _ctx: &mut Context<Self>) {
        if m == "boom" {
            panic!("grumpy says no");
        }
        tracing::info!(msg = m, "handled");
    }
    fn name(&self) -> std::borrow::Cow<'static, str> {
        "grumpy-actor".into()
    }
}

#[test]
fn panics_are_logged_with_actor_name_and_message_inside_spans() {
    let buf = Buf::default();
    let b2 = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || b2.clone())
        .init();
    let rt = Runtime::testing(2).unwrap();
    let a = rt.spawn_actor_on(1, || Grumpy).unwrap();
    rt.block_on(async {
        a.tell("hello").await.unwrap();
        a.tell("boom").await.unwrap();
        a.stopped().await;
    });
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown();
    let text = buf.text();
    let panic_line = text
        .lines()
        .find(|l| l.contains("actor failed"))
        .unwrap_or_else(|| panic!("no panic log in:\n{text}"));
    assert!(panic_line.contains("grumpy-actor"), "{panic_line}");
    assert!(panic_line.contains("grumpy says no"), "{panic_line}");
    let handled = text
        .lines()
        .find(|l| l.contains("handled"))
        .expect("handler log line");
    assert!(
        handled.contains("worker{id=1}"),
        "worker span missing: {handled}"
    );
    assert!(
        handled.contains("actor{name=grumpy-actor"),
        "actor span missing: {handled}"
    );
}
