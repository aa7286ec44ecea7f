//! An HTTP/1.1 server: `GET /` answers plain text, `GET /json` JSON, `GET /users/:id` echoes the
//! path parameter, `POST /echo` returns the body. Handlers are sharded actors, one per app
//! worker; parsing and socket I/O run on the I/O workers.
//!
//! ```text
//! cargo run --release --example http_server -- --addr 127.0.0.1:8080
//! curl http://127.0.0.1:8080/json
//! ```
//! `--accept distribute` hands connections to the loops round robin, `--accept reuseport`
//! uses one `SO_REUSEPORT` listener per loop, instead of the default (each connection on the
//! loop of the CPU its packets arrive on); benches/http.sh compares them.
//! Stops cleanly on SIGINT or SIGTERM.
#[path = "common/args.rs"]
mod args;

use percore::runtime::partition::RoundRobin;
use percore::runtime::signal::TerminationSignals;
use percore::runtime::{Actor, Context, Runtime, ShardedAddr};
use percore::transport::http::{HttpCall, HttpServer, Response, Router};

struct Api {
    served: u64,
}

impl Actor for Api {
    type Msg = HttpCall;

    async fn handle(&mut self, call: HttpCall, ctx: &mut Context<Self>) {
        self.served += 1;
        let resp = match call.req.path() {
            "/" => Response::text(200, "Hello, World!"),
            "/json" => Response::json(
                200,
                &serde_json::json!({ "message": "Hello, World!", "worker": ctx.worker(), "served": self.served }),
            ),
            "/echo" => Response::new(200).body(call.req.body.clone()),
            _ => Response::json(200, &serde_json::json!({ "user": call.req.param("id") })),
        };
        call.respond(resp);
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--accept"],
        &[],
        "[--addr HOST:PORT] [--accept incoming-cpu|distribute|reuseport]",
    );
    let addr: std::net::SocketAddr = args.get_or("--addr", "127.0.0.1:8080".parse()?);
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let api: ShardedAddr<Api, ()> =
        rt.spawn_sharded(|_| Api { served: 0 }, RoundRobin::default())?;
    let router = Router::new()
        .get("/", api.clone())
        .get("/json", api.clone())
        .get("/users/:id", api.clone())
        .post("/echo", api);
    let mut opts = percore::transport::http::HttpOptions::default();
    if let Some(mode) = args.get::<String>("--accept") {
        opts.server.accept = match mode.as_str() {
            "reuseport" => percore::transport::AcceptMode::ReusePort,
            "distribute" => percore::transport::AcceptMode::Distribute,
            "incoming-cpu" => percore::transport::AcceptMode::IncomingCpu,
            other => args.fail(format_args!(
                "--accept {other:?}: use incoming-cpu (the default), distribute or reuseport"
            )),
        };
    }
    let server = HttpServer::bind_with(&rt.handle(), addr, router, opts)?;
    println!("listening on {}", server.local_addr());
    let sig = signals.wait();
    println!(
        "{sig}: stopping after {} requests",
        server
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    server.stop();
    let report = rt.shutdown();
    println!("stopped (clean: {})", report.clean);
    Ok(())
}
