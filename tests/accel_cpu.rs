//! The CPU backend against plain reference definitions (runs with and without the `gpu`
//! feature): the GEMM path with transposes, bias and activations on one and many threads, and
//! calculus properties of the softmax / cross-entropy / Adam kernels.

mod common;
use common::accel::{act, mat};
use percore::accelerator::{Activation, AdamParams, ComputeTask, Kernel, Reduce, Tensor, cpu};
use proptest::prelude::*;

fn reference_matmul(
    a: &Tensor,
    b: &Tensor,
    ta: bool,
    tb: bool,
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let (m, k) = if ta {
        (a.cols(), a.rows())
    } else {
        (a.rows(), a.cols())
    };
    let n = if tb { b.rows() } else { b.cols() };
    let (av, bv) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let x = if ta { av[p * m + i] } else { av[i * k + p] };
                let y = if tb { bv[j * k + p] } else { bv[p * n + j] };
                s += x as f64 * y as f64;
            }
            let v = s as f32 + bias.map_or(0.0, |b| b[j]);
            c[i * n + j] = cpu::activate(act, v);
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn gemm_matches_the_definition(m in 0usize..90, n in 0usize..90, k in 0usize..90, ta: bool, tb: bool,
                                   bias: bool, act in act(), threads in 1usize..5, seed: u64) {
        let a = if ta { mat(k, m, seed) } else { mat(m, k, seed) };
        let b = if tb { mat(n, k, seed ^ 1) } else { mat(k, n, seed ^ 1) };
        let bv = mat(1, n, seed ^ 2);
        let mut inputs = vec![a.clone(), b.clone()];
        if bias { inputs.push(bv.clone()); }
        let t = ComputeTask::new(Kernel::MatMul { trans_a: ta, trans_b: tb, bias, act }, inputs);
        let got = cpu::run(&t, threads).unwrap();
        let want = reference_matmul(&a, &b, ta, tb, bias.then(|| bv.as_f32().unwrap()), act);
        prop_assert_eq!(got[0].rows(), m);
        prop_assert_eq!(got[0].cols(), n);
        for (x, y) in got[0].as_f32().unwrap().iter().zip(&want) {
            prop_assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{} vs {}", x, y);
        }
    }

    /// The cross-entropy gradient is the derivative of the mean loss (central differences).
    #[test]
    fn cross_entropy_grad_is_the_derivative(rows in 1usize..6, cols in 2usize..9, seed: u64) {
        let x = mat(rows, cols, seed);
        let labels = Tensor::u32(rows, 1, (0..rows).map(|r| ((seed as usize + r) % cols) as u32).collect()).unwrap();
        let loss = |x: &Tensor| -> f64 {
            let l = cpu::run(&ComputeTask::new(Kernel::CrossEntropy, vec![x.clone(), labels.clone()]), 1).unwrap();
            l[0].as_f32().unwrap().iter().map(|v| *v as f64).sum::<f64>() / rows as f64
        };
        let g = cpu::run(&ComputeTask::new(Kernel::CrossEntropyGrad, vec![x.clone(), labels.clone()]), 1).unwrap();
        let xv = x.as_f32().unwrap();
        for i in 0..rows * cols {
            let h = 1e-2f32;
            let mut p = xv.to_vec(); p[i] += h;
            let mut q = xv.to_vec(); q[i] -= h;
            let num = (loss(&Tensor::f32(rows, cols, p).unwrap()) - loss(&Tensor::f32(rows, cols, q).unwrap())) / (2.0 * h as f64);
            let an = g[0].as_f32().unwrap()[i] as f64;
            prop_assert!((num - an).abs() < 2e-3, "index {}: numeric {} analytic {}", i, num, an);
        }
    }

    /// Softmax rows sum to 1, log-softmax is its log, and argmax/max agree.
    #[test]
    fn row_kernels_agree(rows in 1usize..20, cols in 1usize..50, seed: u64) {
        let x = mat(rows, cols, seed);
        let run = |k: Kernel| cpu::run(&ComputeTask::new(k, vec![x.clone()]), 2).unwrap().remove(0);
        let sm = run(Kernel::Softmax);
        let lsm = run(Kernel::LogSoftmax);
        let sums = cpu::run(&ComputeTask::new(Kernel::Reduce(Reduce::Sum), vec![sm.clone()]), 1).unwrap();
        for s in sums[0].as_f32().unwrap() { prop_assert!((s - 1.0).abs() < 1e-5); }
        for (a, b) in sm.as_f32().unwrap().iter().zip(lsm.as_f32().unwrap()) { prop_assert!((a.ln() - b).abs() < 1e-4); }
        let am = run(Kernel::Reduce(Reduce::ArgMax));
        let mx = run(Kernel::Reduce(Reduce::Max));
        let xv = x.as_f32().unwrap();
        for r in 0..rows {
            let i = am.as_u32().unwrap()[r] as usize;
            prop_assert_eq!(xv[r * cols + i], mx.as_f32().unwrap()[r]);
            prop_assert!(xv[r * cols..r * cols + i].iter().all(|v| *v < xv[r * cols + i]));
        }
    }

    /// First Adam step without decay moves every weight by lr against the gradient's sign.
    #[test]
    fn adam_first_step_is_sign_descent(n in 1usize..200, lr in 1e-4f32..1e-1, seed: u64) {
        let p = mat(1, n, seed);
        let g = mat(1, n, seed ^ 9);
        let z = Tensor::zeros(1, n);
        let ap = AdamParams { lr, eps: 1e-12, ..AdamParams::default() };
        let out = cpu::run(&ComputeTask::new(Kernel::Adam(ap), vec![p.clone(), g.clone(), z.clone(), z]), 1).unwrap();
        for i in 0..n {
            let (w, gr) = (p.as_f32().unwrap()[i], g.as_f32().unwrap()[i]);
            let step = w - out[0].as_f32().unwrap()[i];
            if gr.abs() > 1e-3 {
                prop_assert!((step - lr * gr.signum()).abs() < 1e-3 * lr.max(1e-3), "{} vs {}", step, lr * gr.signum());
            }
        }
    }
}

/// A matmul large enough to be split across threads (over 2^26 flops) equals the
/// single-threaded one; each thread's row block is one matrixmultiply call over the same data.
#[test]
fn threads_split_large_work_consistently() {
    let t = ComputeTask::new(
        Kernel::MatMul {
            trans_a: true,
            trans_b: false,
            bias: true,
            act: Activation::Tanh,
        },
        vec![mat(300, 420, 1), mat(300, 310, 2), mat(1, 310, 3)],
    );
    assert!(t.kernel.flops(&t.shapes()) > (1u64 << 26) as f64);
    let one = cpu::run(&t, 1).unwrap();
    let four = cpu::run(&t, 4).unwrap();
    assert_eq!(one[0].shape(), four[0].shape());
    for (a, b) in one[0]
        .as_f32()
        .unwrap()
        .iter()
        .zip(four[0].as_f32().unwrap())
    {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
    }
}
