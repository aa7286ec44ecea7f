//! Peer for benches/http.sh: the hyper 1.x + tokio equivalent of examples/http_server's `/`
//! route (plain text "Hello, World!", HTTP/1.1 keep-alive). `--addr HOST:PORT`,
//! `--threads N` (tokio worker threads, default: available cores).
#[path = "../../examples/common/args.rs"]
mod args;

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Server", "hyper")
        .body(Full::new(Bytes::from_static(b"Hello, World!")))
        .expect("static response is valid"))
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--threads"],
        &[],
        "[--addr HOST:PORT] [--threads N]",
    );
    let addr: String = args.get_or("--addr", "127.0.0.1:8081".to_string());
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.get::<usize>("--threads") {
        b.worker_threads(t);
    }
    b.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}
