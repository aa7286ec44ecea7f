//! An independent echo load client for benches/echo.sh, written the way an application talks
//! to a server: tokio, one task per connection, each in strict ping-pong (write `--size` bytes,
//! read them back, repeat) with no coordination between connections. `--threads T` runs T
//! current-thread runtimes on T OS threads, the connections dealt out among them (`--threads 1`:
//! one application thread holding every connection). `--conns N`, `--secs S`, `--addr`.
//! Prints messages/s and latency percentiles like `echo_load`.
#[path = "../../examples/common/args.rs"]
mod args;
mod load_report;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--conns", "--threads", "--size", "--secs"],
        &[],
        "[--addr V] [--conns V] [--threads V] [--size V] [--secs V]",
    );
    let arg = |name: &str, d: &str| args.get::<String>(name).unwrap_or_else(|| d.to_string());
    let addr = arg("--addr", "127.0.0.1:9090");
    let conns: usize = arg("--conns", "64").parse()?;
    let threads: usize = arg("--threads", "1").parse::<usize>()?.max(1);
    let size: usize = arg("--size", "64").parse()?;
    let secs: f64 = arg("--secs", "10").parse()?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addr.clone();
            let mine = conns / threads + usize::from(t < conns % threads);
            std::thread::spawn(move || -> std::io::Result<Vec<u32>> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..mine)
                        .map(|_| {
                            let addr = addr.clone();
                            tokio::spawn(async move {
                                let mut s = TcpStream::connect(&addr).await?;
                                s.set_nodelay(true)?;
                                let msg = vec![0x5a_u8; size];
                                let mut buf = vec![0u8; size];
                                let mut lat = Vec::with_capacity(1 << 16);
                                while Instant::now() < end {
                                    let t0 = Instant::now();
                                    s.write_all(&msg).await?;
                                    s.read_exact(&mut buf).await?;
                                    lat.push(t0.elapsed().as_micros() as u32);
                                }
                                Ok::<_, std::io::Error>(lat)
                            })
                        })
                        .collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        all.extend(t.await.map_err(std::io::Error::other)??);
                    }
                    Ok(all)
                })
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "load thread panicked")??);
    }
    load_report::print(
        all,
        secs,
        &format!("{conns} conns, {size} B, {threads} threads"),
    );
    Ok(())
}
