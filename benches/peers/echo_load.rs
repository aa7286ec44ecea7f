//! Load driver for benches/echo.sh: `--conns N` connections spread over `--threads T`
//! threads, each connection with one `--size B`-byte message in flight (write, wait for the
//! echo, repeat) for `--secs S` seconds. Prints messages/s and latency percentiles.
#[path = "../../examples/common/args.rs"]
mod args;
mod load_report;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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
    let threads: usize = arg("--threads", "2").parse()?;
    let size: usize = arg("--size", "64").parse()?;
    let secs: f64 = arg("--secs", "10").parse()?;
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addr.clone();
            let mine = conns / threads + usize::from(t < conns % threads);
            std::thread::spawn(move || -> std::io::Result<Vec<u32>> {
                let mut socks: Vec<TcpStream> = (0..mine)
                    .map(|_| {
                        let s = TcpStream::connect(&addr)?;
                        s.set_nodelay(true)?;
                        Ok(s)
                    })
                    .collect::<std::io::Result<_>>()?;
                let msg = vec![0x5a_u8; size];
                let mut buf = vec![0u8; size];
                let mut lat_us = Vec::with_capacity(1 << 20);
                while Instant::now() < end {
                    let t0 = Instant::now();
                    for s in socks.iter_mut() {
                        s.write_all(&msg)?;
                    }
                    for s in socks.iter_mut() {
                        s.read_exact(&mut buf)?;
                    }
                    let us = t0.elapsed().as_micros() as u32;
                    lat_us.extend(std::iter::repeat_n(us, socks.len()));
                }
                Ok(lat_us)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "load thread panicked")??);
    }
    load_report::print(all, secs, &format!("{conns} conns, {size} B"));
    Ok(())
}
