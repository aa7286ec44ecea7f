//! TLS with rustls over real loopback TCP on both backends: handshake and echo with ALPN,
//! client-certificate verification, a bad handshake failing only its own stream, and
//! `openssl s_client` as a real foreign client.

mod common;
use common::{modes, runtime};

use std::io::Write;
use std::time::{Duration, Instant};

use percore::runtime::config::IoBackend;
use percore::runtime::spawn_local;
use percore::transport::tcp::{TcpListener, TcpStream};
use percore::transport::tls::{TlsError, TlsStream, client_config, server_config};

use common::self_signed;

#[test]
fn handshake_alpn_echo_and_client_auth() {
    for (b, co) in [(IoBackend::Uring, false), (IoBackend::Mio, true)] {
        if !common::usable(b) {
            continue;
        }
        let rt = runtime(b, co);
        let h = rt.handle();
        let (scert, skey) = self_signed("localhost");
        let (ccert, ckey) = self_signed("client");
        let scfg = server_config(
            scert.as_bytes(),
            skey.as_bytes(),
            &[b"echo/1"],
            Some(ccert.as_bytes()),
        )
        .unwrap();
        let ccfg = client_config(
            scert.as_bytes(),
            &[b"echo/1"],
            Some((ccert.as_bytes(), ckey.as_bytes())),
        )
        .unwrap();
        let anon = client_config(scert.as_bytes(), &[b"echo/1"], None).unwrap();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let (alpn, echoed, anon_failed) = rt.block_on(async move {
            let server = spawn_local(async move {
                let mut outcomes = Vec::new();
                for _ in 0..2 {
                    let tcp = listener.accept().await.unwrap();
                    match TlsStream::accept(tcp, scfg.clone()).await {
                        Ok(mut s) => {
                            assert!(s.peer_certificates().is_some_and(|c| !c.is_empty()));
                            let mut buf = vec![0u8; 100_000];
                            let mut got = Vec::new();
                            while got.len() < 100_000 {
                                let n = s.read(&mut buf).await.unwrap();
                                assert!(n > 0);
                                got.extend_from_slice(&buf[..n]);
                            }
                            s.write_all(&got).await.unwrap();
                            s.shutdown().await.unwrap();
                            outcomes.push(true);
                        }
                        Err(_) => outcomes.push(false),
                    }
                }
                outcomes
            });
            // With a client certificate: works.
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut c = TlsStream::connect(tcp, ccfg, "localhost").await.unwrap();
            let alpn = c.alpn_protocol().map(|p| p.to_vec());
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
            c.write_all(&data).await.unwrap();
            let mut back = Vec::new();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = c.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            // Without one: the server refuses (the handshake fails on one side or both).
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let anon_failed = match TlsStream::connect(tcp, anon, "localhost").await {
                Err(_) => true,
                Ok(mut s) => {
                    let mut b = [0u8; 1];
                    s.write_all(b"x").await.is_err() || !matches!(s.read(&mut b).await, Ok(1))
                }
            };
            let outcomes = server.await.unwrap();
            assert_eq!(outcomes, vec![true, false]);
            (alpn, back == data, anon_failed)
        });
        assert_eq!(alpn.as_deref(), Some(&b"echo/1"[..]));
        assert!(echoed, "{b:?}");
        assert!(anon_failed);
        rt.shutdown();
    }
}

#[test]
fn garbage_handshake_fails_only_that_stream_and_bad_pem_is_a_typed_error() {
    assert!(matches!(
        server_config(b"not pem", b"nope", &[], None),
        Err(TlsError::Pem { .. })
    ));
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let (cert, key) = self_signed("localhost");
        let scfg = server_config(cert.as_bytes(), key.as_bytes(), &[], None).unwrap();
        let ccfg = client_config(cert.as_bytes(), &[], None).unwrap();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n this is not TLS")
            .unwrap();
        let ok = rt.block_on(async move {
            let server = spawn_local(async move {
                let bad = TlsStream::accept(listener.accept().await.unwrap(), scfg.clone()).await;
                assert!(bad.is_err());
                let mut good = TlsStream::accept(listener.accept().await.unwrap(), scfg)
                    .await
                    .unwrap();
                good.write_all(b"fine").await.unwrap();
                good.shutdown().await.unwrap();
            });
            // Wait until the bad one has been refused, then connect properly.
            percore::runtime::sleep(Duration::from_millis(100)).await;
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut c = TlsStream::connect(tcp, ccfg, "localhost").await.unwrap();
            let mut buf = [0u8; 4];
            let n = c.read(&mut buf).await.unwrap();
            server.await.unwrap();
            &buf[..n] == b"fine"
        });
        assert!(ok, "{b:?}/{co}");
        rt.shutdown();
    }
}

/// A key that does not belong to the certificate: rustls checks the pair when the config is
/// built, so it is a typed `Config` error up front, not a handshake failure later.
#[test]
fn mismatched_key_and_certificate_is_a_typed_error() {
    let (cert, _) = self_signed("localhost");
    let (_, other_key) = self_signed("localhost");
    match server_config(cert.as_bytes(), other_key.as_bytes(), &[], None) {
        Err(TlsError::Config(e)) => {
            let msg = TlsError::Config(e).to_string();
            assert!(msg.contains("TLS configuration rejected"), "{msg}");
        }
        Err(e) => panic!("expected TlsError::Config, got {e}"),
        Ok(_) => panic!("a mismatched key and certificate was accepted"),
    }
}

fn have(tool: &str, arg: &str) -> bool {
    let ok = std::process::Command::new(tool).arg(arg).output().is_ok();
    if !ok {
        eprintln!("{tool} not installed: skipping (CI installs it)");
    }
    ok
}

/// A server handshake that stalls (half a ClientHello, then silence) fails with the typed
/// timeout within the limit, while another client completes its handshake meanwhile.
#[test]
fn stalled_handshake_times_out_while_others_complete() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let (cert, key) = self_signed("localhost");
        let scfg = server_config(cert.as_bytes(), key.as_bytes(), &[], None).unwrap();
        let ccfg = client_config(cert.as_bytes(), &[], None).unwrap();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        // A TLS record header announcing a 512-byte ClientHello, and only 4 bytes of it.
        let mut staller = std::net::TcpStream::connect(addr).unwrap();
        staller
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
            .unwrap();
        let limit = Duration::from_millis(800);
        let outcome = rt.block_on(async move {
            let t0 = Instant::now();
            let stalled_tcp = listener.accept().await.unwrap();
            let cfg = scfg.clone();
            let stalled = spawn_local(async move {
                let r = TlsStream::accept_with_timeout(stalled_tcp, cfg, limit).await;
                (r.err(), t0.elapsed())
            });
            let good = spawn_local(async move {
                let mut s =
                    TlsStream::accept_with_timeout(listener.accept().await.unwrap(), scfg, limit)
                        .await
                        .unwrap();
                s.write_all(b"done").await.unwrap();
                s.shutdown().await.unwrap();
                t0.elapsed()
            });
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut c = TlsStream::connect(tcp, ccfg, "localhost").await.unwrap();
            let mut buf = [0u8; 4];
            c.read_exact_for_test(&mut buf).await;
            // Bounded: without a handshake timeout the stalled accept would never end.
            let stalled = percore::runtime::timeout(Duration::from_secs(5), stalled)
                .await
                .expect("the stalled handshake ended")
                .unwrap();
            (stalled, good.await.unwrap(), buf)
        });
        let ((err, stalled_at), good_at, buf) = outcome;
        assert_eq!(&buf, b"done", "{b:?}/{co}");
        let err = err.expect("the stalled handshake failed");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::TimedOut,
            "{b:?}/{co}: {err}"
        );
        assert!(
            matches!(
                err.get_ref().and_then(|e| e.downcast_ref::<TlsError>()),
                Some(TlsError::HandshakeTimeout { limit: l }) if *l == limit
            ),
            "{b:?}/{co}: {err:?}"
        );
        assert!(
            stalled_at >= limit && stalled_at < limit + Duration::from_millis(700),
            "{b:?}/{co}: failed after {stalled_at:?}, limit {limit:?}"
        );
        assert!(
            good_at < limit,
            "{b:?}/{co}: the good handshake waited ({good_at:?})"
        );
        // The staller's connection was closed by the server.
        staller
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut tmp = [0u8; 64];
        use std::io::Read;
        let r = loop {
            match staller.read(&mut tmp) {
                Ok(n) if n > 0 => continue,
                r => break r,
            }
        };
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{b:?}/{co}: {r:?}"
        );
        rt.shutdown();
    }
}

trait ReadExact {
    async fn read_exact_for_test(&mut self, buf: &mut [u8]);
}
impl ReadExact for TlsStream {
    async fn read_exact_for_test(&mut self, buf: &mut [u8]) {
        let mut off = 0;
        while off < buf.len() {
            let n = self.read(&mut buf[off..]).await.unwrap();
            assert!(n > 0, "EOF after {off} bytes");
            off += n;
        }
    }
}

/// Runs `openssl s_client` against `addr` with `extra` arguments, sends `input`, and returns
/// (stdout, stderr).
fn s_client(addr: std::net::SocketAddr, extra: &[&str], input: &[u8]) -> (String, String) {
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-quiet",
        ])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The server side of one TLS echo of a line: the handshake's outcome, ALPN and whether the
/// client presented a certificate.
async fn echo_one_line(
    listener: &TcpListener,
    cfg: std::sync::Arc<rustls::ServerConfig>,
) -> std::io::Result<(Option<Vec<u8>>, bool)> {
    let mut s = TlsStream::accept(listener.accept().await?, cfg).await?;
    let alpn = s.alpn_protocol().map(|p| p.to_vec());
    let has_cert = s.peer_certificates().is_some_and(|c| !c.is_empty());
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a line",
            ));
        }
        line.extend_from_slice(&buf[..n]);
    }
    s.write_all(&line).await?;
    s.shutdown().await?;
    Ok((alpn, has_cert))
}

#[test]
fn openssl_s_client_talks_to_a_tls_echo() {
    if !have("openssl", "version") {
        return;
    }
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let (cert, key) = self_signed("localhost");
        let scfg =
            server_config(cert.as_bytes(), key.as_bytes(), &[b"echo/1", b"h2"], None).unwrap();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let server = rt
            .spawn_on(0, move || async move {
                let plain = echo_one_line(&listener, scfg.clone()).await;
                let alpn = echo_one_line(&listener, scfg).await;
                (plain, alpn)
            })
            .unwrap();
        let (out, err) = s_client(addr, &[], b"hello over tls\n");
        assert_eq!(out, "hello over tls\n", "{b:?}/{co}: {err}");
        // ALPN: the client offers two protocols; the server picks by its own preference.
        let (out, err) = s_client(addr, &["-alpn", "h2,echo/1"], b"alpn\n");
        assert_eq!(out, "alpn\n", "{b:?}/{co}: {err}");
        let (plain, alpn) = rt.block_on(server).unwrap();
        assert_eq!(plain.unwrap().0, None, "{b:?}/{co}: no ALPN offered");
        assert_eq!(
            alpn.unwrap().0.as_deref(),
            Some(&b"echo/1"[..]),
            "{b:?}/{co}: server-side ALPN"
        );
        rt.shutdown();
    }
}

/// A server that requires client certificates, against `openssl s_client`: with `-cert/-key`
/// signed by the configured CA the handshake completes and the server sees the certificate;
/// without one the server's handshake fails and nothing is echoed.
#[test]
fn openssl_s_client_with_and_without_a_client_certificate() {
    if !have("openssl", "version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ccert, ckey) = self_signed("client");
    let (cert_path, key_path) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert_path, &ccert).unwrap();
    std::fs::write(&key_path, &ckey).unwrap();
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let (scert, skey) = self_signed("localhost");
        let scfg = server_config(
            scert.as_bytes(),
            skey.as_bytes(),
            &[],
            Some(ccert.as_bytes()),
        )
        .unwrap();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let server = rt
            .spawn_on(0, move || async move {
                let with = echo_one_line(&listener, scfg.clone()).await;
                let without = echo_one_line(&listener, scfg).await;
                (with, without)
            })
            .unwrap();
        let (out, err) = s_client(
            addr,
            &[
                "-cert",
                cert_path.to_str().unwrap(),
                "-key",
                key_path.to_str().unwrap(),
            ],
            b"with cert\n",
        );
        assert_eq!(out, "with cert\n", "{b:?}/{co}: {err}");
        let (out, _) = s_client(addr, &[], b"without cert\n");
        assert_eq!(out, "", "{b:?}/{co}: echoed without a client certificate");
        let (with, without) = rt.block_on(server).unwrap();
        assert!(
            with.unwrap().1,
            "{b:?}/{co}: the server saw no client certificate"
        );
        let e = without.expect_err("the handshake without a client certificate succeeded");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{b:?}/{co}: {e}");
        rt.shutdown();
    }
}

struct Hello;
impl percore::runtime::Actor for Hello {
    type Msg = percore::transport::http::HttpCall;
    async fn handle(&mut self, call: Self::Msg, _ctx: &mut percore::runtime::Context<Self>) {
        let p = call.req.path().to_string();
        call.respond(percore::transport::http::Response::text(
            200,
            format!("secure {p}"),
        ));
    }
}

#[test]
fn https_server_on_the_event_loops_serves_curl_and_drops_bad_handshakes() {
    use percore::transport::http::{HttpOptions, HttpServer, Router};
    for (b, co) in [
        (IoBackend::Uring, true),
        (IoBackend::Mio, false),
        (IoBackend::Uring, false),
    ] {
        if !common::usable(b) {
            continue;
        }
        let rt = runtime(b, co);
        let (cert, key) = self_signed("localhost");
        let mut opts = HttpOptions::default();
        opts.server.tls =
            Some(server_config(cert.as_bytes(), key.as_bytes(), &[b"http/1.1"], None).unwrap());
        let hello = rt.spawn_actor_on(0, || Hello).unwrap();
        let srv = HttpServer::bind_with(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/*p", hello),
            opts,
        )
        .unwrap();
        let addr = srv.local_addr();
        // A client that is not speaking TLS: only its connection is dropped.
        let mut raw = std::net::TcpStream::connect(addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut tmp = [0u8; 256];
        use std::io::Read;
        let mut closed = false;
        for _ in 0..10 {
            match raw.read(&mut tmp) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => continue, // the TLS alert
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        assert!(
            closed,
            "{b:?}/{co}: the plaintext client was not disconnected"
        );
        // Our own TLS client speaking HTTP/1.1 over TlsStream.
        let ccfg = client_config(cert.as_bytes(), &[b"http/1.1"], None).unwrap();
        let h = rt.handle();
        let text = rt.block_on(async move {
            let tcp = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut c = TlsStream::connect(tcp, ccfg, "localhost").await.unwrap();
            assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
            c.write_all(b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = c.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&out).to_string()
        });
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with("secure /a"),
            "{text}"
        );
        // curl, keep-alive over TLS.
        if common::client_available("curl", "--version") {
            let base = format!("https://{addr}");
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "-k",
                    "-v",
                    &format!("{base}/x"),
                    &format!("{base}/y"),
                ])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "secure /xsecure /y",
                "{b:?}/{co}"
            );
        }
        rt.shutdown();
    }
}

/// Upper-cases each length-prefixed frame.
struct Upper;
impl percore::runtime::Actor for Upper {
    type Msg = percore::transport::FrameCall<percore::transport::LengthPrefixed>;
    async fn handle(&mut self, call: Self::Msg, _ctx: &mut percore::runtime::Context<Self>) {
        let up = call.frame.to_ascii_uppercase();
        call.reply(&up).unwrap();
    }
}

/// The client side over TLS: the HTTP client speaks `https://` (keep-alive: one TLS session for
/// several requests, a POST body, a missing-TLS-config error), and a `FramedClient` speaks a
/// length-prefixed protocol to a TLS server on the event loops, plaintext next to it.
#[test]
fn https_client_and_framed_client_over_tls() {
    use percore::transport::http::{Client, ClientError, HttpOptions, HttpServer, Router};
    use percore::transport::{
        CodecProtocol, FramedClient, LengthPrefixed, Server, ServerOptions, Stream,
    };
    for (b, co) in [(IoBackend::Uring, true), (IoBackend::Mio, false)] {
        if !common::usable(b) {
            continue;
        }
        let rt = runtime(b, co);
        let (cert, key) = self_signed("localhost");
        let scfg = server_config(cert.as_bytes(), key.as_bytes(), &[], None).unwrap();
        let ccfg = client_config(cert.as_bytes(), &[], None).unwrap();
        let mut opts = HttpOptions::default();
        opts.server.tls = Some(scfg.clone());
        let hello = rt.spawn_actor_on(0, || Hello).unwrap();
        let https = HttpServer::bind_with(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/*p", hello.clone()).post("/*p", hello),
            opts,
        )
        .unwrap();
        let upper = rt.spawn_actor_on(1, || Upper).unwrap();
        let codec = LengthPrefixed::new(1 << 16);
        let tls_opts = ServerOptions {
            tls: Some(scfg),
            ..ServerOptions::default()
        };
        let framed = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            CodecProtocol::new(codec, upper.clone()),
            tls_opts,
        )
        .unwrap();
        let plain = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            CodecProtocol::new(codec, upper),
            ServerOptions::default(),
        )
        .unwrap();
        let (ha, fa, pa) = (https.local_addr(), framed.local_addr(), plain.local_addr());
        let h = rt.handle();
        let https_stats = https.stats();
        rt.block_on(async move {
            let c = Client::with_tls(&h, ccfg.clone(), "localhost");
            for i in 0..3 {
                let r = c.get(&format!("https://{ha}/x{i}")).await.unwrap();
                assert_eq!(
                    (r.status, &r.body[..]),
                    (200, format!("secure /x{i}").as_bytes())
                );
            }
            let r = c
                .post(&format!("https://{ha}/up"), "text/plain", b"body".to_vec())
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            // The three HTTPS GETs and the POST shared one connection.
            assert_eq!(
                https_stats
                    .accepted
                    .load(std::sync::atomic::Ordering::Relaxed),
                1,
                "{b:?}/{co}: keep-alive over TLS"
            );
            // The certificate is checked against the URL's host when the URL names one, and
            // against the configured name for an IP literal: with a configured name the
            // certificate lacks, "localhost" works and 127.0.0.1 fails the handshake.
            let mut other = Client::with_tls(&h, ccfg.clone(), "not-in-the-cert.example");
            other.timeout = Duration::from_secs(5);
            let r = other
                .get(&format!("https://localhost:{}/named", ha.port()))
                .await
                .unwrap();
            assert_eq!(&r.body[..], b"secure /named");
            let e = other.get(&format!("https://{ha}/")).await.unwrap_err();
            assert!(matches!(e, ClientError::Io(_)), "{e}");
            // A plaintext-only client refuses https:// with a typed error.
            let plain_client = Client::new(&h);
            let e = plain_client
                .get(&format!("https://{ha}/"))
                .await
                .unwrap_err();
            assert!(matches!(e, ClientError::NoTls(_)), "{e}");

            let t = Duration::from_secs(5);
            let s = Stream::connect_tls(&h, fa, ccfg, "localhost", t)
                .await
                .unwrap();
            assert!(s.is_tls());
            let mut fc = FramedClient::over(s, codec, t);
            assert_eq!(fc.call(&b"hello"[..]).await.unwrap(), b"HELLO");
            // Pipelined: two requests out, two answers back in order.
            fc.send(&b"a"[..]).await.unwrap();
            fc.send(&b"bc"[..]).await.unwrap();
            assert_eq!(fc.recv().await.unwrap().unwrap(), b"A");
            assert_eq!(fc.recv().await.unwrap().unwrap(), b"BC");
            let mut pc = FramedClient::connect(&h, pa, codec, t).await.unwrap();
            assert_eq!(pc.call(&b"plain"[..]).await.unwrap(), b"PLAIN");
        });
        rt.shutdown();
    }
}
