//! `percore info` shows the accelerator: adapters, policy and selection, in JSON and as a table.

use std::process::Command;

fn percore(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percore"));
    c.args(args)
        .env_remove("PERCORE_PROFILE")
        .env_remove("PERCORE_ACCEL")
        .env_remove("WGPU_BACKEND")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the percore binary runs")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn info_lists_the_same_adapters_as_the_library() {
    let v = json(&percore(&["info", "--json"], &[]));
    let acc = &v["accelerator"];
    let list = acc["adapters"].as_array().expect("adapters array");
    let lib = percore::accelerator::adapters();
    assert_eq!(list.len(), lib.len());
    for (j, a) in list.iter().zip(&lib) {
        assert_eq!(j["name"], a.name.as_str());
        assert_eq!(j["backend"], a.backend.as_str());
        assert_eq!(
            j["limits"]["max_storage_buffer_binding_size"].as_u64(),
            Some(a.limits.max_storage_buffer_binding_size)
        );
    }
    assert_eq!(acc["policy"], "auto");
    let want = percore::accelerator::choose(percore::accelerator::AccelBackend::Auto, &lib);
    assert_eq!(
        acc["selected"]["backend"],
        if want.adapter.is_some() { "gpu" } else { "cpu" }
    );
    let table = percore(&["info"], &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("Accelerator (policy auto"), "{text}");
    for a in &lib {
        assert!(text.contains(&a.name), "{text}");
    }
}

#[test]
fn info_honours_percore_accel_and_hidden_apis() {
    let v = json(&percore(&["info", "--json"], &[("PERCORE_ACCEL", "cpu")]));
    assert_eq!(v["accelerator"]["policy"], "cpu");
    assert_eq!(v["accelerator"]["selected"]["backend"], "cpu");
    let v = json(&percore(
        &["info", "--json"],
        &[("PERCORE_ACCEL", "gpu"), ("WGPU_BACKEND", "metal")],
    ));
    assert_eq!(
        v["accelerator"]["adapters"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(v["accelerator"]["selected"]["backend"], "cpu");
    let out = percore(&["info"], &[("PERCORE_ACCEL", "fast")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PERCORE_ACCEL") && err.contains("auto, gpu or cpu"),
        "{err}"
    );
}
