//! GPU (WGSL on whatever adapter `PERCORE_ACCEL=gpu` finds, lavapipe in CI) against the CPU
//! backend on random shapes, including sizes that are not multiples of the matmul's 64-wide
//! tile (or its K step of 16) nor of the 64-wide row workgroup.
#![cfg(feature = "gpu")]

mod common;
use common::accel::{act, mat_scaled as mat};
use std::sync::{Mutex, OnceLock};

use percore::accelerator::gpu::{GpuDevice, run_once};
use percore::accelerator::{
    AccelBackend, AccelOptions, Activation, AdamParams, BinaryOp, ComputeTask, Kernel, Reduce,
    Tensor, UnaryOp, cpu,
};
use proptest::prelude::*;

/// One device for the whole test binary (opening lavapipe costs ~100 ms).
fn device() -> Option<&'static Mutex<GpuDevice>> {
    static DEV: OnceLock<Option<Mutex<GpuDevice>>> = OnceLock::new();
    DEV.get_or_init(|| {
        let (sel, dev) = GpuDevice::open(&AccelOptions::default().backend(AccelBackend::Gpu));
        if dev.is_none() {
            eprintln!(
                "NOTE: no wgpu adapter on this machine ({}); GPU comparisons skipped",
                sel.reason
            );
        }
        dev.map(Mutex::new)
    })
    .as_ref()
}

fn both(task: &ComputeTask) -> Option<(Vec<Tensor>, Vec<Tensor>)> {
    let dev = device()?;
    let mut d = dev.lock().unwrap_or_else(|p| p.into_inner());
    let g = run_once(&mut d, task).expect("GPU run");
    let c = cpu::run(task, 2).expect("CPU run");
    Some((g, c))
}

/// Relative-plus-absolute closeness, with the first bad index in the message.
fn assert_close(g: &[f32], c: &[f32], tol: f32, what: &str) {
    assert_eq!(g.len(), c.len(), "{what}: lengths");
    for (i, (x, y)) in g.iter().zip(c).enumerate() {
        let ok = (x - y).abs() <= tol * (1.0 + y.abs()) || (x.is_nan() && y.is_nan());
        assert!(ok, "{what}: index {i}: gpu {x} vs cpu {y}");
    }
}

fn compare(task: &ComputeTask, tol: f32) {
    let Some((g, c)) = both(task) else { return };
    assert_eq!(g.len(), c.len());
    for (i, (gt, ct)) in g.iter().zip(&c).enumerate() {
        assert_eq!(
            gt.shape(),
            ct.shape(),
            "{} output {i} shape",
            task.kernel.name()
        );
        match (gt.as_f32(), ct.as_f32()) {
            (Some(a), Some(b)) => assert_close(a, b, tol, task.kernel.name()),
            _ => assert_eq!(
                gt.as_u32(),
                ct.as_u32(),
                "{} output {i}",
                task.kernel.name()
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn matmul_matches(m in 1usize..140, n in 1usize..140, k in 1usize..70, ta: bool, tb: bool,
                      bias: bool, act in act(), seed: u64) {
        let a = if ta { mat(k, m, seed, 1.0) } else { mat(m, k, seed, 1.0) };
        let b = if tb { mat(n, k, seed ^ 1, 1.0) } else { mat(k, n, seed ^ 1, 1.0) };
        let mut inputs = vec![a, b];
        if bias { inputs.push(mat(1, n, seed ^ 2, 1.0)); }
        let t = ComputeTask::new(Kernel::MatMul { trans_a: ta, trans_b: tb, bias, act }, inputs);
        compare(&t, 1e-4);
    }

    #[test]
    fn elementwise_matches(rows in 1usize..40, cols in 1usize..300, op in 0u8..8, s in -3.0f32..3.0, seed: u64) {
        let a = mat(rows, cols, seed, 4.0);
        let kernel = match op {
            0 => Kernel::Binary(BinaryOp::Add),
            1 => Kernel::Binary(BinaryOp::Sub),
            2 => Kernel::Binary(BinaryOp::Mul),
            3 => Kernel::Unary(UnaryOp::Scale(s)),
            4 => Kernel::Unary(UnaryOp::Relu),
            5 => Kernel::Unary(UnaryOp::Gelu),
            6 => Kernel::Unary(UnaryOp::Tanh),
            _ => Kernel::Unary(UnaryOp::Exp),
        };
        let inputs = if op < 3 { vec![a, mat(rows, cols, seed ^ 5, 4.0)] } else { vec![a] };
        compare(&ComputeTask::new(kernel, inputs), 1e-5);
    }

    #[test]
    fn rows_match(rows in 1usize..40, cols in 1usize..200, which in 0u8..5, seed: u64) {
        let kernel = match which {
            0 => Kernel::Reduce(Reduce::Sum),
            1 => Kernel::Reduce(Reduce::Max),
            2 => Kernel::Reduce(Reduce::ArgMax),
            3 => Kernel::Softmax,
            _ => Kernel::LogSoftmax,
        };
        let a = mat(rows, cols, seed, 5.0);
        if which == 0 {
            // A sum's rounding error scales with the sum of the magnitudes, not with the
            // result (rows that nearly cancel out): bound it per row by that.
            let mags: Vec<f32> = a.as_f32().unwrap().chunks(cols)
                .map(|r| r.iter().map(|x| x.abs()).sum()).collect();
            let t = ComputeTask::new(kernel, vec![a]);
            let Some((g, c)) = both(&t) else { return Ok(()) };
            let (g, c) = (g[0].as_f32().unwrap(), c[0].as_f32().unwrap());
            prop_assert_eq!(g.len(), rows);
            for (i, ((x, y), m)) in g.iter().zip(c).zip(&mags).enumerate() {
                prop_assert!((x - y).abs() <= 1e-5 * (1.0 + m), "sum row {}: gpu {} vs cpu {} (sum of |x| {})", i, x, y, m);
            }
            return Ok(());
        }
        compare(&ComputeTask::new(kernel, vec![a]), 1e-5);
    }

    #[test]
    fn cross_entropy_matches(rows in 1usize..40, cols in 1usize..120, grad: bool, seed: u64) {
        let labels: Vec<u32> = (0..rows).map(|r| ((seed as usize).wrapping_add(r * 7919) % cols) as u32).collect();
        let kernel = if grad { Kernel::CrossEntropyGrad } else { Kernel::CrossEntropy };
        let t = ComputeTask::new(kernel, vec![mat(rows, cols, seed, 6.0), Tensor::u32(rows, 1, labels).unwrap()]);
        compare(&t, 1e-5);
    }

    #[test]
    fn adam_matches(rows in 1usize..20, cols in 1usize..300, decoupled: bool, wd in 0.0f32..0.1,
                    step in 1u32..100, seed: u64) {
        let p = AdamParams { lr: 1e-2, weight_decay: wd, decoupled, step, ..AdamParams::default() };
        let v = mat(rows, cols, seed ^ 3, 1.0);
        let v = Tensor::f32(rows, cols, v.as_f32().unwrap().iter().map(|x| x * x).collect()).unwrap();
        let t = ComputeTask::new(Kernel::Adam(p), vec![
            mat(rows, cols, seed, 1.0), mat(rows, cols, seed ^ 1, 1.0), mat(rows, cols, seed ^ 2, 0.1), v]);
        compare(&t, 1e-5);
    }
}

/// Sizes around the 64-wide matmul tile, its 16-deep K step and the 64-wide row workgroup.
#[test]
fn tile_edges_match() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (15, 17, 16),
        (16, 16, 16),
        (33, 31, 65),
        (130, 129, 128),
    ] {
        let t = ComputeTask::new(
            Kernel::MatMul {
                trans_a: false,
                trans_b: true,
                bias: true,
                act: Activation::Gelu,
            },
            vec![mat(m, k, 1, 1.0), mat(n, k, 2, 1.0), mat(1, n, 3, 1.0)],
        );
        compare(&t, 1e-4);
    }
    // Empty operands: no workgroup (or no K step) runs; bias and activation still apply.
    for &(m, n, k) in &[(0, 5, 3), (4, 0, 3), (3, 4, 0)] {
        let t = ComputeTask::new(
            Kernel::MatMul {
                trans_a: true,
                trans_b: false,
                bias: true,
                act: Activation::Tanh,
            },
            vec![mat(k, m, 4, 1.0), mat(k, n, 5, 1.0), mat(1, n, 6, 1.0)],
        );
        compare(&t, 1e-6);
    }
    compare(
        &ComputeTask::new(Kernel::Unary(UnaryOp::Exp), vec![mat(0, 7, 1, 1.0)]),
        0.0,
    );
    compare(
        &ComputeTask::new(Kernel::Softmax, vec![mat(3, 0, 1, 1.0)]),
        0.0,
    );
    for cols in [63, 64, 65, 129] {
        compare(
            &ComputeTask::new(
                Kernel::Reduce(Reduce::ArgMax),
                vec![mat(3, cols, cols as u64, 1.0)],
            ),
            0.0,
        );
    }
}

/// Ties in argmax pick the first index on both backends.
#[test]
fn argmax_ties_pick_the_first() {
    let mut v = vec![0.0f32; 2 * 100];
    for c in [7, 70, 99] {
        v[c] = 2.0;
        v[100 + c] = 2.0;
    }
    v[100 + 3] = 2.0;
    let t = ComputeTask::new(
        Kernel::Reduce(Reduce::ArgMax),
        vec![Tensor::f32(2, 100, v).unwrap()],
    );
    let c = cpu::run(&t, 1).unwrap();
    assert_eq!(c[0].as_u32().unwrap(), &[7, 3]);
    compare(&t, 0.0);
}
