//! HTTP/1.1 server over real loopback sockets, on every I/O configuration: io_uring and mio,
//! dedicated I/O threads and event loops co-located on the app workers. Clients: std TCP
//! streams for byte-exact and malformed input, and `curl` where it is installed.

mod common;
use common::{modes, runtime};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use percore::runtime::config::IoBackend;
use percore::runtime::{Actor, Context, Runtime};
use percore::transport::ServerOptions;
use percore::transport::http::{HttpCall, HttpOptions, HttpServer, Response, Router};

struct Api;

impl Actor for Api {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let r = match call.req.path() {
            "/" => Response::text(200, "Hello, World!"),
            "/json" => Response::json(200, &serde_json::json!({"ok": true})),
            "/echo" => Response::new(200).body(call.req.body.clone()),
            "/drop" => return drop(call),
            "/slow" => {
                percore::runtime::sleep(Duration::from_millis(60)).await;
                Response::text(200, "slow")
            }
            p => Response::text(
                200,
                format!("user {} at {p}", call.req.param("id").unwrap_or("-")),
            ),
        };
        call.respond(r);
    }
}

struct Fast;
impl Actor for Fast {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        call.respond(Response::text(200, "fast"));
    }
}

fn serve(rt: &Runtime, opts: HttpOptions) -> HttpServer {
    let api = rt.spawn_actor_on(0, || Api).unwrap();
    let fast = rt.spawn_actor_on(1, || Fast).unwrap();
    let router = Router::new()
        .get("/", api.clone())
        .get("/json", api.clone())
        .get("/drop", api.clone())
        .get("/slow", api.clone())
        .get("/fast", fast)
        .get("/users/:id", api.clone())
        .post("/echo", api);
    HttpServer::bind_with(&rt.handle(), "127.0.0.1:0".parse().unwrap(), router, opts).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response (headers + Content-Length body). None on EOF before any byte.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head[9..12].parse().unwrap();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + cl {
                let mut tmp = [0u8; 4096];
                let n = match s.read(&mut tmp) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => r.unwrap(),
                };
                assert!(n > 0, "EOF inside a body");
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = buf[end + 4..end + 4 + cl].to_vec();
            buf.drain(..end + 4 + cl);
            return Some((status, head, body));
        }
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            // A thread that used io_uring (the probe) may see EINTR on a socket with a timeout.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn get(addr: SocketAddr, req: &str) -> (u16, String, Vec<u8>) {
    let mut s = connect(addr);
    s.write_all(req.as_bytes()).unwrap();
    read_response(&mut s, &mut Vec::new()).expect("a response")
}

fn assert_closed(s: &mut TcpStream) {
    let mut tmp = [0u8; 64];
    let mut r = s.read(&mut tmp);
    while matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
        r = s.read(&mut tmp);
    }
    match r {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close, got {other:?}"),
    }
}

#[test]
fn serves_routes_keep_alive_and_errors_on_every_backend() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let addr = srv.local_addr();
        let mut s = connect(addr);
        let mut buf = Vec::new();
        // Keep-alive: several requests on one connection, in order.
        for (req, status, body) in [
            (
                "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                200,
                &b"Hello, World!"[..],
            ),
            (
                "GET /users/42 HTTP/1.1\r\nHost: x\r\n\r\n",
                200,
                b"user 42 at /users/42",
            ),
            (
                "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                200,
                b"hello",
            ),
            (
                "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                200,
                b"abcde",
            ),
            (
                "GET /nope HTTP/1.1\r\n\r\n",
                404,
                b"no route for this path\n",
            ),
            (
                "DELETE /json HTTP/1.1\r\n\r\n",
                405,
                b"method not allowed for this path\n",
            ),
        ] {
            s.write_all(req.as_bytes()).unwrap();
            let (st, head, got) = read_response(&mut s, &mut buf).expect("a response");
            assert_eq!(st, status, "{b:?}/{co}: {req:?} -> {head}");
            assert_eq!(got, body, "{b:?}/{co}: {req:?}");
            assert!(head.contains("\r\nDate: "), "{head}");
        }
        // A dropped request gets 500 and the connection closes.
        s.write_all(b"GET /drop HTTP/1.1\r\n\r\n").unwrap();
        let (st, _, got) = read_response(&mut s, &mut buf).expect("a 500");
        assert_eq!(st, 500);
        assert_eq!(got, b"the handler dropped the request without answering\n");
        assert_closed(&mut s);
        // HEAD gets headers only.
        let mut s = connect(addr);
        s.write_all(b"HEAD / HTTP/1.1\r\n\r\n").unwrap();
        let mut tmp = vec![0u8; 512];
        std::thread::sleep(Duration::from_millis(50));
        let mut n = 0;
        while n == 0 {
            match s.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => n = r.unwrap(),
            }
            assert!(n > 0, "EOF instead of a HEAD response");
        }
        let text = String::from_utf8_lossy(&tmp[..n]);
        assert!(
            text.starts_with("HTTP/1.1 200 OK") && text.ends_with("\r\n\r\n"),
            "{text}"
        );
        // HTTP/1.0 without keep-alive: answered, then closed.
        let mut s10 = connect(addr);
        s10.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let (st, head, _) = read_response(&mut s10, &mut Vec::new()).unwrap();
        assert_eq!(st, 200);
        assert!(head.contains("Connection: close"), "{head}");
        assert_closed(&mut s10);
        assert!(rt.shutdown().clean);
    }
}

#[test]
fn pipelined_replies_keep_request_order() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let mut s = connect(srv.local_addr());
        // /slow is answered 60 ms later than /fast, by another actor on another core.
        s.write_all(
            b"GET /slow HTTP/1.1\r\n\r\nGET /fast HTTP/1.1\r\n\r\nGET /users/7 HTTP/1.1\r\n\r\nGET /fast HTTP/1.1\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|_| read_response(&mut s, &mut buf).unwrap().2)
            .collect();
        assert_eq!(
            bodies,
            vec![
                b"slow".to_vec(),
                b"fast".to_vec(),
                b"user 7 at /users/7".to_vec(),
                b"fast".to_vec()
            ],
            "{b:?}/{co}"
        );
        rt.shutdown();
    }
}

#[test]
fn malformed_and_oversized_input_closes_only_that_connection() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let mut opts = HttpOptions::default();
        opts.limits.max_body = 1024;
        opts.limits.max_header_bytes = 2048;
        opts.limits.max_headers = 16;
        let srv = serve(&rt, opts);
        let addr = srv.local_addr();
        let mut healthy = connect(addr);
        let mut hb = Vec::new();

        let cases: Vec<(Vec<u8>, u16)> = vec![
            (b"\x00\x01\x02garbage\r\n\r\n".to_vec(), 400),
            (
                b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_vec(),
                400,
            ),
            (
                format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(4096)).into_bytes(),
                431,
            ),
            (
                format!("GET / HTTP/1.1\r\n{}\r\n", "H: v\r\n".repeat(20)).into_bytes(),
                431,
            ),
            (
                b"POST /echo HTTP/1.1\r\nContent-Length: 999999\r\n\r\n".to_vec(),
                413,
            ),
        ];
        for (input, status) in cases {
            let mut s = connect(addr);
            s.write_all(&input).unwrap();
            let (st, _, _) = read_response(&mut s, &mut Vec::new()).expect("an error response");
            assert_eq!(
                st,
                status,
                "{b:?}/{co}: {:?}",
                String::from_utf8_lossy(&input[..20.min(input.len())])
            );
            assert_closed(&mut s);
            // Everyone else is still served.
            healthy.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut healthy, &mut hb).unwrap().0, 200);
        }
        // A truncated request followed by EOF: closed without a response, nothing else hurt.
        let mut s = connect(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_closed(&mut s);
        assert!(
            srv.stats()
                .rejected
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 5
        );
        rt.shutdown();
    }
}

#[test]
fn slow_clients_get_408_and_idle_connections_are_closed() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let mut opts = HttpOptions::default();
        opts.server.request_timeout = Duration::from_millis(300);
        opts.server.idle_timeout = Duration::from_millis(600);
        let srv = serve(&rt, opts);
        let addr = srv.local_addr();
        // Slowloris: a header line now and then, never finishing.
        let mut slow = connect(addr);
        slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let t0 = Instant::now();
        let (st, _, _) = read_response(&mut slow, &mut Vec::new()).expect("a 408");
        assert_eq!(st, 408, "{b:?}/{co}");
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        assert_closed(&mut slow);
        // An idle keep-alive connection is closed after idle_timeout.
        let mut idle = connect(addr);
        idle.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut idle, &mut Vec::new()).unwrap().0, 200);
        let t0 = Instant::now();
        assert_closed(&mut idle);
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
        rt.shutdown();
    }
}

#[test]
fn connection_limit_refuses_extra_connections() {
    let rt = runtime(IoBackend::Mio, false);
    let opts = HttpOptions {
        server: ServerOptions {
            max_connections: Some(2),
            ..ServerOptions::default()
        },
        ..HttpOptions::default()
    };
    let srv = serve(&rt, opts);
    let addr = srv.local_addr();
    let mut a = connect(addr);
    let mut b = connect(addr);
    for s in [&mut a, &mut b] {
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_response(s, &mut Vec::new()).unwrap().0, 200);
    }
    let mut c = connect(addr);
    let _ = c.write_all(b"GET / HTTP/1.1\r\n\r\n");
    assert_closed(&mut c);
    assert_eq!(
        srv.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    drop(a);
    // Once a slot frees up, new connections are served again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = connect(addr);
        let _ = d.write_all(b"GET / HTTP/1.1\r\n\r\n");
        if let Some((200, _, _)) = read_response(&mut d, &mut Vec::new()) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown();
}

/// A handler with a one-slot mailbox that takes 2 ms per request: the I/O side must hold
/// requests back (not drop them) until there is room.
struct Slow;
impl Actor for Slow {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        percore::runtime::sleep(Duration::from_millis(2)).await;
        let body = call.req.path().to_string();
        call.respond(Response::text(200, body));
    }
}

#[test]
fn full_mailbox_backpressure_loses_nothing() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let slow = rt
            .handle()
            .spawn_actor_on_with_capacity(0, 1, || Slow)
            .unwrap();
        let srv = HttpServer::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/n/:i", slow),
        )
        .unwrap();
        let addr = srv.local_addr();
        let clients: Vec<_> = (0..4)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    let mut req = Vec::new();
                    for i in 0..20 {
                        req.extend_from_slice(
                            format!("GET /n/{c}-{i} HTTP/1.1\r\n\r\n").as_bytes(),
                        );
                    }
                    s.write_all(&req).unwrap();
                    let mut buf = Vec::new();
                    for i in 0..20 {
                        let (st, _, body) =
                            read_response(&mut s, &mut buf).expect("every request answered");
                        assert_eq!(st, 200);
                        assert_eq!(body, format!("/n/{c}-{i}").into_bytes());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        assert_eq!(
            srv.stats()
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
            80
        );
        rt.shutdown();
    }
}

#[test]
fn stopped_handler_gets_503() {
    let rt = runtime(IoBackend::Uring, true);
    let api = rt.spawn_actor_on(0, || Api).unwrap();
    let srv = HttpServer::bind(
        &rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        Router::new().get("/", api.clone()),
    )
    .unwrap();
    api.stop();
    rt.block_on(api.stopped());
    let (st, _, _) = get(srv.local_addr(), "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(st, 503);
    rt.shutdown();
}

fn curl_available() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn curl_talks_to_the_server() {
    if !curl_available() {
        eprintln!("curl is not installed: skipping (CI installs it)");
        return;
    }
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let base = format!("http://{}", srv.local_addr());
        let out = std::process::Command::new("curl")
            .args(["-sS", "-v", &format!("{base}/"), &format!("{base}/json")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, "Hello, World!{\"ok\":true}", "{b:?}/{co}");
        assert!(
            stderr.contains("Re-using existing connection")
                || stderr.contains("Reusing existing connection"),
            "keep-alive: {stderr}"
        );
        // A chunked upload.
        let body = "x".repeat(10_000);
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &body,
                &format!("{base}/echo"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), body, "{b:?}/{co}");
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("{base}/missing"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
        rt.shutdown();
    }
}

#[test]
fn many_concurrent_connections() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let addr = srv.local_addr();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut conns: Vec<TcpStream> = (0..25).map(|_| connect(addr)).collect();
                    for round in 0..4 {
                        for s in conns.iter_mut() {
                            s.write_all(format!("GET /users/{round} HTTP/1.1\r\n\r\n").as_bytes())
                                .unwrap();
                        }
                        for s in conns.iter_mut() {
                            let (st, _, body) = read_response(s, &mut Vec::new()).unwrap();
                            assert_eq!(st, 200);
                            assert_eq!(
                                body,
                                format!("user {round} at /users/{round}").into_bytes()
                            );
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            srv.stats()
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed),
            200,
            "{b:?}/{co}"
        );
        rt.shutdown();
    }
}

/// `Expect: 100-continue`: the server answers `100 Continue` as soon as the head is in (the
/// client holds its body back until then), then the final response; over TLS-less TCP on every
/// backend, and a second request on the same connection gets its own `100`.
#[test]
fn expect_100_continue_is_answered() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let mut s = connect(srv.local_addr());
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for round in 0..2 {
            let body = format!("payload {round}");
            s.write_all(
                format!(
                    "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
            // The interim response arrives before any body byte was sent.
            let mut buf = Vec::new();
            let (status, _, _) = read_response(&mut s, &mut buf)
                .unwrap_or_else(|| panic!("{b:?}/{co}: closed before 100 Continue"));
            assert_eq!(status, 100, "{b:?}/{co} round {round}");
            s.write_all(body.as_bytes()).unwrap();
            let (status, _, got) = read_response(&mut s, &mut buf).expect("final response");
            assert_eq!((status, got), (200, body.into_bytes()), "{b:?}/{co}");
        }
        rt.shutdown();
    }
}

/// Both accept modes serve every connection. `AcceptMode::Distribute` (one listener handing
/// connections to the event loops in turn) puts exactly half of them on each of two loops.
#[test]
fn accept_modes_serve_everyone_and_distribute_spreads_evenly() {
    use percore::transport::AcceptMode;
    use std::sync::atomic::Ordering;
    let cases = modes()
        .into_iter()
        .flat_map(|m| [(m, AcceptMode::Distribute), (m, AcceptMode::ReusePort)]);
    for ((b, co), mode) in cases {
        let rt = runtime(b, co);
        let mut opts = HttpOptions::default();
        opts.server.accept = mode;
        let srv = serve(&rt, opts);
        let loops = rt.handle().io_workers();
        let mut conns: Vec<TcpStream> = (0..8).map(|_| connect(srv.local_addr())).collect();
        for s in conns.iter_mut() {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let (status, _, body) = read_response(s, &mut Vec::new()).expect("a response");
            assert_eq!(
                (status, &body[..]),
                (200, &b"Hello, World!"[..]),
                "{b:?}/{co}"
            );
        }
        assert_eq!(srv.stats().accepted.load(Ordering::Relaxed), 8);
        if loops == 2 && mode == AcceptMode::Distribute {
            // Loop 0 holds the listener and 4 connections, loop 1 the other 4.
            let h = rt.handle();
            let handlers = |i: usize| h.io_stats(i).unwrap().handlers.load(Ordering::Relaxed);
            let t0 = Instant::now();
            while (handlers(0), handlers(1)) != (5, 4) {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "{b:?}/{co}: handlers per loop {:?}",
                    (handlers(0), handlers(1))
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        drop(conns);
        rt.shutdown();
    }
}
