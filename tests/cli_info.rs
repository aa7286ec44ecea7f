//! Runs the real `percore` binary.

use std::process::Command;

fn percore(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(args)
        .env_remove("PERCORE_PROFILE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the percore binary runs")
}

#[test]
fn info_json_matches_the_machine() {
    let out = percore(&["info", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| percore::runtime::detect::parse_cpu_list(&s).ok())
        .map(|v| v.len());
    if let Some(n) = online {
        assert_eq!(v["hardware"]["logical_cpus"].as_u64(), Some(n as u64));
    }
    let cfg = &v["configs"][0];
    assert_eq!(cfg["profile"], "Production");
    let app = cfg["app_workers"].as_u64().unwrap();
    assert!(app >= 1);
    assert_eq!(
        cfg["placement"]["app"].as_array().unwrap().len() as u64,
        app
    );
    assert!(v["hardware"]["io_uring"]["available"].is_boolean());
}

#[test]
fn every_profile_prints() {
    let out = percore(&["info", "--profile", "all"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for p in [
        "Development",
        "Testing",
        "Production",
        "Performance",
        "LowLatency",
        "HighThroughput",
        "Minimal",
        "Embedded",
    ] {
        assert!(text.contains(p), "missing {p} in:\n{text}");
    }
    let out = percore(&["info", "--profile", "low-latency", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["configs"][0]["profile"], "LowLatency");
    assert_eq!(v["configs"][0]["tasks_per_tick"], 16);
}

#[test]
fn bad_input_exits_2_with_one_clear_line() {
    let out = percore(&["info", "--profile", "turbo"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("profile=\"turbo\": expected one of"), "{err}");
    let out = percore(&["info", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["info", "--json"])
        .env("PERCORE_WORKERS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("PERCORE_WORKERS=\"0\": expected an integer in 1..=1024")
    );
}

#[test]
fn demo_runs_and_shuts_down_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["demo", "--seconds", "1"])
        .env("PERCORE_PROFILE", "testing")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sharded counters:"), "{text}");
    assert!(text.contains("shutdown: clean true"), "{text}");
}
