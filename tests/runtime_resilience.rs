//! Retry policies around `ask` (a supervised actor that fails its first requests) and a
//! circuit breaker around the real HTTP client (a dead port, then a live server), with the
//! breaker's state in `/metrics`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use percore::runtime::breaker::{BreakerConfig, BreakerError, BreakerState};
use percore::runtime::retry::RetryPolicy;
use percore::runtime::supervision::{Backoff, ChildSpec, SupervisorSpec};
use percore::runtime::{Actor, AskError, Context, Reply};
use percore::transport::http::{Client, HttpCall, HttpServer, Response, Router};

/// Fails (panics) on the first `fail_first` requests it ever sees, across restarts.
struct Flaky {
    seen: Arc<AtomicU32>,
    fail_first: u32,
}
impl Actor for Flaky {
    type Msg = Reply<u32>;
    async fn handle(&mut self, r: Reply<u32>, _ctx: &mut Context<Self>) {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(n > self.fail_first, "failing request {n}");
        let _ = r.send(n);
    }
}

#[test]
fn ask_with_retry_rides_out_restarts_and_gives_up_when_told() {
    let rt = percore::runtime::Runtime::testing(2).unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let sup = rt.handle().supervisor(
        SupervisorSpec::one_for_one("flaky")
            .intensity(10, Duration::from_secs(5))
            .backoff(Backoff::none()),
    );
    let a = sup
        .spawn_on(1, ChildSpec::permanent(), move || Flaky {
            seen: s.clone(),
            fail_first: 2,
        })
        .unwrap();
    let t = Duration::from_secs(5);
    rt.block_on(async {
        let policy =
            RetryPolicy::for_ask(3).backoff(Duration::from_millis(1), Duration::from_millis(5));
        assert_eq!(a.ask_with_retry(|r| r, t, &policy).await, Ok(3));
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        // Two attempts are not enough for a fresh run of two failures.
        seen.store(0, Ordering::SeqCst);
        let two =
            RetryPolicy::for_ask(2).backoff(Duration::from_millis(1), Duration::from_millis(5));
        assert_eq!(
            a.ask_with_retry(|r| r, t, &two).await,
            Err(AskError::NoReply)
        );
        // `Stopped` is not retried.
        a.stop();
        a.stopped().await;
        let attempts = AtomicU32::new(0);
        let r = a
            .ask_with_retry(
                |r| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    r
                },
                t,
                &policy,
            )
            .await;
        assert_eq!(r, Err(AskError::Stopped));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    });
}

struct Hello;
impl Actor for Hello {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        call.respond(Response::text(200, "hi"));
    }
}

#[test]
fn a_breaker_around_the_http_client_opens_on_a_dead_server_and_closes_once_it_is_back() {
    let rt = common::runtime(percore::runtime::config::IoBackend::Mio, false);
    let h = rt.handle();
    // A port with nothing listening (bound then released).
    let dead: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let breaker = h.metrics_registry().circuit_breaker(
        "backend",
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_for(Duration::from_millis(200)),
    );
    let client = Client::new(&h);
    rt.block_on(async {
        for _ in 0..3 {
            let r = breaker.call(client.get(&format!("http://{dead}/"))).await;
            assert!(matches!(r, Err(BreakerError::Inner(_))), "{r:?}");
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let r = breaker.call(client.get(&format!("http://{dead}/"))).await;
        assert!(matches!(r, Err(BreakerError::Open { .. })), "{r:?}");
    });
    let text = h.prometheus();
    assert!(
        text.contains("percore_circuit_breaker_state{breaker=\"backend\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "percore_circuit_breaker_calls_total{breaker=\"backend\",outcome=\"rejected\"} 1"
        ),
        "{text}"
    );
    // The server comes back on a new port; after the cool-down one probe closes the breaker.
    let hello = rt.spawn_actor_on(0, || Hello).unwrap();
    let server = HttpServer::bind(
        &h,
        "127.0.0.1:0".parse().unwrap(),
        Router::new().get("/", hello),
    )
    .unwrap();
    let live = server.local_addr();
    std::thread::sleep(Duration::from_millis(250));
    rt.block_on(async {
        let r = breaker.call(client.get(&format!("http://{live}/"))).await;
        assert_eq!(r.map(|resp| resp.status).ok(), Some(200));
    });
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(
        h.prometheus()
            .contains("percore_circuit_breaker_state{breaker=\"backend\"} 0")
    );
}
