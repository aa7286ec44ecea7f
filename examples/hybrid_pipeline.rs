//! A hybrid pipeline: a CPU stage decodes raw sensor text into a matrix, GPU stages filter it
//! (a banded smoothing matrix as one matmul, then a ReLU threshold; the intermediate stays on
//! the device), and a CPU stage reduces each channel to summary statistics. The same pipeline
//! then runs on a CPU-only worker and the answers are compared; finally `Place::Auto` stages
//! are placed by the measured crossover of the device. Run with `PERCORE_ACCEL=gpu` to use a
//! software adapter such as lavapipe.
//!
//! `cargo run --release --example hybrid_pipeline`

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use percore::accelerator::{
    Accel, AccelBackend, AccelError, AccelOptions, Activation, Kernel, Pipeline, Place, Tensor,
    UnaryOp,
};

const CHANNELS: usize = 24;
const SAMPLES: usize = 200;

/// Raw input: one line per channel, comma-separated integer readings.
fn raw_text() -> String {
    let mut s = String::new();
    let mut x = 12345u32;
    for c in 0..CHANNELS {
        let line: Vec<String> = (0..SAMPLES)
            .map(|t| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let noise = (x >> 16) % 200;
                let signal = ((t as f32 / 9.0 + c as f32).sin() * 400.0) as i32 + 500;
                (signal + noise as i32).to_string()
            })
            .collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

/// CPU stage: text bytes (as `u32` codes) -> `CHANNELS x SAMPLES` floats.
fn decode(x: Vec<Tensor>) -> Result<Vec<Tensor>, AccelError> {
    let codes = x
        .first()
        .and_then(|t| t.as_u32())
        .ok_or_else(|| AccelError::Pipeline("decode wants the raw bytes as u32".into()))?;
    let text: String = codes.iter().map(|c| char::from(*c as u8)).collect();
    let mut v = Vec::with_capacity(CHANNELS * SAMPLES);
    for line in text.lines() {
        for f in line.split(',') {
            let n: f32 = f
                .trim()
                .parse()
                .map_err(|e| AccelError::Pipeline(format!("bad reading {f:?}: {e}")))?;
            v.push(n / 1000.0);
        }
    }
    let rows = text.lines().count();
    Ok(vec![Tensor::f32(rows, v.len() / rows.max(1), v)?])
}

/// The filter: a `SAMPLES x SAMPLES` banded matrix averaging 9 neighbours (x · band smooths
/// every row), and a bias of -0.5 so the ReLU keeps only readings above the threshold.
fn filter_weights() -> (Tensor, Tensor) {
    let mut band = vec![0.0f32; SAMPLES * SAMPLES];
    for j in 0..SAMPLES {
        let lo = j.saturating_sub(4);
        let hi = (j + 4).min(SAMPLES - 1);
        for i in lo..=hi {
            band[i * SAMPLES + j] = 1.0 / (hi - lo + 1) as f32;
        }
    }
    (
        Tensor::f32(SAMPLES, SAMPLES, band).expect("square"),
        Tensor::f32(1, SAMPLES, vec![-0.5; SAMPLES]).expect("one bias per column"),
    )
}

/// CPU stage: per channel, the mean of the filtered signal and the fraction above threshold.
fn reduce(x: Vec<Tensor>) -> Result<Vec<Tensor>, AccelError> {
    let t = x
        .first()
        .ok_or_else(|| AccelError::Pipeline("reduce wants one input".into()))?;
    let v = t
        .as_f32()
        .ok_or_else(|| AccelError::Pipeline("reduce wants f32".into()))?;
    let mut out = Vec::with_capacity(t.rows() * 2);
    for row in v.chunks(t.cols().max(1)) {
        let mean = row.iter().sum::<f32>() / row.len() as f32;
        let above = row.iter().filter(|x| **x > 0.0).count() as f32 / row.len() as f32;
        out.extend([mean, above]);
    }
    Ok(vec![Tensor::f32(t.rows(), 2, out)?])
}

fn pipeline(place: Place) -> Pipeline {
    let (band, bias) = filter_weights();
    Pipeline::new()
        .host("decode", decode)
        .kernel(
            Kernel::MatMul {
                trans_a: false,
                trans_b: false,
                bias: true,
                act: Activation::Relu,
            },
            vec![band, bias],
            place,
        )
        .kernel(Kernel::Unary(UnaryOp::Scale(2.0)), vec![], place)
        .host("reduce", reduce)
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
    tracing_subscriber::fmt()
        .with_env_filter("info,wgpu_hal=off,wgpu_core=warn,naga=warn")
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let text = raw_text();
    let input = Tensor::u32(1, text.len(), text.bytes().map(u32::from).collect())?;
    println!(
        "input: {} bytes of text, {CHANNELS} channels x {SAMPLES} samples",
        text.len()
    );

    let accel = Accel::start(AccelOptions::from_env()?)?;
    println!(
        "accelerator: {}",
        accel.adapter().map_or("CPU backend".into(), |a| a.name)
    );
    let t0 = Instant::now();
    let out = accel
        .run_pipeline(pipeline(Place::Device), vec![input.clone()])
        .wait()?;
    println!("stages {:?} in {:.2?}", out.stages, t0.elapsed());

    let cpu = Accel::start(AccelOptions::default().backend(AccelBackend::Cpu))?;
    let want = cpu
        .run_pipeline(pipeline(Place::Device), vec![input.clone()])
        .wait()?;
    let (a, b) = (
        out.tensors[0].as_f32().unwrap_or(&[]),
        want.tensors[0].as_f32().unwrap_or(&[]),
    );
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!(
        "CPU-only worker: stages {:?}, max |Δ| {diff:.2e}",
        want.stages
    );
    for (c, row) in a.chunks(2).take(4).enumerate() {
        println!(
            "  channel {c}: mean {:.4}, above threshold {:.0}%",
            row[0],
            row[1] * 100.0
        );
    }

    let c = accel.calibrate()?;
    println!(
        "crossover for {}: GPU from {} flops; samples (n, cpu us, gpu us): {:?}",
        c.device,
        c.min_gpu_flops
            .map_or("never (no size won)".into(), |f| format!("{f:.0}")),
        c.samples
            .iter()
            .map(|(n, a, b)| (*n, a.round(), b.round()))
            .collect::<Vec<_>>()
    );
    let auto = accel
        .run_pipeline(pipeline(Place::Auto), vec![input])
        .wait()?;
    println!("Place::Auto: stages {:?}", auto.stages);
    Ok(())
}
