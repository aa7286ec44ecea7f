//! Runs the real example binaries (built by `cargo test` into `target/<profile>/examples/`):
//! the batch examples must finish with status 0 and print their summary, and the servers must
//! follow the project's process conventions: print `listening on ADDR` once bound (an ephemeral
//! port with `--addr 127.0.0.1:0`), serve on that address, and exit 0 by themselves on SIGTERM
//! or SIGINT.
//!
//! `cargo test` builds the examples first; `cargo test --test examples_run` alone does not
//! (run `cargo build --examples` before it, or the binaries found may be stale or missing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The path of example `name`, next to this test binary's `deps/` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example `{name}` not found at {} (cargo test builds examples; was it renamed?)",
        path.display()
    );
    path
}

/// A running example: killed and reaped on drop, so a failing test leaves no process behind.
/// Its stdout lines arrive on `lines`; stderr is collected for failure messages.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut child = Command::new(example(name))
            .args(args)
            .env_remove("PERCORE_PROFILE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn example `{name}`: {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            name,
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Reads stdout until a line starts with `listening on `, and parses the address after it.
    fn listening_addr(&mut self, within: Duration) -> SocketAddr {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        return rest.trim().parse().unwrap_or_else(|e| {
                            panic!("{}: bad address in {line:?}: {e}", self.name)
                        });
                    }
                }
                Err(e) => panic!(
                    "{}: no `listening on` line within {within:?} ({e}); stdout so far: {:?}",
                    self.name, self.stdout
                ),
            }
        }
    }

    /// Waits for the process to exit by itself; returns its status and its whole stdout.
    fn wait(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.stdout.extend(self.lines.try_iter());
                panic!(
                    "{}: still running after {within:?}; stdout so far: {:?}",
                    self.name, self.stdout
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The pipe closes at exit: the reader thread ends and the channel drains fully.
        self.stdout.extend(self.lines.iter());
        let stdout = self.stdout.join("\n");
        if !status.success() {
            let stderr = self.stderr.take().and_then(|h| h.join().ok());
            let stderr = stderr.unwrap_or_default();
            panic!(
                "{}: exited with {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                self.name
            );
        }
        (status, stdout)
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped yet, so the pid is ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig}): {}", std::io::Error::last_os_error());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a batch example to completion and checks its stdout holds `expect`.
fn run_to_completion(name: &'static str, args: &[&str], expect: &str) {
    let (status, out) = Proc::spawn(name, args).wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0));
    assert!(
        out.contains(expect),
        "{name}: no {expect:?} in stdout:\n{out}"
    );
}

#[test]
fn quickstart_runs_to_completion() {
    run_to_completion("quickstart", &[], "shutdown clean: true");
}

#[test]
fn ping_pong_runs_to_completion() {
    // Fewer rounds than the default 100k: debug build, and other tests share the cores.
    run_to_completion("ping_pong", &["2000"], "same-core: 2000 round trips");
}

#[test]
fn profiles_runs_to_completion() {
    run_to_completion("profiles", &[], "Rules for each value");
}

/// Starts a server example on an ephemeral port, checks it serves with `probe`, sends `sig`
/// and expects a clean exit 0 within 10 s, with the stop announced on stdout (and, where the
/// example prints its shutdown report, `clean: true`).
fn serve_then_stop(
    name: &'static str,
    sig: libc::c_int,
    reports_clean: bool,
    probe: impl FnOnce(&mut TcpStream),
) {
    let mut p = Proc::spawn(name, &["--addr", "127.0.0.1:0"]);
    let addr = p.listening_addr(Duration::from_secs(30));
    assert_ne!(addr.port(), 0, "{name}: printed the unbound port");
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{name}: connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    probe(&mut conn);
    drop(conn);
    p.signal(sig);
    let (status, out) = p.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(out.contains("stopping"), "{name}: no stop message:\n{out}");
    if reports_clean {
        assert!(out.contains("stopped (clean: true)"), "{name}:\n{out}");
    }
}

#[test]
fn echo_server_serves_and_exits_0_on_sigterm() {
    serve_then_stop("echo_server", libc::SIGTERM, true, |c| {
        // Raw-bytes mode (no `--framed`): whatever is written comes back unchanged.
        let msg = b"hello percore\n";
        c.write_all(msg).unwrap();
        let mut back = [0u8; 14];
        c.read_exact(&mut back).expect("echo reply");
        assert_eq!(&back, msg);
    });
}

#[test]
fn http_server_serves_and_exits_0_on_sigint() {
    serve_then_stop("http_server", libc::SIGINT, true, |c| {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = Vec::new();
        c.read_to_end(&mut resp).expect("HTTP response");
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 200"), "response: {resp:?}");
        assert!(resp.ends_with("Hello, World!"), "response: {resp:?}");
    });
}

#[test]
fn custom_protocol_serves_and_exits_0_on_sigterm() {
    serve_then_stop("custom_protocol", libc::SIGTERM, true, |c| {
        c.write_all(b"INCR apples\nINCR apples\nGET pears\n")
            .unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let answers: Vec<String> = (0..3)
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).expect("answer line");
                line
            })
            .collect();
        assert_eq!(answers, ["1\n", "2\n", "0\n"]);
    });
}
