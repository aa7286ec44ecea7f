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
fn object_store_runs_and_keeps_its_objects_after_reopening() {
    run_to_completion(
        "object_store",
        &["--mib", "3"],
        "after reopening: 12 objects; notes/00.txt = Some(\"# replaced\")",
    );
}

#[test]
fn kv_store_runs_and_finds_every_key_after_reopening() {
    for d in ["sync", "none"] {
        run_to_completion(
            "kv_store",
            &["--keys", "3000", "--durability", d],
            "after reopening: 2999 keys",
        );
    }
}

/// `durable_counter` is SIGKILLed while it increments, three times; each restart shows a value
/// no smaller than the last increment it acknowledged (and at most one more: an increment
/// synced but not yet printed).
#[test]
fn durable_counter_survives_kill_9_with_no_acknowledged_increment_lost() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let mut last = 0u64;
    for round in 0..3 {
        let p = Proc::spawn("durable_counter", &["--dir", &d, "--count", "10000000"]);
        let mut acked = 0u64;
        let need = 700 + round * 437; // past a snapshot (every 1,000) by the second round
        while acked < last + need {
            let line = p
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the counter prints ACKED lines");
            if let Some(v) = line.strip_prefix("ACKED ") {
                acked = v.trim().parse().unwrap();
            }
        }
        p.signal(libc::SIGKILL);
        // Lines printed before the kill may still be in the pipe.
        while let Ok(line) = p.lines.recv_timeout(Duration::from_millis(500)) {
            if let Some(v) = line.strip_prefix("ACKED ") {
                acked = acked.max(v.trim().parse().unwrap_or(0));
            }
        }
        drop(p);
        let (status, out) =
            Proc::spawn("durable_counter", &["--dir", &d, "--show"]).wait(Duration::from_secs(60));
        assert_eq!(status.code(), Some(0), "{out}");
        let v: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("value "))
            .expect("prints its value")
            .trim()
            .parse()
            .unwrap();
        assert!(
            v >= acked && v <= acked + 1,
            "round {round}: acknowledged {acked}, found {v} after kill -9"
        );
        last = v;
    }
}

#[test]
fn ping_pong_runs_to_completion() {
    // Fewer rounds than the default 100k: debug build, and other tests share the cores.
    run_to_completion(
        "ping_pong",
        &["--rounds", "2000"],
        "same-core: 2000 round trips",
    );
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
fn supervision_restarts_the_crashed_worker_and_shows_it_in_metrics() {
    let (status, out) = Proc::spawn("supervision", &[]).wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{out}");
    for want in [
        "worker on core 0: sum 0",
        "routed  5 (the restarted parser has routed 1)",
        "pipeline: 1 restart(s); workers: 1 restart(s)",
        "percore_actor_restarts_total{actor_type=\"supervision::Worker\"} 1",
        "percore_supervisor_restarts_total{supervisor=\"root/pipeline/workers\"} 1",
        "shutdown clean: true",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn dashboard_serves_metrics_and_the_page_and_exits_0_on_sigterm() {
    serve_then_stop("dashboard", libc::SIGTERM, true, |c| {
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(c);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("percore_actors{actor_type=\"dashboard::Hasher\"}"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE dashboard_jobs_sent_total counter"),
            "{text}"
        );
        c.write_all(b"GET /dashboard HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(c);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
        assert!(String::from_utf8_lossy(&body).contains("/dashboard/state"));
        c.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, _) = read_response(c);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
    });
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

/// Reads one HTTP/1.1 response with a `Content-Length` body from `c` (keep-alive: the
/// connection stays open); returns (head, body).
fn read_response(c: &mut TcpStream) -> (String, Vec<u8>) {
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("response head") > 0,
            "EOF in head: {head:?}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("response body");
    (head, body)
}

#[test]
fn http_server_serves_and_exits_0_on_sigint() {
    serve_then_stop("http_server", libc::SIGINT, true, |c| {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = read_response(c);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
        assert_eq!(String::from_utf8_lossy(&body), "Hello, World!");
        // /json on the same connection: a JSON content type and a body that parses as JSON.
        c.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(c);
        assert!(head.starts_with("HTTP/1.1 200"), "response: {head:?}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "head: {head:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("/json body is not JSON ({e}): {body:?}"));
        assert_eq!(v["message"], "Hello, World!", "{v}");
    });
}

/// `http_client` without `--url` serves itself on an ephemeral port and fetches two routes and
/// a POST; with `--url` it fetches from another server (here the `http_server` example).
#[test]
fn http_client_fetches_from_its_own_server_and_from_http_server() {
    let (_, out) = Proc::spawn("http_client", &[]).wait(Duration::from_secs(60));
    for want in [
        "/hello -> 200 GET /hello",
        "/world -> 200 GET /world",
        "-> 200 POST /hello (9 body bytes)",
    ] {
        assert!(
            out.contains(want),
            "http_client: no {want:?} in stdout:\n{out}"
        );
    }
    let mut server = Proc::spawn("http_server", &["--addr", "127.0.0.1:0"]);
    let addr = server.listening_addr(Duration::from_secs(30));
    let url = format!("http://{addr}/json");
    let (_, out) = Proc::spawn("http_client", &["--url", &url]).wait(Duration::from_secs(60));
    assert!(
        out.contains(&format!("GET {url} -> 200 {{")),
        "http_client --url: {out}"
    );
    assert!(out.contains("Hello, World!"), "http_client --url: {out}");
    server.signal(libc::SIGTERM);
    server.wait(Duration::from_secs(10));
}

/// `tls_echo` without `--serve`: its own client handshakes (ALPN "echo") and gets its line
/// back. With `--serve`, `openssl s_client` (where installed) is echoed, then SIGTERM stops it.
#[test]
fn tls_echo_runs_and_serves_openssl_s_client() {
    let (_, out) = Proc::spawn("tls_echo", &[]).wait(Duration::from_secs(60));
    assert!(
        out.contains(r#"ALPN Some("echo"), echoed "hello over TLS\n""#),
        "tls_echo: {out}"
    );
    if Command::new("openssl").arg("version").output().is_err() {
        // CI (PERCORE_TEST_REQUIRE_CLIENTS=1) installs openssl: missing there is a failure.
        assert!(
            std::env::var("PERCORE_TEST_REQUIRE_CLIENTS").map_or(true, |v| v != "1"),
            "openssl is required here (PERCORE_TEST_REQUIRE_CLIENTS=1) but does not run"
        );
        eprintln!("openssl not installed: skipping the --serve half (CI installs it)");
        return;
    }
    let mut p = Proc::spawn("tls_echo", &["--addr", "127.0.0.1:0", "--serve"]);
    let addr = p.listening_addr(Duration::from_secs(30));
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-quiet",
            "-alpn",
            "echo",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep stdin open until the echo is back, then close it: the example echoes until EOF.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ping over tls\n").unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).expect("echoed line");
    assert_eq!(line, "ping over tls\n");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    p.signal(libc::SIGTERM);
    let (_, out) = p.wait(Duration::from_secs(10));
    assert!(out.contains("stopping"), "tls_echo: {out}");
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

/// A flag an example does not know, a flag without its value, and a value that does not parse
/// are refused in one line naming them, with exit code 2 (before anything starts).
#[test]
fn examples_refuse_bad_flags_with_exit_code_2() {
    for (name, args, says) in [
        (
            "http_server",
            &["--port", "9000"][..],
            "unknown argument \"--port\"",
        ),
        ("http_server", &["--addr"][..], "--addr needs a value"),
        (
            "http_server",
            &["--addr", "localhost:80x"][..],
            "--addr \"localhost:80x\"",
        ),
        (
            "echo_server",
            &["--accept", "sideways"][..],
            "--accept \"sideways\"",
        ),
        ("ping_pong", &["--rounds", "many"][..], "--rounds \"many\""),
    ] {
        let out = Command::new(example(name))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn example `{name}`: {e}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
        assert!(err.contains(says), "{name} {args:?}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{name} {args:?}: one line: {err:?}");
    }
}

/// An error a server example meets (its port is taken) is one readable line (Display, not
/// Debug) and exit code 1.
#[test]
fn a_failing_example_prints_its_error_with_display() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(example("http_server"))
        .args(["--addr", &addr])
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("spawn http_server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("http_server: could not listen on"),
        "a Display message: {err:?}"
    );
    assert!(!err.contains("Bind {"), "no Debug structure: {err:?}");
}
