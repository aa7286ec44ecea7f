//! Runs the real `percore` binary.

mod common;

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

/// `demo` runs both phases it promises, labels what its per-worker counters count, and
/// refuses `--seconds 0` (exit code 2) instead of quietly running for a second.
#[test]
fn demo_runs_its_phases_and_refuses_zero_seconds() {
    let out = percore(&["demo", "--seconds", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sharded counters:"), "{text}");
    assert!(text.contains("envelopes in"), "{text}");
    assert!(text.contains("ping-pong: 20000 asks"), "{text}");
    let zero = percore(&["demo", "--seconds", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--seconds"));
}

/// More workers than CPUs is said once, in a warning naming both numbers; log lines written to
/// a pipe carry no colour codes.
#[test]
fn too_many_workers_are_warned_about_and_pipes_get_no_colour() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cpus * 4).to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["demo", "--seconds", "1"])
        .env_remove("PERCORE_PROFILE")
        .env("RUST_LOG", "warn")
        .env("PERCORE_WORKERS", &workers)
        .output()
        .expect("the percore binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("app workers on"))
        .collect();
    assert_eq!(warned.len(), 1, "one warning: {err}");
    assert!(
        warned[0].contains(&format!("{workers} app workers on {cpus} CPUs")),
        "{}",
        warned[0]
    );
    assert!(
        !err.contains('\u{1b}'),
        "ANSI codes in a piped log: {err:?}"
    );
}

/// `percore storage check DIR`: exit 0 and "no corrupt data" on a clean store; exit 1 naming
/// the file and offset once a byte is flipped.
#[test]
fn storage_check_reports_corruption_with_file_and_offset() {
    use percore::storage::file::FileIo;
    use percore::storage::kv::{Durability, KvOptions, KvShard};
    let dir = tempfile::tempdir().unwrap();
    let rt = percore::runtime::Runtime::testing(1).unwrap();
    let io = FileIo::for_worker(&rt.handle(), 0);
    let d = dir.path().to_path_buf();
    rt.block_on(async move {
        let o = KvOptions {
            durability: Durability::Sync,
            ..KvOptions::default()
        };
        let kv = KvShard::open(io, &d, o).await.unwrap();
        for i in 0..50u32 {
            kv.put(format!("key{i}").as_bytes(), &[7; 64])
                .await
                .unwrap();
        }
        kv.close().await.unwrap();
    });
    rt.shutdown();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(["storage", "check"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let ok = run();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("50 keys") && text.contains("no corrupt data"),
        "{text}"
    );
    let seg = common::storage::corrupt_middle(dir.path());
    let bad = run();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(
        text.contains("corrupt:")
            && text.contains(&seg.display().to_string())
            && text.contains("offset"),
        "{text}"
    );
}

/// `percore info` has a storage section: the data directory's filesystem and O_DIRECT
/// alignment, the block devices, and the file I/O path (io_uring, or the blocking pool on mio).
#[test]
fn info_shows_the_storage_section_and_the_file_io_path() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let run = |io: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
            .args(["info", "--json"])
            .env("PERCORE_DATA_DIR", dir.path())
            .env("PERCORE_IO", io)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run("mio");
    let s = &v["storage"];
    assert_eq!(s["file_io"]["path"], "blocking pool", "{s}");
    let d = &s["data_dir"];
    assert!(d["fs_type"].as_str().is_some_and(|t| !t.is_empty()), "{d}");
    // The root filesystem's type as `findmnt`/`stat -f` see it, independently.
    let st = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir.path())
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&st.stdout).trim().to_string();
    let fs = d["fs_type"].as_str().unwrap();
    assert!(
        t.starts_with(fs) || fs.starts_with(&t) || (fs.starts_with("ext") && t.starts_with("ext")),
        "stat says {t}, info says {fs}"
    );
    assert!(s["block_devices"].as_array().is_some(), "{s}");
    if percore::runtime::detect::probe_io_uring()
        .missing_required()
        .is_none()
    {
        assert_eq!(run("uring")["storage"]["file_io"]["path"], "io_uring");
    }
}
