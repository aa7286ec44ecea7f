//! Trace context across workers (feature `trace-context`): a span entered in one actor on
//! worker 0 is the parent of the span of the handler that serves its `tell` and its `ask` on
//! worker 1.
#![cfg(feature = "trace-context")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use percore::runtime::{Actor, Addr, Context, Reply, Runtime};
use tracing::Instrument;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context as LayerCtx, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as created: name, id, parent id, thread name.
type Created = (String, u64, Option<u64>, String);

/// Every span created.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Created>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerCtx<'_, S>) {
        let parent = attrs.parent().cloned().or_else(|| {
            attrs
                .is_contextual()
                .then(|| ctx.current_span().id().cloned())
                .flatten()
        });
        self.0.lock().unwrap().push((
            attrs.metadata().name().to_string(),
            id.into_u64(),
            parent.map(|p| p.into_u64()),
            std::thread::current().name().unwrap_or("?").to_string(),
        ));
    }
}

struct Server;
enum SMsg {
    Tell,
    Ask(Reply<()>),
}
impl Actor for Server {
    type Msg = SMsg;
    async fn handle(&mut self, msg: SMsg, _ctx: &mut Context<Self>) {
        if let SMsg::Ask(r) = msg {
            let _ = r.send(());
        }
    }
}

struct Client {
    server: Addr<Server>,
}
impl Actor for Client {
    type Msg = Reply<()>;
    async fn handle(&mut self, done: Reply<()>, _ctx: &mut Context<Self>) {
        let server = self.server.clone();
        async move {
            server.tell(SMsg::Tell).await.unwrap();
            server
                .ask(SMsg::Ask, Duration::from_secs(10))
                .await
                .unwrap();
        }
        .instrument(tracing::info_span!("client_request"))
        .await;
        let _ = done.send(());
    }
}

#[test]
fn a_span_in_one_actor_parents_the_handler_span_on_another_worker() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(spans.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = Runtime::testing(2).unwrap();
    let server = rt.spawn_actor_on(1, || Server).unwrap();
    let client = rt.spawn_actor_on(0, move || Client { server }).unwrap();
    rt.block_on(client.ask(|r| r, Duration::from_secs(10)))
        .unwrap();
    rt.shutdown();
    let all = spans.0.lock().unwrap().clone();
    let request = all
        .iter()
        .find(|s| s.0 == "client_request")
        .unwrap_or_else(|| panic!("no client span: {all:?}"));
    assert_eq!(request.3, "percore-worker-0", "{all:?}");
    let children: Vec<_> = all
        .iter()
        .filter(|s| s.0 == "handle" && s.2 == Some(request.1))
        .collect();
    assert_eq!(
        children.len(),
        2,
        "the tell's and the ask's handler spans: {all:?}"
    );
    assert!(
        children.iter().all(|c| c.3 == "percore-worker-1"),
        "created on the server's worker: {all:?}"
    );
}
