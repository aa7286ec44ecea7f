//! Peer for benches/echo.sh: a tokio TCP echo server (one task per connection, 4 KiB reads).
//! `--addr HOST:PORT`, `--threads N` (tokio worker threads, default: available cores).
#[path = "../../examples/common/args.rs"]
mod args;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--threads"],
        &[],
        "[--addr HOST:PORT] [--threads N]",
    );
    let addr: String = args.get_or("--addr", "127.0.0.1:9091".to_string());
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.get::<usize>("--threads") {
        b.worker_threads(t);
    }
    b.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (mut s, _) = listener.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    })
}
