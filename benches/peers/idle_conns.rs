//! Idle keep-alive connections for benches/idle_conns.sh: opens `--conns N` connections to
//! `--addr`, sends one HTTP request on each and reads its response (so the server has set
//! each one up completely), prints `holding N`, then keeps them open for `--hold S` seconds.
#[path = "../../examples/common/args.rs"]
mod args;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--addr", "--conns", "--hold"],
        &[],
        "[--addr V] [--conns V] [--hold V]",
    );
    let arg = |name: &str, d: &str| args.get::<String>(name).unwrap_or_else(|| d.to_string());
    let addr = arg("--addr", "127.0.0.1:8080");
    let conns: usize = arg("--conns", "10000").parse()?;
    let hold: f64 = arg("--hold", "3").parse()?;
    let mut socks = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut s = TcpStream::connect(&addr)
            .map_err(|e| format!("connection {i}: {e} (raise `ulimit -n`?)"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        read_response(&mut s)?;
        socks.push(s);
    }
    println!("holding {}", socks.len());
    std::thread::sleep(Duration::from_secs_f64(hold));
    Ok(())
}

/// Reads one response with a Content-Length body.
fn read_response(s: &mut TcpStream) -> Result<(), Box<dyn std::error::Error>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    loop {
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Err("closed before a response".into());
        }
        buf.extend_from_slice(&tmp[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Ok(());
        }
    }
}
