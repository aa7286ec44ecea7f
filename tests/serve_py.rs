//! `percore serve` driven by redis-py (`tests/serve_py/redis_py_client.py`): every command
//! family, then kill -9 crash tests in real child processes: with `appendfsync always` every
//! acknowledged write survives; with `everysec` at most about the last second is lost; and
//! nothing that comes back is corrupt or out of order.

mod serve_support;

use std::process::Command;

use serve_support::{Serve, python_with_redis};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/serve_py/redis_py_client.py"
);

fn run_py(py: &std::path::Path, args: &[&str]) {
    let out = Command::new(py)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success(),
        "redis-py script {args:?} failed:\n{text}"
    );
}

#[test]
fn redis_py_every_family() {
    let Some(py) = python_with_redis() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Serve::start(dir.path(), &["--workers", "2"]);
    run_py(&py, &["families", &s.addr.port().to_string()]);
}

fn crash(fsync: &str) {
    let Some(py) = python_with_redis() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rounds = std::env::var("PERCORE_SERVE_CRASH_ROUNDS").unwrap_or_else(|_| "4".into());
    run_py(
        &py,
        &[
            "crash",
            env!("CARGO_BIN_EXE_percore"),
            &dir.path().display().to_string(),
            fsync,
            &rounds,
        ],
    );
}

#[test]
fn kill9_with_appendfsync_always_keeps_every_acknowledged_write() {
    crash("always");
}

#[test]
fn kill9_with_appendfsync_everysec_loses_at_most_about_a_second() {
    crash("everysec");
}
