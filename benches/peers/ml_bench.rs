//! percore's ML building blocks timed one thread, printing one JSON object per measure (run
//! by `benches/ml.sh` next to `benches/peers/ml_peers.py`, PyTorch / scikit-learn / numpy on
//! the same machine and the same shapes):
//! - `mlp32`, `mlp256`: forward + backward of the 64-128-10 ReLU MLP with softmax
//!   cross-entropy at batch 32 / 256, µs per step (median of `--reps` rounds).
//! - `adam10m`: one Adam step on 10 M parameters, ms; after 3 steps from a fixed start the
//!   parameters are written to `--out` (raw little-endian f32) for the peer to compare.
//! - `std1m`, `onehot1m`: StandardScaler fit+transform on 1 M x 10, OneHotEncoder fit+transform
//!   on 1 M x 2 string columns (10 and 100 categories), ms; `std1m_inplace` (transform in
//!   place, sklearn's `copy=False`) and `onehot1m_sparse` (CSR output, sklearn's default).
//! - `gemm{n}`: `accelerator::cpu::gemm` n x n x n on one thread, GFLOP/s; `gemm_small`:
//!   32x64 . 64x128, µs per call.
//!
//! Usage: ml_bench [--reps 5] [--out target/ml-bench-adam.f32]

#[path = "../../examples/common/args.rs"]
mod args;

use std::time::Instant;

use percore::ml::nn::{Linear, Module, Relu, Sequential};
use percore::ml::optim::{Adam, AdamConfig, Optimizer};
use percore::ml::preprocess::{OneHotEncoder, StandardScaler, Transformer, Unknown};
use percore::ml::{Init, Rng, Tape, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The start values both sides use: `p_i = sin(i)`, `g_i = cos(0.7 i) * 0.01`.
fn adam_inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    (
        (0..n).map(|i| (i as f64).sin() as f32).collect(),
        (0..n)
            .map(|i| ((0.7 * i as f64).cos() * 0.01) as f32)
            .collect(),
    )
}

fn main() -> std::process::ExitCode {
    args::report(run())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let a = args::Args::parse(
        &["--reps", "--out"],
        &[],
        "ml_bench [--reps N] [--out FILE]",
    );
    let reps: usize = a.get_or("--reps", 5);
    let out: String = a.get_or("--out", "target/ml-bench-adam.f32".to_string());

    // MLP forward + backward.
    for batch in [32usize, 256] {
        let mut rng = Rng::seed(0);
        let mut net = Sequential::<f32>::new()
            .push(Linear::new(64, 128, Init::KaimingUniform, &mut rng))
            .push(Relu)
            .push(Linear::new(128, 10, Init::TorchDefault, &mut rng));
        let x = Tensor::new(
            &[batch, 64],
            (0..batch * 64).map(|_| rng.uniform() as f32).collect(),
        )?;
        let y: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        let steps = if batch == 32 { 2000 } else { 500 };
        let mut per = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            for _ in 0..steps {
                let tape = Tape::new();
                let loss = net
                    .forward(tape.leaf(x.clone()), true)?
                    .softmax_cross_entropy(&y, 0.0)?;
                net.zero_grad();
                tape.backward(loss)?.accumulate(&mut net.params_mut())?;
            }
            per.push(t.elapsed().as_secs_f64() * 1e6 / steps as f64);
        }
        println!(
            "{{\"measure\": \"mlp{batch}\", \"unit\": \"us/step\", \"value\": {:.2}}}",
            median(per)
        );
    }

    // Adam on 10 M parameters.
    let n = 10_000_000;
    let (p0, g0) = adam_inputs(n);
    let mut p = percore::ml::nn::Param::new(Tensor::new(&[n], p0)?);
    p.grad = Tensor::new(&[n], g0)?;
    let mut opt = Adam::new(AdamConfig::default());
    for _ in 0..3 {
        opt.step(&mut [&mut p])?;
    }
    let bytes: Vec<u8> = p
        .value
        .data()
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&out, bytes)?;
    let mut per = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        opt.step(&mut [&mut p])?;
        per.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{{\"measure\": \"adam10m\", \"unit\": \"ms/step\", \"value\": {:.2}, \"out\": \"{out}\"}}",
        median(per)
    );

    // Preprocessing on 1 M rows.
    let rows = 1_000_000;
    let mut rng = Rng::seed(5);
    let x = Tensor::new(
        &[rows, 10],
        (0..rows * 10).map(|_| rng.normal() * 3.0 + 1.0).collect(),
    )?;
    let cats: Vec<Vec<String>> = (0..rows)
        .map(|i| vec![format!("c{}", i % 10), format!("k{}", (i * 7919) % 100)])
        .collect();
    let mut s_ms = Vec::new();
    let mut o_ms = Vec::new();
    let (mut si_ms, mut os_ms) = (Vec::new(), Vec::new());
    for _ in 0..reps.min(3) {
        let mut xi = x.clone();
        let t = Instant::now();
        let mut s = StandardScaler::default();
        s.fit(&xi)?;
        s.transform_in_place(&mut xi)?;
        std::hint::black_box(&xi);
        si_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let mut o = OneHotEncoder::new(Unknown::Error);
        o.fit(&cats)?;
        std::hint::black_box(o.transform_sparse(&cats)?);
        os_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let mut s = StandardScaler::default();
        std::hint::black_box(s.fit_transform(&x)?);
        s_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let mut o = OneHotEncoder::new(Unknown::Error);
        o.fit(&cats)?;
        std::hint::black_box(o.transform(&cats)?);
        o_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{{\"measure\": \"std1m\", \"unit\": \"ms\", \"value\": {:.1}}}",
        median(s_ms)
    );
    println!(
        "{{\"measure\": \"onehot1m\", \"unit\": \"ms\", \"value\": {:.1}}}",
        median(o_ms)
    );
    println!(
        "{{\"measure\": \"std1m_inplace\", \"unit\": \"ms\", \"value\": {:.1}}}",
        median(si_ms)
    );
    println!(
        "{{\"measure\": \"onehot1m_sparse\", \"unit\": \"ms\", \"value\": {:.1}}}",
        median(os_ms)
    );

    // GEMM, one thread.
    for n in [128usize, 512, 1024, 2048] {
        let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.2).collect();
        let mut c = vec![0f32; n * n];
        let iters = (4e9 / (2.0 * (n * n * n) as f64)).clamp(1.0, 2000.0) as usize;
        let mut g = Vec::new();
        for _ in 0..reps.min(3) {
            let t = Instant::now();
            for _ in 0..iters {
                percore::accelerator::cpu::gemm(&a, &b, &mut c, (n, n, n), false, false, 1)?;
            }
            g.push(2.0 * (n * n * n * iters) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        println!(
            "{{\"measure\": \"gemm{n}\", \"unit\": \"GFLOP/s\", \"value\": {:.1}}}",
            median(g)
        );
    }
    let (m, k, nn) = (32, 64, 128);
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * nn];
    let mut c = vec![0f32; m * nn];
    let mut per = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for _ in 0..20_000 {
            percore::accelerator::cpu::gemm(&a, &b, &mut c, (m, nn, k), false, false, 1)?;
        }
        per.push(t.elapsed().as_secs_f64() * 1e6 / 20_000.0);
    }
    println!(
        "{{\"measure\": \"gemm_small\", \"unit\": \"us/call\", \"value\": {:.2}}}",
        median(per)
    );
    Ok(())
}
