//! [`Adagrad`], PyTorch's `torch.optim.Adagrad` rule: `g += wd p`;
//! `clr = lr / (1 + (t - 1) lr_decay)`; `s += g^2`; `p -= clr g / (sqrt(s) + eps)`.

use super::{Core, Optimizer, core_methods};
use crate::ml::element::Element;
use crate::ml::error::Result;
use crate::ml::nn::Param;

/// Adagrad settings; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate (1e-2).
    pub lr: f64,
    /// Learning-rate decay per step (0).
    pub lr_decay: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// Starting value of the sum of squares (0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator (1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

/// Adagrad.
#[derive(Clone, Debug)]
pub struct Adagrad<T: Element = f32> {
    cfg: AdagradConfig,
    core: Core<T>,
}

impl<T: Element> Adagrad<T> {
    /// One group with `cfg`'s learning rate and weight decay.
    pub fn new(cfg: AdagradConfig) -> Self {
        Adagrad {
            core: Core::new("adagrad", cfg.lr, cfg.weight_decay),
            cfg,
        }
    }
}

impl<T: Element> Optimizer<T> for Adagrad<T> {
    fn step(&mut self, params: &mut [&mut Param<T>]) -> Result<()> {
        let c = self.cfg;
        let (eps, init) = (T::of(c.eps), T::of(c.initial_accumulator_value));
        self.core.each(params, 1, |g, slot, p| {
            if slot.step == 0 {
                slot.bufs[0].data_mut().fill(init);
            }
            slot.step += 1;
            let clr = T::of(g.lr / (1.0 + (slot.step - 1) as f64 * c.lr_decay));
            let wd = T::of(g.weight_decay);
            let s = slot.bufs[0].data_mut();
            let grad = p.grad.data();
            for (j, x) in p.value.data_mut().iter_mut().enumerate() {
                let mut d = grad[j];
                if g.weight_decay != 0.0 {
                    d += wd * *x;
                }
                s[j] += d * d;
                *x -= clr * (d / (s[j].sqrt() + eps));
            }
        })
    }

    core_methods!();
}
