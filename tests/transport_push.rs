//! Per-connection hooks and server push through the public transport API, on every event-loop
//! configuration: `ServerProtocol::opened` / `closed` see each connection once, a `Pusher`
//! delivers bytes between whole replies in the order pushed (from this loop and from another
//! thread), pushes to a closed connection are dropped, and a deep pipeline of replies answered
//! on the loop comes back complete and in order (the io_uring backend merges a turn's sends).

mod common;
use common::{modes, runtime};

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use percore::transport::{
    ConnInfo, Decoded, Dispatched, Pusher, Responder, Server, ServerOptions, ServerProtocol,
};

#[derive(Default)]
struct Shared {
    opened: AtomicUsize,
    closed: AtomicUsize,
    subs: Mutex<Vec<(u64, Pusher)>>,
}

impl Shared {
    /// Every subscriber's pusher.
    fn pushers(&self) -> Vec<Pusher> {
        self.subs
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.1.clone())
            .collect()
    }
}

/// Lines: `SUB` (this connection receives pushes), `PUB x` (push `MSG x` to every subscriber,
/// answer their count), anything else is echoed.
#[derive(Clone)]
struct Lines(Arc<Shared>);

impl ServerProtocol for Lines {
    type Request = Vec<u8>;

    fn decode(&self, input: &[u8]) -> Decoded<Vec<u8>> {
        match input.iter().position(|&b| b == b'\n') {
            Some(p) => Decoded::Request(input[..p].to_vec(), p + 1),
            None => Decoded::Incomplete,
        }
    }

    fn dispatch(&self, req: Vec<u8>, resp: Responder, conn: u64) -> Dispatched<Vec<u8>> {
        let reply = if req == b"SUB" {
            self.0.subs.lock().unwrap().push((conn, resp.pusher()));
            b"OK\n".to_vec()
        } else if let Some(msg) = req.strip_prefix(b"PUB ") {
            let subs = self.0.pushers();
            for p in &subs {
                p.push([&b"MSG "[..], msg, b"\n"].concat());
            }
            format!("{}\n", subs.len()).into_bytes()
        } else {
            [&req[..], b"\n"].concat()
        };
        Dispatched::Answer(resp.answer(reply, false))
    }

    fn opened(&self, _conn: &ConnInfo) {
        self.0.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self, conn: &ConnInfo) {
        self.0.closed.fetch_add(1, Ordering::SeqCst);
        self.0.subs.lock().unwrap().retain(|s| s.0 != conn.id);
    }

    fn may_move(&self, conn: &ConnInfo) -> bool {
        !self.0.subs.lock().unwrap().iter().any(|s| s.0 == conn.id)
    }
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a line");
    l
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hooks_pushes_and_deep_pipelines_on_every_backend() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let shared = Arc::new(Shared::default());
        let srv = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Lines(shared.clone()),
            ServerOptions::default(),
        )
        .expect("bind");
        let addr = srv.local_addr();
        let sub = TcpStream::connect(addr).expect("connect");
        sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sub_r = BufReader::new(sub.try_clone().unwrap());
        let mut publ = TcpStream::connect(addr).expect("connect");
        publ.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut publ_r = BufReader::new(publ.try_clone().unwrap());
        wait_for("opened twice", || shared.opened.load(Ordering::SeqCst) == 2);
        (&sub).write_all(b"SUB\n").unwrap();
        assert_eq!(line(&mut sub_r), "OK\n", "{b:?} co-located {co}");
        // Pushes from the publisher's requests, in order, between whole replies.
        for i in 0..50 {
            publ.write_all(format!("PUB {i}\n").as_bytes()).unwrap();
            assert_eq!(line(&mut publ_r), "1\n");
        }
        for i in 0..50 {
            assert_eq!(
                line(&mut sub_r),
                format!("MSG {i}\n"),
                "{b:?} co-located {co}"
            );
        }
        // A push made from another core is delivered asynchronously: it is not ordered with
        // the subscriber's own later requests, so those are sent only now.
        (&sub).write_all(b"echo\n").unwrap();
        assert_eq!(line(&mut sub_r), "echo\n");
        // Pushes from a thread outside the runtime arrive too, in order.
        let pushers = shared.pushers();
        assert_eq!(pushers.len(), 1);
        std::thread::spawn(move || {
            for i in 0..20 {
                pushers[0].push(format!("EXT {i}\n").into_bytes());
            }
        })
        .join()
        .unwrap();
        for i in 0..20 {
            assert_eq!(line(&mut sub_r), format!("EXT {i}\n"));
        }
        // A deep pipeline answered on the loop: every reply, in order.
        let mut batch = Vec::new();
        for i in 0..2000 {
            batch.extend_from_slice(format!("line-{i}\n").as_bytes());
        }
        publ.write_all(&batch).unwrap();
        for i in 0..2000 {
            assert_eq!(
                line(&mut publ_r),
                format!("line-{i}\n"),
                "{b:?} co-located {co}"
            );
        }
        // Closing: `closed` once per connection; pushes to it are dropped, not an error.
        let stale = shared.subs.lock().unwrap()[0].1.clone();
        drop(sub_r);
        drop(sub);
        wait_for("the subscriber's close", || {
            shared.closed.load(Ordering::SeqCst) == 1
        });
        stale.push(b"nobody\n".to_vec());
        publ.write_all(b"PUB late\n").unwrap();
        assert_eq!(line(&mut publ_r), "0\n");
        drop(publ_r);
        drop(publ);
        wait_for("both closed", || shared.closed.load(Ordering::SeqCst) == 2);
        assert_eq!(shared.opened.load(Ordering::SeqCst), 2);
        srv.stop();
        rt.shutdown();
    }
}
