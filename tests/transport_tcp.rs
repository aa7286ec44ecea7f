//! TCP streams, listeners, framed servers and the HTTP client over real loopback sockets, on
//! io_uring and mio, with dedicated and co-located event loops.

mod common;
use common::{modes, runtime};

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use percore::runtime::partition::RoundRobin;
use percore::runtime::{Actor, Context, ShardedAddr, spawn_local};
use percore::transport::http::{Client, HttpCall, HttpServer, Response, Router};
use percore::transport::tcp::{ListenOptions, TcpListener, TcpStream};
use percore::transport::{CodecProtocol, FrameCall, LengthPrefixed, Server, ServerOptions};

fn read_retry(s: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

#[test]
fn stream_echo_half_close_and_large_transfers() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        // 3 MiB through a server that echoes until EOF, then half-closes: exercises partial
        // writes, the read buffer limit (backpressure) and EOF after shutdown_write.
        let payload: Vec<u8> = (0..3 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let expect = payload.clone();
        let got = rt.block_on(async move {
            let server = spawn_local(async move {
                let mut s = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(buf[..n].to_vec()).await.unwrap();
                }
                s.shutdown_write().unwrap();
            });
            let mut c = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let mut w = c.try_clone();
            let writer = spawn_local(async move {
                for chunk in payload.chunks(100_000) {
                    w.write_all(chunk.to_vec()).await.unwrap();
                }
                w.shutdown_write().unwrap();
            });
            let mut out = Vec::new();
            c.read_to_end(&mut out).await.unwrap();
            writer.await.unwrap();
            server.await.unwrap();
            out
        });
        assert_eq!(got.len(), expect.len(), "{b:?}/{co}");
        assert!(got == expect, "{b:?}/{co}: echoed bytes differ");
        rt.shutdown();
    }
}

/// A listener whose accept queue is full (backlog 0, filled with connections nobody accepts):
/// the kernel drops further SYNs, so a connect to it hangs until the client gives up. Returns
/// the listener and the connections that filled it (keep both alive).
fn black_hole() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on the listener's own, open fd; it only changes the backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut filled = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => filled.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                return (l, filled);
            }
        }
    }
    panic!("the accept queue never filled: connects to a full listener do not hang here");
}

/// Sockets of this process's network namespace in SYN-SENT towards IPv4 `to`.
fn syn_sent_to(to: std::net::SocketAddr) -> usize {
    let std::net::SocketAddr::V4(v4) = to else {
        panic!("IPv4 only")
    };
    let rem = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == rem && f[3] == "02"
        })
        .count()
}

#[test]
fn connect_errors_and_timeouts_are_reported() {
    let (hole, _filled) = black_hole();
    let hole = hole.local_addr().unwrap();
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        // Nothing listens on this port: refused, quickly.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let r = rt.block_on(TcpStream::connect(&h, addr, Duration::from_secs(5)));
        assert_eq!(
            r.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{b:?}/{co}"
        );
        // A listener that never answers: timed out at the limit, not earlier, not much later.
        let limit = Duration::from_millis(400);
        let t0 = Instant::now();
        let r = rt.block_on(TcpStream::connect(&h, hole, limit));
        let took = t0.elapsed();
        let e = r.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{b:?}/{co}: {e}");
        assert!(
            took >= limit && took < limit + Duration::from_millis(600),
            "{b:?}/{co}: timed out after {took:?}, limit {limit:?}"
        );
        // The abandoned connect is aborted in the kernel, not left retrying SYNs.
        assert!(
            eventually(|| syn_sent_to(hole) == 0),
            "{b:?}/{co}: a timed-out connect is still in SYN-SENT"
        );
        rt.shutdown();
    }
}

/// Live I/O handlers on all event loops (co-located: one per app worker).
fn io_handlers(h: &percore::runtime::Handle) -> usize {
    (0..h.io_workers())
        .map(|w| {
            let (tx, rx) = std::sync::mpsc::channel();
            h.run_on_io(w, move |ctx| {
                let _ = tx.send(ctx.handler_count());
            })
            .unwrap();
            rx.recv_timeout(Duration::from_secs(5)).unwrap()
        })
        .sum()
}

/// Polls `f` until it holds or 10 s pass; returns whether it held.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Raises the soft open-file limit to the hard one (the test holds a few thousand sockets).
fn raise_fd_limit() {
    // SAFETY: rlimit is plain data; getrlimit/setrlimit read/write only it.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// 2,000 clients connect and nobody calls `accept`: the listener takes at most its accept
/// queue off the kernel (the rest wait in the kernel's backlog), holds them as bare sockets
/// (no I/O handler each), honours its connection limit as streams are taken and closed, and
/// when it is dropped every client sees EOF or a reset and the handler count is back where it
/// started.
#[test]
fn listener_bounds_its_accept_queue_and_drop_closes_queued_connections() {
    raise_fd_limit();
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let base = io_handlers(&h);
        let opts = ListenOptions {
            accept_queue: 1024,
            backlog: 2048,
            max_connections: Some(1030),
        };
        let listener = TcpListener::bind_with(&h, "127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let addr = listener.local_addr();
        let clients: Vec<std::net::TcpStream> = (0..2000)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{b:?}/{co}: client {i}: {e}"))
            })
            .collect();
        assert!(
            eventually(|| listener.queued() == 1024),
            "{b:?}/{co}: {} queued, want the accept queue's 1024",
            listener.queued()
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            listener.queued(),
            1024,
            "{b:?}/{co}: the queue grew past its bound"
        );
        // Queued connections are bare sockets: the listener is the only new handler.
        assert_eq!(io_handlers(&h), base + 1, "{b:?}/{co}");
        // Take 10: the connection limit (1030) now allows only 1020 more queued.
        let listener = std::rc::Rc::new(listener);
        let l2 = listener.clone();
        let mut taken = rt.block_on(async move {
            let mut v = Vec::new();
            for _ in 0..10 {
                v.push(l2.accept().await.unwrap());
            }
            v
        });
        assert!(taken.iter().all(|s| s.peer_addr().is_some()));
        assert!(
            eventually(|| listener.queued() == 1020),
            "{b:?}/{co}: {} queued with 10 open, want 1020",
            listener.queued()
        );
        assert_eq!(io_handlers(&h), base + 11, "{b:?}/{co}");
        // Close 5: the listener resumes up to its queue bound again.
        taken.truncate(5);
        assert!(
            eventually(|| listener.queued() == 1024),
            "{b:?}/{co}: {} queued with 5 open, want 1024",
            listener.queued()
        );
        drop(taken);
        drop(listener);
        for (i, mut c) in clients.into_iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 16];
            let mut r = read_retry(&mut c, &mut buf);
            if matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
            {
                // A connection the kernel completed without queueing it (SYN cookies when the
                // backlog overflowed under load) has no server-side state for the close to
                // reset: data from the client gets the reset instead.
                let _ = c.write_all(b"?");
                r = read_retry(&mut c, &mut buf);
            }
            match r {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                other => panic!("{b:?}/{co}: client {i}: want EOF or reset, got {other:?}"),
            }
        }
        assert!(
            eventually(|| io_handlers(&h) == base),
            "{b:?}/{co}: {} handlers, {base} before the listener",
            io_handlers(&h)
        );
        rt.shutdown();
    }
}

/// `TCP_NODELAY` and `SO_KEEPALIVE` read back as set, on connected and accepted streams; once
/// the runtime is gone the calls fail instead of touching a closed fd.
#[test]
fn nodelay_and_keepalive_read_back_as_set() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let listener = TcpListener::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let (c, s) = rt.block_on(async move {
            let c = TcpStream::connect(&h, addr, Duration::from_secs(5))
                .await
                .unwrap();
            let s = listener.accept().await.unwrap();
            (c, s)
        });
        for (who, st) in [("connected", &c), ("accepted", &s)] {
            assert!(st.nodelay().unwrap(), "{b:?}/{co} {who}: on by default");
            assert!(!st.keepalive().unwrap(), "{b:?}/{co} {who}: off by default");
            st.set_nodelay(false).unwrap();
            st.set_keepalive(true).unwrap();
            assert!(!st.nodelay().unwrap(), "{b:?}/{co} {who}");
            assert!(st.keepalive().unwrap(), "{b:?}/{co} {who}");
            st.set_nodelay(true).unwrap();
            st.set_keepalive(false).unwrap();
            assert!(st.nodelay().unwrap(), "{b:?}/{co} {who}");
            assert!(!st.keepalive().unwrap(), "{b:?}/{co} {who}");
        }
        rt.shutdown();
        for st in [&c, &s] {
            let e = st.set_nodelay(true).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{b:?}/{co}");
            let e = st.keepalive().unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{b:?}/{co}");
        }
    }
}

struct FramedEcho;
impl Actor for FramedEcho {
    type Msg = FrameCall<LengthPrefixed>;
    async fn handle(&mut self, mut call: FrameCall<LengthPrefixed>, _ctx: &mut Context<Self>) {
        let f = std::mem::take(&mut call.frame);
        call.reply(&f).unwrap();
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[test]
fn framed_server_echoes_and_oversize_frames_close_only_their_connection() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let echo: ShardedAddr<FramedEcho, ()> = rt
            .spawn_sharded(|_| FramedEcho, RoundRobin::default())
            .unwrap();
        let srv = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            CodecProtocol::new(LengthPrefixed::new(1024), echo),
            ServerOptions::default(),
        )
        .unwrap();
        let addr = srv.local_addr();
        let mut good = std::net::TcpStream::connect(addr).unwrap();
        good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Several frames in one write, one frame split over writes.
        let mut batch = Vec::new();
        for i in 0..10u8 {
            batch.extend(frame(&vec![i; i as usize * 10]));
        }
        good.write_all(&batch).unwrap();
        let f = frame(b"split frame");
        good.write_all(&f[..3]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        good.write_all(&f[3..]).unwrap();
        let want: Vec<u8> = batch.iter().chain(f.iter()).copied().collect();
        let mut got = vec![0u8; want.len()];
        let mut off = 0;
        while off < got.len() {
            let n = read_retry(&mut good, &mut got[off..]).unwrap();
            assert!(n > 0);
            off += n;
        }
        assert_eq!(got, want, "{b:?}/{co}");
        // An oversize frame header: that connection is closed.
        let mut bad = std::net::TcpStream::connect(addr).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        bad.write_all(&(5000u32).to_be_bytes()).unwrap();
        let mut tmp = [0u8; 8];
        let r = read_retry(&mut bad, &mut tmp);
        assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
        // The good connection still works.
        good.write_all(&frame(b"still here")).unwrap();
        let mut back = vec![0u8; 14];
        let mut off = 0;
        while off < back.len() {
            off += read_retry(&mut good, &mut back[off..]).unwrap();
        }
        assert_eq!(back, frame(b"still here"));
        assert_eq!(
            srv.stats()
                .rejected
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        rt.shutdown();
    }
}

struct Hello;
impl Actor for Hello {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let body = call.req.body.clone();
        let r = if body.is_empty() {
            Response::text(200, format!("hello {}", call.req.path()))
        } else {
            Response::new(201).body(body)
        };
        call.respond(r);
    }
}

#[test]
fn http_client_reuses_connections_and_reads_bodies() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let hello = rt.spawn_actor_on(1, || Hello).unwrap();
        let srv = HttpServer::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/*p", hello.clone()).post("/*p", hello),
        )
        .unwrap();
        let base = format!("http://{}", srv.local_addr());
        let h = rt.handle();
        let (a, bb, c) = rt.block_on(async move {
            let client = Client::new(&h);
            let a = client.get(&format!("{base}/one")).await.unwrap();
            let b = client.get(&format!("{base}/two")).await.unwrap();
            let c = client
                .post(
                    &format!("{base}/up"),
                    "application/octet-stream",
                    vec![7u8; 100_000],
                )
                .await
                .unwrap();
            (a, b, c)
        });
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hello /one"[..]));
        assert_eq!((bb.status, bb.body.as_slice()), (200, &b"hello /two"[..]));
        assert_eq!(c.status, 201);
        assert_eq!(c.body, vec![7u8; 100_000]);
        // Three requests, one connection.
        assert_eq!(
            srv.stats()
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{b:?}/{co}"
        );
        rt.shutdown();
    }
}

struct HostEcho;
impl Actor for HostEcho {
    type Msg = HttpCall;
    async fn handle(&mut self, call: HttpCall, _ctx: &mut Context<Self>) {
        let host = call.req.header("host").unwrap_or("<none>").to_string();
        call.respond(Response::text(200, host));
    }
}

/// Host names resolve (off the worker, cached), each resolved address is tried in order (a
/// name may resolve to ::1 first while the server listens on 127.0.0.1 only), the `Host`
/// header carries the name, and a name that does not resolve is a typed error.
#[test]
fn http_client_resolves_host_names() {
    use percore::transport::http::ClientError;
    for (mode, co) in modes() {
        let rt = runtime(mode, co);
        let echo = rt.spawn_actor_on(0, || HostEcho).unwrap();
        let srv = HttpServer::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Router::new().get("/*p", echo),
        )
        .unwrap();
        let port = srv.local_addr().port();
        let h = rt.handle();
        let (a, b, bad) = rt.block_on(async move {
            let mut client = Client::new(&h);
            client.timeout = Duration::from_secs(10);
            let a = client.get(&format!("http://localhost:{port}/x")).await;
            let b = client.get(&format!("http://localhost:{port}/y")).await;
            let bad = client.get("http://no-such-host.invalid/").await;
            (a, b, bad)
        });
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.body, format!("localhost:{port}").into_bytes());
        assert_eq!(b.status, 200);
        assert_eq!(
            srv.stats()
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{mode:?}/{co}: both requests to one host name share a connection"
        );
        // No network here: the resolver answers "not found" or the lookup outlives the timeout.
        assert!(
            matches!(
                bad,
                Err(ClientError::Dns { .. }) | Err(ClientError::Timeout(_))
            ),
            "{mode:?}/{co}: {bad:?}"
        );
        rt.shutdown();
    }
}

#[test]
fn udp_datagrams_round_trip_on_every_backend() {
    use percore::transport::udp::UdpSocket;
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let server = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let client = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let saddr = server.local_addr();
        let got = rt.block_on(async move {
            let echo = spawn_local(async move {
                for _ in 0..200 {
                    let (d, from) = server.recv_from().await.unwrap();
                    server.send_to(&d, from).unwrap();
                }
            });
            let mut got = Vec::new();
            for i in 0..200u32 {
                client.send_to(&i.to_be_bytes(), saddr).unwrap();
                let (d, from) = client.recv_from().await.unwrap();
                assert_eq!(from, saddr);
                got.push(u32::from_be_bytes(d.try_into().unwrap()));
            }
            echo.await.unwrap();
            got
        });
        assert_eq!(got, (0..200).collect::<Vec<_>>(), "{b:?}/{co}");
        rt.shutdown();
    }
}

/// `FramedClient` against misbehaving peers (a plain std server thread each): a frame cut short
/// by EOF is a typed `Truncated` error, an oversize announced length a `FrameTooLarge` one, a
/// silent peer a `Timeout` — after which the client refuses further use instead of reading a
/// stale answer.
#[test]
fn framed_client_reports_bad_peers_with_typed_errors() {
    use percore::transport::{CodecError, FramedClient, FramedError};
    // Each peer reads one request, then misbehaves as `script` says.
    fn peer(script: &'static [u8], then_close: bool) -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(script).unwrap();
            if !then_close {
                std::thread::sleep(Duration::from_secs(3));
            }
        });
        addr
    }
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let truncated = peer(&[0, 0, 0, 10, b'a', b'b', b'c'], true);
        let oversize = peer(&[0xff, 0xff, 0xff, 0xff], false);
        let silent = peer(b"", false);
        rt.block_on(async move {
            let t = Duration::from_secs(5);
            let codec = LengthPrefixed::new(1024);
            let mut c = FramedClient::connect(&h, truncated, codec, t)
                .await
                .unwrap();
            match c.call(&b"hi"[..]).await {
                Err(FramedError::Codec(CodecError::Truncated { .. })) => {}
                other => panic!("{b:?}/{co}: expected Truncated, got {other:?}"),
            }
            let mut c = FramedClient::connect(&h, oversize, codec, t).await.unwrap();
            match c.call(&b"hi"[..]).await {
                Err(FramedError::Codec(CodecError::FrameTooLarge { .. })) => {}
                other => panic!("{b:?}/{co}: expected FrameTooLarge, got {other:?}"),
            }
            let limit = Duration::from_millis(200);
            let mut c = FramedClient::connect(&h, silent, codec, limit)
                .await
                .unwrap();
            let t0 = Instant::now();
            match c.call(&b"hi"[..]).await {
                Err(FramedError::Timeout(d)) => assert_eq!(d, limit),
                other => panic!("{b:?}/{co}: expected Timeout, got {other:?}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(2));
            match c.send(&b"again"[..]).await {
                Err(FramedError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotConnected),
                other => panic!("{b:?}/{co}: expected NotConnected, got {other:?}"),
            }
        });
        rt.shutdown();
    }
}

/// After a runtime shutdown the event loop has closed the socket while the `UdpSocket` value
/// lives on: `send_to` and `recv_from` fail with `NotConnected` (no panic, no write to a
/// reused fd number).
#[test]
fn udp_socket_fails_cleanly_after_runtime_shutdown() {
    use percore::transport::udp::UdpSocket;
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let sock = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = peer.local_addr().unwrap();
        assert_eq!(sock.send_to(b"before", to).unwrap(), 6);
        rt.shutdown();
        // Open a few sockets: without the fix one of them could take the closed fd's number.
        let _others: Vec<_> = (0..4)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let e = sock.send_to(b"after", to).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::NotConnected,
            "{b:?}/{co}: {e}"
        );
        drop(sock);
    }
}

/// A flood of large datagrams nobody reads: the socket's queue stays within its byte bound
/// (not 4096 datagrams of up to 64 KiB), and reading drains it and resumes receiving.
#[test]
fn udp_receive_queue_is_bounded_in_bytes() {
    use percore::transport::udp::{QUEUE_BYTES_LIMIT, UdpSocket};
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let h = rt.handle();
        let sock = UdpSocket::bind(&h, "127.0.0.1:0".parse().unwrap()).unwrap();
        let to = sock.local_addr();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![7u8; 60_000];
        let mut max_seen = 0;
        // 2,000 x 60 KB = 120 MB offered; paced so the event loop keeps draining the kernel.
        for i in 0..2000 {
            let _ = tx.send_to(&big, to);
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
                max_seen = max_seen.max(sock.queued_bytes());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        max_seen = max_seen.max(sock.queued_bytes());
        assert!(
            max_seen <= QUEUE_BYTES_LIMIT + 65_536,
            "{b:?}/{co}: {max_seen} bytes queued, bound {QUEUE_BYTES_LIMIT}"
        );
        assert!(
            max_seen >= QUEUE_BYTES_LIMIT / 2,
            "{b:?}/{co}: only {max_seen} bytes ever queued: the flood did not reach the bound"
        );
        // Draining works and receiving resumes.
        let n = sock.queued();
        let got = rt.block_on(async move {
            for _ in 0..n {
                sock.recv_from().await.unwrap();
            }
            // Give the loop time to resume and empty the kernel's buffer, then send a marker.
            percore::runtime::sleep(Duration::from_millis(100)).await;
            tx.send_to(b"after", to).unwrap();
            let wait = async {
                loop {
                    let (d, _) = sock.recv_from().await.unwrap();
                    if d == b"after" {
                        break sock.queued_bytes();
                    }
                }
            };
            percore::runtime::timeout(Duration::from_secs(10), wait)
                .await
                .expect("receiving resumed after draining")
        });
        assert!(got <= QUEUE_BYTES_LIMIT, "{b:?}/{co}");
        rt.shutdown();
    }
}
