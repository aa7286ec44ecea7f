//! Helpers shared by the accelerator tests: deterministic pseudo-random matrices and an
//! activation strategy for proptest.

use percore::accelerator::{Activation, Tensor};
use proptest::prelude::*;

/// A `rows x cols` matrix of values in [-scale, scale) from an xorshift seeded with `seed`.
pub fn mat_scaled(rows: usize, cols: usize, seed: u64, scale: f32) -> Tensor {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::f32(rows, cols, v).unwrap()
}

/// [`mat_scaled`] with values in [-1, 1).
pub fn mat(rows: usize, cols: usize, seed: u64) -> Tensor {
    mat_scaled(rows, cols, seed, 1.0)
}

/// Any fused activation.
pub fn act() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Gelu),
        Just(Activation::Tanh)
    ]
}
