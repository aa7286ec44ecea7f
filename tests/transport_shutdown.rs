//! Stopping a server, on every I/O configuration: `Server::shutdown(deadline)` lets each
//! connection finish the replies it owes and closes it, idle keep-alive connections included;
//! a reply that is still not there at the deadline is cut off; dropping a server stops it
//! accepting and drains it the same way. Real loopback sockets, std clients.

mod common;
use common::{modes, runtime};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use percore::runtime::{Actor, Context};
use percore::transport::http::{HttpCall, HttpServer, Response, Router};

/// Answers `/slow` after 400 ms, `/never` never (it keeps the call), anything else at once.
struct Api(Vec<HttpCall>);

impl Actor for Api {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        match call.req.path() {
            "/slow" => {
                percore::runtime::sleep(Duration::from_millis(400)).await;
                call.respond(Response::text(200, "slow"));
            }
            "/never" => self.0.push(call),
            _ => call.respond(Response::text(200, "hi")),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn get(s: &mut TcpStream, path: &str) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
}

/// Reads until the peer closes; returns what came (an error, such as a reset, ends it too).
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (out, t0.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn serve(rt: &percore::runtime::Runtime) -> HttpServer {
    let api = rt.spawn_actor_on(0, || Api(Vec::new())).unwrap();
    let router = Router::new()
        .get("/", api.clone())
        .get("/slow", api.clone())
        .get("/never", api);
    HttpServer::bind(&rt.handle(), "127.0.0.1:0".parse().unwrap(), router).unwrap()
}

#[test]
fn shutdown_finishes_owed_replies_then_closes_every_connection() {
    for (backend, colocated) in modes() {
        let rt = runtime(backend, colocated);
        let server = serve(&rt);
        let addr = server.local_addr();
        // One connection with a reply owed, one idle keep-alive connection.
        let mut busy = connect(addr);
        let mut idle = connect(addr);
        get(&mut idle, "/");
        let mut first = Vec::new();
        let mut buf = [0u8; 512];
        while !first.ends_with(b"hi") {
            let n = idle.read(&mut buf).unwrap();
            assert!(n > 0, "{backend:?}: closed before the first reply");
            first.extend_from_slice(&buf[..n]);
        }
        assert!(first.starts_with(b"HTTP/1.1 200"), "{backend:?}");
        get(&mut busy, "/slow");
        std::thread::sleep(Duration::from_millis(50)); // the request reaches its actor

        let t = std::thread::spawn(move || {
            let (busy_got, _) = read_to_close(&mut busy);
            let (idle_got, idle_after) = read_to_close(&mut idle);
            (busy_got, idle_got, idle_after)
        });
        let report = rt.block_on(server.shutdown(Duration::from_secs(5)));
        let (busy_got, idle_got, idle_after) = t.join().unwrap();
        let busy_text = String::from_utf8_lossy(&busy_got);
        assert!(
            busy_text.starts_with("HTTP/1.1 200") && busy_text.ends_with("slow"),
            "{backend:?} colocated={colocated}: the owed reply is written before the close: {busy_text:?}"
        );
        assert!(
            idle_got.is_empty(),
            "{backend:?}: the idle connection only closes"
        );
        assert!(idle_after < Duration::from_secs(3), "{idle_after:?}");
        assert_eq!(report.open_at_start, 2, "{backend:?} {report:?}");
        assert_eq!(report.closed_gracefully, 2, "{backend:?} {report:?}");
        assert_eq!((report.forced, report.still_open), (0, 0), "{report:?}");
        // Nothing listens any more.
        assert!(
            TcpStream::connect(addr).is_err(),
            "{backend:?}: the listener is closed"
        );
        rt.shutdown();
    }
}

#[test]
fn shutdown_cuts_off_what_is_still_owed_at_the_deadline() {
    for (backend, colocated) in modes() {
        let rt = runtime(backend, colocated);
        let server = serve(&rt);
        let mut c = connect(server.local_addr());
        get(&mut c, "/never");
        std::thread::sleep(Duration::from_millis(50));
        let report = rt.block_on(server.shutdown(Duration::from_millis(300)));
        assert_eq!(report.open_at_start, 1, "{backend:?} {report:?}");
        assert_eq!(report.forced, 1, "{backend:?} {report:?}");
        assert_eq!(report.still_open, 0, "{backend:?} {report:?}");
        assert!(report.elapsed >= Duration::from_millis(300), "{report:?}");
        let (got, _) = read_to_close(&mut c);
        assert!(got.is_empty(), "{backend:?}: no reply was ever made");
        rt.shutdown();
    }
}

#[test]
fn dropping_a_server_stops_accepting_and_drains_it() {
    for (backend, colocated) in modes() {
        let rt = runtime(backend, colocated);
        let server = serve(&rt);
        let addr = server.local_addr();
        let mut c = connect(addr);
        get(&mut c, "/slow");
        std::thread::sleep(Duration::from_millis(50));
        drop(server);
        let (got, after) = read_to_close(&mut c);
        let text = String::from_utf8_lossy(&got);
        assert!(text.ends_with("slow"), "{backend:?}: {text:?}");
        // Closed after its reply (the next tick), not at the 60 s idle timeout. Generous: a
        // loaded 2-core machine may delay a tick, never by seconds.
        assert!(
            after < Duration::from_secs(5),
            "{backend:?}: closed after {after:?}"
        );
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{backend:?}: still accepting after drop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        rt.shutdown();
    }
}

#[test]
fn a_detached_server_keeps_serving() {
    let rt = runtime(common::Backend::Mio, true);
    let server = serve(&rt);
    let addr = server.local_addr();
    server.detach();
    let mut c = connect(addr);
    get(&mut c, "/");
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    rt.shutdown();
}

/// A port another server listens on is an error naming the address, unless both ask to share
/// it (`AcceptMode::ReusePort`); a client always reaches the first server.
#[test]
fn a_port_in_use_is_an_error_unless_sharing_is_asked_for() {
    use percore::transport::http::HttpOptions;
    use percore::transport::{AcceptMode, TransportError};
    let rt = runtime(common::Backend::Mio, true);
    let first = serve(&rt);
    let addr = first.local_addr();
    let api = rt.spawn_actor_on(0, || Api(Vec::new())).unwrap();
    let second = HttpServer::bind(&rt.handle(), addr, Router::new().get("/", api.clone()));
    match second {
        Err(TransportError::Bind { addr: a, source }) => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a second server bound {addr} while the first listens on it"),
    }
    let mut c = connect(addr);
    get(&mut c, "/");
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    drop(c);
    drop(first);

    // Both asking to share: both bind.
    let mut opts = HttpOptions::default();
    opts.server.accept = AcceptMode::ReusePort;
    let a = HttpServer::bind_with(
        &rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        Router::new().get("/", api.clone()),
        opts.clone(),
    )
    .unwrap();
    let b = HttpServer::bind_with(
        &rt.handle(),
        a.local_addr(),
        Router::new().get("/", api),
        opts,
    );
    assert!(b.is_ok(), "ReusePort servers share a port: {:?}", b.err());
    rt.shutdown();
}
