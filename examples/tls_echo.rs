//! A TLS echo server and client in one process: a self-signed certificate is generated with
//! rcgen (or loaded with `--cert FILE --key FILE`), the server echoes every line, and the client
//! checks ALPN and the echo. `--addr HOST:PORT --serve` keeps serving until SIGINT/SIGTERM
//! (try `openssl s_client -connect HOST:PORT -quiet`).
#[path = "common/args.rs"]
mod args;

use std::time::Duration;

use percore::runtime::signal::TerminationSignals;
use percore::runtime::{Runtime, spawn_local};
use percore::transport::tcp::{TcpListener, TcpStream};
use percore::transport::tls::{TlsStream, client_config, server_config};

async fn echo(mut s: TlsStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = s.shutdown().await;
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = args::Args::parse(
        &["--cert", "--key", "--addr"],
        &["--serve"],
        "[--cert PEM --key PEM] [--addr HOST:PORT] [--serve]",
    );
    let arg = |n: &str| args.get::<String>(n);
    let (cert, key) = match (arg("--cert"), arg("--key")) {
        (Some(c), Some(k)) => (std::fs::read_to_string(c)?, std::fs::read_to_string(k)?),
        _ => {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
            (ck.cert.pem(), ck.signing_key.serialize_pem())
        }
    };
    let serve = args.has("--serve");
    let signals = TerminationSignals::block()?;
    let rt = Runtime::auto()?;
    let h = rt.handle();
    let scfg = server_config(cert.as_bytes(), key.as_bytes(), &[b"echo"], None)?;
    let listener = TcpListener::bind(
        &h,
        arg("--addr")
            .unwrap_or_else(|| "127.0.0.1:0".into())
            .parse()?,
    )?;
    let addr = listener.local_addr();
    println!("listening on {addr}");
    rt.spawn_on(0, move || async move {
        while let Ok(tcp) = listener.accept().await {
            let cfg = scfg.clone();
            spawn_local(async move {
                // A client that stalls mid-handshake is dropped after 10 s
                // (`tls::HANDSHAKE_TIMEOUT`); `accept_with_timeout` takes another limit.
                match TlsStream::accept_with_timeout(tcp, cfg, Duration::from_secs(10)).await {
                    Ok(s) => echo(s).await,
                    Err(e) => eprintln!("handshake failed: {e}"),
                }
            })
            .detach();
        }
    })?
    .detach();
    if serve {
        println!("{}: stopping", signals.wait());
    } else {
        let ccfg = client_config(cert.as_bytes(), &[b"echo"], None)?;
        let got = rt.block_on(async move {
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5)).await?;
            let mut c = TlsStream::connect(tcp, ccfg, "localhost").await?;
            let alpn = c
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).to_string());
            c.write_all(b"hello over TLS\n").await?;
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).await?;
            c.shutdown().await?;
            Ok::<_, std::io::Error>((alpn, String::from_utf8_lossy(&buf[..n]).to_string()))
        })?;
        println!("ALPN {:?}, echoed {:?}", got.0, got.1);
    }
    rt.shutdown();
    Ok(())
}
