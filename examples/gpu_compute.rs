//! One training step of a tiny classifier, submitted by an actor to the accelerator worker:
//! matmul + bias + GELU, a second matmul, cross-entropy loss and gradient, the weight gradient
//! (a transposed matmul) and a fused AdamW update. Every result is checked against the CPU
//! backend. Run with `PERCORE_ACCEL=gpu` to use a software adapter such as lavapipe.
//!
//! `cargo run --release --example gpu_compute`

#[path = "common/args.rs"]
mod args;

use std::sync::Arc;
use std::time::{Duration, Instant};

use percore::accelerator::{
    Accel, AccelOptions, Activation, AdamParams, ComputeTask, Kernel, Output, Tensor, adapters, cpu,
};
use percore::runtime::{Actor, Context, Reply, Runtime};

fn mat(rows: usize, cols: usize, seed: u64, scale: f32) -> Tensor {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::f32(rows, cols, v).expect("rows * cols elements")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    match (a.as_f32(), b.as_f32()) {
        (Some(x), Some(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max),
        _ => f32::from(u8::from(a != b)),
    }
}

struct Step {
    accel: Arc<Accel>,
}

type Report = Vec<(String, String, f32, Duration)>;

enum Msg {
    Run(Reply<Report>),
}

impl Step {
    /// Submits `task`, awaits it on this app worker, and records where it ran and how far it is
    /// from the CPU backend's answer.
    async fn run(&self, name: &str, task: ComputeTask, report: &mut Report) -> Output {
        let want = cpu::run(&task, 1).expect("valid task");
        let t0 = Instant::now();
        let out = self.accel.submit(task).await.expect("task runs");
        let el = t0.elapsed();
        let diff = out
            .tensors
            .iter()
            .zip(&want)
            .map(|(a, b)| max_diff(a, b))
            .fold(0.0, f32::max);
        report.push((name.into(), format!("{:?}", out.ran), diff, el));
        out
    }
}

impl Actor for Step {
    type Msg = Msg;
    async fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        let Msg::Run(reply) = msg;
        let (batch, inp, hidden, classes) = (64, 48, 96, 10);
        let x = mat(batch, inp, 1, 1.0);
        let w1 = mat(inp, hidden, 2, 0.2);
        let b1 = mat(1, hidden, 3, 0.1);
        let w2 = mat(hidden, classes, 4, 0.2);
        let labels = Tensor::u32(
            batch,
            1,
            (0..batch as u32).map(|i| i % classes as u32).collect(),
        )
        .expect("one label per row");
        let mut r = Report::new();
        let act = Activation::Gelu;
        let h = self
            .run(
                "matmul+bias+gelu",
                ComputeTask::new(
                    Kernel::MatMul {
                        trans_a: false,
                        trans_b: false,
                        bias: true,
                        act,
                    },
                    vec![x, w1, b1],
                ),
                &mut r,
            )
            .await;
        let h = h.tensors.into_iter().next().expect("one output");
        let logits = self
            .run(
                "matmul",
                ComputeTask::new(
                    Kernel::MatMul {
                        trans_a: false,
                        trans_b: false,
                        bias: false,
                        act: Activation::None,
                    },
                    vec![h.clone(), w2.clone()],
                ),
                &mut r,
            )
            .await
            .tensors
            .remove(0);
        self.run(
            "cross-entropy",
            ComputeTask::new(Kernel::CrossEntropy, vec![logits.clone(), labels.clone()]),
            &mut r,
        )
        .await;
        let dlogits = self
            .run(
                "cross-entropy grad",
                ComputeTask::new(Kernel::CrossEntropyGrad, vec![logits, labels]),
                &mut r,
            )
            .await
            .tensors
            .remove(0);
        let dw2 = self
            .run(
                "matmul hᵀ·dlogits",
                ComputeTask::new(
                    Kernel::MatMul {
                        trans_a: true,
                        trans_b: false,
                        bias: false,
                        act: Activation::None,
                    },
                    vec![h, dlogits],
                ),
                &mut r,
            )
            .await
            .tensors
            .remove(0);
        let z = Tensor::zeros(hidden, classes);
        let adam = AdamParams {
            lr: 1e-2,
            weight_decay: 1e-2,
            ..AdamParams::default()
        };
        self.run(
            "adamw",
            ComputeTask::new(Kernel::Adam(adam), vec![w2, dw2, z.clone(), z]),
            &mut r,
        )
        .await;
        let _ = reply.send(r);
    }
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Mesa's drivers want a private runtime directory (else they print an error on each probe).
    if let Some(dir) = percore::accelerator::device::private_runtime_dir() {
        // SAFETY: the first statement of `main`: no other thread reads the environment yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
    // Shows the accelerator's one line on which backend it chose and why.
    tracing_subscriber::fmt()
        .with_env_filter("info,wgpu_hal=off,wgpu_core=warn,naga=warn")
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    println!("adapters:");
    for a in adapters() {
        println!("  {} ({}, {})", a.name, a.backend, a.kind);
    }
    let rt = Runtime::testing(2)?;
    let accel = Arc::new(Accel::start_on(
        &rt.handle(),
        AccelOptions::for_runtime(rt.handle().config())?,
    )?);
    let sel = accel.selection().cloned();
    println!(
        "accelerator: {} ({})",
        accel.adapter().map_or("CPU backend".into(), |a| a.name),
        sel.map(|s| s.reason).unwrap_or_default()
    );
    let a = accel.clone();
    let step = rt.spawn_actor_on(0, move || Step { accel: a })?;
    let report = rt.block_on(step.ask(Msg::Run, Duration::from_secs(60)))?;
    println!(
        "{:<22} {:<12} {:>12} {:>10}",
        "kernel", "ran on", "max |Δ| cpu", "time"
    );
    for (name, ran, diff, el) in &report {
        println!("{name:<22} {ran:<12} {diff:>12.2e} {:>8.2?}", el);
    }
    let st = &accel.stats()[0];
    println!(
        "worker: {} gpu tasks, {} cpu tasks, {} fallbacks; device: {:?}",
        st.gpu_tasks, st.cpu_tasks, st.fallback_tasks, st.gpu
    );
    drop(step);
    rt.shutdown();
    Ok(())
}
