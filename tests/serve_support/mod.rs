//! Helpers for the `percore serve` tests: start the real binary (or a real redis-server) on a
//! free port, talk RESP over a plain socket with a reply parser written here independently of
//! the server's, and find the external clients (redis-cli, redis-server, redis-benchmark,
//! Python with redis-py). With `PERCORE_TEST_REQUIRE_CLIENTS=1` (set by CI) a missing client
//! fails the test instead of skipping it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The same reply with arrays' elements sorted (for sets and hashes, whose order differs
    /// between servers). `pairs`: sort pairs (HGETALL) instead of single elements.
    pub fn sorted(self, pairs: bool) -> Reply {
        match self {
            Reply::Array(Some(mut v)) => {
                if pairs {
                    let mut ps: Vec<Vec<Reply>> = v.chunks(2).map(<[Reply]>::to_vec).collect();
                    ps.sort_by_key(|p| format!("{p:?}"));
                    v = ps.concat();
                } else {
                    v.sort_by_key(|r| format!("{r:?}"));
                }
                Reply::Array(Some(v))
            }
            r => r,
        }
    }

    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }
}

/// A RESP connection.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Conn {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    pub fn send_raw(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("write");
    }

    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.send_raw(&Self::encode(&a));
        self.read()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read line");
        assert!(l.ends_with("\r\n"), "reply line without CRLF: {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    pub fn read(&mut self) -> Reply {
        let l = self.line();
        let (t, rest) = l.split_at(1);
        match t {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().expect("integer")),
            "$" => {
                let n: i64 = rest.parse().expect("bulk length");
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut b = vec![0; n as usize + 2];
                self.r.read_exact(&mut b).expect("bulk");
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
            "*" => {
                let n: i64 = rest.parse().expect("array length");
                if n < 0 {
                    return Reply::Array(None);
                }
                Reply::Array(Some((0..n).map(|_| self.read()).collect()))
            }
            _ => panic!("bad reply line {l:?}"),
        }
    }

    /// True once the server has closed the connection (reads EOF).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// Whether CI requires every external client.
pub fn require_clients() -> bool {
    std::env::var("PERCORE_TEST_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// Finds an external program; `None` (with a note) when it is missing and CI does not
/// require it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        assert!(
            !require_clients(),
            "{name} is required (PERCORE_TEST_REQUIRE_CLIENTS=1) but not installed"
        );
        eprintln!("note: {name} not installed; skipping");
    }
    found
}

/// A Python with redis-py: `PERCORE_TEST_PYTHON`, else `python3` if it imports redis.
pub fn python_with_redis() -> Option<PathBuf> {
    let cand = std::env::var_os("PERCORE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&cand)
        .args(["-c", "import redis"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !require_clients(),
            "Python with redis-py is required (PERCORE_TEST_REQUIRE_CLIENTS=1): set PERCORE_TEST_PYTHON"
        );
        eprintln!("note: no Python with redis-py; skipping");
        return None;
    }
    Some(cand)
}

/// A running `percore serve`.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    /// The HTTP admin face's address, when started with `--admin`.
    pub admin: Option<SocketAddr>,
    pub dir: PathBuf,
    pub args: Vec<String>,
}

impl Serve {
    /// Starts `percore serve` with `extra` flags on a free port, data in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Serve {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--port".into(),
            "0".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start percore serve");
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let first = lines
            .next()
            .expect("a line from percore serve")
            .expect("read stdout");
        let addr: SocketAddr = first
            .strip_prefix("listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("address");
        let admin = extra.contains(&"--admin").then(|| {
            let l = lines.next().expect("the admin line").expect("read stdout");
            l.strip_prefix("admin HTTP on ")
                .unwrap_or_else(|| panic!("unexpected second line {l:?}"))
                .parse()
                .expect("admin address")
        });
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Serve {
            child,
            addr,
            admin,
            dir: dir.to_path_buf(),
            args,
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                assert!(st.success(), "percore serve exited with {st}");
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A real redis-server with persistence off, on a free port.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    pub fn start(bin: &Path) -> RedisServer {
        let port = free_port();
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, addr }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p PORT args...` and returns its stdout.
pub fn redis_cli(cli: &Path, addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
