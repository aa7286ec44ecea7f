//! Peer for benches/echo.sh: a tokio TCP echo server (one task per connection, 4 KiB reads).
//! `--addr HOST:PORT`, `--threads N` (tokio worker threads, default: available cores).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:9091".into());
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = arg("--threads") {
        b.worker_threads(t.parse()?);
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
