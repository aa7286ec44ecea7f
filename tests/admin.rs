//! The admin server on real sockets: `/metrics` passes `promtool check metrics` and shows
//! restarts, dead letters and user metrics; `/health`; `/ready` turns 503 for a stalled worker
//! and for an escalation at the root; `/dashboard` shows live numbers in headless Chromium
//! (and leaves a screenshot in target/).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use percore::runtime::supervision::{Backoff, ChildSpec, SupervisorSpec};
use percore::runtime::{Actor, Context, Runtime};
use percore::transport::admin::AdminExt;

/// A plain HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn runtime() -> Runtime {
    common::runtime(percore::runtime::config::IoBackend::Mio, false)
}

struct Flaky;
impl Actor for Flaky {
    type Msg = u32;
    async fn handle(&mut self, n: u32, _ctx: &mut Context<Self>) {
        assert!(n != 13, "poison message {n}");
    }
}

#[test]
fn metrics_pass_promtool_and_show_restarts_dead_letters_and_user_series() {
    let rt = runtime();
    let admin = rt.serve_admin("127.0.0.1:0".parse().unwrap()).unwrap();
    let sup = rt
        .handle()
        .supervisor(SupervisorSpec::one_for_one("flaky \"workers\"").backoff(Backoff::none()));
    let a = sup.spawn_on(1, ChildSpec::permanent(), || Flaky).unwrap();
    let plain = rt.spawn_actor_on(0, || Flaky).unwrap();
    let jobs = rt
        .handle()
        .metrics_registry()
        .counter_with("jobs_total", "Jobs done.", &[("queue", "a\\b\"c\nd")])
        .unwrap();
    jobs.add(41);
    jobs.inc();
    let lat = rt
        .handle()
        .metrics_registry()
        .histogram("job_seconds", "Job latency.", &[0.01, 0.1, 1.0])
        .unwrap();
    lat.observe(0.05);
    rt.block_on(async {
        for n in [1, 13, 2, 3] {
            a.tell(n).await.unwrap();
        }
        plain.tell(13).await.unwrap();
        plain.stopped().await;
    });
    let end = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, text) = get(admin.local_addr(), "/metrics");
        assert_eq!(status, 200);
        if text.contains("percore_actor_restarts_total{actor_type=\"admin::Flaky\"} 1")
            || Instant::now() > end
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    for want in [
        "percore_actor_restarts_total{actor_type=\"admin::Flaky\"} 1",
        "percore_actor_failures_total{actor_type=\"admin::Flaky\"} 2",
        "percore_actors{actor_type=\"admin::Flaky\"} 1",
        "percore_supervisor_restarts_total{supervisor=\"root/flaky \\\"workers\\\"\"} 1",
        "percore_dead_letters_total{actor=\"admin::Flaky\"} 2",
        "jobs_total{queue=\"a\\\\b\\\"c\\nd\"} 42",
        "job_seconds_bucket{le=\"0.1\"} 1",
        "percore_ready 1",
        "percore_busy_seconds_total{worker=\"1\"}",
        "percore_io_handlers{loop=\"0\",backend=\"mio\"}",
        "# TYPE percore_actor_handler_seconds histogram",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    if common::client_available("promtool", "--version") {
        let mut p = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // promtool's lint findings (naming conventions) go to stdout even on success.
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool lint: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if common::client_available("curl", "--version") {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("http://{}/health", admin.local_addr())])
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], "alive");
        assert_eq!(v["workers"], 2);
    }
}

#[test]
fn ready_turns_503_for_a_stalled_worker_and_for_a_root_escalation() {
    let rt = runtime();
    let admin = rt.serve_admin("127.0.0.1:0".parse().unwrap()).unwrap();
    let (s, body) = get(admin.local_addr(), "/ready");
    assert_eq!(s, 200, "{body}");
    // A task that blocks its worker's thread: not turning.
    let h = rt
        .spawn_on(1, || async {
            std::thread::sleep(Duration::from_millis(2500));
        })
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, body) = get(admin.local_addr(), "/ready");
        if s == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["stalled_workers"], serde_json::json!([1]));
            assert_eq!(v["ready"], false);
            break;
        }
        assert!(Instant::now() < end, "never 503: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(h).unwrap();
    let (s, body) = get(admin.local_addr(), "/ready");
    assert_eq!(s, 200, "turning again: {body}");
    // A crash loop directly under the root: the root gives up on it and the runtime is
    // degraded.
    struct Crasher;
    impl Actor for Crasher {
        type Msg = ();
        async fn started(&mut self, _ctx: &mut Context<Self>) {
            panic!("cannot start");
        }
        async fn handle(&mut self, _m: (), _ctx: &mut Context<Self>) {}
    }
    let c = rt
        .handle()
        .root_supervisor()
        .spawn_on(0, ChildSpec::permanent(), || Crasher)
        .unwrap();
    rt.block_on(c.stopped());
    let (s, body) = get(admin.local_addr(), "/ready");
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("\"supervision_degraded\":true"), "{body}");
    let (s, _) = get(admin.local_addr(), "/health");
    assert_eq!(s, 200, "alive though not ready");
}

/// Busy work for the dashboard to show: a supervised ping actor fed by a task.
struct Ping;
impl Actor for Ping {
    type Msg = u64;
    async fn handle(&mut self, n: u64, _ctx: &mut Context<Self>) {
        assert!(n % 5000 != 4999, "every 5000th message is poison");
    }
}

#[test]
fn dashboard_shows_live_numbers_in_headless_chromium() {
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        assert!(
            common::client_available("chromium", "--version"),
            "unreachable: client_available panics when clients are required"
        );
        return;
    };
    let rt = runtime();
    let admin = rt.serve_admin("127.0.0.1:0".parse().unwrap()).unwrap();
    admin.add_dashboard_section("training", || serde_json::json!({"epoch": 3, "loss": 0.25}));
    let sup = rt.handle().supervisor(
        SupervisorSpec::one_for_one("pingers")
            .intensity(1000, Duration::from_secs(1))
            .backoff(Backoff::none()),
    );
    let p = sup.spawn_on(1, ChildSpec::permanent(), || Ping).unwrap();
    let feeder = rt
        .spawn_on(0, move || async move {
            let mut i = 0u64;
            loop {
                if p.tell(i).await.is_err() {
                    break;
                }
                i += 1;
                if i.is_multiple_of(256) {
                    percore::runtime::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .unwrap();
    let url = format!("http://{}/dashboard", admin.local_addr());
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let profile = tempfile::tempdir().unwrap();
    let dom = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            "--virtual-time-budget=6000",
            "--dump-dom",
            &url,
        ])
        .output()
        .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    let updates: u32 = html
        .split("data-updates=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        updates >= 2,
        "the page never updated twice: {}\n{html}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(html.contains("class=\"pill ok\">ready<"), "{html}");
    assert!(html.contains("admin::Ping"), "actor type row: {html}");
    assert!(html.contains("pingers"), "supervision tree: {html}");
    assert!(
        html.contains("&quot;epoch&quot;: 3") || html.contains("\"epoch\": 3"),
        "{html}"
    );
    // Live figures from the running workload: the poison messages have restarted the pinger
    // (a restart count in the tree), and a worker row with its busy bar is there. (Rates over
    // two polls are not asserted: under the virtual clock two polls can be milliseconds apart.)
    assert!(html.contains("↻"), "no restart count in the tree: {html}");
    assert!(html.contains("class=\"bar\""), "no worker busy bar: {html}");
    let shot = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--virtual-time-budget=6000",
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} B",
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
    sup.stop();
    rt.block_on(feeder).unwrap();
}
