//! HTTP client from a task: `--url http://HOST[:PORT]/path` fetches that URL (HOST a name or
//! an IP address). Without it the example starts its own server on an ephemeral port, fetches
//! two routes over one kept-alive connection and posts a body, printing each response.
#[path = "common/args.rs"]
mod args;

use percore::runtime::{Actor, Context, Runtime};
use percore::transport::http::{Client, HttpCall, HttpServer, Response, Router};

struct Api;
impl Actor for Api {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let body = format!(
            "{} {} ({} body bytes)",
            call.req.method,
            call.req.path(),
            call.req.body.len()
        );
        call.respond(Response::text(200, body));
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(&["--url"], &[], "[--url URL]");
    let url: Option<String> = args.get("--url");
    let rt = Runtime::auto()?;
    let h = rt.handle();
    let (urls, _server) = match url {
        Some(u) => (vec![u], None),
        None => {
            let api = rt.spawn_actor_on(0, || Api)?;
            let srv = HttpServer::bind(
                &h,
                "127.0.0.1:0".parse()?,
                Router::new().get("/*p", api.clone()).post("/*p", api),
            )?;
            let base = format!("http://{}", srv.local_addr());
            println!("listening on {}", srv.local_addr());
            (
                vec![format!("{base}/hello"), format!("{base}/world")],
                Some(srv),
            )
        }
    };
    let out = rt.block_on(async move {
        let client = Client::new(&h);
        let mut lines = Vec::new();
        for u in &urls {
            let r = client.get(u).await?;
            lines.push(format!(
                "GET {u} -> {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        if let Some(u) = urls.first() {
            let r = client.post(u, "text/plain", b"some data".to_vec()).await?;
            lines.push(format!(
                "POST {u} -> {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        Ok::<_, percore::transport::http::ClientError>(lines)
    })?;
    for l in out {
        println!("{l}");
    }
    rt.shutdown();
    Ok(())
}
