//! [`Element`]: the scalar types tensors hold. `f32` is what models train in (its matrix
//! products run on the accelerator layer's CPU GEMM); `f64` exists so that every operation's
//! gradient can be checked against finite differences at a precision where the check means
//! something. Owns the per-type arithmetic only.

use std::fmt::{Debug, Display};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A tensor element: `f32` or `f64`.
pub trait Element:
    num_traits::Float
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + Serialize
    + DeserializeOwned
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// The nearest value of this type.
    fn of(x: f64) -> Self;
    /// This value as `f64` (exact).
    fn f64(self) -> f64;
    /// The error function.
    fn erf(self) -> Self;
    /// `c = op(a) · op(b)`, row-major, `op(a)` `m x k`, `op(b)` `k x n`, `c` overwritten.
    /// Lengths are checked by the caller ([`Tensor::matmul`](super::Tensor::matmul)).
    fn gemm(
        a: &[Self],
        b: &[Self],
        c: &mut [Self],
        mnk: (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> super::Result<()>;
}

impl Element for f32 {
    const NAME: &'static str = "f32";
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn gemm(
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        mnk: (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> super::Result<()> {
        // One thread: a model lives on one worker (shared-nothing); data parallelism is
        // several workers, each with its own replica.
        crate::accelerator::cpu::gemm(a, b, c, mnk, trans_a, trans_b, 1)?;
        Ok(())
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    /// A plain loop (i-p-j order): `f64` serves gradient checks on small shapes, not speed.
    fn gemm(
        a: &[f64],
        b: &[f64],
        c: &mut [f64],
        (m, n, k): (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> super::Result<()> {
        if a.len() != m * k || b.len() != k * n || c.len() != m * n {
            return Err(super::error::shape(
                "gemm",
                format!(
                    "m {m}, n {n}, k {k}; lengths {}, {}, {}",
                    a.len(),
                    b.len(),
                    c.len()
                ),
            ));
        }
        let at = |i: usize, p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if trans_b { b[j * k + p] } else { b[p * n + j] };
        c.fill(0.0);
        for i in 0..m {
            for p in 0..k {
                let x = at(i, p);
                for j in 0..n {
                    c[i * n + j] += x * bt(p, j);
                }
            }
        }
        Ok(())
    }
}
