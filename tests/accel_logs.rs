//! The accelerator's log lines: one line per worker saying which backend it chose and why
//! (a warning when a GPU was asked for and none is usable), and one warning per worker and
//! cause when work is rerouted to the CPU backend.

mod common;

use common::logbuf::Buf;

use percore::accelerator::{
    Accel, AccelBackend, AccelOptions, ApiSet, ComputeTask, Kernel, Ran, Tensor, UnaryOp,
};

fn lines<'a>(log: &'a str, pat: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(pat)).collect()
}

#[test]
fn backend_choice_and_reroutes_are_logged_once() {
    let buf = Buf::default();
    let b2 = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,wgpu_hal=off,wgpu_core=off,naga=off")
        .with_ansi(false)
        .with_writer(move || b2.clone())
        .init();

    drop(Accel::start(AccelOptions::default().backend(AccelBackend::Cpu)).unwrap());
    let log = buf.take();
    let chosen = lines(&log, "accelerator backend chosen");
    assert_eq!(chosen.len(), 1, "{log}");
    assert!(
        chosen[0].contains("INFO")
            && chosen[0].contains("backend=\"cpu\"")
            && chosen[0].contains("policy cpu"),
        "{log}"
    );

    drop(
        Accel::start(
            AccelOptions::default()
                .backend(AccelBackend::Gpu)
                .apis(ApiSet::METAL),
        )
        .unwrap(),
    );
    let log = buf.take();
    let chosen = lines(&log, "accelerator backend chosen");
    assert_eq!(chosen.len(), 1, "{log}");
    assert!(
        chosen[0].contains("WARN") && chosen[0].contains("no wgpu adapter"),
        "{log}"
    );

    let accel = Accel::start(AccelOptions::default().backend(AccelBackend::Gpu)).unwrap();
    if accel.adapter().is_none() {
        eprintln!("NOTE: no wgpu adapter on this machine; reroute warning not checked");
        return;
    }
    let log = buf.take();
    assert!(
        lines(&log, "accelerator backend chosen")[0].contains("backend=\"gpu\""),
        "{log}"
    );
    accel.destroy_devices();
    let t = ComputeTask::new(
        Kernel::Unary(UnaryOp::Tanh),
        vec![Tensor::f32(1, 3, vec![0.5, 1.0, 2.0]).unwrap()],
    );
    for _ in 0..3 {
        assert_eq!(
            accel.submit(t.clone()).wait().unwrap().ran,
            Ran::CpuFallback
        );
    }
    drop(accel);
    let log = buf.take();
    let warned = lines(&log, "rerouted to the CPU backend");
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("device-lost"),
        "{log}"
    );
}
