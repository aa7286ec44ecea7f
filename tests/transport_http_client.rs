//! The HTTP client against scripted servers: `std::net` listeners on 127.0.0.1, one thread per
//! connection, writing byte-exact responses (chunked, close-delimited, oversized, interim
//! `1xx`, connections closed under a pooled request).

mod common;
use common::runtime;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use percore::runtime::Runtime;
use percore::runtime::config::IoBackend;
use percore::transport::http::{Client, ClientError, Method, Response};

/// A server that runs `conn(i, stream)` on its own thread for the `i`-th accepted connection;
/// returns its address and the count of accepted connections.
fn server<F>(conn: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let conn = Arc::new(conn);
    std::thread::spawn(move || {
        for (i, s) in listener.incoming().enumerate() {
            let Ok(s) = s else { return };
            count.fetch_add(1, Ordering::SeqCst);
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = conn.clone();
            std::thread::spawn(move || conn(i, s));
        }
    });
    (addr, accepted)
}

/// Reads one request (head and `Content-Length` body): `(head, body)`, None on EOF first.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + cl {
                if !read_more(s, buf) {
                    return None;
                }
            }
            let body = buf[end + 4..end + 4 + cl].to_vec();
            buf.drain(..end + 4 + cl);
            return Some((head, body));
        }
        if !read_more(s, buf) {
            return None;
        }
    }
}

fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Runs `f` with a client (10 s timeout unless `f` changes it) on a fresh runtime.
fn with_client<T>(f: impl AsyncFnOnce(&mut Client) -> T) -> T {
    let rt: Runtime = runtime(IoBackend::Mio, true);
    let h = rt.handle();
    let out = rt.block_on(async move {
        let mut client = Client::new(&h);
        client.timeout = Duration::from_secs(10);
        f(&mut client).await
    });
    rt.shutdown();
    out
}

fn body(r: &Result<Response, ClientError>) -> Result<(u16, String), String> {
    match r {
        Ok(r) => Ok((r.status, String::from_utf8_lossy(&r.body).to_string())),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[test]
fn chunked_responses_arrive_in_pieces_and_keep_the_connection() {
    let (addr, accepted) = server(|_, mut s| {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).is_some() {
            let parts: [&[u8]; 6] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r",
                b"\nhello\r\n",
                b"1;ext=1\r\n \r\n6\r\nwor",
                b"ld!\r\n0\r\n",
                b"Trailer: x\r\n",
                b"\r\n",
            ];
            for p in parts {
                s.write_all(p).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let url = format!("http://{addr}/");
    let (a, b) = with_client(async move |c| (c.get(&url).await, c.get(&url).await));
    assert_eq!(body(&a), Ok((200, "hello world!".into())));
    assert_eq!(body(&b), Ok((200, "hello world!".into())));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for both"
    );
}

#[test]
fn close_delimited_body_is_read_to_eof() {
    let (addr, _) = server(|_, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        s.write_all(b"this until EOF").unwrap();
    });
    let url = format!("http://{addr}/");
    let r = with_client(async move |c| c.get(&url).await);
    assert_eq!(body(&r), Ok((200, "all of this until EOF".into())));
}

/// The limit is enforced while reading: the client gives up at `max_body` bytes without
/// waiting for the end of a body the server never finishes.
#[test]
fn oversized_close_delimited_body_fails_without_reading_to_the_end() {
    let (addr, _) = server(|_, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        // 4 MiB and then silence: no EOF for 30 s.
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!("http://{addr}/");
    let t0 = Instant::now();
    let r = with_client(async move |c| {
        c.max_body = 100_000;
        c.get(&url).await
    });
    assert!(
        matches!(r, Err(ClientError::BodyTooLarge(100_000))),
        "{:?}",
        body(&r)
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[test]
fn oversized_declared_and_chunked_bodies_are_typed_errors() {
    let (addr, _) = server(|i, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        if i == 0 {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2001\r\n\r\n")
                .unwrap();
        } else {
            // 0x400 + 0x401 = 2049 bytes: the second size is over before its data comes.
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
                .unwrap();
            let _ = s.write_all(&[b'x'; 0x400]);
            let _ = s.write_all(b"\r\n401\r\n");
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!("http://{addr}/");
    let t0 = Instant::now();
    let (a, b) = with_client(async move |c| {
        c.max_body = 2000;
        (c.get(&url).await, c.get(&url).await)
    });
    assert!(
        matches!(a, Err(ClientError::BodyTooLarge(2000))),
        "{:?}",
        body(&a)
    );
    assert!(
        matches!(b, Err(ClientError::BodyTooLarge(2000))),
        "{:?}",
        body(&b)
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

/// A chunk-size line that never ends (endless chunk extension) is refused once it passes the
/// line limit, not buffered until the timeout.
#[test]
fn endless_chunk_extension_is_refused() {
    let (addr, _) = server(|_, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
            .unwrap();
        for _ in 0..100 {
            if s.write_all(&[b'a'; 1024]).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!("http://{addr}/");
    let t0 = Instant::now();
    let r = with_client(async move |c| c.get(&url).await);
    match &r {
        Err(ClientError::Invalid(m)) => assert!(m.contains("chunk-size line too long"), "{m}"),
        _ => panic!("{:?}", body(&r)),
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[test]
fn interim_responses_are_skipped_and_101_is_an_error() {
    let (addr, _) = server(|i, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        if i == 0 {
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nreal")
                .unwrap();
        } else {
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let (a, b) = with_client(async move |c| {
        let a = c
            .post(&format!("http://{addr}/"), "text/plain", b"hi".to_vec())
            .await;
        let b = c.get(&format!("http://{addr}/")).await;
        (a, b)
    });
    assert_eq!(body(&a), Ok((201, "real".into())));
    assert!(
        matches!(&b, Err(ClientError::Invalid(m)) if m.contains("101")),
        "{:?}",
        body(&b)
    );
}

/// A POST on a pooled connection that the server closes after reading it must not be sent
/// again: the server may have acted on it.
#[test]
fn post_on_a_dropped_pooled_connection_is_not_resent() {
    let posts = Arc::new(AtomicUsize::new(0));
    let seen = posts.clone();
    let (addr, accepted) = server(move |_, mut s| {
        let mut buf = Vec::new();
        while let Some((head, _)) = read_request(&mut s, &mut buf) {
            if head.starts_with("POST") {
                seen.fetch_add(1, Ordering::SeqCst);
                return; // closes without an answer
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        }
    });
    let (a, b) = with_client(async move |c| {
        let a = c.get(&format!("http://{addr}/")).await;
        let b = c
            .post(&format!("http://{addr}/p"), "text/plain", b"once".to_vec())
            .await;
        (a, b)
    });
    assert_eq!(body(&a), Ok((200, "ok".into())));
    assert!(matches!(b, Err(ClientError::Io(_))), "{:?}", body(&b));
    // Give a (wrong) second attempt time to arrive before counting.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(posts.load(Ordering::SeqCst), 1, "the POST was sent again");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A GET on a pooled connection the server closed meanwhile is retried on a fresh one.
#[test]
fn get_on_a_stale_pooled_connection_is_retried() {
    let (addr, accepted) = server(|_, mut s| {
        read_request(&mut s, &mut Vec::new()).unwrap();
        // Keep-alive is announced, yet the connection is closed right after.
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    });
    let (a, b) = with_client(async move |c| {
        let a = c.get(&format!("http://{addr}/")).await;
        percore::runtime::sleep(Duration::from_millis(50)).await;
        let b = c.get(&format!("http://{addr}/")).await;
        (a, b)
    });
    assert_eq!(body(&a), Ok((200, "ok".into())));
    assert_eq!(body(&b), Ok((200, "ok".into())));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

fn keep_alive_server() -> (SocketAddr, Arc<AtomicUsize>) {
    server(|_, mut s| {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).is_some() {
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    })
}

#[test]
fn idle_connections_expire_and_the_pool_can_be_capped() {
    // Default: reused.
    let (addr, accepted) = keep_alive_server();
    let n = with_client(async move |c| {
        c.get(&format!("http://{addr}/")).await.unwrap();
        c.get(&format!("http://{addr}/")).await.unwrap();
        c.idle_connections(&addr.to_string(), false)
    });
    assert_eq!((accepted.load(Ordering::SeqCst), n), (1, 1));
    // Expired: a fresh connection.
    let (addr, accepted) = keep_alive_server();
    with_client(async move |c| {
        c.idle_timeout = Duration::from_millis(50);
        c.get(&format!("http://{addr}/")).await.unwrap();
        percore::runtime::sleep(Duration::from_millis(150)).await;
        c.get(&format!("http://{addr}/")).await.unwrap();
    });
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // No pool at all.
    let (addr, accepted) = keep_alive_server();
    let n = with_client(async move |c| {
        c.max_idle_per_host = 0;
        c.get(&format!("http://{addr}/")).await.unwrap();
        c.get(&format!("http://{addr}/")).await.unwrap();
        c.idle_connections(&addr.to_string(), false)
    });
    assert_eq!((accepted.load(Ordering::SeqCst), n), (2, 0));
}

#[test]
fn request_header_injection_is_a_typed_error_and_sends_nothing() {
    let (addr, accepted) = keep_alive_server();
    let errs = with_client(async move |c| {
        let mut errs = Vec::new();
        for (n, v) in [
            ("X-A", "v\r\nEvil: 1"),
            ("X-A", "v\nx"),
            ("X-A", "v\0"),
            ("X A", "v"),
            ("X:A", "v"),
            ("", "v"),
        ] {
            errs.push(
                c.request(addr, Method::Get, "/", &[(n, v)], Vec::new())
                    .await,
            );
        }
        errs.push(
            c.request(
                addr,
                Method::Get,
                "/ HTTP/1.1\r\nEvil: 1\r\n",
                &[],
                Vec::new(),
            )
            .await,
        );
        errs.push(
            c.request(addr, Method::Other("GET /x".into()), "/", &[], Vec::new())
                .await,
        );
        errs.push(
            c.post(
                &format!("http://{addr}/"),
                "text/plain\r\nEvil: 1",
                Vec::new(),
            )
            .await,
        );
        errs
    });
    for e in &errs {
        assert!(
            matches!(e, Err(ClientError::InvalidRequest(_))),
            "{:?}",
            body(e)
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing was sent");
}

/// Echoes the body it received, with how it was framed.
struct EchoFraming;
impl percore::runtime::Actor for EchoFraming {
    type Msg = percore::transport::http::HttpCall;
    async fn handle(&mut self, call: Self::Msg, _ctx: &mut percore::runtime::Context<Self>) {
        let framing = match (
            call.req.header("transfer-encoding"),
            call.req.header("content-length"),
        ) {
            (Some(te), None) => format!("te={te}"),
            (None, Some(cl)) => format!("cl={cl}"),
            other => format!("{other:?}"),
        };
        let body = [framing.as_bytes(), b";", &call.req.body].concat();
        call.respond(Response::new(200).body(body));
    }
}

#[test]
fn uploads_stream_a_chunked_body_to_the_server() {
    for (b, co) in common::modes() {
        let rt: Runtime = runtime(b, co);
        let h = rt.handle();
        let echo = rt.spawn_actor_on(0, || EchoFraming).unwrap();
        let srv = percore::transport::http::HttpServer::bind(
            &h,
            "127.0.0.1:0".parse().unwrap(),
            percore::transport::http::Router::new().post("/up", echo),
        )
        .unwrap();
        let url = format!("http://{}/up", srv.local_addr());
        let (first, second) = rt.block_on(async move {
            let client = Client::new(&h);
            let mut up = client
                .upload(Method::Post, &url, &[("Content-Type", "text/plain")])
                .await
                .unwrap();
            for piece in [&b"streamed "[..], b"", b"in ", &[b'x'; 100_000][..]] {
                up.send(piece).await.unwrap();
            }
            let first = up.finish().await;
            // The connection is kept: a plain request reuses it.
            let second = client.post(&url, "text/plain", b"whole".to_vec()).await;
            (first, second)
        });
        let want = format!("te=chunked;streamed in {}", "x".repeat(100_000));
        assert_eq!(body(&first), Ok((200, want)), "{b:?}/{co}");
        assert_eq!(body(&second), Ok((200, "cl=5;whole".into())), "{b:?}/{co}");
        assert_eq!(
            srv.stats().accepted.load(Ordering::Relaxed),
            1,
            "{b:?}/{co}: one connection for both"
        );
        rt.shutdown();
    }
}
