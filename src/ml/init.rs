//! Seeded weight initialisation: [`Rng`] (ChaCha8 from a `u64` seed, so the same seed gives
//! the same weights bit for bit on every machine) and the [`Init`] schemes (Xavier/Glorot,
//! Kaiming/He, and PyTorch's default for `Linear`). Owns random draws for models; nothing else.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::element::Element;
use super::tensor::Tensor;

/// A seeded random source for initialisation, dropout masks and data splits.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The stream of `seed`.
    pub fn seed(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A uniform `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`, 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box-Muller; one draw per call, the second value is not kept, so the
    /// stream depends only on the number of calls).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// True with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// A uniform index below `n` (`n > 0`), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Shuffles `v` in place (Fisher-Yates).
    pub fn shuffle<X>(&mut self, v: &mut [X]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// How a weight matrix of `fan_out x fan_in` is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = gain * sqrt(6 / (fan_in + fan_out))`.
    XavierUniform {
        /// Gain (1 for linear/sigmoid, 5/3 for tanh).
        gain: f64,
    },
    /// Glorot/Xavier normal: `N(0, gain^2 * 2 / (fan_in + fan_out))`.
    XavierNormal {
        /// Gain.
        gain: f64,
    },
    /// He/Kaiming uniform for ReLU (fan-in mode): `U(-b, b)`, `b = sqrt(6 / fan_in)`.
    KaimingUniform,
    /// He/Kaiming normal for ReLU (fan-in mode): `N(0, 2 / fan_in)`.
    KaimingNormal,
    /// PyTorch's default for `nn.Linear`: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (its
    /// `kaiming_uniform_(a=sqrt(5))`), for weights and bias alike.
    TorchDefault,
    /// All zeros.
    Zeros,
}

impl Init {
    /// A `fan_out x fan_in` tensor drawn from `rng`.
    pub fn weights<T: Element>(self, fan_out: usize, fan_in: usize, rng: &mut Rng) -> Tensor<T> {
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let n = fan_out * fan_in;
        let data: Vec<T> = match self {
            Init::XavierUniform { gain } => {
                let a = gain * (6.0 / (fi + fo)).sqrt();
                (0..n).map(|_| T::of(rng.uniform_in(-a, a))).collect()
            }
            Init::XavierNormal { gain } => {
                let s = gain * (2.0 / (fi + fo)).sqrt();
                (0..n).map(|_| T::of(s * rng.normal())).collect()
            }
            Init::KaimingUniform => {
                let b = (6.0 / fi).sqrt();
                (0..n).map(|_| T::of(rng.uniform_in(-b, b))).collect()
            }
            Init::KaimingNormal => {
                let s = (2.0 / fi).sqrt();
                (0..n).map(|_| T::of(s * rng.normal())).collect()
            }
            Init::TorchDefault => {
                let b = 1.0 / fi.sqrt();
                (0..n).map(|_| T::of(rng.uniform_in(-b, b))).collect()
            }
            Init::Zeros => vec![T::zero(); n],
        };
        Tensor::new(&[fan_out, fan_in], data).expect("n = fan_out * fan_in elements")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_weights_bit_for_bit() {
        for init in [
            Init::XavierUniform { gain: 1.0 },
            Init::XavierNormal { gain: 1.0 },
            Init::KaimingUniform,
            Init::KaimingNormal,
            Init::TorchDefault,
        ] {
            let a: Tensor<f32> = init.weights(16, 32, &mut Rng::seed(7));
            let b: Tensor<f32> = init.weights(16, 32, &mut Rng::seed(7));
            let c: Tensor<f32> = init.weights(16, 32, &mut Rng::seed(8));
            let bits = |t: &Tensor<f32>| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{init:?}");
            assert_ne!(bits(&a), bits(&c), "{init:?}");
        }
    }

    #[test]
    fn draws_have_the_scale_each_scheme_states() {
        // 200 x 300 = 60k draws: sample variance within 3 % of the stated one.
        let var = |t: &Tensor<f64>| {
            let n = t.len() as f64;
            let m = t.sum() / n;
            t.data().iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n
        };
        let (fo, fi) = (200, 300);
        let mut rng = Rng::seed(1);
        let cases = [
            (Init::XavierUniform { gain: 1.0 }, 2.0 / (fi + fo) as f64),
            (Init::XavierNormal { gain: 1.0 }, 2.0 / (fi + fo) as f64),
            (Init::KaimingUniform, 2.0 / fi as f64),
            (Init::KaimingNormal, 2.0 / fi as f64),
            (Init::TorchDefault, 1.0 / (3.0 * fi as f64)),
        ];
        for (init, want) in cases {
            let w: Tensor<f64> = init.weights(fo, fi, &mut rng);
            let v = var(&w);
            assert!((v / want - 1.0).abs() < 0.03, "{init:?}: {v} vs {want}");
        }
        let mut r = Rng::seed(3);
        let mut v: Vec<usize> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
