//! The event loop under hostile conditions, through the public transport API: a protocol
//! handler that panics on bad input (only its connection goes), and running out of file
//! descriptors (the loop neither spins nor forgets the connections still waiting).

mod common;
use common::{Backend, modes, runtime};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use percore::runtime::Runtime;
use percore::runtime::config::{IoBackend, Profile};
use percore::runtime::io::{Event, IoCtx, IoHandler};
use percore::transport::{Decoded, Dispatched, Responder, Server, ServerOptions, ServerProtocol};

/// Echoes whatever arrives, answered on the event loop; panics on the byte 0xFF.
struct Echo;

impl ServerProtocol for Echo {
    type Request = Vec<u8>;

    fn decode(&self, input: &[u8]) -> Decoded<Vec<u8>> {
        if input.contains(&0xFF) {
            panic!("Echo::decode: 0xFF is not allowed");
        }
        if input.is_empty() {
            return Decoded::Incomplete;
        }
        Decoded::Request(input.to_vec(), input.len())
    }

    fn dispatch(&self, req: Vec<u8>, resp: Responder, _conn: u64) -> Dispatched<Vec<u8>> {
        Dispatched::Answer(resp.answer(req, false))
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `msg` and reads the echo back.
fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write");
    let mut got = vec![0; msg.len()];
    s.read_exact(&mut got).expect("echo");
    got
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let srv = Server::bind(
            &rt.handle(),
            "127.0.0.1:0".parse().unwrap(),
            Echo,
            ServerOptions::default(),
        )
        .unwrap();
        let addr = srv.local_addr();
        let mut good = connect(addr);
        assert_eq!(roundtrip(&mut good, b"before"), b"before", "{b:?}/{co}");

        let mut bad = connect(addr);
        bad.write_all(&[b'x', 0xFF]).unwrap();
        let mut buf = [0u8; 16];
        let r = loop {
            match bad.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("{b:?}/{co}: the panicking connection should be closed: {other:?}"),
        }

        // Same loop (one I/O worker, or the same co-located loops): still serving.
        assert_eq!(roundtrip(&mut good, b"after"), b"after", "{b:?}/{co}");
        let mut fresh = connect(addr);
        assert_eq!(roundtrip(&mut fresh, b"new"), b"new", "{b:?}/{co}");
        // The dropped connection no longer counts as open (nor against max_connections).
        let open = || srv.stats().open.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        while open() != 2 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{b:?}/{co}: {} open, 2 expected",
                open()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        srv.stop();
        rt.shutdown();
    }
}

/// CPU time (user + system) of process `pid`, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after "pid (comm) ".
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

const CHILD_ENV: &str = "PERCORE_TEST_FD_CHILD";
/// Descriptors the child may hold in all (runtime included).
const CHILD_NOFILE: u64 = 64;
const CLIENTS: usize = 100;

/// Runs in a child process (see `fd_exhaustion_neither_spins_nor_strands_connections`): with
/// RLIMIT_NOFILE at 64 (soft and hard, so the runtime cannot raise it), serves `Echo` until
/// stdin closes. Ignored on its own.
#[test]
#[ignore = "helper: runs in the child process of fd_exhaustion_neither_spins_nor_strands_connections"]
fn fd_exhaustion_child() {
    let Ok(backend) = std::env::var(CHILD_ENV) else {
        return;
    };
    let lim = libc::rlimit {
        rlim_cur: CHILD_NOFILE,
        rlim_max: CHILD_NOFILE,
    };
    // SAFETY: `lim` is a valid rlimit; lowering limits is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let rt = Runtime::builder()
        .profile(Profile::Testing)
        .io_backend(if backend == "mio" {
            IoBackend::Mio
        } else {
            IoBackend::Uring
        })
        .io_colocated(false)
        .io_workers(1)
        .accel_workers(0)
        // Explicit, so the fd-derived default does not keep the server below the limit: this
        // test is about what happens when accept itself fails.
        .max_connections(NonZeroUsize::new(1000).unwrap())
        .build()
        .expect("runtime starts");
    let srv = Server::bind(
        &rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        Echo,
        ServerOptions::default(),
    )
    .unwrap();
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    println!("ADDR {} FDS {open}", srv.local_addr());
    std::io::stdout().flush().unwrap();
    let mut sink = String::new();
    let _ = std::io::stdin().read_to_string(&mut sink);
    srv.stop();
    rt.shutdown();
}

/// Out of descriptors, the event loop pauses accepting instead of spinning (CPU time stays
/// low), and once descriptors are freed it accepts the connections that were waiting in the
/// backlog, without needing a new connection to arrive. On io_uring and mio.
#[test]
fn fd_exhaustion_neither_spins_nor_strands_connections() {
    let exe = std::env::current_exe().expect("current_exe");
    for backend in [Backend::Uring, Backend::Mio] {
        if !common::usable(backend) {
            continue;
        }
        let name = if backend == Backend::Mio {
            "mio"
        } else {
            "uring"
        };
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "fd_exhaustion_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let pid = child.id();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr: SocketAddr = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "{name}: child ended");
            // libtest may print "test fd_exhaustion_child ... " on the same line first.
            if let Some((_, rest)) = line.split_once("ADDR ") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };

        // More connections than the child has descriptors: the kernel completes the
        // handshakes (backlog); the server accepts until EMFILE.
        let mut clients: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| {
                let mut s = connect(addr);
                s.write_all(b"x").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = cpu_time(pid);
        std::thread::sleep(Duration::from_secs(1));
        let spent = cpu_time(pid) - t0;
        assert!(
            spent < Duration::from_millis(300),
            "{name}: the child used {spent:?} of CPU in 1 s while out of descriptors (spinning)"
        );

        // Serve everyone: whoever got its echo closes (freeing a descriptor in the child), so
        // the connections still waiting must be accepted without any new one arriving.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stranded_at_first = None;
        while !clients.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{name}: {} connections never served",
                clients.len()
            );
            let mut waiting = Vec::new();
            for mut c in clients.drain(..) {
                c.set_nonblocking(true).unwrap();
                let mut b = [0u8; 1];
                match c.read(&mut b) {
                    Ok(1) => {
                        assert_eq!(b[0], b'x');
                    }
                    Ok(_) => panic!("{name}: server closed a connection it should serve"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => waiting.push(c),
                    Err(e) => panic!("{name}: {e}"),
                }
            }
            stranded_at_first.get_or_insert(waiting.len());
            clients = waiting;
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            stranded_at_first.unwrap_or(0) > 0,
            "{name}: every connection was served at once; the test did not exhaust descriptors"
        );

        let mut fresh = connect(addr);
        assert_eq!(roundtrip(&mut fresh, b"again"), b"again", "{name}");
        drop(fresh);
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(status.success(), "{name}: child failed: {status}");
    }
}

/// Collects what arrives on one socket.
struct Collect {
    fd: std::os::fd::RawFd,
    got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl IoHandler for Collect {
    fn on_event(&mut self, _ctx: &mut IoCtx<'_>, event: Event<'_>) {
        if let Event::Data(d) = event {
            self.got.lock().unwrap().extend_from_slice(d);
        }
        let _ = self.fd;
    }
}

/// Runs `f` on I/O loop 0 and waits for it.
fn on_io<R: Send + 'static>(
    rt: &Runtime,
    f: impl FnOnce(&mut IoCtx<'_>) -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.handle()
        .run_on_io(0, move |ctx| {
            let _ = tx.send(f(ctx));
        })
        .unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("I/O loop answers")
}

/// `stop_recv` then `recv` again before the stop has taken effect (the cancel is still in
/// flight): receiving must resume. On io_uring's plain-recv fallback the cancel's completion
/// used to drop the receive without arming it again, stalling the connection.
#[test]
fn recv_right_after_stop_recv_resumes() {
    use std::os::fd::IntoRawFd;
    for (b, co) in modes() {
        let rt = runtime(b, co);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = connect(l.local_addr().unwrap());
        let fd = l.accept().unwrap().0.into_raw_fd();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g2 = got.clone();
        let id = on_io(&rt, move |ctx| {
            let id = ctx.register(Box::new(Collect { fd, got: g2 }));
            ctx.recv(id.token, fd);
            id
        });
        // Let the receive reach the kernel, then stop and resume it in one go.
        std::thread::sleep(Duration::from_millis(50));
        on_io(&rt, move |ctx| {
            ctx.stop_recv(fd);
            ctx.recv(id.token, fd);
        });
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.lock().unwrap().len() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(&got.lock().unwrap()[..], b"hello", "{b:?}/{co}");
        on_io(&rt, move |ctx| {
            ctx.close(fd);
            ctx.remove(id.token);
        });
        rt.shutdown();
    }
}

/// A co-located io_uring loop on a busy app worker: turns with nothing queued and no task work
/// pending read the completion ring without entering the kernel.
#[test]
fn busy_colocated_turns_skip_the_kernel_when_nothing_is_queued() {
    if !common::usable(IoBackend::Uring) {
        return;
    }
    let rt = runtime(IoBackend::Uring, true);
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // One handler, so the loop is active and polled on every scheduler turn.
    let id = on_io(&rt, move |ctx| {
        ctx.register(Box::new(Collect { fd: -1, got }))
    });
    std::thread::sleep(Duration::from_millis(50));
    let stats = rt.handle().io_stats(0).expect("loop 0 has stats");
    let (turns0, sys0) = (
        stats.turns.load(std::sync::atomic::Ordering::Relaxed),
        stats.syscalls.load(std::sync::atomic::Ordering::Relaxed),
    );
    let busy = rt
        .spawn_on(0, || async {
            for _ in 0..100_000 {
                percore::runtime::yield_now().await;
            }
        })
        .unwrap();
    rt.block_on(busy).unwrap();
    let turns = stats.turns.load(std::sync::atomic::Ordering::Relaxed) - turns0;
    let sys = stats.syscalls.load(std::sync::atomic::Ordering::Relaxed) - sys0;
    assert!(
        turns >= 100,
        "only {turns} loop turns: the test did not keep the worker busy"
    );
    assert!(
        sys * 10 < turns,
        "{sys} io_uring_enter calls in {turns} busy turns"
    );
    on_io(&rt, move |ctx| ctx.remove(id.token));
    rt.shutdown();
}
