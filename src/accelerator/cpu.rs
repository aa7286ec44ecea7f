//! The CPU backend: every [`Kernel`] on host memory with the same semantics as the WGSL
//! kernels. Matmul goes through `matrixmultiply` (a tuned GEMM); large work is split by output
//! rows across `threads` scoped threads. Owns host-side compute only: it must not touch wgpu,
//! worker threads or the runtime.

use super::error::AccelError;
use super::sgemm::sgemm_rows;
use super::task::{Activation, AdamParams, BinaryOp, ComputeTask, Kernel, Reduce, Tensor, UnaryOp};

/// Largest buffer the CPU backend accepts (bytes): what `Vec` can address.
pub const CPU_MAX_BUFFER: u64 = isize::MAX as u64;

/// Work (in flops, see [`Kernel::flops`]) below which a kernel stays on the calling thread.
/// Measured on the 2-vCPU development VM (BENCHMARKS.md): splitting a 128³ matmul across two
/// scoped threads halved its speed and 256³–1024³ gained nothing; only 2048³ gained. 2^26 flops
/// is about a 320³ matmul or 16 M elements of an elementwise op.
const PAR_MIN_WORK: f64 = (1u64 << 26) as f64;

/// `sqrt(2 / pi)`.
const GELU_C: f32 = 0.797_884_6;

/// Runs `task` on the calling thread (and up to `threads - 1` helpers for large work).
pub fn run(task: &ComputeTask, threads: usize) -> Result<Vec<Tensor>, AccelError> {
    task.validate(CPU_MAX_BUFFER)?;
    let refs: Vec<&Tensor> = task.inputs.iter().collect();
    Ok(run_unchecked(&task.kernel, &refs, threads))
}

/// Runs `kernel` on already validated inputs.
pub(crate) fn run_unchecked(kernel: &Kernel, inputs: &[&Tensor], threads: usize) -> Vec<Tensor> {
    let shapes: Vec<_> = inputs.iter().map(|t| t.shape()).collect();
    let work = kernel.flops(&shapes);
    let threads = if work < PAR_MIN_WORK {
        1
    } else {
        threads.max(1)
    };
    let f = |i: usize| {
        inputs[i]
            .as_f32()
            .expect("validated: this input is f32 (Kernel::output_shapes checks dtypes)")
    };
    let (rows, cols) = (inputs[0].rows(), inputs[0].cols());
    let tensor = |r, c, v| Tensor::f32(r, c, v).expect("output length computed from its shape");
    match *kernel {
        Kernel::MatMul {
            trans_a,
            trans_b,
            bias,
            act,
        } => {
            let (m, k) = if trans_a { (cols, rows) } else { (rows, cols) };
            let n = if trans_b {
                inputs[1].rows()
            } else {
                inputs[1].cols()
            };
            let mut c = vec![0.0f32; m * n];
            let bias_v = if bias { Some(f(2)) } else { None };
            matmul(
                f(0),
                f(1),
                &mut c,
                Gemm {
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                },
                bias_v,
                act,
                threads,
            );
            vec![tensor(m, n, c)]
        }
        Kernel::Binary(op) => {
            let (a, b) = (f(0), f(1));
            let mut out = vec![0.0f32; a.len()];
            par_chunks(&mut out, 1, threads, |start, chunk| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    let (x, y) = (a[start + j], b[start + j]);
                    *o = match op {
                        BinaryOp::Add => x + y,
                        BinaryOp::Sub => x - y,
                        BinaryOp::Mul => x * y,
                    };
                }
            });
            vec![tensor(rows, cols, out)]
        }
        Kernel::Unary(op) => {
            let a = f(0);
            let mut out = vec![0.0f32; a.len()];
            par_chunks(&mut out, 1, threads, |start, chunk| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = unary(op, a[start + j]);
                }
            });
            vec![tensor(rows, cols, out)]
        }
        Kernel::Reduce(r) => {
            let a = f(0);
            match r {
                Reduce::ArgMax => {
                    let mut out = vec![0u32; rows];
                    par_chunks(&mut out, 1, threads, |start, chunk| {
                        for (j, o) in chunk.iter_mut().enumerate() {
                            let row = &a[(start + j) * cols..(start + j + 1) * cols];
                            *o = argmax(row) as u32;
                        }
                    });
                    vec![Tensor::u32(rows, 1, out).expect("one index per row")]
                }
                Reduce::Sum | Reduce::Max => {
                    let mut out = vec![0.0f32; rows];
                    par_chunks(&mut out, 1, threads, |start, chunk| {
                        for (j, o) in chunk.iter_mut().enumerate() {
                            let row = &a[(start + j) * cols..(start + j + 1) * cols];
                            *o = if r == Reduce::Sum {
                                row.iter().sum()
                            } else {
                                row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                            };
                        }
                    });
                    vec![tensor(rows, 1, out)]
                }
            }
        }
        Kernel::Softmax | Kernel::LogSoftmax | Kernel::CrossEntropyGrad => {
            let a = f(0);
            let labels = inputs.get(1).and_then(|t| t.as_u32());
            let log = matches!(kernel, Kernel::LogSoftmax);
            let mut out = vec![0.0f32; a.len()];
            let inv_rows = 1.0 / rows as f32;
            par_chunks(&mut out, cols.max(1), threads, |start, chunk| {
                for (j, orow) in chunk.chunks_mut(cols.max(1)).enumerate() {
                    let r = start / cols.max(1) + j;
                    let row = &a[r * cols..(r + 1) * cols];
                    let (m, s) = max_and_sum_exp(row);
                    for (c, o) in orow.iter_mut().enumerate() {
                        *o = if log {
                            row[c] - m - s.ln()
                        } else {
                            (row[c] - m).exp() / s
                        };
                    }
                    if let Some(l) = labels {
                        let hot = l[r] as usize;
                        for (c, o) in orow.iter_mut().enumerate() {
                            let t = if c == hot { 1.0 } else { 0.0 };
                            *o = (*o - t) * inv_rows;
                        }
                    }
                }
            });
            vec![tensor(rows, cols, out)]
        }
        Kernel::CrossEntropy => {
            let a = f(0);
            let l = inputs[1]
                .as_u32()
                .expect("validated: labels are u32 (Kernel::output_shapes checks dtypes)");
            let mut out = vec![0.0f32; rows];
            par_chunks(&mut out, 1, threads, |start, chunk| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    let r = start + j;
                    let row = &a[r * cols..(r + 1) * cols];
                    let (m, s) = max_and_sum_exp(row);
                    *o = m + s.ln() - row[l[r] as usize];
                }
            });
            vec![tensor(rows, 1, out)]
        }
        Kernel::Adam(p) => {
            let (pr, g, m, v) = (f(0), f(1), f(2), f(3));
            let n = pr.len();
            let (mut po, mut mo, mut vo) = (pr.to_vec(), m.to_vec(), v.to_vec());
            // One pass per output keeps the closures borrow-simple; each is O(n).
            let mut packed = vec![[0.0f32; 3]; n];
            par_chunks(&mut packed, 1, threads, |start, chunk| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    let i = start + j;
                    *o = adam(&p, pr[i], g[i], m[i], v[i]);
                }
            });
            for (i, t) in packed.iter().enumerate() {
                po[i] = t[0];
                mo[i] = t[1];
                vo[i] = t[2];
            }
            vec![
                tensor(rows, cols, po),
                tensor(rows, cols, mo),
                tensor(rows, cols, vo),
            ]
        }
    }
}

/// One Adam/AdamW element update: returns `[param, m, v]`.
pub(crate) fn adam(p: &AdamParams, param: f32, grad: f32, m: f32, v: f32) -> [f32; 3] {
    let (bc1, bc2) = p.bias_corrections();
    let g = if p.decoupled {
        grad
    } else {
        grad + p.weight_decay * param
    };
    let m2 = p.beta1 * m + (1.0 - p.beta1) * g;
    let v2 = p.beta2 * v + (1.0 - p.beta2) * g * g;
    let mhat = m2 / bc1;
    let vhat = v2 / bc2;
    let mut upd = mhat / (vhat.sqrt() + p.eps);
    if p.decoupled {
        upd += p.weight_decay * param;
    }
    [param - p.lr * upd, m2, v2]
}

/// Index of the first largest element (0 for an empty row).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// `(max(row), sum(exp(row - max)))`.
fn max_and_sum_exp(row: &[f32]) -> (f32, f32) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s = row.iter().map(|x| (x - m).exp()).sum();
    (m, s)
}

/// The scalar semantics of a unary op.
pub fn unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Scale(s) => x * s,
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Gelu => gelu(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
    }
}

/// The scalar semantics of a fused activation.
pub fn activate(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Gelu => gelu(x),
        Activation::Tanh => x.tanh(),
    }
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (GELU_C * (x + 0.044_715 * x * x * x)).tanh())
}

/// GEMM dimensions: `op(A)` is `m x k`, `op(B)` is `k x n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) trans_a: bool,
    pub(crate) trans_b: bool,
}

/// `c = op(a) · op(b)` for row-major `f32` matrices held as plain slices: the CPU backend's
/// GEMM for callers that run it inline (the `ml` layer's tensors), with `op(a)` `m x k` and
/// `op(b)` `k x n` (`trans_*`: the operand is stored transposed) and `c` the `m x n` output,
/// overwritten. Work above the backend's threshold is split across `threads` scoped threads.
///
/// # Errors
/// [`AccelError::ShapeMismatch`] when a slice's length is not what the shape says.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
    threads: usize,
) -> Result<(), AccelError> {
    if a.len() != m * k || b.len() != k * n || c.len() != m * n {
        return Err(AccelError::ShapeMismatch {
            kernel: "gemm",
            detail: format!(
                "m {m}, n {n}, k {k} needs a {}, b {}, c {}; got {}, {}, {}",
                m * k,
                k * n,
                m * n,
                a.len(),
                b.len(),
                c.len()
            ),
        });
    }
    let threads = if 2.0 * ((m * n * k) as f64) < PAR_MIN_WORK {
        1
    } else {
        threads.max(1)
    };
    matmul(
        a,
        b,
        c,
        Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
        },
        None,
        Activation::None,
        threads,
    );
    Ok(())
}

/// `c = act(op(a) op(b) + bias)`, rows of `c` split across `threads`.
pub(crate) fn matmul(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    g: Gemm,
    bias: Option<&[f32]>,
    act: Activation,
    threads: usize,
) {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
    } = g;
    if m == 0 || n == 0 {
        return;
    }
    par_chunks(c, n, threads, |start, chunk| {
        let i0 = start / n;
        let rows = chunk.len() / n;
        sgemm_rows(a, b, chunk, (m, n, k), (trans_a, trans_b), i0, rows);
        if bias.is_some() || act != Activation::None {
            for row in chunk.chunks_mut(n) {
                for (j, x) in row.iter_mut().enumerate() {
                    let v = *x + bias.map_or(0.0, |bv| bv[j]);
                    *x = activate(act, v);
                }
            }
        }
    });
}

/// Splits `out` into up to `threads` chunks whose lengths are multiples of `unit` and runs `f`
/// on each (with the chunk's start index) on scoped threads; one chunk runs inline.
fn par_chunks<T: Send>(
    out: &mut [T],
    unit: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let unit = unit.max(1);
    let units = out.len() / unit;
    let threads = threads.clamp(1, units.max(1));
    if threads == 1 {
        f(0, out);
        return;
    }
    let per = units.div_ceil(threads) * unit;
    std::thread::scope(|s| {
        let f = &f;
        let mut rest = out;
        let mut start = 0;
        let mut first: Option<(usize, &mut [T])> = None;
        while !rest.is_empty() {
            let take = per.min(rest.len());
            let (head, tail) = rest.split_at_mut(take);
            if first.is_none() {
                first = Some((start, head));
            } else {
                let st = start;
                s.spawn(move || f(st, head));
            }
            start += take;
            rest = tail;
        }
        if let Some((st, head)) = first {
            f(st, head);
        }
    });
}
