//! HTTP/1.1 server over real loopback sockets, on every I/O configuration: io_uring and mio,
//! dedicated I/O threads and event loops co-located on the app workers. Clients: std TCP
//! streams for byte-exact and malformed input, and `curl` where it is installed.

mod common;
use common::{Backend, modes, runtime, runtime_with};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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
            "/slower" => {
                percore::runtime::sleep(Duration::from_millis(1500)).await;
                Response::text(200, "slower")
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
        .get("/slower", api.clone())
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
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                200,
                b"hello",
            ),
            (
                "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                200,
                b"abcde",
            ),
            (
                "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
                404,
                b"no route for this path\n",
            ),
            (
                "DELETE /json HTTP/1.1\r\nHost: t\r\n\r\n",
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
        s.write_all(b"GET /drop HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let (st, _, got) = read_response(&mut s, &mut buf).expect("a 500");
        assert_eq!(st, 500);
        assert_eq!(got, b"the handler dropped the request without answering\n");
        assert_closed(&mut s);
        // HEAD gets headers only.
        let mut s = connect(addr);
        s.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
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
            b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\nGET /users/7 HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n",
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
                b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n".to_vec(),
                400,
            ),
            (
                format!(
                    "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                    "a".repeat(4096)
                )
                .into_bytes(),
                431,
            ),
            (
                format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "H: v\r\n".repeat(20)).into_bytes(),
                431,
            ),
            (
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n".to_vec(),
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
            healthy
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
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
        assert_eq!(
            srv.stats()
                .truncated
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{b:?}/{co}: the truncated request is counted"
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
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
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
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
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
    for (b, co) in modes() {
        connection_limit_on(b, co);
    }
}

fn connection_limit_on(b: Backend, co: bool) {
    let rt = runtime(b, co);
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
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(s, &mut Vec::new()).unwrap().0, 200);
    }
    let mut c = connect(addr);
    let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
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
        let _ = d.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
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
                            format!("GET /n/{c}-{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
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
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let api = rt.spawn_actor_on(0, || Api).unwrap();
        let srv = HttpServer::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/", api.clone()),
        )
        .unwrap();
        api.stop();
        rt.block_on(api.stopped());
        let (st, _, _) = get(srv.local_addr(), "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(st, 503, "{b:?}/{co}");
        rt.shutdown();
    }
}

fn curl_available() -> bool {
    common::client_available("curl", "--version")
}

#[test]
fn curl_talks_to_the_server() {
    if !curl_available() {
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
        // A method the route does not take: 405 with the methods it does (RFC 9110 15.5.6).
        // `/echo` takes POST; `/json` takes GET, and so HEAD.
        for (path, allow) in [("/echo", "POST"), ("/json", "GET, HEAD")] {
            let out = std::process::Command::new("curl")
                .args(["-sS", "-i", "-X", "DELETE", &format!("{base}{path}")])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.starts_with("HTTP/1.1 405"), "{b:?}/{co}: {text}");
            assert!(
                text.lines()
                    .any(|l| l.trim_end() == format!("Allow: {allow}")),
                "{b:?}/{co}: no `Allow: {allow}` in {text}"
            );
        }
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
                            s.write_all(
                                format!("GET /users/{round} HTTP/1.1\r\nHost: t\r\n\r\n")
                                    .as_bytes(),
                            )
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
    // Every mode with one dedicated I/O thread (or a loop per app worker when co-located),
    // plus two dedicated I/O threads on each backend.
    let cases = modes()
        .into_iter()
        .map(|(b, co)| (b, co, 1))
        .chain(
            [(Backend::Uring, false, 2), (Backend::Mio, false, 2)]
                .into_iter()
                .filter(|(b, _, _)| common::usable(*b)),
        )
        .flat_map(|m| {
            [
                (m, AcceptMode::Distribute),
                (m, AcceptMode::ReusePort),
                (m, AcceptMode::IncomingCpu),
            ]
        });
    for ((b, co, io_workers), mode) in cases {
        let rt = runtime_with(b, co, io_workers);
        let mut opts = HttpOptions::default();
        opts.server.accept = mode;
        let srv = serve(&rt, opts);
        let loops = rt.handle().io_workers();
        if io_workers == 2 {
            assert_eq!(loops, 2, "two dedicated I/O threads are two loops");
        }
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
                    "{b:?}/{co}/{io_workers}: handlers per loop {:?}",
                    (handlers(0), handlers(1))
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        drop(conns);
        rt.shutdown();
    }
}

fn stat(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes `data` from a thread (the server may stop reading part way; the test reads meanwhile).
fn write_in_background(s: &TcpStream, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || w.write_all(&data).unwrap())
}

#[test]
fn replies_held_behind_a_slow_one_stop_the_reading() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let mut s = connect(srv.local_addr());
        // One slow request, then 20,000 fast ones answered at once by another core's actor:
        // their replies must wait behind the slow one, and so must the reading.
        let mut data = b"GET /slower HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
        for _ in 0..20_000 {
            data.extend_from_slice(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        let writer = write_in_background(&s, data);
        std::thread::sleep(Duration::from_millis(500));
        let decoded = stat(&srv.stats().requests);
        let max = HttpOptions::default().server.max_in_flight as u64;
        assert!(
            decoded <= max,
            "{b:?}/{co}: {decoded} requests decoded while the first reply was pending (max_in_flight {max})"
        );
        let mut buf = Vec::new();
        let (st, _, body) = read_response(&mut s, &mut buf).unwrap();
        assert_eq!((st, body.as_slice()), (200, &b"slower"[..]));
        for i in 0..20_000 {
            let (st, _, body) = read_response(&mut s, &mut buf).expect("every request answered");
            assert_eq!(
                (st, body.as_slice()),
                (200, &b"fast"[..]),
                "{b:?}/{co}: reply {i}"
            );
        }
        writer.join().unwrap();
        rt.shutdown();
    }
}

#[test]
fn a_refusal_waits_for_the_replies_owed_before_it() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let addr = srv.local_addr();
        for (bad, status) in [
            (
                &b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n"[..],
                413,
            ),
            (b"\x00\x01 garbage\r\n\r\n", 400),
        ] {
            let mut s = connect(addr);
            let mut req =
                b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n"
                    .to_vec();
            req.extend_from_slice(bad);
            s.write_all(&req).unwrap();
            let mut buf = Vec::new();
            let got: Vec<(u16, Vec<u8>)> = (0..3)
                .map(|_| {
                    let (st, _, body) = read_response(&mut s, &mut buf).expect("three answers");
                    (st, body)
                })
                .collect();
            assert_eq!(got[0], (200, b"slow".to_vec()), "{b:?}/{co}");
            assert_eq!(got[1], (200, b"fast".to_vec()), "{b:?}/{co}");
            assert_eq!(got[2].0, status, "{b:?}/{co}");
            assert_closed(&mut s);
        }
        rt.shutdown();
    }
}

#[test]
fn thousands_of_pipelined_answers_from_the_io_worker_are_all_written() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = serve(&rt, HttpOptions::default());
        let mut s = connect(srv.local_addr());
        // 404s are answered on the I/O worker, inside the decoding loop: 20,000 of them in
        // one buffer must neither recurse (stack) nor be lost.
        let n = 20_000;
        let writer = write_in_background(&s, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".repeat(n));
        let mut buf = Vec::new();
        for i in 0..n {
            let (st, _, _) = read_response(&mut s, &mut buf).expect("every request answered");
            assert_eq!(st, 404, "{b:?}/{co}: answer {i}");
        }
        writer.join().unwrap();
        s.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, &mut buf).unwrap().0, 200);
        rt.shutdown();
    }
}

#[test]
fn input_past_max_input_is_refused() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let mut opts = HttpOptions::default();
        opts.limits.max_body = 4096;
        let srv = serve(&rt, opts);
        let addr = srv.local_addr();
        // A chunk-size line that never ends: the parser can't finish it, so only the
        // connection's input cap (head + 2 x body + 64 KiB here) stops it.
        let mut s = connect(addr);
        let mut req =
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        req.extend_from_slice(&vec![b'a'; 400 << 10]);
        let writer = write_in_background(&s, req);
        let (st, _, _) = read_response(&mut s, &mut Vec::new()).expect("a refusal");
        assert!(matches!(st, 400 | 413), "{b:?}/{co}: {st}");
        assert_closed(&mut s);
        let _ = writer.join(); // the write may fail once the server closes
        assert_eq!(stat(&srv.stats().rejected), 1, "{b:?}/{co}");
        assert_eq!(get(addr, "GET / HTTP/1.1\r\nHost: t\r\n\r\n").0, 200);
        rt.shutdown();
    }
}

/// A handler that holds every request until the gate opens (its mailbox has one slot).
struct Gated(std::sync::Arc<std::sync::atomic::AtomicBool>);
impl Actor for Gated {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        while !self.0.load(std::sync::atomic::Ordering::Acquire) {
            percore::runtime::sleep(Duration::from_millis(5)).await;
        }
        let n = call.req.body.len();
        call.respond(Response::text(200, n.to_string()));
    }
}

#[test]
fn a_full_mailbox_stops_reading_so_the_client_blocks() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let gate = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let g = gate.clone();
        let h = rt
            .handle()
            .spawn_actor_on_with_capacity(0, 1, move || Gated(g))
            .unwrap();
        let srv = HttpServer::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().post("/up", h),
        )
        .unwrap();
        let mut s = connect(srv.local_addr());
        // 64 KiB uploads until the socket stops taking them: the server must stop reading
        // (TCP's window closes) rather than buffer; 64 MiB written means it never did.
        let body = vec![b'x'; 64 << 10];
        let mut req = format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        s.set_nonblocking(true).unwrap();
        let (mut sent_reqs, mut off, mut idle_since) = (0usize, 0usize, None);
        while sent_reqs < 1024 {
            match s.write(&req[off..]) {
                Ok(n) => {
                    idle_since = None;
                    off += n;
                    if off == req.len() {
                        off = 0;
                        sent_reqs += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let t = *idle_since.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(300) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            sent_reqs < 1024,
            "{b:?}/{co}: 64 MiB went in while the handler held its only mailbox slot"
        );
        let decoded = stat(&srv.stats().requests);
        assert!(
            decoded <= 4,
            "{b:?}/{co}: {decoded} requests decoded behind a full mailbox"
        );
        // Open the gate: everything sent is answered, in order.
        gate.store(true, std::sync::atomic::Ordering::Release);
        if off > 0 {
            s.set_nonblocking(false).unwrap();
            if let Err(e) = s.write_all(&req[off..]) {
                let st = srv.stats();
                panic!(
                    "{b:?}/{co}: {e} after {sent_reqs} uploads; rejected {} timed out {} requests {}",
                    stat(&st.rejected),
                    stat(&st.timed_out),
                    stat(&st.requests)
                );
            }
            sent_reqs += 1;
        }
        s.set_nonblocking(false).unwrap();
        let mut buf = Vec::new();
        for i in 0..sent_reqs {
            let (st, _, n) = read_response(&mut s, &mut buf).expect("every upload answered");
            assert_eq!((st, n), (200, b"65536".to_vec()), "{b:?}/{co}: upload {i}");
        }
        rt.shutdown();
    }
}

#[test]
fn tls_clients_that_trickle_ciphertext_meet_the_request_timeout() {
    use percore::transport::tls::{client_config, server_config};
    let (cert, key) = common::self_signed("localhost");
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let mut opts = HttpOptions::default();
        opts.server.request_timeout = Duration::from_millis(300);
        opts.server.tls = Some(server_config(cert.as_bytes(), key.as_bytes(), &[], None).unwrap());
        let srv = serve(&rt, opts);
        let addr = srv.local_addr();

        // A handshake record announced, then one byte every 100 ms: each byte is activity,
        // none completes anything, so only the request timeout can end it.
        let mut slow = connect(addr);
        slow.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let t0 = Instant::now();
        slow.write_all(b"\x16\x03\x01\x02\x00").unwrap();
        let mut closed = false;
        while t0.elapsed() < Duration::from_secs(3) {
            let mut tmp = [0u8; 64];
            match slow.read(&mut tmp) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed = true;
                    break;
                }
                Err(_) => {} // timed out reading: trickle another byte
            }
            if slow.write_all(b"\x01").is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            closed,
            "{b:?}/{co}: a trickling handshake was never timed out"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(stat(&srv.stats().timed_out), 1, "{b:?}/{co}");

        // A client that finishes its handshake and then waits longer than the request
        // timeout is idle, not slow: it is still served.
        let ccfg = client_config(cert.as_bytes(), &[], None).unwrap();
        let conn = rustls::ClientConnection::new(ccfg, "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, connect(addr));
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        std::thread::sleep(Duration::from_millis(600));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut tmp = [0u8; 4096];
        while !got.windows(13).any(|w| w == b"Hello, World!") {
            let n = tls.read(&mut tmp).expect("a response after the pause");
            assert!(
                n > 0,
                "{b:?}/{co}: closed after an idle pause shorter than idle_timeout"
            );
            got.extend_from_slice(&tmp[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"), "{b:?}/{co}");
        rt.shutdown();
    }
}

/// Streams `n` pieces of 16 KiB (piece `i` is all byte `i`), or for `/feed` up to 512 MiB while
/// recording how far it got and whether it saw the client leave.
struct Streamer {
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gone: std::sync::Arc<std::sync::atomic::AtomicBool>,
}
impl Actor for Streamer {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let (req, reply) = call.into_parts();
        let feed = req.path() == "/feed";
        let n: usize = if feed {
            32 * 1024
        } else {
            req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        let mut body = reply.stream(
            Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(b"start;".to_vec()),
        );
        for i in 0..n {
            if body.send(&[i as u8; 16 << 10]).await.is_err() {
                self.gone.store(true, std::sync::atomic::Ordering::Release);
                return;
            }
            if feed {
                self.sent
                    .fetch_add(16 << 10, std::sync::atomic::Ordering::Relaxed);
            }
        }
        body.finish();
    }
}

/// Reads a chunked body from `buf`/`s` (after its head): the body and the bytes that follow.
fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut fill = |buf: &mut Vec<u8>| {
        let mut tmp = [0u8; 65536];
        let n = loop {
            match s.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.unwrap(),
            }
        };
        assert!(n > 0, "EOF inside a chunked body");
        buf.extend_from_slice(&tmp[..n]);
    };
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(buf);
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16)
            .expect("a hex chunk size");
        while buf.len() < line_end + 2 + size + 2 {
            fill(buf);
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        assert_eq!(&buf[line_end + 2 + size..line_end + 4 + size], b"\r\n");
        buf.drain(..line_end + 4 + size);
        if size == 0 {
            return body;
        }
    }
}

fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            return head;
        }
        let mut tmp = [0u8; 4096];
        match s.read(&mut tmp) {
            Ok(0) => panic!("EOF before a head"),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn streaming_server(
    rt: &Runtime,
) -> (
    HttpServer,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, g2) = (sent.clone(), gone.clone());
    let streamer = rt
        .spawn_actor_on(0, move || Streamer { sent: s2, gone: g2 })
        .unwrap();
    let fast = rt.spawn_actor_on(1, || Fast).unwrap();
    let router = Router::new()
        .get("/stream/:n", streamer.clone())
        .get("/feed", streamer)
        .get("/fast", fast);
    let srv = HttpServer::bind(&rt.handle(), "127.0.0.1:0".parse().unwrap(), router).unwrap();
    (srv, sent, gone)
}

fn expected_stream(n: usize) -> Vec<u8> {
    let mut want = b"start;".to_vec();
    for i in 0..n {
        want.extend_from_slice(&[i as u8; 16 << 10]);
    }
    want
}

#[test]
fn streamed_bodies_are_chunked_ordered_and_keep_the_connection() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let (srv, _, _) = streaming_server(&rt);
        let mut s = connect(srv.local_addr());
        // Pipelined behind and ahead of other requests: every answer in order.
        s.write_all(
            b"GET /stream/40 HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\nHEAD /stream/3 HTTP/1.1\r\nHost: t\r\n\r\nGET /stream/0 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        let head = read_head(&mut s, &mut buf);
        assert!(head.starts_with("HTTP/1.1 200"), "{b:?}/{co}: {head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        assert_eq!(
            read_chunked(&mut s, &mut buf),
            expected_stream(40),
            "{b:?}/{co}"
        );
        let (st, _, body) = read_response(&mut s, &mut buf).unwrap();
        assert_eq!((st, body.as_slice()), (200, &b"fast"[..]), "{b:?}/{co}");
        // HEAD: the head only.
        let head = read_head(&mut s, &mut buf);
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let head = read_head(&mut s, &mut buf);
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "{b:?}/{co}: HEAD had a body: {head}"
        );
        assert_eq!(read_chunked(&mut s, &mut buf), b"start;", "{b:?}/{co}");
        // HTTP/1.0: no chunks, the close ends the body.
        let mut old = connect(srv.local_addr());
        old.write_all(b"GET /stream/5 HTTP/1.0\r\n\r\n").unwrap();
        let mut all = Vec::new();
        old.read_to_end(&mut all).unwrap();
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&all[..end]);
        assert!(
            head.contains("Connection: close") && !head.contains("chunked"),
            "{head}"
        );
        assert_eq!(&all[end + 4..], expected_stream(5).as_slice(), "{b:?}/{co}");
        rt.shutdown();
    }
}

#[test]
fn a_streaming_handler_waits_for_a_slow_reader_and_learns_when_it_leaves() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let (srv, sent, gone) = streaming_server(&rt);
        let mut s = connect(srv.local_addr());
        s.write_all(b"GET /feed HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        // The client reads nothing: the producer must stall (socket buffers, max_unsent and
        // its window), far short of the 512 MiB it would like to send.
        let mut last = usize::MAX;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let now = sent.load(std::sync::atomic::Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        // Measured here: ~5 MiB (kernel buffers + max_unsent + the window).
        assert!(
            last < 32 << 20,
            "{b:?}/{co}: {} MiB produced for a client that reads nothing",
            last >> 20
        );
        // Reading lets it go on.
        let mut buf = vec![0u8; 8 << 20];
        let mut got = 0;
        while got < buf.len() {
            let n = loop {
                match s.read(&mut buf[got..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.unwrap(),
                }
            };
            got += n;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while sent.load(std::sync::atomic::Ordering::Relaxed) <= last {
            assert!(
                Instant::now() < deadline,
                "{b:?}/{co}: reading did not resume it"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The client leaves: the handler's next sends fail and it stops.
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !gone.load(std::sync::atomic::Ordering::Acquire) {
            assert!(
                Instant::now() < deadline,
                "{b:?}/{co}: the handler never saw the client leave (open connections {}, produced {} KiB)",
                srv.stats().open.load(std::sync::atomic::Ordering::Relaxed),
                sent.load(std::sync::atomic::Ordering::Relaxed) >> 10
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        rt.shutdown();
    }
}

/// Answers with what the server knows of the connection.
struct Whoami;
impl Actor for Whoami {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let peer = call.peer_addr().map(|a| a.ip().to_string());
        let tls = call.tls().map(|t| {
            format!(
                "alpn={:?} sni={:?} certs={} version={:?}",
                t.alpn.as_deref().map(String::from_utf8_lossy),
                t.server_name,
                t.peer_certificates.len(),
                t.protocol_version
            )
        });
        call.respond(Response::text(200, format!("peer={peer:?} {tls:?}")));
    }
}

#[test]
fn handlers_see_the_peer_and_the_verified_client_certificate() {
    use percore::transport::tls::{client_config, server_config};
    let (scert, skey) = common::self_signed("localhost");
    let (ccert, ckey) = common::self_signed("client");
    let dir = std::env::temp_dir().join(format!("percore-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cpath, kpath) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cpath, &ccert).unwrap();
    std::fs::write(&kpath, &ckey).unwrap();
    let openssl = common::client_available("openssl", "version");
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let who = rt.spawn_actor_on(0, || Whoami).unwrap();
        let mut opts = HttpOptions::default();
        opts.server.tls = Some(
            server_config(
                scert.as_bytes(),
                skey.as_bytes(),
                &[b"http/1.1"],
                Some(ccert.as_bytes()),
            )
            .unwrap(),
        );
        let srv = HttpServer::bind_with(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/", who),
            opts,
        )
        .unwrap();
        let addr = srv.local_addr();
        let want = r#"peer=Some("127.0.0.1") Some("alpn=Some(\"http/1.1\") sni=Some(\"localhost\") certs=1 version=Some(\"TLSv1_3\")")"#;

        // rustls client with a certificate.
        let ccfg = client_config(
            scert.as_bytes(),
            &[b"http/1.1"],
            Some((ccert.as_bytes(), ckey.as_bytes())),
        )
        .unwrap();
        let conn = rustls::ClientConnection::new(ccfg, "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, connect(addr));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(got.ends_with(want), "{b:?}/{co}: {got}");

        // Without a certificate the handshake fails, and only that connection.
        let anon = client_config(scert.as_bytes(), &[b"http/1.1"], None).unwrap();
        let conn = rustls::ClientConnection::new(anon, "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, connect(addr));
        let refused = tls
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .and_then(|_| tls.read(&mut [0u8; 64]))
            .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock);
        assert!(refused, "{b:?}/{co}: served a client without a certificate");

        // openssl s_client with the certificate and ALPN (CI installs openssl).
        if openssl {
            let mut child = std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr.to_string(),
                    "-servername",
                    "localhost",
                ])
                .args(["-alpn", "http/1.1", "-quiet", "-cert"])
                .arg(&cpath)
                .arg("-key")
                .arg(&kpath)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            child
                .stdin
                .as_mut()
                .unwrap()
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let out = String::from_utf8_lossy(&out.stdout);
            assert!(out.ends_with(want), "{b:?}/{co}: openssl got {out}");
        }
        rt.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pins the calling thread to `cpu` (false if the process may not run there).
fn pin_this_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Two co-located loops pinned to their CPUs on `b`, with the HTTP test server, once its
/// listener is registered; `None` (said on stderr) where loops cannot be pinned to 2 CPUs.
fn pinned_server(b: Backend) -> Option<(Runtime, HttpServer, Vec<usize>)> {
    let rt = Runtime::builder()
        .profile(percore::runtime::config::Profile::Testing)
        .io_backend(match b {
            Backend::Mio => percore::runtime::config::IoBackend::Mio,
            _ => percore::runtime::config::IoBackend::Uring,
        })
        .io_colocated(true)
        .pin(true)
        .build()
        .unwrap();
    let h = rt.handle();
    let cpus: Vec<Option<usize>> = (0..h.io_workers()).map(|i| h.io_cpu(i)).collect();
    if cpus.len() < 2 || cpus.iter().any(Option::is_none) {
        eprintln!("loops not pinned to CPUs here ({cpus:?}): skipping");
        return None;
    }
    let srv = serve(&rt, HttpOptions::default()); // IncomingCpu is the default
    // The listener is a handler of loop 0 (registered a moment after bind returns).
    let t0 = Instant::now();
    while loop_handlers(&rt, 0) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "no listener");
        std::thread::sleep(Duration::from_millis(5));
    }
    Some((rt, srv, cpus.into_iter().flatten().collect()))
}

/// Handlers (listener and connections) on event loop `i`.
fn loop_handlers(rt: &Runtime, i: usize) -> usize {
    rt.handle()
        .io_stats(i)
        .unwrap()
        .handlers
        .load(std::sync::atomic::Ordering::Relaxed) as usize
}

/// Opens `n` connections from a thread pinned to `cpu`, each answered once; with `busy`, keeps
/// asking on all of them (so they are active and may move) until `busy` is cleared.
fn open_from(
    addr: SocketAddr,
    cpu: usize,
    n: usize,
    busy: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> std::thread::JoinHandle<Vec<TcpStream>> {
    std::thread::spawn(move || {
        assert!(pin_this_thread(cpu), "cannot run on CPU {cpu}");
        let mut held: Vec<TcpStream> = Vec::new();
        let ask = |s: &mut TcpStream| {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_response(s, &mut Vec::new()).unwrap().0, 200);
        };
        for _ in 0..n {
            let mut s = connect(addr);
            ask(&mut s);
            held.push(s);
        }
        while busy
            .as_ref()
            .is_some_and(|b| b.load(std::sync::atomic::Ordering::Relaxed))
        {
            for s in held.iter_mut() {
                ask(s);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        held
    })
}

/// Waits until `cond(loop 0 connections, loop 1 connections)` holds (5 s at most).
fn wait_until(rt: &Runtime, base: [usize; 2], what: &str, cond: impl Fn(usize, usize) -> bool) {
    let t0 = Instant::now();
    loop {
        let (a, b) = (
            loop_handlers(rt, 0) - base[0],
            loop_handlers(rt, 1) - base[1],
        );
        if cond(a, b) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: loop 0 {a} / loop 1 {b}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One client thread's connections go to the loop on the CPU it does not run on (a loop on its
/// CPU would wait behind it for time slices); two client threads, one per CPU, each get the
/// loop of their own CPU; and a loop takes no more than 8 over the other.
#[test]
fn incoming_cpu_serves_a_client_on_a_free_cpu_and_two_clients_on_their_own() {
    for b in [Backend::Uring, Backend::Mio] {
        if !common::usable(b) {
            continue;
        }
        let Some((rt, srv, cpus)) = pinned_server(b) else {
            return;
        };
        let addr = srv.local_addr();
        let base = [loop_handlers(&rt, 0), loop_handlers(&rt, 1)];
        // One client thread on loop 0's CPU: all of its connections on loop 1.
        let held = open_from(addr, cpus[0], 12, None).join().unwrap();
        wait_until(&rt, base, &format!("{b:?}: one client"), |a, b| {
            (a, b) == (0, 12)
        });
        drop(held);
        wait_until(&rt, base, "closed", |a, b| a + b == 0);

        // Two busy client threads, one per CPU: each one's connections on its CPU's loop
        // (those placed before the second client showed up move within a few ticks).
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let c0 = open_from(addr, cpus[0], 10, Some(busy.clone()));
        let c1 = open_from(addr, cpus[1], 10, Some(busy.clone()));
        // +-1: a connection in the middle of a move is counted on neither loop for an instant.
        wait_until(&rt, base, &format!("{b:?}: two clients"), |a, b| {
            (9..=10).contains(&a) && (9..=10).contains(&b)
        });
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
        let (h0, h1) = (c0.join().unwrap(), c1.join().unwrap());
        // Thirty more from loop 0's CPU, now a client's CPU: loop 0 takes them only while it
        // holds fewer than 8 more than loop 1; the rest go to loop 1.
        let more = open_from(addr, cpus[0], 30, None).join().unwrap();
        wait_until(&rt, base, &format!("{b:?}: capped"), |a, b| {
            a + b == 50 && a <= b + 9 && b > 10
        });
        drop((h0, h1, more));
        rt.shutdown();
    }
}

/// A lone client thread's connection is served on the other CPU's loop; when the thread moves
/// to that CPU, the connection moves to the loop the thread left, with nothing lost or
/// reordered on the way.
#[test]
fn a_connection_moves_when_its_client_changes_cpu() {
    for b in [Backend::Uring, Backend::Mio] {
        if !common::usable(b) {
            continue;
        }
        let Some((rt, srv, cpus)) = pinned_server(b) else {
            return;
        };
        let (c0, c1) = (cpus[0], cpus[1]);
        let addr = srv.local_addr();
        let handlers = |i: usize| loop_handlers(&rt, i);
        let base = [handlers(0), handlers(1)];
        let (to_main, from_client) = std::sync::mpsc::channel();
        let (to_client, from_main) = std::sync::mpsc::channel::<()>();
        let moved = std::thread::spawn(move || {
            assert!(pin_this_thread(c0));
            let mut s = connect(addr);
            let mut buf = Vec::new();
            let mut ask = |s: &mut TcpStream, i: usize| {
                // Pipelined pairs, so the connection is busy and quiet by turns.
                s.write_all(
                    format!(
                        "GET /users/{i} HTTP/1.1\r\nHost: t\r\n\r\nGET /users/{i}b HTTP/1.1\r\nHost: t\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .unwrap();
                for want in [
                    format!("user {i} at /users/{i}"),
                    format!("user {i}b at /users/{i}b"),
                ] {
                    let (st, _, body) = read_response(s, &mut buf).expect("an answer");
                    assert_eq!(
                        (st, String::from_utf8_lossy(&body).to_string()),
                        (200, want)
                    );
                }
            };
            for i in 0..20 {
                ask(&mut s, i);
            }
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
            // The client moves to the other CPU and keeps talking: within a few ticks the
            // connection moves, and nothing is lost or reordered on the way.
            assert!(pin_this_thread(c1));
            let t0 = Instant::now();
            let mut i = 20;
            while t0.elapsed() < Duration::from_millis(2500) {
                ask(&mut s, i);
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            s
        });
        from_client.recv().unwrap();
        let before = [handlers(0) - base[0], handlers(1) - base[1]];
        assert_eq!(before, [0, 1], "{b:?}: served on the client's free CPU");
        to_client.send(()).unwrap();
        let s = moved.join().unwrap();
        let after = [handlers(0) - base[0], handlers(1) - base[1]];
        assert_eq!(
            after,
            [1, 0],
            "{b:?}: the connection did not move when its client did ({after:?})"
        );
        drop(s);
        rt.shutdown();
    }
}
